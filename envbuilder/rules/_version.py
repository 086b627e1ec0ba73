"""Version parsing and range checks, kept by identity: the resolver asks the same few hundred pairs thousands of
times per resolve, and parsing dominates its time."""

from __future__ import annotations

from functools import lru_cache

from packaging.specifiers import SpecifierSet
from packaging.version import Version


@lru_cache(maxsize=4096)
def v(text: str) -> Version:
    return Version(text)


def major(version: str) -> int:
    return v(version).major


def minor(version: str) -> str:
    """The release series: "5.17" of 5.17.2 (a smoke test's transformers, a preferred pick)."""
    parsed = v(version)
    return f"{parsed.major}.{parsed.minor}"


_CONTAINS: dict[tuple[int, str], tuple[SpecifierSet, bool]] = {}


def within(spec: SpecifierSet | None, version: str) -> bool:
    """``version`` in ``spec`` (None: any). The answer is kept by the range's identity (hashing a SpecifierSet
    costs more than the check), with the range itself so that its id cannot be reused."""
    if spec is None:
        return True
    key = (id(spec), version)
    hit = _CONTAINS.get(key)
    if hit is None or hit[0] is not spec:
        hit = (spec, spec.contains(v(version), prereleases=True))
        _CONTAINS[key] = hit
    return hit[1]
