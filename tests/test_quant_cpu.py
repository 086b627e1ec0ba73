"""GPTQ/AWQ libraries on the CPU: the captured runs back what matrices/quant.toml claims; one real rebuild.

(a) Always run: the real outputs in ``tests/fixtures/quant-cpu/`` (README there names the commands) are read
    and checked against the matrix rows: a row whose ``verified`` says "CPU only" must have a passing fixture
    with the same versions, and what failed (auto-gptq, autoawq with triton or transformers 4.57.6, gptqmodel
    without a C++ compiler) must be recorded as failing, with the error the notes quote.
(b) ``integration``/``network``: builds the gptqmodel 7.6.0 CPU environment with uv for real and runs
    ``tests/quant_cpu_validate.py --portable`` inside it. Measured here with a warm uv cache: 24 s for the
    whole test (install about 11 s, validation about 12 s), well under the 4-minute budget, so it is kept.
    ``--portable`` because the default path JIT-compiles a C++ extension into ~/.cache and runs inductor
    (g++), which the fixtures cover.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from packaging.specifiers import SpecifierSet

from envbuilder.edge import _run
from envbuilder.edge.sources import read_pip_config
from envbuilder.jobs.builder import interpreter_for
from envbuilder.model.matrix import Matrix, QuantLib

FIXTURES = Path(__file__).parent / "fixtures" / "quant-cpu"
SCRIPT = Path(__file__).parent / "quant_cpu_validate.py"
PY311 = Path(interpreter_for("3.11", required=False) or "/nonexistent")
# The wheelhouse that pip's configuration names here (as envbuilder itself reads it; never a path in the code).
WHEELHOUSE = Path(next(iter(read_pip_config().get("find-links", [])), "/nonexistent"))


def _doc(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    assert doc["schema"] == "envbuilder.quant-cpu/1"
    return doc


def _checks(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in doc["checks"]}


def _row(matrix: Matrix, name: str, version: str) -> QuantLib:
    rows = [q for q in matrix.quant if q.name == name and q.version == version]
    assert len(rows) == 1, f"{name} {version}: {len(rows)} rows"
    return rows[0]


# --------------------------------------------------------------------------- (a) fixtures vs matrix


@pytest.mark.parametrize(
    ("fixture", "library", "version", "extra"),
    [
        # each passing fixture that a row's `verified` cites, and the versions the row's text names
        ("gptqmodel-default.json", "gptqmodel", "7.6.0", {"numpy": "2.2.6", "transformers": "5.24.0"}),
        ("gptqmodel-no-nvcc.json", "gptqmodel", "7.6.0", {"numpy": "2.2.6"}),
        ("gptqmodel-no-compiler-portable.json", "gptqmodel", "7.6.0", {"torchao": "0.18.0"}),
        ("autoawq-tf4.51.3-no-triton.json", "autoawq", "0.2.9", {"transformers": "4.51.3"}),
        (
            "llmcompressor.json",
            "llmcompressor",
            "0.14.0.1",
            {"compressed-tensors": "0.19.0", "transformers": "5.17.0"},
        ),
    ],
)
def test_verified_rows_have_a_passing_cpu_fixture(
    matrix: Matrix, fixture: str, library: str, version: str, extra: dict[str, str]
) -> None:
    doc = _doc(fixture)
    packages = doc["environment"]["packages"]
    assert doc["ok"] is True and all(c["status"] == "OK" for c in doc["checks"])
    assert packages[library] == version and packages["torch"] == "2.13.0+cpu"
    assert doc["environment"]["python"] == "3.11.7"
    row = _row(matrix, library, version)
    assert row.verified is not None and row.verified.startswith("2026-11-24 CPU only:")
    assert "torch 2.13.0+cpu" in row.verified and "Python 3.11.7" in row.verified
    for name, want in extra.items():
        assert packages[name] == want
        assert f"{name} {want}" in row.verified
    assert f"tests/fixtures/quant-cpu/{library}" in row.verified


@pytest.mark.parametrize(
    ("fixture", "check", "error"),
    [
        ("gptqmodel-no-compiler.json", "torch_kernel_forward_float16", "InvalidCxxCompiler"),
        ("autoawq-tf5.24.0-triton.json", "wqlinear_gemm_forward", "torch/cuda/__init__.py"),
        ("autoawq-tf4.51.3-triton.json", "wqlinear_gemm_forward", "awq_dequantize_triton"),
        ("autoawq-tf4.57.6.json", "import", "cannot import name 'PytorchGELUTanh'"),
    ],
)
def test_recorded_failures_fail_for_the_stated_reason(fixture: str, check: str, error: str) -> None:
    doc = _doc(fixture)
    assert doc["ok"] is False
    failed = _checks(doc)[check]
    assert failed["status"] == "FAIL"
    assert error in failed["evidence"]["error"]


def test_gptqmodel_cpu_path_never_calls_nvcc_but_needs_gxx_for_its_fast_path() -> None:
    no_nvcc, no_cc = _doc("gptqmodel-no-nvcc.json"), _doc("gptqmodel-no-compiler.json")
    assert no_nvcc["environment"]["tools"]["nvcc"] is None and no_nvcc["environment"]["tools"]["g++"]
    assert _checks(no_nvcc)["torch_kernel_pack"]["evidence"]["native_pack_extension"] is True
    assert no_cc["environment"]["tools"]["g++"] is None
    # packing falls back to Python without a compiler; the forward (torch.compile) does not
    assert _checks(no_cc)["torch_kernel_pack"]["evidence"]["native_pack_extension"] is False
    assert "using fallback path" in (FIXTURES / "gptqmodel-no-compiler.stderr.txt").read_text(encoding="utf-8")
    portable = _doc("gptqmodel-no-compiler-portable.json")
    assert portable["portable"] is True and portable["environment"]["tools"]["g++"] is None
    assert _checks(portable)["torch_kernel_forward_float16"]["evidence"]["vs_fp32"] <= 0.25


@pytest.mark.parametrize(
    ("fixture", "needle"),
    [
        ("auto-gptq-0.7.1-install.log", " + auto-gptq==0.7.1"),  # the wheel installs...
        ("auto-gptq-0.7.1-import-tf5.txt", "cannot import name 'no_init_weights'"),  # ...but nothing works
        ("auto-gptq-0.7.1-import-tf5.txt", "libcudart.so.12: cannot open shared object file"),
        ("auto-gptq-0.7.1-import-tf4.57.6.txt", "cannot import name 'PEFT_TYPE_TO_MODEL_MAPPING'"),
        ("auto-gptq-0.7.1-sdist-build.log", "AttributeError: 'NoneType' object has no attribute 'split'"),
    ],
)
def test_auto_gptq_failure_is_recorded(matrix: Matrix, fixture: str, needle: str) -> None:
    assert needle in (FIXTURES / fixture).read_text(encoding="utf-8")
    row = _row(matrix, "auto-gptq", "0.7.1")
    # Its verified evidence is the sdist the reader read, never a run: nothing of it ever worked here.
    assert (row.verified or "").startswith("sdist auto_gptq-0.7.1.tar.gz sha256 ") and row.status == "eol"
    assert "does not work" in (row.note or "") and "libcudart.so.12" in (row.note or "")


def test_llmcompressor_row_follows_the_wheel_metadata(matrix: Matrix) -> None:
    text = (FIXTURES / "llmcompressor-0.14.0.1-wheel-METADATA.txt").read_text(encoding="utf-8")
    row = _row(matrix, "llmcompressor", "0.14.0.1")
    assert "Requires-Dist: compressed-tensors==0.19.0" in text and "Requires-Python: >=3.10" in text
    declared = {str(r) for r in row.requires_dist or ()}
    assert {"compressed-tensors==0.19.0", "torch<=2.14.0,>=2.10.0", "transformers<=5.17.0,>=5.15.0"} <= declared
    for req in row.requires_dist or ():
        assert f"Requires-Dist: {req.name}" in text


def test_gptqmodel_7_6_is_the_newest_for_torch_2_13(matrix: Matrix) -> None:
    text = (FIXTURES / "gptqmodel-sdist-PKG-INFO.txt").read_text(encoding="utf-8")
    assert "Requires-Dist: torch>=2.8.0" in text and "Requires-Dist: torch>=2.14.1" in text
    def torch_of(q: QuantLib) -> str:
        return next(str(r.specifier) for r in q.requires_dist or () if r.name == "torch")

    fits = [q.version for q in matrix.quant if q.name == "gptqmodel" and "2.13.0" in SpecifierSet(torch_of(q))]
    assert max(fits, key=lambda v: tuple(int(p) for p in v.split("."))) == "7.6.0"
    unproven = _row(matrix, "gptqmodel", "7.7.0").verified or ""  # never installed anywhere: no run evidence
    assert unproven.startswith("sdist gptqmodel-7.7.0.tar.gz sha256 ") and ";" not in unproven


# --------------------------------------------------------------------------- (b) real rebuild


@pytest.mark.integration
@pytest.mark.network
def test_gptqmodel_cpu_env_builds_and_validates(tmp_path: Path) -> None:
    if not PY311.exists() or not list(WHEELHOUSE.glob("torch-2.13.0+cpu-cp311-*.whl")):
        pytest.skip(
            f"needs {PY311} and torch 2.13.0+cpu for cp311 in {WHEELHOUSE} (PyPI's torch is the 3 GB CUDA build)"
        )
    venv = tmp_path / "gptq"
    _run.run(["uv", "venv", "-q", "-p", str(PY311), str(venv)], timeout=120)
    python = venv / "bin" / "python"
    _run.run(
        [
            "uv",
            "pip",
            "install",
            "-q",
            "-p",
            str(python),
            "--find-links",
            str(WHEELHOUSE),
            "torch==2.13.0+cpu",
            "gptqmodel==7.6.0",
        ],
        timeout=300,
    )
    env = {**os.environ, "GPTQMODEL_TORCH_EXTENSIONS_DIR": str(tmp_path / "ext")}
    result = _run.run(
        [str(python), str(SCRIPT), "--library", "gptqmodel", "--portable"], env=env, timeout=240, check=False
    )
    doc = json.loads(result.stdout)
    assert result.returncode == 0, json.dumps(doc["checks"], indent=1)[-3000:]
    checks = _checks(doc)
    assert doc["environment"]["packages"]["gptqmodel"] == "7.6.0"
    assert checks["gptq_quantize"]["evidence"]["mse_gptq"] <= checks["gptq_quantize"]["evidence"]["mse_rtn"]
    for dtype in ("float16", "bfloat16"):
        assert checks[f"torch_kernel_forward_{dtype}"]["status"] == "OK"
    # The same environment through envbuilder's own smoke test, gptq profile: the tiny-layer kernel stage runs.
    from envbuilder.smoke import run_smoke

    # --quick: the tiny-layer kernel stage without the from_pretrained stages, which need the profile's optimum
    # (this environment is torch + gptqmodel only); tests/test_smoke_quant.py runs those on the profile's set.
    report = run_smoke(python, profile="gptq", quick=True)
    stages = {c.name: c for c in report.checks}
    assert report.ok, report.summary()
    assert stages["quant_lib"].status == "OK", stages["quant_lib"].detail
    assert "TorchLinear" in stages["quant_lib"].detail
    assert "bnb_import" not in stages  # no bitsandbytes in a gptq environment
