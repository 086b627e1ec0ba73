"""envbuilder/resolve/: plans across GPU generations x drivers x OS x profile, the traps, properties.

The property tests re-check every plan with rules written again here, independently of the resolver.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.version import Version

from envbuilder.model.matrix import Matrix, TorchBuild
from envbuilder.model.target import Gpu, Target, build_target, parse_gpus
from envbuilder.resolve import NoPlan, Plan, Rejection, RejectionKind, Sources, index_variants, resolve
from envbuilder.rules.bnb import library_cuda

PYTORCH = "https://download.pytorch.org/whl"
DEFAULT = Sources(pytorch_index=PYTORCH)  # as a user's machine has it: PyPI and the PyTorch index
PYPI_ONLY = Sources(pytorch_index=None)  # as on these machines: the PyTorch index is out of reach
WHEELHOUSE = Sources(pytorch_index=None, wheelhouse=("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",))
# A mirror of the PyTorch index whose torch pages list one CPU wheel and one cu126 wheel (read at the edge).
MIRROR = "http://127.0.0.1:8765/whl"
MIRROR_213 = Sources(
    pytorch_index=MIRROR,
    pytorch_files={
        "cpu": ("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",),
        "cu126": ("torch-2.13.0+cu126-cp312-cp312-manylinux_2_28_x86_64.whl",),
    },
)


def _target(matrix: Matrix, gpu: str, driver: str | None = None, **kw: object) -> Target:
    gpus = parse_gpus(gpu, matrix)
    if "python" in kw:
        kw["pythons"] = (kw.pop("python"),)
    return build_target(matrix, gpus=gpus, driver=driver, **kw)  # type: ignore[arg-type]


def _plan(matrix: Matrix, gpu: str, driver: str | None = None, sources: Sources | None = None, **kw: object) -> Plan:
    result = resolve(_target(matrix, gpu, driver, **kw), matrix, sources)
    assert isinstance(result, Plan), result.reasons
    check_plan(result, matrix, sources or DEFAULT)
    return result


def _noplan(
    matrix: Matrix, gpu: str, driver: str | None = None, sources: Sources | None = None, **kw: object
) -> NoPlan:
    result = resolve(_target(matrix, gpu, driver, **kw), matrix, sources)
    assert isinstance(result, NoPlan), [p.requirement for p in result.packages]
    return result


def _pins(plan: Plan) -> tuple[str, str, str, str | None]:
    torch = plan.package("torch")
    bnb = plan.package("bitsandbytes")
    assert torch is not None
    return torch.version, torch.index, bnb.version if bnb else "-", plan.bnb_library


# --------------------------------------------------------------------------- the table

CU126 = f"{PYTORCH}/cu126"
CU118 = f"{PYTORCH}/cu118"
CU128 = f"{PYTORCH}/cu128"
CU132 = f"{PYTORCH}/cu132"

# (gpu, driver, os) -> (torch version, index, bitsandbytes, library bitsandbytes loads). Profile bnb.
# The ranking (README "Ranking"): fewer advisories, proof, confirmed facts, then the newest torch the GPU's
# kernels allow among the sources (here the PyTorch index is configured), then fewer indexes, native driver.
TABLE = [
    # Pascal: no SASS in any cu128+/cu13x build, and no torch >= 2.15 has a CUDA 12 build: 2.14.1+cu126 from
    # 525 up; on 470 (CUDA 11.x only) the newest cu118, 2.7.1 (fewer advisories than 2.5.1, though unconfirmed).
    ("GTX 1080 Ti", "470.82.01", "linux", ("2.7.1+cu118", CU118, "0.50.2", "libbitsandbytes_cuda118.so")),
    ("GTX 1080 Ti", "525.147.05", "linux", ("2.14.1+cu126", CU126, "0.50.2", "libbitsandbytes_cuda126.so")),
    ("GTX 1080 Ti", "535.104.05", "linux", ("2.14.1+cu126", CU126, "0.50.2", "libbitsandbytes_cuda126.so")),
    ("GTX 1080 Ti", "580.95.05", "linux", ("2.14.1+cu126", CU126, "0.50.2", "libbitsandbytes_cuda126.so")),
    ("GTX 1080 Ti", "590.44.01", "wsl2", ("2.14.1+cu126", CU126, "0.50.2", "libbitsandbytes_cuda126.so")),
    ("GTX 1080 Ti", "470.82.01", "windows", ("2.7.1+cu118", CU118, "0.50.2", "libbitsandbytes_cuda118.dll")),
    # Volta: never a cu13x build (no sm_70 SASS there), so never bitsandbytes' cu13x library.
    ("V100", "535.104.05", "linux", ("2.14.1+cu126", CU126, "0.50.2", "libbitsandbytes_cuda126.so")),
    ("V100", "580.95.05", "linux", ("2.14.1+cu126", CU126, "0.50.2", "libbitsandbytes_cuda126.so")),
    ("V100", "590.44.01", "windows", ("2.14.1+cu126", CU126, "0.50.2", "libbitsandbytes_cuda126.dll")),
    # Turing, Ampere, Ada: cu126 from the index below 580 (527.41 is T4's WSL2 floor for CUDA 12, not met by
    # 525: cu118), PyPI's 2.15.0 (cu132, minor-version compatibility) from 580.
    ("T4", "525.147.05", "wsl2", ("2.7.1+cu118", CU118, "0.50.2", "libbitsandbytes_cuda118.so")),
    ("T4", "550.54.14", "linux", ("2.14.1+cu126", CU126, "0.50.2", "libbitsandbytes_cuda126.so")),
    ("T4", "580.95.05", "linux", ("2.15.0", "pypi", "0.50.2", "libbitsandbytes_cuda132.so")),
    ("A10G", "560.35.03", "linux", ("2.14.1+cu126", CU126, "0.50.2", "libbitsandbytes_cuda126.so")),
    ("RTX 3090", "590.44.01", "wsl2", ("2.15.0", "pypi", "0.50.2", "libbitsandbytes_cuda132.so")),
    ("RTX 4090", "550.54.14", "linux", ("2.14.1+cu126", CU126, "0.50.2", "libbitsandbytes_cuda126.so")),
    ("RTX 4090", "570.86.10", "linux", ("2.14.1+cu126", CU126, "0.50.2", "libbitsandbytes_cuda126.so")),
    ("RTX 4090", "575.57.08", "wsl2", ("2.14.1+cu126", CU126, "0.50.2", "libbitsandbytes_cuda126.so")),
    ("RTX 4090", "580.95.05", "linux", ("2.15.0", "pypi", "0.50.2", "libbitsandbytes_cuda132.so")),
    # Windows has no PyPI CUDA torch: the index build that runs natively wins over minor-version compat, and the
    # Windows 2.15 rows are unconfirmed (they mirror Linux), so 2.14.1.
    ("RTX 4090", "580.95.05", "windows", ("2.14.1+cu126", CU126, "0.50.2", "libbitsandbytes_cuda126.dll")),
    ("H100", "580.95.05", "wsl2", ("2.15.0", "pypi", "0.50.2", "libbitsandbytes_cuda132.so")),
    ("H100", "535.104.05", "linux", ("2.14.1+cu126", CU126, "0.50.2", "libbitsandbytes_cuda126.so")),
    # Blackwell GeForce: >= cu128 and a bitsandbytes with sm_120 kernels; its first driver is 570.
    ("RTX 5090", "570.86.10", "linux", ("2.11.0+cu128", CU128, "0.50.2", "libbitsandbytes_cuda128.so")),
    ("RTX 5090", "575.57.08", "windows", ("2.11.0+cu128", CU128, "0.50.2", "libbitsandbytes_cuda128.dll")),
    ("RTX 5090", "580.95.05", "linux", ("2.15.0", "pypi", "0.50.2", "libbitsandbytes_cuda132.so")),
    ("RTX 5090", "590.44.01", "windows", ("2.14.1+cu132", CU132, "0.50.2", "libbitsandbytes_cuda132.dll")),
]


@pytest.mark.parametrize(("gpu", "driver", "os", "expected"), TABLE, ids=[f"{g}-{d}-{o}" for g, d, o, _ in TABLE])
def test_bnb_plans_across_generations_drivers_and_os(
    matrix: Matrix, gpu: str, driver: str, os: str, expected: object
) -> None:
    plan = _plan(matrix, gpu, driver, os=os)
    assert _pins(plan) == expected
    assert plan.profile == "bnb"
    assert [p.name for p in plan.packages] == ["torch", "bitsandbytes", "transformers", "accelerate", "peft"]


@pytest.mark.parametrize(
    ("gpu", "driver"),
    [
        ("sm_120", "470.82.01"),
        ("sm_120", "525.147.05"),
        ("RTX 5090", "535.104.05"),
        ("RTX 5090", "560.35.03"),
    ],
)
def test_blackwell_on_a_driver_older_than_the_gpu_has_no_plan(matrix: Matrix, gpu: str, driver: str) -> None:
    result = _noplan(matrix, gpu, driver)
    assert result.reasons[1].endswith(
        f"fail on: driver {driver} predates sm_120 (its first driver is 570.26, with CUDA 12.8)"
    )
    assert result.nearest == ("with a driver >= 580.65.06: torch==2.15.0, bitsandbytes==0.50.2 (CUDA 13.2)",)


# --------------------------------------------------------------------------- the traps


def _why(result: Plan | NoPlan, candidate: str) -> str:
    hits = [r.why for r in result.rejected if r.candidate == candidate]
    assert hits, f"{candidate} not among the rejected"
    return hits[0]


def test_gtx_1080_ti_on_535_never_gets_cu128_and_is_told_why(matrix: Matrix) -> None:
    plan = _plan(matrix, "GTX 1080 Ti", "535.104.05", python="3.12")
    assert plan.variant == "cu126"  # the newest build with sm_60 SASS (which runs on sm_61): 2.14.1+cu126
    assert _why(plan, "torch 2.11.0+cu128") == "no SASS for sm_61 (lowest is sm_75)"
    assert _why(plan, "torch 2.10.0+cu128") == "no SASS for sm_61 (lowest is sm_70)"


def test_rtx_5090_needs_cu128_and_bnb_with_sm_120_kernels(matrix: Matrix) -> None:
    plan = _plan(matrix, "RTX 5090", "570.86.10", python="3.12")
    assert Version(plan.cuda or "0") >= Version("12.8")
    assert "sm_120 SASS present" in plan.reasons[3]
    # Pinning a bitsandbytes whose cu128 library predates Blackwell support is refused with the reason.
    old = _noplan(matrix, "RTX 5090", "570.86.10", python="3.12", bnb="0.45.2")
    assert _why(old, "torch 2.11.0+cu128") == (
        "no bitsandbytes release works with it (bitsandbytes 0.45.2: torch 2.11.0+cu128 makes it load "
        "libbitsandbytes_cuda128.so, which it does not ship: it falls back to the CPU silently)"
    )


def test_535_never_gets_cuda_13_and_says_the_floor(matrix: Matrix) -> None:
    plan = _plan(matrix, "sm_89", "535.104.05", python="3.12")
    assert plan.cuda is not None and Version(plan.cuda).major == 12
    assert _why(plan, "torch 2.14.1+cu130") == "driver 535.104.05 < 580.65.06, the minimum for CUDA 13.x builds"
    assert _why(plan, "torch 2.14.1+cu132") == (
        "driver 535.104.05 < 580.65.06, the minor-version-compatibility floor for CUDA 13.x"
    )


def test_v100_never_gets_bnb_cu13x_library(matrix: Matrix) -> None:
    for driver in ("580.95.05", "590.44.01"):
        plan = _plan(matrix, "V100", driver)
        assert plan.bnb_library is not None and "cuda13" not in plan.bnb_library
        assert _why(plan, "torch 2.14.1+cu130").startswith("no SASS for sm_70 (lowest is sm_75")


def test_bnb_047_with_a_cu130_torch_is_rejected_with_its_reason(matrix: Matrix) -> None:
    result = _noplan(matrix, "sm_90", "580.95.05", python="3.12", torch="2.11.0", bnb="0.47.0", sources=PYPI_ONLY)
    assert _why(result, "torch 2.11.0+cu130") == (
        "no bitsandbytes release works with it (bitsandbytes 0.47.0: torch 2.11.0+cu130 makes it load "
        "libbitsandbytes_cuda130.so, which it does not ship: it fails at the first native call)"
    )
    # With the PyTorch index a cu12x build of the same torch works with it.
    plan = _plan(matrix, "sm_90", "580.95.05", python="3.12", torch="2.11.0", bnb="0.47.0")
    assert plan.cuda is not None and Version(plan.cuda).major == 12


def test_old_bnb_with_no_exact_library_falls_back_to_cpu_and_is_rejected(matrix: Matrix) -> None:
    result = _noplan(matrix, "sm_89", "580.95.05", python="3.12", torch="2.11.0", bnb="0.44.1", sources=PYPI_ONLY)
    assert _why(result, "torch 2.11.0+cu130") == (
        "no bitsandbytes release works with it (bitsandbytes 0.44.1: torch 2.11.0+cu130 makes it load "
        "libbitsandbytes_cuda130.so, which it does not ship: it falls back to the CPU silently)"
    )


@pytest.mark.parametrize(
    ("bnb", "torch_cuda", "loaded"),
    [
        ("0.50.2", "12.8", "12.8"),  # exact
        ("0.50.2", "12.9", "12.8"),  # nearest lower of the same major
        ("0.50.2", "13.1", "13.0"),
        ("0.50.2", "12.0", "12.1"),  # none lower: the lowest higher of the same major
        ("0.50.2", "14.0", None),  # never across majors
        ("0.49.2", "12.9", "12.9"),
        ("0.47.0", "13.0", None),  # exact-or-error: no cuda130 library
        ("0.45.5", "12.9", None),  # exact-or-cpu: silent CPU fallback, no GPU library
    ],
)
def test_library_bitsandbytes_loads(matrix: Matrix, bnb: str, torch_cuda: str, loaded: str | None) -> None:
    release = matrix.bnb_release(bnb)
    assert release is not None
    assert library_cuda(release, torch_cuda) == loaded
    assert _loaded_library(release.loader, release.cuda_libs, torch_cuda) == loaded  # the checker agrees


def test_bnb_050_with_a_cu128_torch_loads_cuda128(matrix: Matrix) -> None:
    plan = _plan(matrix, "sm_89", "575.57.08", python="3.12", torch="2.10.0", bnb="0.50.2")
    assert plan.variant == "cu128"
    assert plan.bnb_library == "libbitsandbytes_cuda128.so"


# --------------------------------------------------------------------------- sources


def test_pypi_only_plans_use_pypi_defaults(matrix: Matrix) -> None:
    plan = _plan(matrix, "sm_89", "550.54.14", sources=PYPI_ONLY, python="3.12")
    assert _pins(plan) == ("2.10.0", "pypi", "0.50.2", "libbitsandbytes_cuda128.so")
    assert plan.extra_indexes == ()
    assert _why(plan, "torch 2.14.1+cu126").startswith("not served by the configured sources")


def test_cpu_profile_takes_torch_from_the_wheelhouse(matrix: Matrix) -> None:
    plan = _plan(matrix, "cpu", python="3.11", sources=WHEELHOUSE)
    assert _pins(plan) == ("2.13.0+cpu", "wheelhouse", "0.50.2", "libbitsandbytes_cpu.so")
    assert plan.cuda is None


def test_cpu_profile_without_wheelhouse_falls_back_to_pypi_cuda_build_with_a_warning(matrix: Matrix) -> None:
    plan = _plan(matrix, "cpu", python="3.12", sources=PYPI_ONLY)
    assert plan.package("torch") is not None and plan.package("torch").index == "pypi"  # type: ignore[union-attr]
    assert any("also runs on the CPU" in w for w in plan.warnings)


def test_blackwell_with_pypi_only_and_an_old_driver_has_nearest_alternatives(matrix: Matrix) -> None:
    result = _noplan(matrix, "sm_120", "535.104.05", sources=PYPI_ONLY)
    assert result.nearest[0].startswith("with a driver >= 580.65.06: torch==2.15.0")


def test_pascal_on_470_with_new_torch_pin_explains_and_offers_alternatives(matrix: Matrix) -> None:
    result = _noplan(matrix, "sm_61", "470.82.01", torch=">=2.9")
    assert result.reasons[1] == (
        "48 candidate(s) fail on: driver 470.82.01 < 525.60.13, the minor-version-compatibility floor for CUDA 12.x"
    )
    assert result.nearest == (
        "with a driver >= 525.60.13: torch==2.14.1+cu126, bitsandbytes==0.50.2 (CUDA 12.6)",
        "without the --torch/--bnb pins: torch==2.7.1+cu118, bitsandbytes==0.50.2",
    )


def test_proven_evidence_is_preferred(matrix: Matrix) -> None:
    plan = _plan(matrix, "NVIDIA H100 80GB HBM3", "580.159.04", python="3.12", sources=PYPI_ONLY)
    assert _pins(plan) == ("2.11.0", "pypi", "0.50.2", "libbitsandbytes_cuda130.so")
    assert plan.proven and plan.proven[0].gpu == "NVIDIA H100 80GB HBM3"
    assert _why(plan, "torch 2.15.0+cu132") == "works, but ranked lower: the chosen one is proven on matching hardware"
    # The same run proves nothing for another Python or another OS.
    assert not _plan(matrix, "H100", "580.159.04", python="3.11").proven
    assert not _plan(matrix, "H100", "580.159.04", python="3.12", os="windows").proven


# --------------------------------------------------------------------------- profiles


@pytest.mark.parametrize(
    ("gpu", "driver", "profile", "packages"),
    [
        (
            "sm_89",
            "580.95.05",
            "gptq",
            # optimum: transformers' GPTQ quantizer refuses to load without it (matrices/quantizers.toml)
            {
                "torch": "2.15.0",
                "gptqmodel": "7.7.0",
                "optimum": "2.3.0",
                "transformers": "5.24.0",
                "accelerate": "1.15.0",
            },
        ),
        (
            "sm_89",
            "580.95.05",
            "awq",
            {
                # llmcompressor 0.14.0.1's wheel caps torch <= 2.14.0 and transformers <= 5.17.0 and pins
                # compressed-tensors 0.19.0 (its wheel METADATA, tests/fixtures/quant-cpu).
                "torch": "2.13.0",
                "llmcompressor": "0.14.0.1",
                # transformers loads quant_method awq only through gptqmodel (quantizers.toml); 7.7.0 needs
                # transformers >= 5.20.2, so 7.6.0 with its numpy pin (proven beside it: tests/fixtures/quant-load)
                "gptqmodel": "7.6.0",
                "compressed-tensors": "0.19.0",
                "numpy": "2.2.6",
                "optimum": "2.3.0",
                "transformers": "5.17.0",
                "accelerate": "1.15.0",
            },
        ),
        (
            "sm_89",
            "550.54.14",
            "gptq",
            # Below 580: the newest cu12x torch, 2.14.1+cu126 from the index, which gptqmodel 7.7.0 admits.
            {
                "torch": "2.14.1+cu126",
                "gptqmodel": "7.7.0",
                "optimum": "2.3.0",
                "transformers": "5.24.0",
                "accelerate": "1.15.0",
            },
        ),
    ],
)
def test_quant_profiles(matrix: Matrix, gpu: str, driver: str, profile: str, packages: dict[str, str]) -> None:
    plan = _plan(matrix, gpu, driver, profile=profile, python="3.12")
    assert {p.name: p.version for p in plan.packages} == packages
    assert plan.package("bitsandbytes") is None


def test_gptq_from_pypi_alone_takes_gptqmodel_7_6_with_its_numpy_pin(matrix: Matrix) -> None:
    # PyPI's 2.10.0 (cu128 by minor-version compatibility); gptqmodel 7.7.0 needs torch >= 2.14.1, so 7.6.0,
    # whose declared numpy==2.2.6 (python_version < "3.14") becomes a pin (proven on the CPU: tests/fixtures/quant-cpu).
    plan = _plan(matrix, "sm_89", "550.54.14", profile="gptq", python="3.12", sources=PYPI_ONLY)
    assert {p.name: p.version for p in plan.packages} == {
        "torch": "2.10.0",
        "gptqmodel": "7.6.0",
        "numpy": "2.2.6",
        "optimum": "2.3.0",
        "transformers": "5.24.0",
        "accelerate": "1.15.0",
    }
    assert _why(plan, "gptqmodel 7.7.0") == "needs torch >= 2.14.1"
    # Each pin's own reason, by name (upgrade shows it beside a pin that moves); numpy is the library's pin.
    assert plan.reason_for("torch") == plan.reasons[2]
    assert plan.reason_for("torch").startswith("torch 2.10.0+cu128 from PyPI (its default build there): driver ")
    assert plan.reason_for("gptqmodel").startswith("gptqmodel 7.6.0 (active; kernels: ")
    assert plan.reason_for("numpy") == ""
    named = [(p.name, plan.reason_for(p.name)) for p in plan.packages if p.name != "numpy"]
    assert all(why in plan.reasons and why.startswith(f"{name} ") for name, why in named), named


def test_gptq_refused_below_turing(matrix: Matrix) -> None:
    result = _noplan(matrix, "GTX 1080 Ti", "550.54.14", profile="gptq", python="3.12")
    assert result.reasons[1] == (
        "20 candidate(s) fail on: no gptq library works with it (gptqmodel 7.7.0: its kernels need sm_75 or newer)"
    )


def test_cpu_profile_has_no_cuda(matrix: Matrix) -> None:
    plan = _plan(matrix, "sm_89", profile="cpu", python="3.12")
    assert plan.cuda is None and plan.variant == "cpu"
    assert plan.bnb_library == "libbitsandbytes_cpu.so"


def test_comma_list_gets_one_plan_that_serves_all(matrix: Matrix) -> None:
    plan = _plan(matrix, "sm_75,sm_89", "580.95.05", python="3.12")
    assert _pins(plan) == ("2.15.0", "pypi", "0.50.2", "libbitsandbytes_cuda132.so")
    # Pascal needs cu126 (no sm_61 SASS in cu128+), Blackwell needs sm_120 SASS (not in cu126): nothing serves both.
    _noplan(matrix, "sm_61,sm_120", "580.95.05", python="3.12")


def test_json_contract(matrix: Matrix) -> None:
    doc = _plan(matrix, "sm_120", "570.86.10", python="3.12").to_json()
    assert doc["schema"] == "envbuilder.plan/1"
    assert (doc["profile"], doc["python"], doc["cuda"]) == ("bnb", "3.12", "12.8")
    assert doc["packages"][0] == {
        "name": "torch",
        "version": "2.11.0+cu128",
        "index": "https://download.pytorch.org/whl/cu128",
        "confirmed": True,
    }
    assert all(isinstance(r, str) for r in doc["reasons"])
    assert all(set(r) == {"candidate", "why"} for r in doc["rejected"])
    cpu = _plan(matrix, "cpu", python="3.11", sources=WHEELHOUSE).to_json()
    assert cpu["cuda"] is None
    none = _noplan(matrix, "sm_120", "535.104.05").to_json()
    assert (none["schema"], none["ok"], none["cuda"], none["packages"]) == (
        "envbuilder.plan/1",
        False,
        None,
        [],
    )
    assert none["nearest"] and none["rejected"]


# --------------------------------------------------------------------------- the independent checker


def _sass_runs(sass: tuple[str, ...], ptx: str | None, cc: str, *, jit_ok: bool) -> bool:
    """NVIDIA's rule, written again: SASS X.y runs on X.z for z >= y; PTX JITs onto any newer GPU."""
    gpu = Version(cc)
    same = any(Version(s).major == gpu.major and Version(s).minor <= gpu.minor for s in sass)
    return same or (jit_ok and ptx is not None and Version(ptx) <= gpu)


def _loaded_library(loader: str, libs: tuple[str, ...], cuda: str) -> str | None:
    if cuda in libs:
        return cuda
    if loader != "nearest-same-major":
        return None
    same = sorted((Version(c), c) for c in libs if Version(c).major == Version(cuda).major)
    lower = [c for v, c in same if v <= Version(cuda)]
    return lower[-1] if lower else (same[0][1] if same else None)


def _build_of(plan: Plan, matrix: Matrix) -> TorchBuild:
    release = matrix.torch_release(plan.package("torch").version)  # type: ignore[union-attr]
    assert release is not None
    builds = [b for b in matrix.builds_of(release) if b.variant == plan.variant and plan.target.platform in b.platforms]
    assert len(builds) == 1, builds
    return builds[0]


def _driver_ok(plan: Plan, matrix: Matrix, cuda: str) -> tuple[bool, bool]:
    """(driver runs it, natively) by NVIDIA's tables, written again."""
    target = plan.target
    if target.driver is None:
        return True, True
    windows = target.os != "linux"
    driver = Version(target.driver)
    toolkit = next(t for t in matrix.toolkits if t.cuda == cuda)
    native = toolkit.windows if windows else toolkit.linux
    if native is not None and driver >= Version(native):
        return True, True
    mvc = next(m for m in matrix.minor_compat if m.major == Version(cuda).major)
    floor = (mvc.windows if windows else mvc.linux) or mvc.linux.split(".")[0]
    return driver >= Version(floor), False


def check_plan(plan: Plan, matrix: Matrix, sources: Sources) -> None:
    """Every hard constraint, checked again from the facts."""
    target = plan.target
    torch = plan.package("torch")
    assert torch is not None
    release = matrix.torch_release(torch.version)
    assert release is not None
    build = _build_of(plan, matrix)
    assert plan.cuda == build.cuda
    # Python and platform.
    assert release.python.contains(plan.python)
    assert target.platform in build.platforms
    assert plan.python in target.pythons
    # Where torch comes from must be served by the sources.
    if torch.index == "pypi":
        assert release.pypi.get(target.platform) == build.variant and "+" not in torch.version
    elif torch.index == "wheelhouse":
        assert any(f.startswith(f"torch-{torch.version}-") for f in sources.wheelhouse)
    else:
        assert sources.pytorch_index is not None and torch.index == f"{sources.pytorch_index}/{build.variant}"
        assert torch.version == f"{release.version}+{build.variant}"
        listing = (sources.pytorch_files or {}).get(build.variant)
        if listing is not None:  # the index's own torch page decides what it serves
            assert any(f.startswith(f"torch-{torch.version}-cp{plan.python.replace('.', '')}-") for f in listing)
    # Driver, GPU-driver floor, and SASS/PTX of torch.
    native = True
    if build.cuda is not None:
        ok, native = _driver_ok(plan, matrix, build.cuda)
        assert ok or target.forward_compat
        for cc in target.ccs:
            arch = matrix.arch(cc)
            first = next((t for t in matrix.toolkits if arch and t.cuda == arch.first_cuda), None)
            if target.driver and first is not None:
                assert Version(target.driver) >= Version(
                    (first.windows if target.os != "linux" else first.linux) or "0"
                )
            assert _sass_runs(build.sass, build.ptx, cc, jit_ok=native)
    else:
        assert target.profile == "cpu"
    # The profile's packages, and nothing it forbids.
    profile = matrix.profile(target.profile)
    assert profile is not None
    names = {p.name for p in plan.packages}
    pins = {(p.name, p.version) for p in plan.packages}
    quant = [q for q in matrix.quant if q.profile == target.profile and (q.name, q.version) in pins]
    assert set(profile.packages) - {"gptqmodel", "llmcompressor"} <= names
    assert not names & set(profile.forbidden)
    # bitsandbytes: python, torch, platform, and the library its loader picks covers every GPU.
    bnb_pkg = plan.package("bitsandbytes")
    if bnb_pkg is not None:
        bnb = matrix.bnb_release(bnb_pkg.version)
        assert bnb is not None
        assert bnb.python.contains(plan.python) and target.platform in bnb.platforms
        assert bnb.torch.contains(release.version, prereleases=True)
        if build.cuda is None or not target.gpus:
            # No GPU: bitsandbytes runs its CPU backend even under PyPI's CUDA torch (research item 10).
            assert bnb.cpu == "full" and plan.bnb_library is not None and "cpu" in plan.bnb_library
        else:
            lib = _loaded_library(bnb.loader, bnb.cuda_libs, build.cuda)
            assert lib is not None
            assert plan.bnb_library is not None and plan.bnb_library.startswith(
                f"libbitsandbytes_cuda{lib.replace('.', '')}."
            )
            rows = [
                r
                for r in matrix.bnb_sass
                if r.platform == target.platform and r.bnb.contains(bnb.version) and r.cuda.contains(lib)
            ]
            assert rows
            assert all(_sass_runs(rows[0].sass, rows[0].ptx, cc, jit_ok=True) for cc in target.ccs)
    # Companions: python, torch, profile, and their bitsandbytes minimum (transformers 5 needs >= 0.46.1).
    for pkg in plan.packages:
        row = next((c for c in matrix.companions if c.name == pkg.name and c.version == pkg.version), None)
        if row is None:
            continue
        assert row.python.contains(plan.python)
        assert row.torch is None or row.torch.contains(release.version)
        assert not row.profiles or target.profile in row.profiles
        need = row.requires.get("bitsandbytes")
        if need is not None and bnb_pkg is not None:
            assert need.contains(bnb_pkg.version)
        for q in quant:
            if pkg.name in q.requires:
                assert q.requires[pkg.name].contains(pkg.version)
    for q in quant:
        assert q.python.contains(plan.python) and (q.torch is None or q.torch.contains(release.version))
        assert not q.min_cc or all(Version(cc) >= Version(q.min_cc) for cc in target.ccs)
    _check_requirements(plan, matrix)
    # Pins the user gave.
    if target.torch_spec is not None:
        assert target.torch_spec.contains(release.version)
    if target.bnb_spec is not None and bnb_pkg is not None:
        assert target.bnb_spec.contains(bnb_pkg.version)


def _marker_env(plan: Plan) -> dict[str, str]:
    """PEP 508 variables for the plan's target, written again (not fit.marker_environment)."""
    system, machine = plan.target.platform.split("-", 1)
    windows = system == "windows"
    return {
        "python_version": plan.python,
        "python_full_version": plan.python + ".0",
        "sys_platform": "win32" if windows else "linux",
        "platform_system": "Windows" if windows else "Linux",
        "platform_machine": "AMD64" if windows and machine == "x86_64" else machine,
        "os_name": "nt" if windows else "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }


def _check_requirements(plan: Plan, matrix: Matrix) -> None:
    """No pin's declared requirement (extras the row relies on included) or added constraint is broken by
    another pin; a row whose requirements were not read makes the plan unconfirmed."""
    pins = {p.name: p.version.split("+", 1)[0] for p in plan.packages}
    env = _marker_env(plan)
    rows = [*matrix.companions, *matrix.quant]
    for pkg in plan.packages:
        row = next((r for r in rows if r.name == pkg.name and r.version == pkg.version), None)
        if row is None:
            continue
        if row.requires_dist is None:
            assert not plan.confirmed and not pkg.confirmed, f"{pkg.requirement}: requirements not read"
        for req in row.requires_dist or ():
            applies = req.marker is None or any(
                req.marker.evaluate({**env, "extra": extra}) for extra in ("", *row.extras)
            )
            if applies and req.name in pins:
                assert req.specifier.contains(pins[req.name], prereleases=True), f"{pkg.requirement} needs {req}"
        added = dict(row.requires) | ({"torch": row.torch} if row.torch is not None else {})
        for name, spec in added.items():
            if name in pins:
                assert spec.contains(pins[name], prereleases=True), f"{pkg.requirement} needs {name}{spec}"


# --------------------------------------------------------------------------- properties

CCS = ["5.0", "5.2", "6.0", "6.1", "7.0", "7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "10.3", "12.0", "12.1"]
DRIVERS = st.one_of(
    st.none(),
    st.builds(
        lambda major, minor, patch: f"{major}.{minor}.{patch:02d}",
        st.sampled_from(
            [
                450,
                470,
                515,
                520,
                525,
                527,
                530,
                535,
                545,
                550,
                555,
                560,
                565,
                570,
                575,
                576,
                580,
                590,
                595,
                610,
            ]
        ),
        st.integers(0, 200),
        st.integers(0, 99),
    ),
)
SOURCES = st.sampled_from(
    [
        DEFAULT,
        PYPI_ONLY,
        WHEELHOUSE,
        Sources(pypi=True, pytorch_index="https://mirror.example/whl"),
        MIRROR_213,
        Sources(pytorch_index="https://mirror.example/whl", pytorch_files={}),  # no page could be read
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ccs=st.lists(st.sampled_from(CCS), min_size=0, max_size=2, unique=True),
    driver=DRIVERS,
    os=st.sampled_from(["linux", "wsl2", "windows"]),
    python=st.sampled_from([None, "3.10", "3.11", "3.12", "3.13"]),
    profile=st.sampled_from(["bnb", "cpu", "gptq", "awq"]),
    torch=st.sampled_from([None, ">=2.9", "<2.8", "2.11.0", "==2.14.*"]),
    bnb=st.sampled_from([None, "0.47.0", ">=0.49", "0.45.5"]),
    forward_compat=st.booleans(),
    sources=SOURCES,
)
def test_every_plan_satisfies_every_constraint(
    matrix: Matrix,
    ccs: list[str],
    driver: str | None,
    os: str,
    python: str | None,
    profile: str,
    torch: str | None,
    bnb: str | None,
    forward_compat: bool,
    sources: Sources,
) -> None:
    if not ccs:
        profile = "cpu"
    target = build_target(
        matrix,
        gpus=tuple(Gpu(cc) for cc in ccs),
        driver=driver,
        os=os,
        pythons=(python,) if python else ("3.12", "3.11", "3.13", "3.10"),
        profile=profile,
        torch=torch,
        bnb=bnb,
        forward_compat=forward_compat,
    )
    result = resolve(target, matrix, sources)
    if isinstance(result, Plan):
        check_plan(result, matrix, sources)
    else:
        assert result.reasons[0].startswith("no combination of torch, bitsandbytes and companions works for ")
        assert result.rejected


def test_cpu_profile_prefers_a_later_python_with_a_cpu_build_over_pypis_cuda_build(matrix: Matrix) -> None:
    # This machine's case: Python 3.12 first in line, but only 3.11 has a CPU torch (the wheelhouse's cp311).
    target = build_target(matrix, gpus=(), pythons=("3.12", "3.11"), profile="cpu")
    plan = resolve(target, matrix, WHEELHOUSE)
    assert isinstance(plan, Plan)
    assert (plan.python, plan.package("torch").version) == ("3.11", "2.13.0+cpu")  # type: ignore[union-attr]
    assert (
        Rejection("Python", "3.12", "only PyPI's CUDA build of torch serves the cpu profile", "ranked") in plan.rejected
    )


@pytest.mark.parametrize(
    ("driver", "os", "expected"),
    [
        ("580.159.04", "linux", ("13.0", "13.x")),
        ("535.104.05", "linux", ("12.2", "12.x")),
        ("470.82.01", "linux", ("11.4", "11.x")),
        # Windows numbering; NVIDIA publishes no Windows floor for 13.x, and the R580 branch stands in (as the
        # resolver's driver check does), so detect and resolve agree on what a WSL2 R580 driver runs.
        ("581.15", "wsl2", ("12.9", "13.x")),
        ("560.94", "windows", ("12.6", "12.x")),
    ],
)
def test_driver_cuda_agrees_with_the_driver_check(
    matrix: Matrix, driver: str, os: str, expected: tuple[str, str]
) -> None:
    from envbuilder.rules.cuda import driver_cuda

    assert driver_cuda(matrix, driver, os) == expected


# --------------------------------------------------------------------------- what the PyTorch index lists


def test_a_mirror_holding_only_2_13_gets_a_2_13_plan(matrix: Matrix) -> None:
    """The plan holds what the mirror's torch page lists (read at the edge), not what the matrix assumes."""
    target = build_target(matrix, gpus=(), profile="cpu", pythons=("3.13", "3.12", "3.11"))
    plan = resolve(target, matrix, MIRROR_213)
    assert isinstance(plan, Plan)
    assert (plan.python, _pins(plan)[:2]) == ("3.11", ("2.13.0+cpu", f"{MIRROR}/cpu"))
    why = f"{MIRROR}/cpu/torch/ lists no wheel of it for Python 3.13 on linux-x86_64"
    index = f"the PyTorch index {MIRROR} lists no wheel of it"
    assert Rejection("torch", "2.14.1+cpu", why, "listing", index) in plan.rejected
    # Told nothing of the pages, the matrix decides: the newest CPU build for the first Python.
    assumed = resolve(target, matrix, Sources(pytorch_index=MIRROR))
    assert isinstance(assumed, Plan) and (assumed.python, _pins(assumed)[0]) == ("3.13", "2.15.0+cpu")


def test_a_gpu_plan_follows_the_mirrors_cu126_page(matrix: Matrix) -> None:
    plan = _plan(matrix, "sm_61", "535.104.05", MIRROR_213, python="3.12", torch=">=2.12")
    assert _pins(plan)[:2] == ("2.13.0+cu126", f"{MIRROR}/cu126")
    none = _noplan(matrix, "sm_61", "535.104.05", MIRROR_213, python="3.11", torch=">=2.12")
    assert any("lists no wheel of it for Python 3.11" in r.why for r in none.rejected)


def test_a_page_that_could_not_be_read_ranks_below_a_listed_file(matrix: Matrix) -> None:
    """Unknown is not "no constraint": an unread page's build is an assumption, below a wheelhouse file."""
    unread = Sources(
        pytorch_index=MIRROR,
        pytorch_files={},
        wheelhouse=("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",),
    )
    plan = _plan(matrix, "cpu", None, unread, profile="cpu", python="3.11")
    assert _pins(plan)[:2] == ("2.13.0+cpu", "wheelhouse")
    lower = "works, but ranked lower: its index page could not be read, so that the index holds it is unconfirmed"
    assert Rejection("torch", "2.15.0+cpu", lower, "ranked", "works, but ranked lower") in plan.rejected
    alone = _plan(matrix, "cpu", None, Sources(pytorch_index=MIRROR, pytorch_files={}), profile="cpu", python="3.11")
    assert _pins(alone)[:2] == ("2.15.0+cpu", f"{MIRROR}/cpu")
    assert f"{MIRROR}/cpu/torch/ could not be read: that it holds torch 2.15.0+cpu is assumed" in alone.warnings


@pytest.mark.parametrize(
    ("gpu", "profile", "variants"),
    [
        ("cpu", "cpu", ("cpu",)),
        ("sm_89", "bnb", ("cu118", "cu121", "cu124", "cu126", "cu128", "cu129", "cu130", "cu132")),
    ],
)
def test_index_variants_are_the_pages_worth_reading(
    matrix: Matrix, gpu: str, profile: str, variants: tuple[str, ...]
) -> None:
    gpus = parse_gpus(gpu, matrix) if gpu != "cpu" else ()
    assert index_variants(build_target(matrix, gpus=gpus, profile=profile), matrix) == variants


def test_no_plan_pairs_a_companion_with_a_torch_it_rejects(matrix: Matrix) -> None:
    """Every architecture x driver x OS x profile x Python: each plan's pins satisfy each other's declared
    requirements, extras included (check_plan above, written independently of the resolver)."""
    drivers = ("470.82.01", "535.104.05", "570.86.10", "580.95.05", None)
    plans = 0
    for cc in CCS:
        for driver in drivers:
            for os in ("linux", "windows"):
                for profile in ("bnb", "gptq", "awq"):
                    for python in ("3.10",) if profile == "awq" else ("3.12",):
                        target = build_target(
                            matrix, gpus=(Gpu(cc),), driver=driver, os=os, pythons=(python,), profile=profile
                        )
                        result = resolve(target, matrix, DEFAULT)
                        if isinstance(result, Plan):
                            check_plan(result, matrix, DEFAULT)
                            plans += 1
    assert plans > 150


# --------------------------------------------------------------------------- requirements, advisories, evidence


def test_transformers_torch_extra_rejects_an_old_torch(matrix: Matrix) -> None:
    # Python 3.10 leaves out transformers >= 5.21; torch 2.5.1 is pinned: 5.20.2 declares torch>=2.6 under its
    # torch extra (and disables torch below it at import), so 5.17.0 (torch>=2.5) is the one that works.
    plan = _plan(matrix, "GTX 1080 Ti", "535.104.05", python="3.10", torch="2.5.1")
    assert plan.package("transformers").version == "5.17.0"  # type: ignore[union-attr]
    assert _why(plan, "transformers 5.20.2") == "needs torch >= 2.6 (extra torch)"
    assert "transformers 5.17.0 (needs accelerate >= 1.1.0 (extra torch), torch >= 2.5 (extra torch)" in " ".join(
        plan.reasons
    )


def test_a_companion_whose_requirements_were_not_read_ranks_below(matrix: Matrix) -> None:
    import dataclasses

    unread = tuple(
        dataclasses.replace(c, requires_dist=None) if (c.name, c.version) == ("transformers", "5.24.0") else c
        for c in matrix.companions
    )
    weak = dataclasses.replace(matrix, companions=unread)
    plan = _plan(weak, "RTX 4090", "580.95.05", python="3.12")
    assert plan.package("transformers").version == "5.20.2"  # type: ignore[union-attr]
    assert plan.confirmed
    # Pinned to it anyway, the plan says it rests on an unread fact.
    pinned = dataclasses.replace(weak, companions=tuple(c for c in unread if c.version != "5.20.2"))
    only = _plan(pinned, "RTX 4090", "580.95.05", python="3.12")
    assert only.package("transformers").version in {"5.24.0", "5.17.0"}  # type: ignore[union-attr]


def test_a_plan_without_advisories_beats_an_older_confirmed_one(matrix: Matrix) -> None:
    plan = _plan(matrix, "GTX 1080 Ti", "470.82.01")
    assert plan.package("torch").version == "2.7.1+cu118"  # type: ignore[union-attr]
    assert _why(plan, "torch 2.5.1+cu118") == "works, but ranked lower: CVE-2025-32434 affects it"
    (note,) = [w for w in plan.warnings if w.startswith("torch ")]
    assert note.startswith("torch 2.7.1 is affected by CVE-2026-24747 (")
    assert note.endswith(
        "no fixed torch works here: driver 470.82.01 < 525.60.13, the minor-version-compatibility floor for CUDA 12.x"
    )


@pytest.mark.parametrize("driver", ["470.82.01", "525.147.05", "535.104.05", "580.95.05", "590.44.01"])
@pytest.mark.parametrize("os", ["linux", "wsl2", "windows"])
def test_pascal_gets_torch_2_6_or_newer(matrix: Matrix, driver: str, os: str) -> None:
    plan = _plan(matrix, "GTX 1080 Ti", driver, os=os)
    torch = plan.package("torch")
    assert torch is not None and Version(torch.version.split("+")[0]) >= Version("2.6")


def test_evidence_proves_only_the_same_machine_and_names_its_run(matrix: Matrix) -> None:
    plan = _plan(matrix, "H100", "580.159.04", python="3.12", sources=PYPI_ONLY)
    assert plan.proven and plan.package("transformers").version == "5.17.0"  # type: ignore[union-attr]
    assert any(r.endswith(": tests/fixtures/h100-cu130/smoke-bnb0.50.2.json (tests/gpu/device_validate.sh on the device host)")
               or "tests/fixtures/h100-cu130" in r for r in plan.reasons if r.startswith("proven by"))  # fmt: skip
    # The same GPU generation on an aarch64 host (GH200) is not proven by an x86_64 run.
    gh200 = _plan(matrix, "GH200", "580.159.04", python="3.12", machine="aarch64", sources=PYPI_ONLY)
    assert not gh200.proven


def test_gh200_before_r580_keeps_the_newest_bitsandbytes(matrix: Matrix) -> None:
    # aarch64 wheels ship libbitsandbytes_cuda126.so since 0.47 (read from them): before the [[sass]] rows
    # existed, this plan fell back to 0.46.1 with "no SASS facts".
    plan = _plan(matrix, "GH200", "570.86.10", python="3.12", machine="aarch64")
    assert _pins(plan) == ("2.14.1+cu126", CU126, "0.50.2", "libbitsandbytes_cuda126.so")


# --------------------------------------------------------------------------- which rule refused each candidate

# (gpu, driver, sources, options) -> the rejection of one candidate: the rule that refused it (``kind``) and the
# headline its like rejections count under. The explanation sorts and groups on these, never on the sentence.
KINDS: list[tuple[str, str | None, Sources, dict[str, object], str, RejectionKind, str]] = [
    ("sm_50", "535.104.05", DEFAULT, {}, "torch 2.1.2", "python", ""),
    ("sm_50", None, DEFAULT, {"os": "windows"}, "torch 2.11.0+cu129", "platform", ""),
    ("sm_86", "535.104.05", DEFAULT, {}, "torch 2.15.0+cu130", "driver", ""),
    ("sm_50", "535.104.05", DEFAULT, {"profile": "gptq"}, "torch 2.11.0+cu128", "arch", ""),
    ("sm_75", "535.104.05", PYPI_ONLY, {"profile": "gptq"}, "torch 2.14.1+cu126", "source", ""),
    (
        "sm_61",
        "535.104.05",
        MIRROR_213,
        {"python": "3.11", "torch": ">=2.12"},
        "torch 2.14.1+cu126",
        "listing",
        f"the PyTorch index {MIRROR} lists no wheel of it",
    ),
    ("sm_61", "535.104.05", DEFAULT, {"torch": "==2.5.1"}, "torch", "pins", ""),
    ("sm_50", "535.104.05", DEFAULT, {}, "bitsandbytes 0.50.2", "bitsandbytes", ""),
    ("sm_86", "535.104.05", DEFAULT, {"bnb": "<=0.45.4"}, "torch 2.11.0+cu128", "bitsandbytes", ""),
    ("sm_50", "535.104.05", DEFAULT, {"profile": "gptq"}, "torch 2.14.1+cu126", "quant", ""),
    ("sm_75", "535.104.05", PYPI_ONLY, {"profile": "gptq"}, "gptqmodel 7.7.0", "requirement", ""),
    ("sm_61", "535.104.05", DEFAULT, {"torch": "==2.5.1"}, "transformers 5.24.0", "requirement", ""),
    ("sm_86", "535.104.05", DEFAULT, {"bnb": "<=0.45.4"}, "torch 2.14.1+cu126", "companion", ""),
    ("sm_61", "535.104.05", DEFAULT, {"torch": "==2.5.1"}, "torch 2.5.1+cu121", "ranked", "works, but ranked lower"),
    ("cpu", None, WHEELHOUSE, {"profile": "cpu", "pythons": ("3.12", "3.11")}, "Python 3.12", "ranked", ""),
    ("sm_86", "535.104.05", DEFAULT, {"bnb": "<=0.45.4"}, "Python 3.12", "exhausted", ""),
]


@pytest.mark.parametrize(("gpu", "driver", "sources", "options", "candidate", "kind", "headline"), KINDS)
def test_each_rejection_names_the_rule_that_refused_it(
    matrix: Matrix,
    gpu: str,
    driver: str | None,
    sources: Sources,
    options: dict[str, object],
    candidate: str,
    kind: RejectionKind,
    headline: str,
) -> None:
    result = resolve(_target(matrix, gpu, driver, **options), matrix, sources)
    hit = next((r for r in result.rejected if r.candidate == candidate), None)
    assert hit is not None, f"{candidate} not among the rejected"
    assert (hit.kind, hit.headline) == (kind, headline), hit.why


def test_an_avoided_release_and_a_failed_run_are_their_own_kinds(matrix: Matrix) -> None:
    """The two rules the shipped matrix only shows on other hardware: its advice against a release, and a real
    run of this very combination that failed (the proven H100 run, as if it had failed)."""
    import dataclasses

    advised = tuple(
        dataclasses.replace(r, avoid="a test's advice") if r.version == "0.50.2" else r for r in matrix.bnb_releases
    )
    plan = _plan(dataclasses.replace(matrix, bnb_releases=advised, _cache={}), "sm_89", "580.95.05")
    assert Rejection("bitsandbytes", "0.50.2", "avoided: a test's advice", "avoided") in plan.rejected
    run = next(
        e for e in matrix.evidence if e.result == "pass" and e.gpu == "NVIDIA H100 80GB HBM3" and e.python == "3.12"
    )
    failed = dataclasses.replace(run, result="fail", detail="bnb_import FAIL: a test's failure")
    broken = dataclasses.replace(matrix, evidence=(failed,), _cache={})
    plan = _plan(broken, "NVIDIA H100 80GB HBM3", "580.159.04", python="3.12", sources=PYPI_ONLY)
    ran = f"failed a smoke test on {run.gpu} on {run.date}"
    assert Rejection("torch", run.torch, f"{ran}: bnb_import FAIL: a test's failure", "failed", ran) in plan.rejected


def test_a_mirror_lacking_every_wheel_is_one_reason_not_its_url_scheme(matrix: Matrix) -> None:
    """The no-plan reasons count like rejections under one headline: every page of a mirror that lists no such
    wheel is one reason, named by the mirror (the sentence cut at its first colon was "http")."""
    empty = Sources(pytorch_index=MIRROR, pytorch_files={v: () for v in ("cpu", "cu118", "cu126", "cu128", "cu130")})
    result = _noplan(matrix, "sm_50", "535.104.05", empty, profile="gptq")
    assert result.reasons[1] == f"55 candidate(s) fail on: the PyTorch index {MIRROR} lists no wheel of it"
