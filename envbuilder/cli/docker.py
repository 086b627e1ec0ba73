"""`envbuilder dockerfile`, `envbuilder build` and `envbuilder ci`: images and CI image matrices from locks.

argv in (the jobs' requests), text or JSON out; the work is the image job's (``jobs/image.py``: the context,
the build) and the CI job's (``jobs/ci.py``: contexts, bake file, workflow).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from envbuilder.cli import _console
from envbuilder.cli._common import add_target_options, print_json
from envbuilder.cli._sources import add_source_options

if TYPE_CHECKING:
    from envbuilder.jobs.image import ImageBuildResult, ImageOptions, LockSource

__all__ = [
    "register",
    "run_build",
    "run_ci",
    "run_dockerfile",
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


# --------------------------------------------------------------------------- requests from argv


def _images(args: argparse.Namespace) -> ImageOptions:
    from envbuilder.jobs.image import ImageOptions

    overlays = getattr(args, "matrix_dir", None)
    return ImageOptions(
        base_image=args.base_image,
        uv_image=args.uv_image,
        resolve_digests=args.resolve_digests,
        matrix_dirs=tuple(overlays) if overlays else None,
    )


def _source(args: argparse.Namespace) -> LockSource:
    """--lock, else a fresh lock of the target options (the matrix loaded, the host probed, only then)."""
    from envbuilder.cli._common import load_matrix_for, target_from_args
    from envbuilder.jobs.image import FreshLock, LockFile

    if args.lock:
        return LockFile(Path(args.lock))
    matrix = load_matrix_for(args)
    return FreshLock(target_from_args(args, matrix), matrix, args.name)


def _unless_json(args: argparse.Namespace, say: Callable[[str], None]) -> Callable[[str], None]:
    """The lock step's lines go to the console, but not under --json."""
    return (lambda _: None) if args.json else say


@contextlib.contextmanager
def _reasons_shown() -> Iterator[None]:
    """When no plan works for the target: the resolver's reasons on stderr, before the error."""
    from envbuilder.jobs.plan import NoPlanFound

    try:
        yield
    except NoPlanFound as exc:
        from envbuilder.cli.resolve import render

        print(render(exc.no_plan), file=sys.stderr)
        raise


# --------------------------------------------------------------------------- commands


def run_dockerfile(args: argparse.Namespace) -> int:
    from envbuilder.cli._sources import settings_from_args
    from envbuilder.jobs import image as job

    settings = settings_from_args(args)
    request = job.DockerfileRequest(
        source=_source(args),
        images=_images(args),
        output=Path(args.output) if args.output else None,
        force=args.force,
    )
    with _reasons_shown():
        result = job.dockerfile(
            request,
            settings,
            note=_console.note,
            lock_progress=_unless_json(args, _console.progress),
            lock_note=_unless_json(args, _console.note),
        )
    out, lock_file = result.context, result.lock.name
    if args.json:
        doc = {"schema": "envbuilder.dockerfile/1", "name": result.name, "context": str(out)}
        print_json({**doc, "lock": str(result.lock), "image": result.image, "files": list(result.files)})
        return 0
    print(f"wrote {out}/Dockerfile (+ .dockerignore, requirements/, smoke/, {lock_file})")
    print(f"build: envbuilder build --lock {out}/{lock_file}   (or docker buildx build -t {result.image} {out})")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from envbuilder.cli._sources import settings_from_args
    from envbuilder.jobs import image as job

    settings = settings_from_args(args)
    request = job.ImageBuildRequest(
        source=_source(args),
        images=_images(args),
        engine=args.engine,
        repository=args.repository,
        netrc=Path(args.netrc) if args.netrc else None,
        no_cache=args.no_cache,
        dry_run=args.dry_run,
        # The engine's log streams to the terminal; with -q, or --json (whose document is stdout, where the
        # engine writes its log), it is kept for the error message only.
        stream=not (_console.current().quiet or args.json),
    )
    with _reasons_shown():
        result = job.build(
            request,
            settings,
            progress=_console.progress,
            note=_console.note,
            lock_progress=_unless_json(args, _console.progress),
            lock_note=_unless_json(args, _console.note),
        )
    if args.json:
        print_json(_build_doc(result))
    elif result.command is not None:
        import shlex

        print(shlex.join(result.command))
    else:
        print(f"built {result.tags[0]}")
        print(f"run the full smoke test on a GPU host: docker run --rm --gpus all {result.tags[0]}")
    return 0


def _build_doc(result: ImageBuildResult) -> dict[str, object]:
    """``build --json``: the image's tags, the engine, and with --dry-run the command instead of a build."""
    built = result.command is None
    return {
        "schema": "envbuilder.build/1",
        "name": result.name,
        "tags": list(result.tags),
        "engine": result.engine,
        "built": built,
        "command": None if result.command is None else list(result.command),
    }


def run_ci(args: argparse.Namespace) -> int:
    from envbuilder.cli._sources import project_manifest
    from envbuilder.jobs import ci as job

    request = job.CiRequest(
        manifest=project_manifest(args, args.manifest),
        images=_images(args),
        locks=Path(args.locks) if args.locks else None,
        output=Path(args.output) if args.output else None,
        registry=args.registry,
        force=args.force,
    )
    result = job.ci(request, note=_console.note)
    if args.json:
        print_json(
            {
                "schema": "envbuilder.ci/1",
                "manifest": str(result.manifest),
                "bake": str(result.bake),
                "workflow": str(result.workflow),
                "contexts": [str(c) for c in result.contexts],
                "images": list(result.images),
            }
        )
        return 0
    contexts = f"{len(result.images)} build contexts under {result.output / 'docker'}"
    print(f"wrote {result.bake}, {result.workflow} and {contexts}")
    return 0
