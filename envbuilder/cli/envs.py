"""`envbuilder list|remove|run|shell`: the environments envbuilder made, and using them."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from envbuilder.cli._common import print_json


def _home_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--home", metavar="DIR", help="where environments live (ENVBUILDER_HOME)")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("list", help="the environments envbuilder made: profile, target, Python, smoke, size")
    _home_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run_list)
    p = sub.add_parser("remove", help="delete an environment envbuilder made")
    p.add_argument("name")
    _home_option(p)
    p.set_defaults(handler=run_remove)
    p = sub.add_parser("run", help="run a command inside an environment: envbuilder run [--home DIR] NAME -- CMD ...")
    p.add_argument("name")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="the command (after --)")
    _home_option(p)
    p.set_defaults(handler=run_cmd)
    p = sub.add_parser("shell", help="open a shell inside an environment")
    p.add_argument("name")
    _home_option(p)
    p.set_defaults(handler=run_shell)


def _settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from envbuilder.settings import Settings

    return Settings(home=Path(args.home)) if args.home else Settings()


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def run_list(args: argparse.Namespace) -> int:
    from envbuilder.venv import list_envs

    envs = list_envs(_settings(args))
    if args.json:
        print_json({"schema": "envbuilder.list/1", "envs": [e.to_json() for e in envs]})
        return 0
    if not envs:
        print("no environments yet (envbuilder create)")
        return 0
    rows = [("NAME", "PROFILE", "TARGET", "PYTHON", "SMOKE", "SIZE")]
    rows += [(e.name, e.profile, e.target, e.python, e.smoke, _size(e.size_bytes)) for e in envs]
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from envbuilder.venv import remove_env

    path = remove_env(args.name, _settings(args))
    print(f"removed {args.name} ({path})")
    return 0


def _activate_env(env: Path) -> dict[str, str]:
    bindir = env / ("Scripts" if sys.platform == "win32" else "bin")
    environ = dict(os.environ)
    environ["VIRTUAL_ENV"] = str(env)
    environ["PATH"] = f"{bindir}{os.pathsep}{environ.get('PATH', '')}"
    environ.pop("PYTHONHOME", None)
    return environ


def run_cmd(args: argparse.Namespace) -> int:
    from envbuilder import _run
    from envbuilder.errors import TargetError
    from envbuilder.venv import find_env

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        msg = "envbuilder run: no command given"
        raise TargetError(msg, hint=f"envbuilder run {args.name} -- python -c 'import torch'")
    env = find_env(args.name, _settings(args))
    result = _run.run(cmd, env=_activate_env(env), check=False, capture=False)
    return result.returncode


def run_shell(args: argparse.Namespace) -> int:
    from envbuilder import _run
    from envbuilder.venv import find_env

    env = find_env(args.name, _settings(args))
    shell = os.environ.get("SHELL") or ("cmd.exe" if sys.platform == "win32" else "/bin/sh")
    print(f"entering {args.name} ({env}); exit to leave", file=sys.stderr)
    return _run.run([shell], env=_activate_env(env), check=False, capture=False).returncode
