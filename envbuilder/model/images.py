"""What generated files pull from elsewhere, pinned (``matrices/images.toml``): uv, image digests, action commits.

A Dockerfile names uv's image and its base images, a recipe uv's installer, the workflow of ``envbuilder ci``
its actions. These are facts that move (a release comes out, a tag is rebuilt, a version tag is re-pointed), so
they live in the matrix with their source: uv by its release, an image by the digest of its index, an action by
the commit its release tag points at. The renderers take a ``PinTable`` (or the values read from it) and stay
pure; ``envbuilder dockerfile/ci --resolve-digests`` adds digests read from the registry at render time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envbuilder.model.errors import MatrixError
from envbuilder.model.matrix import Fact, _load_file, _read_all, _Row, _rows, matrix_dirs

__all__ = [
    "IMAGES_FILE",
    "UV_VERSION_PATTERN",
    "ActionPin",
    "CudaDevelImage",
    "ImageDigest",
    "PinTable",
    "UvRelease",
    "load_pin_table",
    "parse_pin_table",
]

IMAGES_FILE = "images"  # matrices/images.toml
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_USES = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_VERSION = re.compile(r"^v\d+(?:\.\d+){0,2}$")
_REF = re.compile(r"^[a-z0-9][a-z0-9._/:-]{0,254}$")
_CUDA = re.compile(r"^\d{1,2}\.\d{1,2}$")
# uv's release as its image tag and installer URL spell it; render.values checks a recipe's value with it too.
UV_VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+$")


@dataclass(frozen=True, slots=True, kw_only=True)
class UvRelease(Fact):
    """The uv release generated files install (``"0.13.9"``): the image's uv stage and the recipes' installer;
    ``min_version``: the oldest uv a recipe accepts when one is already on PATH (pylock.toml support)."""

    version: str
    min_version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageDigest(Fact):
    """``ref`` (``name:tag`` as a renderer writes it) is the index with ``digest``."""

    ref: str
    digest: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionPin(Fact):
    """``uses`` at ``version`` is the commit ``commit``; ``runtime`` is what its action.yml runs on."""

    uses: str
    version: str
    commit: str
    runtime: str

    @property
    def pinned(self) -> str:
        """``owner/name@<commit>``: what a workflow's ``uses:`` names (the version goes in a comment)."""
        return f"{self.uses}@{self.commit}"


@dataclass(frozen=True, slots=True, kw_only=True)
class CudaDevelImage(Fact):
    """``ref`` is the CUDA devel image (nvcc and headers) for torch builds of CUDA ``cuda`` (``"12.8"``)."""

    cuda: str
    ref: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PinTable:
    uv: UvRelease | None = None  # None only in a table built by hand: ``uv_version`` refuses it
    images: tuple[ImageDigest, ...] = ()
    actions: tuple[ActionPin, ...] = ()
    cuda_devel: tuple[CudaDevelImage, ...] = ()
    resolved: Mapping[str, str] = field(default_factory=dict)  # ref -> digest read from the registry just now

    @property
    def uv_release(self) -> UvRelease:
        """images.toml's ``[uv]`` (a table without one is refused, exit 2)."""
        if self.uv is None:
            msg = f"{IMAGES_FILE}.toml: no [uv] table"
            hint = 'add one: [uv] version = "X.Y.Z", min-version, source, confidence (see matrices/SCHEMA.md)'
            raise MatrixError(msg, hint=hint)
        return self.uv

    @property
    def uv_version(self) -> str:
        """The uv release to install (``uv_release.version``)."""
        return self.uv_release.version

    def digest(self, ref: str) -> str | None:
        """The digest ``ref`` is pinned to: resolved now, else recorded, else None (stays a tag)."""
        if ref in self.resolved:
            return self.resolved[ref]
        return next((i.digest for i in self.images if i.ref == ref), None)

    def devel_image(self, cuda: str) -> str | None:
        """The CUDA devel image for torch's CUDA ``cuda``, or None where the table has none."""
        return next((d.ref for d in self.cuda_devel if d.cuda == cuda), None)

    def action(self, uses: str) -> ActionPin:
        found = next((a for a in self.actions if a.uses == uses), None)
        if found is None:
            msg = f"{IMAGES_FILE}.toml: no [[action]] row for {uses}"
            raise MatrixError(msg, hint=f"add one: uses = {uses!r}, version, commit, runtime, source")
        return found

    def with_resolved(self, resolved: Mapping[str, str]) -> PinTable:
        return PinTable(
            uv=self.uv,
            images=self.images,
            actions=self.actions,
            cuda_devel=self.cuda_devel,
            resolved={**self.resolved, **resolved},
        )


def _checked(r: _Row, key: str, pattern: re.Pattern[str], what: str) -> str:
    value = r.get(key, str)
    if not pattern.match(value):
        msg = f"{r.file}: {what} {value!r} in '{r.path}.{key}' is not valid"
        raise MatrixError(msg, hint="see matrices/SCHEMA.md (images.toml)")
    return value


def _uv(doc: Mapping[str, Any], label: str) -> UvRelease | None:
    table = doc.get("uv")
    if table is None:
        return None
    if not isinstance(table, Mapping):
        msg = f"{label}: 'uv' must be a table"
        raise MatrixError(msg, hint='write it as [uv] with version = "X.Y.Z", min-version (see matrices/SCHEMA.md)')
    r = _Row(table, label, "uv")
    uv = UvRelease(
        version=_checked(r, "version", UV_VERSION_PATTERN, "uv version"),
        min_version=_checked(r, "min-version", UV_VERSION_PATTERN, "uv min-version"),
        **r.fact(),
    )
    r.done()
    return uv


def _image(r: _Row) -> ImageDigest:
    return ImageDigest(
        ref=_checked(r, "ref", _REF, "image reference"),
        digest=_checked(r, "digest", _DIGEST, "digest"),
        **r.fact(),
    )


def _action(r: _Row) -> ActionPin:
    return ActionPin(
        uses=_checked(r, "uses", _USES, "action"),
        version=_checked(r, "version", _VERSION, "version"),
        commit=_checked(r, "commit", _COMMIT, "commit"),
        runtime=r.choice("runtime", ("node24", "composite", "docker")),
        **r.fact(),
    )


def _devel(r: _Row) -> CudaDevelImage:
    return CudaDevelImage(
        cuda=_checked(r, "cuda", _CUDA, "CUDA version"),
        ref=_checked(r, "ref", _REF, "image reference"),
        **r.fact(),
    )


def parse_pin_table(docs: Sequence[tuple[str, Mapping[str, Any]]]) -> PinTable:
    """Pure: the shipped document and its overlays, in order (a row with the same ref or action replaces, and
    an overlay's ``[uv]`` replaces the shipped one)."""
    uv: UvRelease | None = None
    images: dict[str, ImageDigest] = {}
    actions: dict[str, ActionPin] = {}
    devel: dict[str, CudaDevelImage] = {}
    for label, doc in docs:
        top = _Row(doc, label, "")
        top.seen.update(("schema-version", "uv", "image", "action", "cuda-devel"))
        top.done()
        uv = _uv(doc, label) or uv
        for i in _read_all(_rows(doc, label, "image", required=False), _image):
            images[i.ref] = i
        for a in _read_all(_rows(doc, label, "action", required=False), _action):
            actions[a.uses] = a
        for d in _read_all(_rows(doc, label, "cuda-devel", required=False), _devel):
            devel[d.cuda] = d
    return PinTable(
        uv=uv,
        images=tuple(images.values()),
        actions=tuple(actions.values()),
        cuda_devel=tuple(devel.values()),
    )


def load_pin_table(extra_dirs: Iterable[str | Path] | None = None) -> PinTable:
    """Read ``images.toml`` from the shipped matrix and every overlay directory that has one."""
    docs = []
    for i, directory in enumerate(matrix_dirs(extra_dirs)):
        path = directory / f"{IMAGES_FILE}.toml"
        if path.is_file() or i == 0:
            docs.append((f"{IMAGES_FILE}.toml" if i == 0 else str(path), _load_file(path)))
    return parse_pin_table(docs)
