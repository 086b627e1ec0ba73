"""`envbuilder dockerfile`, `envbuilder build` and `envbuilder ci`: images and CI image matrices from locks."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from envbuilder.cli import _console
from envbuilder.cli._common import add_target_options, print_json
from envbuilder.cli._sources import add_source_options

if TYPE_CHECKING:
    from envbuilder.edge.settings import Settings
    from envbuilder.model.images import PinTable
    from envbuilder.model.lock import Lock
    from envbuilder.model.smoke import SmokeTable
    from envbuilder.render.dockerfile import Options

__all__ = [
    "check_outputs",
    "register",
    "run_build",
    "run_ci",
    "run_dockerfile",
    "write_context",
]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dockerfile", help="write a Dockerfile and build context for a lock (or a target)")
    _lock_options(p)
    p.add_argument("-o", "--output", metavar="DIR", help="the build context directory (default ./docker/<name>)")
    p.add_argument("--force", action="store_true", help="replace files there that envbuilder did not write")
    _json_option(p, "dockerfile")
    p.set_defaults(handler=run_dockerfile)

    b = sub.add_parser("build", help="build the image of a lock with docker buildx or podman, smoke step included")
    _lock_options(b)
    b.add_argument("--engine", choices=("docker", "podman"), help="the container engine (default: the first found)")
    b.add_argument("--repository", metavar="PREFIX", help="prefix image names, e.g. registry.example.com/team")
    b.add_argument("--netrc", metavar="FILE", help="credentials for indexes, passed as the build secret 'netrc'")
    b.add_argument("--no-cache", action="store_true", help="build every layer again")
    b.add_argument("--dry-run", action="store_true", help="print the build command, build nothing")
    _json_option(b, "build")
    b.set_defaults(handler=run_build)

    c = sub.add_parser("ci", help="write docker-bake.hcl and a GitHub Actions workflow for every env of the manifest")
    c.add_argument(
        "--manifest",
        metavar="FILE",
        help="the manifest (default: envbuilder.toml or pyproject.toml's [tool.envbuilder], found upward)",
    )
    c.add_argument("--locks", metavar="DIR", help="where pylock.<env>.toml are (default: beside the manifest)")
    c.add_argument("-o", "--output", metavar="DIR", help="where to write (default: beside the manifest)")
    c.add_argument(
        "--registry",
        metavar="REF",
        help="where images are pushed: the bake file's REGISTRY and the workflow's (default: the bake file"
        " localhost:5000/envbuilder, the workflow GHCR under the repository owner)",
    )
    c.add_argument("--force", action="store_true", help="replace files there that envbuilder did not write")
    _image_options(c)
    _json_option(c, "ci")
    c.set_defaults(handler=run_ci)


def _json_option(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("--json", action="store_true", help=f"print the result as JSON (schema envbuilder.{command}/1)")


def _image_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("images")
    g.add_argument(
        "--base-image",
        metavar="REF",
        help="replace the profile's base image (a mirror or an air-gapped registry)",
    )
    g.add_argument("--uv-image", metavar="REF", help="replace uv's image (ghcr.io/astral-sh/uv), e.g. a mirror")
    g.add_argument(
        "--resolve-digests",
        action="store_true",
        help="ask the registry for the digest of each image tag and pin FROM by it (default: the digests"
        " recorded in matrices/images.toml; other images stay tags)",
    )


def _lock_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lock", metavar="FILE", help="an envbuilder lock (default: resolve and lock the target first)")
    p.add_argument("--name", metavar="N", help="environment name when locking (default: <profile>-<cuda>-py<N.N>)")
    add_target_options(p, gpu_default=None)
    add_source_options(p)
    _image_options(p)


# --------------------------------------------------------------------------- shared steps


def _settings(args: argparse.Namespace) -> Settings:
    from envbuilder.cli._sources import settings_from_args

    return settings_from_args(args)


def _pins(args: argparse.Namespace, settings: Settings | None, locks: Sequence[Lock]) -> PinTable:
    """The recorded digests and action commits; with --resolve-digests, every image's digest read just now."""
    from envbuilder.model.images import load_pin_table
    from envbuilder.render.dockerfile import UV_IMAGE, default_base

    pins = load_pin_table(getattr(args, "matrix_dir", None))
    if not args.resolve_digests:
        return pins
    from envbuilder.edge.registry import resolve_digests

    images = [args.uv_image or UV_IMAGE, *(args.base_image or default_base(lock, pins).image for lock in locks)]
    ca = settings.ca_certs[0] if settings and settings.ca_certs else None
    resolved = resolve_digests(images, ca_cert=ca)
    for image, digest in resolved.items():
        _console.note(f"resolved {image} to {digest}")
    return pins.with_resolved(resolved)


def _options(args: argparse.Namespace, settings: Settings | None, locks: Sequence[Lock]) -> Options:
    from envbuilder.render.dockerfile import UV_IMAGE, Options

    return Options(
        base_image=args.base_image,
        uv_image=args.uv_image or UV_IMAGE,
        index_url=settings.index_url if settings else None,
        pins=_pins(args, settings, locks),
    )


def _get_lock(args: argparse.Namespace, settings: Settings, workdir: Path) -> tuple[Lock, str]:
    """The lock named by --lock, or a fresh one for the target options (written into ``workdir``)."""
    from envbuilder.model.lock import lock_file_name, parse_lock, read_lock_text

    if args.lock:
        return read_lock_text(Path(args.lock), hint="check the path, or leave --lock out to lock the target")
    from envbuilder.cli import _console
    from envbuilder.cli._common import load_matrix_for, target_from_args
    from envbuilder.cli.resolve import render
    from envbuilder.jobs import lock as job
    from envbuilder.jobs.plan import NoPlanFound

    matrix = load_matrix_for(args)
    target = target_from_args(args, matrix)
    out = workdir / "pylock.new.toml"
    req = job.LockRequest(target=target, name=args.name, output=out)  # a fresh directory: nothing to replace
    quiet = args.json
    try:
        result = job.lock(
            req,
            matrix,
            settings,
            progress=(lambda _: None) if quiet else _console.progress,
            note=(lambda _: None) if quiet else _console.note,
        )
    except NoPlanFound as exc:
        print(render(exc.no_plan), file=sys.stderr)
        raise
    text = out.read_text(encoding="utf-8")
    return parse_lock(text, Path(lock_file_name(result.name))), text


def _smoke_table(args: argparse.Namespace) -> SmokeTable:
    """The smoke program's bounds and import names (matrices/smoke.toml and any --matrix-dir overlay)."""
    from envbuilder.model.smoke import load_smoke_table

    return load_smoke_table(getattr(args, "matrix_dir", None))


def check_outputs(directory: Path, rels: Iterable[str], *, force: bool) -> None:
    """Before anything is written: ``directory`` can be one, and none of the files would replace a user's.

    A context whose Dockerfile envbuilder wrote is envbuilder's as a whole (its smoke/check.py carries no
    header of its own); anywhere else each file that is already there must be envbuilder's.
    """
    from envbuilder.edge._fs import check_can_write, refuse_overwrite, written_by_envbuilder

    check_can_write(directory, "-o", directory=True)
    if (directory / "Dockerfile").is_file() and written_by_envbuilder(directory / "Dockerfile"):
        return
    for rel in sorted(rels):
        refuse_overwrite(directory / rel, "-o", force=force)


def write_context(directory: Path, files: dict[str, str]) -> None:
    """Write a build context's files (atomically each; modes as the umask allows: nothing here is secret)."""
    from envbuilder.edge._fs import write_text_atomic

    for rel, text in sorted(files.items()):
        write_text_atomic(directory / rel, text, newline="")  # LF, also from Windows: the files go into Linux images


def _copy_wheels(lock: Lock, settings: Settings, wheels: Path) -> bool:
    """Copy (hard-link where possible) the wheelhouse files the lock installs; True if they cover every
    file that only an extra index would serve."""
    from envbuilder.render.dockerfile import PYPI_FILES, wheelhouse_files

    found: dict[str, Path] = {}
    for d in settings.find_links:
        for name in os.listdir(d) if Path(d).is_dir() else []:
            found.setdefault(name, Path(d) / name)
    for name in wheelhouse_files(lock, list(found)):
        dest = wheels / name
        try:
            os.link(found[name], dest)
        except OSError:
            shutil.copy2(found[name], dest)
    index_only = {
        f.filename
        for p in lock.packages
        for f in p.files
        if f.url.startswith("http") and not f.url.startswith(PYPI_FILES)
    }
    return index_only <= set(found)


# --------------------------------------------------------------------------- commands


def run_dockerfile(args: argparse.Namespace) -> int:
    from envbuilder.model.lock import lock_file_name
    from envbuilder.render.dockerfile import image_tag, render_context

    settings = _settings(args)
    with tempfile.TemporaryDirectory(prefix="envbuilder-dockerfile-") as tmp:
        lock, text = _get_lock(args, settings, Path(tmp))
    files = render_context(lock, text, options=_options(args, settings, [lock]), table=_smoke_table(args))
    out = Path(args.output) if args.output else Path("docker") / lock.tool.name
    check_outputs(out, files, force=args.force)
    write_context(out, files)
    lock_file = lock_file_name(lock.tool.name)
    if args.json:
        doc = {"schema": "envbuilder.dockerfile/1", "name": lock.tool.name, "context": str(out)}
        print_json({**doc, "lock": str(out / lock_file), "image": image_tag(lock), "files": sorted(files)})
        return 0
    print(f"wrote {out}/Dockerfile (+ .dockerignore, requirements/, smoke/, {lock_file})")
    print(f"build: envbuilder build --lock {out}/{lock_file}   (or docker buildx build -t {image_tag(lock)} {out})")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from envbuilder.edge import containers
    from envbuilder.render.dockerfile import build_args, image_tags, render_context

    settings = _settings(args)
    parent = Path(tempfile.gettempdir())
    with tempfile.TemporaryDirectory(prefix="envbuilder-build-", dir=parent) as tmp:
        lock, text = _get_lock(args, settings, Path(tmp))
        options = _options(args, settings, [lock])
        context = Path(tmp) / "context"
        write_context(context, render_context(lock, text, options=options, table=_smoke_table(args)))
        covered = _copy_wheels(lock, settings, context / "wheels")
        secrets = {"ca": Path(settings.ca_certs[0])} if settings.ca_certs else {}
        if args.netrc:
            secrets["netrc"] = Path(args.netrc)
        request = containers.BuildRequest(
            context=context,
            tags=image_tags(lock, args.repository),
            build_args=build_args(lock, options, wheelhouse_serves_all=covered),
            secrets=secrets,
            no_cache=args.no_cache,
            # The engine's log streams to the terminal; with -q, or --json (whose document is stdout, where the
            # engine writes its log), it is kept for the error message only.
            stream=not (_console.current().quiet or args.json),
        )
        for note in settings.notes:
            _console.note(note)
        if settings.credentials and not args.netrc:
            # Build arguments are recorded in the image's history: credentials enter a build only as a secret.
            _console.note(
                "the index credentials are not passed into the build; give them as --netrc FILE (a build secret)"
            )
        if args.dry_run:
            import shlex

            backend = containers.Podman() if args.engine == "podman" else containers.Docker()
            argv = backend.build_argv(request)
            if args.json:
                print_json(_build_doc(lock.tool.name, request.tags, backend.name, argv))
            else:
                print(shlex.join(argv))
            return 0
        engine = containers.choose_engine(args.engine)
        _console.progress(f"building {request.tags[0]} with {engine.name} (the build runs the image's smoke step)")
        containers.build(engine, request)
    if args.json:
        print_json(_build_doc(lock.tool.name, request.tags, engine.name, None))
        return 0
    print(f"built {request.tags[0]}")
    print(f"run the full smoke test on a GPU host: docker run --rm --gpus all {request.tags[0]}")
    return 0


def _build_doc(name: str, tags: Iterable[str], engine: str, argv: Iterable[str] | None) -> dict[str, object]:
    """``build --json``: the image's tags, the engine, and with --dry-run the command instead of a build."""
    built = argv is None
    return {
        "schema": "envbuilder.build/1",
        "name": name,
        "tags": list(tags),
        "engine": engine,
        "built": built,
        "command": None if built else list(argv or ()),
    }


def run_ci(args: argparse.Namespace) -> int:
    from envbuilder.cli._sources import project_manifest
    from envbuilder.edge._fs import write_text_atomic
    from envbuilder.edge.manifest import load_manifest
    from envbuilder.model.errors import LockError
    from envbuilder.model.lock import manifest_lock_path, read_lock
    from envbuilder.render.ci import DEFAULT_REGISTRY, CiImage, render_bake, render_workflow
    from envbuilder.render.dockerfile import render_context

    found = project_manifest(args, args.manifest)
    if found is None:
        msg = "no envbuilder.toml (or [tool.envbuilder] in pyproject.toml) here or in a parent directory"
        raise LockError(msg, hint="create one with `envbuilder lock --gpu ... --name N --save`, or give --manifest")
    manifest_path = found
    manifest = load_manifest(manifest_path)
    locks_dir = Path(args.locks) if args.locks else manifest_path.parent
    out = Path(args.output) if args.output else manifest_path.parent
    table = _smoke_table(args)
    locks = {}
    for spec in manifest.envs:
        path = manifest_lock_path(locks_dir, spec.name)
        if not path.is_file():
            msg = f"{path}: no lock for environment {spec.name!r}"
            raise LockError(msg, hint=f"run `envbuilder lock --manifest {manifest_path}` first")
        locks[spec.name] = (read_lock(path), path.read_text(encoding="utf-8"))
    options = _options(args, None, [lock for lock, _ in locks.values()])
    images, contexts = [], {}
    for name, (lock, text) in locks.items():
        rel = f"docker/{name}"
        contexts[rel] = render_context(lock, text, options=options, table=table)
        images.append(CiImage(lock=lock, context=rel))
    bake = render_bake(images, registry=args.registry or DEFAULT_REGISTRY)
    workflow = render_workflow(images, pins=options.pins, registry=args.registry)
    check_outputs(out, ["docker-bake.hcl", ".github/workflows/envbuilder-images.yml"], force=args.force)
    for rel, files in contexts.items():
        check_outputs(out / rel, files, force=args.force)
    for rel, files in contexts.items():
        write_context(out / rel, files)
    write_text_atomic(out / "docker-bake.hcl", bake)
    write_text_atomic(out / ".github" / "workflows" / "envbuilder-images.yml", workflow)
    if args.json:
        print_json(
            {
                "schema": "envbuilder.ci/1",
                "manifest": str(manifest_path),
                "bake": str(out / "docker-bake.hcl"),
                "workflow": str(out / ".github/workflows/envbuilder-images.yml"),
                "contexts": [str(out / rel) for rel in contexts],
                "images": [image.lock.tool.name for image in images],
            }
        )
        return 0
    print(
        f"wrote {out / 'docker-bake.hcl'}, {out / '.github/workflows/envbuilder-images.yml'} and "
        f"{len(images)} build contexts under {out / 'docker'}"
    )
    return 0
