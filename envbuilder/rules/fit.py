"""The companion-fit rule (pure): does every pin's declared requirement hold against the other pins?

A pin's requirements are what its metadata declares (``requires-dist`` in the matrix, as the reader read
it), including those under the extras the environment relies on (transformers' ``torch`` extra: 5.20+
declares ``torch>=2.6; extra == "torch"`` and switches torch off below it at import), plus the constraints
the matrix adds on evidence (an import-time floor such as transformers' bitsandbytes >= 0.46.1, a tested
cap). Markers are evaluated for the target: its Python, OS and CPU. uv's resolution cannot see the extras'
requirements (an extra not installed is not resolved), which is why this rule exists.

Written once; the resolver calls it while it picks companions and checks the finished plan with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

__all__ = [
    "Need",
    "added",
    "declared",
    "exact_pins",
    "first_unmet",
    "marker_environment",
]

_SYSTEMS = {
    "linux": ("linux", "Linux", "posix"),
    "windows": ("win32", "Windows", "nt"),
    "macos": ("darwin", "Darwin", "posix"),
}
_MACHINES = {("windows", "x86_64"): "AMD64", ("windows", "arm64"): "ARM64"}


@dataclass(frozen=True, slots=True)
class Need:
    """One requirement of a pin on another package."""

    owner: str  # "transformers 5.20.2"
    name: str  # canonical: "torch"
    spec: SpecifierSet
    why: str = ""  # "extra torch", or the matrix's reason for a constraint it adds

    def holds(self, version: str) -> bool:
        return self.spec.contains(version, prereleases=True)

    def text(self) -> str:
        """'transformers 5.20.2 needs torch >= 2.6 (extra torch)'."""
        spec = ", ".join(f"{s.operator} {s.version}" for s in sorted(self.spec, key=str)) or "any version"
        return f"{self.owner} needs {self.name} {spec}" + (f" ({self.why})" if self.why else "")


def marker_environment(platform: str, python: str) -> dict[str, str]:
    """PEP 508 marker variables for CPython ``python`` ("3.12") on a matrix platform ("linux-x86_64")."""
    system, machine = platform.split("-", 1)
    sys_platform, platform_system, os_name = _SYSTEMS.get(system, (system, system, "posix"))
    return {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "implementation_version": f"{python}.0",
        "platform_python_implementation": "CPython",
        "sys_platform": sys_platform,
        "platform_system": platform_system,
        "platform_machine": _MACHINES.get((system, machine), machine),
        "os_name": os_name,
        "platform_release": "",
        "platform_version": "",
    }


def _applies(req: Requirement, env: Mapping[str, str], extras: Sequence[str]) -> str | None:
    """None when the requirement does not apply; else the extra it comes with ("" for a hard requirement)."""
    if req.marker is None:
        return ""
    if "extra" not in str(req.marker):
        return "" if req.marker.evaluate(dict(env)) else None
    return next((e for e in extras if req.marker.evaluate({**env, "extra": e})), None)


def declared(owner: str, requires: Iterable[Requirement], extras: Sequence[str], env: Mapping[str, str]) -> list[Need]:
    """The declared requirements that apply in ``env`` with ``extras`` (a requirement with no version range
    still counts: it names a package the environment must hold)."""
    out = []
    for req in requires:
        extra = _applies(req, env, extras)
        if extra is not None:
            out.append(Need(owner, canonicalize_name(req.name), req.specifier, f"extra {extra}" if extra else ""))
    return out


def added(owner: str, constraints: Mapping[str, SpecifierSet], why: str) -> list[Need]:
    """Constraints the matrix adds to a pin beyond its metadata (each row says why in its source)."""
    return [Need(owner, canonicalize_name(name), spec, why) for name, spec in constraints.items()]


def first_unmet(needs: Iterable[Need], pins: Mapping[str, str]) -> Need | None:
    """The first need that another pin contradicts (a package not pinned is left to the installer)."""
    return next((n for n in needs if n.name in pins and not n.holds(pins[n.name])), None)


def exact_pins(needs: Iterable[Need]) -> dict[str, str]:
    """Packages the needs pin to one version (``compressed-tensors==0.19.0``): the plan pins them too."""
    out: dict[str, str] = {}
    for need in needs:
        exact = [s.version for s in need.spec if s.operator == "=="]
        if exact and need.name not in out:
            out[need.name] = exact[0]
    return out
