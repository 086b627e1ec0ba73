"""`envbuilder lock`: write PEP 751 locks for a target, or for every environment of the manifest."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuilder.cli import _console
from envbuilder.cli._common import add_target_options, load_matrix_for, print_json, target_from_args
from envbuilder.cli._sources import add_source_options, project_manifest, settings_from_args

if TYPE_CHECKING:
    from envbuilder.edge.settings import Settings
    from envbuilder.model.matrix import Matrix
    from envbuilder.model.target import Target
    from envbuilder.resolve import Plan


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
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
    manifest = _manifest_path(args)
    if manifest is not None:
        return _lock_manifest(args, manifest)
    matrix = load_matrix_for(args)
    settings = settings_from_args(args)
    target = target_from_args(args, matrix)
    save = _save_path(args) if args.save else None
    if save is not None and args.name:
        _refuse_duplicate(save, args.name)  # before anything is written
    # With --save the lock goes beside the manifest, where `envbuilder lock` and `sync` look for it.
    directory = save.parent if save is not None else None
    result = lock_one(
        args, matrix, settings, target, name=args.name, extra=args.package, output=args.output, directory=directory
    )
    if save is not None:
        _save(save, result["name"], result["plan"], args.package)
    _print([result], args.json)
    return 0


def _save(path: Path, name: str, plan: Plan, extra: Sequence[str]) -> None:
    """Add (or refuse to duplicate) the environment in the manifest, keeping its comments and layout."""
    from envbuilder.edge.manifest import EnvSpec, add_env

    _refuse_duplicate(path, name)
    t = plan.target
    add_env(
        path,
        EnvSpec(
            name=name,
            profile=t.profile,
            gpus=tuple(g.sm for g in t.gpus),
            driver=t.driver,
            os=t.os,
            python=plan.python,
            machine=t.machine,
            packages=tuple(extra),
        ),
    )


def lock_one(
    args: argparse.Namespace,
    matrix: Matrix,
    settings: Settings,
    target: Target,
    *,
    name: str | None,
    extra: Sequence[str],
    output: str | None,
    directory: Path | None = None,
) -> dict[str, Any]:
    """Resolve and lock one environment; with --upgrade compare with the lock already there. Without ``output``
    the lock is written in ``directory`` (default: the current one) under its PEP 751 name."""
    from envbuilder.cli.resolve import render
    from envbuilder.edge._fs import check_can_write, refuse_overwrite
    from envbuilder.edge.sources import gather_sources
    from envbuilder.jobs import builder
    from envbuilder.model.errors import CheckFailed
    from envbuilder.model.lock import (
        check_env_name,
        check_lock_path,
        default_env_name,
        default_lock_file_name,
        diff_pins,
        lock_file_name,
        read_lock,
    )
    from envbuilder.resolve import NoPlan, index_variants, resolve

    if output:  # a directory, or a name uv would refuse, is refused before any work
        check_can_write(Path(output), "--output")
        check_lock_path(Path(output), "--output")
    sources = gather_sources(settings, index_variants(target, matrix))
    plan = resolve(target, matrix, sources)
    if isinstance(plan, NoPlan):
        print(render(plan), file=sys.stderr)
        msg = f"no known-good combination for {target.describe()}"
        raise CheckFailed(msg, hint=plan.nearest[0] if plan.nearest else "see the reasons above")
    extra = builder.check_extra_packages(matrix.profile(plan.profile), extra)
    given = name
    name = check_env_name(name or default_env_name(plan))
    out = (
        Path(output)
        if output
        else (directory or Path.cwd()) / (lock_file_name(name) if given else default_lock_file_name(plan))
    )
    what = "-o" if getattr(args, "output", None) else "the lock"
    check_can_write(out, what)
    refuse_overwrite(out, what, force=getattr(args, "force", False))
    old = read_lock(out) if args.upgrade and out.exists() else None

    def progress(text: str) -> None:
        if not args.json:
            _console.progress(text)

    for note in sources.notes:
        if not args.json:
            _console.note(note)
    lock = builder.lock_plan(plan, name=name, settings=settings, out=out, extra=extra, progress=progress)
    changes = diff_pins(old, lock) if old is not None else None
    return {
        "name": name,
        "lock": str(out),
        "plan": plan,
        "packages": len(lock.packages),
        "digest": lock.tool.digest,
        "changes": changes,
    }


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
    settings = settings_from_args(args, manifest.sources)
    results = []
    for spec in manifest.envs:
        if args.only and spec.name not in args.only:
            continue
        target = build_target_from_spec(spec, matrix)
        out = path.parent / lock_file_name(spec.name)
        results.append(lock_one(args, matrix, settings, target, name=spec.name, extra=spec.packages, output=str(out)))
    _print(results, args.json)
    return 0


def _print(results: list, as_json: bool) -> None:  # type: ignore[type-arg]
    if as_json:
        print_json(
            {
                "schema": "envbuilder.lock/1",
                "locks": [
                    {
                        "name": r["name"],
                        "lock": r["lock"],
                        "packages": r["packages"],
                        "digest": r["digest"],
                        "pins": [p.to_json() for p in r["plan"].packages],
                        "changes": r["changes"],
                    }
                    for r in results
                ],
            }
        )
        return
    for r in results:
        plan = r["plan"]
        pins = ", ".join(p.requirement for p in plan.packages[:2])
        print(f"locked {r['name']}: {pins} + {r['packages'] - 2} more -> {r['lock']}")
        if r["changes"] is not None:
            if r["changes"]:
                print("  changes since the previous lock:")
                print("\n".join(f"    {c}" for c in r["changes"]))
            else:
                print("  no changes since the previous lock")


def _refuse_duplicate(path: Path, name: str) -> None:
    from envbuilder.edge.manifest import env_names
    from envbuilder.model.errors import LockError

    if name in env_names(path):
        msg = f"{path}: an environment named {name!r} is already there"
        raise LockError(msg, hint="choose another --name, or edit the manifest")
