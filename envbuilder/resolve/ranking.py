"""The one ranking order among the options that work (README "Ranking"; ``resolve()``'s docstring), and the step
of it that put an option below the chosen one. The two are kept in step: ``why_lower`` reads the keys in
``rank``'s order."""

from __future__ import annotations

from envbuilder.model.types import PYPI
from envbuilder.resolve.search import Option
from envbuilder.rules._version import v as _v

__all__ = ["rank", "why_lower"]


def rank(option: Option) -> tuple[object, ...]:
    """The one ranking order (README "Ranking"; DESIGN.md): among plans that work, prefer no known advisory,
    then proof on matching hardware, then confirmed facts, then the newest torch the GPU's kernels allow
    among the reachable sources, then fewer indexes, then native driver support over minor-version
    compatibility, then the newer bitsandbytes."""
    t = option.torch
    cuda = _v(t.build.cuda) if t.build.cuda else _v("0")
    bnb = _v(option.bnb.version) if option.bnb else _v("0")
    # A GPU target only ever gets GPU builds; for the cpu profile a real CPU build beats PyPI's CUDA build.
    right_kind = bool(option.torch.build.cuda) == bool(option.torch.target_has_gpu)
    return (
        right_kind,
        # Fewer known advisories: none beats one (a torch < 2.10) beats two (a torch < 2.6).
        -len(option.advisories),
        bool(option.proven),
        option.confirmed,
        # Confirmed too: a file the source's own listing shows beats one the matrix only assumes it holds.
        t.listed,
        _v(t.release.version),
        # Issue 2: a release whose own PyPI build is the CUDA variant needed needs no extra index.
        t.index == PYPI,
        t.native,
        bnb,
        cuda,
    )


def why_lower(best: Option, other: Option) -> str:
    """The first step of the ranking order that tells the two apart (keys in ``rank`` order)."""
    b, o = best.torch, other.torch
    steps: tuple[tuple[bool, str], ...] = (
        (
            len(best.advisories) != len(other.advisories),
            ", ".join(a.id for a in other.advisories if a not in best.advisories) + " affects it",
        ),
        (bool(best.proven) != bool(other.proven), "the chosen one is proven on matching hardware"),
        (best.confirmed != other.confirmed, "it rests on unconfirmed facts"),
        (b.listed != o.listed, "its index page could not be read, so that the index holds it is unconfirmed"),
        (b.release.version != o.release.version, f"torch {b.release.version} is newer"),
        ((b.index == PYPI) != (o.index == PYPI), "the chosen build comes from PyPI, with no extra index"),
        (b.native != o.native, "the chosen build runs natively on the driver"),
    )
    return next((why for differs, why in steps if differs), "a newer bitsandbytes or CUDA fits the chosen one")
