"""`envbuilder upgrade`: move an environment's stack as a whole, proven again (issue 15).

argv in (``UpgradeRequest``), the change and the result out as text or JSON; the job (``jobs/upgrade.py``)
re-resolves, locks, builds beside, smoke-tests, swaps and rewrites the lock.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from envbuilder.cli._common import load_matrix_for, print_json
from envbuilder.cli._sources import add_source_options, settings_from_args

if TYPE_CHECKING:
    from envbuilder.jobs.upgrade import Prepared, UpgradeResult

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


def run(args: argparse.Namespace) -> int:
    from envbuilder.cli import _console
    from envbuilder.jobs import upgrade as job
    from envbuilder.jobs.plan import NoPlanFound

    request = job.UpgradeRequest(
        name=args.name,
        path=Path(args.path) if args.path is not None else None,
        torch=args.torch,
        bnb=args.bnb,
        latest=args.latest,
        dry_run=args.dry_run,
        lock_out=Path(args.lock_out) if args.lock_out else None,
        smoke=not args.no_smoke,
    )
    settings = settings_from_args(args)
    say = (lambda _: None) if args.json else _console.progress
    try:
        prepared = job.prepare(request, load_matrix_for(args), settings, progress=say)
    except NoPlanFound as exc:
        from envbuilder.cli.resolve import render

        print(render(exc.no_plan), file=sys.stderr)
        raise
    if prepared.changes and not args.json:
        _show(prepared)
    result = job.upgrade(prepared, settings, progress=say, notify=_console.warn)
    return _report(args, result)


def _show(prepared: Prepared) -> None:
    """The change, package by package: the pins the resolver chose (with its reasons and rejections), then every
    package of the lock that moves with them."""
    from envbuilder.cli.resolve import render

    plan, old = prepared.plan, prepared.old
    before = {p.name: p.version for p in old.packages}
    print(f"upgrade {old.tool.name}:")
    for p in plan.packages:
        was = before.get(p.name)
        mark = "=" if was == p.version else "~"
        change = p.version if was == p.version else f"{was or '(none)'} -> {p.version}"
        why = plan.reason_for(p.name)
        print(f"  {mark} {p.name:<14} {change}" + (f"   ({why})" if why and mark == "~" else ""))
    others = [d for d in prepared.changes if d.split()[1] not in {p.name for p in plan.packages}]
    if others:
        print(
            f"  with them ({len(others)}): "
            + ", ".join(d[2:] for d in others[:8])
            + (" ..." if len(others) > 8 else "")
        )
    print("\n" + render(plan))


def _report(args: argparse.Namespace, result: UpgradeResult) -> int:
    name, diff = result.name, list(result.changes)
    if args.json:
        print_json(
            {
                "schema": "envbuilder.upgrade/1",
                "name": name,
                "path": str(result.path),
                "lock": str(result.lock),
                "upgraded": result.upgraded,
                "dry_run": result.dry_run,
                "changes": diff,
                "plan": result.plan.to_json(),
            }
        )
        return 0
    if result.upgraded:
        print(
            f"upgraded {name}: {len(diff)} package{'s' if len(diff) != 1 else ''} changed, smoke "
            f"{'not run' if args.no_smoke else 'passed'}"
        )
        print(f"  path: {result.path}")
        print(f"  lock: {result.lock}")
    else:
        print(f"{name}: {'dry run: nothing was changed' if result.changes else 'already there: nothing to do'}")
    return 0
