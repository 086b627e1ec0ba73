"""`envbuilder sync`: rebuild exactly the environment a lock describes, hashes verified."""

from __future__ import annotations

import argparse
from pathlib import Path

from envbuilder.cli import _console
from envbuilder.cli._common import load_matrix_for, print_json
from envbuilder.cli._sources import add_source_options, settings_from_args

__all__ = [
    "register",
    "run",
]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sync", help="build the environment a pylock.<env>.toml describes (or the manifest's that fits this host)"
    )
    p.add_argument(
        "lock",
        nargs="?",
        metavar="LOCK",
        help="pylock.<env>.toml (default: the manifest's environment that fits this host)",
    )
    add_source_options(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--name", metavar="N", help="environment name (default: the lock's)")
    where.add_argument("--path", metavar="P", help="build the environment at this path instead")
    p.add_argument(
        "--manifest",
        metavar="FILE",
        help="the manifest to pick from when no LOCK is given (default: the project's, found upward)",
    )
    p.add_argument("--force", action="store_true", help="build even if the lock does not fit this host")
    p.add_argument("--no-smoke", action="store_true", help="skip the smoke test")
    p.add_argument("--no-guard", action="store_true", help="leave uv and pip free to move the stack layers inside it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from envbuilder.cli._sources import project_manifest
    from envbuilder.jobs import sync as job

    matrix = load_matrix_for(args)
    host = job.host_facts()
    if args.lock:
        lock_path = Path(args.lock)
    else:
        lock_path = job.pick_from_manifest(project_manifest(args, args.manifest), matrix, host)
    lock = job.check(lock_path, matrix, host, force=args.force, warn=_console.warn)
    settings = settings_from_args(args)
    request = job.SyncRequest(
        lock_path=lock_path,
        name=args.name,
        path=Path(args.path) if args.path else None,
        force=args.force,
        smoke=not args.no_smoke,
        guard=not args.no_guard,
    )
    progress = (lambda s: None) if args.json else _console.progress
    result = job.sync(request, lock, settings, progress=progress, notify=_console.warn)
    outcome = result.smoke
    if args.json:
        print_json(
            {
                "schema": "envbuilder.sync/1",
                "name": result.name,
                "path": str(result.path),
                "lock": str(lock_path),
                "digest": lock.tool.digest,
                "smoke": dict(outcome.record) if outcome else None,
            }
        )
    else:
        print(
            f"synced {result.name} from {lock_path.name} ({len(lock.packages)} packages, {lock.short_hash}) "
            f"-> {result.path}"
        )
        print(f"  smoke: {'not run' if outcome is None else ('passed' if outcome.ok else 'FAILED')}")
    return 0
