"""Errors outside the stack (the Hub, the user's data, code and LoRA config) and warnings of a working stack.

These findings are INFO: the stack (driver, CUDA, torch, bitsandbytes, the GPTQ/AWQ libraries, companions) is
not what failed, and ``doctor.verdict`` says so with exit 0. Each pattern is a message quoted in a real log in
tests/fixtures/logs (its corpus entry names the thread that confirmed the cause).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from envbuilder.doctor import Context, Finding, Rule, finding
from envbuilder.doctor.logs import quote

__all__ = [
    "BNB_SELF_CHECK",
    "CAST_8BIT",
    "COMPUTE_4BIT",
    "GATED",
    "HEADER",
    "KEY",
    "KWARG",
    "NOT_FOUND",
    "NOT_IDENTIFIER",
    "OTHER_DEVICE",
    "PAD",
    "RESTRICTED",
    "RULES",
    "TARGETS",
    "TRIGGERS",
    "rule_harmless_warnings",
    "rule_hub_access",
    "rule_model_name",
    "rule_user_code",
]

TRIGGERS = (
    "gated repo",
    "401 client error",
    "is restricted",
    "repository not found",
    "valid model identifier",
    "headertoolarge",
    "padding token",
    "keyerror",
    "unexpected keyword argument",
    "target modules",
    "different device",
    "matmul8bitlt",
    "linear4bit",
    "success!",
)

GATED = re.compile(r"Cannot access gated repo for url \S*?huggingface\.co/([\w.-]+/[\w.-]+)|401 Client Error")
RESTRICTED = re.compile(r"Access to model ([\w.-]+/[\w.-]+) is restricted")
NOT_FOUND = re.compile(r"Repository Not Found for url: \S*?/(?:api/)?models/([^\s/]+(?:/[^\s/]+)?)/revision")
NOT_IDENTIFIER = re.compile(r"(\S+) is not a local folder and is not a valid model identifier")
HEADER = re.compile(r"Error while deserializing header: HeaderTooLarge")
PAD = re.compile(r"Asking to pad but the tokenizer does not have a padding token")
KEY = re.compile(r"KeyError: '(\w+)'")
KWARG = re.compile(r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'")
TARGETS = re.compile(r"Target modules (.+?) not found in the base model")
OTHER_DEVICE = re.compile(r"loaded in 8-bit precision on a different device than the one you're training on")
CAST_8BIT = re.compile(r"MatMul8bitLt: inputs will be cast from (?:torch\.)?(\w+) to float16")
COMPUTE_4BIT = re.compile(r"Input type into Linear4bit is torch\.(\w+), but bnb_4bit_compute_type=torch\.float32")
BNB_SELF_CHECK = re.compile(r"^SUCCESS!$")


def _outside(rule: str, seen: str, cause: str, fix: str) -> Finding:
    return finding(rule, "INFO", seen, cause, fix, layer="outside")


def _note(rule: str, seen: str, cause: str, fix: str) -> Finding:
    return finding(rule, "INFO", seen, cause, fix, layer="healthy", all_clear=True)


def rule_hub_access(ctx: Context) -> Iterable[Finding]:
    """A gated model without a token that was granted access (HTTP 401)."""
    hit = quote(ctx.text, GATED) or quote(ctx.text, RESTRICTED)
    if hit:
        named = quote(ctx.text, RESTRICTED) or quote(ctx.text, GATED)
        model = next((g for g in (named[1].groups() if named else ()) if g), "the model")
        yield _outside(
            "hub-gated-model",
            hit[0],
            f"{model} is a gated Hugging Face repository and the request was not authenticated (HTTP 401)",
            "log in with an account that was granted access (`hf auth login`, formerly `huggingface-cli login`, or "
            "HF_TOKEN), or use a non-gated copy of the model",
        )


def rule_model_name(ctx: Context) -> Iterable[Finding]:
    """A model name that is neither a local path nor a Hub repository."""
    hit = quote(ctx.text, NOT_FOUND)
    if hit:
        yield _outside(
            "hub-repository-not-found",
            hit[0],
            f"repository not found: {hit[1].group(1)} is neither a local file the code can see nor a Hub repository "
            "(HTTP 404), so from_pretrained looked it up on the Hub",
            "point the code at the model actually downloaded: its local path, or its full Hub id (namespace/name)",
        )
    hit = quote(ctx.text, NOT_IDENTIFIER)
    if hit:
        yield _outside(
            "hub-not-a-model-identifier",
            hit[0],
            f"{hit[1].group(1)} is neither a local folder nor a valid model identifier on the Hub (a Hub id has a "
            "namespace: owner/name)",
            "use the full Hub model id (owner/name) or the path of a local folder",
        )
    hit = quote(ctx.text, HEADER)
    if hit:
        yield _outside(
            "damaged-model-file",
            hit[0],
            "safetensors cannot read the file's header: the model file is damaged or a Git LFS pointer (cloned "
            "without git-lfs), an incomplete download",
            "download the model again (`hf download OWNER/NAME`, or git clone with git-lfs installed) and check the "
            "file sizes against the Hub's",
        )


def rule_user_code(ctx: Context) -> Iterable[Finding]:
    """Errors of the training script, its dataset or its LoRA configuration."""
    hit = quote(ctx.text, PAD)
    if hit:
        yield _outside(
            "tokenizer-pad-token",
            hit[0],
            "the tokenizer has no pad token and the script asks it to pad: tokenizer setup in the user's code",
            "give the tokenizer a pad token in the script: tokenizer.pad_token = tokenizer.eos_token (or "
            "tokenizer.add_special_tokens({'pad_token': '[PAD]'}))",
        )
    hit = quote(ctx.text, KEY)
    if hit and ("datasets" in ctx.text or "dataset_text_field" in ctx.text):
        key = hit[1].group(1)
        yield _outside(
            "dataset-column",
            hit[0],
            f"the dataset has no '{key}' column, which the trainer reads (dataset_text_field): a dataset choice",
            f"use a dataset that has the '{key}' column, or point dataset_text_field at a column it has",
        )
    hit = quote(ctx.text, KWARG)
    if hit:
        cls, arg = hit[1].group(1), hit[1].group(2)
        trl = ctx.facts.packages.get("trl")
        where = f"trl {trl}" if trl else "this trl release" if cls.startswith("SFT") else "this library release"
        yield _outside(
            "api-changed",
            hit[0],
            f"{cls} no longer takes '{arg}' in {where} (an API change the user's code predates"
            + ("; trl moved it to SFTConfig)" if cls.startswith("SFT") else ")"),
            f"pass {arg} in SFTConfig(...) instead of SFTTrainer, or pin the trl release the code was written for"
            if cls.startswith("SFT")
            else f"drop '{arg}' (see the release notes), or pin the release the code was written for",
        )
    hit = quote(ctx.text, TARGETS)
    if hit:
        yield _outside(
            "lora-target-modules",
            hit[0],
            f"the LoRA target modules {hit[1].group(1)} are not in this model (another architecture's names)",
            "set LoraConfig(target_modules=[...]) to this model's module names (print(model) shows them), or leave "
            "target_modules unset so PEFT picks them",
        )
    hit = quote(ctx.text, OTHER_DEVICE)
    if hit:
        yield _outside(
            "8bit-model-device",
            hit[0],
            "each training process uses another GPU than the one its 8-bit model was placed on: the device_map "
            "in the training code puts every rank's model on one device",
            "load the model on each process's own GPU: device_map={'': torch.cuda.current_device()} (or the "
            "training tool's release that does this)",
        )


def rule_harmless_warnings(ctx: Context) -> Iterable[Finding]:
    """Warnings of a working bitsandbytes: the stack looks fine."""
    hit = quote(ctx.text, CAST_8BIT)
    if hit:
        dtype = hit[1].group(1)
        yield _note(
            "int8-matmul-cast",
            hit[0],
            f"the stack looks fine: bitsandbytes' int8 matmul computes in float16 and casts {dtype} inputs (a "
            "warning, not an error)",
            "nothing broken; with 8-bit, train in fp16 (--fp16) rather than bf16 to avoid the cast"
            if dtype == "bfloat16"
            else "nothing to fix; load the model with torch_dtype=torch.float16 to silence it",
        )
    hit = quote(ctx.text, COMPUTE_4BIT)
    if hit:
        yield _note(
            "4bit-compute-dtype",
            hit[0],
            "the stack looks fine: 4-bit layers compute in float32 by default, which is only slow",
            f"nothing broken; for speed set bnb_4bit_compute_dtype=torch.{hit[1].group(1)} in BitsAndBytesConfig",
        )
    hit = quote(ctx.text, BNB_SELF_CHECK)
    if hit and "CUDA function is callable" in ctx.text:
        yield _note(
            "bnb-self-check-passed",
            hit[0],
            "the stack looks fine: bitsandbytes' own check imported the library and called a CUDA function",
            "nothing to fix in the bitsandbytes/CUDA stack",
        )


RULES: tuple[Rule, ...] = (rule_hub_access, rule_model_name, rule_user_code, rule_harmless_warnings)
