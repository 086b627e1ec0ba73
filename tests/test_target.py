"""envbuilder/target.py: what --gpu, --driver, --os, --python, --profile, --torch and --bnb accept and refuse."""

from __future__ import annotations

import pytest
from packaging.specifiers import SpecifierSet

from envbuilder.errors import TargetError
from envbuilder.matrix import Matrix
from envbuilder.target import (
    DEFAULT_PYTHONS,
    Gpu,
    build_target,
    parse_driver,
    parse_gpu,
    parse_gpus,
    parse_machine,
    parse_os,
    parse_profile,
    parse_python,
    parse_spec,
)

_REFUSED_IDS = {
    "Foo 9000",
    "AMD MI300X",
    "rocm",
    "Radeon RX 7900 XTX",
    "Apple M4",
    "mps",
    "M2 Max",
    "Jetson Orin",
    "Jetson Orin Nano",
    "sm_87",
    "sm_99",
}
TIP_NAME = "name an NVIDIA GPU (sm_89, 8.9, 'RTX 4090'), or use --gpu cpu"


@pytest.mark.parametrize(
    ("text", "cc"),
    [
        ("sm_89", "8.9"),
        ("8.9", "8.9"),
        ("sm89", "8.9"),
        ("SM_90a", "9.0"),  # arch-specific suffix: same compute capability
        ("sm_100f", "10.0"),  # family suffix
        ("compute_90", "9.0"),
        ("12.0", "12.0"),
        ("sm_120", "12.0"),
        ("  sm_75  ", "7.5"),
        ("sm_61", "6.1"),
    ],
)
def test_gpu_by_compute_capability(matrix: Matrix, text: str, cc: str) -> None:
    assert parse_gpu(text, matrix) == Gpu(cc=cc)


@pytest.mark.parametrize(
    ("text", "cc", "product", "segment"),
    [
        ("RTX 4090", "8.9", "RTX 4090", "geforce"),
        ("rtx 4090", "8.9", "RTX 4090", "geforce"),
        ("A100", "8.0", "A100", "datacenter"),
        ("A10G", "8.6", "A10G", "datacenter"),
        ("GTX 1080 Ti", "6.1", "GTX 1080 Ti", "geforce"),
        # Tesla M4 is Maxwell, not Apple's M4: the exact product name wins over the macOS refusal.
        ("Tesla M4", "5.2", "M4", "datacenter"),
        ("Tesla P40", "6.1", "P40", "datacenter"),
        # As nvidia-smi prints them: vendor words and memory/form-factor suffixes are ignored.
        ("NVIDIA GeForce RTX 4090", "8.9", "RTX 4090", "geforce"),
        ("NVIDIA H100 80GB HBM3", "9.0", "H100", "datacenter"),
        ("NVIDIA A100-SXM4-80GB", "8.0", "A100 80GB", "datacenter"),
        ("Tesla V100-SXM2-16GB", "7.0", "V100", "datacenter"),
        ("NVIDIA RTX A6000", "8.6", "RTX A6000", "workstation"),
        ("NVIDIA GeForce RTX 5090", "12.0", "RTX 5090", "geforce"),
        ("Quadro RTX 6000", "7.5", "Quadro RTX 6000", "workstation"),
        ("RTX 6000 Ada", "8.9", "RTX 6000 Ada", "workstation"),
    ],
)
def test_gpu_by_product_name(matrix: Matrix, text: str, cc: str, product: str, segment: str) -> None:
    assert parse_gpu(text, matrix) == Gpu(cc=cc, product=product, segment=segment)


def test_ambiguous_rtx_6000_lists_turing_ada_and_blackwell(matrix: Matrix) -> None:
    with pytest.raises(TargetError) as info:
        parse_gpu("RTX 6000", matrix)
    assert info.value.message == (
        "--gpu 'RTX 6000' is ambiguous: RTX PRO 6000 Blackwell (sm_120, Blackwell); "
        "RTX PRO 6000 Blackwell Max-Q (sm_120, Blackwell); RTX PRO 6000 Blackwell Server Edition (sm_120, Blackwell); "
        "Quadro RTX 6000 (sm_75, Turing); RTX 6000 Ada (sm_89, Ada Lovelace)"
    )
    assert info.value.hint == "give the full product name or the compute capability (e.g. sm_89)"


@pytest.mark.parametrize(
    ("text", "message", "hint"),
    [
        (
            "Foo 9000",
            "--gpu 'Foo 9000': no GPU of that name in the matrix",
            "give the compute capability instead (nvidia-smi --query-gpu=compute_cap --format=csv)",
        ),
        (
            "AMD MI300X",
            "--gpu 'AMD MI300X': ROCm/AMD GPUs are not supported: envbuilder's matrix covers NVIDIA CUDA builds only",
            TIP_NAME,
        ),
        (
            "rocm",
            "--gpu 'rocm': ROCm/AMD GPUs are not supported: envbuilder's matrix covers NVIDIA CUDA builds only",
            TIP_NAME,
        ),
        (
            "Radeon RX 7900 XTX",
            "--gpu 'Radeon RX 7900 XTX': ROCm/AMD GPUs are not supported: envbuilder's matrix covers NVIDIA CUDA "
            "builds only",
            TIP_NAME,
        ),
        (
            "Apple M4",
            "--gpu 'Apple M4': macOS/Apple silicon is not supported: there is no CUDA there "
            "(bitsandbytes' MPS backend is experimental)",
            TIP_NAME,
        ),
        (
            "mps",
            "--gpu 'mps': macOS/Apple silicon is not supported: there is no CUDA there "
            "(bitsandbytes' MPS backend is experimental)",
            TIP_NAME,
        ),
        (
            "M2 Max",
            "--gpu 'M2 Max': macOS/Apple silicon is not supported: there is no CUDA there "
            "(bitsandbytes' MPS backend is experimental)",
            TIP_NAME,
        ),
        (
            "Jetson Orin",
            "--gpu 'Jetson Orin': Jetson (aarch64 + JetPack) is not supported: PyPI's aarch64 wheels are "
            "SBSA builds that fail on L4T; use NVIDIA's Jetson wheels or build on the device",
            TIP_NAME,
        ),
        (
            # A product the matrix knows is refused by its architecture's tegra flag, naming it.
            "Jetson Orin Nano",
            "--gpu 'Jetson Orin Nano': sm_87 (Ampere (Tegra)) is a Jetson/Tegra SoC, which is not supported",
            "Jetson needs NVIDIA's JetPack wheels or a build on the device",
        ),
        (
            "sm_87",
            "--gpu 'sm_87': sm_87 (Ampere (Tegra)) is a Jetson/Tegra SoC, which is not supported",
            "Jetson needs NVIDIA's JetPack wheels or a build on the device",
        ),
        (
            "sm_99",
            "--gpu 'sm_99': compute capability 9.9 is not in the matrix",
            "known architectures: sm_35, sm_37, sm_50, sm_52, sm_53, sm_60, sm_61, sm_62, sm_70, sm_72, sm_75, "
            "sm_80, sm_86, sm_87, sm_89, sm_90, sm_100, sm_101, sm_103, sm_110, sm_120, sm_121",
        ),
    ],
    ids=lambda v: v if v in _REFUSED_IDS else "",
)
def test_gpu_refused(matrix: Matrix, text: str, message: str, hint: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_gpu(text, matrix)
    assert (info.value.message, info.value.hint) == (message, hint)


@pytest.mark.parametrize(
    ("text", "ccs"),
    [
        ("sm_75,sm_89", ("7.5", "8.9")),
        ("sm_75, RTX 4090 ,", ("7.5", "8.9")),  # spaces and a trailing comma are fine
        ("A100,H100", ("8.0", "9.0")),
        ("cpu", ()),
        ("CPU", ()),
    ],
)
def test_gpu_lists(matrix: Matrix, text: str, ccs: tuple[str, ...]) -> None:
    assert tuple(g.cc for g in parse_gpus(text, matrix)) == ccs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "--gpu is empty"),
        (" , ", "--gpu is empty"),
        ("cpu,sm_89", "--gpu 'cpu,sm_89': 'cpu' and 'auto' stand alone, not in a list"),
        ("sm_89,auto", "--gpu 'sm_89,auto': 'cpu' and 'auto' stand alone, not in a list"),
    ],
)
def test_gpu_list_refused(matrix: Matrix, text: str, message: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_gpus(text, matrix)
    assert info.value.message == message


@pytest.mark.parametrize("text", ["550.54.14", "535.104.05", "470.82.01", "576.02", "580", " 570.86.10 "])
def test_driver_accepted(text: str) -> None:
    assert parse_driver(text) == text.strip()


@pytest.mark.parametrize(
    "text", ["abc", "5.5", "550.54.14.1.2", "", "55", "550.", "v550.54", "550.54.14a", "５５０.54.14"]
)
def test_driver_refused(text: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_driver(text)
    assert info.value.message == f"--driver {text.strip()!r} is not an NVIDIA driver version"
    assert info.value.hint == "write it as nvidia-smi prints it, e.g. 550.54.14 (Linux) or 576.02 (Windows)"


@pytest.mark.parametrize(
    ("text", "python"), [("3.11", "3.11"), ("3.12.3", "3.12"), ("3.10", "3.10"), (" 3.13 ", "3.13")]
)
def test_python_accepted(text: str, python: str) -> None:
    assert parse_python(text) == python


@pytest.mark.parametrize("text", ["2.7", "3", "3.x", "python3.11", "311", "", "3.11.2.1", "3.١١"])
def test_python_refused(text: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_python(text)
    assert info.value.message == f"--python {text!r} is not a CPython version"
    assert info.value.hint == "write it as 3.N, e.g. --python 3.11"


@pytest.mark.parametrize(("text", "flavour"), [("linux", "linux"), ("WSL2", "wsl2"), ("windows", "windows")])
def test_os_accepted(text: str, flavour: str) -> None:
    assert parse_os(text) == flavour


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("macos", "--os macos is not supported: there is no CUDA on macOS"),
        ("darwin", "--os macos is not supported: there is no CUDA on macOS"),
        ("freebsd", "--os 'freebsd' is not one of: linux, wsl2, windows"),
    ],
)
def test_os_refused(text: str, message: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_os(text)
    assert info.value.message == message


@pytest.mark.parametrize(("text", "machine"), [("x86_64", "x86_64"), ("AMD64", "x86_64"), ("aarch64", "aarch64")])
def test_machine(text: str, machine: str) -> None:
    assert parse_machine(text) == machine


def test_machine_refused() -> None:
    with pytest.raises(TargetError, match="--machine 'ppc64le' is not one of: x86_64, aarch64, arm64"):
        parse_machine("ppc64le")


@pytest.mark.parametrize("text", ["bnb", "gptq", "awq", "cpu", "BNB"])
def test_profile_accepted(matrix: Matrix, text: str) -> None:
    assert parse_profile(text, matrix) == text.lower()


def test_profile_refused(matrix: Matrix) -> None:
    with pytest.raises(TargetError) as info:
        parse_profile("qlora", matrix)
    assert info.value.message == "--profile 'qlora' is not one of: bnb, gptq, awq, cpu"
    assert info.value.hint == "bnb (bitsandbytes/QLoRA), gptq, awq or cpu"


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("2.10.0", "==2.10.0"),  # a bare version means exactly it
        (">=2.8,<2.12", "<2.12,>=2.8"),
        ("==2.11.*", "==2.11.*"),
        ("~=0.49.0", "~=0.49.0"),
    ],
)
def test_spec_accepted(text: str, spec: str) -> None:
    assert parse_spec(text, "--torch") == SpecifierSet(spec)


@pytest.mark.parametrize("text", ["abc", ">=", "2.x", "~=2", "===foo", ">=2.9;"])
def test_spec_refused(text: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_spec(text, "--bnb")
    assert info.value.message == f"--bnb {text!r} is not a version or a version range"
    assert info.value.hint == "write it like --bnb 2.10.0 or --bnb '>=2.8,<2.12'"


def test_build_target_defaults(matrix: Matrix) -> None:
    gpu = build_target(matrix, gpus=(Gpu("8.9"),))
    assert (gpu.profile, gpu.os, gpu.machine, gpu.platform, gpu.pythons) == (
        "bnb",
        "linux",
        "x86_64",
        "linux-x86_64",
        DEFAULT_PYTHONS,
    )
    assert build_target(matrix, gpus=()).profile == "cpu"


@pytest.mark.parametrize(
    ("os", "machine", "platform"),
    [
        ("linux", "x86_64", "linux-x86_64"),
        ("wsl2", "x86_64", "linux-x86_64"),  # WSL2 runs Linux wheels
        ("windows", "x86_64", "windows-x86_64"),
        ("linux", "arm64", "linux-aarch64"),
        ("windows", "arm64", "windows-arm64"),
    ],
)
def test_platform(matrix: Matrix, os: str, machine: str, platform: str) -> None:
    assert build_target(matrix, gpus=(Gpu("8.9"),), os=os, machine=machine).platform == platform


def test_gpu_profile_without_gpu_is_refused(matrix: Matrix) -> None:
    with pytest.raises(TargetError) as info:
        build_target(matrix, gpus=(), profile="bnb")
    assert info.value.message == "--profile bnb needs an NVIDIA GPU, and the target has none"
    assert info.value.hint == "name the GPU with --gpu (e.g. --gpu sm_89), or use --profile cpu"


def test_cpu_profile_drops_the_gpus(matrix: Matrix) -> None:
    assert build_target(matrix, gpus=(Gpu("8.9"),), profile="cpu").gpus == ()
