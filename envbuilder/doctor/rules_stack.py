"""Companions (transformers, accelerate, peft), memory (told apart by where it ran out), and compilers
(attributed to the package being built). Patterns were read off the real logs in tests/fixtures/logs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from envbuilder.doctor import Context, Finding, Rule, finding
from envbuilder.doctor.logs import max_memory_for, quote
from envbuilder.doctor.plan import plan_fix

__all__ = [
    "KILLED",
    "LOADING",
    "MSVC",
    "MULTI_DEVICE_8BIT",
    "NO_LINEAR4BIT",
    "OLD_AVAILABILITY",
    "OOM",
    "RULES",
    "TRAINING",
    "TRIGGERS",
    "rule_accelerate_multi_device",
    "rule_compiler",
    "rule_out_of_memory",
    "rule_peft_old_bnb",
    "rule_transformers_availability",
]

TRIGGERS = (
    "requires accelerate",
    "multiple devices",
    "linear4bit",
    "outofmemoryerror",
    "out of memory",
    "killed",
    "visual c++",
    "visual studio",
    "build tools",
    "wheel",
    # where an out-of-memory happened: frames of loading and of a training step
    "from_pretrained",
    "load_pretrained_model",
    "load_state_dict",
    "quantize_4bit",
    "loading checkpoint shards",
    "load_in_",
    "dispatch_model",
    "backward(",
    "micro_batch",
    "per_device_train_batch_size",
    "optimizer.step",
    "training_step",
    "trainer.train(",
    "generator",
)

OLD_AVAILABILITY = re.compile(r"Using `load_in_(?:8|4)bit=True` requires Accelerate")
MULTI_DEVICE_8BIT = re.compile(r"loaded in 8-bit precision on multiple devices")
NO_LINEAR4BIT = re.compile(r"module 'bitsandbytes\.nn' has no attribute 'Linear4bit'")
OOM = re.compile(r"OutOfMemoryError|CUDA out of memory")
# Frames and lines that place an out-of-memory in loading (weights being read, quantized or dispatched).
LOADING = re.compile(
    r"from_pretrained|_load_pretrained_model|load_state_dict|quantize_4bit|Loading checkpoint shards|"
    r"load_in_4bit|load_in_8bit|_load_state_dict_into|dispatch_model"
)
TRAINING = re.compile(
    r"backward\(|micro_batch|per_device_train_batch_size|optimizer\.step|training_step|trainer\.train\("
)
KILLED = re.compile(r"(?i)Loading checkpoint shards:[^\n]*\bkilled\b|^Killed$|\bwith message `killed`")
MSVC = re.compile(
    r"Microsoft Visual C\+\+ 14\.0 or greater is required|requires Microsoft Visual Studio 20\d\d|"
    r"could not get a working generator"
)


def rule_transformers_availability(ctx: Context) -> Iterable[Finding]:
    """transformers 4.x's "load_in_8bit=True requires Accelerate ... and the latest bitsandbytes" (both may be
    installed: its check also fails on a transformers that does not accept them, or where CUDA is absent)."""
    hit = quote(ctx.text, OLD_AVAILABILITY)
    if not hit or ctx.facts.platform == "macos-arm64":
        return
    ev = ctx.facts
    fix = plan_fix(ctx.matrix, ev, "bnb", names=("transformers", "accelerate", "bitsandbytes"), python=ctx.python)
    yield finding(
        "transformers-availability",
        "FAIL",
        hit[0],
        "the installed transformers does not accept the installed accelerate/bitsandbytes pair (or sees no CUDA): "
        "its availability check fails with this wording even when both are installed",
        "check that torch sees the GPU (python -c 'import torch; print(torch.cuda.is_available())'), then install "
        f"transformers, accelerate and bitsandbytes releases that match each other: {fix.text}",
        fix.commands,
        layer="companion",
    )


def rule_accelerate_multi_device(ctx: Context) -> Iterable[Finding]:
    """Old accelerate refused to train an 8-bit model dispatched over several GPUs."""
    hit = quote(ctx.text, MULTI_DEVICE_8BIT)
    if not hit:
        return
    acc = ctx.facts.packages.get("accelerate")
    fix = plan_fix(ctx.matrix, ctx.facts, "bnb", names=("accelerate",), python=ctx.python)
    yield finding(
        "accelerate-8bit-multi-device",
        "FAIL",
        hit[0],
        f"the installed accelerate{' ' + acc if acc else ''} refuses to train an 8-bit model dispatched over several "
        "GPUs; huggingface/accelerate#1523 lifted that check",
        f"upgrade accelerate: pip install --upgrade accelerate ({fix.text})",
        fix.commands,
        layer="companion",
    )


def rule_peft_old_bnb(ctx: Context) -> Iterable[Finding]:
    """peft imports bnb.nn.Linear4bit whenever bitsandbytes imports; releases before 4-bit have none."""
    hit = quote(ctx.text, NO_LINEAR4BIT)
    if not hit:
        return
    on_line = re.findall(r"\d+\.\d+\.\d+", hit[0])
    bnb = on_line[-1] if on_line else ctx.facts.bnb
    fix = plan_fix(ctx.matrix, ctx.facts, "bnb", names=("bitsandbytes",), keep_torch=True, python=ctx.python)
    first = ctx.matrix.bnb_feature_since("linear4bit")  # bitsandbytes.toml [[feature]]
    came = f"bnb.nn.Linear4bit came in {first}" if first else "it has no bnb.nn.Linear4bit"
    yield finding(
        "peft-needs-4bit-bnb",
        "FAIL",
        hit[0],
        f"bitsandbytes {bnb or '(this release)'} predates 4-bit ({came}), and this "
        "peft release defines its 4-bit classes whenever bitsandbytes imports",
        f"install bitsandbytes >= {first}: {fix.text}" if first else f"install a 4-bit bitsandbytes: {fix.text}",
        fix.commands,
        layer="companion",
    )


def rule_out_of_memory(ctx: Context) -> Iterable[Finding]:
    """Out of memory, told apart by where: quantized loading (VRAM headroom), a training step (batch size), or
    the host's RAM while loading shards (the kernel's OOM killer)."""
    killed = quote(ctx.text, KILLED)
    if killed and LOADING.search(ctx.text):
        yield finding(
            "host-ram-while-loading",
            "FAIL",
            killed[0],
            "the process was killed while loading checkpoint shards: the host ran out of RAM (the kernel's OOM "
            "killer), not GPU memory and not a training step",
            "give the machine more memory (RAM or swap), or load with less CPU memory: low_cpu_mem_usage=True, "
            "device_map='auto', a checkpoint with smaller shards",
            layer="memory",
        )
        return
    hit = quote(ctx.text, OOM)
    if not hit:
        return
    vram = ctx.facts.vram_gib
    if LOADING.search(ctx.text) and not TRAINING.search(_after(ctx.text, hit[0])):
        if vram:
            budget = f"max_memory={{0: '{max_memory_for(vram)}'}}"
            note = f" (the card has {vram:.2f} GiB; this leaves ~15% for the conversion buffers)"
        else:
            budget, note = "max_memory={0: '<85% of the card>GiB'}", " (the log names no VRAM size: give 85% of it)"
        yield finding(
            "oom-4bit-load",
            "FAIL",
            hit[0],
            "the GPU ran out of memory while loading: with load_in_4bit weights pass through 16-bit buffers before "
            "they are quantized, so a model that fits in 4-bit can still overflow",
            f"from_pretrained(..., device_map='auto', {budget}){note}; free other processes on the GPU; or save a "
            "pre-quantized 4-bit checkpoint once and load that",
            layer="memory",
        )
        return
    yield finding(
        "oom-training-step",
        "FAIL",
        hit[0],
        "the GPU ran out of memory during a step, not while loading: the activations of this batch size need more "
        "than the card" + (f"'s {vram:.2f} GiB" if vram else "") + " holds",
        "lower the batch size (micro_batch_size / per_device_train_batch_size) and raise gradient accumulation; "
        "gradient checkpointing or a shorter max sequence length also help",
        layer="memory",
    )


def _after(text: str, line: str) -> str:
    """The text around the quoted line (training frames show before or after the OOM line)."""
    at = text.find(line)
    return text[max(0, at - 4000) : at + 4000] if at >= 0 else text


def rule_compiler(ctx: Context) -> Iterable[Finding]:
    """MSVC / Visual Studio required: pip is building some package from source; name that package."""
    hit = quote(ctx.text, MSVC)
    if not hit:
        return
    building = ctx.facts.building
    pkg = building[-1] if building else "a package"
    if "bitsandbytes" in pkg:
        return  # rules_bnb: before 0.43 bitsandbytes had no Windows wheel
    vs = "Visual Studio 2022" if "2022" in ctx.text or "generator" in hit[0] else "Visual Studio"
    yield finding(
        "compiler-missing",
        "FAIL",
        hit[0],
        f"pip is building {pkg} from source (no wheel for this Python/platform) and finds no MSVC C++ compiler; "
        "the Visual C++ redistributable is a runtime, not a compiler",
        f"install the Microsoft C++ build tools ({vs} Build Tools with the 'Desktop development with C++' "
        f"workload: winget install Microsoft.VisualStudio.2022.BuildTools), open a new terminal and retry; or "
        f"install a prebuilt {pkg} wheel for this Python",
        layer="build-toolchain",
    )


RULES: tuple[Rule, ...] = (
    rule_transformers_availability,
    rule_accelerate_multi_device,
    rule_peft_old_bnb,
    rule_out_of_memory,
    rule_compiler,
)
