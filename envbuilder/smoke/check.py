"""The smoke test that runs INSIDE the environment under test; prints one JSON document on stdout.

Standalone on purpose: only the standard library and the environment's own packages (torch, bitsandbytes,
transformers, ...), never envbuilder, so it can be copied to any host and run as
``python check.py --json [--quick] [--light] [--profile bnb|gptq|awq|cpu]``. It is the one smoke program:
``envbuilder smoke``/``create``/``doctor`` run it in an environment, images run it at build time
(``--light --expect expect.json``) and as their default command, and the WSL2/Windows recipes run it
(``--quick --expect expect.json``). ``--expect`` names what a lock installed (versions, torch's CUDA, the
bitsandbytes library torch's CUDA needs, the modules to import); ``--bounds`` the pass bounds, which
envbuilder reads from ``matrices/smoke.toml``; ``--text`` prints one line per stage instead of JSON.

``--light`` (what the doctor runs) never imports the bitsandbytes package: since 0.46 its import registers
torch.library ops, which pulls in torch._dynamo (seconds). Instead ``bnb_library`` reads its version and files
from the installed distribution, names the native library its loader would pick, and dlopens that file after
``import torch`` (so torch's CUDA runtime is loaded, as in a real import) to reproduce real loader errors. The
full and quick runs still import bitsandbytes for real (``bnb_import``).

The full run of a gptq or awq environment takes the user's path for each checkpoint format the profile makes
and loads (``QUANT_LOAD``): a tiny Llama built on the spot is quantized by gptqmodel (GPTQ, AWQ) or
llm-compressor (compressed-tensors), saved with its ``quantization_config``, loaded back with
``AutoModelForCausalLM.from_pretrained`` on the first GPU (or the CPU) and compared with fp32
(``quant_load_<format>`` stages; ``--formats`` picks some). A load that transformers refuses FAILs with its
message verbatim in ``evidence.error``, which the doctor reads.

Every stage returns a dict ``{name, status, detail, hint, seconds, evidence}`` with status OK, WARN, FAIL or
SKIP; a stage whose prerequisite failed is SKIPped with the reason. Anything the environment prints (C
libraries included) goes to stderr, so stdout carries the JSON document alone.

Bounds: ``matrices/smoke.toml`` is the one table (what each metric measures, the values observed, sources).
The copy below serves runs by hand without ``--bounds``; tests/test_smoke.py proves it equals the table.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

__all__ = [
    "BASE",
    "BOUNDS",
    "BOUND_LINEAR",
    "BOUND_LLAMA",
    "BOUND_QUANT_LIB",
    "BOUND_QUANT_LOAD",
    "BOUND_RT",
    "ENV_VARS",
    "GPU_PROFILES",
    "HEAVY",
    "LIB_RE",
    "LIGHT",
    "MAKERS",
    "PACKAGES",
    "PROFILES",
    "QUANT_LOAD",
    "SCHEMA",
    "Stage",
    "State",
    "choose_library",
    "library_suffix",
    "main",
    "no_gpu_verdict",
    "progress",
    "quant_env_defaults",
    "quant_load_stages",
    "run",
    "sass_for",
    "stage_bnb_import",
    "stage_bnb_kernels",
    "stage_bnb_library",
    "stage_cuda",
    "stage_imports",
    "stage_interpreter",
    "stage_linear",
    "stage_quant4",
    "stage_quant_lib",
    "stage_quant_load",
    "stage_tiny_llama",
    "stage_torch",
    "stage_torch_arch",
    "stage_versions",
    "stage_vram",
    "text_report",
    "timed_import",
    "timing_line",
    "watch_jit",
]

SCHEMA = "envbuilder.smoke/1"
BOUND_RT = {"nf4": 0.15, "fp4": 0.20}
BOUND_LINEAR = {"Linear4bit": 0.25, "Linear8bitLt": 0.10}
BOUND_LLAMA = {"nf4": 0.5, "fp4": 0.5, "8bit": 0.1}
BOUND_QUANT_LIB = {"gptq": 0.25}
BOUND_QUANT_LOAD = {"gptq": 0.5, "awq": 0.5, "compressed-tensors": 0.5}
# The stages' bound tables by stage name; ``--bounds`` updates them in place (one run per process).
BOUNDS = {
    "quant4": BOUND_RT,
    "linear": BOUND_LINEAR,
    "tiny_llama": BOUND_LLAMA,
    "quant_lib": BOUND_QUANT_LIB,
    "quant_load": BOUND_QUANT_LOAD,
}
# The checkpoint formats (transformers' quant_method) each profile makes and loads, in the order the stages run:
# a copy of matrices/profiles.toml's [[profile.formats]] rows with make and load (tests/test_smoke.py checks).
QUANT_LOAD = {"gptq": ("gptq", "awq"), "awq": ("awq", "compressed-tensors", "gptq")}
MAKERS = {"gptq": "gptqmodel", "awq": "gptqmodel", "compressed-tensors": "llmcompressor"}
PROFILES = ("bnb", "gptq", "awq", "cpu")  # a copy of model/types.py PROFILES (tests/test_smoke.py checks)
PACKAGES = (
    "torch",
    "bitsandbytes",
    "transformers",
    "accelerate",
    "peft",
    "triton",
    "numpy",
    "safetensors",
    "auto-gptq",
    "auto_gptq",
    "autoawq",
    "autoawq-kernels",
    "gptqmodel",
    "optimum",
    "llmcompressor",
    "compressed-tensors",
    "kernels",
    "bitsandbytes-windows",
    "exllamav2",
)
ENV_VARS = (
    "BNB_CUDA_VERSION",
    "BNB_ROCM_VERSION",
    "CUDA_VISIBLE_DEVICES",
    "LD_LIBRARY_PATH",
    "CUDA_HOME",
    "HF_HUB_OFFLINE",
    "PYTORCH_CUDA_ALLOC_CONF",
    "WSL_DISTRO_NAME",
)
Stage = dict[str, Any]
State = dict[str, Any]  # what earlier stages learnt (modules, devices), read by later ones


def _stage(name: str, status: str, detail: str, hint: str = "", **evidence: Any) -> Stage:
    return {"name": name, "status": status, "detail": detail, "hint": hint, "seconds": 0.0, "evidence": evidence}


def _error_text(exc: BaseException) -> str:
    """The exception's last line plus a short traceback tail: what the doctor matches against."""
    tail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-6:])
    return tail[-4000:]


def timed_import(state: State, module: str, *touch: str) -> Any:
    """Import ``module`` (and its lazily loaded names ``touch``), adding the time to ``state["imports"]``.

    The smoke test reports imports apart from its own work (issue 17): importing torch, bitsandbytes and
    transformers takes seconds that say nothing about whether the environment works, and the stages' own time
    is what its speed bound is about."""
    import importlib

    start, jit_before = time.perf_counter(), state.get("jit_clock", 0.0)
    mod = importlib.import_module(module)  # a failed import is the stage's failure, timed as its work
    for attr in touch:  # transformers loads each model and config class on first access
        getattr(mod, attr)
    took = time.perf_counter() - start - (state.get("jit_clock", 0.0) - jit_before)  # a JIT build is its own
    imports, top = state.setdefault("imports", {}), module.split(".", maxsplit=1)[0]
    imports[top] = round(imports.get(top, 0.0) + took, 3)
    state["import_clock"] = state.get("import_clock", 0.0) + took
    return mod


def progress(state: State, text: str) -> None:
    """With ``--progress``, one line on the real stderr as a stage starts and ends (and as a JIT build does): a
    run that takes minutes shows where it is, and one stopped from outside leaves the last stage it reached."""
    stream = sys.__stderr__
    if state.get("progress") and stream is not None:
        stream.write(f"smoke: {text}\n")
        stream.flush()


def watch_jit(state: State, cpp_extension: Any) -> bool:
    """Time every JIT build of a torch extension from now on, apart from the stage that asked for it.

    gptqmodel compiles its CUDA kernels (Marlin, exllama v2, ...) with nvcc at first use through
    ``torch.utils.cpp_extension.load``; its ``_jit_compile`` (behind ``load`` and ``load_inline``) runs ninja
    and imports the result. Wrapping it here catches every caller, however it imported ``load``. A kernel
    already in the extension cache that the library loads itself (gptqmodel does) never calls it: no entry.
    Each call is kept in ``state["jit"]`` (name, seconds, ok) and its time in ``state["jit_clock"]``, which
    ``_run_stage`` and ``timed_import`` leave out of their own seconds. False where torch has no such function."""
    compile_fn = getattr(cpp_extension, "_jit_compile", None)
    if compile_fn is None or getattr(compile_fn, "envbuilder_watched", False):
        return compile_fn is not None

    def timed(*args: Any, **kwargs: Any) -> Any:
        name = str(args[0] if args else kwargs.get("name", "?"))
        progress(state, f"  JIT build of torch extension {name} (ninja/nvcc; minutes at first use) ...")
        start, ok = time.perf_counter(), False
        try:
            result = compile_fn(*args, **kwargs)
            ok = True
            return result
        finally:
            took = time.perf_counter() - start
            state.setdefault("jit", []).append({"name": name, "seconds": round(took, 3), "ok": ok})
            state["jit_clock"] = state.get("jit_clock", 0.0) + took
            progress(state, f"  JIT build of {name} {'done' if ok else 'FAILED'} in {took:.1f} s")

    timed.__dict__["envbuilder_watched"] = True  # the mark a second call looks for (a function's own attribute)
    cpp_extension._jit_compile = timed
    return True


def _run_stage(name: str, fn: Callable[[State], Stage], state: State) -> Stage:
    """Run one stage; an unexpected exception becomes a FAIL carrying its text, never a crash.

    Its ``seconds`` leave out the imports it made (``timed_import``), in ``import_seconds``, and the JIT builds
    of torch extensions (``watch_jit``), in ``jit_seconds`` with each build in ``evidence.jit``."""
    progress(state, f"{name} ...")
    start = time.perf_counter()
    imported_before, jit_before = state.get("import_clock", 0.0), state.get("jit_clock", 0.0)
    builds_before = len(state.get("jit", []))
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            result = fn(state)
    except Exception as exc:
        last = (str(exc).strip().splitlines() or [""])[-1][:300]
        result = _stage(name, "FAIL", f"{type(exc).__name__}: {last}", error=_error_text(exc))
    imported = state.get("import_clock", 0.0) - imported_before
    jit = state.get("jit_clock", 0.0) - jit_before
    took = time.perf_counter() - start
    result["seconds"] = round(max(0.0, took - imported - jit), 3)
    if imported > 0.0005:
        result["import_seconds"] = round(imported, 3)
    builds = state.get("jit", [])[builds_before:]
    if builds:
        result["jit_seconds"] = round(jit, 3)
        result["evidence"]["jit"] = builds
        each = ", ".join(f"{b['name']} {b['seconds']:.1f} s" + ("" if b["ok"] else " FAILED") for b in builds)
        result["detail"] += f" [JIT build {jit:.1f} s, not in the stage's time: {each}]"
    text = captured.getvalue()
    if text.strip():
        result["evidence"]["stderr"] = text[-4000:]
        if not state.get("progress"):  # with --progress stderr carries the progress lines alone
            sys.stderr.write(text)
    state.setdefault("failed", set())
    if result["status"] == "FAIL":
        state["failed"].add(name)
    progress(state, f"{name} {result['status']} in {took:.1f} s")
    return result


def _skip_if(state: State, *needs: str) -> Stage | None:
    for need in needs:
        if need in state.get("failed", set()) or need in state.get("skipped", set()):
            return _stage("", "SKIP", f"skipped: stage '{need}' did not pass")
    return None


# --------------------------------------------------------------------------- light stages


def stage_interpreter(state: State) -> Stage:
    """Interpreter, platform, glibc, selected environment variables and installed package versions."""
    from importlib import metadata

    packages: dict[str, str] = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            packages[name] = metadata.version(name)
    libc, libc_version = platform.libc_ver()
    env = {k: os.environ[k] for k in ENV_VARS if k in os.environ}
    return _stage(
        "interpreter",
        "OK",
        f"Python {platform.python_version()} on {platform.system()} {platform.machine()}",
        python=platform.python_version(),
        executable=sys.executable,
        prefix=sys.prefix,
        system=platform.system(),
        machine=platform.machine(),
        libc=f"{libc}-{libc_version}" if libc else None,
        env=env,
        packages=packages,
    )


def stage_torch(state: State) -> Stage:
    """Import torch and record its build: version, CUDA (or HIP), and the SASS/PTX targets it carries."""
    torch = timed_import(state, "torch")
    state["torch"] = torch
    arch = list(torch.cuda.get_arch_list()) if torch.version.cuda else []
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else ("ROCm" if torch.version.hip else "CPU")
    expect = state.get("expect")
    wrong = expect is not None and torch.version.cuda != expect["cuda"]
    return _stage(
        "torch",
        "FAIL" if wrong else "OK",
        f"torch {torch.__version__} is built for CUDA {torch.version.cuda}, the lock says {expect['cuda']}"
        if wrong and expect is not None
        else f"torch {torch.__version__} ({build} build)",
        version=torch.__version__,
        cuda=torch.version.cuda,
        hip=torch.version.hip,
        arch_list=arch,
    )


GPU_PROFILES = ("bnb", "gptq", "awq")  # the profiles whose plans are GPU plans (cpu is the CPU one)


def no_gpu_verdict(
    *,
    torch_cuda: str | None,
    profile: str,
    require_gpu: bool,
    expect_cuda: str | None,
    visible: str | None,
    reason: str = "",
    light: bool = False,
) -> tuple[str, str, str]:
    """Pure: (status, detail, hint) of the cuda stage when torch sees no GPU.

    A GPU environment that sees no GPU FAILS, with the cause: ``--require-gpu``, a lock that names torch's CUDA
    (``--expect``), or a CUDA build of torch in a GPU profile. Passing on the CPU instead hid it: on the H200,
    ``CUDA_VISIBLE_DEVICES=''`` made the whole smoke test pass on the CPU (issue 17). A CPU build of torch in
    the cpu profile is a CPU environment (SKIP). ``--light`` (the doctor's probe, an image's build step, where no
    GPU is lent) only reports: SKIP with the cause, unless ``--require-gpu``."""
    why = (
        "--require-gpu"
        if require_gpu
        else f"the lock's torch is a CUDA {expect_cuda} build"
        if expect_cuda is not None
        else f"{profile} profile"
        if torch_cuda is not None and profile in GPU_PROFILES
        else ""
    )
    required = bool(why) and (require_gpu or not light)
    if torch_cuda is None:
        if not required:
            return "SKIP", "no GPU check: torch is a CPU build", ""
        return (
            "FAIL",
            f"no GPU: torch is a CPU build ({why})",
            "install the lock's CUDA build of torch (envbuilder sync)",
        )
    if visible is not None:
        cause = f"no GPU visible: CUDA_VISIBLE_DEVICES='{visible}'"
        hint = "unset CUDA_VISIBLE_DEVICES, or set it to a GPU that exists (nvidia-smi -L lists them)"
    else:
        cause = f"torch is a CUDA {torch_cuda} build but sees no GPU" + (f": {reason}" if reason else "")
        hint = "check the driver (nvidia-smi) and the container's GPU access (--gpus all, or CDI nvidia.com/gpu)"
    if not required:
        return "SKIP", cause, hint if why else ""
    return "FAIL", f"{cause} ({why}: a GPU environment)", hint


def _no_gpu_reason(torch: Any) -> str:
    """torch's own words for seeing no GPU (``torch.cuda.init()`` raises them), one line."""
    try:
        torch.cuda.init()
    except Exception as exc:  # RuntimeError: "No CUDA GPUs are available", "Found no NVIDIA driver ..."
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return ""


def stage_cuda(state: State) -> Stage:
    """Every visible GPU: name, compute capability, VRAM; none in a GPU environment is a failure with its cause."""
    if "torch" not in state:  # torch did not import: that stage's FAIL is the finding, not a KeyError here
        state["devices"] = []
        return _stage("cuda", "SKIP", "skipped: stage 'torch' did not pass (torch did not import)")
    torch = state["torch"]
    if not torch.version.cuda or not torch.cuda.is_available():
        state["devices"] = []
        reason = _no_gpu_reason(torch) if torch.version.cuda else ""
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        status, detail, hint = no_gpu_verdict(
            torch_cuda=torch.version.cuda,
            profile=str(state.get("profile", "bnb")),
            require_gpu=bool(state.get("require_gpu")),
            expect_cuda=(state.get("expect") or {}).get("cuda"),
            visible=visible,
            reason=reason,
            light=bool(state.get("light")),
        )
        return _stage("cuda", status, detail, hint, available=False, devices=[], visible_devices=visible, reason=reason)
    devices = []
    for i in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(i)
        devices.append(
            {
                "index": i,
                "name": props.name,
                "cc": f"{props.major}.{props.minor}",
                "vram_bytes": int(props.total_memory),
            }
        )
    state["devices"] = devices
    names = ", ".join(
        f"cuda:{d['index']} {d['name']} (sm_{d['cc'].replace('.', '')}, {d['vram_bytes'] / 2**30:.1f} GiB)"
        for d in devices
    )
    return _stage("cuda", "OK", names, available=True, devices=devices, driver_cuda=_driver_cuda(torch))


def _driver_cuda(torch: Any) -> str | None:
    with contextlib.suppress(Exception):
        v = torch._C._cuda_getDriverVersion()
        return f"{v // 1000}.{(v % 1000) // 10}"
    return None


def sass_for(arch_list: list[str], cc: str) -> tuple[str | None, str | None]:
    """(the sm_XY SASS that runs on ``cc``, the compute_XY PTX that can be JIT-compiled for it).

    NVIDIA: SASS for X.y runs on X.z with z >= y (same major); PTX for X.y JIT-compiles on any cc >= X.y.
    """
    major, minor = (int(p) for p in cc.split("."))
    sass, ptx = None, None
    for entry in arch_list:
        m = re.fullmatch(r"(sm|compute)_(\d+)(\d)[a-z]?", entry)
        if not m:
            continue
        emaj, emin = int(m.group(2)), int(m.group(3))
        if m.group(1) == "sm" and emaj == major and emin <= minor:
            sass = entry if sass is None or entry > sass else sass
        elif m.group(1) == "compute" and (emaj, emin) <= (major, minor):
            ptx = entry
    return sass, ptx


def stage_torch_arch(state: State) -> Stage:
    """Each GPU covered by torch's SASS (OK), only by its PTX (WARN: JIT, slow first start), or not (FAIL)."""
    skip = _skip_if(state, "cuda")
    if skip or not state.get("devices"):
        return _stage("torch_arch", "SKIP", "no GPU to check against torch's arch list")
    arch = state["torch"].cuda.get_arch_list()
    status, notes, cover = "OK", [], {}
    for d in state["devices"]:
        sass, ptx = sass_for(arch, d["cc"])
        cover[str(d["index"])] = {"sass": sass, "ptx": ptx}
        sm = "sm_" + d["cc"].replace(".", "")
        if sass:
            notes.append(f"cuda:{d['index']} {sm} runs {sass}")
        elif ptx:
            status = "WARN" if status == "OK" else status
            notes.append(f"cuda:{d['index']} {sm} only through PTX {ptx} (JIT)")
        else:
            status = "FAIL"
            notes.append(f"cuda:{d['index']} {sm} is not in torch's arch list {' '.join(arch)}")
    hint = "install a torch build whose CUDA variant carries this GPU's SASS" if status != "OK" else ""
    return _stage("torch_arch", status, "; ".join(notes), hint, arch_list=list(arch), coverage=cover)


def _bnb_library(cext: Any) -> dict[str, Any]:
    """Which native library bitsandbytes loaded: ``cextension.lib._lib._name`` (0.43+), else /proc/self/maps."""
    lib = getattr(cext, "lib", None)
    info: dict[str, Any] = {"wrapper": type(lib).__name__ if lib is not None else None, "path": None}
    inner = getattr(lib, "_lib", None)
    if inner is not None and getattr(inner, "_name", None):
        info["path"] = str(inner._name)
    attrs = getattr(lib, "__dict__", {})  # 0.46+: ErrorHandlerMockBNBNativeLibrary keeps why it failed
    for attr in ("error_msg", "formatted_error"):
        if attrs.get(attr):
            info[attr] = str(attrs[attr])[-3000:]
    if info["path"] is None:
        with contextlib.suppress(OSError), open("/proc/self/maps", encoding="utf-8") as maps:
            found = sorted(set(re.findall(r"\S*libbitsandbytes_\w+\.(?:so|dll|dylib)", maps.read())))
            info["path"] = found[0] if found else None
    name = os.path.basename(info["path"]) if info["path"] else None
    info["name"] = name
    m = re.match(r"libbitsandbytes_(cuda|rocm|xpu|cpu|mps)(\d*)", name or "")
    info["kind"] = m.group(1) if m else None
    info["lib_cuda"] = f"{m.group(2)[:-1]}.{m.group(2)[-1]}" if m and m.group(1) == "cuda" and m.group(2) else None
    return info


def stage_bnb_import(state: State) -> Stage:
    """Import bitsandbytes; record its version and which native library it loaded (or why none)."""
    skip = _skip_if(state, "torch")
    if skip:
        return {**skip, "name": "bnb_import"}
    bitsandbytes = timed_import(state, "bitsandbytes")
    import bitsandbytes.cextension as cext  # imported by bitsandbytes itself

    state["bnb"] = bitsandbytes
    lib = _bnb_library(cext)
    package_dir = os.path.dirname(bitsandbytes.__file__)
    shipped = sorted(f for f in os.listdir(package_dir) if f.startswith("libbitsandbytes_"))
    ev = {"version": bitsandbytes.__version__, "library": lib, "shipped": shipped}
    want_gpu = bool(state.get("devices"))
    if lib["name"] is None or lib.get("error_msg"):
        why = (lib.get("error_msg") or "no native library loaded").strip().splitlines()[-1]
        return _stage(
            "bnb_import",
            "FAIL",
            f"bitsandbytes {bitsandbytes.__version__}: {why}",
            "run `envbuilder doctor` on this environment",
            **ev,
        )
    if want_gpu and lib["kind"] != "cuda":
        return _stage(
            "bnb_import",
            "FAIL",
            f"bitsandbytes {bitsandbytes.__version__} loaded {lib['name']} although CUDA is available",
            "run `envbuilder doctor` on this environment",
            **ev,
        )
    return _stage("bnb_import", "OK", f"bitsandbytes {bitsandbytes.__version__} loaded {lib['name']}", **ev)


# The native library bitsandbytes' loader would pick, computed WITHOUT importing the package. The rule applied
# here is loader-neutral on purpose (this script carries no release facts): an override names its file; else
# the exact torch.version.cuda file; else, only when that is absent, the nearest file of the same CUDA major
# (what 0.50+ do; older releases load nothing or the CPU library). The doctor, which has the matrix, judges
# whether the installed release would load this candidate.
LIB_RE = re.compile(r"libbitsandbytes_(cuda|rocm|xpu|cpu|mps)(\d*)\.(?:so|dll|dylib)$")


def library_suffix(system: str) -> str:
    """bitsandbytes' DYNAMIC_LIBRARY_SUFFIX for ``platform.system()``."""
    return {"Windows": ".dll", "Darwin": ".dylib"}.get(system, ".so")


def _cuda_of(digits: str) -> tuple[int, int]:
    """'118' -> (11, 8), '130' -> (13, 0): a CUDA major has two digits (as bitsandbytes splits them)."""
    return int(digits[:2]), int(digits[2:] or 0)


def choose_library(files: list[str], *, torch_cuda: str | None, override: str | None, suffix: str) -> dict[str, Any]:
    """Pure: the candidate library ``{name, rule, exact, note}`` for the files shipped, torch's CUDA (None
    when bitsandbytes would use its CPU library: a CPU build or no visible GPU) and BNB_CUDA_VERSION."""
    if torch_cuda is None:
        return {"name": f"libbitsandbytes_cpu{suffix}", "rule": "cpu", "exact": None, "note": ""}
    major, minor = (int(p) for p in torch_cuda.split(".")[:2])
    exact = f"libbitsandbytes_cuda{major}{minor}{suffix}"
    if override:  # every release honours a non-empty override by name, with no fallback
        note = "" if override.isdigit() else "not digits only: 0.50+ refuse it before loading anything"
        return {"name": f"libbitsandbytes_cuda{override}{suffix}", "rule": "override", "exact": exact, "note": note}
    note = "BNB_CUDA_VERSION is empty: ignored before 0.50, refused by 0.50+" if override == "" else ""
    if exact in files:
        return {"name": exact, "rule": "exact", "exact": exact, "note": note}
    shipped = {}
    for f in files:
        m = LIB_RE.match(f)
        if m and m.group(1) == "cuda" and len(m.group(2)) >= 3 and f.endswith(suffix):
            shipped[_cuda_of(m.group(2))] = f
    same = [v for v in shipped if v[0] == major]
    lower = [v for v in same if v < (major, minor)]
    pick = max(lower) if lower else min(same, default=None)
    if pick is None:
        return {"name": exact, "rule": "exact", "exact": exact, "note": note}
    return {
        "name": shipped[pick],
        "rule": "nearest-same-major",
        "exact": exact,
        "note": (note + "; " if note else "") + f"no {exact}: only 0.50+ fall back to {shipped[pick]}",
    }


def _bnb_package_dir() -> str | None:
    """bitsandbytes' package directory from its import spec or its distribution's files: no import."""
    from importlib import metadata, util

    with contextlib.suppress(ImportError, ValueError):
        spec = util.find_spec("bitsandbytes")  # a top-level spec: finds the package without executing it
        if spec is not None and spec.submodule_search_locations:
            return str(next(iter(spec.submodule_search_locations)))
    with contextlib.suppress(metadata.PackageNotFoundError):
        for f in metadata.distribution("bitsandbytes").files or ():
            if f.parts == ("bitsandbytes", "__init__.py"):
                return os.path.dirname(str(f.locate()))
    return None


def _dlopen(path: str) -> str | None:
    """Load ``path`` as bitsandbytes does (ctypes, default mode); the loader's error text, or None."""
    import ctypes

    try:
        ctypes.CDLL(path)
    except OSError as exc:
        return str(exc)
    return None


def stage_bnb_library(state: State) -> Stage:
    """Light: bitsandbytes' version and shipped libraries, the library its loader would pick, and a dlopen."""
    skip = _skip_if(state, "torch")
    if skip:
        return {**skip, "name": "bnb_library"}
    from importlib import metadata

    try:
        version = metadata.version("bitsandbytes")
    except metadata.PackageNotFoundError:
        return _stage("bnb_library", "SKIP", "bitsandbytes is not installed")
    torch = state["torch"]
    package_dir = _bnb_package_dir()
    files = sorted(f for f in os.listdir(package_dir) if LIB_RE.match(f)) if package_dir else []
    wanted = (state.get("expect") or {}).get("bnb_library")
    if wanted and wanted not in files:
        return _stage(
            "bnb_library",
            "FAIL",
            f"bitsandbytes has no {wanted} (the library it loads for this torch)",
            "run `envbuilder doctor` on this environment",
            version=version,
            package_dir=package_dir,
            shipped=files,
        )
    gpu = bool(torch.version.cuda) and bool(state.get("devices"))  # as bitsandbytes: torch.cuda.is_available()
    suffix = library_suffix(platform.system())
    cand = choose_library(
        files,
        torch_cuda=torch.version.cuda if gpu else None,
        override=os.environ.get("BNB_CUDA_VERSION"),
        suffix=suffix,
    )
    path = os.path.join(package_dir, cand["name"]) if package_dir else None
    cand["path"] = path
    cand["exists"] = path is not None and os.path.isfile(path)
    cand["dlopen_error"] = _dlopen(path) if path and cand["exists"] else None
    ev: dict[str, Any] = {
        "version": version,
        "package_dir": package_dir,
        "shipped": files,
        "gpu": gpu,
        "torch_cuda": torch.version.cuda,
        "imported": False,
        "candidate": cand,
    }
    head = f"bitsandbytes {version} (not imported)"
    why = f" ({cand['note']})" if cand["note"] else ""
    if not cand["exists"]:
        major = str(torch.version.cuda).split(".")[0]
        lib = f"a CUDA {major}.x library" if cand["rule"] == "exact" else cand["name"]
        return _stage(
            "bnb_library",
            "FAIL",
            f"{head}: its loader wants {cand['name']}, which is not shipped (nor {lib}){why}",
            "run `envbuilder doctor` on this environment",
            **ev,
        )
    if cand["dlopen_error"]:
        last = cand["dlopen_error"].strip().splitlines()[-1][:300]
        return _stage(
            "bnb_library",
            "FAIL",
            f"{head}: loading {cand['name']} fails: {last}",
            "run `envbuilder doctor` on this environment",
            **ev,
        )
    return _stage("bnb_library", "OK", f"{head} would load {cand['name']} (dlopen OK){why}", **ev)


def _targets(state: State) -> list[str]:
    """The devices the heavy stages run on: every GPU, or the CPU when there is none."""
    return [f"cuda:{d['index']}" for d in state.get("devices", [])] or ["cpu"]


def stage_bnb_kernels(state: State) -> Stage:
    """On each GPU, launch one bitsandbytes kernel: proves the loaded library has code for this device."""
    skip = _skip_if(state, "bnb_import")
    if skip:
        return {**skip, "name": "bnb_kernels"}
    if not state.get("devices"):
        return _stage("bnb_kernels", "SKIP", "no GPU: the CPU library has no device kernels to check")
    torch, functional = state["torch"], state["bnb"].functional
    results: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    for dev in _targets(state):
        try:
            x = torch.randn(4096, device=dev)
            q, s = functional.quantize_blockwise(x)
            y = functional.dequantize_blockwise(q, s)
            torch.cuda.synchronize(dev)
            results[dev] = {"ok": True, "max_err": float((x - y).abs().max())}
        except Exception as exc:
            results[dev] = {"ok": False, "error": _error_text(exc)}
            failed.append(f"{dev}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__}")
    if failed:
        return _stage(
            "bnb_kernels", "FAIL", "; ".join(failed), "run `envbuilder doctor` on this environment", devices=results
        )
    return _stage("bnb_kernels", "OK", f"blockwise quantize ran on {', '.join(results)}", devices=results)


# --------------------------------------------------------------------------- heavy stages


def stage_quant4(state: State) -> Stage:
    """nf4 and fp4 quantize -> dequantize of N(0,1) data on every device, mean abs error within BOUND_RT."""
    skip = _skip_if(state, "bnb_import")
    if skip:
        return {**skip, "name": "quant4"}
    torch, functional = state["torch"], state["bnb"].functional
    torch.manual_seed(0)
    errors: dict[str, dict[str, float]] = {}
    bad = []
    for dev in _targets(state):
        x = torch.randn(256, 256, device=dev, dtype=torch.float32)
        errors[dev] = {}
        for qt in ("nf4", "fp4"):
            q, s = functional.quantize_4bit(x, quant_type=qt)
            err = float((x - functional.dequantize_4bit(q, s, quant_type=qt)).abs().mean())
            errors[dev][qt] = round(err, 5)
            if not err <= BOUND_RT[qt]:
                bad.append(f"{dev} {qt} mean error {err:.3f} > {BOUND_RT[qt]}")
    status = "FAIL" if bad else "OK"
    detail = "; ".join(bad) or ", ".join(f"{d}: nf4 {e['nf4']:.3f} fp4 {e['fp4']:.3f}" for d, e in errors.items())
    return _stage("quant4", status, detail, errors=errors, bounds=BOUND_RT)


def stage_linear(state: State) -> Stage:
    """Linear4bit (nf4) and Linear8bitLt forward against the fp32 layer they were made from."""
    skip = _skip_if(state, "bnb_import")
    if skip:
        return {**skip, "name": "linear"}
    torch, bnb = state["torch"], state["bnb"]
    torch.manual_seed(0)
    ref = torch.nn.Linear(128, 64)
    x = torch.randn(8, 128)
    errors: dict[str, dict[str, float]] = {}
    bad = []
    for dev in _targets(state):
        want = ref.to(dev)(x.to(dev))
        l4 = bnb.nn.Linear4bit(128, 64, compute_dtype=torch.float32, quant_type="nf4")
        l4.load_state_dict(ref.state_dict())
        l8 = bnb.nn.Linear8bitLt(128, 64, has_fp16_weights=False, threshold=0.0)
        l8.load_state_dict(ref.state_dict())
        errors[dev] = {}
        for name, layer in (("Linear4bit", l4), ("Linear8bitLt", l8)):
            with torch.no_grad():
                got = layer.to(dev)(x.to(dev)).float()
            rel = float((got - want).abs().max() / want.abs().max())
            errors[dev][name] = round(rel, 5)
            if not rel <= BOUND_LINEAR[name]:
                bad.append(f"{dev} {name} relative error {rel:.3f} > {BOUND_LINEAR[name]}")
    detail = "; ".join(bad) or ", ".join(
        f"{d}: 4-bit {e['Linear4bit']:.3f} 8-bit {e['Linear8bitLt']:.3f}" for d, e in errors.items()
    )
    return _stage("linear", "FAIL" if bad else "OK", detail, errors=errors, bounds=BOUND_LINEAR)


def _tiny_llama(torch: Any, transformers: Any) -> tuple[Any, str]:
    """A 2-layer Llama built on the spot (no hub), saved to a temporary directory."""
    cfg = transformers.LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=256,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    ref = transformers.LlamaForCausalLM(cfg).eval()
    path = tempfile.mkdtemp(prefix="envbuilder-smoke-")
    ref.save_pretrained(path)
    return ref, path


def _quant_config(transformers: Any, torch: Any, mode: str) -> Any:
    if mode == "8bit":
        return transformers.BitsAndBytesConfig(load_in_8bit=True)
    return transformers.BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type=mode, bnb_4bit_compute_dtype=torch.float32
    )


def stage_tiny_llama(state: State) -> Stage:
    """Reload the tiny Llama with nf4, fp4 and 8-bit on every device; compare logits with fp32; peak VRAM."""
    skip = _skip_if(state, "bnb_import")
    if skip:
        return {**skip, "name": "tiny_llama"}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch = state["torch"]
    transformers = timed_import(
        state, "transformers", "LlamaConfig", "LlamaForCausalLM", "AutoModelForCausalLM", "BitsAndBytesConfig"
    )
    with contextlib.suppress(ImportError):  # what from_pretrained imports for a bitsandbytes config
        timed_import(state, "transformers.integrations.bitsandbytes")

    start = time.perf_counter()
    ref, path = _tiny_llama(torch, transformers)
    build_seconds = round(time.perf_counter() - start, 3)
    try:
        results, bad = _compare_all(state, torch, transformers, ref, path)
    finally:
        shutil.rmtree(path, ignore_errors=True)  # the saved model is ours alone: leave no envbuilder-smoke-*
    detail = "; ".join(bad) or ", ".join(
        f"{d}: " + " ".join(f"{m} {r['max_abs']:.3f}" for m, r in res.items()) for d, res in results.items()
    )
    return _stage(
        "tiny_llama",
        "FAIL" if bad else "OK",
        detail,
        results=results,
        bounds=BOUND_LLAMA,
        transformers=transformers.__version__,
        build_seconds=build_seconds,
    )


def _compare_all(
    state: State, torch: Any, transformers: Any, ref: Any, path: str
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        want = ref(ids).logits
    results: dict[str, dict[str, Any]] = {}
    bad = []
    for dev in _targets(state):
        results[dev] = {}
        for mode in ("nf4", "fp4", "8bit"):
            results[dev][mode] = _load_and_compare(torch, transformers, path, dev, mode, ids, want)
            r = results[dev][mode]
            if "error" in r:
                bad.append(f"{dev} {mode}: {r['error'].strip().splitlines()[-1][:200]}")
            elif not r["max_abs"] <= BOUND_LLAMA[mode]:
                bad.append(f"{dev} {mode} max |d logits| {r['max_abs']:.3f} > {BOUND_LLAMA[mode]}")
    return results, bad


def _load_and_compare(
    torch: Any, transformers: Any, path: str, dev: str, mode: str, ids: Any, want: Any
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"quantization_config": _quant_config(transformers, torch, mode), "device_map": dev}
    if dev.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(dev)
    start = time.perf_counter()
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(path, **kwargs)
        loaded = time.perf_counter()
        layer = model.model.layers[0].self_attn.q_proj
        with torch.no_grad():
            got = model(ids.to(dev)).logits.float().cpu()
    except Exception as exc:
        return {"error": _error_text(exc)}
    out: dict[str, Any] = {
        "max_abs": round(float((got - want).abs().max()), 5),
        "layer": type(layer).__name__,
        "load_seconds": round(loaded - start, 3),  # where the stage's time goes (the 2 s goal, issue 17)
        "forward_seconds": round(time.perf_counter() - loaded, 3),
    }
    if dev.startswith("cuda"):
        out["peak_vram_bytes"] = int(torch.cuda.max_memory_allocated(dev))
    return out


def stage_vram(state: State, llama: Stage | None = None) -> Stage:
    """Peak VRAM the tiny-model loads took on each GPU."""
    if not state.get("devices"):
        return _stage("vram", "SKIP", "no GPU")
    if llama is None or llama["status"] != "OK":
        return _stage("vram", "SKIP", "skipped: stage 'tiny_llama' did not pass")
    peaks = {
        dev: max(r.get("peak_vram_bytes", 0) for r in res.values()) for dev, res in llama["evidence"]["results"].items()
    }
    return _stage("vram", "OK", ", ".join(f"{d}: {b / 2**20:.1f} MiB" for d, b in peaks.items()), peak_bytes=peaks)


def stage_quant_lib(state: State, profile: str) -> Stage:
    """gptq/awq profiles: import the quantization library and run its kernel path on a tiny layer."""
    names = {"gptq": ("gptqmodel", "auto_gptq"), "awq": ("llmcompressor", "awq")}.get(profile, ())
    if not names:
        return _stage("quant_lib", "SKIP", f"the {profile} profile has no GPTQ/AWQ library")
    for module in names:
        try:
            mod = timed_import(state, module)
        except ModuleNotFoundError:
            continue
        version = getattr(mod, "__version__", "?")
        return _tiny_quant_layer(state, module, version)
    return _stage(
        "quant_lib",
        "SKIP",
        f"none of {', '.join(names)} is installed in this environment",
        f"build a {profile} environment: envbuilder create --profile {profile}",
    )


def _tiny_quant_layer(state: State, module: str, version: str) -> Stage:
    """The library's own quantizer and pure-torch kernel on one tiny layer (proven on CPU, tests/quant_cpu_validate.py).

    gptqmodel: GPTQ (4-bit, group 128) on a 256x256 nn.Linear, packed into ``TorchLinear`` (there is no
    ``TorchQuantLinear`` in gptqmodel 7.x) and run forward in fp16; max |dy| / max |y| against fp32 <= 0.25
    [0.06 on CPU]. Two things gptqmodel compiles at first use are switched off, so the stage needs neither g++
    nor nvcc and stays fast: its ``pack_block_cpu`` C++ extension (GPTQMODEL_DISABLE_PACK_EXT; it would fall
    back to Python anyway) and torch.compile of ``dequantize_weight`` (inductor fails with InvalidCxxCompiler
    where no C++ compiler exists). On a GPU the layer runs on the first device; its CUDA kernels (Marlin,
    exllama: nvcc JIT) are not exercised here.
    """
    if module != "gptqmodel":
        return _stage(
            "quant_lib",
            "WARN",
            f"{module} {version} imports; no tiny-layer kernel path is proven for it",
            module=module,
            version=version,
        )
    import torch
    from gptqmodel import QuantizeConfig
    from gptqmodel.nn_modules.qlinear.torch import TorchLinear
    from gptqmodel.quantization.gptq import GPTQ
    from torch import nn

    os.environ["GPTQMODEL_DISABLE_PACK_EXT"] = "1"  # read at pack time; this process is the smoke test alone
    dev = _targets(state)[0]  # the first GPU, or the CPU
    torch.manual_seed(0)
    layer, ref = nn.Linear(256, 256), nn.Linear(256, 256)
    ref.load_state_dict(layer.state_dict())
    calib = torch.randn(512, 256)
    gptq = GPTQ(layer, QuantizeConfig(bits=4, group_size=128, sym=True, desc_act=False))
    gptq.quantizer.configure(perchannel=True)  # what gptqmodel's own GPTQ processor does
    with torch.no_grad():
        gptq.add_batch(calib, layer(calib))
    qweight, scale, zero, g_idx = gptq.quantize()[:4]
    layer.weight.data = qweight.to(layer.weight.dtype)
    qlayer = TorchLinear(bits=4, group_size=128, sym=True, desc_act=False, in_features=256, out_features=256, bias=True)
    qlayer.pack(layer, scale, zero, g_idx)
    with torch._dynamo.config.patch(disable=True):  # post_init wraps dequantize_weight in torch.compile
        qlayer.post_init()
        qlayer = qlayer.to(dev).eval()
        x = torch.randn(8, 256)
        with torch.no_grad():
            got = qlayer(x.to(dev, torch.float16)).float().cpu()
    with torch.no_grad():
        want = ref(x)
    err = float((got - want).abs().max() / want.abs().max())
    bound = BOUND_QUANT_LIB["gptq"]
    status = "OK" if err <= bound else "FAIL"
    return _stage(
        "quant_lib",
        status,
        f"{module} {version}: GPTQ 4-bit g128 + TorchLinear fp16 forward on {dev}: max|dy|/max|y| {err:.3f} "
        f"(<= {bound})",
        module=module,
        version=version,
        device=dev,
        rel_err=err,
    )


# --------------------------------------------------------------------------- the user's path for GPTQ/AWQ/c-t
# A tiny Llama built on the spot (no hub) is quantized by the library that makes the format, saved in the
# standard layout (quantization_config in config.json), loaded back with AutoModelForCausalLM.from_pretrained on
# the target device and run forward; its logits are compared with the fp32 model's. Proven on the CPU with
# tests/quant_load_validate.py (the same model: 2 layers, hidden 128, vocab 512, 4-bit g32; tests/fixtures/quant-load).
Q_VOCAB, Q_GROUP = 512, 32


def _quant_model(state: State, workdir: str) -> Stage:
    """The fp32 source model and a word-level tokenizer (gptqmodel's loader insists on one) in workdir/src."""
    torch = state["torch"]
    transformers = timed_import(state, "transformers", "LlamaConfig", "LlamaForCausalLM", "PreTrainedTokenizerFast")
    timed_import(state, "tokenizers")
    from tokenizers import Tokenizer, models, pre_tokenizers

    src = os.path.join(workdir, "src")
    cfg = transformers.LlamaConfig(
        vocab_size=Q_VOCAB,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    ref = transformers.LlamaForCausalLM(cfg).eval()
    ref.save_pretrained(src)
    specials = {"unk_token": "w0", "pad_token": "w1", "bos_token": "w2", "eos_token": "w3"}  # words, no secrets
    backend = Tokenizer(models.WordLevel(vocab={f"w{i}": i for i in range(Q_VOCAB)}, unk_token=specials["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, **specials)
    tokenizer.save_pretrained(src)
    ids = torch.randint(0, Q_VOCAB, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        state["quant_ref"] = (src, ids, ref(ids).logits)
    return _stage("quant_model", "OK", f"tiny Llama (2 layers, hidden 128, vocab {Q_VOCAB}) for {workdir}")


def _calibration(torch: Any) -> list[dict[str, list[int]]]:
    rows = torch.randint(4, Q_VOCAB, (16, 64), generator=torch.Generator().manual_seed(2)).tolist()
    return [{"input_ids": row, "attention_mask": [1] * len(row)} for row in rows]


def _make(state: State, fmt: str, out: str, dev: str) -> str:
    """Quantize the source model into ``out`` with the library that makes ``fmt``; its version."""
    src = state["quant_ref"][0]
    if fmt == "compressed-tensors":
        llmcompressor = timed_import(state, "llmcompressor")
        timed_import(state, "llmcompressor.modifiers.quantization")
        from llmcompressor import oneshot
        from llmcompressor.modifiers.quantization import QuantizationModifier

        recipe = QuantizationModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"])
        oneshot(model=src, recipe=recipe, output_dir=out)
        return f"llmcompressor {llmcompressor.__version__}"
    timed_import(state, "gptqmodel")
    from gptqmodel import BACKEND, GPTQModel, QuantizeConfig, __version__
    from gptqmodel.quantization.config import AWQConfig

    if fmt == "gptq":
        qcfg, backend = QuantizeConfig(bits=4, group_size=Q_GROUP, sym=True, desc_act=False), BACKEND.AUTO
    else:
        # AUTO picks the CUDA-only AWQ_GEMM packer even without CUDA; AWQ_TORCH packs the same layout anywhere
        qcfg = AWQConfig(bits=4, group_size=Q_GROUP)
        backend = BACKEND.AUTO if dev.startswith("cuda") else BACKEND.AWQ_TORCH
    model = GPTQModel.load(src, qcfg, device=dev)
    model.quantize(_calibration(state["torch"]), batch_size=4, backend=backend)
    model.save(out)
    return f"gptqmodel {__version__}"


def _saved_method(out: str) -> str | None:
    with open(os.path.join(out, "config.json"), encoding="utf-8") as fh:
        return (json.load(fh).get("quantization_config") or {}).get("quant_method")


def stage_quant_load(state: State, profile: str, fmt: str, workdir: str) -> Stage:
    """Make a ``fmt`` checkpoint of the tiny Llama, load it with from_pretrained on the target device, compare."""
    name = f"quant_load_{fmt}"
    skip = _skip_if(state, "quant_model")
    if skip:
        return {**skip, "name": name}
    from importlib import util

    maker = MAKERS[fmt]
    if util.find_spec(maker) is None:
        return _stage(
            name,
            "FAIL",
            f"{maker} is not installed: the {profile} profile makes and loads {fmt} checkpoints with it",
            "rebuild the environment from its lock (envbuilder sync) or run `envbuilder doctor` on it",
        )
    dev, out = _targets(state)[0], os.path.join(workdir, fmt)
    made = _make(state, fmt, out, dev)
    if _saved_method(out) != fmt:
        return _stage(name, "FAIL", f"{made} saved quant_method {_saved_method(out)!r}, not {fmt!r}")
    return _load_quantized(state, name, fmt, out, dev, made)


def _load_quantized(state: State, name: str, fmt: str, out: str, dev: str, made: str) -> Stage:
    """The user's step: AutoModelForCausalLM.from_pretrained(checkpoint) and a forward pass, against fp32."""
    transformers = timed_import(state, "transformers", "AutoModelForCausalLM")

    torch, (_src, ids, want) = state["torch"], state["quant_ref"]
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(out, device_map=dev).eval()
        q = model.model.layers[0].self_attn.q_proj
        packed = "weight_packed" in dict(q.named_parameters(recurse=False))
        with torch.no_grad():
            got = model(ids.to(dev)).logits.float().cpu()
    except Exception as exc:  # transformers' own check ("requires optimum", ...) is what the doctor reads
        last = (str(exc).strip().splitlines() or [""])[-1][:300]
        return _stage(
            name,
            "FAIL",
            f"{made} made a {fmt} checkpoint; from_pretrained on {dev} failed: {type(exc).__name__}: {last}",
            f"run `envbuilder doctor` on this environment: it names the profile that loads {fmt}",
            error=_error_text(exc),
        )
    diff, bound = float((got - want).abs().max()), BOUND_QUANT_LOAD[fmt]
    kernel = f"{type(q).__module__}.{type(q).__name__}"
    how = f"kernel {type(q).__name__}"
    if packed:  # transformers 5.x decompresses W4A16 at the first forward, on the CPU and on the H200 alike
        how = "packed int4, decompressed to dense at the first forward (no int4 kernel on this path)"
    ok = 0 < diff <= bound and (packed or kernel != "torch.nn.modules.linear.Linear")
    return _stage(
        name,
        "OK" if ok else "FAIL",
        f"{made} -> from_pretrained({fmt}) on {dev}: max |d logits| {diff:.3f} (<= {bound}), {model.dtype}, {how}",
        max_abs=round(diff, 5),
        bound=bound,
        device=dev,
        dtype=str(model.dtype),
        kernel=kernel,
        maker=made,
        transformers=transformers.__version__,
    )


def quant_load_stages(state: State, profile: str, only: tuple[str, ...] | None = None) -> list[Stage]:
    """The user's path for each format ``profile`` makes and loads, in a scratch directory removed afterwards."""
    from importlib import util

    makers = sorted({MAKERS[f] for f in QUANT_LOAD[profile]})
    chosen = [f for f in QUANT_LOAD[profile] if only is None or f in only]
    if not any(util.find_spec(m) for m in makers):
        why = f"none of {', '.join(makers)} is installed: not a {profile} environment"
        hint = f"build a {profile} environment: envbuilder create --profile {profile}"
        return [_named(_stage("quant_load", "SKIP", why, hint), "quant_load", state)]
    workdir, cwd = tempfile.mkdtemp(prefix="envbuilder-smoke-"), os.getcwd()
    os.chdir(workdir)  # gptqmodel writes logs/*_log_*.log into the working directory
    try:
        stages = [_named(_run_stage("quant_model", lambda s: _quant_model(s, workdir), state), "quant_model", state)]
        for fmt in chosen:
            name = f"quant_load_{fmt}"
            run_one = functools.partial(stage_quant_load, profile=profile, fmt=fmt, workdir=workdir)
            stages.append(_named(_run_stage(name, run_one, state), name, state))
        return stages
    finally:
        os.chdir(cwd)
        shutil.rmtree(workdir, ignore_errors=True)


def quant_env_defaults(environ: dict[str, str]) -> dict[str, str]:
    """What the gptq/awq stages set before torch and gptqmodel are imported (only where the user has not):
    gptqmodel's C++ pack extension and torch.compile off (each JIT-compiles with g++ on first use: minutes on a
    CPU host; packing falls back to Python), and on a host with <= 2 CPUs ``GPTQMODEL_CPU_WORKERS=2``
    (gptqmodel's 'cpu' pool gets (cpus + 1) // 2 workers but 'model_loader:cpu' asks for 2, so quantize()
    raises "requests 2 workers but parent 'cpu' only has 1")."""
    want = {"GPTQMODEL_DISABLE_PACK_EXT": "1", "TORCH_COMPILE_DISABLE": "1"}
    if (os.cpu_count() or 1) <= 2:
        want["GPTQMODEL_CPU_WORKERS"] = "2"
    return {k: v for k, v in want.items() if k not in environ}


# --------------------------------------------------------------------------- what a lock installed (--expect)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def stage_versions(state: State) -> Stage:
    """Every version the lock names is installed (and, for an installed lock, nothing else)."""
    from importlib import metadata

    expect = state["expect"]
    installed = {_norm(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wanted = {_norm(k): v for k, v in expect["packages"].items()}
    wrong = sorted(f"{n} {installed.get(n)} (lock: {v})" for n, v in wanted.items() if installed.get(n) != v)
    extra = sorted(set(installed) - set(wanted)) if expect.get("exact") else []
    if wrong or extra:
        detail = "not the lock: " + "; ".join(wrong + [f"{n} is not in the lock" for n in extra])
        return _stage("versions", "FAIL", detail, "rebuild from the lock", wrong=wrong, extra=extra)
    how = "exactly the lock's versions" if expect.get("exact") else "at the plan's versions"
    return _stage("versions", "OK", f"{len(wanted)} packages, {how}", packages=len(wanted))


def stage_imports(state: State) -> Stage:
    """Import the plan's modules (those that compile or probe CUDA on import only where a GPU is)."""
    import importlib

    expect = state["expect"]
    names = list(expect.get("imports", ()))
    if state.get("devices") and not state.get("light"):
        names += list(expect.get("gpu_imports", ()))
    for name in names:
        importlib.import_module(name)
    return _stage("imports", "OK", "imported " + (", ".join(names) or "nothing"), modules=names)


# --------------------------------------------------------------------------- driver


BASE = (
    ("interpreter", stage_interpreter),
    ("torch", stage_torch),
    ("cuda", stage_cuda),
    ("torch_arch", stage_torch_arch),
)
LIGHT = (*BASE, ("bnb_library", stage_bnb_library))
# The full run keeps the loader prediction beside the real import, so every smoke run checks the prediction.
HEAVY = (
    *LIGHT,
    ("bnb_import", stage_bnb_import),
    ("bnb_kernels", stage_bnb_kernels),
    ("quant4", stage_quant4),
    ("linear", stage_linear),
)


def run(
    *,
    light: bool,
    quick: bool,
    profile: str,
    expect: dict[str, Any] | None = None,
    require_gpu: bool = False,
    formats: tuple[str, ...] | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """All stages in order; returns the JSON document. ``formats``: only these of the profile's checkpoint
    formats (QUANT_LOAD), e.g. to see one from_pretrained failure again; ``show_progress``: a line on stderr
    as each stage starts and ends."""
    began = time.perf_counter()
    state: State = {
        "skipped": set(),
        "expect": expect,
        "require_gpu": require_gpu,
        "light": light,
        "profile": profile,
        "imports": {},
        "progress": show_progress,
    }
    stages: list[Stage] = []
    full_quant = not light and not quick and profile in QUANT_LOAD
    if full_quant:
        state["quant_env"] = quant_env_defaults(dict(os.environ))
        os.environ.update(state["quant_env"])  # before torch is imported: this process is the smoke test alone
    bnb = profile in ("bnb", "cpu")  # gptq/awq environments hold no bitsandbytes: its stages do not apply
    steps = list((LIGHT if light else HEAVY) if bnb else BASE)
    if expect is not None:
        steps.insert(1, ("versions", stage_versions))
        steps.append(("imports", stage_imports))
    for name, fn in steps:
        stages.append(_named(_run_stage(name, fn, state), name, state))
    if not light and not quick and bnb:
        llama = _named(_run_stage("tiny_llama", stage_tiny_llama, state), "tiny_llama", state)
        stages.append(llama)
        stages.append(_named(_run_stage("vram", lambda s: stage_vram(s, llama), state), "vram", state))
    if not light and profile in ("gptq", "awq") and "torch" in state:
        # the quantization libraries JIT-compile their CUDA kernels at first use: timed apart (issue 17)
        state["jit_watched"] = watch_jit(state, _cpp_extension(state))
    if not light and profile in ("gptq", "awq"):
        stages.append(_named(_run_stage("quant_lib", lambda s: stage_quant_lib(s, profile), state), "quant_lib", state))
    if full_quant:
        stages += quant_load_stages(state, profile, formats)
    ok = all(s["status"] in ("OK", "WARN", "SKIP") for s in stages)
    imports = dict(state["imports"])
    seconds = {"imports": round(sum(imports.values()), 3)}
    if "jit_watched" in state:  # gptq/awq: JIT builds of torch extensions, left out of each stage's "seconds"
        seconds["jit"] = round(state.get("jit_clock", 0.0), 3)
    doc = {
        "schema": SCHEMA,
        "mode": "light" if light else ("quick" if quick else "full"),
        "profile": profile,
        "ok": ok,
        "stages": stages,
        "imports": imports,  # seconds by top-level module, left out of each stage's "seconds"
        "seconds": seconds
        | {
            "stages": round(sum(s["seconds"] for s in stages), 3),
            "total": round(time.perf_counter() - began, 3),
        },
    }
    if "jit_watched" in state:
        doc["jit"] = {"watched": state["jit_watched"], "builds": list(state.get("jit", []))}
    return doc


def _cpp_extension(state: State) -> Any:
    """torch.utils.cpp_extension (its import time is torch's), or None where it cannot be imported."""
    try:
        return timed_import(state, "torch.utils.cpp_extension")
    except Exception:  # a broken torch is the torch stage's finding, not this one's
        return None


def _named(stage: Stage, name: str, state: State) -> Stage:
    stage["name"] = name
    if stage["status"] == "SKIP":
        state["skipped"].add(name)
    return stage


def _apply_bounds(given: Any) -> None:
    """Replace the copy's bounds with ``given`` (``{"quant4": {"nf4": 0.15}, ...}``); unknown names are refused."""
    if not isinstance(given, dict):
        raise SystemExit("check.py: --bounds must be a JSON object of stages")
    for stage, metrics in given.items():
        if stage not in BOUNDS or not isinstance(metrics, dict):
            raise SystemExit(f"check.py: unknown bound stage {stage!r} (known: {', '.join(BOUNDS)})")
        for metric, bound in metrics.items():
            if metric not in BOUNDS[stage] or not isinstance(bound, (int, float)):
                raise SystemExit(f"check.py: unknown bound {stage}.{metric} (known: {', '.join(BOUNDS[stage])})")
            BOUNDS[stage][metric] = float(bound)


def _read_expect(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    if not isinstance(doc, dict) or doc.get("schema") != "envbuilder.smoke-expect/1":
        raise SystemExit(f"check.py: {path} is not an envbuilder.smoke-expect/1 document")
    return doc


def timing_line(doc: dict[str, Any]) -> str:
    """``imports 12.5 s (torch 4.0, bitsandbytes 7.5, transformers 1.0); stages 1.3 s; total 13.9 s``."""
    seconds, imports = doc.get("seconds") or {}, doc.get("imports") or {}
    each = ", ".join(f"{name} {t:.1f}" for name, t in imports.items())
    builds = (doc.get("jit") or {}).get("builds") or []
    jit = f"; JIT builds {seconds.get('jit', 0.0):.1f} s ({len(builds)})" if "jit" in seconds else ""
    return (
        f"imports {seconds.get('imports', 0.0):.1f} s"
        + (f" ({each})" if each else "")
        + jit
        + f"; stages {seconds.get('stages', 0.0):.1f} s; total {seconds.get('total', 0.0):.1f} s"
    )


def text_report(doc: dict[str, Any]) -> str:
    """One line per stage, ``FAIL versions: ...``: what a build log or a recipe shows."""
    lines = [f"{'ok' if s['status'] == 'OK' else s['status']:<4} {s['name']}: {s['detail']}" for s in doc["stages"]]
    lines.append(timing_line(doc))
    lines.append(f"smoke: {'ok' if doc['ok'] else 'FAILED'} ({doc['mode']}, {doc['profile']} profile)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--json", action="store_true", help="print the JSON document (the default output)")
    parser.add_argument("--text", action="store_true", help="print one line per stage instead of JSON")
    parser.add_argument("--quick", action="store_true", help="leave out the tiny-model stages")
    parser.add_argument("--light", action="store_true", help="only the evidence stages (what doctor uses)")
    parser.add_argument("--profile", default="bnb", choices=PROFILES)
    parser.add_argument("--expect", metavar="FILE", help="what a lock installed (expect.json beside this file)")
    parser.add_argument("--bounds", metavar="JSON", help="pass bounds by stage (envbuilder's matrices/smoke.toml)")
    parser.add_argument("--require-gpu", action="store_true", help="no visible GPU is a failure, not a skip")
    parser.add_argument("--progress", action="store_true", help="a line on stderr as each stage starts and ends")
    parser.add_argument(
        "--formats",
        metavar="LIST",
        help="gptq/awq: only these checkpoint formats of the profile (comma list of quant_method: gptq,awq,...)",
    )
    args = parser.parse_args(argv)
    formats = tuple(f for f in args.formats.split(",") if f) if args.formats else None
    unknown = [f for f in formats or () if f not in MAKERS]
    if unknown:
        parser.error(f"--formats: unknown format {unknown[0]!r} (known: {', '.join(MAKERS)})")
    expect = _read_expect(args.expect) if args.expect else None
    if args.bounds or (expect and expect.get("bounds")):
        _apply_bounds(json.loads(args.bounds) if args.bounds else expect["bounds"] if expect else {})
    # Native libraries print to fd 1: point it at stderr while stages run, keep the real stdout for JSON.
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        doc = run(
            light=args.light,
            quick=args.quick,
            profile=args.profile,
            expect=expect,
            require_gpu=args.require_gpu,
            formats=formats,
            show_progress=args.progress,
        )
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
    with os.fdopen(real_stdout, "w", encoding="utf-8") as out:
        out.write(text_report(doc) if args.text and not args.json else json.dumps(doc, default=str) + "\n")
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
