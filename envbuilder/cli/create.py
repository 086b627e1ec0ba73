"""`envbuilder create`: resolve, lock, build with uv, smoke-test, move into place."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from envbuilder.cli._common import add_target_options, load_matrix_for, print_json, target_from_args
from envbuilder.cli._sources import add_source_options, settings_from_args

if TYPE_CHECKING:
    from envbuilder.jobs.create import Commands, CreateResult, Prepared

__all__ = [
    "Steps",
    "register",
    "run",
]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("create", help="build a known-good environment for a target, proven by a smoke test")
    add_target_options(p)
    add_source_options(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--name", metavar="N", help="environment name (default: <profile>-<cuda>-py<N.N>)")
    where.add_argument("--path", metavar="P", help="build the environment at this path instead")
    p.add_argument("--package", action="append", default=[], metavar="REQ", help="an extra package (repeatable)")
    p.add_argument(
        "--lock-out",
        metavar="FILE",
        help="where to write the lock, a PEP 751 name (default ./pylock.<profile>-<variant>-py<NN>-<platform>.toml, "
        "or ./pylock.<name>.toml with --name)",
    )
    p.add_argument("--dry-run", action="store_true", help="show the plan and the commands; touch nothing")
    p.add_argument("--no-smoke", action="store_true", help="skip the smoke test (the environment is then unproven)")
    p.add_argument(
        "--no-guard",
        action="store_true",
        help="leave uv and pip free to move the stack layers inside it (default: the lock's pins bind them)",
    )
    p.add_argument("--force", action="store_true", help="replace a directory or lock file envbuilder did not make")
    p.add_argument("--json", action="store_true", help="print the result as JSON (schema envbuilder.create/1)")
    p.set_defaults(handler=run)


class Steps:
    """Progress on stderr: numbered steps with elapsed time; quiet with --json."""

    def __init__(self, total: int, *, quiet: bool) -> None:
        self.total, self.n, self.quiet, self.t0 = total, 0, quiet, time.monotonic()

    def step(self, text: str) -> None:
        self.n += 1
        self.say(f"[{self.n}/{self.total}] {text}")

    def say(self, text: str) -> None:
        if not self.quiet:
            from envbuilder.cli import _console

            _console.progress(f"{text}  ({time.monotonic() - self.t0:.1f}s)")


def _notify(text: str) -> None:
    """What was repaired from a killed run: said even with -q (something changed on disk)."""
    from envbuilder.cli import _console

    _console.warn(text)


def run(args: argparse.Namespace) -> int:
    from envbuilder.jobs import create as job
    from envbuilder.jobs.lock import check_output
    from envbuilder.jobs.plan import NoPlanFound

    if args.lock_out:  # a directory, or a name uv would refuse, is refused before any work
        check_output(Path(args.lock_out), "--lock-out")
    steps = Steps(5, quiet=args.json)
    settings = settings_from_args(args)
    matrix = load_matrix_for(args)
    request = job.CreateRequest(
        target=target_from_args(args, matrix),
        name=args.name,
        path=Path(args.path) if args.path else None,
        extra=tuple(args.package),
        lock_out=Path(args.lock_out) if args.lock_out else None,
        installed_only=not args.python,
        smoke=not args.no_smoke,
        guard=not args.no_guard,
        force=args.force,
    )
    try:
        prepared = job.prepare(request, matrix, settings, step=steps.step, say=steps.say)
    except NoPlanFound as exc:
        from envbuilder.cli.resolve import render

        print(render(exc.no_plan), file=sys.stderr)
        raise
    if args.dry_run:
        return _dry_run(args, prepared, job.commands(prepared, settings, say=steps.say))
    result = job.create(prepared, settings, step=steps.step, say=steps.say, notify=_notify)
    return _report(args, result)


def _dry_run(args: argparse.Namespace, prepared: Prepared, commands: Commands) -> int:
    from envbuilder.cli.resolve import render

    lines = [shlex.join(argv) for argv in commands.argv]
    plan = prepared.plan
    if args.json:
        doc = plan.to_json() | {
            "schema": "envbuilder.create/1",
            "dry_run": True,
            "name": prepared.name,
            "path": str(prepared.dest),
            "lock": str(prepared.lock_path),
            "requirements": [p.requirement for p in plan.packages] + list(prepared.extra),
            "commands": lines,
            "reused_resolution": str(commands.reused) if commands.reused else None,
        }
        print_json(doc)
        return 0
    print(render(plan))
    print(f"\nwould create {prepared.name} at {prepared.dest} (lock {prepared.lock_path}) with:")
    if commands.reused is not None:
        print(f"  (no uv pip compile: the resolution {commands.reused} is reused; --refresh re-resolves)")
    for c in lines:
        print(f"  $ {c}")
    return 0


def _report(args: argparse.Namespace, result: CreateResult) -> int:
    outcome, plan = result.smoke, result.plan
    smoke = "not run (--no-smoke)" if outcome is None else ("passed" if outcome.ok else "FAILED")
    if args.json:
        print_json(
            plan.to_json()
            | {
                "schema": "envbuilder.create/1",
                "name": result.name,
                "path": str(result.path),
                "lock": str(result.lock),
                "smoke": dict(outcome.record) if outcome else None,
            }
        )
        return 0
    pins = ", ".join(p.requirement for p in plan.packages[:2])
    print(f"created {result.name}: {pins} (Python {plan.python}, {'CUDA ' + plan.cuda if plan.cuda else 'CPU'})")
    print(f"  path:  {result.path}")
    print(f"  lock:  {result.lock}")
    print(f"  smoke: {smoke}")
    if outcome is not None and outcome.summary:
        for line in outcome.summary.splitlines():
            print(f"         {line}")
    print(f"  use:   envbuilder run {result.name} -- python your_script.py    |    envbuilder shell {result.name}")
    return 0
