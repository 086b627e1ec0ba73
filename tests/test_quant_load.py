"""The user's path (quantize -> save -> from_pretrained) on the CPU: the recorded runs back what
matrices/quantizers.toml and the profiles' `formats` say.

(a) each fixture in tests/fixtures/quant-load/ against the matrix rows that cite it: what passed, passed with the
    versions the rows name; what failed, failed with the message transformers' quantizer row records.
The same path on freshly built gptq and awq environments is the smoke program's (tests/test_smoke_quant.py,
integration: the resolver's plans built with uv, then `run_smoke`); tests/quant_load_validate.py stays the
tool that recorded these fixtures and that tests/gpu/h200_quant_load.sh runs on the GPU host.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet

from envbuilder.edge.sources import read_pip_config
from envbuilder.jobs.builder import interpreter_for
from envbuilder.model.matrix import Matrix, ProfileFormat, Quantizer

FIXTURES = Path(__file__).parent / "fixtures" / "quant-load"
SCRIPT = Path(__file__).parent / "quant_load_validate.py"
PY311 = Path(interpreter_for("3.11", required=False) or "/nonexistent")
WHEELHOUSE = Path(next(iter(read_pip_config().get("find-links", [])), "/nonexistent"))


def _doc(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    assert doc["schema"] == "envbuilder.quant-load/1"
    return doc


def _checks(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["checks"]}


def _quantizer(matrix: Matrix, method: str, transformers: str) -> Quantizer:
    rows = [q for q in matrix.quantizers if q.method == method and q.transformers.contains(transformers)]
    assert len(rows) == 1, f"{method} for transformers {transformers}: {len(rows)} rows"
    return rows[0]


def _format(matrix: Matrix, profile: str, fmt: str) -> ProfileFormat:
    found = matrix.profile(profile)
    assert found is not None
    rows = [f for f in found.formats if f.format == fmt]
    assert len(rows) == 1, f"{profile}/{fmt}: {len(rows)} rows"
    return rows[0]


# --------------------------------------------------------------------------- (a) fixtures vs matrix


@pytest.mark.parametrize(
    ("profile", "fmt", "fixture"),
    [
        ("gptq", "gptq", "gptq-proposed.json"),
        ("gptq", "awq", "gptq-proposed.json"),
        ("awq", "awq", "awq-proposed.json"),
        ("awq", "compressed-tensors", "awq-proposed.json"),
        ("awq", "gptq", "awq-proposed-optimum.json"),
    ],
)
def test_proven_formats_have_a_passing_load(matrix: Matrix, profile: str, fmt: str, fixture: str) -> None:
    row = _format(matrix, profile, fmt)
    assert row.load and row.cpu == "proven"
    assert row.verified is not None and f"tests/fixtures/quant-load/{fixture}" in row.verified
    doc = _doc(fixture)
    packages = doc["environment"]["packages"]
    assert doc["environment"]["python"] == "3.11.7" and packages["torch"] == "2.13.0+cpu"
    assert f"transformers {packages['transformers']}" in row.verified
    check = _checks(doc)[f"load_{fmt}"]
    assert check["status"] == "OK", check["detail"]
    evidence = check["evidence"]
    assert 0 < evidence["max_abs_logit_diff"] <= 0.5
    assert evidence["device"] == "cpu"
    # what transformers demands for this format holds in the environment that loaded it
    need = _quantizer(matrix, fmt, packages["transformers"])
    for name, spec in need.requires.items():
        assert name in packages and spec.contains(packages[name]), (name, spec, packages.get(name))


@pytest.mark.parametrize(
    ("fixture", "fmt", "missing"),
    [
        ("gptq-current.json", "gptq", "optimum"),  # today's gptq profile: gptqmodel without optimum
        ("awq-current.json", "awq", "gptqmodel"),  # today's awq profile: llm-compressor without gptqmodel
        ("awq-current.json", "gptq", "optimum"),
        ("gptq-proposed.json", "compressed-tensors", "compressed-tensors"),
    ],
)
def test_recorded_failures_are_the_quantizers_own_checks(matrix: Matrix, fixture: str, fmt: str, missing: str) -> None:
    doc = _doc(fixture)
    packages = doc["environment"]["packages"]
    assert missing not in packages
    check = _checks(doc)[f"load_{fmt}"]
    assert check["status"] == "FAIL"
    row = _quantizer(matrix, fmt, packages["transformers"])
    assert missing in row.requires
    # transformers raises the first check that fails: the row's first message, verbatim
    assert row.errors[0] in check["evidence"]["error"], check["detail"]


def test_current_profiles_cannot_load_what_users_download() -> None:
    # issue 18 as it was: the gptq env makes GPTQ but cannot load it; the awq env cannot load quant_method awq
    gptq = _checks(_doc("gptq-current.json"))
    assert gptq["load_gptq"]["status"] == "FAIL" and gptq["load_awq"]["status"] == "OK"
    awq = _checks(_doc("awq-current.json"))
    assert awq["load_compressed-tensors"]["status"] == "OK" and awq["load_awq"]["status"] == "FAIL"


def test_compressed_tensors_loads_packed_and_runs_dense() -> None:
    evidence = _checks(_doc("awq-proposed.json"))["load_compressed-tensors"]["evidence"]
    assert "weight_packed" in evidence["layout_before_forward"]["parameters"]
    assert "weight" in evidence["layout_after_forward"]["parameters"]
    assert set(evidence["kernels"].values()) == {"torch.nn.modules.linear.Linear"}


def test_gptqmodel_ran_its_cpu_kernels_and_packed_awq_with_the_torch_packer() -> None:
    checks = _checks(_doc("gptq-proposed.json"))
    assert set(checks["load_gptq"]["evidence"]["kernels"].values()) == {
        "gptqmodel.nn_modules.qlinear.torch_aten_kernel.TorchAtenLinear"
    }
    assert set(checks["load_awq"]["evidence"]["kernels"].values()) == {
        "gptqmodel.nn_modules.qlinear.torch_aten_kernel_awq.TorchAtenAwqLinear"
    }
    assert checks["make_awq"]["evidence"]["pack_backend"] == "BACKEND.AWQ_TORCH"
    saved = checks["make_awq"]["evidence"]["quantization_config"]
    assert saved["quant_method"] == "awq" and saved["format"] == "gemm"


def test_a_backend_and_dtype_asked_at_load_are_the_ones_that_run() -> None:
    # the mechanism tests/gpu/h200_quant_load.sh relies on to pick exllama v2 or Marlin on the GPU
    doc = _doc("awq-proposed-optimum-backend-override.json")
    checks = _checks(doc)
    want = {"gptq": ("torch", "torch.TorchLinear"), "awq": ("torch_awq", "torch_awq.AwqTorchLinear")}
    for fmt, (backend, kernel) in want.items():
        evidence = checks[f"load_{fmt}"]["evidence"]
        assert evidence["backend_requested"] == backend and evidence["dtype"] == "torch.float16"
        assert set(evidence["kernels"].values()) == {f"gptqmodel.nn_modules.qlinear.{kernel}"}
        assert evidence["max_abs_logit_diff"] <= 0.5


def test_quantizer_rows_name_real_wheels(matrix: Matrix) -> None:
    read = {w.file for q in matrix.quantizers for w in q.wheels}
    companions = {c.version for c in matrix.companions if c.name == "transformers"}
    # every transformers release the matrix pins had its quantizers read
    assert {f"transformers-{v}-py3-none-any.whl" for v in companions} <= read
    for q in matrix.quantizers:
        assert q.errors and q.paths and q.wheels, q.origin
        assert all(q.transformers.contains(w.file.split("-")[1]) for w in q.wheels)


def test_optimum_is_pinned_where_gptq_loads(matrix: Matrix) -> None:
    optimum = next(c for c in matrix.companions if c.name == "optimum")
    for profile in ("gptq", "awq"):
        found = matrix.profile(profile)
        assert found is not None and "optimum" in found.packages
        for q in matrix.quantizers:
            if q.method == "gptq" and "optimum" in q.requires:
                assert q.requires["optimum"].contains(optimum.version)
    # optimum 2.x refuses gptqmodel < 7.0.0 at import (optimum/utils/import_utils.py)
    assert optimum.requires["gptqmodel"] == SpecifierSet(">=7.0.0")
