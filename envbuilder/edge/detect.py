"""The host probe: GPUs, driver, OS flavour (WSL2 included), CPU architecture, glibc and Pythons.

Pure parsers (text in, values out, no I/O) sit apart from the thin probe (STYLE.md rule 2): the parsers are
tested on outputs recorded on real hosts, the probe once for real on the machine the tests run on. The GPUs
come from NVML, then nvidia-smi, then the PCI bus (a GPU is seen before its driver is installed); the driver
from the override variables, the kernel module's files, NVML, then nvidia-smi (``envbuilder.edge.nvidia``). A probe
that fails yields "nothing found", never an exception; only a malformed override variable is refused.

This module reports what the host *is*; which CUDA versions its driver runs is the matrix's business
(``rules.cuda.driver_cuda``), not this module's.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import glob
import json
import os
import platform
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from envbuilder.edge import _run
from envbuilder.edge.nvidia import (
    NVIDIA_VENDOR,
    NvmlReading,
    PciDevice,
    PciName,
    PciNamer,
    has_device_nodes,
    nvidia_gpus,
    parse_proc_driver_version,
    probe_nvml,
    read_container,
    read_driver_files,
    read_pci_devices,
    read_proc_gpus,
    same_slot,
)
from envbuilder.model.driver import DriverReading, driver_override
from envbuilder.model.errors import CommandFailed

if TYPE_CHECKING:
    from envbuilder.model.gpu_table import GpuTable

__all__ = [
    "NVIDIA_SMI_QUERY",
    "NVIDIA_SMI_TIMEOUT",
    "WSL_LIB_DIR",
    "WSL_MARKERS",
    "GpuProbe",
    "GpuSource",
    "Host",
    "HostGpu",
    "OsName",
    "PythonInfo",
    "SmiSummary",
    "classify_os",
    "find_pythons",
    "gpus_from_bus",
    "gpus_from_nvml",
    "host_warnings",
    "normalize_machine",
    "parse_glibc",
    "parse_ldconfig_libcuda",
    "parse_nvidia_smi_banner",
    "parse_nvidia_smi_csv",
    "parse_nvidia_smi_csv_driver",
    "parse_nvidia_smi_xml",
    "parse_python_probe",
    "pci_namer",
    "probe_gpus",
    "probe_host",
    "probe_nvidia",
    "wsl_driver_warnings",
    "wsl_version",
]

OsName = Literal["linux", "wsl2", "windows", "macos"]
GpuSource = Literal["NVML", "nvidia-smi", "PCI bus", ""]

# The query `probe_host` runs; `parse_nvidia_smi_csv` reads its output without a header in this order.
NVIDIA_SMI_QUERY = ("index", "name", "compute_cap", "driver_version", "memory.total")
NVIDIA_SMI_TIMEOUT = 10.0
# What a WSL2 distro has and a plain Linux host has not: the paravirtual GPU device and the Windows
# driver's Linux-side libraries, bind-mounted from C:\Windows\System32\lxss\lib and the DriverStore.
WSL_MARKERS = ("/dev/dxg", "/usr/lib/wsl/lib/libcuda.so", "/usr/lib/wsl/lib/nvidia-smi")
WSL_LIB_DIR = "/usr/lib/wsl/"
# Where a Linux CUDA driver package (libnvidia-compute-*, cuda-drivers, a .run installer) puts libcuda.
_LIBCUDA_GLOBS = (
    "/usr/lib/x86_64-linux-gnu/libcuda.so*",
    "/usr/lib/aarch64-linux-gnu/libcuda.so*",
    "/usr/lib64/libcuda.so*",
    "/usr/lib/libcuda.so*",
    "/usr/local/lib/libcuda.so*",
)
_NA = frozenset({"", "n/a", "[n/a]", "[not supported]", "not supported", "[unknown error]"})
_CC_RE = re.compile(r"^\d+\.\d+$")
_VERSION_RE = re.compile(r"^\d+(\.\d+)+$")


@dataclass(frozen=True, slots=True)
class HostGpu:
    """One NVIDIA GPU of this host as the driver reports it (a target's GPU is ``model.target.Gpu``).

    ``cc`` is the compute capability ("9.0"), or "" when the driver's tools are too old to say
    (``compute_cap`` arrived in nvidia-smi's CSV query with the 510 drivers; ``nvidia-smi -q -x`` lacks it).
    """

    index: int
    name: str
    cc: str
    memory_mib: int | None
    pci_id: str | None = None  # "10de:2335", when NVML or the PCI bus gave it

    @property
    def sm(self) -> str:
        """The architecture as CUDA spells its targets: "sm_90" (or "" when unknown)."""
        return f"sm_{self.cc.replace('.', '')}" if self.cc else ""

    def to_json(self) -> dict[str, object]:
        return {
            "index": self.index,
            "name": self.name,
            "cc": self.cc or None,
            "memory_mib": self.memory_mib,
            "pci_id": self.pci_id,
        }


@dataclass(frozen=True, slots=True)
class PythonInfo:
    """A CPython interpreter installed on the machine."""

    version: str  # "3.11.7" (pre-releases as "3.14.0rc1")
    path: str
    minor: str  # "3.11"

    def to_json(self) -> dict[str, object]:
        return {"version": self.version, "path": self.path, "minor": self.minor}


@dataclass(frozen=True, slots=True)
class SmiSummary:
    """What ``nvidia-smi -q -x`` or the ``nvidia-smi`` banner says about the driver (and GPUs, for XML)."""

    gpus: tuple[HostGpu, ...]
    driver: str | None  # on WSL2 and Windows: the Windows driver, e.g. "546.80"
    cuda: str | None  # the "CUDA Version" shown: the newest CUDA this driver supports; None for "ERR!"
    smi: str | None = None  # the nvidia-smi tool's own version (differs from the driver on WSL2)


@dataclass(frozen=True, slots=True)
class Host:
    """What the probe found. Detection is only a default: the target options override every field."""

    gpus: tuple[HostGpu, ...]
    driver: str | None  # "580.159.04"
    os: OsName
    machine: str  # "x86_64" | "aarch64" | "arm64" (macOS, Windows on Arm)
    glibc: str | None  # "2.39"; None on musl, macOS and Windows
    kernel: str  # the kernel release, `uname -r`
    pythons: tuple[PythonInfo, ...]
    warnings: tuple[str, ...] = ()
    gpu_probe: str = ""  # how the GPUs were found, or why none were ("nvidia-smi not found on PATH")
    gpu_source: GpuSource = ""  # what listed the GPUs; "PCI bus": seen on the bus, no driver tool answered
    driver_source: str | None = None  # "/sys/module/nvidia/version", "UV_CUDA_DRIVER_VERSION", "NVML", ...
    kernel_module: str | None = None  # the loaded nvidia kernel module's version (Linux), whatever overrides say
    container: str | None = None  # "docker", "podman", "kubernetes", ... when this runs inside one
    device_nodes: bool = False  # /dev/nvidiactl exists

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict (the CLI adds the ``schema`` key)."""
        return {
            "gpus": [g.to_json() for g in self.gpus],
            "driver": self.driver,
            "driver_source": self.driver_source,
            "gpu_source": self.gpu_source or None,
            "kernel_module": self.kernel_module,
            "container": self.container,
            "device_nodes": self.device_nodes,
            "os": self.os,
            "machine": self.machine,
            "glibc": self.glibc,
            "kernel": self.kernel,
            "pythons": [p.to_json() for p in self.pythons],
            "warnings": list(self.warnings),
            "gpu_probe": self.gpu_probe,
        }


# ---------------------------------------------------------------------------------------------------
# Pure parsers


def _na(value: str) -> bool:
    return value.strip().lower() in _NA


def _mib(value: str) -> int | None:
    """'81559', '81559 MiB' -> 81559; 'N/A', '[N/A]', garbage -> None."""
    text = value.strip()
    if text.lower().endswith("mib"):
        text = text[:-3].strip()
    return int(text) if text.isdigit() else None


def _cc(value: str) -> str:
    text = value.strip()
    return text if _CC_RE.match(text) else ""


def _version(value: str | None) -> str | None:
    text = (value or "").strip()
    return text if _VERSION_RE.match(text) else None


def _csv_rows(text: str) -> list[dict[str, str]]:
    """Rows of nvidia-smi CSV as dicts keyed by query field, with or without the header line.

    A header names its fields ("memory.total [MiB]": the unit is dropped); without one the columns are
    those of ``NVIDIA_SMI_QUERY``. Lines with the wrong number of fields (error messages) are skipped.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return []
    first = [f.strip() for f in next(csv.reader([lines[0]], skipinitialspace=True))]
    if "name" in first:
        fields = [f.split(" [")[0] for f in first]
        lines = lines[1:]
    else:
        fields = list(NVIDIA_SMI_QUERY)
    rows = []
    for values in csv.reader(lines, skipinitialspace=True):
        if len(values) == len(fields):
            rows.append(dict(zip(fields, (v.strip() for v in values), strict=True)))
    return rows


def parse_nvidia_smi_csv(text: str) -> tuple[HostGpu, ...]:
    """GPUs from ``nvidia-smi --query-gpu=... --format=csv[,noheader][,nounits]``.

    Reads the query ``index,name,compute_cap,driver_version,memory.total`` without a header, or any
    query with a header; "MiB" suffixes and N/A values are accepted. Unparseable lines yield nothing.
    """
    gpus = []
    for position, row in enumerate(_csv_rows(text)):
        name = row.get("name", "")
        if _na(name):
            continue
        index_text = row.get("index", "")
        index = int(index_text) if index_text.isdigit() else position
        gpus.append(HostGpu(index, name, _cc(row.get("compute_cap", "")), _mib(row.get("memory.total", ""))))
    return tuple(gpus)


def parse_nvidia_smi_csv_driver(text: str) -> str | None:
    """The driver version from the same CSV (its ``driver_version`` column), or None."""
    for row in _csv_rows(text):
        driver = _version(row.get("driver_version"))
        if driver:
            return driver
    return None


def parse_nvidia_smi_xml(text: str) -> SmiSummary:
    """GPUs, driver and CUDA version from ``nvidia-smi -q -x``; an empty summary for anything else.

    The XML has no compute capability (checked on driver 580), so its GPUs carry ``cc=""`` unless a
    ``compute_cap`` element is present.
    """
    try:
        # The text comes from the local nvidia-smi, not from a network peer.
        root = ET.fromstring(text)  # noqa: S314
    except (ET.ParseError, ValueError):  # ValueError: text that is no XML at all (a lone surrogate)
        return SmiSummary((), None, None)
    gpus = []
    for position, node in enumerate(root.iter("gpu")):
        name = (node.findtext("product_name") or "").strip()
        if _na(name):
            continue
        memory = _mib(node.findtext("fb_memory_usage/total") or "")
        gpus.append(HostGpu(position, name, _cc(node.findtext("compute_cap") or ""), memory))
    return SmiSummary(tuple(gpus), _version(root.findtext("driver_version")), _version(root.findtext("cuda_version")))


_BANNER_RE = re.compile(
    r"NVIDIA-SMI\s+(?P<smi>\S+)\s+Driver Version:\s*(?P<driver>\S+)\s+CUDA Version:\s*(?P<cuda>\S+)"
)


def parse_nvidia_smi_banner(text: str) -> SmiSummary:
    """Driver, "CUDA Version" and tool version from the banner of plain ``nvidia-smi``.

    GPU rows are not read: the table truncates names ("NVIDIA GeForce ...") and omits the compute
    capability. "CUDA Version: ERR!" (seen on WSL2) gives ``cuda=None``.
    """
    match = _BANNER_RE.search(text)
    if not match:
        return SmiSummary((), None, None)
    return SmiSummary((), _version(match["driver"]), _version(match["cuda"]), _version(match["smi"]))


_GLIBC_RES = (
    re.compile(r"glibc[\s_-]?(\d+\.\d+)", re.IGNORECASE),  # ldd, confstr, platform, collect_env
    re.compile(r"GNU C Library.*?version (\d+\.\d+)"),  # running libc.so.6 itself
)


def parse_glibc(text: str) -> str | None:
    """The glibc version ("2.39") from ``ldd --version``, ``os.confstr('CS_GNU_LIBC_VERSION')``,
    ``platform.platform()`` or torch's collect_env; None for musl or text without one."""
    for pattern in _GLIBC_RES:
        match = pattern.search(text)
        if match:
            return match[1]
    return None


def parse_ldconfig_libcuda(text: str) -> tuple[str, ...]:
    """Paths of ``libcuda.so*`` (the driver API library, not ``libcudart``) from ``ldconfig -p``."""
    paths = []
    for line in text.splitlines():
        name, arrow, path = line.strip().partition(" => ")
        if arrow and name.startswith("libcuda.so"):
            paths.append(path.strip())
    return tuple(paths)


def wsl_version(kernel_release: str, proc_version: str = "", markers: Iterable[str] = ()) -> int | None:
    """1 or 2 when the Linux kernel is WSL's, else None.

    WSL2 kernels are named ``...-microsoft-standard`` (``-WSL2`` since 5.4); WSL1's fake kernel is
    ``...-Microsoft``. Custom WSL2 kernels may drop the name, so ``/dev/dxg`` or ``/usr/lib/wsl/lib``
    (``markers``: the paths of ``WSL_MARKERS`` that exist) count too.
    """
    for text in (kernel_release.lower(), proc_version.lower()):
        if "microsoft-standard" in text or "wsl2" in text:
            return 2
    for text in (kernel_release.lower(), proc_version.lower()):
        if "microsoft" in text:
            return 1
    if any(m == "/dev/dxg" or m.startswith(WSL_LIB_DIR) for m in markers):
        return 2
    return None


def classify_os(
    system: str, kernel_release: str = "", proc_version: str = "", wsl_markers: Iterable[str] = ()
) -> OsName:
    """The OS flavour from ``platform.system()``, ``uname -r``, ``/proc/version`` and the WSL markers.

    WSL1 counts as linux (it has no GPU access; ``host_warnings`` says so).
    """
    name = system.strip().lower()
    if name == "windows" or name.startswith(("cygwin", "msys", "mingw")):
        return "windows"
    if name == "darwin":
        return "macos"
    if wsl_version(kernel_release, proc_version, wsl_markers) == 2:
        return "wsl2"
    return "linux"


def wsl_driver_warnings(
    os_name: str,
    *,
    proc_driver_version: str | None = None,
    libcuda_paths: Iterable[str] = (),
    nvidia_smi_path: str | None = None,
) -> tuple[str, ...]:
    """Warnings for Linux NVIDIA driver pieces inside WSL2, where they break GPU access.

    NVIDIA's CUDA on WSL guide: the Windows driver is the only driver to install; a Linux display
    driver or ``cuda-drivers`` package inside WSL2 shadows the ``libcuda.so`` the Windows driver maps
    into ``/usr/lib/wsl/lib``. Pass real paths (symlinks resolved): a link into /usr/lib/wsl is fine.
    """
    if os_name != "wsl2":
        return ()
    out = []
    if proc_driver_version is not None:
        version = parse_proc_driver_version(proc_driver_version) or "unknown version"
        out.append(
            f"a Linux NVIDIA kernel driver ({version}) is loaded inside WSL2 (/proc/driver/nvidia/version); "
            "WSL2 must use the Windows driver only: remove the Linux driver packages"
        )
    foreign = sorted({p for p in libcuda_paths if not p.startswith(WSL_LIB_DIR) and "/stubs/" not in p})
    if foreign:
        out.append(
            f"libcuda.so outside /usr/lib/wsl inside WSL2 ({', '.join(foreign)}): a Linux CUDA driver "
            "package shadows the Windows driver's library; remove it (e.g. apt remove 'libnvidia-compute-*' "
            "cuda-drivers) and keep only the Windows driver"
        )
    if nvidia_smi_path and not nvidia_smi_path.startswith(WSL_LIB_DIR):
        out.append(
            f"nvidia-smi on PATH is {nvidia_smi_path}, not /usr/lib/wsl/lib/nvidia-smi: a Linux driver "
            "package's tool, which cannot reach the GPU under WSL2; remove the package"
        )
    return tuple(out)


_PY_PROBE = (
    "import sys; v = sys.version_info; "
    "print(sys.implementation.name, v.major, v.minor, v.micro, v.releaselevel, v.serial)"
)
_LEVELS = {"alpha": "a", "beta": "b", "candidate": "rc", "final": ""}


def parse_python_probe(text: str, path: str) -> PythonInfo | None:
    """A PythonInfo from the output of ``_PY_PROBE`` ("cpython 3 11 7 final 0"); None unless CPython 3."""
    fields = text.split()
    if len(fields) != 6 or fields[0] != "cpython" or fields[4] not in _LEVELS:
        return None
    major, minor, micro, serial = fields[1], fields[2], fields[3], fields[5]
    if major != "3" or not (minor + micro + serial).isdigit():
        return None
    level = _LEVELS[fields[4]]
    version = f"3.{minor}.{micro}" + (f"{level}{serial}" if level else "")
    return PythonInfo(version=version, path=path, minor=f"3.{minor}")


def normalize_machine(machine: str) -> str:
    """``platform.machine()`` as the matrix spells it: Windows' "AMD64" is x86_64."""
    lowered = machine.strip().lower()
    return {"amd64": "x86_64", "x64": "x86_64", "x86-64": "x86_64"}.get(lowered, lowered)


def _version_key(info: PythonInfo) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", info.version)[:3])


# ---------------------------------------------------------------------------------------------------
# The probe: the only part of this module that touches the machine


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _run_quiet(argv: list[str]) -> _run.Result | None:
    """Run a probe command; None when it cannot start or times out (a probe never raises)."""
    try:
        return _run.run(argv, timeout=NVIDIA_SMI_TIMEOUT, check=False)
    except (CommandFailed, OSError):
        return None


def _first_line(result: _run.Result) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[0].strip() if lines else "no output"


def _find_nvidia_smi(os_name: OsName) -> str | None:
    found = _run.which("nvidia-smi")
    if found is None and os_name == "wsl2" and os.access("/usr/lib/wsl/lib/nvidia-smi", os.X_OK):
        return "/usr/lib/wsl/lib/nvidia-smi"  # WSL2 mounts it there; not every shell puts it on PATH
    return found


def probe_gpus(os_name: OsName) -> tuple[tuple[HostGpu, ...], str | None, str]:
    """(GPUs, driver, how) from nvidia-smi: the CSV query first, then ``-q -x`` for old drivers."""
    smi = _find_nvidia_smi(os_name)
    if smi is None:
        return (), None, "nvidia-smi not found on PATH"
    query = f"--query-gpu={','.join(NVIDIA_SMI_QUERY)}"
    result = _run_quiet([smi, query, "--format=csv,noheader,nounits"])
    if result is None:
        return (), None, f"{smi} did not answer within {NVIDIA_SMI_TIMEOUT:g} s"
    if result.returncode == 0 and (gpus := parse_nvidia_smi_csv(result.stdout)):
        return gpus, parse_nvidia_smi_csv_driver(result.stdout), "nvidia-smi --query-gpu"
    failure = f"nvidia-smi exited {result.returncode}: {_first_line(result)}"
    # Drivers before 510 reject the compute_cap field; their XML still lists GPUs and the driver.
    xml = _run_quiet([smi, "-q", "-x"])
    if xml is not None and xml.returncode == 0:
        summary = parse_nvidia_smi_xml(xml.stdout)
        if summary.gpus:
            return summary.gpus, summary.driver, "nvidia-smi -q -x (no compute capability)"
    return (), None, failure


def gpus_from_nvml(reading: NvmlReading) -> tuple[HostGpu, ...]:
    """NVML's GPUs as ``HostGpu`` values (pure)."""
    return tuple(HostGpu(d.index, d.name, d.cc, d.memory_mib, d.pci_id) for d in reading.devices)


def gpus_from_bus(
    devices: tuple[PciDevice, ...], proc_models: dict[str, str], name_pci: PciNamer | None = None
) -> tuple[HostGpu, ...]:
    """The NVIDIA GPUs on the PCI bus, named by the loaded driver (``/proc/driver/nvidia/gpus``), else by the PCI
    id table, else by lspci's label, else by the id itself; the compute capability comes from the table (pure)."""
    out = []
    for index, dev in enumerate(nvidia_gpus(devices)):
        named = name_pci(dev.vendor, dev.device) if name_pci else None
        model = next((m for bus, m in proc_models.items() if same_slot(bus, dev.slot)), None)
        # lspci's label is a name unless its pci.ids did not know the id either ("Device", "Device 2684")
        label = "" if dev.label.split(" ")[0] == "Device" else dev.label
        name = model or (named.name if named else "") or label or f"NVIDIA GPU [{dev.pci_id}]"
        out.append(HostGpu(index, name, (named.cc or "") if named else "", None, dev.pci_id))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class GpuProbe:
    """What the NVIDIA part of the probe found: GPUs, the driver in use and where each came from."""

    gpus: tuple[HostGpu, ...]
    driver: DriverReading | None
    module: DriverReading | None  # the loaded kernel module (Linux), whatever the override says
    source: GpuSource
    how: str
    warnings: tuple[str, ...] = ()


def _tool_gpus(os_name: OsName, root: str = "/") -> tuple[tuple[HostGpu, ...], DriverReading | None, GpuSource, str]:
    """NVML first (in-process, cannot hang the command), then nvidia-smi.

    On Linux NVML reaches the driver through /dev/nvidiactl: without it NVML cannot answer, so it is not even
    imported (a machine without a driver, a container started without the toolkit; ~50 ms saved)."""
    nvml: NvmlReading | str
    if os_name == "linux" and not has_device_nodes(root):
        nvml = "NVML not asked: no /dev/nvidiactl"
    elif os_name == "macos":
        nvml = "NVML not asked on macOS"
    else:
        nvml = probe_nvml()
    if isinstance(nvml, NvmlReading) and nvml.devices:
        driver = DriverReading(nvml.driver, "NVML") if nvml.driver else None
        return gpus_from_nvml(nvml), driver, "NVML", "NVML"
    why_not = nvml if isinstance(nvml, str) else "NVML lists no GPU"
    gpus, smi_driver, how = probe_gpus(os_name)
    driver = DriverReading(smi_driver, "nvidia-smi") if smi_driver else None
    if gpus:
        return gpus, driver, "nvidia-smi", f"{how} ({why_not})"
    return (), driver, "", f"{why_not}; {how}"


def probe_nvidia(
    os_name: OsName,
    *,
    root: str = "/",
    env: Mapping[str, str] | None = None,
    tools: bool = True,
    name_pci: PciNamer | None = None,
) -> GpuProbe:
    """GPUs and driver: NVML, nvidia-smi (``tools``), then the PCI bus under ``root`` (Linux; WSL2 has no PCI
    device). The driver: the override variables, the kernel module's files, then what the tools said."""
    override, warnings = driver_override(os.environ if env is None else env)
    module = read_driver_files(root) if os_name == "linux" else None
    gpus: tuple[HostGpu, ...] = ()
    tool_driver: DriverReading | None = None
    source: GpuSource = ""
    how = "NVML and nvidia-smi not asked"
    if tools:
        gpus, tool_driver, source, how = _tool_gpus(os_name, root)
    if not gpus and os_name == "linux":
        gpus = gpus_from_bus(read_pci_devices(root), read_proc_gpus(root), name_pci)
        if gpus:
            source = "PCI bus"
            loaded = f"driver {module.version} loaded" if module else "no NVIDIA driver loaded"
            how = f"PCI bus ({loaded}; {how})"
    driver = override or module or tool_driver
    if override and (module or tool_driver):
        seen = module or tool_driver
        if seen and seen.version != override.version:
            warnings += (f"{override.source}={override.version} overrides the detected driver {seen.version}",)
    if module and tool_driver and module.version != tool_driver.version and tool_driver.source == "NVML":
        warnings += (
            f"the loaded kernel module is {module.version} but the driver's libraries are {tool_driver.version}: "
            "reboot after the driver upgrade",
        )
    return GpuProbe(gpus, driver, module, source, how, warnings)


def _libcuda_paths() -> tuple[str, ...]:
    paths: set[str] = set()
    ldconfig = _run.which("ldconfig") or next(
        (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.access(p, os.X_OK)), None
    )
    if ldconfig:
        result = _run_quiet([ldconfig, "-p"])
        if result is not None and result.returncode == 0:
            paths.update(parse_ldconfig_libcuda(result.stdout))
    for pattern in _LIBCUDA_GLOBS:
        paths.update(glob.glob(pattern))
    return tuple(sorted(os.path.realpath(p) for p in paths))


def _glibc() -> str | None:
    try:
        return parse_glibc(os.confstr("CS_GNU_LIBC_VERSION") or "")
    except (AttributeError, ValueError, OSError):  # no confstr (Windows) or no such name (musl, macOS)
        return None


def host_warnings(
    os_name: OsName, wsl: int | None, gpus: tuple[HostGpu, ...], *, driver_warnings: tuple[str, ...] = ()
) -> tuple[str, ...]:
    """Everything the user should hear about the host besides the facts (pure)."""
    out = list(driver_warnings)
    if wsl == 1:
        out.append("WSL 1 has no GPU access: convert the distro with `wsl --set-version <distro> 2`")
    out.extend(
        f"GPU {g.index} ({g.name}): compute capability unknown ("
        + (f"PCI id {g.pci_id} is not in envbuilder's table" if g.pci_id else "nvidia-smi too old to report it")
        + "); name the architecture with --gpu"
        for g in gpus
        if not g.cc
    )
    return tuple(out)


@functools.lru_cache(maxsize=1)
def probe_host() -> Host:
    """Probe this machine once (cached). Never raises for a missing or failing tool (a malformed
    ENVBUILDER_DRIVER or UV_CUDA_DRIVER_VERSION is refused: TargetError)."""
    system = platform.system()
    kernel = platform.release()
    proc_version = _read("/proc/version") or ""
    markers = tuple(m for m in WSL_MARKERS if os.path.exists(m)) if system == "Linux" else ()
    os_name = classify_os(system, kernel, proc_version, markers)
    nv = probe_nvidia(os_name, name_pci=pci_namer())
    driver_warnings: tuple[str, ...] = nv.warnings
    if os_name == "wsl2":
        smi = _run.which("nvidia-smi")
        driver_warnings += wsl_driver_warnings(
            os_name,
            proc_driver_version=_read("/proc/driver/nvidia/version"),
            libcuda_paths=_libcuda_paths(),
            nvidia_smi_path=os.path.realpath(smi) if smi else None,
        )
    return Host(
        gpus=nv.gpus,
        driver=nv.driver.version if nv.driver else None,
        os=os_name,
        machine=normalize_machine(platform.machine()),
        glibc=_glibc() if system == "Linux" else None,
        kernel=kernel,
        pythons=find_pythons(),
        warnings=host_warnings(
            os_name, wsl_version(kernel, proc_version, markers), nv.gpus, driver_warnings=driver_warnings
        ),
        gpu_probe=nv.how,
        gpu_source=nv.source,
        driver_source=nv.driver.source if nv.driver else None,
        kernel_module=nv.module.version if nv.module else None,
        container=read_container() if system == "Linux" else None,
        device_nodes=has_device_nodes() if system == "Linux" else False,
    )


def pci_namer() -> PciNamer | None:
    """The PCI id -> GPU name and compute capability table of issue 19: ``matrices/nvidia.ids`` (the PCI ID
    database's NVIDIA GPUs) with the chip rules of ``gpu-chips.toml``. The matrix is read on the first call,
    that is only when a GPU is found on the bus that no driver tool named; a broken matrix leaves it unnamed."""
    tables: list[GpuTable | None] = []

    def name(vendor: int, device: int) -> PciName | None:
        if vendor != NVIDIA_VENDOR:
            return None
        if not tables:
            from envbuilder.model.errors import MatrixError
            from envbuilder.model.matrix import load_matrix

            try:
                tables.append(load_matrix().gpu_table())
            except MatrixError:
                tables.append(None)
        table = tables[0]
        return table.by_device.get(f"{device:04x}") if table else None

    return name


_PY_NAME_RE = re.compile(r"^python3(\.\d+)?(\.exe)?$", re.IGNORECASE)


def _python_candidates() -> list[str]:
    """Paths that may be CPython 3 interpreters, in order of preference, before deduplication."""
    home = Path.home()
    pyenv = Path(os.environ.get("PYENV_ROOT", home / ".pyenv"))
    patterns = [
        str(pyenv / "versions" / "*" / "bin" / "python3"),
        str(home / ".local" / "share" / "uv" / "python" / "*" / "bin" / "python3"),
        "/usr/local/bin/python3.*",
        "/usr/bin/python3.*",
        "/opt/homebrew/bin/python3.*",
    ]
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA", str(home / "AppData" / "Local"))
        patterns = [str(Path(local) / "Programs" / "Python" / "Python3*" / "python.exe")]
    found = [p for pattern in patterns for p in sorted(glob.glob(pattern))]
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        # Version-manager shims (pyenv, asdf) are scripts that pick an interpreter per directory.
        if not directory or Path(directory).name == "shims" or not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            if _PY_NAME_RE.match(name) or (sys.platform == "win32" and name.lower() == "python.exe"):
                found.append(os.path.join(directory, name))
    found = [p for p in found if _PY_NAME_RE.match(Path(p).name) or Path(p).name.lower() == "python.exe"]
    return [*found, sys.executable]  # the interpreter running envbuilder (a venv's resolves to its base)


@functools.lru_cache(maxsize=1)
def find_pythons() -> tuple[PythonInfo, ...]:
    """CPython 3 interpreters installed here, one per real file, each asked for its own version.

    Sorted by version. Version-manager shims are skipped (the interpreters behind them are found
    directly), as are interpreters that fail to start.
    """
    seen: set[str] = set()
    out: list[PythonInfo] = []
    cache = _ProbeCache.load()
    for candidate in _python_candidates():
        real = os.path.realpath(candidate)
        if real in seen or not os.path.isfile(real) or not os.access(real, os.X_OK):
            continue
        seen.add(real)
        text = cache.get(real)
        if text is None:
            result = _run_quiet([real, "-I", "-S", "-c", _PY_PROBE])
            text = result.stdout if result is not None and result.returncode == 0 else ""
            cache.put(real, text)
        info = parse_python_probe(text, real) if text else None
        if info is not None:
            out.append(info)
    cache.save()
    return tuple(sorted(out, key=lambda p: (_version_key(p), p.path)))


class _ProbeCache:
    """What each interpreter said about itself, keyed by its path, size and mtime: starting nine interpreters
    costs ~0.2 s on every command, and an interpreter that changes on disk is asked again."""

    def __init__(self, path: Path, data: dict[str, dict[str, str]]) -> None:
        self.path, self.data, self.dirty = path, data, False

    @classmethod
    def load(cls) -> _ProbeCache:
        from envbuilder.edge._fs import read_json_object
        from envbuilder.edge.settings import cache_path

        path = cache_path("pythons.json")
        return cls(path, read_json_object(path) or {})

    @staticmethod
    def _stamp(path: str) -> str:
        st = os.stat(path)
        return f"{st.st_size}:{st.st_mtime_ns}"

    def get(self, path: str) -> str | None:
        entry = self.data.get(path)
        if isinstance(entry, dict) and entry.get("stamp") == self._stamp(path) and isinstance(entry.get("probe"), str):
            return str(entry["probe"])
        return None  # absent, stale or malformed (the file is outside input): ask the interpreter again

    def put(self, path: str, probe: str) -> None:
        self.data[path] = {"stamp": self._stamp(path), "probe": probe}
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        from envbuilder.edge._fs import write_text_atomic

        with contextlib.suppress(OSError):  # a cache that cannot be written only costs time
            write_text_atomic(self.path, json.dumps(self.data, indent=1, sort_keys=True))
