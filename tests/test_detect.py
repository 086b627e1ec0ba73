"""envbuilder.edge.detect: the parsers on real recordings and hand-made edge cases, and one real probe."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pytest

from envbuilder.cli.app import main
from envbuilder.cli.detect import _cuda_lines, render_host
from envbuilder.edge import _run, detect
from envbuilder.edge.detect import Host, HostGpu, PythonInfo, SmiSummary

FIXTURES = Path(__file__).parent / "fixtures"
H100 = FIXTURES / "h100-cu130"
WSL = FIXTURES / "wsl2"


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


H100_GPU = HostGpu(index=0, name="NVIDIA H100 80GB HBM3", cc="9.0", memory_mib=81559)


# --- nvidia-smi CSV ---------------------------------------------------------------------------------


def test_csv_fixture_with_header_and_units() -> None:
    # The recording used another query (no index, memory.used) with a header and "MiB" suffixes.
    text = read(H100 / "nvidia-smi-query.csv")
    assert detect.parse_nvidia_smi_csv(text) == (H100_GPU,)
    assert detect.parse_nvidia_smi_csv_driver(text) == "580.159.04"


@pytest.mark.parametrize(
    ("text", "gpus", "driver"),
    [
        # the probe's own query: noheader, nounits
        ("0, NVIDIA H100 80GB HBM3, 9.0, 580.159.04, 81559\n", (H100_GPU,), "580.159.04"),
        # several GPUs of different architectures, CRLF line ends (Windows)
        (
            "0, NVIDIA GeForce RTX 4090, 8.9, 560.35.03, 24564\r\n"
            "1, NVIDIA GeForce GTX 1080 Ti, 6.1, 560.35.03, 11264\r\n",
            (
                HostGpu(0, "NVIDIA GeForce RTX 4090", "8.9", 24564),
                HostGpu(1, "NVIDIA GeForce GTX 1080 Ti", "6.1", 11264),
            ),
            "560.35.03",
        ),
        # memory N/A (MIG, some virtual GPUs) and "[N/A]" with units on
        (
            "0, NVIDIA A100-SXM4-40GB, 8.0, 535.183.01, [N/A]\n",
            (HostGpu(0, "NVIDIA A100-SXM4-40GB", "8.0", None),),
            "535.183.01",
        ),
        ("0, Tesla T4, 7.5, 470.82.01, N/A\n", (HostGpu(0, "Tesla T4", "7.5", None),), "470.82.01"),
        # compute_cap N/A: kept, with the capability unknown
        ("0, Quadro P1000, [N/A], 470.82.01, 4096 MiB\n", (HostGpu(0, "Quadro P1000", "", 4096),), "470.82.01"),
        # a WSL2 driver: the Windows version, two components
        (
            "0, NVIDIA GeForce RTX 3060 Laptop GPU, 8.6, 546.80, 6144\n",
            (HostGpu(0, "NVIDIA GeForce RTX 3060 Laptop GPU", "8.6", 6144),),
            "546.80",
        ),
        # header only, empty, whitespace
        ("index, name, compute_cap, driver_version, memory.total [MiB]\n", (), None),
        ("", (), None),
        ("\n  \n", (), None),
        # garbage and error messages instead of CSV
        ("No devices were found\n", (), None),
        ('Field "compute_cap" is not a valid field to query.\n', (), None),
        ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n", (), None),
        ("1, 2, 3\n", (), None),
    ],
)
def test_csv_cases(text: str, gpus: tuple[HostGpu, ...], driver: str | None) -> None:
    assert detect.parse_nvidia_smi_csv(text) == gpus
    assert detect.parse_nvidia_smi_csv_driver(text) == driver


# --- nvidia-smi -q -x -------------------------------------------------------------------------------


def test_xml_fixture() -> None:
    # The XML carries no compute capability: the GPU comes back with cc "" (unknown), the rest exact.
    summary = detect.parse_nvidia_smi_xml(read(H100 / "nvidia-smi-q.xml"))
    assert summary == SmiSummary((HostGpu(0, "NVIDIA H100 80GB HBM3", "", 81559),), "580.159.04", "13.0")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", SmiSummary((), None, None)),
        ("not xml at all", SmiSummary((), None, None)),
        ("<nvidia_smi_log><driver_version>N/A</driver_version></nvidia_smi_log>", SmiSummary((), None, None)),
        (
            "<nvidia_smi_log><driver_version>470.82.01</driver_version><cuda_version>11.4</cuda_version>"
            "<gpu id='a'><product_name>Tesla T4</product_name><fb_memory_usage><total>15109 MiB</total>"
            "</fb_memory_usage></gpu><gpu id='b'><product_name>Tesla V100-SXM2-16GB</product_name>"
            "<compute_cap>7.0</compute_cap><fb_memory_usage><total>N/A</total></fb_memory_usage></gpu>"
            "</nvidia_smi_log>",
            SmiSummary(
                (HostGpu(0, "Tesla T4", "", 15109), HostGpu(1, "Tesla V100-SXM2-16GB", "7.0", None)),
                "470.82.01",
                "11.4",
            ),
        ),
    ],
)
def test_xml_cases(text: str, expected: SmiSummary) -> None:
    assert detect.parse_nvidia_smi_xml(text) == expected


# --- banner, /proc, glibc ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (H100 / "nvidia-smi.txt", SmiSummary((), "580.159.04", "13.0", "580.159.04")),
        # WSL2: the Linux-side tool's version differs from the Windows driver's; CUDA shows ERR!
        (WSL / "nvidia-smi-545.46-driver-546.80.txt", SmiSummary((), "546.80", None, "545.46")),
        (WSL / "nvidia-smi-515.65.01-driver-516.94.txt", SmiSummary((), "516.94", "11.6", "515.65.01")),
    ],
)
def test_banner_fixtures(path: Path, expected: SmiSummary) -> None:
    assert detect.parse_nvidia_smi_banner(read(path)) == expected


@pytest.mark.parametrize(
    "text",
    ["", "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.", "garbage\x00"],
)
def test_banner_without_one(text: str) -> None:
    assert detect.parse_nvidia_smi_banner(text) == SmiSummary((), None, None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (read(H100 / "proc-driver-nvidia-version.txt"), "580.159.04"),
        (
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024\n"
            "GCC version:  gcc version 12.3.0 (Ubuntu 12.3.0-1ubuntu1~22.04)\n",
            "535.183.01",
        ),
        ("NVRM version: NVIDIA UNIX Open Kernel Module for aarch64  550.54.14  Release Build", "550.54.14"),
        ("GCC version:  gcc version 15.3.0 (GCC)\n", None),  # only the NVRM line counts
        ("", None),
        ("NVRM version: garbage", None),
    ],
)
def test_proc_driver_version(text: str, expected: str | None) -> None:
    assert detect.parse_proc_driver_version(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (read(H100 / "python-m-bitsandbytes.txt"), "2.39"),  # "Platform: ...-with-glibc2.39"
        (read(H100 / "collect_env.txt"), "2.39"),  # "Libc version: glibc-2.39"
        (
            "ldd (Debian GLIBC 2.36-9+deb12u14) 2.36\nCopyright (C) 2022 Free Software Foundation, Inc.\n",
            "2.36",
        ),
        ("ldd (Ubuntu GLIBC 2.39-0ubuntu8.4) 2.39\n", "2.39"),
        ("glibc 2.36", "2.36"),  # os.confstr("CS_GNU_LIBC_VERSION")
        ("GNU C Library (GNU libc) stable release version 2.31.\n", "2.31"),
        ("musl libc (x86_64)\nVersion 1.2.4\nDynamic Program Loader\n", None),
        ("", None),
    ],
)
def test_glibc(text: str, expected: str | None) -> None:
    assert detect.parse_glibc(text) == expected


# --- WSL --------------------------------------------------------------------------------------------


def _release(proc_version: str) -> str:
    """The kernel release (`uname -r`) inside a /proc/version line."""
    return proc_version.split()[2]


@pytest.mark.parametrize(
    ("fixture", "wsl"),
    [
        ("proc-version-wsl2-5.4.91.txt", 2),
        ("proc-version-wsl2-5.4.72.txt", 2),
        ("proc-version-wsl2-5.10.16.3-partial.txt", 2),
        ("proc-version-wsl2-4.19.128.txt", 2),  # early WSL2: "-microsoft-standard", no "-WSL2"
        ("proc-version-wsl2-4.19.67.txt", 2),
        ("proc-version-wsl1-4.4.0-18985.txt", 1),
        ("proc-version-wsl1-3.4.0.txt", 1),
    ],
)
def test_wsl_proc_version_fixtures(fixture: str, wsl: int) -> None:
    proc_version = read(WSL / fixture)
    release = _release(proc_version)
    # Each source alone is enough: the release (uname -r), or /proc/version.
    assert detect.wsl_version(release) == wsl
    assert detect.wsl_version("", proc_version) == wsl
    expected = "wsl2" if wsl == 2 else "linux"  # WSL1 has no GPU: it counts as linux, with a warning
    assert detect.classify_os("Linux", release, proc_version) == expected


def test_wsl_uname_a_fixture() -> None:
    release = read(WSL / "uname-a-wsl2-4.19.59.txt").split()[2]
    assert release == "4.19.59-microsoft-standard"
    assert detect.classify_os("Linux", release) == "wsl2"


@pytest.mark.parametrize(
    ("system", "release", "proc_version", "markers", "expected"),
    [
        ("Linux", "5.15.167.4-microsoft-standard-WSL2", "", (), "wsl2"),
        ("Linux", "6.6.87.2-microsoft-standard-WSL2", "", (), "wsl2"),
        # a custom WSL2 kernel without "microsoft" in its name: the paravirtual GPU device gives it away
        ("Linux", "6.1.21-custom", "Linux version 6.1.21-custom (me@box)", ("/dev/dxg",), "wsl2"),
        ("Linux", "6.1.21-custom", "", ("/usr/lib/wsl/lib/libcuda.so",), "wsl2"),
        ("Linux", "6.18.44-fc-v657", "", (), "linux"),
        ("Linux", "6.8.0-45-generic", "Linux version 6.8.0-45-generic (buildd@lcy02-amd64-075)", (), "linux"),
        ("Windows", "10", "", (), "windows"),
        ("Windows", "11", "", (), "windows"),
        ("Darwin", "23.5.0", "", (), "macos"),
    ],
)
def test_classify_os(system: str, release: str, proc_version: str, markers: tuple[str, ...], expected: str) -> None:
    assert detect.classify_os(system, release, proc_version, markers) == expected


def test_ldconfig_fixture_healthy_wsl() -> None:
    # libcudart (the runtime) is not libcuda (the driver API); libcuda comes from /usr/lib/wsl only.
    paths = detect.parse_ldconfig_libcuda(read(WSL / "ldconfig-p-grep-libcuda.txt"))
    assert paths == ("/usr/lib/wsl/lib/libcuda.so.1",)
    assert detect.wsl_driver_warnings("wsl2", libcuda_paths=paths, nvidia_smi_path="/usr/lib/wsl/lib/nvidia-smi") == ()


def test_wsl_driver_warnings_linux_driver_inside_wsl() -> None:
    warnings = detect.wsl_driver_warnings(
        "wsl2",
        proc_driver_version=read(H100 / "proc-driver-nvidia-version.txt"),
        libcuda_paths=(
            "/usr/lib/wsl/lib/libcuda.so.1",
            "/usr/lib/x86_64-linux-gnu/libcuda.so.535.183.01",
            "/usr/local/cuda/lib64/stubs/libcuda.so",  # the toolkit's link-time stub is harmless
        ),
        nvidia_smi_path="/usr/bin/nvidia-smi",
    )
    assert warnings == (
        "a Linux NVIDIA kernel driver (580.159.04) is loaded inside WSL2 (/proc/driver/nvidia/version); "
        "WSL2 must use the Windows driver only: remove the Linux driver packages",
        "libcuda.so outside /usr/lib/wsl inside WSL2 (/usr/lib/x86_64-linux-gnu/libcuda.so.535.183.01): "
        "a Linux CUDA driver package shadows the Windows driver's library; remove it (e.g. apt remove "
        "'libnvidia-compute-*' cuda-drivers) and keep only the Windows driver",
        "nvidia-smi on PATH is /usr/bin/nvidia-smi, not /usr/lib/wsl/lib/nvidia-smi: "
        "a Linux driver package's tool, which cannot reach the GPU under WSL2; remove the package",
    )


def test_wsl_driver_warnings_only_on_wsl2() -> None:
    # On plain Linux the same pieces are exactly what should be there.
    assert (
        detect.wsl_driver_warnings(
            "linux",
            proc_driver_version=read(H100 / "proc-driver-nvidia-version.txt"),
            libcuda_paths=("/usr/lib/x86_64-linux-gnu/libcuda.so.1",),
            nvidia_smi_path="/usr/bin/nvidia-smi",
        )
        == ()
    )


def test_host_warnings() -> None:
    gpus = (H100_GPU, HostGpu(1, "Tesla K80", "", 11441))
    assert detect.host_warnings("linux", 1, gpus, driver_warnings=("x",)) == (
        "x",
        "WSL 1 has no GPU access: convert the distro with `wsl --set-version <distro> 2`",
        "GPU 1 (Tesla K80): compute capability unknown (nvidia-smi too old to report it); "
        "name the architecture with --gpu",
    )
    assert detect.host_warnings("linux", None, (H100_GPU,)) == ()


# --- Pythons, machine -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cpython 3 11 7 final 0\n", PythonInfo("3.11.7", "/p", "3.11")),
        ("cpython 3 14 0 candidate 1\n", PythonInfo("3.14.0rc1", "/p", "3.14")),
        ("cpython 3 15 0 alpha 2", PythonInfo("3.15.0a2", "/p", "3.15")),
        ("pypy 3 10 14 final 0", None),  # not CPython
        ("cpython 2 7 18 final 0", None),  # Python 2
        ("", None),
        ("Traceback (most recent call last):", None),
        ("cpython 3 x 7 final 0", None),
    ],
)
def test_parse_python_probe(text: str, expected: PythonInfo | None) -> None:
    assert detect.parse_python_probe(text, "/p") == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("x86_64", "x86_64"), ("AMD64", "x86_64"), ("aarch64", "aarch64"), ("arm64", "arm64")],
)
def test_normalize_machine(raw: str, expected: str) -> None:
    assert detect.normalize_machine(raw) == expected


# --- the real probe, on this machine (no GPU; CPython 3.10-3.13 under ~/.pyenv) ---------------------


def skip_on_gpu_host() -> None:
    """The unmarked probe tests describe a machine without nvidia-smi; ``test_probe_gpu_host`` covers GPUs
    (conftest refuses nvidia-smi in unmarked tests)."""
    if shutil.which("nvidia-smi") is not None:
        pytest.skip("nvidia-smi is on PATH: this machine is covered by the gpu-marked test_probe_gpu_host")


def test_probe_this_host() -> None:
    skip_on_gpu_host()
    host = detect.probe_host()
    assert host is detect.probe_host()  # cached
    assert host.driver is None
    assert host.gpu_probe  # says why there is no GPU
    assert host.os == "linux"
    assert host.machine == detect.normalize_machine(__import__("platform").machine())
    assert host.glibc is not None and host.glibc.count(".") == 1
    minors = {p.minor for p in host.pythons}
    assert {"3.10", "3.11", "3.12", "3.13"} <= minors
    # one entry per real file, each a real interpreter of the version it claims
    assert len({p.path for p in host.pythons}) == len(host.pythons)
    running = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    assert any(p.version == running for p in host.pythons)
    assert all(Path(p.path).is_file() for p in host.pythons if p.minor == "3.11")


# --- the CLI ----------------------------------------------------------------------------------------


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    skip_on_gpu_host()
    assert main(["detect", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "envbuilder.detect/1"
    assert doc | detect.probe_host().to_json() == doc  # every Host field, as the probe found it
    assert "3.11" in {p["minor"] for p in doc["pythons"]}


def test_cli_text_no_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    skip_on_gpu_host()
    assert main(["detect"]) == 0
    out = capsys.readouterr().out
    host = detect.probe_host()
    assert out.startswith(f"no NVIDIA GPU found ({host.gpu_probe})\n")
    assert f"OS: linux (kernel {host.kernel}), machine {host.machine}\n" in out


def test_render_host_h100() -> None:
    host = Host(
        gpus=(H100_GPU,),
        driver="580.159.04",
        os="wsl2",
        machine="x86_64",
        glibc="2.39",
        kernel="5.15.167.4-microsoft-standard-WSL2",
        pythons=(PythonInfo("3.12.3", "/usr/bin/python3.12", "3.12"),),
        warnings=("w1",),
        gpu_probe="nvidia-smi --query-gpu",
        gpu_source="nvidia-smi",
        driver_source="nvidia-smi",
    )
    assert render_host(host, ["CUDA (native): up to 13.0"]) == [
        "GPU 0: NVIDIA H100 80GB HBM3, sm_90 (9.0), 81559 MiB",
        "driver: 580.159.04 (from nvidia-smi)",
        "CUDA (native): up to 13.0",
        "OS: wsl2 (kernel 5.15.167.4-microsoft-standard-WSL2), machine x86_64",
        "glibc: 2.39",
        "Pythons:",
        "  3.12.3  /usr/bin/python3.12",
        "warning: w1",
    ]
    assert host.to_json()["gpus"] == [
        {"index": 0, "name": "NVIDIA H100 80GB HBM3", "cc": "9.0", "memory_mib": 81559, "pci_id": None}
    ]


def test_cuda_lines_agree_with_the_h100_banner() -> None:
    # The matrix's answer for driver 580.159.04 must match what that driver's nvidia-smi printed.
    banner = detect.parse_nvidia_smi_banner(read(H100 / "nvidia-smi.txt"))
    host = Host(
        gpus=(H100_GPU,),
        driver=banner.driver,
        os="linux",
        machine="x86_64",
        glibc="2.39",
        kernel="k",
        pythons=(),
    )
    lines = _cuda_lines(argparse.Namespace(matrix_dir=None), host)
    assert lines[0] == f"CUDA (native): up to {banner.cuda}"


def test_render_host_no_gpu_but_a_driver() -> None:
    host = Host(
        gpus=(),
        driver="535.183.01",
        os="linux",
        machine="aarch64",
        glibc=None,
        kernel="6.8.0",
        pythons=(),
        gpu_probe="nvidia-smi exited 9: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
        driver_source="/proc/driver/nvidia/version",
    )
    assert render_host(host, ["never shown without a GPU"]) == [
        "no NVIDIA GPU found (nvidia-smi exited 9: NVIDIA-SMI has failed because it couldn't communicate "
        "with the NVIDIA driver.)",
        "driver: 535.183.01 (from /proc/driver/nvidia/version)",
        "OS: linux (kernel 6.8.0), machine aarch64",
        "glibc: none",
        "Pythons: none found",
    ]


@pytest.mark.gpu
def test_probe_gpu_host() -> None:
    # On a GPU machine the CSV query must give every GPU a compute capability, and agree with the XML.
    if shutil.which("nvidia-smi") is None:
        pytest.skip("nvidia-smi is not on PATH: this machine has no NVIDIA driver (run on the GPU host)")
    host = detect.probe_host()
    assert host.gpus, host.gpu_probe
    assert host.gpu_source == "NVML", host.gpu_probe  # nvidia-ml-py is a dependency: NVML answers first
    assert all(g.cc.count(".") == 1 and g.memory_mib and g.pci_id for g in host.gpus)
    xml = detect.parse_nvidia_smi_xml(_run.run(["nvidia-smi", "-q", "-x"], timeout=30).stdout)
    assert [(g.name, g.memory_mib) for g in xml.gpus] == [(g.name, g.memory_mib) for g in host.gpus]
    assert xml.driver == host.driver


def test_python_probe_cache_is_keyed_by_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from envbuilder.edge.detect import _ProbeCache

    monkeypatch.setenv("ENVBUILDER_CACHE", str(tmp_path / "cache"))
    exe = tmp_path / "python3.11"
    exe.write_text("a")
    cache = _ProbeCache.load()
    assert cache.get(str(exe)) is None
    cache.put(str(exe), "cpython 3 11 7 final 0")
    cache.save()
    again = _ProbeCache.load()
    assert again.get(str(exe)) == "cpython 3 11 7 final 0"
    exe.write_text("changed, longer")  # a reinstalled interpreter is asked again
    assert _ProbeCache.load().get(str(exe)) is None


# --- a GPU on the bus without a driver: what detect says, and which driver the plan needs ---------------


def _bus_host(name: str, **kw: object) -> Host:
    fields: dict[str, object] = {
        "gpus": (HostGpu(0, name, "", None, "10de:2335"),),
        "driver": None,
        "os": "linux",
        "machine": "x86_64",
        "glibc": "2.39",
        "kernel": "6.18.44-fc-v973-gpu",
        "pythons": (),
        "gpu_probe": "PCI bus (no NVIDIA driver loaded; NVML: NVML Shared Library Not Found; "
        "nvidia-smi not found on PATH)",
        "gpu_source": "PCI bus",
    }
    fields.update(kw)
    return Host(**fields)  # type: ignore[arg-type]


def test_plan_driver_floor_for_a_driverless_h200() -> None:
    from envbuilder.cli._common import plan_driver_floor

    args = argparse.Namespace(matrix_dir=None)
    # named by the driver's /proc files ("NVIDIA H200" -> 9.0): the plan is a CUDA 13 build, which needs R580
    assert plan_driver_floor(args, _bus_host("NVIDIA H200")) == "580.65.06"
    # only a PCI id and no table to name it (issue 19 pending): no plan, so no floor to state
    assert plan_driver_floor(args, _bus_host("NVIDIA GPU [10de:2335]")) is None
    assert plan_driver_floor(args, _bus_host("x", gpus=())) is None


def test_render_driverless_host_with_advice() -> None:
    from envbuilder.cli.detect import _advice, needs_driver

    args = argparse.Namespace(matrix_dir=None)
    host = _bus_host("NVIDIA H200")
    assert needs_driver(host)
    assert render_host(host, [], _advice(args, host), {0: "9.0"}) == [
        "GPU 0: NVIDIA H200, sm_90 (9.0, by its name), PCI 10de:2335",
        "  found on the PCI bus (no NVIDIA driver loaded; NVML: NVML Shared Library Not Found; "
        "nvidia-smi not found on PATH)",
        "driver: none loaded",
        "to do: install an NVIDIA driver >= 580.65.06 (your distribution's NVIDIA driver package, e.g. "
        "`sudo ubuntu-drivers install`, or NVIDIA's cuda-drivers), then reboot",
        "OS: linux (kernel 6.18.44-fc-v973-gpu), machine x86_64",
        "glibc: 2.39",
        "Pythons: none found",
    ]


@pytest.mark.parametrize(
    ("host", "needs"),
    [
        (Host((H100_GPU,), "580.159.04", "linux", "x86_64", "2.39", "k", (), gpu_source="NVML"), False),
        (Host((), None, "linux", "x86_64", "2.39", "k", ()), False),  # no GPU anywhere: nothing to install
        (Host((), None, "wsl2", "x86_64", "2.39", "k", ()), True),  # WSL2 shows no PCI bus: say what to do
        (Host((), "546.80", "wsl2", "x86_64", "2.39", "k", ()), False),
    ],
)
def test_needs_driver(host: Host, needs: bool) -> None:
    from envbuilder.cli.detect import needs_driver

    assert needs_driver(host) is needs


def test_driver_variable_drives_an_explicit_gpu_plan(monkeypatch: pytest.MonkeyPatch, matrix: object) -> None:
    # One variable for uv and envbuilder: UV_CUDA_DRIVER_VERSION is the driver of `resolve --gpu sm_89`, a flag
    # beats it, ENVBUILDER_DRIVER beats it; a malformed one is exit 2 with the variable named.
    monkeypatch.setenv("UV_CUDA_DRIVER_VERSION", "535.104.05")
    monkeypatch.delenv("ENVBUILDER_DRIVER", raising=False)
    from envbuilder.cli._common import target_from_args

    def args(**kw: object) -> argparse.Namespace:
        base = {
            "gpu": "sm_89",
            "driver": None,
            "os": "linux",
            "python": "3.11",
            "machine": "x86_64",
            "profile": None,
            "torch": None,
            "bnb": None,
            "forward_compat": False,
        }
        return argparse.Namespace(**{**base, **kw})

    assert target_from_args(args(), matrix).driver == "535.104.05"  # type: ignore[arg-type]
    assert target_from_args(args(driver="550.54.14"), matrix).driver == "550.54.14"  # type: ignore[arg-type]
    monkeypatch.setenv("ENVBUILDER_DRIVER", "575.51.03")
    assert target_from_args(args(), matrix).driver == "575.51.03"  # type: ignore[arg-type]


def test_malformed_driver_variable_is_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("UV_CUDA_DRIVER_VERSION", "12.8")
    assert main(["resolve", "--gpu", "sm_89"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "envbuilder: UV_CUDA_DRIVER_VERSION='12.8' is not an NVIDIA driver version\n"
        "TIP write it as nvidia-smi prints it, e.g. UV_CUDA_DRIVER_VERSION=550.54.14, "
        "or unset it to detect the driver\n"
    )


def test_plan_driver_floor_for_an_h200_named_by_its_pci_id() -> None:
    # The whole no-driver path on the H200's recorded PCI id: the table names it, the plan is a CUDA 13 build.
    from envbuilder.cli._common import plan_driver_floor
    from envbuilder.cli.detect import _advice

    namer = detect.pci_namer()
    assert namer is not None
    named = namer(0x10DE, 0x2335)
    assert named is not None and (named.name, named.cc) == ("H200 SXM 141GB", "9.0")
    host = _bus_host(named.name, gpus=(HostGpu(0, named.name, named.cc or "", None, "10de:2335"),))
    args = argparse.Namespace(matrix_dir=None)
    assert plan_driver_floor(args, host) == "580.65.06"
    assert render_host(host, [], _advice(args, host))[:4] == [
        "GPU 0: H200 SXM 141GB, sm_90 (9.0), PCI 10de:2335",
        "  found on the PCI bus (no NVIDIA driver loaded; NVML: NVML Shared Library Not Found; "
        "nvidia-smi not found on PATH)",
        "driver: none loaded",
        "to do: install an NVIDIA driver >= 580.65.06 (your distribution's NVIDIA driver package, e.g. "
        "`sudo ubuntu-drivers install`, or NVIDIA's cuda-drivers), then reboot",
    ]
