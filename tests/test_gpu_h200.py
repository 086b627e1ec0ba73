"""What the H200 runs proved (tests/fixtures/h200-cu130/README.md), checked here on their raw outputs.

Run 2 (tests/gpu/h200_run2.sh): bitsandbytes 0.49.2 passed the smoke test on the GPU, with the stages' own work
under 2 s; five failures were made live there and `envbuilder doctor --env` ran in each. The doctor is checked
two ways: its JSON as the GPU host printed it (the CLI's envbuilder.doctor/1 shape), and today's doctor on the
raw failure each time (`doctor --log`), so a rewrite of the doctor is held to the same causes and fixes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from envbuilder.cli.app import main
from envbuilder.doctor.evidence import from_smoke_document
from envbuilder.model.matrix import Matrix
from envbuilder.model.smoke import check_from_json
from envbuilder.model.target import build_target, parse_gpus

H200 = Path(__file__).parent / "fixtures" / "h200-cu130"
BROKEN = H200 / "broken"


def _json(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return doc


def _exit_code(path: Path) -> int:
    """The `exit code: N` line the device script appended to a capture."""
    return int(path.read_text(encoding="utf-8").rstrip().rsplit("exit code: ", 1)[1])


def _stages(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in doc["stages"]}


# --------------------------------------------------------------------------- bitsandbytes 0.49.2 on the GPU


@pytest.mark.parametrize("run", ["smoke.json", "smoke-again.json"])
def test_bnb_049_passed_every_stage_on_the_h200(run: str) -> None:
    doc = _json(H200 / "bnb049" / run)
    stages = _stages(doc)
    assert doc["ok"] is True and {s["status"] for s in stages.values()} == {"OK"}
    assert "bitsandbytes 0.49.2 loaded libbitsandbytes_cuda130.so" in stages["bnb_import"]["detail"]
    assert stages["cuda"]["evidence"]["devices"][0]["name"] == "NVIDIA H200"
    assert stages["interpreter"]["evidence"]["packages"]["torch"] == "2.11.0"
    llama = stages["tiny_llama"]["evidence"]["results"]["cuda:0"]
    assert llama["nf4"]["max_abs"] <= 0.5 and llama["8bit"]["max_abs"] <= 0.1
    assert llama["nf4"]["layer"] == "Linear4bit" and llama["8bit"]["layer"] == "Linear8bitLt"


@pytest.mark.parametrize("run", ["smoke.json", "smoke-again.json"])
def test_the_smokes_own_work_took_under_two_seconds_on_the_gpu(run: str) -> None:
    """Issue 17, item 5: everything but importing torch, bitsandbytes and transformers under 2 s, with the
    imports reported apart (they are most of the wall time)."""
    doc = _json(H200 / "bnb049" / run)
    seconds, imports = doc["seconds"], doc["imports"]
    assert set(imports) == {"torch", "bitsandbytes", "transformers"}
    assert seconds["stages"] < 2.0
    assert seconds["stages"] == pytest.approx(sum(s["seconds"] for s in doc["stages"]), abs=0.01)
    assert seconds["imports"] == pytest.approx(sum(imports.values()), abs=0.01)
    assert seconds["imports"] > 5 * seconds["stages"]  # what the wall time is really made of
    stages = _stages(doc)
    assert stages["bnb_import"]["seconds"] < 0.1 and stages["torch"]["seconds"] < 0.5  # imports left out


def test_the_text_output_says_imports_and_stages_apart() -> None:
    text = (H200 / "bnb049" / "smoke.txt").read_text(encoding="utf-8")
    line = next(ln for ln in text.splitlines() if ln.startswith("imports "))
    assert "(torch " in line and "bitsandbytes " in line and "transformers " in line
    assert "; stages " in line and line.endswith(": PASSED")
    assert _exit_code(H200 / "bnb049" / "smoke.txt") == 0


def test_the_gpu_document_reads_as_doctor_evidence() -> None:
    ev = from_smoke_document(_json(H200 / "bnb049" / "smoke.json"))
    assert (ev.bnb, ev.bnb_lib, ev.torch_cuda) == ("0.49.2", "libbitsandbytes_cuda130.so", "13.0")
    assert [d.cc for d in ev.devices] == ["9.0"]


def test_the_wheels_files_were_checked_against_its_record() -> None:
    text = (H200 / "bnb049" / "record-check.txt").read_text(encoding="utf-8")
    assert text.strip() == "bitsandbytes-0.49.2.dist-info/RECORD: 84 files checked, 0 differ []"


def test_the_matrix_records_bnb_049_and_the_resolver_uses_it(matrix: Matrix) -> None:
    runs = [(e.gpu, e.bitsandbytes, e.result) for e in matrix.evidence if e.torch == "2.11.0+cu130" and e.cc == "9.0"]
    assert ("NVIDIA H200", "0.49.2", "pass") in runs and ("NVIDIA H200", "0.48.2", "pass") in runs
    from envbuilder.resolve import Plan, resolve

    target = build_target(
        matrix, gpus=parse_gpus("NVIDIA H200", matrix), driver="580.159.04", pythons=("3.12",), bnb="==0.49.2"
    )
    plan = resolve(target, matrix)
    assert isinstance(plan, Plan), plan.reasons
    bnb, torch = plan.package("bitsandbytes"), plan.package("torch")
    assert bnb is not None and bnb.version == "0.49.2"
    if torch is not None and torch.version.startswith("2.11.0"):
        assert any(e.bitsandbytes == "0.49.2" and e.gpu == "NVIDIA H200" for e in plan.proven)


# --------------------------------------------------------------------------- no GPU visible: the smoke fails


@pytest.mark.parametrize(("capture", "visible"), [("novisible-smoke.txt", ""), ("novisible7-smoke.txt", "7")])
def test_a_gpu_environment_that_sees_no_gpu_fails_the_smoke_on_the_h200(capture: str, visible: str) -> None:
    """Run 1 found the smoke test PASSING on the CPU under CUDA_VISIBLE_DEVICES=''; run 2 ran the fix there."""
    text = (BROKEN / capture).read_text(encoding="utf-8")
    assert f"FAIL cuda         no GPU visible: CUDA_VISIBLE_DEVICES='{visible}'" in text
    assert "FAILED" in text and _exit_code(BROKEN / capture) == 1
    doc = _json(BROKEN / "novisible-smoke.json")
    cuda = check_from_json(_stages(doc)["cuda"])
    assert doc["ok"] is False and cuda.status == "FAIL"
    assert "unset CUDA_VISIBLE_DEVICES" in cuda.hint
    assert cuda.evidence["visible_devices"] == "" and cuda.evidence["reason"] == "No CUDA GPUs are available"


def test_run_1_recorded_the_pass_that_was_a_bug() -> None:
    text = (H200 / "failures" / "no-gpu-visible-smoke.txt").read_text(encoding="utf-8")
    assert "SKIP cuda" in text and "PASSED" in text  # what the smoke said before the fix


# --------------------------------------------------------------------------- the doctor on live failures

# (state, the raw failure a user would paste, words of the cause, words of the fix): checked on whatever rule
# names them, so the doctor's rewrite may rename its rules (issue 14)
DIAGNOSED = [
    ("nolib", "nolib-quantize-4bit.txt", "libbitsandbytes_cuda130", "bitsandbytes==0.50.2"),
    ("nolib", "nolib-python-m-bitsandbytes.txt", "libbitsandbytes_cuda130", "bitsandbytes==0.50.2"),
    ("bnbcuda126", "bnbcuda126-quantize-4bit.txt", "libcudart.so.12", "unset BNB_CUDA_VERSION"),
    ("bnbcuda126", "bnbcuda126-python-m-bitsandbytes.txt", "libcudart.so.12", "unset BNB_CUDA_VERSION"),
    ("ldpath-missing", "ldpath-missing-quantize-4bit.txt", "libcudart.so.12", "unset BNB_CUDA_VERSION"),
]


@pytest.mark.parametrize(("state", "raw", "cause", "fix"), DIAGNOSED)
def test_doctor_named_cause_and_fix_on_the_gpu_and_still_does(
    state: str, raw: str, cause: str, fix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # doctor --env on the GPU host, in that state (its JSON as printed there)
    there = _json(BROKEN / f"{state}.doctor.json")
    assert there["schema"] == "envbuilder.doctor/1" and there["ok"] is False
    assert any(f["severity"] == "FAIL" and fix in f["fix"] for f in there["findings"])
    assert _exit_code(BROKEN / f"{state}.doctor.txt") == 1
    # today's doctor on the raw failure
    rc = main(["doctor", "--log", str(BROKEN / raw), "--json"])
    findings = json.loads(capsys.readouterr().out)["findings"]
    named = [f for f in findings if f["severity"] == "FAIL" and cause in f["cause"] + f["seen"] and fix in f["fix"]]
    assert rc == 1 and named, [(f["rule"], f["cause"], f["fix"]) for f in findings]


def test_doctor_env_saw_the_stray_override_live() -> None:
    there = _json(BROKEN / "bnbcuda126.doctor.json")
    assert there["evidence"]["env"]["BNB_CUDA_VERSION"] == "126"
    rules = {f["rule"]: f for f in there["findings"]}
    assert "unset BNB_CUDA_VERSION" in rules["bnb-cuda-version-var"]["fix"]


@pytest.mark.parametrize("state", ["healthy", "ldpath-toolkit"])
def test_doctor_finds_nothing_where_nothing_failed(state: str) -> None:
    """bitsandbytes 0.49.2 healthy, and LD_LIBRARY_PATH at the toolkit's own CUDA 13.0 runtime (it ran)."""
    path = H200 / "bnb049" / "healthy.doctor.json" if state == "healthy" else BROKEN / f"{state}.doctor.json"
    assert _json(path)["findings"] == []
    if state == "ldpath-toolkit":
        assert "max abs error" in (BROKEN / "ldpath-toolkit-quantize-4bit.txt").read_text(encoding="utf-8")


# Failures the doctor did not recognise when they were made live (issue 14 has given them rules since).


def test_doctor_names_no_gpu_visible(capsys: pytest.CaptureFixture[str]) -> None:
    there = _json(BROKEN / "novisible.doctor.json")  # what doctor --env saw there: the variable, no device
    assert there["evidence"]["env"]["CUDA_VISIBLE_DEVICES"] == "" and there["evidence"]["devices"] == []
    raw = BROKEN / "novisible-quantize-4bit.txt"
    assert "RuntimeError: No CUDA GPUs are available" in raw.read_text()
    main(["doctor", "--log", str(raw), "--json"])
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert any(f["severity"] == "FAIL" and "CUDA_VISIBLE_DEVICES" in f["fix"] for f in findings)


def test_doctor_names_the_compat_driver_mismatch(capsys: pytest.CaptureFixture[str]) -> None:
    raw = BROKEN / "ldpath-compat-quantize-4bit.txt"
    assert "Error 803: system has unsupported display driver / cuda driver combination" in raw.read_text()
    main(["doctor", "--log", str(raw), "--json"])
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert any(f["severity"] == "FAIL" and "LD_LIBRARY_PATH" in f["fix"] for f in findings)


def test_doctor_names_the_torch_extension_built_for_another_torch(capsys: pytest.CaptureFixture[str]) -> None:
    raw = BROKEN / "torchext-load.txt"
    assert "undefined symbol: _ZNR5torch7Library4_def" in raw.read_text()
    main(["doctor", "--log", str(raw), "--json"])
    findings = json.loads(capsys.readouterr().out)["findings"]
    assert any(f["severity"] == "FAIL" and "torch" in f["cause"] and "rebuild" in f["fix"] for f in findings)


# --------------------------------------------------------------------------- detection without the driver


def test_detect_without_the_driver_names_the_h200_from_the_pci_bus() -> None:
    normal = json.loads((H200 / "nodriver" / "normal-detect.json").read_text().rsplit("exit code:", 1)[0])
    hidden = json.loads((H200 / "nodriver" / "nodriver-detect.json").read_text().rsplit("exit code:", 1)[0])
    assert normal["gpu_source"] == "NVML" and normal["driver"] == "580.159.04"
    assert hidden["gpu_source"] == "PCI bus" and hidden["driver"] is None
    assert [(g["pci_id"], g["cc"] or g.get("cc_by_name")) for g in hidden["gpus"]] == [("10de:2335", "9.0")]
    assert "580.65.06" in hidden["driver_advice"]
    what = (H200 / "nodriver" / "nodriver-hidden.txt").read_text()
    assert "nvidia-smi on PATH: none" in what and "NVML: NVML Shared Library Not Found" in what


# --------------------------------------------------------------------------- the logs handed to the corpus


def test_corpus_additions_are_entries_of_the_corpus_whose_facts_are_in_their_logs() -> None:
    import tomllib

    logs = Path(__file__).parent / "fixtures" / "logs"
    corpus = tomllib.loads((logs / "corpus.toml").read_text(encoding="utf-8"))
    keys = set(corpus["log"][0])
    added = tomllib.loads((H200 / "corpus-additions.toml").read_text(encoding="utf-8"))["log"]
    assert len(added) == 8
    taken = {e["file"]: e for e in corpus["log"]}
    for entry in added:
        assert set(entry) - {"fixture"} == keys, entry["file"]
        text = (H200 / entry["fixture"]).read_text(encoding="utf-8")
        assert _exit_code(H200 / entry["fixture"]) == entry["expected_exit"] == 1
        assert all(value in text for value in entry["facts"].values()), entry["file"]
        assert entry["source"].startswith("captured: ")
        # merged into the corpus (issue 14): the same entry, the log copied byte for byte
        assert taken[entry["file"]] == {k: v for k, v in entry.items() if k != "fixture"}, entry["file"]
        assert (logs / entry["file"]).read_bytes() == (H200 / entry["fixture"]).read_bytes()


# --------------------------------------------------------------------------- GPTQ/AWQ on their CUDA kernels (run 3)

QUANT = H200 / "quant-load"


def _check(file: str, name: str) -> dict[str, Any]:
    doc = _json(QUANT / file)
    assert doc["ok"] is True
    return next(c for c in doc["checks"] if c["name"] == name)


@pytest.mark.parametrize(
    ("file", "check", "kernel", "compile_at_least"),
    [
        ("gptq-exllamav2.json", "load_gptq", "gptqmodel.nn_modules.qlinear.exllamav2.ExllamaV2Linear", 20),
        ("awq-exllamav2.json", "load_awq", "gptqmodel.nn_modules.qlinear.exllamav2_awq.AwqExllamaV2Linear", 20),
        ("marlin.json", "load_gptq", "gptqmodel.nn_modules.qlinear.marlin.MarlinLinear", 100),
        ("marlin.json", "load_awq", "gptqmodel.nn_modules.qlinear.marlin_awq.AwqMarlinLinear", 0),  # shares GPTQ's
    ],
)
def test_gptq_and_awq_ran_on_their_cuda_kernels_on_the_h200(
    file: str, check: str, kernel: str, compile_at_least: float
) -> None:
    """Every quantized layer ran the named kernel on cuda:0; the first load minus the second is its JIT compile."""
    got = _check(file, check)
    assert got["status"] == "OK" and "on cuda:0" in got["detail"]
    assert set(got["evidence"]["kernels"].values()) == {kernel}
    first, second = got["evidence"]["load_seconds"]
    assert second < 1.0 and first - second >= compile_at_least
    assert "max |d logits| vs fp32 0.1" in got["detail"]


def test_compressed_tensors_loads_on_the_gpu_as_dense_layers() -> None:
    got = _check("make.json", "load_compressed-tensors")
    assert set(got["evidence"]["kernels"].values()) == {"torch.nn.modules.linear.Linear"}
    assert "decompressed to dense" in got["detail"]


def test_the_gptq_smoke_ran_its_layer_on_the_gpu_with_imports_apart() -> None:
    doc = _json(QUANT / "smoke-gptq.json")
    stages = _stages(doc)
    assert doc["ok"] is True and stages["quant_lib"]["evidence"]["device"] == "cuda:0"
    assert set(doc["imports"]) == {"torch", "gptqmodel"} and doc["seconds"]["stages"] < 2.0


def test_the_matrix_records_the_kernels_and_the_resolver_proves_gptq_and_awq_plans(matrix: Matrix) -> None:
    rows = {e.quant: e for e in matrix.evidence if e.gpu == "NVIDIA H200" and e.quant and "quant-load" in e.source}
    assert "ExllamaV2Linear" in rows["gptqmodel 7.6.0"].detail and "MarlinLinear" in rows["gptqmodel 7.6.0"].detail
    assert "AwqExllamaV2Linear" in rows["llmcompressor 0.14.0.1"].detail
    from envbuilder.resolve import Plan, resolve

    for profile, quant in (("gptq", "gptqmodel 7.6.0"), ("awq", "llmcompressor 0.14.0.1")):
        target = build_target(
            matrix, gpus=parse_gpus("NVIDIA H200", matrix), driver="580.159.04", pythons=("3.12",), profile=profile
        )
        plan = resolve(target, matrix)
        assert isinstance(plan, Plan), plan.reasons
        assert any(e.quant == quant and e.cc == "9.0" for e in plan.proven), profile


# --------------------------------------------------------------------------- bitsandbytes 0.46.1 (run 4)


def test_bnb_046_failed_at_its_library_on_the_h200_and_the_resolver_refuses_it(matrix: Matrix) -> None:
    doc = _json(H200 / "bnb046" / "smoke.json")
    stages = _stages(doc)
    assert doc["ok"] is False and stages["cuda"]["status"] == "OK"
    assert stages["bnb_library"]["status"] == stages["bnb_import"]["status"] == "FAIL"
    assert "Configured CUDA binary not found" in stages["bnb_import"]["detail"]
    assert stages["tiny_llama"]["status"] == "SKIP"
    assert "65 files checked, 0 differ" in (H200 / "bnb046" / "record-check.txt").read_text()
    doctor = {f["rule"]: f for f in _json(H200 / "bnb046" / "doctor.json")["findings"]}
    assert "bitsandbytes==0.50.2" in doctor["bnb-lib-cuda-mismatch"]["fix"]
    assert any(e.bitsandbytes == "0.46.1" and e.result == "fail" and e.gpu == "NVIDIA H200" for e in matrix.evidence)
    from envbuilder.resolve import Plan, resolve

    target = build_target(
        matrix, gpus=parse_gpus("NVIDIA H200", matrix), driver="580.159.04", pythons=("3.12",), bnb="==0.46.1"
    )
    plan = resolve(target, matrix)
    torch = plan.package("torch") if isinstance(plan, Plan) else None
    assert torch is None or not torch.version.startswith("2.11.0")  # never the stack that failed there


# ----------------------------------------------------------------- run 5: the live failures, the rewritten doctor

RUN5 = H200 / "run5" / "broken"  # tests/gpu/h200_run5.sh at a0ca319 (run 2's states, today's doctor)


@pytest.mark.parametrize(
    ("state", "rule", "layer", "fix"),
    [
        ("nolib", "bnb-load-failed", "bnb-library", "'bitsandbytes==0.50.2'"),
        ("bnbcuda126", "cuda-runtime-missing", "bnb-library", "unset BNB_CUDA_VERSION"),
        ("ldpath-missing", "cuda-runtime-missing", "bnb-library", "unset BNB_CUDA_VERSION"),
        ("ldpath-compat", "driver-libcuda-mismatch", "driver", "from LD_LIBRARY_PATH"),
        ("torchext-log", "torch-extension-abi", "torch-build", "rebuild the extension against torch 2.11.0+cu130"),
    ],
)
def test_doctor_env_named_cause_and_fix_live_on_the_h200(state: str, rule: str, layer: str, fix: str) -> None:
    """Five failures made on the GPU, diagnosed by `doctor --env` there (exit 1, the layer, the fix)."""
    doc = _json(RUN5 / f"{state}.doctor.json")
    assert _exit_code(RUN5 / f"{state}.doctor.stderr.txt") == 1
    assert doc["verdict"]["kind"] == "broken" and doc["verdict"]["layer"] == layer
    found = {f["rule"]: f for f in doc["findings"] if f["severity"] == "FAIL"}
    assert rule in found and fix in found[rule]["fix"], [(f["rule"], f["fix"]) for f in doc["findings"]]


def test_the_toolkit_runtime_on_ld_library_path_stayed_healthy_live() -> None:
    doc = _json(RUN5 / "ldpath-toolkit.doctor.json")
    assert doc["verdict"]["kind"] == "healthy" and doc["findings"] == []


def _probed(path: Path) -> Any:
    """The evidence `doctor --env` probed on the GPU host, as the doctor's own value."""
    from envbuilder.doctor import Device, Evidence

    ev = _json(path)["evidence"]
    devices = tuple(Device(**d) for d in ev["devices"]) if ev["devices"] and isinstance(ev["devices"][0], dict) else ()
    return Evidence(
        torch=ev["torch"], torch_cuda=ev["torch_cuda"], devices=devices, bnb=ev["bitsandbytes"],
        bnb_lib=ev["bnb_library"], env=ev["env"], packages=ev["packages"],
    )  # fmt: skip


def test_a_cuda_environment_that_sees_no_gpu_is_a_finding_in_env_mode(matrix: Matrix) -> None:
    """Run 5's doctor --env called CUDA_VISIBLE_DEVICES='' healthy (bitsandbytes silently on its CPU library);
    the rule added after it reads the same probed evidence and names the variable."""
    from envbuilder.doctor import Context
    from envbuilder.doctor.rules_cuda import rule_cuda_torch_sees_no_gpu

    live = _json(RUN5 / "novisible.doctor.json")
    assert live["verdict"]["kind"] == "healthy"  # the record of the miss, at a0ca319
    hidden = _probed(RUN5 / "novisible.doctor.json")
    assert hidden.env["CUDA_VISIBLE_DEVICES"] == "" and hidden.devices == ()
    (f,) = rule_cuda_torch_sees_no_gpu(Context(matrix=matrix, evidence=hidden))
    assert f.severity == "FAIL" and f.layer == "driver"
    assert "CUDA_VISIBLE_DEVICES=''" in f.cause and "libbitsandbytes_cpu.so" in f.seen
    assert f.fix.startswith("unset CUDA_VISIBLE_DEVICES")
    unset = {k: v for k, v in hidden.env.items() if k != "CUDA_VISIBLE_DEVICES"}
    (w,) = rule_cuda_torch_sees_no_gpu(Context(matrix=matrix, evidence=_replace(hidden, env=unset)))
    assert w.severity == "WARN" and "nvidia-smi" in w.fix
    healthy = _probed(RUN5 / "ldpath-toolkit.doctor.json")
    assert healthy.devices and not list(rule_cuda_torch_sees_no_gpu(Context(matrix=matrix, evidence=healthy)))


def _replace(ev: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(ev, **changes)
