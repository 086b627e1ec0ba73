"""The bitsandbytes loader/fit rule has one home (envbuilder/rules/bnb.py): the resolver, the doctor and
``sync``'s host check call it; the smoke program's stdlib-only copy is proven equal to it here.

The cases are the matrix's own releases, torch builds and CUDA libraries (real release facts with their sources),
crossed with GPUs of every generation.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import pytest
from packaging.version import Version

from envbuilder.doctor.rules_bnb import Facts, pick_bnb
from envbuilder.jobs.builder import lock_fits_host
from envbuilder.model.lock import Lock, LockedPackage, LockTool
from envbuilder.model.matrix import Matrix
from envbuilder.model.target import build_target, parse_gpus
from envbuilder.resolve import Plan, resolve
from envbuilder.rules.bnb import lib_name, library_cuda
from envbuilder.smoke.check import choose_library

GPUS = ("sm_50", "sm_61", "sm_70", "sm_75", "sm_86", "sm_89", "sm_90", "sm_100", "sm_120")


def _facts(plan: Plan) -> Facts:
    torch = plan.package("torch")
    assert torch is not None
    return Facts(
        bnb=None,
        torch=torch.version,
        torch_cuda=plan.cuda,
        ccs=plan.target.ccs,
        python=plan.python,
        platform=plan.target.platform,
    )


@pytest.mark.parametrize(("gpu", "python"), [(g, p) for g in GPUS for p in ("3.10", "3.12")])
def test_the_doctor_recommends_what_the_resolver_plans(matrix: Matrix, gpu: str, python: str) -> None:
    """For every torch release the resolver plans with, the doctor's fix for that torch build names the very
    bitsandbytes the plan holds: never a release the resolver rejects (avoided, no library for that CUDA,
    no SASS for the GPU, wrong Python or torch range)."""
    checked = 0
    for rel in matrix.torch_releases:
        target = build_target(
            matrix, gpus=parse_gpus(gpu, matrix), pythons=(python,), profile="bnb", torch=f"=={rel.version}"
        )
        plan = resolve(target, matrix)
        if not isinstance(plan, Plan):
            continue
        bnb = plan.package("bitsandbytes")
        assert bnb is not None
        picked = pick_bnb(matrix, _facts(plan))
        assert picked is not None, f"{gpu} py{python} torch {rel.version}: the doctor finds none"
        assert picked.version == bnb.version, f"{gpu} py{python} torch {rel.version}+{plan.variant}"
        checked += 1
    assert checked >= 3, f"{gpu} py{python}: too few plans to compare"


def test_the_doctor_skips_an_avoided_release_as_the_resolver_does(matrix: Matrix) -> None:
    # 0.45.3 and 0.45.4 are avoided (their [[release]].avoid); a torch 2.6 cu126 build on an RTX 3090 gets 0.45.5
    # or newer from both, never one of the avoided pair.
    avoided = {r.version for r in matrix.bnb_releases if r.avoid}
    assert avoided
    target = build_target(matrix, gpus=parse_gpus("sm_86", matrix), pythons=("3.11",), profile="bnb", torch="==2.6.0")
    plan = resolve(target, matrix)
    assert isinstance(plan, Plan)
    picked = pick_bnb(matrix, _facts(plan))
    assert picked is not None and picked.version not in avoided
    assert picked.version == plan.package("bitsandbytes").version  # type: ignore[union-attr]


def _files(cudas: tuple[str, ...]) -> list[str]:
    return [lib_name(c, "linux-x86_64") for c in cudas] + [lib_name(None, "linux-x86_64")]


def _toolkits(matrix: Matrix) -> list[str]:
    return sorted({t.cuda for t in matrix.toolkits} | {"11.7", "12.9", "13.1", "13.3"}, key=Version)


def test_the_smoke_programs_copy_equals_the_loader_rule(matrix: Matrix) -> None:
    """smoke/check.py's choose_library (stdlib only: it runs where envbuilder is not installed) names, for the
    files a release ships and torch's CUDA, the library rules.bnb.library_cuda says a nearest-same-major
    release loads; for the exact-match eras it names the exact file, which is what they load when shipped."""
    seen = 0
    for rel, torch_cuda in itertools.product(matrix.bnb_releases, _toolkits(matrix)):
        files = _files(rel.cuda_libs)
        cand = choose_library(files, torch_cuda=torch_cuda, override=None, suffix=".so")
        exact = lib_name(torch_cuda, "linux-x86_64")
        nearest = library_cuda(dataclasses.replace(rel, loader="nearest-same-major"), torch_cuda)
        assert cand["name"] == (lib_name(nearest, "linux-x86_64") if nearest else exact), (rel.version, torch_cuda)
        loads = library_cuda(rel, torch_cuda)
        if loads is not None:  # whatever the era, what the release loads is the probe's candidate
            assert cand["name"] == lib_name(loads, "linux-x86_64"), (rel.version, torch_cuda)
        seen += 1
    assert seen > 100


def _lock(torch: str, cuda: str, variant: str) -> Lock:
    from packaging.pylock import Package, Pylock
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    pylock = Pylock(
        lock_version=Version("1.0"),
        created_by="test",
        packages=[Package(name=canonicalize_name("torch"), version=Version(torch))],
    )
    tool = LockTool(
        name="x",
        profile="bnb",
        python="3.12",
        cuda=cuda,
        variant=variant,
        platform="linux-x86_64",
        target={},
        pins=(),
        indexes=(),
        reasons=(),
        warnings=(),
        matrix_digest="",
        digest="",
        smoke={},
        extra=(),
    )
    packages = (LockedPackage(name="torch", version=torch, marker=None, files=()),)
    return Lock(path=Path("pylock.x.toml"), tool=tool, pylock=pylock, packages=packages)


@pytest.mark.parametrize(
    ("ccs", "driver", "problem"),
    [
        (("12.0",), "575.51.02", None),
        # 560 runs CUDA 12.8 by minor-version compatibility (>= 525.60.13), but it predates Blackwell: the
        # resolver refuses it, and sync's host check used to accept such a lock (it skipped the GPU's first driver).
        (("12.0",), "560.35.03", "driver 560.35.03 predates sm_120 (its first driver is 570.26, with CUDA 12.8)"),
        (("8.9",), "520.61.05", "driver 520.61.05 < 525.60.13, the minor-version-compatibility floor for CUDA 12.x"),
        (("6.1",), "575.51.02", "torch 2.7.1+cu128: no SASS for sm_61 (lowest is sm_75)"),
    ],
)
def test_sync_checks_a_lock_with_the_resolvers_rules(
    matrix: Matrix, ccs: tuple[str, ...], driver: str, problem: str | None
) -> None:
    fit = lock_fits_host(
        _lock("2.7.1+cu128", "12.8", "cu128"),
        matrix,
        ccs=ccs,
        driver=driver,
        os_name="linux",
        platform="linux-x86_64",
    )
    assert fit.ok is (problem is None)
    if problem is not None:
        assert fit.problems[0].startswith(problem), fit.problems
