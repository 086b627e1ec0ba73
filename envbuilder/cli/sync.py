"""`envbuilder sync`: rebuild exactly the environment a lock describes, hashes verified."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import TYPE_CHECKING

from envbuilder.cli import _console
from envbuilder.cli._common import load_matrix_for, print_json

if TYPE_CHECKING:
    from envbuilder.edge.detect import Host
    from envbuilder.model.matrix import Matrix
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


def _host_facts() -> tuple[Host, str, str]:
    from envbuilder.cli._common import host_os
    from envbuilder.edge.detect import probe_host
    from envbuilder.model.target import Target

    host = probe_host()
    os_name = host_os(host)
    return host, os_name, Target(os=os_name, machine=host.machine).platform


def run(args: argparse.Namespace) -> int:
    from envbuilder.edge import venv
    from envbuilder.edge._fs import check_can_write
    from envbuilder.jobs import builder
    from envbuilder.model.lock import check_env_name, read_lock

    matrix = load_matrix_for(args)
    host, os_name, platform = _host_facts()
    ccs = [g.cc for g in host.gpus]
    lock_path = Path(args.lock) if args.lock else _pick_from_manifest(args, matrix, ccs, host.driver, os_name, platform)
    lock = read_lock(lock_path)
    builder.check_lock_name(lock)
    fit = builder.lock_fits_host(lock, matrix, ccs=ccs, driver=host.driver, os_name=os_name, platform=platform)
    for warning in builder.require_fit(fit, lock, force=args.force):
        _console.warn(warning)
    settings = settings_from_args(args)
    name = check_env_name(args.name) if args.name else lock.tool.name  # a --path may be spelt any way
    dest = Path(args.path) if args.path else settings.env_path(name)
    check_can_write(dest, "--path" if args.path else "the environment", directory=True)
    interpreter = builder.interpreter_for(lock.tool.python)
    progress = (lambda s: None) if args.json else _console.progress
    smoke = None if args.no_smoke else functools.partial(builder.smoke_env, profile=lock.tool.profile)
    outcome = venv.build(
        dest,
        interpreter=interpreter,
        lock=lock,
        settings=settings,
        smoke=smoke,
        metadata={"interpreter": interpreter, "synced_from": str(lock_path.resolve())},
        progress=progress,
        force=args.force,
        notify=_console.warn,
        guard=not args.no_guard,
    )
    if args.json:
        print_json(
            {
                "schema": "envbuilder.sync/1",
                "name": name,
                "path": str(dest),
                "lock": str(lock_path),
                "digest": lock.tool.digest,
                "smoke": dict(outcome.record) if outcome else None,
            }
        )
    else:
        print(f"synced {name} from {lock_path.name} ({len(lock.packages)} packages, {lock.short_hash}) -> {dest}")
        print(f"  smoke: {'not run' if outcome is None else ('passed' if outcome.ok else 'FAILED')}")
    return 0


def _pick_from_manifest(
    args: argparse.Namespace, matrix: Matrix, ccs: list[str], driver: str | None, os_name: str, platform: str
) -> Path:
    """The manifest's first environment whose lock fits this host."""
    from envbuilder.cli._sources import project_manifest
    from envbuilder.edge.manifest import load_manifest
    from envbuilder.jobs import builder
    from envbuilder.model.errors import CheckFailed, LockError
    from envbuilder.model.lock import manifest_lock_path, read_lock

    path = project_manifest(args, args.manifest)
    if path is None:
        msg = "no LOCK given, and no envbuilder.toml (or [tool.envbuilder] in pyproject.toml) here or above"
        raise LockError(msg, hint="name a lock (envbuilder sync pylock.NAME.toml), or --manifest FILE")
    manifest = load_manifest(path)
    tried = []
    for spec in manifest.envs:
        path = manifest_lock_path(manifest.path.parent, spec.name)
        if not path.exists():
            tried.append(f"{spec.name}: no {path.name} (run `envbuilder lock`)")
            continue
        try:
            fit = builder.lock_fits_host(
                read_lock(path), matrix, ccs=ccs, driver=driver, os_name=os_name, platform=platform
            )
        except LockError as exc:
            tried.append(f"{spec.name}: {exc.message}")
            continue
        if fit.ok:
            return path
        tried.append(f"{spec.name}: " + "; ".join(fit.problems))
    msg = f"no environment of {manifest.path} fits this host: " + " | ".join(tried)
    raise CheckFailed(msg, hint="add an [[env]] for this host's GPU and driver, then `envbuilder lock`")
