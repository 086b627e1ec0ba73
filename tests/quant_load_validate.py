"""The user's path for GPTQ/AWQ/compressed-tensors checkpoints, inside the environment under test; prints JSON.

Standalone like ``tests/quant_cpu_validate.py`` (whose check runner it shares): the standard library and the
environment's own packages only. A tiny Llama is built on the spot (no hub: 2 layers, hidden 128, a word-level
tokenizer made from a fixed vocabulary, because gptqmodel's loader insists on a tokenizer), quantized by the
library that makes the format, saved in the standard layout (``quantization_config`` in config.json), loaded back
with ``transformers.AutoModelForCausalLM.from_pretrained`` and run forward; logits are compared with the fp32
model (max |d logits| <= 0.5, observed 0.13 on the CPU, 2026-12-01):

    python tests/quant_load_validate.py --workdir DIR --make gptq awq --load gptq awq [--device cuda:0]
    python tests/quant_load_validate.py --workdir DIR --make compressed-tensors --load compressed-tensors awq

Makers: ``gptq`` and ``awq`` with gptqmodel (GPTQ, and AWQConfig with its torch AWQ packer, the only AWQ packer
gptqmodel allows without CUDA), ``compressed-tensors`` with llm-compressor (one-shot W4A16). ``--load`` reads
``DIR/<format>``, so a checkpoint made in one environment can be loaded in another: that is how "this
environment cannot load that format" is shown, with transformers' own error. ``--backend FORMAT=NAME`` asks
gptqmodel for a kernel at load (``gptq=exllama_v2``, ``awq=marlin``, ``awq=torch_awq``...: names transformers'
AwqConfig accepts, which gptqmodel maps per method); ``--repeat-load`` loads
twice, so a JIT kernel's compile time is the difference; ``--dtype`` fixes the load dtype (CUDA kernels are
compiled per dtype). ``--portable`` as in quant_cpu_validate.py.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quant_cpu_validate import _check, _environment, _run  # the shared runner, one copy

SCHEMA = "envbuilder.quant-load/1"
FORMATS = ("gptq", "awq", "compressed-tensors")
BOUND_ABS_LOGITS = 0.5
VOCAB, HIDDEN, INTERMEDIATE, LAYERS, HEADS = 512, 128, 256, 2, 4
GROUP_SIZE = 32  # divides 128 and 256; every gptqmodel CUDA kernel (exllama v2, Marlin) accepts 32
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
Check = dict[str, Any]
State = dict[str, Any]


# --------------------------------------------------------------------------- the tiny model


def _tiny_llama(state: State) -> Check:
    """Build (or reuse) the fp32 source model and its tokenizer in DIR/src; keep fp32 reference logits."""
    import torch
    import transformers

    src = state["workdir"] / "src"
    if not (src / "config.json").is_file():
        torch.manual_seed(0)
        config = transformers.LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=HIDDEN,
            intermediate_size=INTERMEDIATE,
            num_hidden_layers=LAYERS,
            num_attention_heads=HEADS,
            num_key_value_heads=HEADS,
            max_position_embeddings=128,
        )
        transformers.LlamaForCausalLM(config).save_pretrained(src)
        _tokenizer().save_pretrained(src)
    ref = transformers.AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (2, 16), generator=generator)
    with torch.no_grad():
        state["ref_logits"] = ref(ids).logits
    state.update(torch=torch, src=src, ids=ids)
    return _check(
        "",
        "OK",
        f"tiny Llama ({LAYERS} layers, hidden {HIDDEN}, vocab {VOCAB}) in {src}",
        max_abs_ref_logit=float(state["ref_logits"].abs().max()),
        files=sorted(p.name for p in src.iterdir()),
    )


def _tokenizer() -> Any:
    """A word-level tokenizer over a fixed vocabulary: nothing from the hub, nothing to train."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"w{i}": i for i in range(VOCAB)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w0"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="w0", pad_token="w1", bos_token="w2", eos_token="w3"
    )


def _calibration() -> list[dict[str, list[int]]]:
    import torch

    generator = torch.Generator().manual_seed(2)
    rows = torch.randint(4, VOCAB, (16, 64), generator=generator).tolist()
    return [{"input_ids": row, "attention_mask": [1] * len(row)} for row in rows]


# --------------------------------------------------------------------------- makers


def _saved_config(out: Path) -> dict[str, Any]:
    with (out / "config.json").open(encoding="utf-8") as fh:
        qcfg: dict[str, Any] = json.load(fh).get("quantization_config") or {}
    keys = ("quant_method", "format", "version", "checkpoint_format", "bits", "group_size", "sym", "zero_point")
    return {k: qcfg[k] for k in keys if k in qcfg}


def _make_gptqmodel(state: State, fmt: str) -> Check:
    from gptqmodel import BACKEND, GPTQModel, QuantizeConfig, __version__
    from gptqmodel.quantization.config import AWQConfig

    out = state["workdir"] / fmt
    if fmt == "gptq":
        qcfg = QuantizeConfig(bits=4, group_size=GROUP_SIZE, sym=True, desc_act=False)
        # AUTO picks the pure-torch packer for GPTQ on any device
        backend = BACKEND.AUTO
    else:
        qcfg = AWQConfig(bits=4, group_size=GROUP_SIZE)
        # AUTO picks AWQ_GEMM, a CUDA-only packer, even on a CPU host ("AWQ: CUDA is not available");
        # AWQ_TORCH packs the same GEMM layout on any device (gptqmodel/models/base.py quantize())
        backend = BACKEND.AWQ_TORCH
    start = time.perf_counter()
    model = GPTQModel.load(str(state["src"]), qcfg, device=state["device"])
    model.quantize(_calibration(), batch_size=4, backend=backend)
    model.save(str(out))
    saved = _saved_config(out)
    ok = saved.get("quant_method") == fmt
    return _check(
        "",
        "OK" if ok else "FAIL",
        f"gptqmodel {__version__} made {fmt} 4-bit g{GROUP_SIZE} in {time.perf_counter() - start:.0f} s: "
        f"quantization_config {saved}",
        quantization_config=saved,
        files=sorted(p.name for p in out.iterdir()),
        pack_backend=str(backend),
    )


def _make_llmcompressor(state: State) -> Check:
    import llmcompressor
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier

    out = state["workdir"] / "compressed-tensors"
    recipe = QuantizationModifier(targets="Linear", scheme="W4A16", ignore=["lm_head"])
    oneshot(model=str(state["src"]), recipe=recipe, output_dir=str(out))
    saved = _saved_config(out)
    ok = saved.get("quant_method") == "compressed-tensors"
    return _check(
        "",
        "OK" if ok else "FAIL",
        f"llmcompressor {llmcompressor.__version__} one-shot W4A16: quantization_config {saved}",
        quantization_config=saved,
        files=sorted(p.name for p in out.iterdir()),
    )


# --------------------------------------------------------------------------- loading, the user's path


def _kernels(model: Any) -> dict[str, str]:
    """The class behind each projection of layer 0: the kernel that really runs (or nn.Linear if none)."""
    layer = model.model.layers[0]
    found = {}
    for name, module in layer.named_modules():
        if name.rsplit(".", 1)[-1] in PROJECTIONS:
            found[name] = f"{type(module).__module__}.{type(module).__name__}"
    return found


def _layout(model: Any) -> dict[str, Any]:
    """q_proj of layer 0 as loaded: its own parameters and buffers, and compressed-tensors' status if any."""
    q = model.model.layers[0].self_attn.q_proj
    status = getattr(q, "quantization_status", None)
    return {
        "parameters": sorted(n for n, _ in q.named_parameters(recurse=False)),
        "buffers": sorted(n for n, _ in q.named_buffers(recurse=False)),
        "quantization_status": None if status is None else str(status),
    }


def _load_override(fmt: str, backend: str | None) -> dict[str, Any]:
    """Only the loading attributes transformers merges into a saved config (get_loading_attributes)."""
    if backend is None:
        return {}
    import transformers

    cls = transformers.GPTQConfig if fmt == "gptq" else transformers.AwqConfig
    return {"quantization_config": cls(bits=4, backend=backend)}


def _load(state: State, fmt: str) -> Check:
    import transformers

    torch = state["torch"]
    path = state["workdir"] / fmt
    if not (path / "config.json").is_file():
        return _check("", "SKIP", f"no {fmt} checkpoint in {path} (make it first, here or in another environment)")
    saved = _saved_config(path)
    kwargs = _load_override(fmt, state["backends"].get(fmt))
    if state["dtype"] != "auto":
        kwargs["dtype"] = getattr(torch, state["dtype"])  # Marlin/exllama kernels are built per dtype
    timings = []
    for _ in range(2 if state["repeat_load"] else 1):
        start = time.perf_counter()
        model = transformers.AutoModelForCausalLM.from_pretrained(path, device_map=state["device"], **kwargs)
        timings.append(round(time.perf_counter() - start, 3))
    model.eval()
    kernels, before = _kernels(model), _layout(model)
    ids = state["ids"].to(state["device"])
    with torch.no_grad():
        start = time.perf_counter()
        got = model(ids).logits.float().cpu()
        first_forward = time.perf_counter() - start
    after = _layout(model)
    dense = [n for n, cls in kernels.items() if cls == "torch.nn.modules.linear.Linear"]
    # compressed-tensors keeps nn.Linear holding packed int4 parameters, and decompresses them to a dense
    # weight at the first forward (transformers 5.x, run_compressed=False): no int4 kernel runs on that path
    packed = "weight_packed" in before["parameters"]
    quantized = not dense or (fmt == "compressed-tensors" and packed)
    diff = float((got - state["ref_logits"]).abs().max())
    ok = diff <= BOUND_ABS_LOGITS and diff > 0 and quantized
    how = "decompressed to dense at first forward" if packed and "weight" in after["parameters"] else "kernel"
    detail = (
        f"from_pretrained({fmt}) on {state['device']}: max |d logits| vs fp32 {diff:.4f} (<= {BOUND_ABS_LOGITS}), "
        f"dtype {model.dtype}, {how} {sorted(set(kernels.values()))}"
    )
    return _check(
        "",
        "OK" if ok else "FAIL",
        detail,
        max_abs_logit_diff=diff,
        max_abs_ref_logit=float(state["ref_logits"].abs().max()),
        dtype=str(model.dtype),
        device=str(ids.device),
        kernels=kernels,
        layout_before_forward=before,
        layout_after_forward=after,
        quantization_config=saved,
        backend_requested=state["backends"].get(fmt),
        load_seconds=timings,
        first_forward_seconds=round(first_forward, 3),
    )


# --------------------------------------------------------------------------- driver


def _versions(env: dict[str, Any]) -> dict[str, Any]:
    """quant_cpu_validate's list, plus what this path adds: optimum (GPTQ loading) and the tokenizer stack."""
    from importlib import metadata

    for name in ("optimum", "tokenizers", "safetensors", "llmcompressor", "compressed-tensors", "auto-round"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            env["packages"][name] = metadata.version(name)
    env["cpu_count"] = os.cpu_count()
    return env


MAKERS: dict[str, Callable[[State], Check]] = {
    "gptq": lambda s: _make_gptqmodel(s, "gptq"),
    "awq": lambda s: _make_gptqmodel(s, "awq"),
    "compressed-tensors": _make_llmcompressor,
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.portable:
        os.environ["GPTQMODEL_DISABLE_PACK_EXT"] = "1"
        os.environ["TORCH_COMPILE_DISABLE"] = "1"
    workaround = None
    if (os.cpu_count() or 1) <= 2 and "GPTQMODEL_CPU_WORKERS" not in os.environ:
        # gptqmodel/__init__.py: the 'cpu' pool gets (cpus + 1) // 2 workers but 'model_loader:cpu' asks for 2,
        # so on a host with <= 2 CPUs GPTQModel.load().quantize() raises "requests 2 workers but parent 'cpu'
        # only has 1" (seen here, 2026-12-01)
        os.environ["GPTQMODEL_CPU_WORKERS"] = "2"
        workaround = "GPTQMODEL_CPU_WORKERS=2 (host has <= 2 CPUs)"
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)  # gptqmodel writes logs/gptq_log_*.log and logs/awq_log_*.log under the working directory
    plan: list[tuple[str, Callable[[State], Check], tuple[str, ...]]] = [("tiny_llama", _tiny_llama, ())]
    plan += [(f"make_{f}", MAKERS[f], ("tiny_llama",)) for f in args.make]
    plan += [(f"load_{f}", functools.partial(_load, fmt=f), ("tiny_llama",)) for f in args.load]
    state: State = {
        "passed": set(),
        "needs": {name: needs for name, _fn, needs in plan},
        "workdir": workdir,
        "device": args.device,
        "backends": dict(b.split("=", 1) for b in args.backend),
        "repeat_load": args.repeat_load,
        "dtype": args.dtype,
    }
    checks = [_run(name, fn, state) for name, fn, _needs in plan]
    return {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "argv": sys.argv[1:],
        "portable": args.portable,
        "workaround": workaround,
        "environment": _versions(_environment()),
        "ok": all(c["status"] != "FAIL" for c in checks) and checks[0]["status"] == "OK",
        "checks": checks,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workdir", required=True, help="holds src/ and one directory per format")
    parser.add_argument("--make", nargs="*", default=[], choices=FORMATS)
    parser.add_argument("--load", nargs="*", default=[], choices=FORMATS)
    parser.add_argument("--device", default="cpu", help="cpu or cuda:0 (where from_pretrained puts the model)")
    parser.add_argument("--dtype", default="auto", choices=("auto", "float16", "bfloat16", "float32"))
    parser.add_argument("--backend", action="append", default=[], metavar="FORMAT=NAME")
    parser.add_argument("--repeat-load", action="store_true", help="load twice: JIT compile time is the difference")
    parser.add_argument("--portable", action="store_true", help="no JIT C++ pack extension, no torch.compile")
    args = parser.parse_args(argv)
    bad = [b for b in args.backend if "=" not in b or b.split("=", 1)[0] not in FORMATS[:2]]
    if bad:
        parser.error(f"--backend {bad[0]!r}: write gptq=NAME or awq=NAME")
    sys.stdout.flush()
    real_stdout = os.dup(1)
    os.dup2(2, 1)  # libraries print banners and progress bars to fd 1; stdout carries the JSON alone
    try:
        doc = run(args)
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
    with os.fdopen(real_stdout, "w", encoding="utf-8") as out:
        out.write(json.dumps(doc, indent=1, default=str) + "\n")
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
