"""What a plan says: the reasons for each pin, the warnings (an old or vulnerable torch and why nothing newer
works, JIT kernels, a large CPU download), what ruled everything out when no plan exists, and the text of each
nearest alternative."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

from envbuilder.model.matrix import Companion, Fact, Matrix, Quantizer, QuantLib
from envbuilder.model.plan import Plan, Rejection, RejectionKind
from envbuilder.model.target import Target
from envbuilder.model.types import PYPI
from envbuilder.resolve.companions import companion_needs
from envbuilder.resolve.search import Option, packages_of
from envbuilder.rules import fit, formats
from envbuilder.rules._version import v as _v
from envbuilder.rules._version import within as _in
from envbuilder.rules.cuda import driver_floors

__all__ = [
    "Relaxed",
    "alternative_text",
    "explain",
    "no_plan_reasons",
    "plan_warnings",
    "torch_note",
]


def explain(option: Option, target: Target, python: str) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The plan's reasons: the target, then each pin and the rule that chose it, proof, unconfirmed facts; and
    each pin's own reason by its package name (what ``upgrade`` shows beside a pin that moves)."""
    t = option.torch
    src = "PyPI (its default build there)" if t.index == PYPI else t.index
    head = [f"target: {target.describe()}", f"Python {python}: {t.label} ships wheels for it ({t.release.python})"]
    pins = _pin_reasons(option, target, python, src)
    reasons = [*head, *(why for _, why in pins), *_loader_reasons(option)]
    if option.proven:
        e = option.proven[0]
        reasons.append(f"proven by a smoke test on {e.gpu} (driver {e.driver}) on {e.date}: {e.source}")
    if not option.confirmed:
        weak = [_weak(f) for f in option.facts if not f.confirmed]
        weak += [f"quantizers.toml has no {m} row for this transformers" for m in option.unread]
        reasons.append("rests on unconfirmed facts: " + ", ".join(weak))
    return tuple(reasons), tuple(pins)


def _pin_reasons(option: Option, target: Target, python: str, src: str) -> list[tuple[str, str]]:
    """(package, the rule that chose its pin): torch, bitsandbytes, the GPTQ/AWQ libraries, the companions."""
    t = option.torch
    out = [("torch", f"{t.label} from {src}" + (": " + "; ".join(t.reasons) if t.reasons else ""))]
    if option.bnb is not None:
        b = option.bnb
        out.append(("bitsandbytes", f"bitsandbytes {b.version} {option.bnb_note}; its loader rule is {b.loader}"))
    if option.quant is not None:
        q = option.quant
        out.append(
            (q.name, f"{q.name} {q.version} ({q.status}; kernels: {q.kernels}) for the {target.profile} profile")
        )
        for o in option.others:
            out.append((o.name, f"{o.name} {o.version} ({o.status}; kernels: {o.kernels}) beside it: the newest whose "
                                f"requirements and the companions' hold together"))  # fmt: skip
    env = fit.marker_environment(target.platform, python)
    pins = {p.name: p.version.split("+", 1)[0] for p in packages_of(option, target)}
    for c in option.companions:
        held = [n for n in companion_needs(c, env) if n.name in pins and n.name != c.name and n.spec]
        shown = ", ".join(n.text().removeprefix(f"{n.owner} needs ") for n in held)
        out.append((c.name, f"{c.name} {c.version}" + (f" (needs {shown}: all hold)" if shown else "")))
    return out


def _loader_reasons(option: Option) -> list[str]:
    """What transformers' quantizers demand for the formats the profile loads, and that the pins meet it."""
    held = [f for f in option.facts if isinstance(f, Quantizer)]
    out = []
    for q in held:
        needs = [f"{n}{s}" for n, s in q.requires.items()]
        needs += ["one of " + " / ".join(f"{n}{s}" for n, s in q.one_of.items())] if q.one_of else []
        label = formats.FORMAT_LABELS.get(q.method, q.method)
        out.append(f"loads {label}: transformers' {q.method} quantizer needs {', '.join(needs)}: all hold")
    out += [
        f"loads {formats.FORMAT_LABELS.get(m, m)}: transformers' quantizer for it was not read" for m in option.unread
    ]
    return out


def _weak(fact: Fact) -> str:
    if isinstance(fact, (Companion, QuantLib)) and fact.requires_dist is None:
        return f"{fact.origin} ({fact.name} {fact.version}: its requirements were not read)"
    return fact.origin


def plan_warnings(option: Option, target: Target, note: str | None) -> tuple[str, ...]:
    warns = list(option.torch.warnings)
    if note:
        warns.insert(0, note)
    for q in (option.quant, *option.others) if option.quant is not None else ():
        if q.kernels == "jit":
            warns.append(
                f"{q.name} compiles its CUDA kernels on first use: "
                f"it needs nvcc for CUDA {option.torch.build.cuda} and ninja"
            )
    if option.quant is not None and option.quant.status != "active":
        warns.append(f"{option.quant.name} is {option.quant.status}: {option.quant.note or option.quant.source}")
    if target.profile == "cpu" and option.torch.index == PYPI and target.platform.startswith("linux"):
        warns.append(
            "PyPI's Linux torch is a CUDA build (~3 GB) that also runs on the CPU; "
            "a wheelhouse or the PyTorch CPU index serves a smaller one"
        )
    return tuple(warns)


def torch_note(best: Option, matrix: Matrix, target: Target, python: str, rejected: Sequence[Rejection]) -> str | None:
    """One line when the plan must use a torch with a known advisory, or one older than the newest release
    the matrix knows (that --torch allows): which, and why nothing newer or fixed works here."""
    chosen = best.torch.release.version
    allowed = [r.version for r in matrix.torch_releases if _in(target.torch_spec, r.version) and _in(r.python, python)]
    newest = max(allowed, key=_v, default=chosen)
    advisory = next((a for a in best.advisories if a.package == "torch"), None)
    if advisory is None and _v(newest) <= _v(chosen):
        return None
    if advisory is not None:
        fixed = advisory.fixed or "a later release"
        why = _why_not(rejected, lambda v: _v(v) >= _v(fixed), top=1) or "nothing fixed fits the other pins"
        return (
            f"torch {chosen} is affected by {advisory.id} ({advisory.summary}; fixed in {fixed}); "
            f"no fixed torch works here: {why}"
        )
    why = _why_not(rejected, lambda v: _v(v) > _v(chosen), top=1) or "newer builds rank lower"
    return f"torch {chosen}, not the newest ({newest}): {why}"


def _why_not(rejected: Sequence[Rejection], wanted: Callable[[str], bool], *, top: int = 2) -> str:
    """The reasons newer torch candidates were refused, most frequent first."""
    counts: dict[tuple[RejectionKind, str], int] = {}
    for r in rejected:
        if r.name == "torch" and r.version and wanted(r.version.split("+", 1)[0]):
            key = (r.kind, _headline(r))
            counts[key] = counts.get(key, 0) + 1

    def order(kv: tuple[tuple[RejectionKind, str], int]) -> tuple[int, int]:
        return (_USER_FIRST.get(kv[0][0], len(_USER_FIRST)), -kv[1])

    return "; ".join(headline for (_, headline), _ in sorted(counts.items(), key=order)[:top])


def _headline(r: Rejection) -> str:
    return r.headline or r.why


# What a user can change comes first: a source (the PyTorch index), then the driver, then the rest.
_USER_FIRST: dict[RejectionKind, int] = {"source": 0, "driver": 1}


def no_plan_reasons(target: Target, rejected: list[Rejection]) -> tuple[str, ...]:
    """What ruled out the torch candidates, the three most frequent reasons (by headline: the failed runs
    of one GPU on one day count as one reason, whatever each run's message)."""
    counts: dict[str, int] = {}
    for r in rejected:
        if r.name == "torch":
            key = _headline(r)
            counts[key] = counts.get(key, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    reasons = [f"no combination of torch, bitsandbytes and companions works for {target.describe()}"]
    reasons += [f"{n} candidate(s) fail on: {why}" for why, n in top]
    return tuple(reasons)


Relaxed = Literal["driver", "pins", "python", "sources"]  # the constraint nearest_alternatives lifts


def alternative_text(what: Relaxed, plan: Plan, matrix: Matrix) -> str:
    pins = ", ".join(p.requirement for p in plan.packages if p.name in {"torch", "bitsandbytes"})
    if what == "driver" and plan.cuda:
        native_min, mvc_min = driver_floors(matrix, plan.cuda, plan.target.os)
        return f"with a driver >= {mvc_min or native_min}: {pins} (CUDA {plan.cuda})"
    if what == "pins":
        return f"without the --torch/--bnb pins: {pins}"
    if what == "python":
        return f"with Python {plan.python}: {pins}"
    return f"with the PyTorch index (or a mirror) reachable: {pins}"
