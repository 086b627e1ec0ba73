"""The rest of a stack once torch and bitsandbytes are chosen: the companions (transformers, peft, ...), the
profile's GPTQ/AWQ libraries and what they pin exactly, and the loaders transformers needs for each format the
profile loads. Each is picked newest first among the rows whose requirements hold against the pins so far
(rules.fit), and whose pins' requirements hold against it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from envbuilder.model.matrix import Companion, Matrix, Quantizer, QuantLib
from envbuilder.model.plan import Rejection, RejectionKind
from envbuilder.model.target import Target
from envbuilder.model.types import QUANT_STATUSES
from envbuilder.rules import fit, formats
from envbuilder.rules._version import minor as _minor
from envbuilder.rules._version import v as _v
from envbuilder.rules._version import within as _in
from envbuilder.rules.fit import Need

if TYPE_CHECKING:  # annotations only: search imports this module to complete each torch build's stack
    from envbuilder.resolve.search import TorchCandidate

__all__ = ["Picking", "companion_needs", "rest_of_stack", "with_quant"]


Misfit = tuple[str, RejectionKind]  # why a release does not fit, and the rule: ("needs Python >=3.11", "python")

_NEEDS: dict[tuple[int, tuple[tuple[str, str], ...]], tuple[object, list[Need]]] = {}


def companion_needs(c: Companion | QuantLib, env: Mapping[str, str]) -> list[Need]:
    """What a pin requires of the others: its declared requirements (with the extras the profiles rely on) and
    the constraints the matrix adds (an import-time floor, a tested cap: the row's source says why)."""
    key = (id(c), tuple(sorted(env.items())))
    hit = _NEEDS.get(key)
    if hit is None or hit[0] is not c:
        hit = (c, _companion_needs(c, env))  # the row is kept with its answer, so its id cannot be reused
        _NEEDS[key] = hit
    return list(hit[1])


def _companion_needs(c: Companion | QuantLib, env: Mapping[str, str]) -> list[Need]:
    owner = f"{c.name} {c.version}"
    needs = fit.declared(owner, c.requires_dist or (), c.extras, env)
    extra = dict(c.requires)
    if c.torch is not None:
        extra["torch"] = c.torch
    return [*needs, *fit.added(owner, extra, "")]


@dataclass
class Picking:
    """The pins chosen so far for one torch build and what they require of the rest."""

    pins: dict[str, str]
    needs: list[Need]
    env: Mapping[str, str]


def _pick_companions(
    matrix: Matrix,
    target: Target,
    torch: TorchCandidate,
    names: Sequence[str],
    picking: Picking,
    prefer: Mapping[str, str] | None = None,
) -> tuple[list[Companion], list[Rejection]]:
    """Newest first, each companion whose requirements hold against the pins so far, and theirs against it;
    ``prefer`` ({"transformers": "5.17"}) tries that minor first (a proven combination)."""
    chosen: list[Companion] = []
    rejected: list[Rejection] = []
    for name in names:
        # A release whose requirements were not read is unconfirmed: it ranks below every confirmed one.
        rows = sorted(
            (c for c in matrix.companions if c.name == name), key=lambda c: (c.confirmed, _v(c.version)), reverse=True
        )
        wanted = (prefer or {}).get(name)
        if wanted:
            rows = [c for c in rows if _minor(c.version) == wanted] + [c for c in rows if _minor(c.version) != wanted]
        pick = None
        for c in rows:
            misfit = _companion_misfit(c, target, torch, picking)
            if misfit is not None:
                rejected.append(Rejection(c.name, c.version, *misfit))
                continue
            pick = c
            break
        if pick is None:
            rejected.append(Rejection(name, "", "no version in the matrix fits", "companion"))
            return [], rejected
        picking.pins[pick.name] = pick.version
        picking.needs += companion_needs(pick, picking.env)
        chosen.append(pick)
    return chosen, rejected


def _companion_misfit(c: Companion, target: Target, torch: TorchCandidate, picking: Picking) -> Misfit | None:
    if c.profiles and target.profile not in c.profiles:
        return f"not for the {target.profile} profile", "profile"
    if not _in(c.python, torch.python):
        return f"needs Python {c.python}", "python"
    own = fit.first_unmet(companion_needs(c, picking.env), picking.pins)
    if own is not None:
        return own.text().removeprefix(f"{own.owner} "), "requirement"
    return _their_misfit(picking, c.name, c.version)


_STATUS_ORDER = {status: i for i, status in enumerate(QUANT_STATUSES)}  # QuantStatus is written in this order


def _quant_rows(matrix: Matrix, target: Target, name: str | None = None) -> list[QuantLib]:
    """The profile's own GPTQ/AWQ library rows (``name`` None), or every row of ``name``, less those the profile
    forbids (autoawq in awq: transformers 4.x only): active, newest first."""
    profile = matrix.profile(target.profile)
    forbidden = set(profile.forbidden) if profile else set()
    rows = (
        q
        for q in matrix.quant
        if (q.profile == target.profile if name is None else q.name == name) and q.name not in forbidden
    )
    return sorted(rows, key=lambda q: (_STATUS_ORDER[q.status], *(-p for p in _v(q.version).release[:3])))


def _quant_misfit(q: QuantLib, target: Target, torch: TorchCandidate, pins: Mapping[str, str]) -> Misfit | None:
    env = fit.marker_environment(target.platform, torch.python)
    label = f"{q.name} {q.version}"
    unmet = fit.first_unmet(companion_needs(q, env), pins)
    if q.platforms and target.platform not in q.platforms:
        return f"no support for {target.platform}", "platform"
    if q.min_cc and any(_v(cc) < _v(q.min_cc) for cc in target.ccs):
        # Before the torch/Python checks: no other torch fixes it, so this is the reason to report.
        return f"its kernels need sm_{q.min_cc.replace('.', '')} or newer", "arch"
    if not _in(q.python, torch.python):
        return f"needs Python {q.python}", "python"
    if unmet is not None:
        return unmet.text().removeprefix(f"{label} "), "requirement"
    return None


def _pick_quant(matrix: Matrix, target: Target, torch: TorchCandidate) -> tuple[QuantLib | None, list[Rejection]]:
    rejected: list[Rejection] = []
    for q in _quant_rows(matrix, target):
        misfit = _quant_misfit(q, target, torch, {"torch": torch.release.version})
        if misfit is None:
            return q, rejected
        rejected.append(Rejection(q.name, q.version, *misfit))
    return None, rejected


def with_quant(
    matrix: Matrix, target: Target, torch: TorchCandidate, picking: Picking, names: Sequence[str]
) -> tuple[QuantLib | None, dict[str, str], list[Rejection]]:
    """The GPTQ/AWQ library of a gptq/awq profile, added to the pins with what it pins exactly (numpy, ...)."""
    if target.profile not in {"gptq", "awq"}:
        return None, {}, []
    quant, rejected = _pick_quant(matrix, target, torch)
    if quant is None:
        return None, {}, rejected
    quant_needs = companion_needs(quant, picking.env)
    pinned = {k: v for k, v in fit.exact_pins(quant_needs).items() if k not in {"torch", *names}}
    picking.pins.update({quant.name: quant.version, **pinned})
    picking.needs += quant_needs
    return quant, pinned, rejected


def _with_other_quants(
    matrix: Matrix,
    target: Target,
    torch: TorchCandidate,
    picking: Picking,
    names: Sequence[str],
    companion_names: Sequence[str],
    prefer: Mapping[str, str] | None,
) -> tuple[list[QuantLib] | None, list[Companion], list[Rejection]]:
    """The profile's other GPTQ/AWQ libraries (those in ``packages`` whose rows belong to another profile:
    gptqmodel in the awq profile, which loads quant_method awq), then the companions.

    Each such library takes its newest release whose requirements hold against the pins so far and for which
    the companions still fit (gptqmodel 7.7.0's transformers >= 5.20.2 cannot join llmcompressor's <= 5.17.0),
    so its version follows from the first library's caps. None: no release of one of them fits."""
    own = {q.name for q in matrix.quant if q.profile == target.profile}
    wanted = [n for n in names if n not in own and any(q.name == n for q in matrix.quant)]
    if not wanted:
        companions, picked = _pick_companions(matrix, target, torch, companion_names, picking, prefer)
        return [], companions, picked
    rejected: list[Rejection] = []
    name, rest = wanted[0], wanted[1:]
    for q in _quant_rows(matrix, target, name):
        misfit = _quant_misfit(q, target, torch, picking.pins) or _their_misfit(picking, q.name, q.version)
        if misfit is not None:
            rejected.append(Rejection(q.name, q.version, *misfit))
            continue
        trial = Picking({**picking.pins, q.name: q.version}, [*picking.needs], picking.env)
        needs = companion_needs(q, picking.env)
        trial.pins.update({k: v for k, v in fit.exact_pins(needs).items() if k not in {"torch", *names}})
        trial.needs += needs
        sub = _with_other_quants(matrix, target, torch, trial, rest, companion_names, prefer) if rest else None
        others, companions, rej = sub or ([], *_pick_companions(matrix, target, torch, companion_names, trial, prefer))
        if others is not None and len(companions) == len(companion_names):
            picking.pins.clear()
            picking.pins.update(trial.pins)
            picking.needs[:] = trial.needs
            return [q, *others], companions, rejected
        first = next((r for r in rej if r.candidate != name), None)
        detail = f" ({first.candidate}: {first.why})" if first else ""
        rejected.append(Rejection(q.name, q.version, f"no companion versions fit beside it{detail}", "companion"))
    detail = next((f" ({r.candidate}: {r.why})" for r in rejected), "")
    why = f"no {name} release fits beside the {target.profile} profile's pins{detail}"
    rejected.append(Rejection("torch", torch.local, why, "quant"))
    return None, [], rejected


def _their_misfit(picking: Picking, name: str, version: str) -> Misfit | None:
    """A requirement of the pins so far that this release breaks."""
    theirs = fit.first_unmet(picking.needs, {name: version})
    return (f"{theirs.text()}, not {version}", "requirement") if theirs is not None else None


def _loaders(
    matrix: Matrix, target: Target, pins: Mapping[str, str]
) -> tuple[tuple[Quantizer, ...], tuple[str, ...], tuple[str, str] | None]:
    """What transformers' quantizer demands for each format the profile says it loads, checked like any other
    requirement: (the quantizer rows that hold, the formats whose quantizer was not read for this transformers,
    why the pins cannot load one, as its headline and what the pins lack: None when they can)."""
    profile = matrix.profile(target.profile)
    transformers = pins.get("transformers")
    if profile is None or transformers is None:
        return (), (), None
    rows: list[Quantizer] = []
    unread: list[str] = []
    for fmt in formats.summary(profile).loads:
        row = formats.quantizer_for(matrix, fmt, transformers)
        if row is None:
            unread.append(fmt)
            continue
        unmet = formats.loader_unmet(row, pins)
        if unmet:
            label = formats.FORMAT_LABELS.get(fmt, fmt)
            headline = (
                f"the {profile.name} profile loads {label} checkpoints, but transformers {transformers}'s "
                f"{fmt} quantizer needs what the pins lack"
            )
            return (), (), (headline, f"{'; '.join(unmet)} ({row.origin})")
        rows.append(row)
    return tuple(rows), tuple(unread), None


def rest_of_stack(
    matrix: Matrix,
    target: Target,
    torch: TorchCandidate,
    picking: Picking,
    pinned: dict[str, str],
    prefer: Mapping[str, str] | None,
) -> tuple[
    tuple[list[QuantLib], list[Companion], list[Companion], tuple[Quantizer, ...], tuple[str, ...]] | None,
    list[Rejection],
]:
    """After torch, bitsandbytes and the profile's own GPTQ/AWQ library: its other libraries, the companions,
    what those pin exactly, and the loaders of each format the profile loads; None with the reason otherwise."""
    profile = matrix.profile(target.profile)
    names = profile.packages if profile else ()
    env = picking.env
    companion_names = [
        n for n in names if n not in {"torch", "bitsandbytes"} and any(c.name == n for c in matrix.companions)
    ]
    others, companions, rejected = _with_other_quants(matrix, target, torch, picking, names, companion_names, prefer)
    if others is None:
        return None, rejected
    if len(companions) != len(companion_names):
        detail = next((f" ({r.candidate}: {r.why})" for r in rejected if r.candidate != "transformers"), "")
        return None, [*rejected, Rejection("torch", torch.local, f"no companion versions fit it{detail}", "companion")]
    for q in others:
        pinned.update({k: v for k, v in fit.exact_pins(companion_needs(q, env)).items() if k not in {"torch", *names}})
    # Packages the quantization library pins exactly (compressed-tensors) have requirements of their own.
    exact = [c for c in matrix.companions if pinned.get(c.name) == c.version]
    unmet = fit.first_unmet([n for c in exact for n in companion_needs(c, env)], picking.pins)
    if unmet is not None:
        why = f"no companion versions fit it ({unmet.text()})"
        return None, [*rejected, Rejection("torch", torch.local, why, "companion")]
    loaders, unread, lacking = _loaders(matrix, target, picking.pins)
    if lacking is not None:
        headline, unmet_text = lacking
        return None, [*rejected, Rejection("torch", torch.local, f"{headline}: {unmet_text}", "loader", headline)]
    return (others, companions, exact, loaders, unread), rejected
