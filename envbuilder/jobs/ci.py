"""The CI step: a build context per environment of the manifest, a docker-bake.hcl over them, and a GitHub
Actions workflow that builds and pushes every image (the locks are the manifest's ``pylock.<env>.toml``).

Typed in (``CiRequest``), typed out (``CiResult``). Every file is checked before the first is written: no
user's file is replaced unless ``force``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envbuilder.jobs.image import ImageOptions
    from envbuilder.model.lock import Lock

__all__ = ["BAKE_FILE", "WORKFLOW_FILE", "CiRequest", "CiResult", "ci"]

Say = Callable[[str], None]
BAKE_FILE = "docker-bake.hcl"
WORKFLOW_FILE = ".github/workflows/envbuilder-images.yml"


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class CiRequest:
    """The CI files for the manifest at ``manifest`` (None: none was found, refused): its locks are in ``locks``
    (default: beside it), the files go to ``output`` (default: beside it); ``registry`` is where the images are
    pushed (default: the bake file's localhost:5000/envbuilder, the workflow's GHCR under the repository
    owner); ``force`` replaces files envbuilder did not write."""

    manifest: Path | None
    images: ImageOptions
    locks: Path | None = None
    output: Path | None = None
    registry: str | None = None
    force: bool = False


@dataclass(frozen=True, slots=True)
class CiResult:
    """What was written: the bake file, the workflow, a build context per image (``output``/docker/<name>),
    and the images' environment names, in the manifest's order."""

    manifest: Path
    output: Path
    bake: Path
    workflow: Path
    contexts: tuple[Path, ...]
    images: tuple[str, ...]


def ci(request: CiRequest, *, note: Say = _quiet) -> CiResult:
    """Render and write every context, the bake file and the workflow (``note``: the digests read)."""
    from envbuilder.edge._fs import write_text_atomic
    from envbuilder.edge.manifest import load_manifest
    from envbuilder.jobs.image import check_outputs, context_options, smoke_table, write_context
    from envbuilder.model.errors import LockError
    from envbuilder.render.ci import DEFAULT_REGISTRY, CiImage, render_bake, render_workflow
    from envbuilder.render.dockerfile import render_context

    if request.manifest is None:
        msg = "no envbuilder.toml (or [tool.envbuilder] in pyproject.toml) here or in a parent directory"
        raise LockError(msg, hint="create one with `envbuilder lock --gpu ... --name N --save`, or give --manifest")
    manifest = load_manifest(request.manifest)
    out = request.output if request.output is not None else request.manifest.parent
    table = smoke_table(request.images)
    locks = _locks(request.manifest, [spec.name for spec in manifest.envs], request.locks)
    options = context_options(request.images, None, [lock for lock, _ in locks.values()], note=note)
    images, contexts = [], {}
    for name, (lock, text) in locks.items():
        rel = f"docker/{name}"
        contexts[rel] = render_context(lock, text, options=options, table=table)
        images.append(CiImage(lock=lock, context=rel))
    bake = render_bake(images, registry=request.registry or DEFAULT_REGISTRY)
    workflow = render_workflow(images, pins=options.pins, registry=request.registry)
    check_outputs(out, [BAKE_FILE, WORKFLOW_FILE], force=request.force)
    for rel, files in contexts.items():
        check_outputs(out / rel, files, force=request.force)
    for rel, files in contexts.items():
        write_context(out / rel, files)
    write_text_atomic(out / BAKE_FILE, bake)
    write_text_atomic(out / WORKFLOW_FILE, workflow)
    return CiResult(
        request.manifest,
        out,
        out / BAKE_FILE,
        out / WORKFLOW_FILE,
        tuple(out / rel for rel in contexts),
        tuple(image.lock.tool.name for image in images),
    )


def _locks(manifest: Path, names: list[str], directory: Path | None) -> dict[str, tuple[Lock, str]]:
    """Each environment's lock and its text, from ``directory`` (default: beside the manifest)."""
    from envbuilder.model.errors import LockError
    from envbuilder.model.lock import manifest_lock_path, read_lock_text

    locks_dir = directory if directory is not None else manifest.parent
    locks = {}
    for name in names:
        path = manifest_lock_path(locks_dir, name)
        if not path.is_file():
            msg = f"{path}: no lock for environment {name!r}"
            raise LockError(msg, hint=f"run `envbuilder lock --manifest {manifest}` first")
        locks[name] = read_lock_text(path)  # one read: the lock verified is the text the context copies
    return locks
