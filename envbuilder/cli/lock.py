"""`envbuilder lock`: write PEP 751 locks for a target, or for every environment of the manifest."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from envbuilder.cli import _console
from envbuilder.cli._common import add_target_options, load_matrix_for, print_json, target_from_args
from envbuilder.cli._sources import add_source_options, project_manifest, settings_from_args

if TYPE_CHECKING:
    from envbuilder.edge.settings import Settings
    from envbuilder.jobs.lock import LockRequest, LockResult
    from envbuilder.model.matrix import Matrix
    from envbuilder.model.target import Target

__all__ = [
    "lock_one",
    "register",
    "request",
    "run",
]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "lock", help="write pylock.<env>.toml with hashes (for this host, another machine, or the manifest)"
    )
    add_target_options(p, gpu_default=None)
    add_source_options(p)
    p.add_argument("--name", metavar="N", help="environment name (default: <profile>-<cuda>-py<N.N>)")
    p.add_argument("--package", action="append", default=[], metavar="REQ", help="an extra package (repeatable)")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="lock file, a PEP 751 name (default ./pylock.<profile>-<variant>-py<NN>-<platform>.toml, "
        "or ./pylock.<name>.toml with --name)",
    )
    p.add_argument(
        "--manifest",
        metavar="FILE",
        help="lock every [[env]] of this manifest (default, when no --gpu: envbuilder.toml or pyproject.toml's "
        "[tool.envbuilder], here or in a parent directory up to the repository's root)",
    )
    p.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="with a manifest: lock only these environments"
    )
    p.add_argument("--upgrade", action="store_true", help="re-resolve against the current matrix and show what changed")
    p.add_argument(
        "--save",
        action="store_true",
        help="also record this environment in the project's envbuilder.toml (comments and layout kept)",
    )
    p.add_argument("--force", action="store_true", help="replace a lock file envbuilder did not write")
    p.add_argument("--json", action="store_true", help="print the result as JSON (schema envbuilder.lock/1)")
    p.set_defaults(handler=run)


def _manifest_path(args: argparse.Namespace) -> Path | None:
    """--manifest, else (no --gpu: no target named) the project's manifest found upward, else None: this host."""
    if args.manifest or args.gpu is None:
        return project_manifest(args, args.manifest)
    return None


def _save_path(args: argparse.Namespace) -> Path:
    """Where --save records the environment: the project's manifest (found upward), else ./envbuilder.toml."""
    return project_manifest(args) or Path("envbuilder.toml")


def run(args: argparse.Namespace) -> int:
    from envbuilder.jobs import lock as job

    manifest = _manifest_path(args)
    if manifest is not None:
        return _lock_manifest(args, manifest)
    matrix = load_matrix_for(args)
    settings = settings_from_args(args, refresh=args.upgrade)
    target = target_from_args(args, matrix)
    save = _save_path(args) if args.save else None
    if save is not None and args.name:
        job.refuse_duplicate(save, args.name)  # before anything is written
    # With --save the lock goes beside the manifest, where `envbuilder lock` and `sync` look for it.
    directory = save.parent if save is not None else None
    result = lock_one(args, matrix, settings, request(args, target, output=args.output, directory=directory))
    if save is not None:
        job.save_env(save, result.name, result.plan, args.package)
    _print([result], args.json)
    return 0


def request(
    args: argparse.Namespace,
    target: Target,
    *,
    output: str | None,
    name: str | None = None,
    extra: Sequence[str] | None = None,
    directory: Path | None = None,
) -> LockRequest:
    """The lock job's input from `lock`'s options (``name``/``extra`` default to --name/--package)."""
    from envbuilder.jobs.lock import LockRequest

    return LockRequest(
        target=target,
        name=args.name if name is None else name,
        extra=tuple(args.package if extra is None else extra),
        output=Path(output) if output else None,
        directory=directory,
        upgrade=args.upgrade,
        force=args.force,
        output_option="-o" if args.output else "the lock",
    )


def lock_one(args: argparse.Namespace, matrix: Matrix, settings: Settings, req: LockRequest) -> LockResult:
    """The lock job, its progress on stderr (none with --json), a failed plan's reasons printed before the error."""
    from envbuilder.jobs import lock as job
    from envbuilder.jobs.plan import NoPlanFound

    say = (lambda _: None) if args.json else _console.progress
    try:
        return job.lock(req, matrix, settings, progress=say, note=(lambda _: None) if args.json else _console.note)
    except NoPlanFound as exc:
        from envbuilder.cli.resolve import render

        print(render(exc.no_plan), file=sys.stderr)
        raise


def _lock_manifest(args: argparse.Namespace, path: Path) -> int:
    from envbuilder.cli._common import build_target_from_spec
    from envbuilder.edge.manifest import load_manifest
    from envbuilder.model.lock import lock_file_name

    manifest = load_manifest(path)
    unknown = [n for n in args.only if manifest.env(n) is None]
    if unknown:
        from envbuilder.model.errors import LockError

        msg = f"{path}: no environment named {unknown[0]!r} (--only)"
        raise LockError(msg, hint=f"the manifest has: {', '.join(e.name for e in manifest.envs)}")
    matrix = load_matrix_for(args)
    settings = settings_from_args(args, manifest.sources, refresh=args.upgrade)
    results = []
    for spec in manifest.envs:
        if args.only and spec.name not in args.only:
            continue
        target = build_target_from_spec(spec, matrix)
        out = path.parent / lock_file_name(spec.name)
        req = request(args, target, output=str(out), name=spec.name, extra=spec.packages)
        results.append(lock_one(args, matrix, settings, req))
    _print(results, args.json)
    return 0


def _print(results: Sequence[LockResult], as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "schema": "envbuilder.lock/1",
                "locks": [
                    {
                        "name": r.name,
                        "lock": str(r.path),
                        "packages": r.packages,
                        "digest": r.digest,
                        "pins": [p.to_json() for p in r.plan.packages],
                        "changes": list(r.changes) if r.changes is not None else None,
                    }
                    for r in results
                ],
            }
        )
        return
    for r in results:
        pins = ", ".join(p.requirement for p in r.plan.packages[:2])
        print(f"locked {r.name}: {pins} + {r.packages - 2} more -> {r.path}")
        if r.changes is not None:
            if r.changes:
                print("  changes since the previous lock:")
                print("\n".join(f"    {c}" for c in r.changes))
            else:
                print("  no changes since the previous lock")
