"""The layers under bitsandbytes: the GPU's architecture, the driver, torch's build, the CUDA runtime libraries,
the CUDA toolkit an extension builds with, and platforms without CUDA (macOS, ROCm, no NVIDIA GPU).

Each rule reads ``ctx.facts`` (the environment's evidence and what the log states, one model) and computes its
fix from the matrix: the driver floor of the CUDA in use (``rules.cuda.driver_floors``), the first CUDA that
carries the GPU's architecture (``Arch.first_cuda``), and the resolver's plan for the target the evidence
describes (``doctor.plan``). Every pattern is a message quoted in a real log in tests/fixtures/logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from packaging.version import InvalidVersion, Version

from envbuilder.doctor import Context, Evidence, Finding, Layer, Rule, finding
from envbuilder.doctor.logs import quote
from envbuilder.doctor.plan import ASK_GPU, plan_fix
from envbuilder.model.matrix import Matrix
from envbuilder.model.types import ProfileName as Profile
from envbuilder.rules.cuda import driver_floors

__all__ = [
    "COMPILED_WITHOUT_GPU",
    "DRIVER_INSUFFICIENT",
    "DRIVER_OLD",
    "ERROR_803",
    "LIB_PACKAGE",
    "LINK_LCUDA",
    "MACH_O",
    "NO_GPUS",
    "NVJITLINK",
    "RULES",
    "RUNTIME_LIB",
    "TOOLKIT_MISMATCH",
    "TORCH_ARCH",
    "TORCH_EXTENSION",
    "TRIGGERS",
    "TRITON_MIN",
    "TRITON_OLD",
    "UNHIDE_GPUS",
    "rule_bnb_without_gpu_build",
    "rule_cuda_torch_sees_no_gpu",
    "rule_driver",
    "rule_driver_pairing",
    "rule_link_libcuda",
    "rule_no_cuda_platform",
    "rule_runtime_libs",
    "rule_toolkit_mismatch",
    "rule_torch_arch",
    "rule_torch_extension_abi",
    "rule_triton_arch",
]

TRIGGERS = (
    "driver",
    "sm_",
    "no kernel image",
    "too old",
    "triton",
    "cannot open shared object file",
    "undefined symbol",
    "-lcuda",
    "mismatches the version",
    "pytorch",
    "mach-o",
    "compiled without gpu support",
    "rocm",
    "cuda",
    "gpu is required",
    "native library functionality",
    "error 803",
    "no cuda gpus",
    "cuda_visible_devices",
)

DRIVER_OLD = re.compile(r"The NVIDIA driver on your system is too old \(found version (\d+)\)")
DRIVER_INSUFFICIENT = re.compile(r"CUDA driver version is insufficient for CUDA runtime version")
TORCH_ARCH = re.compile(r"with CUDA capability sm_(\d+) is not compatible with the current PyTorch installation")
TRITON_OLD = re.compile(r"Found (.+?) which is too old to be supported by the triton GPU compiler")
TRITON_MIN = re.compile(r"Triton only supports devices of CUDA Capability >= (\d+\.\d+)")
RUNTIME_LIB = re.compile(
    r"(lib(?:cudart|cublasLt|cublas|cusparse|cufft|curand|cusolver|cudnn|nvJitLink|nvrtc)\w*)\.so\.(\d+): "
    r"cannot open shared object file"
)
NVJITLINK = re.compile(r"(lib\w+\.so\.\d+): undefined symbol: (__nvJitLink\w+), version (libnvJitLink\.so\.\d+)")
LINK_LCUDA = re.compile(r"cannot find -lcuda\b")
ERROR_803 = re.compile(r"Error 803: system has unsupported display driver / cuda driver combination")
NO_GPUS = re.compile(r"No CUDA GPUs are available")
# The fix for GPUs hidden from a process, whether a log says so or the probe sees it (rule_driver_pairing,
# rule_cuda_torch_sees_no_gpu).
UNHIDE_GPUS = "unset CUDA_VISIBLE_DEVICES (or set it to an index `nvidia-smi -L` lists)"
TORCH_EXTENSION = re.compile(r"([\w.+-]+\.so): undefined symbol: (_ZN[KR]?(?:3c10|2at|5torch)\w*)")
TOOLKIT_MISMATCH = re.compile(
    r"The detected CUDA version \((\d+\.\d+)\) mismatches the version that was used to compile"
)
MACH_O = re.compile(r"not a mach-o file|compiled without GPU support|requires Accelerate|CUDA Setup failed")
COMPILED_WITHOUT_GPU = re.compile(r"compiled without GPU support")
# The PyPI packages that ship each CUDA runtime library (NVIDIA's wheels, the ones torch's CUDA wheels depend on).
LIB_PACKAGE = {
    "libcudart": "nvidia-cuda-runtime",
    "libcublas": "nvidia-cublas",
    "libcublasLt": "nvidia-cublas",
    "libcusparse": "nvidia-cusparse",
    "libcufft": "nvidia-cufft",
    "libcurand": "nvidia-curand",
    "libcusolver": "nvidia-cusolver",
    "libcudnn": "nvidia-cudnn",
    "libnvJitLink": "nvidia-nvjitlink",
    "libnvrtc": "nvidia-cuda-nvrtc",
}


def _v(text: str | None) -> Version | None:
    try:
        return Version(text.split("+", 1)[0]) if text else None
    except InvalidVersion:
        return None


def _driver_for(matrix: Matrix, cuda: str | None, os: str) -> str | None:
    """The oldest driver that runs CUDA ``cuda`` natively (the matrix's toolkit row), or None."""
    if not cuda:
        return None
    native, mvc = driver_floors(matrix, cuda, os)
    return native or mvc


def _lowest_planned_cuda(matrix: Matrix) -> str | None:
    cudas = [b.cuda for b in matrix.torch_builds if b.cuda]
    return min(cudas, key=Version) if cudas else None


def _not_nvidia(ev: Evidence) -> str | None:
    """The GPU named when it is not an NVIDIA one (an integrated Intel, an AMD card)."""
    names = [d.name for d in ev.devices if d.name]
    if names and all(re.search(r"(?i)iris|intel|radeon|\bRX \d", n) for n in names):
        return names[0]
    return None


def rule_driver(ctx: Context) -> Iterable[Finding]:
    """torch's "driver too old (found version 11000)" and CUDA's "driver version is insufficient"."""
    hit = quote(ctx.text, DRIVER_OLD) or quote(ctx.text, DRIVER_INSUFFICIENT)
    if not hit:
        return
    ev = ctx.facts
    other = _not_nvidia(ev)
    if other:
        yield finding(
            "no-nvidia-gpu",
            "FAIL",
            hit[0],
            f"there is no NVIDIA GPU here (the log names {other}): CUDA finds no NVIDIA driver for it, which it "
            "reports as an insufficient driver",
            "run it on a machine with an NVIDIA GPU and its driver: CUDA builds of torch and bitsandbytes need an "
            "NVIDIA GPU (for a CPU-only run: envbuilder create --profile cpu)",
            layer="gpu-arch",
        )
        return
    runs = f"CUDA {ev.driver_cuda}" if ev.driver_cuda else "an older CUDA"
    found = f" (found version {hit[1].group(1)} = CUDA {ev.driver_cuda})" if hit[1].groups() else ""
    built = (
        f"torch {ev.torch} is built for CUDA {ev.torch_cuda}" if ev.torch_cuda else "torch's build needs a newer one"
    )
    driver = f"the NVIDIA driver {ev.driver}" if ev.driver else "the NVIDIA driver"
    cause = f"{driver} is too old: it runs {runs} at most{found}, and {built}"
    need = _driver_for(ctx.matrix, ev.torch_cuda, ev.os)
    lowest = _lowest_planned_cuda(ctx.matrix)
    if need:
        upgrade = f"update the NVIDIA driver to >= {need} (the minimum for CUDA {ev.torch_cuda})"
    else:
        floor = _driver_for(ctx.matrix, lowest, ev.os)
        upgrade = (
            f"update the NVIDIA driver (every torch build the matrix plans needs CUDA >= {lowest}, driver >= {floor})"
            if floor
            else "update the NVIDIA driver"
        )
    if ev.os == "wsl2":
        upgrade += " on Windows (never inside WSL2), then `wsl --shutdown`"
    alt = plan_fix(ctx.matrix, ev, _profile(ev), python=ctx.python)
    if alt.plan is not None and ev.driver:
        fix = f"{upgrade}; or keep the driver and install builds it runs: {alt.text}"
        commands = alt.commands
    else:
        fix = (
            f"{upgrade}; or keep the driver and install a torch build for CUDA <= {ev.driver_cuda or '?'} "
            f"(`{ASK_GPU}` shows the driver; then `envbuilder create --gpu sm_XX --driver VERSION` plans for it)"
        )
        commands = ()
    yield finding("driver-too-old", "FAIL", hit[0], cause, fix, commands, layer="driver")


def _profile(ev: Evidence) -> Profile:
    pk = ev.packages
    if any(p in pk for p in ("gptqmodel", "auto-gptq", "optimum")):
        return "gptq"
    if any(p in pk for p in ("autoawq", "llmcompressor", "autoawq-kernels")):
        return "awq"
    return "bnb"


def rule_torch_arch(ctx: Context) -> Iterable[Finding]:
    """torch carries no SASS for the GPU ("sm_120 is not compatible with the current PyTorch installation")."""
    ev = ctx.evidence
    bad = next((c for c in ev.checks if c.name == "torch_arch" and c.status == "FAIL"), None) if ev else None
    hit = quote(ctx.text, TORCH_ARCH)
    if bad is None and hit is None:
        return
    f = ctx.facts
    seen = hit[0] if hit else bad.detail if bad else ""
    sm = f"sm_{hit[1].group(1)}" if hit else ("sm_" + f.ccs[0].replace(".", "") if f.ccs else "this GPU")
    cc = f"{sm[3:-1]}.{sm[-1]}" if sm.startswith("sm_") else None
    arch = ctx.matrix.arch(cc) if cc else None
    has = f" (it has {' '.join(f.arch_list)})" if f.arch_list else ""
    first = arch.first_cuda if arch else None
    variant = f"cu{first.replace('.', '')}" if first else None
    need = (
        f"a torch build for CUDA {first} ({variant}) or newer, the first CUDA with {sm}" if first else "a newer torch"
    )
    plan = plan_fix(ctx.matrix, f, _profile(f), python=ctx.python)
    yield finding(
        "torch-arch",
        "FAIL",
        seen,
        f"the installed torch{' ' + f.torch if f.torch else ''} carries no kernels for {sm}{has}: its CUDA "
        "variant predates the architecture",
        f"install {need}: {plan.text}",
        plan.commands,
        layer="gpu-arch",
    )


def rule_triton_arch(ctx: Context) -> Iterable[Finding]:
    """Triton (torch.compile, Unsloth, bitsandbytes' triton kernels) refuses GPUs below compute capability 7.0."""
    hit = quote(ctx.text, TRITON_OLD)
    if not hit:
        return
    minimum = quote(ctx.text, TRITON_MIN)
    need = minimum[1].group(1) if minimum else "7.0"
    cc = ctx.facts.ccs[0] if ctx.facts.ccs else "?"
    yield finding(
        "triton-gpu-too-old",
        "FAIL",
        hit[0],
        f"{hit[1].group(1)} is compute capability {cc}, and Triton, which torch.compile and these kernels use, "
        f"supports only {need} and newer",
        f"use a GPU of compute capability >= {need}, or turn off the Triton path (no torch.compile; the library's "
        "non-Triton kernels)",
        layer="gpu-arch",
    )


def rule_runtime_libs(ctx: Context) -> Iterable[Finding]:
    """A CUDA runtime library (cudart, cublas, cusparse, nvJitLink...) is missing or an older copy was loaded."""
    ev = ctx.facts
    jit = quote(ctx.text, NVJITLINK)
    if jit:
        lib, symbol, needed = jit[1].groups()
        want = symbol.rsplit("_", 2)[-2:]
        yield finding(
            "cuda-libs-mixed",
            "FAIL",
            jit[0],
            f"{lib} needs {needed} from CUDA {'.'.join(want)} ({symbol}) and an older libnvjitlink was loaded: the "
            "nvidia-* CUDA wheels in the environment come from different CUDA releases (a second install pulled "
            "other ones), or LD_LIBRARY_PATH points at an older CUDA",
            "reinstall torch with its own CUDA libraries from one index: pip uninstall -y torch torchvision "
            "torchaudio, then install them together from the index of torch's CUDA variant "
            f"({ctx.matrix.pytorch_index}/cuXYZ); drop other CUDA directories from LD_LIBRARY_PATH; "
            + plan_fix(ctx.matrix, ev, _profile(ev), names=("torch",), python=ctx.python).text,
            layer="cuda-runtime",
        )
        return
    hit = quote(ctx.text, RUNTIME_LIB)
    if not hit or _extension_owned(ctx.text):
        return
    base, major = hit[1].group(1), hit[1].group(2)
    package = LIB_PACKAGE.get(base.rstrip("0123456789_"), LIB_PACKAGE.get(base, "the NVIDIA CUDA wheels"))
    wheel = f"{package}-cu{major}" if package.startswith("nvidia-") and int(major) <= 12 else package
    bnb_lib = "bitsandbytes" in ctx.text or (ctx.evidence is not None and ctx.evidence.bnb is not None)
    who = "bitsandbytes loaded a CUDA library" if bnb_lib else "a CUDA library"
    set_var = "BNB_CUDA_VERSION" in ctx.text or (ctx.evidence is not None and "BNB_CUDA_VERSION" in ctx.evidence.env)
    torch = f"torch {ev.torch} (CUDA {ev.torch_cuda})" if ev.torch_cuda else "torch"
    forced = re.search(r"BNB_CUDA_VERSION=(\d+)", ctx.text)
    value = forced.group(1) if forced else (ctx.evidence.env.get("BNB_CUDA_VERSION") if ctx.evidence else None)
    layer: Layer = "bnb-library" if bnb_lib and value else "cuda-runtime"
    cause = (
        f"{who} built for CUDA {major}.x whose runtime {base}.so.{major} is not on the loader path: {torch} brings "
        f"only the CUDA runtime it was built for"
    )
    if layer == "bnb-library":
        cause = (
            f"BNB_CUDA_VERSION={value} forces bitsandbytes to load its CUDA {major}.x library, whose runtime "
            f"{base}.so.{major} {torch} does not bring (it brings only the CUDA runtime it was built for)"
        )
    if bnb_lib:
        from envbuilder.doctor.rules_bnb import facts, install_fix

        fix, commands = install_fix(ctx, facts(ctx))
        fix = (
            ("unset BNB_CUDA_VERSION (it forces that library); then: " if set_var else "")
            + f"install a bitsandbytes whose library matches torch's CUDA: {fix}; or provide the CUDA {major} "
            f"runtime: pip install {wheel} (PyPI) and put its lib directory on LD_LIBRARY_PATH"
        )
    else:
        commands = ()
        fix = (
            f"{base}.so.{major} ships in the PyPI wheel {wheel} (and in the CUDA {major} toolkit): install the "
            f"builds made for torch's CUDA, or pip install {wheel} and put its lib directory on LD_LIBRARY_PATH"
        )
    yield finding("cuda-runtime-missing", "FAIL", hit[0], cause, fix, commands, layer=layer)


def _extension_owned(text: str) -> bool:
    """Is the missing runtime asked for by a GPTQ/AWQ extension (rules_quant explains those)?"""
    return bool(re.search(r"(?i)\bawq\b|from awq|auto_gptq|gptqmodel|exllama", text))


def rule_link_libcuda(ctx: Context) -> Iterable[Finding]:
    """Triton links its launcher with -lcuda: the driver installed libcuda.so.1 but no libcuda.so symlink."""
    hit = quote(ctx.text, LINK_LCUDA)
    if not hit:
        return
    where = "/usr/lib/wsl/lib" if ctx.facts.wsl else "the driver's library directory (`ldconfig -p | grep libcuda`)"
    yield finding(
        "libcuda-symlink",
        "FAIL",
        hit[0],
        "the linker finds no libcuda.so: the NVIDIA driver installed libcuda.so.1 but not the unversioned "
        "libcuda.so symlink that Triton links against (-lcuda)",
        f"create the symlink in {where}: sudo ln -s libcuda.so.1 libcuda.so there, then sudo ldconfig (or point "
        "TRITON_LIBCUDA_PATH at the directory holding libcuda.so.1, or use a Triton release that links libcuda.so.1)",
        layer="driver",
    )


def rule_toolkit_mismatch(ctx: Context) -> Iterable[Finding]:
    """torch.utils.cpp_extension refuses a CUDA toolkit of another version than torch's while an extension builds."""
    hit = quote(ctx.text, TOOLKIT_MISMATCH)
    if not hit:
        return
    ev = ctx.facts
    toolkit = hit[1].group(1)
    torch_cuda = ev.torch_cuda or "?"
    pkg = ev.building[0] if ev.building else "an extension"
    yield finding(
        "toolkit-vs-torch-cuda",
        "FAIL",
        hit[0],
        f"building {pkg} from source used the CUDA {toolkit} toolkit (nvcc) while torch was built with CUDA "
        f"{torch_cuda}: torch's extension builder refuses the mismatch"
        + (", so the CUDA extension is not installed" if "extension not installed" in ctx.text else ""),
        f"build with the CUDA {torch_cuda} toolkit (CUDA_HOME=/usr/local/cuda-{torch_cuda} and its nvcc on PATH), or "
        f"install a torch built for CUDA {toolkit.split('.')[0]}.x, or a prebuilt {pkg} wheel for the installed torch "
        f"instead of compiling; "
        + plan_fix(ctx.matrix, ev, "gptq" if "gptq" in pkg else _profile(ev), python=ctx.python).text,
        layer="build-toolchain",
    )


def rule_no_cuda_platform(ctx: Context) -> Iterable[Finding]:
    """macOS (no CUDA at all) and AMD GPUs with a ROCm torch under a CUDA-only bitsandbytes."""
    ev = ctx.facts
    if ev.platform == "macos-arm64":
        hit = quote(ctx.text, MACH_O)
        if hit:
            yield finding(
                "macos-no-cuda",
                "FAIL",
                hit[0],
                "macOS has no CUDA: the bitsandbytes wheel of that release carries only a Linux library (dlopen: "
                "'not a mach-o file', or its CPU stub without GPU support), and transformers' bitsandbytes check "
                "fails where CUDA is unavailable",
                "run it on a Linux or Windows machine with an NVIDIA GPU (bitsandbytes' CUDA quantization); on the "
                "Mac, load the model without quantization_config",
                layer="platform",
            )
        return
    if ev.rocm:
        hit = quote(ctx.text, r"CUDA VERSION MISMATCH|Detected PyTorch CUDA version|native library functionality")
        if hit:
            yield finding(
                "rocm-cuda-bnb",
                "FAIL",
                hit[0],
                f"an AMD GPU with a ROCm {ev.rocm} torch: the installed bitsandbytes is a CUDA build and read ROCm's "
                "version as a CUDA version, for which it has no library",
                f"ROCm is outside envbuilder's CUDA builds: install a ROCm (HIP) build of bitsandbytes for ROCm "
                f"{ev.rocm} (bitsandbytes' ROCm wheels, or a build with -DCOMPUTE_BACKEND=hip), or use an NVIDIA GPU",
                layer="platform",
            )


def rule_bnb_without_gpu_build(ctx: Context) -> Iterable[Finding]:
    """Old bitsandbytes' "compiled without GPU support" with a system CUDA older than any of its builds."""
    ev = ctx.facts
    hit = quote(ctx.text, COMPILED_WITHOUT_GPU)
    system = _v(ev.toolkit_cuda)
    if not hit or system is None or ev.platform == "macos-arm64":
        return
    cudas = [Version(c) for r in ctx.matrix.bnb_releases for c in r.cuda_libs]
    lowest = min(cudas) if cudas else None
    if lowest is None or system >= lowest:
        return
    yield finding(
        "cuda-too-old-for-bnb",
        "FAIL",
        hit[0],
        f"the CUDA installed is {ev.toolkit_cuda}, and bitsandbytes' GPU builds start at CUDA {lowest}: it loads its "
        "library without GPU support",
        f"move to CUDA {lowest} or newer (a driver that runs it and a torch built for it): "
        + plan_fix(ctx.matrix, ev, "bnb", python=ctx.python).text,
        layer="cuda-runtime",
    )


def rule_driver_pairing(ctx: Context) -> Iterable[Finding]:
    """Error 803: the libcuda.so loaded is not the installed kernel driver's (cuda-compat or another driver's
    libraries first on LD_LIBRARY_PATH); "No CUDA GPUs are available": CUDA_VISIBLE_DEVICES hides them."""
    hit = quote(ctx.text, ERROR_803)
    if hit:
        yield finding(
            "driver-libcuda-mismatch",
            "FAIL",
            hit[0],
            "error 803, unsupported display driver / cuda driver combination: the libcuda.so this process loaded is "
            "not the installed kernel driver's own (a CUDA forward-compatibility libcuda from cuda-compat, or another "
            "driver's libraries, first on LD_LIBRARY_PATH)",
            "remove the compat directory (/usr/local/cuda-X.Y/compat) or the other driver's libraries from "
            "LD_LIBRARY_PATH so the installed driver's libcuda loads; forward compatibility helps only a data-centre "
            "GPU whose driver is older than the CUDA in use (`nvidia-smi` shows the driver and its CUDA)",
            layer="driver",
        )
    hit = quote(ctx.text, NO_GPUS)
    if hit:
        hidden = re.search(r"CUDA_VISIBLE_DEVICES=(\S*)", ctx.text)
        env = ctx.evidence.env.get("CUDA_VISIBLE_DEVICES") if ctx.evidence else None
        said = (
            f" (CUDA_VISIBLE_DEVICES={env or (hidden.group(1) if hidden else '')!r})"
            if env is not None or hidden
            else ""
        )
        yield finding(
            "no-gpu-visible",
            "FAIL",
            hit[0],
            f"no CUDA GPUs are available to this process{said}: CUDA_VISIBLE_DEVICES hides them (empty, or an index "
            "that does not exist), or no NVIDIA driver is loaded",
            f"{UNHIDE_GPUS}; if nvidia-smi lists no GPU, the driver is not loaded (install it, or reboot after an "
            "upgrade)",
            layer="driver",
        )


def rule_torch_extension_abi(ctx: Context) -> Iterable[Finding]:
    """A compiled torch extension (not a GPTQ/AWQ package's: rules_quant names those) built for another torch."""
    hit = quote(ctx.text, TORCH_EXTENSION)
    if not hit or _extension_owned(hit[0]):
        return
    lib = hit[1].group(1).split("/")[-1]
    torch = f"torch {ctx.facts.torch}" if ctx.facts.torch else "the installed torch"
    yield finding(
        "torch-extension-abi",
        "FAIL",
        hit[0],
        f"{lib} was compiled against another torch than {torch}: undefined symbol {hit[1].group(2)[:50]}... (torch's "
        "C++ ABI changes with every release)",
        f"rebuild the extension against {torch} (pip install --no-build-isolation --force-reinstall of its package, "
        "with that torch installed), or install the wheel built for it",
        layer="torch-build",
    )


def rule_cuda_torch_sees_no_gpu(ctx: Context) -> Iterable[Finding]:
    """An environment whose torch is a CUDA build and that sees no GPU: everything runs on the CPU, silently
    (bitsandbytes loads its CPU library). Probed environments only; a log says "No CUDA GPUs" itself."""
    ev = ctx.evidence
    if ev is None or not ev.torch_cuda or ev.devices or quote(ctx.text, NO_GPUS):
        return
    hidden = ev.env.get("CUDA_VISIBLE_DEVICES")
    falls_back = f"; bitsandbytes loads {ev.bnb_lib}" if ev.bnb_lib and "cpu" in ev.bnb_lib else ""
    seen = f"torch {ev.torch} (CUDA {ev.torch_cuda}) sees 0 GPUs{falls_back}"
    if hidden is not None:
        yield finding(
            "no-gpu-visible",
            "FAIL",
            seen,
            f"CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU from this CUDA environment: torch and bitsandbytes "
            "run on the CPU without saying so",
            f"{UNHIDE_GPUS}, then run the doctor again",
            layer="driver",
        )
        return
    yield finding(
        "no-gpu-visible",
        "WARN",
        seen,
        "this environment is built for a GPU, and no GPU is visible here: no NVIDIA driver is loaded, or this "
        "is another machine than the one it was built for",
        "run `nvidia-smi`: if it lists no GPU, install or load the driver (`envbuilder detect` names the one the "
        "plan needs); on a machine without a GPU, use the cpu profile (`envbuilder create --gpu cpu`)",
        layer="driver",
    )


RULES: tuple[Rule, ...] = (
    rule_no_cuda_platform,
    rule_driver,
    rule_toolkit_mismatch,
    rule_torch_arch,
    rule_triton_arch,
    rule_runtime_libs,
    rule_link_libcuda,
    rule_driver_pairing,
    rule_cuda_torch_sees_no_gpu,
    rule_torch_extension_abi,
    rule_bnb_without_gpu_build,
)
