"""The smoke program's user path for GPTQ/AWQ/compressed-tensors checkpoints (issue 18).

Pure: check.py's copy of which formats each profile makes and loads is profiles.toml's; its bounds are
smoke.toml's (tests/test_smoke.py); bad ``--formats`` are refused.

``integration``/``network``: the gptq and awq environments are built for real with uv from the resolver's own
plans (torch pinned to 2.13.0, whose CPU wheel is the wheelhouse's; every other pin as the plan says, from PyPI,
pip's configuration out of the way), and ``run_smoke`` runs the full smoke program in them on this CPU host:
each format is quantized, saved, loaded with ``from_pretrained`` and compared with fp32. Then, in the gptq
environment without optimum, the GPTQ stage fails with transformers' own first message (what the doctor reads).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from envbuilder.edge import _run
from envbuilder.edge.sources import read_pip_config
from envbuilder.jobs.builder import interpreter_for
from envbuilder.model.matrix import Matrix
from envbuilder.model.target import build_target, parse_gpus
from envbuilder.resolve import Plan, resolve
from envbuilder.rules.formats import quantizer_for
from envbuilder.smoke import check as check_program
from envbuilder.smoke import run_check_script, run_smoke

PY311 = Path(interpreter_for("3.11", required=False) or "/nonexistent")
WHEELHOUSE = Path(next(iter(read_pip_config().get("find-links", [])), "/nonexistent"))
CPU_TORCH = "2.13.0"
QUANT_TIMEOUT = 1800.0  # three quantizations on two busy cores: 4-7 min measured here


@pytest.mark.parametrize("profile", ["gptq", "awq"])
def test_the_programs_formats_are_the_profiles(matrix: Matrix, profile: str) -> None:
    found = matrix.profile(profile)
    assert found is not None
    both = {f.format for f in found.formats if f.load and f.make}
    assert set(check_program.QUANT_LOAD[profile]) == both
    # each format's maker is one of the profile's own packages
    assert {check_program.MAKERS[f] for f in both} <= set(found.packages)


def test_unknown_formats_are_refused() -> None:
    bad = _run.run(
        [sys.executable, str(Path(check_program.__file__)), "--profile", "gptq", "--formats", "gguf"],
        check=False,
        timeout=60,
    )
    assert bad.returncode == 2 and "--formats: unknown format 'gguf'" in bad.stderr


def test_quant_env_defaults_leave_the_users_settings() -> None:
    got = check_program.quant_env_defaults({"TORCH_COMPILE_DISABLE": "0"})
    assert "TORCH_COMPILE_DISABLE" not in got and got["GPTQMODEL_DISABLE_PACK_EXT"] == "1"
    assert ("GPTQMODEL_CPU_WORKERS" in got) == ((os.cpu_count() or 1) <= 2)


# --------------------------------------------------------------------------- real environments


def _plan(matrix: Matrix, profile: str) -> Plan:
    gpus = parse_gpus("sm_89", matrix)
    target = build_target(matrix, gpus=gpus, driver="580.95.05", profile=profile, pythons=("3.11",), torch=CPU_TORCH)
    plan = resolve(target, matrix)
    assert isinstance(plan, Plan), plan.reasons
    return plan


def _env(tmp_path: Path, plan: Plan) -> Path:
    wheel = list(WHEELHOUSE.glob(f"torch-{CPU_TORCH}+cpu-cp311-*.whl"))
    if not PY311.exists() or not wheel:
        pytest.skip(f"needs Python 3.11 and torch {CPU_TORCH}+cpu for cp311 in {WHEELHOUSE} (PyPI's is the CUDA build)")
    venv = tmp_path / plan.profile
    _run.run(["uv", "venv", "-q", "-p", str(PY311), str(venv)], timeout=120)
    pins = [p.requirement for p in plan.packages if p.name != "torch"]
    env = {k: v for k, v in os.environ.items() if k not in {"PIP_FIND_LINKS", "PIP_CERT"}}
    env["PIP_CONFIG_FILE"] = os.devnull
    argv = ["uv", "pip", "install", "-q", "-p", str(venv / "bin" / "python"), "--find-links", str(WHEELHOUSE)]
    _run.run([*argv, f"torch=={CPU_TORCH}+cpu", *pins], timeout=900, env=env)
    return venv / "bin" / "python"


@pytest.mark.integration
@pytest.mark.network
@pytest.mark.parametrize("profile", ["gptq", "awq"])
def test_the_profiles_environment_loads_what_it_makes_through_from_pretrained(
    matrix: Matrix, tmp_path: Path, profile: str
) -> None:
    plan = _plan(matrix, profile)
    python = _env(tmp_path, plan)
    report = run_smoke(python, profile=profile, timeout=QUANT_TIMEOUT)
    assert report.ok, report.summary()
    stages = {c.name: c for c in report.checks}
    for fmt in check_program.QUANT_LOAD[profile]:
        stage = stages[f"quant_load_{fmt}"]
        assert stage.status == "OK", stage.detail
        assert stage.evidence["device"] == "cpu" and 0 < stage.evidence["max_abs"] <= stage.evidence["bound"]
        assert stage.evidence["transformers"] == plan.package("transformers").version  # type: ignore[union-attr]
        if fmt == "compressed-tensors":
            assert "decompressed to dense" in stage.detail  # no int4 kernel on the CPU: the stage says so
        else:
            assert stage.evidence["kernel"].startswith("gptqmodel.")
        print(f"{profile} {fmt}: {stage.detail}")  # the figures, with -s
    if profile == "gptq":
        # The environment as the gptq profile was before issue 18: transformers refuses with its first check.
        _run.run(["uv", "pip", "uninstall", "-q", "-p", str(python), "optimum"], timeout=120)
        doc = run_check_script(python, ["--profile", "gptq", "--formats", "gptq"], timeout=QUANT_TIMEOUT)
        failed = next(s for s in doc["stages"] if s["name"] == "quant_load_gptq")
        row = quantizer_for(matrix, "gptq", plan.package("transformers").version)  # type: ignore[union-attr]
        assert row is not None
        assert failed["status"] == "FAIL" and row.errors[0] in failed["evidence"]["error"]
        assert "envbuilder doctor" in failed["hint"]


# --------------------------------------------------------------------------- JIT builds timed apart (issue 17)


def _cpp_extension_like(build: Any) -> types.ModuleType:
    """A module with torch.utils.cpp_extension's private entry point (the real one: test_gpu_h200_run6.py)."""
    module = types.ModuleType("cpp_extension_like")
    module._jit_compile = build  # type: ignore[attr-defined]
    return module


def test_watch_jit_times_each_build_and_the_stage_leaves_it_out(capfd: pytest.CaptureFixture[str]) -> None:
    def build(name: str, *_: Any, **__: Any) -> str:
        time.sleep(0.3)
        if name == "broken":
            raise RuntimeError("nvcc failed")
        return name

    module = _cpp_extension_like(build)
    state: dict[str, Any] = {"progress": True, "skipped": set()}
    assert check_program.watch_jit(state, module) is True
    assert check_program.watch_jit(state, module) is True and module._jit_compile.envbuilder_watched  # once

    def stage(s: dict[str, Any]) -> dict[str, Any]:
        module._jit_compile("kernel_ops", ["a.cu"])
        with contextlib.suppress(RuntimeError):
            module._jit_compile(name="broken")
        return check_program._stage("quant_load_gptq", "OK", "kernel MarlinLinear")

    result = check_program._run_stage("quant_load_gptq", stage, state)
    assert [(b["name"], b["ok"]) for b in result["evidence"]["jit"]] == [("kernel_ops", True), ("broken", False)]
    assert result["jit_seconds"] >= 0.6 and result["seconds"] < 0.2  # the builds are not the stage's own time
    assert result["detail"].startswith("kernel MarlinLinear [JIT build ") and "broken 0.3 s FAILED" in result["detail"]
    err = capfd.readouterr().err.splitlines()
    assert err[0] == "smoke: quant_load_gptq ..." and err[-1].startswith("smoke: quant_load_gptq OK in ")
    assert "smoke:   JIT build of torch extension kernel_ops (ninja/nvcc; minutes at first use) ..." in err
    assert any(line.startswith("smoke:   JIT build of broken FAILED in ") for line in err)
    assert check_program.watch_jit({}, None) is False  # no torch: nothing to time, no error


def test_a_stage_without_builds_carries_no_jit_fields(capfd: pytest.CaptureFixture[str]) -> None:
    state: dict[str, Any] = {"skipped": set()}  # no --progress: stderr is the libraries' text alone, as before
    check_program.watch_jit(state, _cpp_extension_like(lambda *a, **k: None))
    result = check_program._run_stage("quant_model", lambda s: check_program._stage("quant_model", "OK", "x"), state)
    assert "jit_seconds" not in result and "jit" not in result["evidence"] and result["detail"] == "x"
    assert capfd.readouterr().err == ""


def test_envbuilder_smoke_relays_the_progress_lines(tmp_path: Path) -> None:
    """The program run by envbuilder (this interpreter: no torch, so the stages are quick): its document on
    stdout, and a line per stage start and end relayed as they come."""
    seen: list[str] = []
    doc = run_check_script(Path(sys.executable), ["--quick", "--profile", "gptq"], timeout=120, progress=seen.append)
    lines = "".join(seen).splitlines()
    assert doc["schema"] == "envbuilder.smoke/1" and lines[:2] == ["smoke: interpreter ...", lines[1]]
    assert lines[1].startswith("smoke: interpreter OK in ")
    assert {f"smoke: {s['name']} ..." for s in doc["stages"] if s["name"] != "quant_load"} <= set(lines)


def test_cli_smoke_refuses_an_unknown_format(capsys: pytest.CaptureFixture[str]) -> None:
    from envbuilder.cli.app import main

    assert main(["smoke", "--profile", "gptq", "--formats", "gptq,gguf"]) == 2
    assert (
        "--formats: unknown checkpoint format 'gguf' (known: gptq, awq, compressed-tensors)" in capsys.readouterr().err
    )
