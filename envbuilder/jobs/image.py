"""The image steps: a Dockerfile and build context for a lock, and the image built from it (smoke step included).

The lock is a file (``LockSource.path``) or a fresh lock of a target (the lock job, into a temporary
directory); ``ImageOptions`` are the images a context is built FROM. ``dockerfile`` writes the context where
it is asked to (never over a user's file); ``build`` writes it into a temporary directory with the
wheelhouse files the lock installs and hands it to docker buildx or podman (``dry_run``: the command only).
Typed in (``DockerfileRequest``, ``ImageBuildRequest``), typed out (``DockerfileResult``, ``ImageBuildResult``).
The CI step (``jobs/ci.py``) renders its contexts with the same ``context_options``, ``check_outputs`` and
``write_context``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envbuilder.edge.containers import BuildRequest, EngineName
    from envbuilder.edge.settings import Settings
    from envbuilder.model.images import PinTable
    from envbuilder.model.lock import Lock
    from envbuilder.model.matrix import Matrix
    from envbuilder.model.smoke import SmokeTable
    from envbuilder.model.target import Target
    from envbuilder.render.dockerfile import Options

__all__ = [
    "DockerfileRequest",
    "DockerfileResult",
    "FreshLock",
    "ImageBuildRequest",
    "ImageBuildResult",
    "ImageOptions",
    "LockFile",
    "LockSource",
    "build",
    "check_outputs",
    "context_options",
    "copy_wheels",
    "dockerfile",
    "smoke_table",
    "write_context",
]

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class ImageOptions:
    """The images a context is built FROM: ``base_image``/``uv_image`` replace the profile's and uv's (a mirror);
    ``resolve_digests`` asks the registry for every image's digest (default: the digests recorded in
    ``matrices/images.toml``); ``matrix_dirs`` are the overlays whose ``images.toml``/``smoke.toml`` count."""

    base_image: str | None = None
    uv_image: str | None = None
    resolve_digests: bool = False
    matrix_dirs: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class LockFile:
    """An image's lock: the envbuilder lock at ``path``."""

    path: Path


@dataclass(frozen=True, slots=True)
class FreshLock:
    """An image's lock: a fresh lock of ``target`` over ``matrix`` (the lock job), named ``name`` (default
    ``<profile>-<cuda>-py<N.N>``)."""

    target: Target
    matrix: Matrix
    name: str | None = None


LockSource = LockFile | FreshLock


@dataclass(frozen=True, slots=True)
class DockerfileRequest:
    """A build context for ``source`` at ``output`` (default ``./docker/<name>``); ``force`` replaces files
    there that envbuilder did not write."""

    source: LockSource
    images: ImageOptions = ImageOptions()
    output: Path | None = None
    force: bool = False


@dataclass(frozen=True, slots=True)
class DockerfileResult:
    """The context written: the environment's name, the directory, the lock inside it, the image's unique tag,
    and every file written (relative to the directory)."""

    name: str
    context: Path
    lock: Path
    image: str
    files: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ImageBuildRequest:
    """An image of ``source`` built with ``engine`` (default: the first found; a dry run without one spells
    docker's command); ``repository`` prefixes the tags; ``netrc`` is passed as the build secret ``netrc``;
    ``stream``: the engine's log to the terminal (else kept for the error message only)."""

    source: LockSource
    images: ImageOptions = ImageOptions()
    engine: EngineName | None = None
    repository: str | None = None
    netrc: Path | None = None
    no_cache: bool = False
    dry_run: bool = False
    stream: bool = True


@dataclass(frozen=True, slots=True)
class ImageBuildResult:
    """The image's tags (the unique one first), the engine, and for a dry run the command instead of a build
    (``command`` None: built)."""

    name: str
    tags: tuple[str, ...]
    engine: str
    command: tuple[str, ...] | None


# --------------------------------------------------------------------------- shared steps


def _pins(images: ImageOptions, settings: Settings | None, locks: Sequence[Lock], note: Say) -> PinTable:
    """The recorded digests and action commits; with ``resolve_digests``, every image's digest read just now."""
    from envbuilder.model.images import load_pin_table
    from envbuilder.render.dockerfile import default_base, uv_image

    pins = load_pin_table(images.matrix_dirs)
    if not images.resolve_digests:
        return pins
    from envbuilder.edge.registry import resolve_digests

    refs = [images.uv_image or uv_image(pins), *(images.base_image or default_base(lock, pins).image for lock in locks)]
    ca = settings.ca_certs[0] if settings and settings.ca_certs else None
    resolved = resolve_digests(refs, ca_cert=ca)
    for image, digest in resolved.items():
        note(f"resolved {image} to {digest}")
    return pins.with_resolved(resolved)


def context_options(
    images: ImageOptions, settings: Settings | None, locks: Sequence[Lock], *, note: Say = _quiet
) -> Options:
    """The renderer's options for ``locks``: the images, the index a build uses (``settings``), the pins."""
    from envbuilder.render.dockerfile import Options

    return Options(
        base_image=images.base_image,
        uv_image=images.uv_image,
        index_url=settings.index_url if settings else None,
        pins=_pins(images, settings, locks, note),
    )


def smoke_table(images: ImageOptions) -> SmokeTable:
    """The smoke program's bounds and import names (matrices/smoke.toml and any overlay)."""
    from envbuilder.model.smoke import load_smoke_table

    return load_smoke_table(images.matrix_dirs)


def _get_lock(source: LockSource, settings: Settings, workdir: Path, *, progress: Say, note: Say) -> tuple[Lock, str]:
    """The lock file, or a fresh lock of the target (written into ``workdir``; raises ``NoPlanFound`` when no
    plan works)."""
    from envbuilder.model.lock import lock_file_name, parse_lock, read_lock_text

    if isinstance(source, LockFile):
        return read_lock_text(source.path, hint="check the path, or leave --lock out to lock the target")
    from envbuilder.jobs import lock as job

    out = workdir / "pylock.new.toml"
    req = job.LockRequest(target=source.target, name=source.name, output=out)  # a fresh directory: nothing to replace
    result = job.lock(req, source.matrix, settings, progress=progress, note=note)
    text = out.read_text(encoding="utf-8")
    return parse_lock(text, Path(lock_file_name(result.name))), text


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


def copy_wheels(lock: Lock, settings: Settings, wheels: Path) -> bool:
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


# --------------------------------------------------------------------------- the steps


def dockerfile(
    request: DockerfileRequest,
    settings: Settings,
    *,
    note: Say = _quiet,
    lock_progress: Say = _quiet,
    lock_note: Say = _quiet,
) -> DockerfileResult:
    """Write the build context of ``request.source`` (``lock_progress``/``lock_note``: the lock step's lines;
    ``note``: the digests read with ``resolve_digests``)."""
    from envbuilder.model.lock import lock_file_name
    from envbuilder.render.dockerfile import image_tag, render_context

    with tempfile.TemporaryDirectory(prefix="envbuilder-dockerfile-") as tmp:
        lock, text = _get_lock(request.source, settings, Path(tmp), progress=lock_progress, note=lock_note)
    options = context_options(request.images, settings, [lock], note=note)
    files = render_context(lock, text, options=options, table=smoke_table(request.images))
    out = request.output if request.output is not None else Path("docker") / lock.tool.name
    check_outputs(out, files, force=request.force)
    write_context(out, files)
    lock_file = out / lock_file_name(lock.tool.name)
    return DockerfileResult(lock.tool.name, out, lock_file, image_tag(lock), tuple(sorted(files)))


def build(
    request: ImageBuildRequest,
    settings: Settings,
    *,
    progress: Say = _quiet,
    note: Say = _quiet,
    lock_progress: Say = _quiet,
    lock_note: Say = _quiet,
) -> ImageBuildResult:
    """Build the image of ``request.source`` (its smoke step runs in the build), or with ``dry_run`` only say
    the command; ``note`` says what the build leaves out (index credentials) and the digests read."""
    from envbuilder.edge import containers

    parent = Path(tempfile.gettempdir())
    with tempfile.TemporaryDirectory(prefix="envbuilder-build-", dir=parent) as tmp:
        lock, text = _get_lock(request.source, settings, Path(tmp), progress=lock_progress, note=lock_note)
        spec = _build_spec(request, lock, text, settings, Path(tmp) / "context", note)
        for line in settings.notes:
            note(line)
        if settings.credentials and request.netrc is None:
            # Build arguments are recorded in the image's history: credentials enter a build only as a secret.
            note("the index credentials are not passed into the build; give them as --netrc FILE (a build secret)")
        if request.dry_run:
            backend = containers.Podman() if request.engine == "podman" else containers.Docker()
            command = tuple(backend.build_argv(spec))
            return ImageBuildResult(lock.tool.name, tuple(spec.tags), backend.name, command)
        engine = containers.choose_engine(request.engine)
        progress(f"building {spec.tags[0]} with {engine.name} (the build runs the image's smoke step)")
        containers.build(engine, spec)
    return ImageBuildResult(lock.tool.name, tuple(spec.tags), engine.name, None)


def _build_spec(
    request: ImageBuildRequest, lock: Lock, text: str, settings: Settings, context: Path, note: Say
) -> BuildRequest:
    """Write the context (the wheelhouse files the lock installs included) and say how the engine builds it."""
    from envbuilder.edge import containers
    from envbuilder.render.dockerfile import build_args, image_tags, render_context

    options = context_options(request.images, settings, [lock], note=note)
    write_context(context, render_context(lock, text, options=options, table=smoke_table(request.images)))
    covered = copy_wheels(lock, settings, context / "wheels")
    secrets = {"ca": Path(settings.ca_certs[0])} if settings.ca_certs else {}
    if request.netrc is not None:
        secrets["netrc"] = request.netrc
    return containers.BuildRequest(
        context=context,
        tags=image_tags(lock, request.repository),
        build_args=build_args(lock, options, wheelhouse_serves_all=covered),
        secrets=secrets,
        no_cache=request.no_cache,
        stream=request.stream,
    )
