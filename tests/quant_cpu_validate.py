"""Validate a GPTQ/AWQ library on the CPU, inside the environment under test; prints one JSON document.

Standalone on purpose (like ``envbuilder/smoke/check.py``): the standard library and the environment's own
packages only, so it runs in a venv that holds gptqmodel, autoawq or llmcompressor and nothing of envbuilder:

    python tests/quant_cpu_validate.py --library gptqmodel [--portable]
    python tests/quant_cpu_validate.py --library autoawq
    python tests/quant_cpu_validate.py --library llmcompressor

Each check is ``{name, status, detail, seconds, evidence}`` with status OK, FAIL or SKIP; ``ok`` is false
when any check FAILs. Library chatter goes to stderr; stdout carries the JSON document alone.

What is checked, and the bounds (observed values on this CPU host, 2026-11-24, in brackets):
  gptqmodel: GPTQ (gptqmodel.quantization.gptq.GPTQ, 4-bit, group 128, sym) on a 256x256 nn.Linear with 1024
    calibration rows must beat round-to-nearest on those rows (output MSE, GPTQ <= RTN); the result packed
    into gptqmodel's pure-torch kernel ``TorchLinear`` and run forward in fp16 and bf16:
    max |y_q - y_fp32| / max |y_fp32| <= 0.25 [0.06]; against the dequantized GPTQ weights <= 0.02 [0.005].
    ``--portable`` turns off the two things that compile at first use on CPU (the ``pack_block_cpu`` C++
    extension, via GPTQMODEL_DISABLE_PACK_EXT=1, and torch.compile/inductor, via TORCH_COMPILE_DISABLE=1).
  autoawq: import; AWQ's pseudo-quantizer and WQLinear_GEMM forward where they run on CPU.
  llmcompressor: import; a one-shot W4A16 (QuantizationModifier, RTN) on a tiny Llama built on the spot.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shutil
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

SCHEMA = "envbuilder.quant-cpu/1"
BOUND_VS_FP32 = 0.25
BOUND_VS_DEQUANT = 0.02
IN_FEATURES = OUT_FEATURES = 256
GROUP_SIZE = 128
PACKAGES = (
    "torch",
    "numpy",
    "transformers",
    "accelerate",
    "gptqmodel",
    "autoawq",
    "autoawq-kernels",
    "auto-gptq",
    "llmcompressor",
    "compressed-tensors",
    "torchao",
    "triton",
    "datasets",
)
Check = dict[str, Any]
State = dict[str, Any]


def _check(name: str, status: str, detail: str, **evidence: Any) -> Check:
    return {"name": name, "status": status, "detail": detail, "seconds": 0.0, "evidence": evidence}


def _run(name: str, fn: Callable[[State], Check], state: State) -> Check:
    """Run one check; a prerequisite that failed skips it; an exception becomes a FAIL with its traceback."""
    missing = [need for need in state.get("needs", {}).get(name, ()) if need not in state["passed"]]
    if missing:
        return _check(name, "SKIP", f"skipped: check '{missing[0]}' did not pass")
    start = time.perf_counter()
    try:
        result = fn(state)
    except Exception as exc:
        last = (str(exc).strip().splitlines() or [""])[-1][:400]
        tail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[-8:])[-4000:]
        result = _check(name, "FAIL", f"{type(exc).__name__}: {last}", error=tail)
    result["name"] = name
    result["seconds"] = round(time.perf_counter() - start, 3)
    if result["status"] == "OK":
        state["passed"].add(name)
    return result


def _environment() -> dict[str, Any]:
    """Interpreter, package versions and the compilers a JIT build would look for."""
    from importlib import metadata

    packages: dict[str, str] = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            packages[name] = metadata.version(name)
    env_keys = (
        "CUDA_HOME",
        "CUDA_PATH",
        "GPTQMODEL_TORCH_EXTENSIONS_DIR",
        "GPTQMODEL_DISABLE_PACK_EXT",
        "TORCH_COMPILE_DISABLE",
        "CUDA_VISIBLE_DEVICES",
    )
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
        "tools": {tool: shutil.which(tool) for tool in ("nvcc", "c++", "g++", "gcc", "ninja")},
        "env": {k: os.environ[k] for k in env_keys if k in os.environ},
    }


def _rel_err(got: Any, want: Any) -> float:
    return float((got - want).abs().max() / want.abs().max())


# --------------------------------------------------------------------------- gptqmodel


def _gptq_import(state: State) -> Check:
    import gptqmodel
    import torch

    state["torch"] = torch
    cuda_home = None
    with contextlib.suppress(ImportError):
        from torch.utils.cpp_extension import CUDA_HOME as cuda_home
    return _check(
        "",
        "OK",
        f"gptqmodel {gptqmodel.__version__} with torch {torch.__version__}",
        version=gptqmodel.__version__,
        torch=torch.__version__,
        torch_cuda_available=torch.cuda.is_available(),
        torch_cpp_extension_cuda_home=cuda_home,
    )


def _rtn(weight: Any, bits: int, group: int) -> Any:
    """Symmetric round-to-nearest per group of input columns: the baseline GPTQ must beat."""
    torch = __import__("torch")
    maxq = 2**bits - 1
    w = weight.reshape(weight.shape[0], -1, group)
    scale = (w.abs().amax(dim=-1, keepdim=True) * 2 / maxq).clamp(min=1e-8)
    zero = (maxq + 1) / 2
    q = torch.clamp(torch.round(w / scale) + zero, 0, maxq)
    return ((q - zero) * scale).reshape_as(weight)


def _gptq_quantize(state: State) -> Check:
    from gptqmodel import QuantizeConfig
    from gptqmodel.quantization.gptq import GPTQ
    from torch import nn

    torch = state["torch"]
    torch.manual_seed(0)
    layer = nn.Linear(IN_FEATURES, OUT_FEATURES, bias=True)
    original = nn.Linear(IN_FEATURES, OUT_FEATURES, bias=True)
    original.load_state_dict(layer.state_dict())
    calib = torch.randn(1024, IN_FEATURES)
    gptq = GPTQ(layer, QuantizeConfig(bits=4, group_size=GROUP_SIZE, sym=True, desc_act=False))
    gptq.quantizer.configure(perchannel=True)  # what gptqmodel's own GPTQ processor does before quantize()
    with torch.no_grad():
        gptq.add_batch(calib, layer(calib))
    qweight, scale, zero, g_idx, _dur, avg_loss, damp, nsamples = gptq.quantize()
    layer.weight.data = qweight.to(layer.weight.dtype)
    with torch.no_grad():
        want = original(calib)
        mse_gptq = float(((layer(calib) - want) ** 2).mean())
        rtn = nn.functional.linear(calib, _rtn(original.weight, 4, GROUP_SIZE), original.bias)
        mse_rtn = float(((rtn - want) ** 2).mean())
    state.update(original=original, dequant=layer, scale=scale, zero=zero, g_idx=g_idx)
    status = "OK" if mse_gptq <= mse_rtn else "FAIL"
    return _check(
        "",
        status,
        f"GPTQ 4-bit g{GROUP_SIZE} on {IN_FEATURES}x{OUT_FEATURES}: output MSE "
        f"{mse_gptq:.3g} vs round-to-nearest {mse_rtn:.3g} (must be <=)",
        mse_gptq=mse_gptq,
        mse_rtn=mse_rtn,
        avg_loss=float(avg_loss),
        damp=float(damp),
        nsamples=int(nsamples),
        scales_shape=list(scale.shape),
    )


def _extension_dirs() -> list[str]:
    from pathlib import Path

    root = os.environ.get("GPTQMODEL_TORCH_EXTENSIONS_DIR") or str(Path.home() / ".cache/gptqmodel/torch_extensions")
    base = Path(root)
    return sorted(str(p.relative_to(base)) for p in base.glob("*/*") if p.is_dir()) if base.is_dir() else []


def _gptq_pack(state: State) -> Check:
    from gptqmodel.nn_modules.qlinear.torch import TorchLinear

    torch = state["torch"]
    before = _extension_dirs()
    qlayer = TorchLinear(
        bits=4,
        group_size=GROUP_SIZE,
        sym=True,
        desc_act=False,
        in_features=IN_FEATURES,
        out_features=OUT_FEATURES,
        bias=True,
    )
    qlayer.pack(state["dequant"], state["scale"], state["zero"], state["g_idx"])
    qlayer.post_init()  # also wraps dequantize_weight in torch.compile (inductor) unless compile is disabled
    qlayer.eval()
    state["qlayer"] = qlayer
    native = False
    with contextlib.suppress(Exception):
        native = hasattr(torch.ops.gptqmodel, "pack_block_cpu")
    after = _extension_dirs()
    return _check(
        "",
        "OK",
        f"packed into TorchLinear: qweight {tuple(qlayer.qweight.shape)} "
        f"{qlayer.qweight.dtype}, native pack_block_cpu extension {'used' if native else 'not used'}",
        native_pack_extension=native,
        extensions_before=before,
        extensions_after=after,
        new_extensions=[e for e in after if e not in before],
    )


def _gptq_forward(state: State, dtype_name: str) -> Check:
    torch = state["torch"]
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(1)
    x = torch.randn(8, IN_FEATURES)
    start = time.perf_counter()
    with torch.no_grad():
        got = state["qlayer"](x.to(dtype)).float()
        first = time.perf_counter() - start
        want_fp32 = state["original"](x)
        want_dq = state["dequant"](x)
    vs_fp32, vs_dq = _rel_err(got, want_fp32), _rel_err(got, want_dq)
    ok = vs_fp32 <= BOUND_VS_FP32 and vs_dq <= BOUND_VS_DEQUANT
    return _check(
        "",
        "OK" if ok else "FAIL",
        f"TorchLinear {dtype_name} forward: max|dy|/max|y| vs fp32 {vs_fp32:.4f} (<= {BOUND_VS_FP32}), "
        f"vs dequantized GPTQ weights {vs_dq:.4f} (<= {BOUND_VS_DEQUANT})",
        vs_fp32=vs_fp32,
        vs_dequant=vs_dq,
        first_call_seconds=round(first, 3),
        compiled=os.environ.get("TORCH_COMPILE_DISABLE") != "1",
    )


GPTQMODEL = (
    ("import", _gptq_import, ()),
    ("gptq_quantize", _gptq_quantize, ("import",)),
    ("torch_kernel_pack", _gptq_pack, ("gptq_quantize",)),
    ("torch_kernel_forward_float16", lambda s: _gptq_forward(s, "float16"), ("torch_kernel_pack",)),
    ("torch_kernel_forward_bfloat16", lambda s: _gptq_forward(s, "bfloat16"), ("torch_kernel_pack",)),
)


# --------------------------------------------------------------------------- autoawq


def _awq_import(state: State) -> Check:
    import awq
    import torch

    state["torch"] = torch
    ext = {}
    for name in ("awq_ext", "awq_v2_ext", "exl_ext", "exlv2_ext"):
        try:
            __import__(name)
            ext[name] = "imported"
        except Exception as exc:
            ext[name] = f"{type(exc).__name__}: {exc}"[:200]
    return _check(
        "",
        "OK",
        f"awq {getattr(awq, '__version__', '?')} with torch {torch.__version__}",
        version=getattr(awq, "__version__", "?"),
        torch=torch.__version__,
        kernel_modules=ext,
    )


def _awq_gemm(state: State) -> Check:
    """Pseudo-quantize a linear with AWQ's own quantizer, pack it into WQLinear_GEMM, run forward on CPU."""
    from awq.modules.linear.gemm import WQLinear_GEMM
    from awq.quantize.quantizer import AwqQuantizer
    from torch import nn

    torch = state["torch"]
    torch.manual_seed(0)
    layer = nn.Linear(IN_FEATURES, OUT_FEATURES, bias=True).half()
    original = nn.Linear(IN_FEATURES, OUT_FEATURES, bias=True).half()
    original.load_state_dict(layer.state_dict())
    quantizer = AwqQuantizer.__new__(AwqQuantizer)  # the pseudo-quantizer needs only these four attributes
    quantizer.w_bit, quantizer.group_size, quantizer.zero_point, quantizer.version = (
        4,
        GROUP_SIZE,
        True,
        "gemm",
    )
    dq_weight, scales, zeros = quantizer.pseudo_quantize_tensor(layer.weight.data.float())
    layer.weight.data = dq_weight.half()
    # AwqQuantizer._apply_quant transposes scales/zeros to (groups, out) for the GEMM layout
    qlayer = WQLinear_GEMM.from_linear(
        layer,
        4,
        GROUP_SIZE,
        init_only=False,
        scales=scales.t().contiguous().half(),
        zeros=zeros.t().contiguous().half(),
    )
    x = torch.randn(8, IN_FEATURES)
    from awq.modules.linear import gemm

    path = "awq_ext" if gemm.awq_ext is not None else ("triton" if gemm.TRITON_AVAILABLE else "naive torch")
    state["awq_path"] = path
    with torch.no_grad():
        got = qlayer(x.half()).float().reshape(8, OUT_FEATURES)
        vs_fp32 = _rel_err(got, original.float()(x))
        vs_dq = _rel_err(got, layer.float()(x))
    ok = vs_fp32 <= BOUND_VS_FP32 and vs_dq <= BOUND_VS_DEQUANT
    return _check(
        "",
        "OK" if ok else "FAIL",
        f"WQLinear_GEMM fp16 forward: vs fp32 {vs_fp32:.4f} (<= {BOUND_VS_FP32}), vs pseudo-quantized "
        f"weights {vs_dq:.4f} (<= {BOUND_VS_DEQUANT}) through the {path} path",
        vs_fp32=vs_fp32,
        vs_dequant=vs_dq,
        kernel_path=path,
    )


AUTOAWQ = (
    ("import", _awq_import, ()),
    ("wqlinear_gemm_forward", _awq_gemm, ("import",)),
)


# --------------------------------------------------------------------------- llmcompressor


def _llmc_import(state: State) -> Check:
    import compressed_tensors
    import llmcompressor
    import torch

    state["torch"] = torch
    return _check(
        "",
        "OK",
        f"llmcompressor {llmcompressor.__version__}, compressed-tensors "
        f"{compressed_tensors.__version__}, torch {torch.__version__}",
        version=llmcompressor.__version__,
        compressed_tensors=compressed_tensors.__version__,
    )


def _llmc_oneshot(state: State) -> Check:
    """One-shot W4A16 (round-to-nearest, no calibration data) on a tiny Llama; logits compared with fp32."""
    import tempfile

    import transformers
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier

    torch = state["torch"]
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=512,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
    )
    model = transformers.LlamaForCausalLM(config).eval()
    ids = torch.randint(0, 512, (1, 16))
    with torch.no_grad():
        want = model(ids).logits
    recipe = QuantizationModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"])
    with tempfile.TemporaryDirectory() as src, tempfile.TemporaryDirectory() as out:
        # oneshot reads the config by path (an in-memory model without name_or_path fails): save first
        model.save_pretrained(src)
        quantized = oneshot(model=src, recipe=recipe, output_dir=out)
        files = sorted(os.listdir(out))
        with open(os.path.join(out, "config.json"), encoding="utf-8") as fh:
            qcfg = json.load(fh).get("quantization_config", {})
    with torch.no_grad():
        got = quantized(ids).logits.float()
    err = float((got - want).abs().max())
    ok = err <= 0.5 and qcfg.get("quant_method") == "compressed-tensors"
    return _check(
        "",
        "OK" if ok else "FAIL",
        f"oneshot W4A16 on a tiny Llama: max |d logits| {err:.4f} (<= 0.5), saved "
        f"quant_method={qcfg.get('quant_method')!r}",
        max_abs_logit_diff=err,
        files=files,
        quant_method=qcfg.get("quant_method"),
        format=qcfg.get("format"),
    )


LLMCOMPRESSOR = (
    ("import", _llmc_import, ()),
    ("oneshot_w4a16", _llmc_oneshot, ("import",)),
)

LIBRARIES = {"gptqmodel": GPTQMODEL, "autoawq": AUTOAWQ, "llmcompressor": LLMCOMPRESSOR}


# --------------------------------------------------------------------------- driver


def run(library: str, *, portable: bool) -> dict[str, Any]:
    """All checks of one library, in order; returns the JSON document."""
    if portable:
        os.environ["GPTQMODEL_DISABLE_PACK_EXT"] = "1"
        os.environ["TORCH_COMPILE_DISABLE"] = "1"
    plan = LIBRARIES[library]
    state: State = {"passed": set(), "needs": {name: needs for name, _fn, needs in plan}}
    checks = [_run(name, fn, state) for name, fn, _needs in plan]
    return {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "library": library,
        "portable": portable,
        "environment": _environment(),
        "ok": all(c["status"] != "FAIL" for c in checks) and checks[0]["status"] == "OK",
        "checks": checks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--library", required=True, choices=sorted(LIBRARIES))
    parser.add_argument(
        "--portable",
        action="store_true",
        help="no JIT C++ pack extension and no torch.compile (what a smoke test on any host can rely on)",
    )
    args = parser.parse_args(argv)
    # Libraries print banners and progress bars to fd 1: send them to stderr, keep stdout for the JSON.
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        doc = run(args.library, portable=args.portable)
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
    with os.fdopen(real_stdout, "w", encoding="utf-8") as out:
        out.write(json.dumps(doc, indent=1, default=str) + "\n")
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
