"""The NVIDIA driver and GPUs as the machine shows them before, or without, a working ``nvidia-smi``.

Where each fact comes from, in the order ``detect`` asks (uv's order for the driver, crates/uv-torch
``Accelerator::detect``, with NVML added before nvidia-smi):

- the driver version: ``ENVBUILDER_DRIVER``, then ``UV_CUDA_DRIVER_VERSION`` (one variable drives uv and
  envbuilder alike), then ``/sys/module/nvidia/version``, then ``/proc/driver/nvidia/version`` (the loaded kernel
  module; Linux only: WSL2 runs the Windows driver), then NVML, then nvidia-smi;
- the GPUs: NVML (``nvidia-ml-py``: in-process, no subprocess, asked in a daemon thread with a timeout), then
  nvidia-smi, then the PCI bus (``/sys/bus/pci/devices/*/{class,vendor,device}``), named from the PCI id, which
  works before any driver is installed.

Parsers take text and return values (tested on files recorded on real machines); the readers take a root
directory, so a test lays recorded files out as a fake ``/sys`` and ``/proc``. Nothing here raises for a
missing file or library (the override variables' rule, which refuses a malformed value, is model/driver.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from envbuilder.model.driver import DriverReading, driver_version

__all__ = [
    "NVIDIA_VENDOR",
    "NVML_TIMEOUT",
    "PCI_CLASS_DISPLAY",
    "NvmlDevice",
    "NvmlReading",
    "PciDevice",
    "PciName",
    "PciNamer",
    "booted_from_disk",
    "container_kind",
    "cuda_from_nvml",
    "driver_advice",
    "has_device_nodes",
    "nvidia_gpus",
    "parse_gpu_information",
    "parse_lspci_nn",
    "parse_proc_driver_version",
    "parse_sys_module_version",
    "parse_sysfs_device",
    "probe_nvml",
    "read_container",
    "read_driver_files",
    "read_pci_devices",
    "read_proc_gpus",
    "same_slot",
]

NVIDIA_VENDOR = 0x10DE
PCI_CLASS_DISPLAY = 0x03  # base class: 0x0300 VGA, 0x0302 3D controller, 0x0380 display controller
NVML_TIMEOUT = 5.0


class PciName(Protocol):
    """What a PCI id table says about a device: its product name and compute capability (None: unknown)."""

    @property
    def name(self) -> str: ...

    @property
    def cc(self) -> str | None: ...


# (vendor, device) -> name, or None for an id the table does not hold (detect.pci_namer: the GPU table).
PciNamer = Callable[[int, int], PciName | None]


# ---------------------------------------------------------------------------------------------------
# The driver version


def parse_sys_module_version(text: str) -> str | None:
    """The version in ``/sys/module/nvidia/version`` ("580.159.04\\n"), or None."""
    return driver_version(text)


_NVRM_RE = re.compile(r"^NVRM version:.*?\s(\d+\.\d+(?:\.\d+)?)\s", re.MULTILINE)


def parse_proc_driver_version(text: str) -> str | None:
    """The kernel module's version from ``/proc/driver/nvidia/version``, or None."""
    match = _NVRM_RE.search(text + " ")
    return match[1] if match else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def read_driver_files(root: str = "/") -> DriverReading | None:
    """The loaded kernel module's version: ``/sys/module/nvidia/version``, then ``/proc/driver/nvidia/version``."""
    base = Path(root)
    version = parse_sys_module_version(_read(base / "sys/module/nvidia/version") or "")
    if version:
        return DriverReading(version, "/sys/module/nvidia/version")
    version = parse_proc_driver_version(_read(base / "proc/driver/nvidia/version") or "")
    return DriverReading(version, "/proc/driver/nvidia/version") if version else None


# ---------------------------------------------------------------------------------------------------
# PCI devices


@dataclass(frozen=True, slots=True)
class PciDevice:
    """One PCI function: its slot, ids, class and bound kernel driver, as sysfs or ``lspci -nn`` shows it.

    ``pci_class`` is the 24-bit class code sysfs gives (0x030200); lspci's 16-bit "[0302]" is shifted to match.
    ``label`` is lspci's name for it ("GP107M [GeForce GTX 1050 Ti Mobile]"), empty from sysfs.
    """

    slot: str
    vendor: int
    device: int
    pci_class: int
    driver: str | None = None
    label: str = ""

    @property
    def pci_id(self) -> str:
        """ "10de:2335"."""
        return f"{self.vendor:04x}:{self.device:04x}"

    @property
    def is_nvidia_gpu(self) -> bool:
        """An NVIDIA display-class function (not its HDMI audio, USB-C or NVSwitch functions)."""
        return self.vendor == NVIDIA_VENDOR and self.pci_class >> 16 == PCI_CLASS_DISPLAY


def _hex(text: str | None) -> int | None:
    value = (text or "").strip().lower().removeprefix("0x")
    return int(value, 16) if value and all(c in "0123456789abcdef" for c in value) else None


def parse_sysfs_device(
    slot: str, class_text: str | None, vendor_text: str | None, device_text: str | None, driver: str | None = None
) -> PciDevice | None:
    """A PciDevice from the ``class``, ``vendor`` and ``device`` files of ``/sys/bus/pci/devices/<slot>``."""
    pci_class, vendor, device = _hex(class_text), _hex(vendor_text), _hex(device_text)
    if pci_class is None or vendor is None or device is None:
        return None
    return PciDevice(slot, vendor, device, pci_class, driver or None)


def read_pci_devices(root: str = "/") -> tuple[PciDevice, ...]:
    """Every function under ``<root>/sys/bus/pci/devices`` (none where sysfs has no PCI bus, as in WSL2)."""
    base = Path(root) / "sys/bus/pci/devices"
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return ()
    out = []
    for entry in entries:
        link = entry / "driver"
        driver = os.path.basename(os.readlink(link)) if link.is_symlink() else None
        dev = parse_sysfs_device(
            entry.name, _read(entry / "class"), _read(entry / "vendor"), _read(entry / "device"), driver
        )
        if dev is not None:
            out.append(dev)
    return tuple(out)


# "01:00.0 3D controller [0302]: NVIDIA Corporation GP107M [GeForce GTX 1050 Ti Mobile] [10de:1c8c] (rev a1)";
# the slot may carry a domain (lspci -D), and users often paste lines without it, or without the class code.
_LSPCI_RE = re.compile(
    r"^(?P<slot>(?:[0-9a-fA-F]{4,8}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]\s+)?"
    r"(?P<cname>[A-Za-z0-9 /-]+?)\s*(?:\[(?P<class>[0-9a-fA-F]{4})\])?:\s+"
    r"(?P<label>.*?)\s*\[(?P<vendor>[0-9a-fA-F]{4}):(?P<device>[0-9a-fA-F]{4})\]"
)
_CLASS_NAMES = {"vga compatible controller": 0x0300, "3d controller": 0x0302, "display controller": 0x0380}
_DRIVER_IN_USE_RE = re.compile(r"^\s+Kernel driver in use:\s*(\S+)")


def parse_lspci_nn(text: str) -> tuple[PciDevice, ...]:
    """Devices from ``lspci -nn`` (also ``-nnk``, ``-vnn``, ``-Dnn``) as users paste it.

    Indented lines (Subsystem, Flags) belong to the device above; "Kernel driver in use" gives its driver. A
    line without a class code is classed by its name ("3D controller"); lines without ids are skipped.
    """
    out: list[PciDevice] = []
    for line in text.splitlines():
        in_use = _DRIVER_IN_USE_RE.match(line)
        if in_use and out:
            last = out[-1]
            out[-1] = PciDevice(last.slot, last.vendor, last.device, last.pci_class, in_use[1], last.label)
            continue
        if line[:1].isspace():
            continue
        match = _LSPCI_RE.match(line.strip())
        if not match:
            continue
        code = int(match["class"], 16) if match["class"] else _CLASS_NAMES.get(match["cname"].strip().lower(), 0)
        vendor_name, corporation, product = match["label"].partition(" Corporation ")
        slot = (match["slot"] or "").strip()
        label = product if corporation else vendor_name
        out.append(PciDevice(slot, int(match["vendor"], 16), int(match["device"], 16), code << 8, None, label))
    return tuple(out)


def nvidia_gpus(devices: Iterable[PciDevice]) -> tuple[PciDevice, ...]:
    """The NVIDIA GPUs among ``devices`` (display class only), in bus order."""
    return tuple(d for d in devices if d.is_nvidia_gpu)


# ---------------------------------------------------------------------------------------------------
# /proc/driver/nvidia/gpus/*/information: the driver's own name for each GPU, by bus location


def parse_gpu_information(text: str) -> tuple[str | None, str | None]:
    """(model, bus location) from one ``information`` file ("Model: NVIDIA H200", "Bus Location: 0000:00:06.0")."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    return fields.get("model") or None, fields.get("bus location") or None


def read_proc_gpus(root: str = "/") -> dict[str, str]:
    """Bus location -> model, for every GPU the loaded driver lists under ``/proc/driver/nvidia/gpus``."""
    base = Path(root) / "proc/driver/nvidia/gpus"
    try:
        entries = sorted(base.iterdir())
    except OSError:
        return {}
    out = {}
    for entry in entries:
        model, bus = parse_gpu_information(_read(entry / "information") or "")
        if model:
            out[(bus or entry.name).lower()] = model
    return out


def same_slot(a: str, b: str) -> bool:
    """Do two bus addresses name one function? ("0000:00:06.0", "00000000:00:06.0", "00:06.0")."""

    def norm(slot: str) -> tuple[int, ...]:
        parts = re.split(r"[:.]", slot.strip().lower())
        values = [int(p, 16) for p in parts if p and all(c in "0123456789abcdef" for c in p)]
        return tuple(values[-3:]) if len(values) >= 3 else tuple(values)

    return bool(a and b) and norm(a) == norm(b)


# ---------------------------------------------------------------------------------------------------
# NVML (nvidia-ml-py's ``pynvml``, imported only when asked)


@dataclass(frozen=True, slots=True)
class NvmlDevice:
    """What NVML says about one GPU."""

    index: int
    name: str
    cc: str  # "9.0"
    pci_device_id: int  # NVML's 32-bit id: device << 16 | vendor (0x233510de)
    bus_id: str  # "00000000:00:06.0"
    memory_mib: int | None

    @property
    def pci_id(self) -> str:
        """ "10de:2335" from NVML's combined id."""
        return f"{self.pci_device_id & 0xFFFF:04x}:{self.pci_device_id >> 16:04x}"


@dataclass(frozen=True, slots=True)
class NvmlReading:
    """The driver (the user-space library's version), the newest CUDA it runs, and the GPUs."""

    driver: str | None
    cuda: str | None  # "13.0"
    devices: tuple[NvmlDevice, ...]


def cuda_from_nvml(value: int) -> str | None:
    """NVML's CUDA driver version (13000) as "13.0" (``NVML_CUDA_DRIVER_VERSION_MAJOR/MINOR``); None for 0."""
    return f"{value // 1000}.{value % 1000 // 10}" if value > 0 else None


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _nvml_read() -> NvmlReading | str:
    """Ask NVML once; a string says why it could not answer (no library, no driver, version mismatch)."""
    try:
        import pynvml
    except ImportError:
        return "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"NVML: {exc}"
    try:
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            pci = pynvml.nvmlDeviceGetPciInfo(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total
            devices.append(
                NvmlDevice(
                    index,
                    _text(pynvml.nvmlDeviceGetName(handle)),
                    f"{major}.{minor}",
                    int(pci.pciDeviceId),
                    _text(pci.busId),
                    int(memory) // 2**20 if memory else None,
                )
            )
        driver = driver_version(_text(pynvml.nvmlSystemGetDriverVersion()))
        return NvmlReading(driver, cuda_from_nvml(int(pynvml.nvmlSystemGetCudaDriverVersion())), tuple(devices))
    except pynvml.NVMLError as exc:
        return f"NVML: {exc}"
    finally:
        with contextlib.suppress(pynvml.NVMLError):  # shutting down a half-initialised library is best effort
            pynvml.nvmlShutdown()


def probe_nvml(timeout: float = NVML_TIMEOUT) -> NvmlReading | str:
    """NVML's answer, asked in a daemon thread: a wedged driver costs ``timeout`` and never blocks exit (ctypes
    releases the GIL while the library call waits)."""
    answer: list[NvmlReading | str] = []
    thread = threading.Thread(target=lambda: answer.append(_nvml_read()), name="envbuilder-nvml", daemon=True)
    thread.start()
    thread.join(timeout)
    if not answer:
        return f"NVML did not answer within {timeout:g} s"
    return answer[0]


# ---------------------------------------------------------------------------------------------------
# Containers and device nodes: why a GPU on the bus may still be out of reach


_CGROUP_MARKS = (("kubepods", "kubernetes"), ("docker", "docker"), ("libpod", "podman"), ("containerd", "containerd"))


def container_kind(
    markers: Iterable[str], cgroup_text: str = "", container_env: str = "", root_mount: str = ""
) -> str | None:
    """Which container this is, from the marker files that exist, ``/proc/1/cgroup``, ``$container`` and the
    root line of ``/proc/self/mountinfo``."""
    present = set(markers)
    if "/run/.containerenv" in present or container_env == "podman":
        return "podman"
    if "/.dockerenv" in present and not booted_from_disk(root_mount):
        return "docker"
    for mark, kind in _CGROUP_MARKS:
        if mark in cgroup_text:
            return kind
    return container_env or None


def booted_from_disk(root_mount: str) -> bool:
    """Is ``/`` a whole filesystem on a block device (a ``/proc/self/mountinfo`` line)? Then this is a
    machine, though it may carry ``/.dockerenv``: microVMs (Firecracker) boot disks made from container
    images, and the file comes along. A container's root is an overlay, or a subdirectory of the storage
    driver's filesystem (btrfs subvolumes: the line's root field is not ``/``), or a ``/dev/mapper/docker-*``
    thin device."""
    fields = root_mount.split()
    if " - " not in root_mount or len(fields) < 5 or fields[4] != "/":
        return False
    fstype, source = root_mount.split(" - ", 1)[1].split()[:2]
    return (
        fields[3] == "/"
        and fstype not in ("overlay", "fuse-overlayfs", "aufs", "zfs", "tmpfs")
        and source.startswith("/dev/")
        and not source.startswith("/dev/mapper/docker-")
    )


def _root_mount(text: str) -> str:
    return next((line for line in text.splitlines() if line.split()[4:5] == ["/"]), "")


def read_container(root: str = "/", env: Mapping[str, str] | None = None) -> str | None:
    """``container_kind`` for this machine (or a recorded tree under ``root``)."""
    base = Path(root)
    markers = [m for m in ("/.dockerenv", "/run/.containerenv") if (base / m.lstrip("/")).exists()]
    env = os.environ if env is None else env
    mounts = _root_mount(_read(base / "proc/self/mountinfo") or "")
    return container_kind(markers, _read(base / "proc/1/cgroup") or "", env.get("container", ""), mounts)


def has_device_nodes(root: str = "/") -> bool:
    """Are the NVIDIA device nodes there (``/dev/nvidiactl``)? A container started without the NVIDIA
    Container Toolkit sees the host's PCI bus and driver files, but not these."""
    return (Path(root) / "dev/nvidiactl").exists()


# ---------------------------------------------------------------------------------------------------
# What to install (pure): the driver floor comes from the plan, computed by the caller


def driver_advice(
    os_name: str, *, container: str | None, module: str | None, device_nodes: bool, floor: str | None
) -> str:
    """One sentence: what to install or change so that the GPUs on the bus can run the plan.

    ``module`` is the loaded kernel module's version (None: no driver loaded); ``floor`` the lowest driver
    the plan's CUDA build runs natively on (None: unknown, e.g. no GPU architecture known).
    """
    want = f"an NVIDIA driver >= {floor}" if floor else "a current NVIDIA driver"
    if os_name == "wsl2":
        return (
            f"install {want} on Windows (the Windows driver serves WSL2; never install a Linux driver inside WSL2); "
            "WSL2 shows no PCI device, so name the GPU with --gpu to plan before it is visible"
        )
    if container:
        if module:
            return (
                f"the host's driver {module} is loaded, but this {container} container has no NVIDIA device nodes: "
                "start it with the NVIDIA Container Toolkit (docker run --gpus all, or podman run --device "
                "nvidia.com/gpu=all)"
            )
        return (
            f"install {want} on the host, not in this {container} container, then start the container with the "
            "NVIDIA Container Toolkit (docker run --gpus all, or podman run --device nvidia.com/gpu=all)"
        )
    if module and not device_nodes:
        return f"the kernel module {module} is loaded but /dev/nvidiactl is missing: run nvidia-modprobe, or reboot"
    return (
        f"install {want} (your distribution's NVIDIA driver package, e.g. `sudo ubuntu-drivers install`, or "
        "NVIDIA's cuda-drivers), then reboot"
    )
