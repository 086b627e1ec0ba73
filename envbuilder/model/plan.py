"""The resolver's answer: a ``Plan`` (exact pins, their sources, every reason) or a ``NoPlan`` (why nothing works,
and the nearest alternatives), with the ``Package`` pins and ``Rejection`` reasons they carry. Values only: the
JSON contract ``envbuilder.plan/1`` is their ``to_json``. The resolver (``resolve/``) makes them; the lock, the
renderers, the doctor and the jobs read them, so they sit with the other values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from envbuilder.model.matrix import GpuRun, ProfileFormat, format_json
from envbuilder.model.target import Target

__all__ = ["NoPlan", "Package", "Plan", "Rejection", "RejectionKind"]


@dataclass(frozen=True, slots=True)
class Package:
    """One exact pin and where it comes from: ``PYPI``, ``WHEELHOUSE`` (model.types) or an index URL."""

    name: str
    version: str
    index: str
    confirmed: bool = True

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version, "index": self.index, "confirmed": self.confirmed}


# The rule that refused a candidate. The explanation sorts and groups on it, never on the sentence.
RejectionKind = Literal[
    "python",  # no build or release for this Python
    "platform",  # no build for this OS and machine (or a CPU torch build for a GPU)
    "driver",  # the driver cannot drive the GPU or run the CUDA build
    "arch",  # no SASS (or usable PTX) for a GPU: torch, the bitsandbytes library, a GPTQ/AWQ library's kernels
    "source",  # no configured source serves it (the PyTorch index not configured or unreachable)
    "listing",  # the PyTorch index or mirror was read, and its page lists no such wheel
    "pins",  # outside --torch / --bnb
    "avoided",  # the matrix advises against the release (bitsandbytes.toml ``avoid``)
    "bitsandbytes",  # rules.bnb refused the release, or no release works with this torch build
    "quant",  # no GPTQ/AWQ library release works with this torch build
    "requirement",  # a requirement (declared, or the matrix's) that the pins so far break
    "companion",  # no companion versions fit
    "profile",  # the release is not for this profile
    "loader",  # transformers' quantizer for a format the profile loads needs what the pins lack
    "failed",  # a real GPU run of this very combination failed
    "ranked",  # it works, but the chosen plan ranks higher
    "exhausted",  # every combination for this Python was refused
]


@dataclass(frozen=True, slots=True)
class Rejection:
    """A candidate the resolver refused (``name`` and ``version``: "torch", "2.14.1+cu126"; the version ""
    for a whole set, as the releases outside --torch), why, and the rule that refused it (``kind``).

    ``headline`` is the reason in short where the why carries a detail, so that like rejections count as one
    reason ("failed a smoke test on RTX 3090 on 2026-11-02", whatever each run's message); "" when the why is
    its own headline."""

    name: str
    version: str
    why: str
    kind: RejectionKind
    headline: str = ""

    @property
    def candidate(self) -> str:
        return f"{self.name} {self.version}" if self.version else self.name

    def to_json(self) -> dict[str, str]:
        return {"candidate": self.candidate, "why": self.why}


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """The resolver's answer: exact pins, their sources, and every reason."""

    target: Target
    python: str
    cuda: str | None
    variant: str
    packages: tuple[Package, ...]
    reasons: tuple[str, ...]
    rejected: tuple[Rejection, ...]
    warnings: tuple[str, ...] = ()
    bnb_library: str | None = None
    proven: tuple[GpuRun, ...] = ()
    confirmed: bool = True
    matrix_digest: str = ""
    extra_indexes: tuple[str, ...] = field(default=())
    formats: tuple[ProfileFormat, ...] = ()  # what the profile's environment loads and makes (profiles.toml)
    pin_reasons: tuple[tuple[str, str], ...] = ()  # (package, its reason among ``reasons``); not in the JSON

    @property
    def profile(self) -> str:
        return self.target.profile

    def package(self, name: str) -> Package | None:
        return next((p for p in self.packages if p.name == name), None)

    def reason_for(self, name: str) -> str:
        """The reason the plan gives for that package's pin ("" for one only another pins: numpy, ...)."""
        return next((why for pkg, why in self.pin_reasons if pkg == name), "")

    def to_json(self) -> dict[str, object]:
        return {
            "schema": "envbuilder.plan/1",
            "ok": True,
            "profile": self.profile,
            "target": self.target.to_json(),
            "python": self.python,
            "cuda": self.cuda,
            "variant": self.variant,
            "packages": [p.to_json() for p in self.packages],
            "indexes": list(self.extra_indexes),
            "bnb_library": self.bnb_library,
            "confirmed": self.confirmed,
            "proven": [{"date": e.date, "gpu": e.gpu, "driver": e.driver, "source": e.source} for e in self.proven],
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "rejected": [r.to_json() for r in self.rejected],
            "formats": [format_json(f) for f in self.formats],
            "matrix_digest": self.matrix_digest,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class NoPlan:
    """No combination can work: the constraints that ruled everything out, and the nearest alternatives."""

    target: Target
    reasons: tuple[str, ...]
    rejected: tuple[Rejection, ...]
    nearest: tuple[str, ...] = ()
    matrix_digest: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "schema": "envbuilder.plan/1",
            "ok": False,
            "profile": self.target.profile,
            "target": self.target.to_json(),
            "python": None,
            "cuda": None,
            "packages": [],
            "reasons": list(self.reasons),
            "rejected": [r.to_json() for r in self.rejected],
            "nearest": list(self.nearest),
            "matrix_digest": self.matrix_digest,
        }
