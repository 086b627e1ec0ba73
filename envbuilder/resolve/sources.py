"""What the configured package sources can serve (PyPI, the PyTorch index or its mirror, wheelhouses): the
``Sources`` value the edge gathers (edge/sources.py) and the resolver reads, and the wheel-tag test both use."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from packaging.version import InvalidVersion

from envbuilder.model.matrix import Matrix
from envbuilder.model.target import Target
from envbuilder.rules._version import within as _in

__all__ = ["Sources", "index_variants", "wheel_fits", "wheelhouse_serves"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sources:
    """What the configured package sources can serve; gathered at the edge, read here.

    ``pytorch_index`` is the base of the PyTorch index or its mirror (variant index = base/variant), or None
    when it is not configured or unreachable. ``wheelhouse`` lists wheel file names found in --find-links dirs.
    ``pytorch_files`` is what the index's torch pages list, by variant (``cpu`` -> wheel file names of
    ``<base>/cpu/torch/``): a variant missing from it is a page that could not be read, whose builds are then the
    matrix's assumption and rank below listed ones; None means the pages were not asked for (the matrix decides).
    """

    pytorch_index: str | None  # required: the matrix's (Matrix.pytorch_index) or the user's mirror, or None
    pypi: bool = True
    wheelhouse: tuple[str, ...] = ()
    wheelhouse_dirs: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    pytorch_files: Mapping[str, tuple[str, ...]] | None = None

    def describe(self) -> str:
        parts = ["PyPI" if self.pypi else "no PyPI (offline)"]
        parts.append(f"PyTorch index {self.pytorch_index}" if self.pytorch_index else "no PyTorch index")
        if self.wheelhouse_dirs:
            parts.append(f"wheelhouse {', '.join(self.wheelhouse_dirs)} ({len(self.wheelhouse)} wheels)")
        return "; ".join(parts)


def wheel_fits(filename: str, name: str, version: str, python: str, platform: str) -> bool:
    """Does a wheel file serve ``name==version`` for CPython ``python`` on ``platform``?"""
    from packaging.utils import parse_wheel_filename  # brings packaging.tags: only when a wheelhouse is read

    try:
        wname, wversion, _, tags = parse_wheel_filename(filename)
    except (ValueError, InvalidVersion):
        return False
    if wname != name or str(wversion) != version:
        return False
    cp = "cp" + python.replace(".", "")
    system, machine = platform.split("-", 1)
    for tag in tags:
        py_ok = tag.interpreter in {cp, "py3"} or (tag.abi == "abi3" and tag.interpreter <= cp)
        plat = tag.platform
        plat_ok = plat == "any" or (
            machine in plat and (("linux" in plat) if system == "linux" else plat.startswith("win"))
        )
        if py_ok and plat_ok:
            return True
    return False


def wheelhouse_serves(sources: Sources, name: str, version: str, python: str, platform: str) -> bool:
    return any(wheel_fits(f, name, version, python, platform) for f in sources.wheelhouse)


def index_variants(target: Target, matrix: Matrix) -> tuple[str, ...]:
    """The torch variants a plan for ``target`` could take from the PyTorch index: the pages worth reading."""
    gpu = bool(target.gpus)
    found = [
        b.variant
        for rel in matrix.torch_releases
        if _in(target.torch_spec, rel.version)
        for b in matrix.builds_of(rel)
        if (b.variant != "cpu") == gpu and target.platform in b.platforms
    ]
    return tuple(sorted(set(found)))
