"""GPU run 6 on the H200 (tests/gpu/h200_run6.sh; tests/fixtures/h200-cu130/README.md): what it proved, on its raw
outputs.

- The doctor on the no-GPU-visible state, live: run 5 called ``CUDA_VISIBLE_DEVICES=''`` healthy; the rule added
  after it (rules_cuda.rule_cuda_torch_sees_no_gpu) named cause and fix there, for '' and for an index that does
  not exist ('7'), and nothing in the same environment with the GPU visible.
- The gptq and awq profiles' smoke on cuda:0 with their quant_load_<format> stages: each checkpoint format made,
  loaded with from_pretrained through gptqmodel's CUDA kernels (Marlin), compared with fp32; gptqmodel's nvcc JIT
  builds timed apart from the stages (``jit_seconds``, ``evidence.jit``, ``seconds.jit``), from a cold extension
  cache (calls 1 and 2) and a warm one (call 3).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from envbuilder.model.matrix import Matrix
from envbuilder.model.smoke import check_from_json
from envbuilder.model.target import build_target, parse_gpus
from envbuilder.smoke.check import timing_line

RUN6 = Path(__file__).parent / "fixtures" / "h200-cu130" / "run6"
MARLIN = "gptqmodel.nn_modules.qlinear.marlin.MarlinLinear"
AWQ_MARLIN = "gptqmodel.nn_modules.qlinear.marlin_awq.AwqMarlinLinear"
DENSE = "torch.nn.modules.linear.Linear"  # compressed-tensors: decompressed at the first forward


def _json(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def _exit_line(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace").rstrip().rsplit("\n", 1)[-1]


def _stages(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in doc["stages"]}


def _progress(path: Path) -> list[str]:
    """The smoke's --progress lines in a capture (gptqmodel's bars redraw with \\r on the same stream)."""
    text = path.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    return re.findall(r"smoke: .*", text)


# --------------------------------------------------------------------------- the doctor, no GPU visible


@pytest.mark.parametrize("state, hidden", [("novisible", ""), ("novisible7", "7")])
def test_doctor_env_named_no_gpu_visible_live(state: str, hidden: str) -> None:
    doc = _json(RUN6 / "call1" / "novisible" / f"{state}.doctor.json")
    assert _exit_line(RUN6 / "call1" / "novisible" / f"{state}.doctor.stderr.txt") == "exit code: 1"
    assert doc["evidence"]["env"]["CUDA_VISIBLE_DEVICES"] == hidden and doc["evidence"]["devices"] == []
    assert doc["evidence"]["torch_cuda"] == "13.0"
    (f,) = [f for f in doc["findings"] if f["severity"] == "FAIL"]
    assert f["rule"] == "no-gpu-visible" and f["layer"] == "driver"
    assert f"CUDA_VISIBLE_DEVICES={hidden!r} hides every GPU" in f["cause"]
    assert "libbitsandbytes_cpu.so" in f["seen"]  # bitsandbytes' silent fall-back, named
    assert f["fix"].startswith("unset CUDA_VISIBLE_DEVICES")
    assert doc["verdict"]["kind"] == "broken" and doc["verdict"]["fix"] == f["fix"]
    text = (RUN6 / "call1" / "novisible" / f"{state}.doctor.txt").read_text()
    assert "[FAIL] no-gpu-visible (driver)" in text and text.rstrip().endswith("exit code: 1")


def test_the_same_environment_with_the_gpu_visible_is_healthy_live() -> None:
    doc = _json(RUN6 / "call1" / "novisible" / "healthy.doctor.json")
    assert doc["verdict"]["kind"] == "healthy" and doc["findings"] == []
    assert doc["evidence"]["devices"][0]["name"] == "NVIDIA H200"
    torch_line = (RUN6 / "call1" / "novisible" / "novisible-torch.txt").read_text()
    assert "torch 2.11.0+cu130 cuda 13.0 devices 0" in torch_line  # what the hidden state looked like to torch


# --------------------------------------------------------------------------- the gptq/awq smoke on cuda:0


@pytest.mark.parametrize(
    ("capture", "formats"),
    [
        ("call3/smoke-gptq.json", {"gptq": MARLIN, "awq": AWQ_MARLIN}),
        ("call3/smoke-awq.json", {"awq": AWQ_MARLIN, "compressed-tensors": DENSE, "gptq": MARLIN}),
        ("call2/smoke-awq_awq.json", {"awq": AWQ_MARLIN}),
        ("call2/smoke-gptq_gptq.json", {"gptq": MARLIN}),
    ],
)  # fmt: skip
def test_the_quant_load_stages_passed_on_the_h200_through_marlin(capture: str, formats: dict[str, str]) -> None:
    doc = _json(RUN6 / capture)
    stages = _stages(doc)
    assert doc["ok"] is True and _exit_line(RUN6 / capture.replace(".json", ".stderr.txt")).startswith("exit code: 0")
    assert [n.removeprefix("quant_load_") for n in stages if n.startswith("quant_load_")] == list(formats)
    for fmt, kernel in formats.items():
        stage = stages[f"quant_load_{fmt}"]
        ev = stage["evidence"]
        assert stage["status"] == "OK" and ev["device"] == "cuda:0" and ev["kernel"] == kernel
        assert 0 < ev["max_abs"] <= ev["bound"] == 0.5
        assert ev["transformers"] == "5.17.0" and ev["maker"] in ("gptqmodel 7.6.0", "llmcompressor 0.14.0.1")
    assert stages["cuda"]["evidence"]["devices"][0]["cc"] == "9.0"


def test_the_jit_builds_are_timed_apart_from_the_stage() -> None:
    """A cold extension cache (call 2, a fresh machine): the awq stage's own work took under 10 s beside 265 s of
    nvcc builds, which are named one by one; the document's seconds add up without them."""
    doc = _json(RUN6 / "call2" / "smoke-awq_awq.json")
    stage = _stages(doc)["quant_load_awq"]
    builds = stage["evidence"]["jit"]
    assert [b["name"] for b in builds] == ["gptqmodel_awq_ops", "gptqmodel_marlin_fp16_ops"]
    assert all(b["ok"] for b in builds) and builds[1]["seconds"] > 100  # Marlin: minutes
    assert stage["jit_seconds"] == pytest.approx(sum(b["seconds"] for b in builds), abs=0.01)
    assert stage["seconds"] < 15 < stage["jit_seconds"]
    assert "[JIT build 265.2 s, not in the stage's time" in stage["detail"]
    assert doc["jit"] == {"watched": True, "builds": builds}
    s = doc["seconds"]
    assert s["jit"] == stage["jit_seconds"] and s["stages"] < 15
    assert s["total"] == pytest.approx(s["imports"] + s["jit"] + s["stages"], abs=1.0)
    check = check_from_json(stage)
    assert check.jit_seconds == stage["jit_seconds"] and check.to_json()["jit_seconds"] == stage["jit_seconds"]
    assert "JIT builds 265.2 s (2)" in timing_line(doc)


@pytest.mark.parametrize("capture", ["call3/smoke-gptq.json", "call3/smoke-awq.json"])
def test_a_warm_extension_cache_builds_nothing(capture: str) -> None:
    """Call 3 on the same machine as call 2: gptqmodel loads its built kernels itself, so no JIT build runs and
    the profile's whole smoke takes about 30 s, most of it imports."""
    doc = _json(RUN6 / capture)
    assert doc["jit"] == {"watched": True, "builds": []} and doc["seconds"]["jit"] == 0.0
    assert not any("jit_seconds" in s for s in doc["stages"])
    assert doc["seconds"]["total"] < 40 and doc["seconds"]["stages"] < 15


def test_the_cold_gptq_smoke_left_its_progress_when_its_limit_stopped_it() -> None:
    """Call 1 (cold cache): the gptq stage passed after three JIT builds; the awq stage was building awq_ops when
    the 508 s limit ended it, so no document came, but the progress lines say how far it got."""
    err = RUN6 / "call1" / "smoke-gptq.stderr.txt"
    assert _exit_line(err) == "exit code: 124 after 508 s (limit 508 s)"
    assert _json(RUN6 / "call1" / "smoke-gptq.json")["error"] == "terminated"  # envbuilder.error/1, no stages
    lines = _progress(err)
    assert "smoke: quant_load_gptq OK in 416.2 s" in lines and lines[-1].startswith("smoke:   JIT build of torch")
    done = dict(re.findall(r"smoke:   JIT build of (\S+) done in ([\d.]+) s", "\n".join(lines)))
    want = {
        "gptqmodel_gptq_block_ops": "35.7",
        "gptqmodel_marlin_fp16_ops": "222.6",
        "gptqmodel_marlin_bf16_ops": "142.6",
    }
    assert done == want
    assert "gptqmodel_awq_ops (ninja/nvcc" in lines[-1]


def test_the_matrix_records_run_6_and_the_resolver_proves_both_profiles(matrix: Matrix) -> None:
    from envbuilder.resolve import Plan, resolve

    rows = [e for e in matrix.evidence if e.gpu == "NVIDIA H200" and "run6" in e.source]
    assert {e.quant for e in rows} == {"gptqmodel 7.6.0", "llmcompressor 0.14.0.1"}
    assert all(e.result == "pass" and "MarlinLinear" in e.detail and "JIT" in e.detail for e in rows)
    for profile, quant in (("gptq", "gptqmodel 7.6.0"), ("awq", "llmcompressor 0.14.0.1")):
        target = build_target(
            matrix, gpus=parse_gpus("NVIDIA H200", matrix), driver="580.159.04", pythons=("3.12",), profile=profile
        )
        plan = resolve(target, matrix)
        assert isinstance(plan, Plan), plan.reasons
        assert any(e.quant == quant and "run6" in e.source for e in plan.proven), profile
