"""GPTQ/AWQ: compiled extensions built against another torch, kernels that did not install, and transformers'
quantizers refusing an environment ("requires optimum", "requires gptqmodel", an AWQ checkpoint where no AWQ
kernel is installed), answered with the profile whose environment loads that format.

Which package owns an extension module is the matrix's (quant.toml ``[[extension]]``); which profile
loads a format is the matrix's (``[[profile.formats]]``, issue 18) where it says so, and the quantizers'
messages are the matrix's verbatim ``[[quantizer]].errors`` where it has them. Patterns here were read off the
real logs in tests/fixtures/logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from packaging.version import InvalidVersion, Version

from envbuilder.doctor import Context, Evidence, Finding, Rule, finding
from envbuilder.doctor.logs import quote
from envbuilder.doctor.plan import plan_fix
from envbuilder.model.matrix import Matrix
from envbuilder.model.types import ProfileName as Profile
from envbuilder.rules.formats import quantizer_errors

__all__ = [
    "AWQ_CUDART",
    "AWQ_EXT_UNDEFINED",
    "AWQ_KERNELS",
    "CT_TOO_OLD",
    "DLL_IMPORT",
    "EXT_NOT_INSTALLED",
    "FALLBACK_LOADER",
    "GPU_REQUIRED",
    "QUANT_PATH",
    "REQUIRES",
    "RULES",
    "TORCH_SYMBOL",
    "TRIGGERS",
    "loading_profile",
    "rule_awq_cudart",
    "rule_awq_kernels",
    "rule_compressed_tensors",
    "rule_extension_abi",
    "rule_extension_not_installed",
    "rule_quantizer_requires",
]

TRIGGERS = (
    "undefined symbol",
    "dll load failed",
    "extension not installed",
    "awq",
    "gptq",
    "exllama",
    "requires optimum",
    "requires gptqmodel",
    "requires auto",
    "quantized model requires",
    "gpu is required",
    "compressed_tensors",
    "libcudart.so",
)

# torch's C++ namespaces as they appear mangled: c10::, at::, torch:: (and const members of c10).
TORCH_SYMBOL = re.compile(r"([\w.+-]+\.(?:so|pyd)): undefined symbol: (_ZN[KR]?(?:3c10|2at|5torch)\w*)")
# A GPTQ/AWQ package's extension (another torch extension is rules_cuda.rule_torch_extension_abi's).
QUANT_PATH = re.compile(r"(?i)awq|gptq|exllama")
DLL_IMPORT = re.compile(r"DLL load failed while importing (\w+)")
EXT_NOT_INSTALLED = re.compile(r"CUDA extension not installed")
AWQ_EXT_UNDEFINED = re.compile(r"name '(awq\w*_ext)' is not defined")
AWQ_KERNELS = re.compile(
    r"AWQ kernels could not be loaded|auto-awq kernels is needed to be installed|"
    r"(?:No module named|cannot import name \S+ from) '(awq_ext|awq_inference_engine)'"
)
AWQ_CUDART = re.compile(r"(libcudart\.so\.\d+): cannot open shared object file")
GPU_REQUIRED = re.compile(r"GPU is required to (?:run|quantize or run) (AWQ|GPTQ)?\s*quantize")
# transformers' quantizers: "Loading a GPTQ quantized model requires optimum", older "Loading GPTQ quantized
# model requires optimum library", "Loading an AWQ quantized model requires auto-awq library" / "gptqmodel".
REQUIRES = re.compile(
    r"Loading (?:an? )?(GPTQ|AWQ) quantized model requires (?:the )?([\w-]+)(?: library)?"
    r"(?:[^\n]*? and ([\w-]+) library)?",
    re.IGNORECASE,
)
CT_TOO_OLD = re.compile(r"cannot import name '(\w+)' from 'compressed_tensors")
# Where the matrix does not (yet) say which profile loads a format: gptq and awq checkpoints load in the gptq
# profile (transformers 5.x loads both through gptqmodel: matrices/profiles.toml, issue 18).
FALLBACK_LOADER: dict[str, Profile] = {"gptq": "gptq", "awq": "gptq"}


def _v(text: str | None) -> Version | None:
    try:
        return Version(text.split("+", 1)[0]) if text else None
    except InvalidVersion:
        return None


def loading_profile(matrix: Matrix, fmt: str) -> Profile:
    """The profile whose environment loads checkpoints of ``fmt`` (the matrix's ``formats`` rows decide)."""
    loads = [p.name for p in matrix.profiles for row in p.formats if row.format == fmt and row.load]
    named = [name for name in loads if name == fmt]  # the profile named after the format comes first (awq: AWQ)
    return (named or loads)[0] if loads else FALLBACK_LOADER.get(fmt, "gptq")


def _owner(matrix: Matrix, module: str) -> str:
    return matrix.extension_owner(module) or "its package"


def _kept(ev: Evidence) -> str:
    return f"the installed torch {ev.torch}" if ev.torch else "the installed torch"


def rule_extension_abi(ctx: Context) -> Iterable[Finding]:
    """A prebuilt extension whose torch C++ symbols (c10::, at::, torch::) the installed torch lacks."""
    hit = quote(ctx.text, TORCH_SYMBOL)
    dll = quote(ctx.text, DLL_IMPORT)
    ev = ctx.facts
    if hit and not (
        ctx.matrix.extension_owner(re.split(r"\.cpython|\.pyd|\.so", hit[1].group(1).split("/")[-1])[0])
        or QUANT_PATH.search(hit[0])
    ):
        hit = None
    if hit:
        module = re.split(r"\.cpython|\.pyd|\.so", hit[1].group(1).split("/")[-1])[0]
        space = {"3": "c10::", "2": "at::", "5": "torch::"}[hit[1].group(2).lstrip("_ZNKR")[0]]
        seen = hit[0]
        how = f"its {space} symbol {hit[1].group(2)[:40]} is missing from {_kept(ev)}"
    elif dll and ctx.matrix.extension_owner(dll[1].group(1)):
        module, seen = dll[1].group(1), dll[0]
        how = f"Windows cannot load it with {_kept(ev)} (its DLL links torch's own)"
    else:
        return
    owner = _owner(ctx.matrix, module)
    stated = re.search(r"(?i)(?:compiled|built) (?:for|against) torch (\d+\.\d+\.\d+)", ctx.text)
    built = f" (the log says it was built against torch {stated.group(1)})" if stated else _built_for(ctx.matrix, owner)
    yield finding(
        "extension-torch-abi",
        "FAIL",
        seen,
        f"{module} ({owner}) was compiled against another torch than {_kept(ev)}{built}: {how}; torch's C++ ABI "
        "changes with every minor release",
        _match_fix(ctx, owner),
        layer="gptq-awq-extension",
    )


def _built_for(matrix: Matrix, owner: str) -> str:
    """The torch range the matrix records for the package's prebuilt wheels (auto-gptq 0.7.1: >=2.2.1,<2.3)."""
    rows = [q for q in matrix.quant if q.name == owner and q.torch is not None]
    return f" (the matrix's {owner} {rows[0].version} wheels need torch {rows[0].torch})" if rows else ""


def _match_fix(ctx: Context, owner: str) -> str:
    """Matching builds: the wheel made for this torch, a source build against it, or the maintained profile."""
    ev = ctx.facts
    fmt = "awq" if "awq" in owner else "gptq"
    profile = loading_profile(ctx.matrix, fmt)
    plan = plan_fix(ctx.matrix, ev, profile, python=ctx.python).text
    source = {
        "autoawq-kernels": "build autoawq_kernels from source against it (git clone "
        "https://github.com/casper-hansen/AutoAWQ_kernels && pip install -e . --no-build-isolation)",
        "autoawq": "reinstall autoawq with kernels built for it (INSTALL_KERNELS=1 pip install "
        "git+https://github.com/casper-hansen/AutoAWQ.git --no-build-isolation)",
    }.get(
        owner,
        f"rebuild {owner} from source against it (pip install {owner} --no-binary {owner} "
        "--no-build-isolation, with the CUDA toolkit of torch's CUDA)",
    )
    torch = f"torch {ev.torch}" if ev.torch else "the installed torch"
    return (
        f"install the {owner} wheel built for {torch}, or keep torch at the version the wheel was built for, or "
        f"{source}; {owner} is end of life: the {profile} profile loads {fmt.upper()} checkpoints with "
        f"maintained kernels: {plan}"
    )


def rule_awq_kernels(ctx: Context) -> Iterable[Finding]:
    """autoawq's kernels (autoawq-kernels' awq_ext) did not import: missing, or built for another torch."""
    hit = quote(ctx.text, AWQ_EXT_UNDEFINED) or quote(ctx.text, AWQ_KERNELS)
    if not hit or quote(ctx.text, TORCH_SYMBOL):
        return
    ev = ctx.facts
    kernels = ev.packages.get("autoawq-kernels")
    awq = ev.packages.get("autoawq")
    what = f"autoawq-kernels {kernels}" if kernels else "the autoawq-kernels wheel"
    yield finding(
        "awq-kernels-missing",
        "FAIL",
        hit[0],
        f"autoawq{' ' + awq if awq else ''} found no CUDA kernels: its extension awq_ext (from {what}) did not "
        f"import with {_kept(ev)}, because the prebuilt kernels wheel was built for another torch or CUDA",
        _match_fix(ctx, "autoawq-kernels"),
        layer="gptq-awq-extension",
    )


def rule_awq_cudart(ctx: Context) -> Iterable[Finding]:
    """autoawq's wheel built for one CUDA major imported under a torch of another (libcudart.so.12 missing)."""
    hit = quote(ctx.text, AWQ_CUDART)
    if not hit or not re.search(r"(?i)\bawq\b|from awq|autoawq", ctx.text):
        return
    lib = hit[1].group(1)
    major = lib.rsplit(".", 1)[1]
    ev = ctx.facts
    torch = f"torch {ev.torch} (CUDA {ev.torch_cuda})" if ev.torch_cuda else "the installed torch (another CUDA)"
    yield finding(
        "awq-cuda-major",
        "FAIL",
        hit[0],
        f"the autoawq wheel was built for CUDA {major} and asks for {lib}, which {torch} does not bring",
        f"install the autoawq build made for torch's CUDA (autoawq's releases publish one per CUDA), so the "
        f"extension and torch share a CUDA runtime; or the maintained path: {_match_fix(ctx, 'autoawq')}",
        layer="gptq-awq-extension",
    )


def rule_extension_not_installed(ctx: Context) -> Iterable[Finding]:
    """auto-gptq's "CUDA extension not installed": it falls back to slow or no kernels (a build failed, or the
    wheel's extension does not load with this torch)."""
    hit = quote(ctx.text, EXT_NOT_INSTALLED)
    if not hit:
        return
    yield finding(
        "gptq-extension-not-installed",
        "WARN",
        hit[0],
        "auto-gptq's CUDA extension is not installed: its build failed or its prebuilt extension does not load "
        "with this torch, so it runs without its CUDA kernels",
        _match_fix(ctx, "auto-gptq"),
        layer="gptq-awq-extension",
    )


def rule_quantizer_requires(ctx: Context) -> Iterable[Finding]:
    """transformers' GPTQ/AWQ quantizers refuse the environment: the profile that loads the format is the fix."""
    ev = ctx.facts
    gpu = quote(ctx.text, GPU_REQUIRED)
    if gpu:
        fmt = (gpu[1].group(1) or ("AWQ" if "awq" in ctx.text.lower() else "GPTQ")).upper()
        yield finding(
            "quantized-needs-gpu",
            "FAIL",
            gpu[0],
            f"the {fmt} kernels of {'autoawq' if fmt == 'AWQ' else 'auto-gptq'} need a CUDA GPU and this machine has "
            "none, so the checkpoint cannot run here",
            f"run {fmt} checkpoints on a machine with a CUDA GPU (envbuilder create --profile "
            f"{loading_profile(ctx.matrix, fmt.lower())} --gpu sm_XX there), or IPEX's AWQ path on an Intel CPU; "
            "skip them on this target",
            layer="platform",
        )
        return
    hit = quote(ctx.text, REQUIRES)
    found = (hit[0], hit[1].group(1).lower(), [m for m in hit[1].groups()[1:] if m]) if hit else _matrix_message(ctx)
    if not found:
        return
    seen, fmt, missing = found
    profile = loading_profile(ctx.matrix, fmt)
    plan = plan_fix(ctx.matrix, ev, profile, python=ctx.python)
    have = ", ".join(f"{p} {ev.packages[p]}" for p in ("transformers", "gptqmodel", "optimum") if p in ev.packages)
    name = fmt.upper() if fmt in ("gptq", "awq") else fmt
    yield finding(
        "quantizer-requires",
        "FAIL",
        seen,
        f"transformers' {name} quantizer needs {' and '.join(missing)}, which this environment lacks"
        + (f" ({have})" if have else "")
        + f": it is not an environment that loads {name} checkpoints",
        f"the {profile} profile loads {name} checkpoints (envbuilder create --profile {profile}): {plan.text}",
        plan.commands,
        layer="companion",
    )


def _matrix_message(ctx: Context) -> tuple[str, str, list[str]] | None:
    """(the line, the format, the packages it needs) for a quantizer message the matrix records verbatim
    (``[[quantizer]].errors``, read from transformers' wheels)."""
    for q, message, head in quantizer_errors(ctx.text, ctx.matrix):
        line = quote(ctx.text, re.escape(head))
        named = [p for p in (*q.requires, *q.one_of) if p in message] or list(q.requires)
        if line and named:
            return line[0], q.method, named
    return None


def rule_compressed_tensors(ctx: Context) -> Iterable[Finding]:
    """llmcompressor newer than the compressed-tensors installed (a name it imports is missing)."""
    hit = quote(ctx.text, CT_TOO_OLD)
    if not hit:
        return
    ev = ctx.facts
    llmc = ev.packages.get("llmcompressor")
    pinned = [q for q in ctx.matrix.quant if q.name == "llmcompressor" and q.version == llmc]
    want = pinned[0].requires.get("compressed-tensors") if pinned else None
    plan = plan_fix(ctx.matrix, ev, "awq", names=("compressed-tensors", "llmcompressor"), python=ctx.python)
    yield finding(
        "compressed-tensors-too-old",
        "FAIL",
        hit[0],
        f"llmcompressor{' ' + llmc if llmc else ''} needs a newer compressed-tensors than the one installed, which "
        f"lacks {hit[1].group(1)}",
        f"install the compressed-tensors release llmcompressor pins ({want or 'its exact pin'}): pip install -U "
        f"compressed-tensors; or the awq profile's plan: {plan.text}",
        layer="companion",
    )


RULES: tuple[Rule, ...] = (
    rule_quantizer_requires,
    rule_extension_abi,
    rule_awq_cudart,
    rule_awq_kernels,
    rule_compressed_tensors,
    rule_extension_not_installed,
)
