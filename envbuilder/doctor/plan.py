"""Fixes computed from the resolver: the target the evidence describes -> a plan -> the exact install line.

A finding's fix is never a canned pin. The evidence (probed or read off a log) becomes a ``Target`` (its GPUs,
driver, OS, Python, the profile the broken layer belongs to); ``resolve`` plans for it like ``envbuilder
resolve`` would, and the fix names the command that builds that plan and the ``uv pip install`` line that puts
its pins into the environment in place. What the evidence does not say is never guessed: the fix says what to
run to learn it (``nvidia-smi``, ``envbuilder doctor --env``) and that the plan assumed it.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from envbuilder.doctor import Evidence
from envbuilder.model.matrix import Matrix
from envbuilder.model.types import OsFlavour, is_index_url
from envbuilder.model.types import ProfileName as Profile
from envbuilder.rules.cuda import driver_floors

if TYPE_CHECKING:  # the resolver is imported when a finding needs a fix, not for every log the doctor reads
    from envbuilder.model.plan import Plan
    from envbuilder.model.target import Target

__all__ = [
    "ASK_ENV",
    "ASK_GPU",
    "Fix",
    "create_command",
    "install_argv",
    "learn_first",
    "plan_fix",
    "plan_for",
    "target_of",
]

# What to run when the evidence lacks the GPU or the driver (nvidia-smi prints both; compute_cap since 510).
ASK_GPU = "nvidia-smi --query-gpu=name,compute_cap,driver_version --format=csv"
ASK_ENV = "envbuilder doctor --env ENV"


@dataclass(frozen=True, slots=True, kw_only=True)
class Fix:
    """A computed fix: the text a user reads, and the argv ``doctor --fix`` may run (only with an environment)."""

    text: str
    commands: tuple[tuple[str, ...], ...] = ()
    plan: Plan | None = None


def target_of(ev: Evidence, profile: Profile, *, keep_torch: bool = False) -> Target | None:
    """The target the evidence describes, or None when it names no GPU to plan for (a GPU profile needs one).

    ``keep_torch`` pins torch to the version in use (a fix for a layer above torch keeps torch as it is)."""
    from envbuilder.model.target import Gpu, Target

    gpus = tuple(Gpu(cc) for cc in ev.ccs)
    if profile != "cpu" and not gpus:
        return None
    spec: SpecifierSet | None = None
    if keep_torch and ev.torch:
        try:
            spec = SpecifierSet("==" + ev.torch.split("+", 1)[0])
        except InvalidSpecifier:
            spec = None
    os: OsFlavour = "windows" if ev.os == "windows" else "wsl2" if ev.os == "wsl2" else "linux"
    python = _minor(ev.python)
    return Target(
        gpus=gpus,
        driver=ev.driver,
        os=os,
        pythons=(python,) if python else Target().pythons,
        machine=ev.machine or "x86_64",
        profile=profile,
        torch_spec=spec,
    )


def plan_for(matrix: Matrix, ev: Evidence, profile: Profile, *, keep_torch: bool = False) -> Plan | None:
    """The resolver's plan for the evidence's target (keeping torch when asked and possible), or None."""
    if keep_torch and ev.torch and not _known_torch(matrix, ev.torch):
        keep_torch = False  # a torch the matrix does not know: no plan can keep it
    target = target_of(ev, profile, keep_torch=keep_torch)
    if target is None:
        return None
    result = _planned(matrix, target)
    if result is None and keep_torch:
        unpinned = target_of(ev, profile)
        result = _planned(matrix, unpinned) if unpinned is not None else None
    return result


# Plans already made for one matrix object, per target: one log's rules ask for the same target several times.
_PLANS: dict[Target, Plan | None] = {}
_PLANNED_WITH: list[Matrix] = []


def _planned(matrix: Matrix, target: Target) -> Plan | None:
    from envbuilder.model.plan import Plan
    from envbuilder.resolve import resolve

    if not _PLANNED_WITH or _PLANNED_WITH[0] is not matrix or len(_PLANS) > 64:
        _PLANS.clear()
        _PLANNED_WITH[:] = [matrix]
    if target not in _PLANS:
        result = resolve(target, matrix)
        _PLANS[target] = result if isinstance(result, Plan) else None
    return _PLANS[target]


def _known_torch(matrix: Matrix, torch: str) -> bool:
    version = torch.split("+", 1)[0]
    return any(r.version == version for r in matrix.torch_releases)


def create_command(plan: Plan) -> str:
    """The ``envbuilder create`` line that builds this plan from scratch."""
    t = plan.target
    parts = ["envbuilder", "create", "--profile", t.profile]
    if t.gpus:
        parts += ["--gpu", ",".join(g.sm for g in t.gpus)]
    if t.driver:
        parts += ["--driver", t.driver]
    if t.os != "linux":
        parts += ["--os", t.os]
    parts += ["--python", plan.python]
    return " ".join(parts)


def install_argv(plan: Plan, names: Sequence[str] | None, python: str | None) -> tuple[str, ...]:
    """``uv pip install`` of the plan's pins (``names``: only those packages), from the indexes they come from."""
    packages = [p for p in plan.packages if names is None or p.name in names]
    argv: list[str] = ["uv", "pip", "install"]
    if python:
        argv += ["--python", python]
    indexes = list(dict.fromkeys(p.index for p in packages if is_index_url(p.index)))
    if indexes:
        argv += ["--index-strategy", "unsafe-best-match"]
        for url in indexes:
            argv += ["--extra-index-url", url]
    return (*argv, *(p.requirement for p in packages))


def plan_fix(
    matrix: Matrix,
    ev: Evidence,
    profile: Profile,
    *,
    names: Sequence[str] | None = None,
    keep_torch: bool = False,
    python: str | None = None,
    lead: str = "",
) -> Fix:
    """The fix for a broken layer: the plan for the evidence's target, the command that builds it and the
    exact install line for ``names`` (None: the whole plan); or, with too little evidence, what to run first."""
    plan = plan_for(matrix, ev, profile, keep_torch=keep_torch)
    lead = f"{lead}; " if lead else ""
    if plan is None:
        return Fix(text=lead + learn_first(ev, profile))
    kept = plan.package("torch")
    if keep_torch and ev.torch and kept and kept.version.split("+")[0] != ev.torch.split("+")[0]:
        lead += f"no plan keeps torch {ev.torch} (the matrix plans newer builds only): replace the stack: "
        names = None
    argv = install_argv(plan, names, python)
    line = " ".join(shlex.quote(a) for a in argv)
    notes = _assumed(matrix, ev, plan)
    text = f"{lead}{line}   (plan for {_describe(plan)}; a fresh environment: {create_command(plan)}){notes}"
    return Fix(text=text, commands=(argv,) if python else (), plan=plan)


def learn_first(ev: Evidence, profile: str) -> str:
    """With no GPU in the evidence there is nothing to plan for: say how to learn it, and the command after."""
    what = "the log names no NVIDIA GPU" if not ev.devices else "the log does not say which GPU this is"
    return (
        f"{what}: run `{ASK_GPU}` (or `{ASK_ENV}` on the environment), then "
        f"`envbuilder create --profile {profile} --gpu sm_XX --driver VERSION` builds a plan that fits"
    )


def _assumed(matrix: Matrix, ev: Evidence, plan: Plan) -> str:
    """What the plan assumed because the evidence was silent (the driver, above all)."""
    if ev.driver or plan.cuda is None:
        return ""
    native, mvc = driver_floors(matrix, plan.cuda, plan.target.os)
    floor = mvc or native
    need = f" (it needs driver >= {floor} for CUDA {plan.cuda})" if floor else ""
    return f"; the log names no driver version: check it with `nvidia-smi`{need}"


def _describe(plan: Plan) -> str:
    t = plan.target
    gpus = ",".join(g.sm for g in t.gpus) or "cpu"
    cuda = f"CUDA {plan.cuda}" if plan.cuda else "CPU"
    return f"{gpus}, {t.os}, Python {plan.python}, {cuda}"


def _minor(python: str | None) -> str | None:
    if not python:
        return None
    try:
        v = Version(python)
    except InvalidVersion:
        return None
    return f"{v.major}.{v.minor}"
