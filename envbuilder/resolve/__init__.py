"""The resolver: (target, matrix, sources) -> Plan | NoPlan. Pure: no subprocess, network or files.

It enumerates torch builds, bitsandbytes releases and companions, applies hard constraints (driver runs the
CUDA build natively or by minor-version compatibility; SASS covers every GPU by the same-major rule, or PTX can
be JIT-compiled; the library bitsandbytes would actually load exists and covers every GPU; Python ranges;
platforms; companion minimums; what the sources can serve), then ranks what is left: proven on a real GPU,
confirmed facts, newer torch, fewer sources, newer bitsandbytes.

This module is the entry (each Python in turn: search, rank, explain; on no plan, relax one constraint at a
time); the parts sit beside it: ``plan`` (the answer's values), ``sources`` (what the sources serve),
``search`` with ``companions`` (the candidates and the rules that reject them), ``ranking`` (the one order)
and ``explanation`` (reasons, warnings, alternatives).
"""

from __future__ import annotations

from dataclasses import replace

from envbuilder.model.matrix import Matrix
from envbuilder.model.plan import NoPlan, Package, Plan, Rejection, RejectionKind
from envbuilder.model.target import Target
from envbuilder.model.types import is_index_url
from envbuilder.resolve.companions import companion_needs
from envbuilder.resolve.explanation import (
    Relaxed,
    alternative_text,
    explain,
    no_plan_reasons,
    plan_warnings,
    torch_note,
)
from envbuilder.resolve.ranking import rank, why_lower
from envbuilder.resolve.search import (
    Option,
    advisories_of,
    bnb_library,
    options_for,
    packages_of,
    torch_candidates,
    torch_version_for,
)
from envbuilder.resolve.sources import Sources, index_variants, wheelhouse_serves
from envbuilder.rules import formats

__all__ = [
    "NoPlan",
    "Package",
    "Plan",
    "Rejection",
    "RejectionKind",
    "Sources",
    "advisories_of",
    "companion_needs",
    "index_variants",
    "nearest_alternatives",
    "resolve",
    "torch_version_for",
    "wheelhouse_serves",
]


def resolve(target: Target, matrix: Matrix, sources: Sources | None = None) -> Plan | NoPlan:
    """The best plan for the target, or why none exists (with the nearest workable alternatives).

    Among the plans that work, one order decides (README "Ranking"), each step explained when it decides:
    1. no known security advisory against a pin (matrices/advisories.toml);
    2. proven by a smoke test on matching hardware (same compute capability, CPU architecture, OS, Python
       minor, torch build, bitsandbytes or GPTQ/AWQ library, transformers minor);
    3. resting on confirmed facts only (a companion whose requirements were not read is unconfirmed);
    4. the newest torch the GPU's kernels allow among the reachable sources;
    5. fewer indexes (a release whose own PyPI build is the CUDA variant needed);
    6. native driver support over minor-version compatibility;
    7. the newer bitsandbytes.
    A plan that must use an old or vulnerable torch says why in one warning line.
    """
    sources = sources or Sources(pytorch_index=matrix.pytorch_index)
    result = _resolve(target, matrix, sources)
    if isinstance(result, NoPlan):
        return replace(result, nearest=nearest_alternatives(target, matrix, sources))
    return result


def _resolve(target: Target, matrix: Matrix, sources: Sources) -> Plan | NoPlan:
    rejected: list[Rejection] = []
    fallback: tuple[str, list[Option]] | None = None
    for python in target.pythons:
        torches, rej = torch_candidates(matrix, target, sources, python)
        rejected += rej
        options: list[Option] = []
        for cand in torches:
            found, rej2 = options_for(matrix, target, sources, cand)
            if not found:
                rejected += rej2[-1:]  # the torch build's verdict; its bnb rejections are noise here
            options += found
        if any(rank(o)[0] for o in options):
            return _plan(target, matrix, python, options, rejected)
        if options:
            # Only PyPI's CUDA torch for the cpu profile: a later Python with a real CPU build comes first.
            fallback = fallback or (python, options)
            why = "only PyPI's CUDA build of torch serves the cpu profile"
            rejected.append(Rejection("Python", python, why, "ranked"))
            continue
        rejected.append(Rejection("Python", python, "no combination works with it", "exhausted"))
    if fallback is not None:
        return _plan(target, matrix, fallback[0], fallback[1], rejected)
    return NoPlan(
        target=target, reasons=no_plan_reasons(target, rejected), rejected=tuple(rejected), matrix_digest=matrix.digest
    )


_LOWER = "works, but ranked lower"


def _plan(target: Target, matrix: Matrix, python: str, options: list[Option], rejected: list[Rejection]) -> Plan:
    options.sort(key=rank, reverse=True)
    best = options[0]
    lower = [o for o in options[1:] if o.torch.label != best.torch.label or o.companions != best.companions]
    ranked_lower = [
        Rejection("torch", o.torch.local, f"{_LOWER}: {why_lower(best, o)}", "ranked", _LOWER) for o in lower[:5]
    ]
    all_rejected = [*rejected, *best.rejected, *ranked_lower]
    pkgs = packages_of(best, target)
    extra = tuple(dict.fromkeys(p.index for p in pkgs if is_index_url(p.index)))
    reasons, pin_reasons = explain(best, target, python)
    return Plan(
        target=target,
        python=python,
        cuda=best.torch.build.cuda,
        variant=best.torch.build.variant,
        packages=pkgs,
        reasons=reasons,
        pin_reasons=pin_reasons,
        rejected=tuple(all_rejected),
        warnings=plan_warnings(best, target, torch_note(best, matrix, target, python, all_rejected)),
        bnb_library=bnb_library(best, target),
        proven=best.proven,
        confirmed=best.confirmed,
        matrix_digest=matrix.digest,
        extra_indexes=extra,
        formats=formats.ordered(profile.formats) if (profile := matrix.profile(target.profile)) else (),
    )


def nearest_alternatives(target: Target, matrix: Matrix, sources: Sources) -> tuple[str, ...]:
    """Relax one constraint at a time and say what would work then."""
    tries: list[tuple[Relaxed, Target, Sources]] = []
    if target.driver:
        tries.append(("driver", replace(target, driver=None), sources))
    if target.torch_spec is not None or target.bnb_spec is not None:
        tries.append(("pins", replace(target, torch_spec=None, bnb_spec=None), sources))
    tries.append(("python", replace(target, pythons=("3.13", "3.12", "3.11", "3.10", "3.9")), sources))
    if sources.pytorch_index is None:
        tries.append(("sources", target, replace(sources, pytorch_index=matrix.pytorch_index)))
    out: list[str] = []
    for what, t, s in tries:
        plan = _resolve(t, matrix, s)
        if isinstance(plan, Plan):
            out.append(alternative_text(what, plan, matrix))
    return tuple(dict.fromkeys(out))
