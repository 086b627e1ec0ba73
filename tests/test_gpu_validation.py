"""What the H100 runs proved, checked here on their raw outputs (tests/fixtures/h100-cu130/README.md).

The smoke test passed on a real GPU; two real failures were reproduced there; doctor must name their cause
and fix from the pasted output alone. The matrix records the runs as evidence.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envbuilder.cli.app import main
from envbuilder.model.matrix import Matrix

H100 = Path(__file__).parent / "fixtures" / "h100-cu130"


def test_smoke_passed_every_stage_on_the_h100() -> None:
    doc = json.loads((H100 / "smoke-bnb0.50.2.json").read_text())
    assert doc["schema"] == "envbuilder.smoke/1" and doc["ok"] is True
    stages = {s["name"]: s for s in doc["stages"]}
    assert {s["status"] for s in stages.values()} == {"OK"}
    assert "libbitsandbytes_cuda130.so" in stages["bnb_import"]["detail"]
    assert "sm_90" in stages["cuda"]["detail"]


def test_smoke_with_bnb_047_failed_at_import_and_skipped_the_rest() -> None:
    doc = json.loads((H100 / "smoke-bnb0.47.0.json").read_text())
    stages = {s["name"]: s["status"] for s in doc["stages"]}
    assert doc["ok"] is False
    assert stages["bnb_import"] == "FAIL" and stages["torch"] == "OK"
    assert stages["tiny_llama"] == "SKIP"


@pytest.mark.parametrize(
    ("fixture", "rule", "fix_contains"),
    [
        # bitsandbytes 0.47.0 under torch cu130: no libbitsandbytes_cuda130.so in that release.
        ("bnb0.47.0-cu130-quantize-4bit.txt", "bnb-lib-cuda-mismatch", "libbitsandbytes_cuda130"),
        ("bnb0.47.0-cu130-python-m-bitsandbytes.txt", "bnb-lib-cuda-mismatch", "bitsandbytes==0.50.2"),
        ("bnb0.47.0-cu130-load-4bit.txt", "bnb-lib-cuda-mismatch", "libbitsandbytes_cuda130"),
        # BNB_CUDA_VERSION=124 on a CUDA 13 torch: libcudart.so.12 is absent.
        ("bnb0.50.2-BNB_CUDA_VERSION-124-quantize-4bit.txt", "cuda-runtime-missing", "unset BNB_CUDA_VERSION"),
        ("bnb0.50.2-BNB_CUDA_VERSION-124-python-m-bitsandbytes.txt", "bnb-cuda-version-var", "unset BNB_CUDA_VERSION"),
        # The old advice to export it empty: 0.50 refuses an empty value.
        ("bnb0.50.2-BNB_CUDA_VERSION-empty-quantize-4bit.txt", "bnb-cuda-version-var", "unset BNB_CUDA_VERSION"),
    ],
)
def test_doctor_names_cause_and_fix_of_real_gpu_failures(
    fixture: str, rule: str, fix_contains: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["doctor", "--log", str(H100 / fixture), "--json"])
    doc = json.loads(capsys.readouterr().out)
    findings = {f["rule"]: f for f in doc["findings"]}
    assert rc == 1
    assert rule in findings, sorted(findings)
    assert fix_contains in findings[rule]["fix"]
    assert findings[rule]["seen"] and findings[rule]["cause"]


def test_doctor_finds_nothing_in_the_healthy_bitsandbytes_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--log", str(H100 / "python-m-bitsandbytes.txt"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["findings"] == []


def test_matrix_records_the_gpu_runs(matrix: Matrix) -> None:
    runs = [(e.bitsandbytes, e.result) for e in matrix.evidence if e.torch == "2.11.0+cu130" and e.cc == "9.0"]
    assert ("0.50.2", "pass") in runs and ("0.47.0", "fail") in runs


def test_gptq_tiny_layer_passed_on_the_h100() -> None:
    doc = json.loads((Path(__file__).parent / "fixtures" / "h100-gptq" / "smoke-gptq.json").read_text())
    stages = {s["name"]: s for s in doc["stages"]}
    assert doc["ok"] is True and stages["quant_lib"]["status"] == "OK"
    assert stages["quant_lib"]["evidence"]["device"] == "cuda:0"
    assert stages["quant_lib"]["evidence"]["rel_err"] <= 0.25
    assert "bnb_import" not in stages  # no bitsandbytes in a gptq environment


def test_gptq_evidence_proves_only_gptq_plans(matrix: Matrix) -> None:
    from envbuilder.model.target import build_target, parse_gpus
    from envbuilder.resolve import Plan, Sources, resolve

    def plan(profile: str) -> Plan:
        target = build_target(matrix, gpus=parse_gpus("H100", matrix), driver="580.159.04", pythons=("3.12",),
                              profile=profile, torch="2.11.0")
        result = resolve(target, matrix, Sources(pytorch_index=None))
        assert isinstance(result, Plan)
        return result

    gptq = plan("gptq")
    assert gptq.package("gptqmodel").version == "7.6.0"  # type: ignore[union-attr]
    assert {e.quant for e in gptq.proven} == {"gptqmodel 7.6.0"}  # the H100 run and the H200 kernels (same sm_90)
    assert all(e.quant is None and e.bitsandbytes == "0.50.2" for e in plan("bnb").proven)
