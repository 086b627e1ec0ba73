"""`envbuilder list|remove|run|shell`: the environments envbuilder made, and using them."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from envbuilder.cli._common import print_json

if TYPE_CHECKING:
    from envbuilder.edge.settings import Settings

__all__ = [
    "register",
    "run_cmd",
    "run_guard",
    "run_list",
    "run_remove",
    "run_shell",
    "run_unguard",
]


def _home_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", metavar="DIR", help="where environments live (ENVBUILDER_HOME)")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("list", help="the environments envbuilder made: profile, target, Python, smoke, size")
    _home_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_list)
    p = sub.add_parser("remove", help="delete an environment envbuilder made")
    _env_options(p)
    p.set_defaults(handler=run_remove)
    p = sub.add_parser(
        "run", help="run a command inside an environment: envbuilder run [--home DIR] NAME|--path DIR -- CMD ..."
    )
    _env_options(p)
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="the command (after --)")
    p.set_defaults(handler=run_cmd)
    p = sub.add_parser("shell", help="open a shell inside an environment")
    _env_options(p)
    p.set_defaults(handler=run_shell)
    p = sub.add_parser("unguard", help="let uv and pip move the stack layers inside an environment (drop the guard)")
    _env_options(p)
    p.set_defaults(handler=run_unguard)
    p = sub.add_parser("guard", help="bind uv and pip inside an environment to its lock's stack layers again")
    _env_options(p)
    p.set_defaults(handler=run_guard)


def _env_options(p: argparse.ArgumentParser) -> None:
    """NAME (an environment in the home) or --path DIR (one envbuilder built there and recorded)."""
    p.add_argument("name", nargs="?", metavar="NAME", help="an environment of envbuilder's home (envbuilder list)")
    p.add_argument("--path", metavar="DIR", help="an environment that `create/sync --path DIR` built")
    _home_option(p)


def _settings(args: argparse.Namespace) -> Settings:
    from envbuilder.edge.settings import Settings

    return Settings(home=Path(args.home)) if args.home else Settings()


def _name(args: argparse.Namespace) -> str | None:
    if args.path and args.name is not None:
        from envbuilder.model.errors import TargetError

        msg = f"give NAME ({args.name}) or --path ({args.path}), not both"
        raise TargetError(msg, hint="NAME for an environment of envbuilder's home, --path for one built with --path")
    return None if args.path else args.name


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def _uses(args: argparse.Namespace) -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """profile -> (the checkpoint formats its environments load, those they make), from profiles.toml; {} when
    the matrix cannot be read (the listing itself does not need it)."""
    from envbuilder.cli._common import load_matrix_for
    from envbuilder.model.errors import MatrixError
    from envbuilder.rules.formats import summary

    try:
        matrix = load_matrix_for(args)
    except MatrixError as exc:
        print(f"note: no checkpoint formats shown: {exc.message}", file=sys.stderr)
        return {}
    return {p.name: (summary(p).loads, summary(p).makes) for p in matrix.profiles}


def run_list(args: argparse.Namespace) -> int:
    from envbuilder.edge.venv import list_envs

    envs = list_envs(_settings(args))
    uses = _uses(args) if envs else {}
    if args.json:
        docs = []
        for e in envs:
            loads, makes = uses.get(e.profile, ((), ()))
            docs.append({**e.to_json(), "loads": list(loads), "makes": list(makes)})
        print_json({"schema": "envbuilder.list/1", "envs": docs})
        return 0
    if not envs:
        print("no environments yet (envbuilder create)")
        return 0
    rows = [("NAME", "PROFILE", "TARGET", "PYTHON", "SMOKE", "GUARD", "SIZE", "LOADS", "MAKES")]
    for e in envs:
        loads, makes = uses.get(e.profile, (("?",), ("?",)))
        guard = "off" if e.guard is None else "on"
        row = (e.name, e.profile, e.target, e.python, e.state, guard, _size(e.size_bytes), ",".join(loads) or "-")
        rows.append((*row, ",".join(makes) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    for e in envs:
        moved = [c for c in e.drift if c.layer]
        if moved:
            import shlex

            from envbuilder.edge.venv import env_ref, sync_argv

            settings = _settings(args)
            print(f"\n{e.name}: not proven any more: " + "; ".join(c.describe() for c in moved))
            print(f"  back to the lock: {shlex.join(sync_argv(e.path, settings))}")
            ref = shlex.join(env_ref(e.path, settings))
            print(f"  or move the stack, proven again: envbuilder upgrade {ref} --latest")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from envbuilder.edge.venv import remove_env

    path = remove_env(_name(args), _settings(args), path=args.path)
    print(f"removed {args.name or path.name} ({path})")
    return 0


def _activate_env(env: Path) -> dict[str, str]:
    """What the activation script sets, the guard's two variables included (``edge.guard``)."""
    from envbuilder.edge.guard import env_variables
    from envbuilder.edge.venv import bin_dir

    bindir = bin_dir(env)
    environ = dict(os.environ)
    for var in ("UV_CONSTRAINT", "PIP_CONSTRAINT"):
        environ.pop(var, None)  # another environment's guard must not bind this one
    environ.update(env_variables(env))
    environ["VIRTUAL_ENV"] = str(env)
    environ["PATH"] = f"{bindir}{os.pathsep}{environ.get('PATH', '')}"
    environ.pop("PYTHONHOME", None)
    return environ


def run_cmd(args: argparse.Namespace) -> int:
    from envbuilder.edge import _run
    from envbuilder.edge.venv import find_env
    from envbuilder.model.errors import TargetError

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if args.path and args.name is not None:
        cmd = [args.name, *cmd]  # `run --path DIR -- CMD`: argparse took CMD's first word for NAME
    if not cmd:
        msg = "envbuilder run: no command given"
        where = f"--path {args.path}" if args.path else (args.name or "NAME")
        raise TargetError(msg, hint=f"envbuilder run {where} -- python -c 'import torch'")
    env = find_env(None if args.path else args.name, _settings(args), path=args.path)
    result = _run.run(cmd, env=_activate_env(env), check=False, capture=False, foreground=True)
    return result.exit_status  # 128+N when signal N ended it, as a shell reports it


def run_shell(args: argparse.Namespace) -> int:
    from envbuilder.edge import _run
    from envbuilder.edge.venv import find_env

    env = find_env(_name(args), _settings(args), path=args.path)
    shell = os.environ.get("SHELL") or ("cmd.exe" if sys.platform == "win32" else "/bin/sh")
    from envbuilder.cli import _console

    _console.progress(f"entering {args.name or env.name} ({env}); exit to leave")
    return _run.run([shell], env=_activate_env(env), check=False, capture=False, foreground=True).exit_status


def run_unguard(args: argparse.Namespace) -> int:
    from envbuilder.edge.venv import set_guard

    env = set_guard(_name(args), _settings(args), path=args.path, on=False)
    print(f"unguarded {args.name or env.name}: uv and pip inside it may now move torch, bitsandbytes and the rest")
    print(f"  drift still shows in `envbuilder list` and `doctor --env {env}`; `envbuilder guard` puts it back")
    return 0


def run_guard(args: argparse.Namespace) -> int:
    from envbuilder.edge.venv import set_guard

    env = set_guard(_name(args), _settings(args), path=args.path, on=True)
    print(f"guarded {args.name or env.name}: its lock's stack layers bind uv and pip inside it ({env})")
    return 0
