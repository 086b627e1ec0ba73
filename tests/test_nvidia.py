"""envbuilder.edge.nvidia and the driverless part of detection: parsers on files recorded on the H200 host and on
`lspci -nn` outputs users posted (tests/fixtures/lspci/README.md), the readers on those files laid out as a fake
/sys and /proc tree, the real NVML binding on this machine (no NVIDIA library here), and the advice."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from envbuilder.edge import detect, nvidia
from envbuilder.edge.detect import HostGpu
from envbuilder.edge.nvidia import NvmlDevice, NvmlReading, PciDevice
from envbuilder.model.driver import DriverReading, driver_override
from envbuilder.model.errors import TargetError

FIXTURES = Path(__file__).parent / "fixtures"
H200 = FIXTURES / "h200-cu130" / "host"
LSPCI = FIXTURES / "lspci"


def recorded(path: Path) -> str:
    """A captured file as the machine had it: h200_run1.sh appended an "exit code: N" line to each capture."""
    text = path.read_text(encoding="utf-8")
    return re.sub(r"exit code: \d+\n\Z", "", text)


# --- the driver version: overrides, /sys, /proc ----------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected", "warnings"),
    [
        ({}, None, ()),
        ({"UV_CUDA_DRIVER_VERSION": "550.54.14"}, DriverReading("550.54.14", "UV_CUDA_DRIVER_VERSION"), ()),
        ({"ENVBUILDER_DRIVER": " 575.51.03 "}, DriverReading("575.51.03", "ENVBUILDER_DRIVER"), ()),
        # both set: envbuilder's own, more specific variable wins, and says so when they differ
        (
            {"ENVBUILDER_DRIVER": "575.51.03", "UV_CUDA_DRIVER_VERSION": "550.54.14"},
            DriverReading("575.51.03", "ENVBUILDER_DRIVER"),
            (
                "ENVBUILDER_DRIVER=575.51.03 is used, not UV_CUDA_DRIVER_VERSION=550.54.14 "
                "(envbuilder's own variable is the more specific)",
            ),
        ),
        (
            {"ENVBUILDER_DRIVER": "580.65", "UV_CUDA_DRIVER_VERSION": "580.65"},
            DriverReading("580.65", "ENVBUILDER_DRIVER"),
            (),
        ),
        # an empty variable is unset (export VAR= clears it)
        ({"UV_CUDA_DRIVER_VERSION": ""}, None, ()),
        (
            {"ENVBUILDER_DRIVER": "  ", "UV_CUDA_DRIVER_VERSION": "546.80"},
            DriverReading("546.80", "UV_CUDA_DRIVER_VERSION"),
            (),
        ),
    ],
)
def test_driver_override(env: dict[str, str], expected: DriverReading | None, warnings: tuple[str, ...]) -> None:
    assert driver_override(env) == (expected, warnings)


@pytest.mark.parametrize(
    ("name", "value"),
    [("UV_CUDA_DRIVER_VERSION", "12.4"), ("ENVBUILDER_DRIVER", "latest"), ("UV_CUDA_DRIVER_VERSION", "550.54.14.1")],
)
def test_driver_override_refuses_what_is_not_a_driver(name: str, value: str) -> None:
    # A CUDA version given by mistake ("12.4") is refused, with the variable named.
    with pytest.raises(TargetError) as info:
        driver_override({name: value})
    assert info.value.message == f"{name}={value!r} is not an NVIDIA driver version"
    assert info.value.hint == (
        f"write it as nvidia-smi prints it, e.g. {name}=550.54.14, or unset it to detect the driver"
    )


def test_driver_files_recorded_on_the_h200() -> None:
    assert nvidia.parse_sys_module_version(recorded(H200 / "sys-module-nvidia-version.txt")) == "580.159.04"
    assert nvidia.parse_proc_driver_version(recorded(H200 / "proc-driver-nvidia-version.txt")) == "580.159.04"
    # both agree with what nvidia-smi and NVML said on that host
    assert detect.parse_nvidia_smi_banner(recorded(H200 / "nvidia-smi.txt")).driver == "580.159.04"
    assert recorded(H200 / "nvml.txt").splitlines()[0] == "driver 580.159.04"


@pytest.mark.parametrize("text", ["", "\n", "NVRM version: x", "13.0", "not a version\n"])
def test_sys_module_version_garbage(text: str) -> None:
    assert nvidia.parse_sys_module_version(text) is None


def test_gpu_information_recorded_on_the_h200() -> None:
    text = recorded(H200 / "proc-driver-nvidia-gpus-information.txt")
    body = text.split("\n", 1)[1]  # after the script's "== /proc/driver/nvidia/gpus/<bus>" header
    assert nvidia.parse_gpu_information(body) == ("NVIDIA H200", "0000:00:06.0")
    assert nvidia.parse_gpu_information("") == (None, None)


# --- a fake /sys and /proc tree from the H200 recordings -----------------------------------------------------


_SYSFS_LINE = re.compile(
    r"^(?P<slot>\S+) class=(?P<cls>\S+) vendor=(?P<vendor>\S+) device=(?P<device>\S+) "
    r"subsystem_vendor=(?P<sv>\S+) subsystem_device=(?P<sd>\S+) driver=(?P<driver>\S+)$"
)


def lay_out_h200(root: Path, *, driver: bool) -> Path:
    """The H200 host's /sys/bus/pci/devices (and, with ``driver``, its /sys/module/nvidia and /proc/driver/nvidia)
    as files under ``root``, from the recordings; without ``driver`` they are absent, as on a machine before the
    driver is installed (and the PCI devices are bound to no driver)."""
    drivers = root / "sys/bus/pci/drivers"
    for line in recorded(H200 / "sys-bus-pci-devices.txt").splitlines():
        m = _SYSFS_LINE.match(line)
        assert m, line
        dev = root / "sys/bus/pci/devices" / m["slot"]
        dev.mkdir(parents=True)
        for name, key in (
            ("class", "cls"),
            ("vendor", "vendor"),
            ("device", "device"),
            ("subsystem_vendor", "sv"),
            ("subsystem_device", "sd"),
        ):
            (dev / name).write_text(m[key] + "\n")
        bound = m["driver"]
        if bound != "none" and (driver or bound != "nvidia"):
            (drivers / bound).mkdir(parents=True, exist_ok=True)
            (dev / "driver").symlink_to(drivers / bound)
    if driver:
        (root / "sys/module/nvidia").mkdir(parents=True)
        (root / "sys/module/nvidia/version").write_text(recorded(H200 / "sys-module-nvidia-version.txt"))
        proc = root / "proc/driver/nvidia"
        (proc / "gpus/0000:00:06.0").mkdir(parents=True)
        (proc / "version").write_text(recorded(H200 / "proc-driver-nvidia-version.txt"))
        info = recorded(H200 / "proc-driver-nvidia-gpus-information.txt").split("\n", 1)[1]
        (proc / "gpus/0000:00:06.0/information").write_text(info)
    return root


def test_pci_devices_of_the_h200(tmp_path: Path) -> None:
    devices = nvidia.read_pci_devices(str(lay_out_h200(tmp_path, driver=True)))
    assert len(devices) == 7
    assert nvidia.nvidia_gpus(devices) == (PciDevice("0000:00:06.0", 0x10DE, 0x2335, 0x030200, "nvidia"),)
    assert devices[0] == PciDevice("0000:00:00.0", 0x8086, 0x0D57, 0x060000, None)  # a host bridge
    # the same id nvidia-smi reported on that host (pci.device_id 0x233510DE) and NVML (0x233510de)
    assert "0x233510DE" in recorded(H200 / "nvidia-smi-query.csv")


def test_driver_files_read_from_a_tree(tmp_path: Path) -> None:
    root = lay_out_h200(tmp_path, driver=True)
    assert nvidia.read_driver_files(str(root)) == DriverReading("580.159.04", "/sys/module/nvidia/version")
    (root / "sys/module/nvidia/version").unlink()  # an old kernel without the sysfs file: /proc is next
    assert nvidia.read_driver_files(str(root)) == DriverReading("580.159.04", "/proc/driver/nvidia/version")
    assert nvidia.read_driver_files(str(tmp_path / "nothing")) is None
    assert nvidia.read_proc_gpus(str(root)) == {"0000:00:06.0": "NVIDIA H200"}


def test_probe_with_the_driver_but_no_tools(tmp_path: Path) -> None:
    # nvidia-smi and NVML unusable (not asked here): the loaded driver's files still name the GPU and the driver.
    root = lay_out_h200(tmp_path, driver=True)
    probe = detect.probe_nvidia("linux", root=str(root), env={}, tools=False)
    assert probe.gpus == (HostGpu(0, "NVIDIA H200", "", None, "10de:2335"),)
    assert probe.driver == DriverReading("580.159.04", "/sys/module/nvidia/version")
    assert probe.source == "PCI bus"
    assert probe.how == "PCI bus (driver 580.159.04 loaded; NVML and nvidia-smi not asked)"
    assert probe.warnings == ()


def test_probe_without_a_driver(tmp_path: Path) -> None:
    # The same machine before its driver is installed: the GPU is seen on the bus by its PCI id alone.
    root = lay_out_h200(tmp_path, driver=False)
    probe = detect.probe_nvidia("linux", root=str(root), env={}, tools=False)
    assert probe.gpus == (HostGpu(0, "NVIDIA GPU [10de:2335]", "", None, "10de:2335"),)
    assert (probe.driver, probe.module, probe.source) == (None, None, "PCI bus")
    assert probe.how == "PCI bus (no NVIDIA driver loaded; NVML and nvidia-smi not asked)"


def test_driverless_h200_is_named_by_the_gpu_table(tmp_path: Path) -> None:
    # The real table (matrices/nvidia.ids + chip rules): the recorded id 10de:2335 is an H200, sm_90.
    namer = detect.pci_namer()
    root = lay_out_h200(tmp_path / "nodriver", driver=False)
    probe = detect.probe_nvidia("linux", root=str(root), env={}, tools=False, name_pci=namer)
    assert probe.gpus == (HostGpu(0, "H200 SXM 141GB", "9.0", None, "10de:2335"),)
    # with the driver's files there, the driver's own name is kept (it is nvidia-smi's), the table gives the cc
    root = lay_out_h200(tmp_path / "driver", driver=True)
    probe = detect.probe_nvidia("linux", root=str(root), env={}, tools=False, name_pci=namer)
    assert probe.gpus == (HostGpu(0, "NVIDIA H200", "9.0", None, "10de:2335"),)


def test_probe_asks_the_pci_table_for_gpus_only(tmp_path: Path) -> None:
    # The table is asked for the GPU the bus shows, not for the bridges and virtio devices beside it.
    class Named:
        name, cc = "H200", "9.0"

    seen: list[tuple[int, int]] = []

    def table(vendor: int, device: int) -> Named | None:
        seen.append((vendor, device))
        return Named() if (vendor, device) == (0x10DE, 0x2335) else None

    root = lay_out_h200(tmp_path, driver=False)
    probe = detect.probe_nvidia("linux", root=str(root), env={}, tools=False, name_pci=table)
    assert seen == [(0x10DE, 0x2335)]  # asked for the GPU only, not the bridges or virtio devices
    assert probe.gpus == (HostGpu(0, "H200", "9.0", None, "10de:2335"),)


def test_override_beats_the_loaded_module_and_says_so(tmp_path: Path) -> None:
    root = lay_out_h200(tmp_path, driver=True)
    probe = detect.probe_nvidia("linux", root=str(root), env={"UV_CUDA_DRIVER_VERSION": "550.54.14"}, tools=False)
    assert probe.driver == DriverReading("550.54.14", "UV_CUDA_DRIVER_VERSION")
    assert probe.module == DriverReading("580.159.04", "/sys/module/nvidia/version")
    assert probe.warnings == ("UV_CUDA_DRIVER_VERSION=550.54.14 overrides the detected driver 580.159.04",)


def test_wsl2_reads_no_linux_driver_files_and_no_bus(tmp_path: Path) -> None:
    # WSL2 runs the Windows driver and shows no PCI device: Linux module files there are a misconfiguration
    # (detect's WSL warnings), never the driver in use.
    root = lay_out_h200(tmp_path, driver=True)
    probe = detect.probe_nvidia("wsl2", root=str(root), env={}, tools=False)
    assert (probe.gpus, probe.driver, probe.module, probe.source) == ((), None, None, "")


# --- NVML -------------------------------------------------------------------------------------------------


def _recorded_nvml() -> NvmlReading:
    """nvml.txt (pynvml on the H200, h200_run1.sh) as the NvmlReading the probe builds from the same calls."""
    lines = recorded(H200 / "nvml.txt").splitlines()
    m = re.match(r"^(\d+) (.+) \((\d+), (\d+)\) (0x[0-9a-f]+) (\S+) (\d+) MiB$", lines[2])
    assert m, lines[2]
    device = NvmlDevice(int(m[1]), m[2], f"{m[3]}.{m[4]}", int(m[5], 16), m[6], int(m[7]))
    return NvmlReading(lines[0].split()[1], nvidia.cuda_from_nvml(int(lines[1].split()[1])), (device,))


def test_nvml_recording_agrees_with_nvidia_smi_and_sysfs() -> None:
    reading = _recorded_nvml()
    assert reading.cuda == "13.0"
    assert detect.parse_nvidia_smi_banner(recorded(H200 / "nvidia-smi.txt")).cuda == "13.0"
    gpus = detect.gpus_from_nvml(reading)
    assert gpus == (HostGpu(0, "NVIDIA H200", "9.0", 143771, "10de:2335"),)
    smi = detect.parse_nvidia_smi_csv(recorded(H200 / "nvidia-smi-query.csv"))
    assert [(g.name, g.cc, g.memory_mib) for g in smi] == [(g.name, g.cc, g.memory_mib) for g in gpus]
    assert nvidia.same_slot(reading.devices[0].bus_id, "0000:00:06.0")


@pytest.mark.parametrize(("value", "expected"), [(13000, "13.0"), (12080, "12.8"), (11040, "11.4"), (0, None)])
def test_cuda_from_nvml(value: int, expected: str | None) -> None:
    assert nvidia.cuda_from_nvml(value) == expected


def test_real_nvml_binding_without_an_nvidia_library() -> None:
    # The real pynvml (a dependency) on this machine, which has no libnvidia-ml: a reason, quickly, no exception.
    if any(Path(p).exists() for p in ("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1", "/usr/lib64/libnvidia-ml.so.1")):
        pytest.skip("libnvidia-ml is installed here: this test is for machines without the NVIDIA driver")
    t0 = time.monotonic()
    answer = nvidia.probe_nvml()
    assert answer == "NVML: NVML Shared Library Not Found"
    assert time.monotonic() - t0 < 2


def test_nvml_that_never_answers_costs_the_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    # A wedged driver blocks inside the library call; stand in for it with a call that sleeps, to test the
    # thread and timeout around it (the daemon thread is abandoned, and does not keep the process alive).
    monkeypatch.setattr(nvidia, "_nvml_read", lambda: time.sleep(30) or "never")
    t0 = time.monotonic()
    assert nvidia.probe_nvml(timeout=0.3) == "NVML did not answer within 0.3 s"
    assert time.monotonic() - t0 < 2


# --- lspci -nn outputs users posted ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "count", "gpus"),
    [
        (
            "egpu-switcher-22-mx130-gtx970.txt",
            4,
            [
                ("02:00.0", "10de:174d", 0x030200, "GM108M [GeForce MX130]", None),
                ("08:00.0", "10de:13c2", 0x030000, "GM204 [GeForce GTX 970]", None),
            ],
        ),
        (
            "nvidia-optimus-manager-3-mx150.txt",
            1,
            [("01:00.0", "10de:1d12", 0x030200, "GP108M [GeForce MX150]", "nvidia")],
        ),
        ("bumblebee-499-device-0df2.txt", 1, [("02:00.0", "10de:0df2", 0x030000, "Device", None)]),
        ("torchruntime-15-a100-40gb.txt", 1, [("07:00.0", "10de:20b0", 0x030200, "GA100 [A100 SXM4 40GB]", None)]),
        ("torchruntime-15-a100-80gb.txt", 1, [("07:00.0", "10de:20b2", 0x030200, "GA100 [A100 SXM4 80GB]", None)]),
        (
            "batocera-10290-rtx-a5000-mobile.txt",
            2,
            [("0000:01:00.0", "10de:24b6", 0x030000, "GA104GLM [RTX A5000 Mobile]", None)],
        ),
        ("nvidiux-10-gtx560ti.txt", 3, [("01:00.0", "10de:1200", 0x030000, "GF114 [GeForce GTX 560 Ti]", None)]),
        (
            "gentoo-wiki-dell-xps-15-9570.txt",
            29,
            [("01:00.0", "10de:1c8c", 0x030200, "GP107M [GeForce GTX 1050 Ti Mobile]", "nvidia")],
        ),
        (
            "akash-provider-configs-90-pg500-216.txt",
            1,
            [("", "10de:1df0", 0x030200, "GV100GL [Tesla PG500-216]", None)],
        ),
    ],
)
def test_lspci_outputs_users_posted(
    fixture: str, count: int, gpus: list[tuple[str, str, int, str, str | None]]
) -> None:
    devices = nvidia.parse_lspci_nn((LSPCI / fixture).read_text(encoding="utf-8"))
    assert len(devices) == count
    found = nvidia.nvidia_gpus(devices)
    assert [(d.slot, d.pci_id, d.pci_class, d.label, d.driver) for d in found] == gpus
    # without a table, the GPUs on the bus are named by lspci's label (test_gpu_names names them by the table)
    named = detect.gpus_from_bus(devices, {})
    assert [(g.name, g.pci_id, g.cc) for g in named] == [
        (label if label != "Device" else f"NVIDIA GPU [{pci_id}]", pci_id, "") for _, pci_id, _, label, _ in gpus
    ]


def test_lspci_optimus_laptop_keeps_the_intel_gpu_out() -> None:
    devices = nvidia.parse_lspci_nn((LSPCI / "gentoo-wiki-dell-xps-15-9570.txt").read_text(encoding="utf-8"))
    intel_vga = [d for d in devices if d.pci_class >> 16 == 0x03 and d.vendor == 0x8086]
    assert [(d.pci_id, d.label, d.driver) for d in intel_vga] == [("8086:3e9b", "UHD Graphics 630 (Mobile)", "i915")]
    # indented Subsystem lines carry ids too ([1028:087c]) and are not devices; an unindented pasted detail line
    # ("Kernel driver in use: ath10k_pci") is skipped rather than misread
    assert all(d.vendor != 0x1028 for d in devices)
    wifi = next(d for d in devices if d.pci_id == "168c:003e")
    assert wifi.driver is None


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("0000:00:06.0", "00000000:00:06.0", True),  # sysfs vs NVML's bus id
        ("00:06.0", "0000:00:06.0", True),  # lspci without -D
        ("0000:01:00.0", "0000:00:06.0", False),
        ("", "0000:00:06.0", False),
    ],
)
def test_same_slot(a: str, b: str, same: bool) -> None:
    assert nvidia.same_slot(a, b) is same


# --- containers and advice ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("markers", "cgroup", "env", "kind"),
    [
        (("/.dockerenv",), "", "", "docker"),
        (("/run/.containerenv",), "", "", "podman"),
        ((), "", "podman", "podman"),
        ((), "0::/kubepods/besteffort/pod1/abc\n", "", "kubernetes"),
        ((), "12:devices:/docker/0123abcd\n", "", "docker"),
        ((), "0::/init.scope\n", "", None),
        ((), "0::/\n", "lxc", "lxc"),
    ],
)
def test_container_kind(markers: tuple[str, ...], cgroup: str, env: str, kind: str | None) -> None:
    assert nvidia.container_kind(markers, cgroup, env) == kind


_VM_ROOT = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard"
_OVERLAY_ROOT = "530 480 0:52 / / rw,relatime master:1 - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/A"


@pytest.mark.parametrize(
    ("line", "disk"),
    [
        (_VM_ROOT, True),
        ("27 1 8:2 / / rw - xfs /dev/sda2 rw", True),
        (_OVERLAY_ROOT, False),
        ("600 500 0:40 /var/lib/docker/btrfs/subvolumes/abc / rw - btrfs /dev/sda3 rw", False),  # a subvolume
        ("600 500 253:5 / / rw - xfs /dev/mapper/docker-8:1-123-abc rw", False),  # devicemapper thin device
        ("600 500 0:40 / / rw - zfs tank/docker/abc rw", False),
        ("27 1 254:0 / /mnt rw - ext4 /dev/vda rw", False),  # not the root mount
        ("", False),
        ("garbage", False),
    ],
)
def test_booted_from_disk(line: str, disk: bool) -> None:
    assert nvidia.booted_from_disk(line) is disk


@pytest.mark.parametrize(("root", "kind"), [(_VM_ROOT, None), (_OVERLAY_ROOT, "docker"), ("", "docker")])
def test_dockerenv_on_a_machine_booted_from_disk(root: str, kind: str | None) -> None:
    # microVMs boot disks made from container images, /.dockerenv included: that alone is not a container
    assert nvidia.container_kind(("/.dockerenv",), "0::/\n", "", root) == kind


def test_container_read_from_this_dev_vm(tmp_path: Path) -> None:
    """The development machine's real mountinfo (a Firecracker VM that has /.dockerenv): not a container."""
    (tmp_path / "proc/self").mkdir(parents=True)
    real = Path(__file__).parent / "fixtures/mountinfo/dev-vm-dockerenv.txt"
    (tmp_path / "proc/self/mountinfo").write_text(real.read_text())
    (tmp_path / ".dockerenv").write_text("")
    assert nvidia.read_container(str(tmp_path), {}) is None
    (tmp_path / "proc/self/mountinfo").write_text(_OVERLAY_ROOT + "\n")
    assert nvidia.read_container(str(tmp_path), {}) == "docker"


def test_container_read_from_a_tree(tmp_path: Path) -> None:
    assert nvidia.read_container(str(tmp_path), {}) is None
    (tmp_path / "run").mkdir()
    (tmp_path / "run/.containerenv").write_text("")
    assert nvidia.read_container(str(tmp_path), {}) == "podman"
    assert not nvidia.has_device_nodes(str(tmp_path))


@pytest.mark.parametrize(
    ("os_name", "container", "module", "nodes", "floor", "advice"),
    [
        (
            "linux",
            None,
            None,
            False,
            "580.65.06",
            "install an NVIDIA driver >= 580.65.06 (your distribution's NVIDIA driver package, e.g. "
            "`sudo ubuntu-drivers install`, or NVIDIA's cuda-drivers), then reboot",
        ),
        (
            "linux",
            None,
            None,
            False,
            None,
            "install a current NVIDIA driver (your distribution's NVIDIA driver package, e.g. "
            "`sudo ubuntu-drivers install`, or NVIDIA's cuda-drivers), then reboot",
        ),
        (
            "linux",
            None,
            "580.159.04",
            False,
            "580.65.06",
            "the kernel module 580.159.04 is loaded but /dev/nvidiactl is missing: run nvidia-modprobe, or reboot",
        ),
        (
            "linux",
            "docker",
            None,
            False,
            "580.65.06",
            "install an NVIDIA driver >= 580.65.06 on the host, not in this docker container, then start the "
            "container with the NVIDIA Container Toolkit (docker run --gpus all, or podman run --device "
            "nvidia.com/gpu=all)",
        ),
        (
            "linux",
            "podman",
            "580.159.04",
            False,
            "580.65.06",
            "the host's driver 580.159.04 is loaded, but this podman container has no NVIDIA device nodes: start "
            "it with the NVIDIA Container Toolkit (docker run --gpus all, or podman run --device nvidia.com/gpu=all)",
        ),
        (
            "wsl2",
            None,
            None,
            False,
            "580.88",
            "install an NVIDIA driver >= 580.88 on Windows (the Windows driver serves WSL2; never install a Linux "
            "driver inside WSL2); WSL2 shows no PCI device, so name the GPU with --gpu to plan before it is visible",
        ),
    ],
)
def test_driver_advice(
    os_name: str, container: str | None, module: str | None, nodes: bool, floor: str | None, advice: str
) -> None:
    assert nvidia.driver_advice(os_name, container=container, module=module, device_nodes=nodes, floor=floor) == advice


# --- tests/gpu/h200_detect_nodriver.sh, which the lead runs on the GPU host ---------------------------------

NODRIVER_SCRIPT = Path(__file__).parent / "gpu" / "h200_detect_nodriver.sh"


def test_nodriver_script_passes_shellcheck() -> None:
    import shutil
    import subprocess

    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install -y shellcheck)")
    result = subprocess.run(
        [shellcheck, "-S", "style", str(NODRIVER_SCRIPT)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_nodriver_script_hides_nvidia_smi_in_a_private_namespace(tmp_path: Path) -> None:
    # The script's mechanics, here, where unshare works as root: a stand-in nvidia-smi (it prints one CSV row in
    # the probe's query order; no real GPU is claimed) is found by the normal detect and hidden from the second.
    import json
    import os
    import subprocess
    import sys

    if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"], check=False).returncode != 0:
        pytest.skip("needs root and unshare -m (the lead runs the script on the GPU host as root)")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho '0, Stand-in GPU, 8.9, 550.54.14, 24564'\n")
    (fake / "nvidia-smi").chmod(0o755)
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, "PATH": f"{fake}:{os.environ['PATH']}"}
    root = Path(__file__).resolve().parent.parent
    result = subprocess.run(
        ["bash", str(NODRIVER_SCRIPT)], cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr

    def doc(name: str) -> dict[str, object]:
        return json.loads((out / name).read_text().rsplit("exit code:", 1)[0])  # type: ignore[no-any-return]

    assert [g["name"] for g in doc("normal-detect.json")["gpus"]] == ["Stand-in GPU"]  # type: ignore[attr-defined]
    assert doc("nodriver-detect.json")["gpus"] == []
    hidden = (out / "nodriver-hidden.txt").read_text()
    assert f"hidden: {fake}/nvidia-smi (/dev/null)" in hidden
    assert "nvidia-smi on PATH: none" in hidden
    assert "nodriver-detect.json: gpus [none]" in (out / "summary.txt").read_text()
    assert (fake / "nvidia-smi").stat().st_size > 0  # nothing outside the namespace changed
