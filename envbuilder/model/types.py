"""Every closed set of envbuilder, once: the ``Literal`` type, and the tuple of its values read from it.

A field typed with one of these cannot hold a misspelt value without mypy saying so, and the matrix loader
refuses a value outside the tuple with a "did you mean" (``matrix._Row.choice``). Other modules import the
names from here; none spells a set out again (the smoke program, which runs inside a target interpreter on
the standard library alone, keeps its own copy of ``PROFILES``, and a test checks that it agrees).
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = [
    "CONFIDENCES",
    "CPU_BACKENDS",
    "LAYERS",
    "LOADERS",
    "OS_FLAVOURS",
    "PLATFORMS",
    "PROFILES",
    "PYPI",
    "QUANT_KERNELS",
    "QUANT_STATUSES",
    "SEGMENTS",
    "STATUSES",
    "WHEELHOUSE",
    "Confidence",
    "CpuBackend",
    "Layer",
    "Loader",
    "OsFlavour",
    "Platform",
    "ProfileName",
    "QuantKernels",
    "QuantStatus",
    "Segment",
    "Severity",
    "Status",
    "is_index_url",
]

# What an environment holds (matrices/profiles.toml); profiles that clash never share an environment.
ProfileName = Literal["bnb", "gptq", "awq", "cpu"]  # (matrix.Profile is the row that describes one)
# Where an environment runs: the matrix's platform keys (OS and CPU architecture).
Platform = Literal["linux-x86_64", "linux-aarch64", "windows-x86_64", "windows-arm64", "macos-arm64"]
# The OS a target names: WSL2 is Linux wheels on the Windows driver (its own driver numbering).
OsFlavour = Literal["linux", "wsl2", "windows"]
# How a bitsandbytes release picks its native library (matrices/bitsandbytes.toml [[loader]]).
Loader = Literal["exact-or-cpu", "exact-or-error", "nearest-same-major"]
# What a bitsandbytes release can do without a GPU.
CpuBackend = Literal["none", "nf4-only", "full"]
# A GPTQ/AWQ library release's upkeep, in the order the resolver prefers (matrices/quant.toml), and how its
# kernels reach a GPU: compiled on the target (jit), shipped in the wheel (prebuilt), or none at all.
QuantStatus = Literal["active", "deprecated", "eol"]
QuantKernels = Literal["jit", "prebuilt", "none"]
# Market segments of GPU products (matrices/gpus.toml).
Segment = Literal["geforce", "workstation", "datacenter", "jetson"]
# research's marks: ✅/🔶 count as confirmed; ⚠️, ❓, [2ND], [UNCONFIRMED] do not.
Confidence = Literal["confirmed", "unconfirmed"]
# A smoke stage's outcome, and a doctor finding's weight.
Status = Literal["OK", "WARN", "FAIL", "SKIP"]
Severity = Literal["FAIL", "WARN", "INFO"]
# The layer of the stack a doctor finding blames (tests/fixtures/logs/corpus.toml names one per real log):
# "outside" is an error in the user's code, data or Hub access; "healthy" a note on a working stack.
Layer = Literal[
    "gpu-arch",
    "driver",
    "torch-build",
    "cuda-runtime",
    "bnb-library",
    "gptq-awq-extension",
    "companion",
    "platform",
    "build-toolchain",
    "memory",
    "outside",
    "healthy",
]

PROFILES: Final[tuple[ProfileName, ...]] = get_args(ProfileName)
PLATFORMS: Final[tuple[Platform, ...]] = get_args(Platform)
OS_FLAVOURS: Final[tuple[OsFlavour, ...]] = get_args(OsFlavour)
LOADERS: Final[tuple[Loader, ...]] = get_args(Loader)
CPU_BACKENDS: Final[tuple[CpuBackend, ...]] = get_args(CpuBackend)
QUANT_STATUSES: Final[tuple[QuantStatus, ...]] = get_args(QuantStatus)
QUANT_KERNELS: Final[tuple[QuantKernels, ...]] = get_args(QuantKernels)
SEGMENTS: Final[tuple[Segment, ...]] = get_args(Segment)
CONFIDENCES: Final[tuple[Confidence, ...]] = get_args(Confidence)
STATUSES: Final[tuple[Status, ...]] = get_args(Status)
LAYERS: Final[tuple[Layer, ...]] = get_args(Layer)
PYPI: Final = "pypi"
WHEELHOUSE: Final = "wheelhouse"


def is_index_url(index: str) -> bool:
    """Is a pin's source an index URL (the PyTorch index, a mirror), not PyPI or the wheelhouse by name?"""
    return index not in (PYPI, WHEELHOUSE)
