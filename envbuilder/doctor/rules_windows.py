"""WSL2 and native Windows rules: libcuda.so and nvidia-smi inside WSL2, DLL load failures, the MSVC runtime,
and pre-0.43 Linux-only bitsandbytes wheels on Windows.

Pure functions over the pasted log (and the environment's evidence where it speaks). Every pattern here was
checked against real lines quoted from public issues: ``tests/fixtures/windows/README.md`` names each one.
Facts (sources: research compat-bnb-gptq.md A1 and B10; NVIDIA's CUDA-on-WSL user guide as quoted in
microsoft/WSL#11589 and bitsandbytes PR #337):
- inside WSL2 the Windows driver's ``libcuda.so`` and ``nvidia-smi`` live in ``/usr/lib/wsl/lib``; a loader or a
  shell that does not look there (an old bitsandbytes asking for ``libcuda.so`` by name, ``sudo``'s reset PATH,
  an SSH login shell) reports them missing, and a Linux driver installed inside WSL2 shadows them;
- bitsandbytes before 0.43.0 had no Windows build: its ``py3-none-any`` wheels carried Linux ``.so`` files.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from packaging.version import InvalidVersion, Version

from envbuilder.doctor import Context, Finding, Layer, Rule, finding
from envbuilder.doctor.logs import quote
from envbuilder.doctor.rules_bnb import facts, install_fix, layered

__all__ = [
    "DLL_LOAD",
    "LAYER",
    "LIBCUDA_MISSING",
    "LINUX_SO_ON_WINDOWS",
    "MSVC_MISSING",
    "OLD_ANY_WHEEL",
    "RULES",
    "SMI_MISSING",
    "TRIGGERS",
    "VC_REDIST_FIX",
    "VC_REDIST_URL",
    "WINDOWS_MARKERS",
    "WINDOWS_PATH_BUG",
    "WSL_LIB",
    "WSL_MARKERS",
    "in_wsl",
    "on_windows",
    "rule_msvc_runtime",
    "rule_windows_dll_load",
    "rule_windows_linux_only_bnb",
    "rule_wsl_libcuda",
    "rule_wsl_nvidia_smi",
]

WSL_LIB = "/usr/lib/wsl/lib"
VC_REDIST_URL = "https://aka.ms/vs/17/release/vc_redist.x64.exe"
VC_REDIST_FIX = (
    f"install the Visual C++ 2015-2022 x64 redistributable: winget install Microsoft.VCRedist.2015+.x64 "
    f"(or {VC_REDIST_URL}), then open a new terminal; `envbuilder recipe windows` checks for it"
)

# Every line these rules can match holds one of these words (any case); see rules_bnb.TRIGGERS.
TRIGGERS = (
    "wsl",
    "windows subsystem for linux",
    "microsoft-standard",
    "/mnt/",
    "libcuda",
    "nvidia-smi",
    "visual c++",
    "vcruntime140",
    "msvcp140",
    "winerror",
    "dll",
    "libbitsandbytes_",
    "windowspath",
    "py3-none-any",
    ":\\",
)
# Text that says the log came from WSL (kernel release, the driver's mount, Windows drives under /mnt).
WSL_MARKERS = re.compile(
    r"microsoft-standard|WSL2|\bWSL\b|Windows Subsystem for Linux|/usr/lib/wsl\b|/mnt/[a-z]/|wsl\.exe|wsl -d ",
    re.IGNORECASE,
)
LIBCUDA_MISSING = re.compile(
    r"libcuda\.so(?:\.1)?: cannot open shared object file|libcuda\.so not found!|"
    r"Error: libcuda\.so(?:\.1)?: cannot open"
)
SMI_MISSING = re.compile(r"command not found: nvidia-smi|nvidia-smi: (?:command )?not found")
MSVC_MISSING = re.compile(
    r"Microsoft Visual C\+\+ Redistributable is not installed|"
    r"(?:vcruntime140(?:_1)?|msvcp140)\.dll (?:was not found|is missing|not found)",
    re.IGNORECASE,
)
DLL_LOAD = re.compile(r"\[WinError 126\]|DLL load failed|Error loading \"[^\"]+\.dll\" or one of its dependencies")
# A Linux shared library under a Windows path: the pre-0.43 py3-none-any wheel on Windows.
LINUX_SO_ON_WINDOWS = re.compile(r"[A-Za-z]:\\[^\n]*libbitsandbytes_\w+\.so\b")
WINDOWS_PATH_BUG = re.compile(r"argument of type 'WindowsPath' is not iterable")
OLD_ANY_WHEEL = re.compile(r"bitsandbytes-(\d+\.\d+\.\d+)-py3-none-any\.whl")
WINDOWS_MARKERS = re.compile(r"[A-Za-z]:\\|\.dll\b|WindowsPath|\[WinError")


def in_wsl(ctx: Context) -> bool:
    """Does the log or the evidence say WSL? (The evidence has no OS flavour; WSL sets WSL_DISTRO_NAME, and
    LD_LIBRARY_PATH can tell.)"""
    ev = ctx.evidence
    if ev and ("WSL_DISTRO_NAME" in ev.env or WSL_LIB in ev.env.get("LD_LIBRARY_PATH", "")):
        return True
    return bool(WSL_MARKERS.search(ctx.text))


def on_windows(ctx: Context) -> bool:
    ev = ctx.evidence
    if ev and ev.system:
        return ev.system.lower() == "windows"
    return bool(WINDOWS_MARKERS.search(ctx.text))


# --------------------------------------------------------------------------- WSL2


def rule_wsl_libcuda(ctx: Context) -> Iterable[Finding]:
    """libcuda.so cannot be found: inside WSL2 it is the Windows driver's stub in /usr/lib/wsl/lib."""
    hit = quote(ctx.text, LIBCUDA_MISSING)
    if not hit:
        return
    fix = (
        f"check that {WSL_LIB}/libcuda.so* exists "
        "(if not: update the NVIDIA driver on Windows, then `wsl --shutdown`); "
        f"make the loader find it: export LD_LIBRARY_PATH={WSL_LIB}:$LD_LIBRARY_PATH (add it to ~/.bashrc) and "
        "`sudo ldconfig`; remove any Linux driver installed inside WSL2 (nvidia-driver-*, cuda-drivers); "
        "`envbuilder recipe wsl2` checks all of this"
    )
    if in_wsl(ctx):
        yield finding(
            "wsl-libcuda",
            "FAIL",
            hit[0],
            f"inside WSL2 libcuda.so is the Windows driver's stub in {WSL_LIB}; this process's loader does not look "
            "there (older bitsandbytes and some cuDNN builds open libcuda.so by name), or the Windows driver's "
            "WSL libraries are missing",
            fix,
        )
        return
    yield finding(
        "wsl-libcuda",
        "FAIL",
        hit[0],
        "libcuda.so, the NVIDIA driver's library, cannot be loaded: on Linux the driver is missing or not loaded; "
        f"on WSL2 it lives in {WSL_LIB} and the loader is not looking there",
        f"on Linux: install the NVIDIA driver (`nvidia-smi` must work). On WSL2: {fix}",
    )


def rule_wsl_nvidia_smi(ctx: Context) -> Iterable[Finding]:
    """nvidia-smi is not on PATH: inside WSL2 it is /usr/lib/wsl/lib/nvidia-smi, which some shells omit."""
    hit = quote(ctx.text, SMI_MISSING)
    if not hit:
        return
    if in_wsl(ctx):
        yield finding(
            "wsl-nvidia-smi-path",
            "WARN",
            hit[0],
            f"inside WSL2 nvidia-smi is {WSL_LIB}/nvidia-smi (mounted from the Windows driver); login shells over "
            "SSH, other shells and `sudo` (its secure_path) may not have that directory on PATH. CUDA itself does "
            "not need nvidia-smi",
            f"run {WSL_LIB}/nvidia-smi, or add export PATH=$PATH:{WSL_LIB} to your shell's startup file; if the "
            "file is missing, install or update the NVIDIA driver on Windows (never inside WSL2) and `wsl --shutdown`",
        )
        return
    yield finding(
        "wsl-nvidia-smi-path",
        "WARN",
        hit[0],
        "nvidia-smi is not on PATH: on Linux the NVIDIA driver (which ships it) is not installed; on WSL2 it is "
        f"{WSL_LIB}/nvidia-smi",
        f"on Linux: install the NVIDIA driver. On WSL2: run {WSL_LIB}/nvidia-smi or add {WSL_LIB} to PATH",
    )


# --------------------------------------------------------------------------- native Windows


def rule_msvc_runtime(ctx: Context) -> Iterable[Finding]:
    """The Visual C++ runtime is missing: torch's and bitsandbytes' DLLs cannot load without it."""
    hit = quote(ctx.text, MSVC_MISSING)
    if hit:
        yield finding(
            "windows-msvc-runtime",
            "FAIL",
            hit[0],
            "the Microsoft Visual C++ 2015-2022 runtime (vcruntime140.dll, msvcp140.dll) is not installed, so "
            "torch's DLLs (and then bitsandbytes') fail to load",
            VC_REDIST_FIX,
        )


def rule_windows_dll_load(ctx: Context) -> Iterable[Finding]:
    """WinError 126 / DLL load failed: a DLL or one of its dependencies is missing (not bitsandbytes' own)."""
    if quote(ctx.text, MSVC_MISSING):
        return  # windows-msvc-runtime names the cause
    hit = quote(ctx.text, DLL_LOAD)
    if not hit:
        return
    line = hit[0]
    torch_dll = re.search(r"torch\\lib\\(\w+\.dll)", line)
    what = f"torch's {torch_dll.group(1)}" if torch_dll else "a DLL"
    yield finding(
        "windows-dll-load",
        "FAIL",
        line,
        f"Windows could not load {what} or one of the DLLs it depends on (WinError 126: module not found). "
        "Usually the Visual C++ 2015-2022 runtime is missing, or a torch build's own dependency is absent "
        "(torch 2.4.0's fbgemm.dll was a reported case: pytorch/pytorch#131662)",
        f"{VC_REDIST_FIX}; if it persists, rebuild the environment with a torch release from the plan "
        "(`envbuilder recipe windows`, or WSL2: `envbuilder recipe wsl2`)",
    )


def _first_windows(ctx: Context) -> Version | None:
    """The first bitsandbytes with official Windows wheels (bitsandbytes.toml [[first]]; None: not recorded)."""
    first = ctx.matrix.bnb_first_on("windows-x86_64")
    return Version(first.version) if first else None


def _older(text: str | None, first: Version | None) -> bool:
    """Is version ``text`` older than ``first``? (An unreadable version, or no recorded first: no.)"""
    try:
        v = Version(text.split("+", 1)[0]) if text else None
    except InvalidVersion:
        return False
    return v is not None and first is not None and v < first


def _pre043_seen(ctx: Context) -> str | None:
    """The line (or evidence) that shows a pre-0.43 Linux-only bitsandbytes on Windows."""
    for rx in (LINUX_SO_ON_WINDOWS, WINDOWS_PATH_BUG):
        hit = quote(ctx.text, rx)
        if hit:
            return hit[0]
    if not on_windows(ctx):
        return None
    first = _first_windows(ctx)
    hit = quote(ctx.text, OLD_ANY_WHEEL)
    if hit and _older(hit[1].group(1), first):
        return hit[0]
    ev = ctx.evidence
    if ev and ev.bnb and _older(ev.bnb, first):
        return f"bitsandbytes {ev.bnb} installed on Windows"
    return None


def rule_windows_linux_only_bnb(ctx: Context) -> Iterable[Finding]:
    """A pre-0.43 bitsandbytes on Windows: its wheel carried only Linux .so files, so it never worked there."""
    seen = _pre043_seen(ctx)
    if seen is None:
        return
    f = facts(ctx)
    if f.platform != "windows-x86_64":
        f = dataclasses.replace(f, platform="windows-x86_64")  # the fix must be a Windows wheel
    fix, commands = install_fix(ctx, f)
    first = _first_windows(ctx)
    yield finding(
        "windows-linux-only-bnb",
        "FAIL",
        seen,
        f"bitsandbytes before {first} had no Windows build: its py3-none-any wheel installs on Windows but carries "
        "only Linux .so libraries, so it falls back to the CPU stub and fails (official win_amd64 wheels exist "
        f"since {first})",
        "uninstall it and any fork (pip uninstall -y bitsandbytes bitsandbytes-windows), then: " + fix,
        commands,
    )


def _wsl_libcuda_layered(ctx: Context) -> Iterable[Finding]:
    """rule_wsl_libcuda, blaming the platform inside WSL2 and the driver elsewhere."""
    layer: Layer = "platform" if in_wsl(ctx) else "driver"
    for f in rule_wsl_libcuda(ctx):
        yield dataclasses.replace(f, layer=layer)


LAYER: dict[str, Layer] = {
    "wsl-nvidia-smi-path": "platform",
    "windows-msvc-runtime": "platform",
    "windows-dll-load": "platform",
    "windows-linux-only-bnb": "bnb-library",
}
RULES: tuple[Rule, ...] = (
    _wsl_libcuda_layered,
    *(
        layered(r, LAYER)
        for r in (rule_wsl_nvidia_smi, rule_msvc_runtime, rule_windows_dll_load, rule_windows_linux_only_bnb)
    ),
)
