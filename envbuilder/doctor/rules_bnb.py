"""bitsandbytes / torch / transformers / GPTQ-AWQ rules: evidence or log -> cause -> exact fix.

Each rule reads the environment's evidence, the pasted log, or both, and knows that bitsandbytes' messages
and behaviour differ by release (the loader eras are data in the matrix: ``exact-or-cpu`` 0.43.1-0.45.x,
``exact-or-error`` 0.46-0.49, ``nearest-same-major`` 0.50+). Fixes are computed from the matrix: the newest
bitsandbytes release that loads a library for the torch build and carries SASS for the GPU.
Sources for every message: research compat-bnb-gptq.md section B (B1..B17) and tests/fixtures/logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from envbuilder.doctor import Context, Finding, Layer, Rule, Severity, finding
from envbuilder.doctor.loader import refuses_non_digits, shipped_cuda
from envbuilder.doctor.logs import quote
from envbuilder.doctor.plan import plan_fix
from envbuilder.model.matrix import BnbRelease, Matrix
from envbuilder.rules.bnb import covers, lib_name, library_cuda, pick, sass_row

__all__ = [
    "CUDA_FILE_DIGITS",
    "KERNEL",
    "LAYER",
    "LIB_MISSING",
    "LOADER_SYMPTOM",
    "QUANT_LIBS",
    "RULES",
    "TORCH_ARCH",
    "TRIGGERS",
    "Facts",
    "facts",
    "install_fix",
    "layered",
    "pick_bnb",
    "rule_abi_undefined_symbol",
    "rule_avoid_release",
    "rule_bnb_cuda_version_var",
    "rule_cpu_lib_undefined_symbol",
    "rule_cpu_only_method",
    "rule_glibc",
    "rule_harmless",
    "rule_lib_cuda_mismatch",
    "rule_lib_load_failed",
    "rule_mixed_quant_libs",
    "rule_named_symbol",
    "rule_nf4_on_cpu",
    "rule_no_cpu_4bit",
    "rule_no_kernel_image",
    "rule_old_libcudart_scan",
    "rule_transformers_min_bnb",
    "rule_triton_ops",
    "rule_windows_dll",
]

QUANT_LIBS = ("auto-gptq", "auto_gptq", "autoawq", "autoawq-kernels", "gptqmodel", "llmcompressor", "exllamav2")
# Every line these rules can match holds one of these words (any case): a big log is reduced to such lines
# before the rules read it (doctor.logs.relevant_lines). A rule with a new pattern adds its word here;
# tests/test_fuzz.py generates matches of every pattern and fails on one that holds none.
TRIGGERS = (
    "bitsandbytes",
    "binary",
    "cuda",
    "no kernel image",
    "outofmemoryerror",
    "gptq",
    "awq",
    "llmcompressor",
    "exllama",
    "not found",
    "cannot open",
    "undefined symbol",
    "missing dependency",
    "libcudart",
    "glibc",
    "triton",
    "quant_type",
    "fp4",
    "gemm_4bit",
    "visual c++",
    ".dll",
)


def _v(text: str | None) -> Version | None:
    try:
        return Version(text.split("+", 1)[0]) if text else None
    except InvalidVersion:
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """The facts the bitsandbytes rules weigh, read from ``ctx.facts`` (the one evidence model: the
    environment's probe where it speaks, the log's statements elsewhere)."""

    bnb: str | None
    torch: str | None
    torch_cuda: str | None
    ccs: tuple[str, ...]
    python: str | None
    platform: str
    wanted_lib: str | None = None
    jetson: bool = False


def facts(ctx: Context) -> Facts:
    ev = ctx.facts
    return Facts(
        bnb=ev.bnb,
        torch=ev.torch,
        torch_cuda=ev.torch_cuda,
        ccs=ev.ccs,
        python=ev.python if ctx.evidence is not None else None,  # a log's Python is where it ran, not a pin
        platform=ev.platform,
        wanted_lib=ev.wanted_lib,
        jetson=ev.jetson or ev.machine == "aarch64",
    )


# --------------------------------------------------------------------------- the fix: which bitsandbytes


def pick_bnb(matrix: Matrix, f: Facts) -> BnbRelease | None:
    """The newest bitsandbytes that fits this torch build, Python, platform and every GPU (None: none does):
    the resolver's own rule (rules.bnb.pick), with what the evidence or the log leaves unknown unchecked."""
    torch_v = _v(f.torch)
    return pick(
        matrix,
        torch=str(torch_v) if torch_v is not None else None,
        torch_cuda=f.torch_cuda,
        python=f.python if _v(f.python) is not None else None,
        platform=f.platform,
        ccs=f.ccs,
    ).release


def _gpu_flag(f: Facts) -> str:
    return f" --gpu {','.join('sm_' + c.replace('.', '') for c in f.ccs)}" if f.ccs else ""


def install_fix(ctx: Context, f: Facts) -> tuple[str, tuple[tuple[str, ...], ...]]:
    """The exact install line (and the argv ``--fix`` runs), or a rebuild with envbuilder when none fits."""
    if ctx.evidence is None and f.torch is None and f.torch_cuda is None:
        newest = _newest(ctx.matrix, f.platform)
        return (
            f"uv pip install 'bitsandbytes=={newest}'   (the newest release; it needs torch >= 2.4 — run "
            "`envbuilder doctor --env ENV` for a pin checked against your torch build)",
            (),
        )
    rel = pick_bnb(ctx.matrix, f)
    if rel is None:
        return (f"no bitsandbytes release fits this torch build; rebuild: envbuilder create{_gpu_flag(f)}", ())
    target = f"--python {ctx.python} " if ctx.python else ""
    where = f"torch {f.torch}" if f.torch else "this torch build"
    loads = f", loads {lib_name(library_cuda(rel, f.torch_cuda), f.platform)}" if f.torch_cuda else ""
    text = f"uv pip install {target}'bitsandbytes=={rel.version}'   (fits {where}{loads})"
    cmd = ("uv", "pip", "install", *(("--python", ctx.python) if ctx.python else ()), f"bitsandbytes=={rel.version}")
    return text, ((cmd,) if ctx.python else ())


def _newest(matrix: Matrix, platform: str) -> str:
    rels = [r for r in matrix.bnb_releases if not r.avoid and platform in r.platforms]
    return max(rels, key=lambda r: Version(r.version)).version if rels else "?"


def _release(ctx: Context, f: Facts) -> BnbRelease | None:
    return ctx.matrix.bnb_release(f.bnb.split("+")[0]) if f.bnb else None


# --------------------------------------------------------------------------- seed-notes failure modes


LOADER_SYMPTOM = {
    "exact-or-cpu": "it silently falls back to its CPU library ('Could not find the bitsandbytes CUDA binary', "
    "then 'undefined symbol' or 'compiled without GPU support' at the first GPU call)",
    "exact-or-error": "it raises 'Configured CUDA binary not found' at the first native call",
    "nearest-same-major": "no library of the same CUDA major exists, so it fails with 'No compatible CUDA binary'",
}
LIB_MISSING = re.compile(
    r"Could not find the bitsandbytes CUDA binary at|Configured CUDA binary not found at|"
    r"No compatible (?:CUDA|ROCm) binary found at|Required library version not found: libbitsandbytes_cuda|"
    r"CUDA Setup failed despite (?:GPU|CUDA) being available"
)


def rule_lib_cuda_mismatch(ctx: Context) -> Iterable[Finding]:
    """Seed #1 / B1-B3: bitsandbytes has no library for torch's CUDA (typically after a torch upgrade)."""
    f = facts(ctx)
    rel = _release(ctx, f)
    fix, cmds = install_fix(ctx, f)
    if ctx.evidence and rel and f.torch_cuda and ctx.evidence.devices and library_cuda(rel, f.torch_cuda) is None:
        want = lib_name(f.torch_cuda, f.platform)
        yield finding(
            "bnb-lib-cuda-mismatch",
            "FAIL",
            f"torch {f.torch} (CUDA {f.torch_cuda}) with bitsandbytes {rel.version}",
            f"bitsandbytes {rel.version} ships no {want} (nor a usable same-major one); "
            f"{LOADER_SYMPTOM.get(rel.loader, '')}",
            fix,
            cmds,
        )
        return
    hit = quote(ctx.text, LIB_MISSING)
    if hit:
        era = _era_of(hit[1].group(0))
        lib = f.wanted_lib or "the CUDA library"
        override = "BNB_CUDA_VERSION" in ctx.text
        yield finding(
            "bnb-lib-cuda-mismatch",
            "FAIL",
            hit[0],
            f"bitsandbytes ({era}) found no {lib} for torch's CUDA version: the release predates that "
            "CUDA, torch was upgraded after bitsandbytes"
            + (", or BNB_CUDA_VERSION names a missing build" if override else ""),
            _lib_fix(ctx, f, lib, era, fix, override),
            cmds,
        )


def _lib_fix(ctx: Context, f: Facts, lib: str, era: str, fix: str, override: bool) -> str:
    """Install what ships the library; for the exact-or-error era, the same-major library it could load."""
    lead = "unset BNB_CUDA_VERSION; then " if override else ""
    cuda = CUDA_FILE_DIGITS.search(lib)
    if cuda and era.startswith("0.46"):
        major, want = cuda.group(1), cuda.group(1) + cuda.group(2)
        shipped = sorted(
            {c for r in ctx.matrix.bnb_releases for c in r.cuda_libs if c.split(".")[0] == major},
            key=lambda c: tuple(int(x) for x in c.split(".")),
        )
        below = [c.replace(".", "") for c in shipped if int(c.replace(".", "")) < int(want)]
        if below:
            return (
                f"{lead}{fix}; until then BNB_CUDA_VERSION={below[-1]} loads the CUDA {below[-1][:-1]}.{below[-1][-1]} "
                f"library (a release of the nearest-same-major era does that by itself)"
            )
    if f.torch or f.torch_cuda:
        return lead + fix
    return f"{lead}install a bitsandbytes that ships {lib}: {fix}"


CUDA_FILE_DIGITS = re.compile(r"cuda(\d\d)(\d)")


def _era_of(message: str) -> str:
    if message.startswith("Configured"):
        return "0.46-0.49, which raise at the first native call"
    if message.startswith("No compatible"):
        return "0.50+, which fall back only within one CUDA major"
    if message.startswith("Could not find"):
        return "0.43.1-0.45.x, which silently load the CPU library"
    return "0.45 or older"


def rule_windows_dll(ctx: Context) -> Iterable[Finding]:
    """Seed #2 / B10: a Windows DLL that cannot load (an unofficial fork, or no DLL for torch's CUDA)."""
    ev = ctx.evidence
    if ev and "bitsandbytes-windows" in ev.packages:
        yield finding(
            "windows-dll",
            "FAIL",
            f"bitsandbytes-windows {ev.packages['bitsandbytes-windows']} installed",
            "an unofficial Windows fork shadows the official wheel (official win_amd64 wheels exist "
            "since 0.43.0 and ship prebuilt kernels: no MSVC needed)",
            "uv pip uninstall bitsandbytes-windows, then: " + install_fix(ctx, facts(ctx))[0],
        )
        return
    hit = quote(
        ctx.text,
        r"Could not find module '[^']*libbitsandbytes_\w+\.dll'",
    )
    if hit:
        yield finding(
            "windows-dll",
            "FAIL",
            hit[0],
            "Windows could not load bitsandbytes' DLL: before 0.43 there was no official Windows build "
            "(forks needed MSVC); since then the DLL for torch's CUDA may be absent, so the CPU DLL "
            "is tried (and fails without its dependencies)",
            "pip uninstall bitsandbytes-windows; install bitsandbytes>=0.43 with a CUDA build of torch "
            "whose CUDA it ships — or use WSL2: envbuilder create --os wsl2" + _gpu_flag(facts(ctx)),
        )


KERNEL = re.compile(r"no kernel image is available for execution on the device")
TORCH_ARCH = re.compile(r"with CUDA capability sm_(\d+) is not compatible with the current PyTorch installation")


def rule_no_kernel_image(ctx: Context) -> Iterable[Finding]:
    """Seed #3 / B6: the GPU's arch is missing from the kernels bitsandbytes loaded."""
    f = facts(ctx)
    rel = _release(ctx, f)
    ev = ctx.evidence
    if ev and rel and f.torch_cuda and ev.devices:
        lib = library_cuda(rel, f.torch_cuda)
        if lib is not None and not covers(ctx.matrix, rel, lib, f.platform, f.ccs):
            row = sass_row(ctx.matrix, rel, lib, f.platform)
            has = ", ".join("sm_" + s.replace(".", "") for s in row.sass) if row else "?"
            fix, cmds = install_fix(ctx, f)
            yield finding(
                "bnb-no-kernel",
                "FAIL",
                f"GPU sm_{f.ccs[0].replace('.', '')} with {lib_name(lib, f.platform)}",
                f"bitsandbytes {rel.version}'s CUDA {lib} library has SASS only for {has}",
                fix,
                cmds,
            )
            return
    hit = quote(ctx.text, KERNEL)
    if hit and not quote(ctx.text, TORCH_ARCH):
        bnb_side = "ops.cu" in hit[0] or "bitsandbytes" in ctx.text
        if not bnb_side:
            sm = f.ccs[0].replace(".", "") if f.ccs else None
            yield finding(
                "no-kernel",
                "FAIL",
                hit[0],
                "a compiled kernel (not torch's, not bitsandbytes') carries no code for this GPU's architecture"
                + (f" (compute capability {f.ccs[0]})" if f.ccs else ""),
                (
                    f"rebuild those kernels with sm_{sm} in their nvcc -gencode list "
                    f"(-gencode arch=compute_{sm},code=sm_{sm}); their prebuilt binaries lack it"
                )
                if sm
                else "find the GPU's compute capability (`nvidia-smi --query-gpu=name,compute_cap --format=csv`) "
                "and rebuild the failing package's kernels for it",
                layer="gpu-arch",
            )
            return
        fix, cmds = install_fix(ctx, f)
        fork = "bitsandbytes-windows" in ctx.text
        yield finding(
            "bnb-no-kernel",
            "FAIL",
            hit[0],
            (
                "the community Windows build of bitsandbytes (bitsandbytes-windows) has no kernel for this GPU"
                if fork
                else "the bitsandbytes library loaded has no kernel (SASS) for this GPU: Maxwell on >=0.48, Pascal "
                "on cu128/cu129 libraries, Volta on cu13x, Blackwell on libraries built with CUDA <= 12.6"
            ),
            (
                f"uninstall bitsandbytes-windows, then install an official bitsandbytes wheel ({_windows_since(ctx)}) "
                "whose library covers the GPU: "
                if fork
                else "install a bitsandbytes whose library covers the GPU: "
            )
            + (fix if cmds or f.torch else f"envbuilder create{_gpu_flag(f)} (or {fix})"),
            cmds,
        )


def rule_mixed_quant_libs(ctx: Context) -> Iterable[Finding]:
    """Seed #5: bitsandbytes shares an environment with GPTQ/AWQ libraries (pins and ABI-locked kernels clash)."""
    ev = ctx.evidence
    profile = ctx.matrix.profile("bnb")
    forbidden = set(profile.forbidden if profile else ()) | set(QUANT_LIBS)
    if ev:
        clash = sorted(p for p in ev.packages if p in forbidden)
        if "bitsandbytes" in ev.packages and clash:
            which = "awq" if any("awq" in c or c == "llmcompressor" for c in clash) else "gptq"
            cmds = (("uv", "pip", "uninstall", "--python", ctx.python, *clash),) if ctx.python else ()
            yield finding(
                "mixed-quant-libs",
                "FAIL",
                "installed: bitsandbytes "
                + ev.packages["bitsandbytes"]
                + ", "
                + ", ".join(f"{c} {ev.packages[c]}" for c in clash),
                "GPTQ/AWQ libraries pin torch/numpy/transformers and ship kernels built for one torch "
                "(ABI-locked); beside bitsandbytes they break each other's requirements",
                f"give them their own environment: envbuilder create --profile {which} --name {which}; "
                f"then remove them here: uv pip uninstall {' '.join(clash)}",
                cmds,
            )
        return
    libs = [quote(ctx.text, rf"(?im)^{re.escape(n)}\s+\d") for n in QUANT_LIBS]
    found = [h for h in libs if h]
    if found and quote(ctx.text, r"(?im)^bitsandbytes\s+\d"):
        yield finding(
            "mixed-quant-libs",
            "FAIL",
            found[0][0],
            "bitsandbytes and a GPTQ/AWQ library are installed in one environment",
            "give each its own environment: envbuilder create --profile gptq (or awq)",
        )


# --------------------------------------------------------------------------- research section B


def rule_transformers_min_bnb(ctx: Context) -> Iterable[Finding]:
    """B14: transformers 5.x treats bitsandbytes below its floor (companions.toml: 0.46.1) as missing."""
    f = facts(ctx)
    ev = ctx.evidence
    tf, bnb = _v(ev.packages.get("transformers")) if ev else None, _v(f.bnb)
    hit = quote(ctx.text, r"requires bitsandbytes.*>=\s*0\.46\.1")
    floor = ctx.matrix.companion_requires("transformers", str(tf or "5.0.0"), "bitsandbytes")
    if (tf and bnb and floor is not None and not floor.contains(bnb, prereleases=True)) or hit:
        fix, cmds = install_fix(ctx, f)
        seen = hit[0] if hit else f"transformers {tf} with bitsandbytes {bnb}"
        need = ", ".join(f"{s.operator} {s.version}" for s in floor) if floor else "a newer release"
        fix = f"transformers {tf.major if tf else 5}.x needs bitsandbytes {need}: {fix}"
        yield finding(
            "transformers-min-bnb",
            "FAIL",
            seen,
            f"transformers {tf.major if tf else 5}.x requires bitsandbytes {need} (BITSANDBYTES_MIN_VERSION) and "
            "reports an older one as if it were not installed",
            fix,
            cmds,
        )


def rule_bnb_cuda_version_var(ctx: Context) -> Iterable[Finding]:
    """B13: BNB_CUDA_VERSION left over from an old workaround. Version-aware: 0.50+ check it in Python and
    refuse an empty or non-digit value ('value must be digits only'); older releases ignore an empty value and
    paste any other into the library's file name."""
    ev = ctx.evidence
    f = facts(ctx)
    bnb = _v(f.bnb)
    fix = "unset BNB_CUDA_VERSION (and BNB_ROCM_VERSION) in the shell profile / job script, then rerun"
    if ev and "BNB_CUDA_VERSION" in ev.env:
        value = ev.env["BNB_CUDA_VERSION"]
        lib = lib_name(None, f.platform).replace("cpu", f"cuda{value}")
        on_gpu: Severity = "FAIL" if ev.devices else "WARN"  # bitsandbytes reads it only when torch sees a GPU
        if not value.isdigit() and bnb and refuses_non_digits(_release(ctx, f), f.bnb):
            yield finding(
                "bnb-cuda-version-var",
                on_gpu,
                f"BNB_CUDA_VERSION={value!r} in the environment",
                f"bitsandbytes {bnb} accepts digits only and raises 'value must be digits only' on a GPU"
                + (" (older releases advised exporting it empty)" if value == "" else ""),
                fix,
            )
        elif value and not value.isdigit():
            yield finding(
                "bnb-cuda-version-var",
                on_gpu,
                f"BNB_CUDA_VERSION={value!r} in the environment",
                f"bitsandbytes {bnb or ''} pastes it into the library's name: {lib}, which no release ships",
                fix,
            )
        elif value and ev.bnb_shipped and lib not in ev.bnb_shipped:
            yield finding(
                "bnb-cuda-version-var",
                on_gpu,
                f"BNB_CUDA_VERSION={value} in the environment",
                f"it forces {lib}, which bitsandbytes {bnb or ''} does not ship "
                f"(it has {', '.join(shipped_cuda(ev.bnb_shipped)) or 'no CUDA library'})",
                fix,
            )
        elif value and f.torch_cuda and value != f.torch_cuda.replace(".", ""):
            yield finding(
                "bnb-cuda-version-var",
                "WARN",
                f"BNB_CUDA_VERSION={value} in the environment",
                f"it forces libbitsandbytes_cuda{value} while torch is built for CUDA {f.torch_cuda}; that "
                "library needs its own CUDA runtime libraries, which torch's wheels do not bring",
                fix,
            )
        return
    hit = quote(
        ctx.text,
        r"BNB_CUDA_VERSION='?[^=]*'?: value must be digits only|"
        r"BNB_CUDA_VERSION=\d*\s+environment variable detected|Manual override via BNB_CUDA_VERSION",
    )
    if hit:
        yield finding(
            "bnb-cuda-version-var",
            "FAIL" if "digits only" in hit[0] else "WARN",
            hit[0],
            "BNB_CUDA_VERSION overrides bitsandbytes' choice of library (old workaround advice); "
            "0.50+ also refuses an empty value",
            fix,
        )


def rule_cpu_lib_undefined_symbol(ctx: Context) -> Iterable[Finding]:
    """B4: a CUDA-only symbol looked up in the CPU library (CUDA setup had failed before)."""
    hit = quote(ctx.text, r"libbitsandbytes_cpu\.\w+: undefined symbol: (\w+)|function '(c\w+)' not found")
    if hit:
        fix, cmds = install_fix(ctx, facts(ctx))
        fix = "install a CUDA build of torch and a bitsandbytes that ships a library for its CUDA: " + fix
        yield finding(
            "cpu-lib-undefined-symbol",
            "FAIL",
            hit[0],
            ("bitsandbytes found no CUDA runtime (libcudart) and " if "libcudart" in ctx.text else "bitsandbytes ")
            + "loaded its CPU library because CUDA setup failed, then a GPU-only function was "
            "called (copying a CUDA .so over the CPU one is not a fix)",
            fix,
            cmds,
        )


def rule_cpu_only_method(ctx: Context) -> Iterable[Finding]:
    """B5: a CUDA-only native op called with the CPU library loaded (0.46+)."""
    hit = quote(ctx.text, r"not available in CPU-only version of bitsandbytes")
    if hit:
        yield finding(
            "cpu-only-method",
            "FAIL",
            hit[0],
            "the CPU library is loaded (CPU-only torch, no GPU visible, or CUDA_VISIBLE_DEVICES empty) and "
            "a CUDA-only operation was called",
            "install a CUDA build of torch and expose the GPU: envbuilder create" + _gpu_flag(facts(ctx)),
        )


def rule_named_symbol(ctx: Context) -> Iterable[Finding]:
    """B7: 'named symbol not found' from ops.cu (Jetson sbsa wheels, or a library for another GPU/CUDA)."""
    hit = quote(ctx.text, r"Error named symbol not found at line \d+ in file")
    if hit:
        jetson = facts(ctx).jetson
        yield finding(
            "named-symbol",
            "FAIL",
            hit[0],
            "named symbol not found: the library's kernels do not match the device: on Jetson (L4T/JetPack) "
            "the aarch64 PyPI wheels are sbsa builds and cannot work"
            if jetson
            else "named symbol not found: the bitsandbytes library's kernels do not match this GPU/CUDA (an old or "
            "self-compiled library, or GPUs of different architectures used together)",
            "build bitsandbytes on the device (cmake -DCOMPUTE_BACKEND=cuda -DCOMPUTE_CAPABILITY=87 for "
            "Orin) or use the Jetson AI Lab index; envbuilder does not support Jetson"
            if jetson
            else "install an official bitsandbytes wheel that ships torch's CUDA: "
            + install_fix(ctx, facts(ctx))[0]
            + "; with GPUs of different models, try one GPU (CUDA_VISIBLE_DEVICES=0)",
        )


def rule_old_libcudart_scan(ctx: Context) -> Iterable[Finding]:
    """B9: the pre-0.43 loader scanned LD_LIBRARY_PATH/conda for libcudart and could pick the wrong CUDA."""
    hit = quote(
        ctx.text,
        r"libcudart\.so not found in any environmental path|did not contain \['libcudart\.so'|"
        r"Found duplicate \['libcudart\.so'",
    )
    if hit:
        fix, cmds = install_fix(ctx, facts(ctx))
        yield finding(
            "old-cudart-scan",
            "WARN",
            hit[0],
            "bitsandbytes <= 0.42 guessed the CUDA version from whatever libcudart it found on "
            "LD_LIBRARY_PATH / CONDA_PREFIX (0.43.1+ uses torch.version.cuda only)",
            "upgrade: " + fix + "; remove stale CUDA directories from LD_LIBRARY_PATH",
            cmds,
        )


def rule_glibc(ctx: Context) -> Iterable[Finding]:
    """B11: 0.45.x libraries need a newer glibc/libstdc++ than their manylinux tag says."""
    hit = quote(ctx.text, r"version .(GLIBC_2\.\d+|GLIBCXX_3\.4\.\d+). not found")
    ev = ctx.evidence
    f = facts(ctx)
    bnb = _v(f.bnb)
    limit = ctx.matrix.bnb_limit("glibc", str(bnb), cuda=f.torch_cuda, platform=f.platform) if bnb else None
    if not hit and ev and ev.libc and limit:
        glibc = _v(ev.libc.split("-", 1)[-1]) if ev.libc.startswith("glibc") else None
        if glibc and not limit.needs.contains(glibc, prereleases=True):
            fix, cmds = install_fix(ctx, f)
            yield finding(
                "glibc-too-old",
                "FAIL",
                f"{ev.libc} with bitsandbytes {bnb} (CUDA {f.torch_cuda})",
                f"bitsandbytes {bnb}'s CUDA {f.torch_cuda} library needs glibc {limit.needs} despite its "
                "manylinux_2_24 tag",
                fix,
                cmds,
            )
        return
    if hit:
        fix, cmds = install_fix(ctx, f)
        what = hit[1].group(1)
        past = _past_limits(ctx, "glibc")
        fix = (f"bitsandbytes >= {past} has no such glibc floor: " if past else "") + fix
        yield finding(
            "glibc-too-old",
            "FAIL",
            hit[0],
            f"the bitsandbytes library was built against a newer {'libstdc++' if 'CXX' in what else 'glibc'} "
            f"than this system has ({what}): {_system_limits(ctx)}",
            fix,
            cmds,
        )


def rule_triton_ops(ctx: Context) -> Iterable[Finding]:
    """B12: bitsandbytes <= 0.45.0 imports triton.ops, removed in triton 3.2."""
    hit = quote(ctx.text, r"No module named 'triton\.ops'")
    ev = ctx.evidence
    f = facts(ctx)
    triton = _v(ev.packages.get("triton")) if ev else None
    bnb = _v(f.bnb)
    limit = ctx.matrix.bnb_limit("triton", str(bnb)) if bnb else None
    row = limit or next((x for x in ctx.matrix.bnb_limits if x.package == "triton"), None)
    if row is not None and (hit or (triton and limit and not limit.needs.contains(triton, prereleases=True))):
        fix, cmds = install_fix(ctx, f)
        yield finding(
            "triton-ops",
            "FAIL",
            hit[0] if hit else f"bitsandbytes {bnb} with triton {triton}",
            f"bitsandbytes {row.bnb} imports triton.ops.matmul_perf_model, which triton {_bound(row.needs)} removed",
            f"{fix}; or keep this bitsandbytes and pin triton {row.needs}",
            cmds,
        )


def rule_nf4_on_cpu(ctx: Context) -> Iterable[Finding]:
    """B15: bitsandbytes 0.46.x on CPU quantizes nf4 only, while BitsAndBytesConfig defaults to fp4."""
    hit = quote(ctx.text, r"quant_type must be nf4 on CPU, got (\w+)")
    ev = ctx.evidence
    f = facts(ctx)
    rel = _release(ctx, f)
    if hit or (ev and not ev.devices and rel and rel.cpu == "nf4-only"):
        fix, cmds = install_fix(ctx, f)
        yield finding(
            "nf4-only-on-cpu",
            "FAIL" if hit else "WARN",
            hit[0] if hit else f"bitsandbytes {f.bnb} without a GPU",
            "bitsandbytes 0.46.x's CPU backend implements 4-bit for nf4 only, and BitsAndBytesConfig's "
            "default bnb_4bit_quant_type is fp4 (0.47.0 added fp4 on CPU)",
            f"{fix}; or pass bnb_4bit_quant_type='nf4'",
            cmds,
        )


def rule_no_cpu_4bit(ctx: Context) -> Iterable[Finding]:
    """bitsandbytes < 0.46 has no CPU 4-bit at all (captured with 0.45.5 here)."""
    hit = quote(ctx.text, r"Device type not supported for FP4 quantization: cpu")
    ev = ctx.evidence
    f = facts(ctx)
    rel = _release(ctx, f)
    if hit or (ev and not ev.devices and rel and rel.cpu == "none" and not rel.avoid):
        fix, cmds = install_fix(ctx, f)
        yield finding(
            "no-cpu-4bit",
            "FAIL",
            hit[0] if hit else f"bitsandbytes {f.bnb} without a GPU",
            "bitsandbytes < 0.46 has no CPU backend for 4-bit (and 8-bit matmul); it needs a CUDA GPU",
            f"bitsandbytes >= {_first_cpu(ctx)} quantizes on the CPU: {fix}; or quantize on a CUDA GPU",
            cmds,
        )


def _windows_since(ctx: Context) -> str:
    """``>= 0.43.0 ships Windows DLLs``: the first release with a native Windows build (bitsandbytes.toml [[first]])."""
    first = ctx.matrix.bnb_first_on("windows-x86_64")
    return f">= {first.version} ships Windows DLLs" if first else "one with a native Windows build"


def _bound(needs: SpecifierSet) -> str:
    """The version a ``<X`` requirement stops below ("3.2" of "<3.2"), else the requirement itself."""
    upper = [s.version for s in needs if s.operator == "<"]
    return upper[0] if upper else str(needs)


def _system_limits(ctx: Context) -> str:
    """What the matrix's glibc and libstdc++ limits say, and the first release past them."""
    said = [
        f"bitsandbytes {x.bnb}"
        + (f" (CUDA {'/'.join(x.cuda)} libraries)" if x.cuda else "")
        + f" needs {x.package} {x.needs}"
        for x in ctx.matrix.bnb_limits
        if x.package in ("glibc", "libstdc++")
    ]
    past = _past_limits(ctx, "glibc")
    return "; ".join(said + ([f"{past} and later have no such floor"] if past else []))


def _past_limits(ctx: Context, package: str) -> str | None:
    """The first release the matrix knows after every release its ``[[limit]]`` rows on ``package`` cover."""
    limited = [
        r
        for r in ctx.matrix.bnb_releases
        for x in ctx.matrix.bnb_limits
        if x.package == package and x.bnb.contains(r.version, prereleases=True)
    ]
    if not limited:
        return None
    last = max(Version(r.version) for r in limited)
    later = sorted(Version(r.version) for r in ctx.matrix.bnb_releases if Version(r.version) > last)
    return str(later[0]) if later else None


def _first_cpu(ctx: Context) -> str:
    """The first release the matrix knows with a CPU backend for 4-bit."""
    rels = sorted((r for r in ctx.matrix.bnb_releases if r.cpu != "none"), key=lambda r: Version(r.version))
    return ".".join(rels[0].version.split(".")[:2]) if rels else "0.46"


def rule_abi_undefined_symbol(ctx: Context) -> Iterable[Finding]:
    """B16: a prebuilt GPTQ/AWQ/exllama extension compiled against another torch (C++ ABI)."""
    ev = ctx.evidence
    if ev and (ag := _v(ev.packages.get("auto-gptq") or ev.packages.get("auto_gptq"))) and _v(ev.torch):
        torch_v = _v(ev.torch)
        if torch_v and (torch_v.major, torch_v.minor) != (2, 2):
            yield finding(
                "torch-abi",
                "WARN",
                f"auto-gptq {ag} with torch {ev.torch}",
                "auto-gptq 0.7.x binary wheels were built against torch 2.2.x; with another torch its "
                "kernels fail with 'undefined symbol: _ZN3c10...'",
                "envbuilder create --profile gptq (gptqmodel, which compiles its kernels for your torch)",
            )


def rule_avoid_release(ctx: Context) -> Iterable[Finding]:
    """A release the matrix marks to avoid (e.g. 0.45.4's Linux wheel lacks the CPU library)."""
    f = facts(ctx)
    rel = _release(ctx, f)
    hit = quote(ctx.text, r"libbitsandbytes_cpu\.so: cannot open shared object file")
    if rel and rel.avoid:
        fix, cmds = install_fix(ctx, f)
        yield finding(
            "bad-release",
            "FAIL",
            hit[0] if hit else f"bitsandbytes {rel.version}",
            f"bitsandbytes {rel.version}: {rel.avoid}"
            + (f" ({', '.join(ctx.facts.failed_libs)} cannot be loaded)" if ctx.facts.failed_libs else ""),
            fix,
            cmds,
        )
    elif hit:
        fix, cmds = install_fix(ctx, f)
        yield finding(
            "bad-release",
            "FAIL",
            hit[0],
            f"{hit[1].group(0).split(':')[0]}: the CPU library is missing from the installed bitsandbytes "
            "(0.45.4's Linux wheel shipped "
            "without it; or a source checkout was never compiled)",
            fix,
            cmds,
        )


def rule_lib_load_failed(ctx: Context) -> Iterable[Finding]:
    """Any other native-library load failure, quoted, so it is never silently ignored."""
    hit = quote(ctx.text, r"Could not load bitsandbytes native library: (.*)")
    ev = ctx.evidence
    bad = next((c.detail for c in ev.checks if c.name == "bnb_import" and c.status == "FAIL"), None) if ev else None
    if ev and ev.bnb_load_error:  # light probe, judged against the matrix (doctor.loader)
        bad = f"bitsandbytes {ev.bnb}: {ev.bnb_load_error.strip().splitlines()[-1]}"
    if hit or bad:
        fix, cmds = install_fix(ctx, facts(ctx))
        if ev and "BNB_CUDA_VERSION" in ev.env:  # the override chose the library: reinstalling would not help
            fix, cmds = (
                (
                    "unset BNB_CUDA_VERSION so bitsandbytes loads the library for torch.version.cuda, "
                    "then rerun `envbuilder doctor`"
                ),
                (),
            )
        yield finding(
            "bnb-load-failed",
            "FAIL",
            hit[0] if hit else bad or "",
            "bitsandbytes could not load a native library; the more specific findings (if any) say why",
            fix,
            cmds if not hit else (),
        )


def rule_harmless(ctx: Context) -> Iterable[Finding]:
    """Noise that looks like failure: B17's Hub-kernel warning; 0.45.x's CUDA sanity check on a CPU build."""
    hit = quote(ctx.text, r"Failed to load CPU gemm_4bit_forward from kernels-community")
    if hit:
        yield finding(
            "kernels-hub-warning",
            "INFO",
            hit[0],
            "bitsandbytes >= 0.49 tries an optional Hub kernel on AVX512-BF16 CPUs; without the "
            "`kernels` package it logs this and uses its own CPU kernels",
            "nothing to fix (harmless); offline, keep `kernels` uninstalled or set HF_HUB_OFFLINE=1",
        )
    diag = quote(ctx.text, r"Torch not compiled with CUDA enabled")
    if diag and quote(ctx.text, r"CUDA specs: None"):
        plan = plan_fix(ctx.matrix, ctx.facts, "bnb", python=ctx.python)
        yield finding(
            "torch-cpu-build",
            "FAIL",
            diag[0],
            "torch is a CPU-only build (Torch not compiled with CUDA enabled): there is no GPU runtime at all, and "
            "`python -m bitsandbytes` 0.45.x ends its report by calling .cuda()",
            f"for GPU quantization install a CUDA build of torch (and a bitsandbytes for it): {plan.text}; on a "
            f"CPU-only host use bitsandbytes >= {_first_cpu(ctx)} (its CPU backend; the cpu profile)",
            layer="torch-build",
        )


# The layer each rule's findings blame (a rule that blames another passes layer= itself).
LAYER: dict[str, Layer] = {
    "bnb-lib-cuda-mismatch": "bnb-library",
    "windows-dll": "bnb-library",
    "bnb-no-kernel": "bnb-library",
    "mixed-quant-libs": "companion",
    "transformers-min-bnb": "bnb-library",
    "bnb-cuda-version-var": "bnb-library",
    "cpu-lib-undefined-symbol": "bnb-library",
    "cpu-only-method": "torch-build",
    "named-symbol": "bnb-library",
    "old-cudart-scan": "bnb-library",
    "glibc-too-old": "bnb-library",
    "triton-ops": "companion",
    "nf4-only-on-cpu": "bnb-library",
    "no-cpu-4bit": "bnb-library",
    "torch-abi": "gptq-awq-extension",
    "bad-release": "bnb-library",
    "bnb-load-failed": "bnb-library",
    "kernels-hub-warning": "healthy",
}


def layered(rule: Rule, layers: Mapping[str, Layer]) -> Rule:
    """The rule, its findings given the layer the table names for their rule id (where they name none)."""

    def run(ctx: Context) -> Iterable[Finding]:
        for f in rule(ctx):
            yield f if f.layer is not None else replace(f, layer=layers.get(f.rule))

    run.__name__ = run.__qualname__ = rule.__name__
    run.__doc__ = rule.__doc__
    return run


RULES: tuple[Rule, ...] = tuple(
    layered(r, LAYER)
    for r in (
        rule_lib_cuda_mismatch,
        rule_windows_dll,
        rule_no_kernel_image,
        rule_mixed_quant_libs,
        rule_transformers_min_bnb,
        rule_bnb_cuda_version_var,
        rule_cpu_lib_undefined_symbol,
        rule_cpu_only_method,
        rule_named_symbol,
        rule_old_libcudart_scan,
        rule_glibc,
        rule_triton_ops,
        rule_nf4_on_cpu,
        rule_no_cpu_4bit,
        rule_abi_undefined_symbol,
        rule_avoid_release,
        rule_lib_load_failed,
        rule_harmless,
    )
)
