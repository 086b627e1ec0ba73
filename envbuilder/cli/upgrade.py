"""`envbuilder upgrade`: move an environment's stack as a whole, proven again (issue 15).

Re-resolves the whole stack for the environment's own target (from the lock it keeps) with the new constraint,
shows the change package by package with the resolver's reasons and rejections, then builds the new
environment beside the old one, runs the smoke test, swaps it in atomically and rewrites the lock: the create
path's machinery (``builder.plan_lock``, ``venv.build``, ``builder.write_user_lock``). Any failure leaves the old
environment and its lock as they were (the build happens in ``.NAME.tmp-*``; the lock is written after the swap).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuilder.cli._common import load_matrix_for, print_json
from envbuilder.cli._sources import add_source_options, settings_from_args

if TYPE_CHECKING:
    from envbuilder.edge.settings import Settings
    from envbuilder.model.lock import Lock
    from envbuilder.model.matrix import Matrix
    from envbuilder.model.target import Target
    from envbuilder.resolve import Plan

__all__ = [
    "register",
    "run",
]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "upgrade",
        help="move an environment's stack (torch, bitsandbytes, ...) as a whole: re-resolve, build beside, "
        "smoke-test, swap, rewrite the lock",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="an environment of envbuilder's home (envbuilder list)")
    p.add_argument("--path", metavar="DIR", help="an environment that `create/sync --path DIR` built")
    p.add_argument("--torch", metavar="SPEC", help="the torch to move to, e.g. 2.14.1 or '>=2.12,<2.15'")
    p.add_argument("--bnb", metavar="SPEC", help="the bitsandbytes to move to (torch stays where it is)")
    p.add_argument("--latest", action="store_true", help="the newest stack that works for the target")
    p.add_argument("--dry-run", action="store_true", help="show the change; build and write nothing")
    p.add_argument("--lock-out", metavar="FILE", help="where the new lock goes (default: the lock it was built from)")
    p.add_argument("--no-smoke", action="store_true", help="skip the smoke test (the new environment is unproven)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (schema envbuilder.upgrade/1)")
    add_source_options(p)
    p.set_defaults(handler=run)


def _say(args: argparse.Namespace, text: str) -> None:
    from envbuilder.cli import _console

    if not args.json:
        _console.progress(text)


def run(args: argparse.Namespace) -> int:
    from envbuilder.edge import venv
    from envbuilder.edge.sources import gather_sources
    from envbuilder.jobs import builder
    from envbuilder.model.errors import CheckFailed, TargetError
    from envbuilder.model.lock import read_lock
    from envbuilder.resolve import NoPlan, index_variants, resolve

    if not (args.torch or args.bnb or args.latest):
        msg = "upgrade: say what moves: --torch SPEC, --bnb SPEC or --latest"
        raise TargetError(msg, hint="e.g. envbuilder upgrade NAME --torch 2.14.1 --dry-run")
    if args.path and args.name is not None:
        msg = f"give NAME ({args.name}) or --path ({args.path}), not both"
        raise TargetError(msg, hint="NAME for an environment of envbuilder's home, --path for one built with --path")
    settings = settings_from_args(args)
    env = venv.find_env(None if args.path else args.name, settings, path=args.path)
    marker = venv.read_marker(env) or {}
    old = read_lock(env / "pylock.toml")
    matrix = load_matrix_for(args)
    target = _target(old, matrix, args)
    _say(args, f"resolving {old.tool.name} again for {target.describe()}")
    sources = gather_sources(settings, index_variants(target, matrix))
    plan = resolve(target, matrix, sources)
    if isinstance(plan, NoPlan):
        from envbuilder.cli.resolve import render

        print(render(plan), file=sys.stderr)
        msg = f"no plan serves {_asked(args)} for {old.tool.name} ({target.describe()}); nothing was changed"
        raise CheckFailed(msg, hint=_nearest(plan, old, matrix, sources, args))
    before = {p.name: p.version for p in old.packages}
    changed = [p for p in plan.packages if before.get(p.name) != p.version]
    lock_path = _lock_out(args, marker, old)
    if not changed and not args.latest:
        return _report(args, old.tool.name, env, plan, [], lock_path, done=False, note="already there: nothing to do")
    new, text = builder.plan_lock(
        plan,
        name=old.tool.name,
        settings=settings,
        out=lock_path,
        extra=old.tool.extra,
        progress=lambda s: _say(args, s),
    )
    from envbuilder.model.lock import diff_pins

    diff = diff_pins(old, new)
    if not diff:
        return _report(args, old.tool.name, env, plan, [], lock_path, done=False, note="already there: nothing to do")
    _show(args, plan, old, diff)
    if args.dry_run:
        return _report(args, old.tool.name, env, plan, diff, lock_path, done=False, note="dry run: nothing was changed")
    _build(args, env, new, text, plan, settings, marker, lock_path)
    return _report(args, old.tool.name, env, plan, diff, lock_path, done=True, note="")


def _asked(args: argparse.Namespace) -> str:
    parts = [f"torch {args.torch}" if args.torch else "", f"bitsandbytes {args.bnb}" if args.bnb else ""]
    return " and ".join(p for p in parts if p) or "the latest stack"


def _target(old: Lock, matrix: Matrix, args: argparse.Namespace) -> Target:
    """The environment's own target, as its lock records it, with the new constraint.

    --bnb alone keeps torch where it is (only what was asked moves); --torch re-resolves bitsandbytes and the
    companions for the new torch; --latest lifts every constraint.
    """
    from envbuilder.model.target import Gpu, build_target

    doc = old.tool.target
    gpus = [Gpu(cc=str(g["cc"]), product=g.get("product")) for g in doc.get("gpus", []) if isinstance(g, dict)]
    torch = args.torch
    locked_torch = old.package("torch")
    if torch is None and args.bnb and not args.latest and locked_torch is not None:
        # the release: its build (cpu, cu128) follows from the target, as it did when the environment was made
        torch = "==" + locked_torch.version.split("+", 1)[0]
    return build_target(
        matrix,
        gpus=gpus,
        driver=doc.get("driver"),
        os=str(doc.get("os") or "linux"),
        pythons=(old.tool.python,),
        machine=str(doc.get("machine") or "x86_64"),
        profile=old.tool.profile,
        torch=torch,
        bnb=args.bnb,
        forward_compat=bool(doc.get("forward_compat")),
    )


def _nearest(plan: Any, old: Lock, matrix: Matrix, sources: Any, args: argparse.Namespace) -> str:
    """The nearest upgrade that works: the resolver's own nearest alternatives, else the best plan for the
    target with the constraint lifted, spelt as the command that asks for it."""
    from dataclasses import replace

    from envbuilder.resolve import Plan, resolve

    if plan.nearest:
        return "nearest that works: " + "; ".join(plan.nearest[:3])
    free = resolve(replace(plan.target, torch_spec=None, bnb_spec=None), matrix, sources)
    if not isinstance(free, Plan):
        return "no stack works for this target with the sources configured (see the reasons above)"
    torch, bnb = free.package("torch"), free.package("bitsandbytes")
    ref = args.name if not args.path else f"--path {args.path}"
    flags = " ".join(
        f for f in (f"--torch {torch.version}" if torch else "", f"--bnb {bnb.version}" if bnb else "") if f
    )
    return f"nearest that works: envbuilder upgrade {ref} {flags}"


def _lock_out(args: argparse.Namespace, marker: dict[str, Any], old: Lock) -> Path:
    """--lock-out, else the lock the environment was created or synced from (when it is not the copy inside
    the environment), else ./pylock.<name>.toml."""
    from envbuilder.model.lock import check_lock_path, lock_file_name

    if args.lock_out:
        return check_lock_path(Path(args.lock_out), "--lock-out")
    for key in ("lock_file", "synced_from"):
        value = marker.get(key)
        if isinstance(value, str) and value and Path(value).name != "pylock.toml":
            return Path(value)
    return Path.cwd() / lock_file_name(old.tool.name)


def _show(args: argparse.Namespace, plan: Plan, old: Lock, diff: list[str]) -> None:
    """The change, package by package: the pins the resolver chose (with its reasons and rejections), then every
    package of the lock that moves with them."""
    from envbuilder.cli.resolve import render

    if args.json:
        return
    before = {p.name: p.version for p in old.packages}
    print(f"upgrade {old.tool.name}:")
    for p in plan.packages:
        was = before.get(p.name)
        mark = "=" if was == p.version else "~"
        change = p.version if was == p.version else f"{was or '(none)'} -> {p.version}"
        why = next((r for r in plan.reasons if r.startswith((f"{p.name} ", f"torch {p.version}"))), "")
        print(f"  {mark} {p.name:<14} {change}" + (f"   ({why})" if why and mark == "~" else ""))
    others = [d for d in diff if d.split()[1] not in {p.name for p in plan.packages}]
    if others:
        print(
            f"  with them ({len(others)}): "
            + ", ".join(d[2:] for d in others[:8])
            + (" ..." if len(others) > 8 else "")
        )
    print("\n" + render(plan))


def _build(
    args: argparse.Namespace,
    env: Path,
    new: Lock,
    text: str,
    plan: Plan,
    settings: Settings,
    marker: dict[str, Any],
    lock_path: Path,
) -> None:
    """Build beside, smoke, swap, then write the lock (venv.build); on failure say that nothing changed."""
    from envbuilder.edge import venv
    from envbuilder.jobs import builder
    from envbuilder.model.errors import EnvbuilderError

    interpreter = builder.interpreter_for(plan.python)
    smoke = None if args.no_smoke else functools.partial(builder.smoke_env, profile=plan.profile)
    write_lock = functools.partial(builder.write_user_lock, lock_path, text, built=env)
    metadata = {
        "interpreter": interpreter,
        "lock_file": str(lock_path.absolute()),
        "upgraded_from": str(marker.get("lock_digest") or ""),
    }
    try:
        venv.build(
            env,
            interpreter=interpreter,
            lock=new,
            settings=settings,
            smoke=smoke,
            metadata=metadata,
            progress=lambda s: _say(args, f"  {s}"),
            lock_text=text,
            notify=_notify,
            then=write_lock,
            guard=marker.get("guard") is not None or "guard" not in marker,
        )
    except EnvbuilderError as exc:
        done = f"{env} and {lock_path.name} are as they were"
        exc.message = f"upgrade of {new.tool.name} failed, so {done}: {exc.message}"
        raise


def _notify(text: str) -> None:
    from envbuilder.cli import _console

    _console.warn(text)


def _report(
    args: argparse.Namespace,
    name: str,
    env: Path,
    plan: Plan,
    diff: list[str],
    lock_path: Path,
    *,
    done: bool,
    note: str,
) -> int:
    if args.json:
        print_json(
            {
                "schema": "envbuilder.upgrade/1",
                "name": name,
                "path": str(env),
                "lock": str(lock_path),
                "upgraded": done,
                "dry_run": bool(args.dry_run),
                "changes": diff,
                "plan": plan.to_json(),
            }
        )
        return 0
    if done:
        print(
            f"upgraded {name}: {len(diff)} package{'s' if len(diff) != 1 else ''} changed, smoke "
            f"{'not run' if args.no_smoke else 'passed'}"
        )
        print(f"  path: {env}")
        print(f"  lock: {lock_path}")
    else:
        print(f"{name}: {note}")
    return 0
