"""envbuilder/model/target.py: what --gpu, --driver, --os, --python, --profile, --torch and --bnb accept and refuse."""

from __future__ import annotations

import pytest
from packaging.specifiers import SpecifierSet

from envbuilder.model.errors import TargetError
from envbuilder.model.matrix import Matrix
from envbuilder.model.target import (
    DEFAULT_PYTHONS,
    Gpu,
    build_target,
    gpu_from_pci_id,
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
        # The product is the PCI database's marketing name of the device the name means.
        ("RTX 4090", "8.9", "GeForce RTX 4090", "geforce"),
        ("rtx 4090", "8.9", "GeForce RTX 4090", "geforce"),
        ("A100", "8.0", "A100 SXM4 40GB", "datacenter"),  # equals: the fewest other words, then the lowest id
        ("GTX 1080 Ti", "6.1", "GeForce GTX 1080 Ti", "geforce"),
        # Tesla M4 is Maxwell, not Apple's M4: the exact product name wins over the macOS refusal.
        ("Tesla M4", "5.2", "Tesla M4", "datacenter"),
        ("Tesla P40", "6.1", "Tesla P40", "datacenter"),
        # As nvidia-smi prints them: vendor words and memory/form-factor suffixes are ignored, and the device
        # sharing most words is named (2330 is the SXM5 80GB board, which nvidia-smi calls "80GB HBM3").
        ("NVIDIA GeForce RTX 4090", "8.9", "GeForce RTX 4090", "geforce"),
        ("NVIDIA H100 80GB HBM3", "9.0", "H100 SXM5 80GB", "datacenter"),
        ("NVIDIA A100-SXM4-80GB", "8.0", "A100 SXM4 80GB", "datacenter"),
        ("Tesla V100-SXM2-16GB", "7.0", "Tesla V100 SXM2 16GB", "datacenter"),
        ("NVIDIA RTX A6000", "8.6", "RTX A6000", "workstation"),
        ("NVIDIA GeForce RTX 5090", "12.0", "GeForce RTX 5090", "geforce"),
        ("Quadro RTX 6000", "7.5", "Quadro RTX 6000", "workstation"),
        ("RTX 6000 Ada", "8.9", "RTX 6000 Ada Generation", "workstation"),
        # "Laptop GPU" (nvidia-smi), "Max-Q / Mobile" (the database) and "laptop" (a person) are one thing.
        ("NVIDIA GeForce RTX 4050 Laptop GPU", "8.9", "GeForce RTX 4050 Max-Q / Mobile", "geforce"),
        ("AD107M [GeForce RTX 4050 Max-Q / Mobile]", "8.9", "GeForce RTX 4050 Max-Q / Mobile", "geforce"),
        ("4050 laptop", "8.9", "GeForce RTX 4050 Max-Q / Mobile", "geforce"),
        ("NVIDIA GeForce RTX 2070 Super with Max-Q Design", "7.5", "GeForce RTX 2070 SUPER Mobile / Max-Q", "geforce"),
        # Short names of cloud and OEM parts the hand-typed table lacked.
        ("A10G", "8.6", "A10G", "datacenter"),
        ("H20", "9.0", "H20", "datacenter"),
        ("T4G", "7.5", "T4G", "datacenter"),
        ("MX550", "7.5", "GeForce MX550", "geforce"),
        ("RTX 2080Ti", "7.5", "GeForce RTX 2080 Ti", "geforce"),
        # Names whose series misleads: the RTX 2050 is Ampere, the "RTX 3050 A" laptop part is Ada.
        ("NVIDIA GeForce RTX 2050", "8.6", "GeForce RTX 2050", "geforce"),
        ("NVIDIA GeForce RTX 3050 A Laptop GPU", "8.9", "GeForce RTX 3050 A Laptop GPU", "geforce"),
        # The exceptions inside a family: GP100 is 6.0, GA100 8.0, GB10 12.1; superchips are their GPU's.
        ("Tesla P100-PCIE-16GB", "6.0", "Tesla P100 PCIe 16GB", "datacenter"),
        ("NVIDIA GH200 480GB", "9.0", "GH200 120GB / 480GB", "datacenter"),
        ("NVIDIA GB200", "10.0", "HGX GB200", "datacenter"),
        ("NVIDIA GB10", "12.1", "GB10", None),  # segment unknown: never assumed to be a data-centre part
        ("DGX Spark", "12.1", "DGX Spark", "workstation"),  # named by hand in gpus.toml: not a PCI device
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "12.0", "RTX PRO 6000 Blackwell Server Edition", "datacenter"),
        # vGPU profiles and GRID board names are the board's.
        ("NVIDIA A40-48Q", "8.6", "A40", "datacenter"),
        ("GRID RTX8000P-6Q", "7.5", "Quadro RTX 6000/8000", "workstation"),
        # PCI ids, case-insensitive, alone or inside a pasted `lspci -nn` line.
        ("10de:28a1", "8.9", "GeForce RTX 4050 Max-Q / Mobile", "geforce"),
        ("10DE:28A1", "8.9", "GeForce RTX 4050 Max-Q / Mobile", "geforce"),
        ("0x10de:0x2684", "8.9", "GeForce RTX 4090", "geforce"),
        ("01:00.0 VGA compatible controller [0300]: NVIDIA Corporation AD102 [GeForce RTX 4090] [10de:2684] (rev a1)",
         "8.9", "GeForce RTX 4090", "geforce"),
        # The database also lists a Kepler (GK107) "GT 1030": no plan could serve it, so the name means NVIDIA's
        # Pascal one; likewise the Fermi/Kepler namesakes of a Kepler GK208 GT 730.
        ("GT 1030", "6.1", "GeForce GT 1030", "geforce"),
        ("GT 730", "3.5", "GeForce GT 730", "geforce"),
    ],
)  # fmt: skip
def test_gpu_by_product_name(matrix: Matrix, text: str, cc: str, product: str, segment: str | None) -> None:
    assert parse_gpu(text, matrix) == Gpu(cc=cc, product=product, segment=segment)


@pytest.mark.parametrize(
    ("vendor", "device", "cc", "product"),
    [
        ("10de", "28a1", "8.9", "GeForce RTX 4050 Max-Q / Mobile"),
        ("10DE", "0x2E12", "12.1", "GB10"),
        (0x10DE, 0x2237, "8.6", "A10G"),
        ("0x10de", "1eb4", "7.5", "T4G"),
    ],
)
def test_gpu_from_pci_id(matrix: Matrix, vendor: str | int, device: str | int, cc: str, product: str) -> None:
    gpu = gpu_from_pci_id(vendor, device, matrix)
    assert (gpu.cc, gpu.product) == (cc, product)


@pytest.mark.parametrize(
    ("vendor", "device", "message", "hint"),
    [
        (
            "1002",
            "744c",
            "--gpu '1002:744c': PCI vendor 1002 is not NVIDIA (10de)",
            "name an NVIDIA GPU (sm_89, 8.9, 'RTX 4090', 10de:2684), or use --gpu cpu",
        ),
        (  # the HDMI audio function of an RTX 5090 board: not a GPU, so not in the table
            "10de",
            "22e8",
            "--gpu '10de:22e8': 10de:22e8 is not a GPU of the PCI ID database 2026.10.24",
            "refresh the GPU table (envbuilder matrix refresh --pci-ids), or the compute capability instead "
            "(nvidia-smi --query-gpu=compute_cap --format=csv)",
        ),
        (  # a Rubin die the database lists and no chip rule knows yet: unknown, never guessed
            "10de",
            "3002",
            "--gpu '10de:3002': GR100 (10de:3002) is a chip no chip rule knows, so its compute capability is unknown",
            "give the compute capability instead (nvidia-smi --query-gpu=compute_cap --format=csv), or add the chip "
            "to matrices/gpu-chips.toml",
        ),
        (
            "10de",
            "1180",
            "--gpu '10de:1180': GeForce GTX 680 (GK104, 10de:1180) has compute capability 3.0 (Kepler), which is not "
            "in the matrix",
            "known architectures: sm_35, sm_37, sm_50, sm_52, sm_53, sm_60, sm_61, sm_62, sm_70, sm_72, sm_75, "
            "sm_80, sm_86, sm_87, sm_89, sm_90, sm_100, sm_101, sm_103, sm_110, sm_120, sm_121",
        ),
        (  # Jetson AGX Thor's iGPU is a PCI device too, and Tegra
            "10de",
            "2b00",
            "--gpu '10de:2b00': sm_110 (Blackwell (Thor)) is a Jetson/Tegra SoC, which is not supported",
            "Jetson needs NVIDIA's JetPack wheels or a build on the device",
        ),
        ("10de", "28a", "--gpu: '28a' is not a 4-digit PCI id", "write it as lspci -nn prints it, e.g. 10de:28a1"),
    ],
    ids=["not-nvidia", "audio-function", "unknown-die", "kepler-3.0", "thor", "short-id"],
)
def test_gpu_from_pci_id_refused(matrix: Matrix, vendor: str, device: str, message: str, hint: str) -> None:
    with pytest.raises(TargetError) as info:
        gpu_from_pci_id(vendor, device, matrix)
    assert (info.value.message, info.value.hint) == (message, hint)


def test_ambiguous_rtx_6000_lists_turing_ada_and_blackwell(matrix: Matrix) -> None:
    with pytest.raises(TargetError) as info:
        parse_gpu("RTX 6000", matrix)
    assert info.value.message == (
        "--gpu 'RTX 6000' is ambiguous: sm_75 (Turing): Quadro RTX 6000/8000, Quadro RTX 6000; "
        "sm_89 (Ada Lovelace): RTX 6000 Ada Generation; sm_120 (Blackwell): RTX PRO 6000 Blackwell Workstation "
        "Edition, RTX PRO 6000 Blackwell Max-Q Workstation Edition, RTX PRO 6000 Blackwell Server Edition"
    )
    assert info.value.hint == "give the full product name, its PCI id or the compute capability (e.g. sm_89)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # A short name shared by an Ampere and an Ada laptop part.
        (
            "3050 laptop",
            "--gpu '3050 laptop' is ambiguous: sm_86 (Ampere): GeForce RTX 3050 Ti Mobile / Max-Q, GeForce RTX "
            "3050 Ti Mobile, GeForce RTX 3050 Mobile (+2 more); sm_89 (Ada Lovelace): GeForce RTX 3050 A Laptop GPU",
        ),
        (
            "RTX 2000",
            "--gpu 'RTX 2000' is ambiguous: sm_89 (Ada Lovelace): RTX 2000 / 2000E Ada Generation, RTX 2000 Ada "
            "Generation Laptop GPU, RTX 2000 Ada Generation Embedded GPU; sm_120 (Blackwell): RTX PRO 2000 "
            "Blackwell, RTX PRO 2000 Blackwell Generation Laptop GPU, RTX PRO 2000 Blackwell Embedded GPU",
        ),
        (
            "TITAN X",
            "--gpu 'TITAN X' is ambiguous: sm_52 (Maxwell): GeForce GTX TITAN X; sm_61 (Pascal): TITAN X Pascal",
        ),
    ],
)
def test_ambiguous_short_names(matrix: Matrix, text: str, message: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_gpu(text, matrix)
    assert info.value.message == message


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
