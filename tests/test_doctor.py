"""doctor: rules on real logs (tests/fixtures/logs, see its README), rules on evidence, the CLI, and a real env."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from envbuilder.cli.app import main
from envbuilder.doctor import (
    DOCTOR_SCHEMA,
    RULE_MODULES,
    Context,
    Device,
    Evidence,
    diagnose,
    doctor_json,
    load_rules,
)
from envbuilder.doctor.evidence import from_log, from_smoke_document
from envbuilder.doctor.loader import expected_library, judge
from envbuilder.doctor.logs import max_memory_for
from envbuilder.doctor.rules_bnb import Facts, pick_bnb
from envbuilder.edge import _run
from envbuilder.model.matrix import Matrix

LOGS = Path(__file__).parent / "fixtures" / "logs"
LIGHT = Path(__file__).parent / "fixtures" / "h100-light"
WINDOWS = Path(__file__).parent / "fixtures" / "windows"

# (fixture, rule that must fire, severity, a piece of the fix that must be there)
LOG_CASES = [
    # captured here
    (
        "transformers-5.24-bnb-0.45.5-4bit-importerror.txt",
        "transformers-min-bnb",
        "FAIL",
        "bitsandbytes==0.50.2",
    ),
    (
        "transformers-5.24-bnb-0.45.5-8bit-importerror.txt",
        "transformers-min-bnb",
        "FAIL",
        "bitsandbytes==0.50.2",
    ),
    ("transformers-5.24-bnb-0.46.1-fp4-cpu.txt", "nf4-only-on-cpu", "FAIL", "bnb_4bit_quant_type='nf4'"),
    ("bnb-0.45.5-python-m-bitsandbytes-cpu.txt", "torch-cpu-build", "FAIL", "CUDA build of torch"),
    ("bnb-0.45.5-quantize_4bit-cpu.txt", "no-cpu-4bit", "FAIL", "bitsandbytes=="),
    ("bnb-0.45.3-import-glibcxx.txt", "glibc-too-old", "FAIL", "bitsandbytes=="),
    ("bnb-0.45.4-import-no-cpu-lib.txt", "bad-release", "FAIL", "bitsandbytes=="),
    ("bnb-0.45.4-quantize_blockwise-cpu.txt", "bad-release", "FAIL", "bitsandbytes=="),
    ("bnb-0.44.1-triton-3.9-import.txt", "triton-ops", "FAIL", "bitsandbytes=="),
    ("bnb-0.50.2-python-m-bitsandbytes-cpu.txt", "kernels-hub-warning", "INFO", "harmless"),
    # quoted from public issues
    (
        "gh-bnb-1688-configured-cuda-binary-cu129.txt",
        "bnb-lib-cuda-mismatch",
        "FAIL",
        "BNB_CUDA_VERSION=128",
    ),
    ("gh-bnb-1848-cuda131-native-method.txt", "bnb-lib-cuda-mismatch", "FAIL", "BNB_CUDA_VERSION=130"),
    ("gh-bnb-pr1689-could-not-find-cuda129.txt", "bnb-lib-cuda-mismatch", "FAIL", "libbitsandbytes_cuda129"),
    ("gh-bnb-1559-cuda-setup-failed-cu124.txt", "bnb-lib-cuda-mismatch", "FAIL", "libbitsandbytes_cuda124"),
    ("gh-bnb-551-cuda122-libcudart.txt", "old-cudart-scan", "WARN", "LD_LIBRARY_PATH"),
    ("gh-bnb-680-undefined-symbol-cpu-lib.txt", "cpu-lib-undefined-symbol", "FAIL", "bitsandbytes=="),
    ("gh-bnb-310-no-kernel-image-ops-cu.txt", "bnb-no-kernel", "FAIL", "envbuilder create"),
    ("gh-bnb-382-named-symbol-ops-cu.txt", "named-symbol", "FAIL", "loads libbitsandbytes_cuda121.so"),
    ("gh-bnb-1199-libcusparse-colab.txt", "cuda-runtime-missing", "FAIL", "nvidia-cusparse-cu11"),
    ("gh-bnb-1524-windows-dll.txt", "windows-dll", "FAIL", "--os wsl2"),
    ("gh-bnb-1610-glibc-2.34.txt", "glibc-too-old", "FAIL", "bitsandbytes=="),
    ("gh-bnb-1180-bnb-cuda-version-override.txt", "bnb-cuda-version-var", "WARN", "unset BNB_CUDA_VERSION"),
    ("gh-exllamav2-457-exllama-kernels-abi.txt", "extension-torch-abi", "FAIL", "the gptq profile loads GPTQ"),
    ("gh-autoawq-214-awq-engine-abi.txt", "extension-torch-abi", "FAIL", "the awq profile loads AWQ"),
    ("gh-sdwebui-nix-9-sm120-torch.txt", "torch-arch", "FAIL", "--gpu sm_120"),
    ("gh-llamatuner-91-oom-quantize-4bit.txt", "oom-4bit-load", "FAIL", "max_memory={0: '33GiB'}"),
]


@pytest.mark.parametrize(("name", "rule", "severity", "fix"), LOG_CASES, ids=[c[0] for c in LOG_CASES])
def test_log_rules_on_real_logs(matrix: Matrix, name: str, rule: str, severity: str, fix: str) -> None:
    text = (LOGS / name).read_text(encoding="utf-8")
    findings = {f.rule: f for f in diagnose(Context(matrix=matrix, log=text))}
    assert rule in findings, sorted(findings)
    f = findings[rule]
    assert f.severity == severity
    assert fix in f.fix
    assert f.seen.removesuffix("...") in text  # quoted verbatim from the log


def test_every_fixture_is_cited_and_tested() -> None:
    readme = (LOGS / "README.md").read_text(encoding="utf-8")
    files = {p.name for p in LOGS.glob("*.txt")}
    # The folder also holds the wider corpus (corpus.toml, checked by test_log_corpus.py); these are its rule cases.
    assert {c[0] for c in LOG_CASES} <= files
    for name in files:
        row = next(line for line in readme.splitlines() if line.startswith(f"| {name} |"))
        assert "captured:" in row or "https://github.com/" in row


def test_healthy_log_has_no_failure(matrix: Matrix) -> None:
    text = (LOGS / "bnb-0.50.2-python-m-bitsandbytes-cpu.txt").read_text(encoding="utf-8")
    assert not [f for f in diagnose(Context(matrix=matrix, log=text)) if f.severity != "INFO"]


@pytest.mark.parametrize(
    ("name", "cause"),
    [
        # A harmless warning's note says the stack works itself: the verdict is its cause, as it is.
        (
            "gh-llamafactory-2132-matmul8bitlt-bf16-warning.txt",
            "the stack looks fine: bitsandbytes' int8 matmul computes in float16 and casts bfloat16 inputs (a "
            "warning, not an error)",
        ),
        # Any other note on a working stack (the Hub-kernel message, layer "healthy" too) is said to be one.
        (
            "bnb-0.50.2-python-m-bitsandbytes-cpu.txt",
            "the stack looks fine; note: bitsandbytes >= 0.49 tries an optional Hub kernel on AVX512-BF16 CPUs; "
            "without the `kernels` package it logs this and uses its own CPU kernels",
        ),
    ],
)
def test_a_note_that_says_the_stack_works_is_the_verdict(matrix: Matrix, name: str, cause: str) -> None:
    from envbuilder.doctor.verdict import verdict

    text = (LOGS / name).read_text(encoding="utf-8")
    answer = verdict(diagnose(Context(matrix=matrix, log=text)), from_log(text, matrix), text)
    assert (answer.kind, answer.cause) == ("healthy", cause)


@pytest.mark.parametrize(
    ("name", "bnb", "torch", "torch_cuda", "sm", "vram"),
    [
        ("bnb-0.50.2-python-m-bitsandbytes-cpu.txt", "0.50.2", "2.13.0+cpu", None, None, None),
        ("gh-sdwebui-nix-9-sm120-torch.txt", None, None, None, "12.0", None),
        ("gh-llamatuner-91-oom-quantize-4bit.txt", None, None, None, None, 39.45),
        ("gh-bnb-1688-configured-cuda-binary-cu129.txt", None, None, None, None, None),
    ],
)
def test_facts_from_log(
    matrix: Matrix,
    name: str,
    bnb: str | None,
    torch: str | None,
    torch_cuda: str | None,
    sm: str | None,
    vram: float | None,
) -> None:
    ev = from_log((LOGS / name).read_text(encoding="utf-8"), matrix)
    assert (ev.bnb, ev.torch, ev.torch_cuda, (ev.ccs or (None,))[0], ev.vram_gib) == (bnb, torch, torch_cuda, sm, vram)


@pytest.mark.parametrize(("gib", "want"), [(24.0, "20GiB"), (79.2, "67GiB"), (8.0, "6GiB")])
def test_max_memory_leaves_headroom(gib: float, want: str) -> None:
    assert max_memory_for(gib) == want


# --------------------------------------------------------------------------- rules on evidence (pure)

H100 = Device(index=0, name="NVIDIA H100 80GB HBM3", cc="9.0", vram_bytes=85 * 10**9)
P40 = Device(index=0, name="Tesla P40", cc="6.1", vram_bytes=24 * 2**30)


def _ev(**kw: object) -> Evidence:
    base: dict[str, object] = {
        "python": "3.11.7",
        "system": "Linux",
        "machine": "x86_64",
        "libc": "glibc-2.36",
        "packages": {"transformers": "5.24.0"},
    }
    base.update(kw)
    return Evidence(**base)  # type: ignore[arg-type]


EVIDENCE_CASES = [
    # torch upgraded to cu130 under bnb 0.47.0 (no cuda130 lib; 0.46-0.49 raise at first call)
    (
        "torch-upgrade",
        _ev(torch="2.11.0+cu130", torch_cuda="13.0", devices=(H100,), bnb="0.47.0"),
        "bnb-lib-cuda-mismatch",
        "FAIL",
        "bitsandbytes==0.50.2",
    ),
    # Pascal under a cu128 torch: bnb's cu128 library starts at sm_70, and no release fixes that
    (
        "pascal-cu128",
        _ev(torch="2.8.0+cu128", torch_cuda="12.8", devices=(P40,), bnb="0.50.2"),
        "bnb-no-kernel",
        "FAIL",
        "envbuilder create --gpu sm_61",
    ),
    (
        "bnb-cuda-version-empty",
        _ev(
            torch="2.11.0+cu130",
            torch_cuda="13.0",
            devices=(H100,),
            bnb="0.50.2",
            env={"BNB_CUDA_VERSION": ""},
        ),
        "bnb-cuda-version-var",
        "FAIL",
        "unset",
    ),
    (
        "bnb-cuda-version-other",
        _ev(
            torch="2.11.0+cu130",
            torch_cuda="13.0",
            devices=(H100,),
            bnb="0.50.2",
            env={"BNB_CUDA_VERSION": "128"},
        ),
        "bnb-cuda-version-var",
        "WARN",
        "unset",
    ),
    (
        "transformers5-old-bnb",
        _ev(torch="2.13.0+cpu", bnb="0.45.5"),
        "transformers-min-bnb",
        "FAIL",
        "bitsandbytes==0.50.2",
    ),
    (
        "mixed",
        _ev(
            torch="2.13.0+cpu",
            bnb="0.50.2",
            packages={"bitsandbytes": "0.50.2", "auto-gptq": "0.7.1", "transformers": "5.24.0"},
        ),
        "mixed-quant-libs",
        "FAIL",
        "envbuilder create --profile gptq",
    ),
    (
        "nf4-only-cpu",
        _ev(torch="2.13.0+cpu", bnb="0.46.1"),
        "nf4-only-on-cpu",
        "WARN",
        "bitsandbytes==0.50.2",
    ),
    (
        "old-glibc",
        _ev(
            torch="2.7.0+cu126",
            torch_cuda="12.6",
            devices=(H100,),
            bnb="0.45.5",
            libc="glibc-2.31",
            python="3.10.12",
        ),
        "glibc-too-old",
        "FAIL",
        "bitsandbytes==",
    ),
    (
        "triton",
        _ev(
            torch="2.6.0+cu124",
            torch_cuda="12.4",
            devices=(H100,),
            bnb="0.44.1",
            python="3.10.12",
            packages={"triton": "3.2.0"},
        ),
        "triton-ops",
        "FAIL",
        "bitsandbytes==",
    ),
    (
        "avoid",
        _ev(torch="2.6.0+cpu", bnb="0.45.4", python="3.10.12"),
        "bad-release",
        "FAIL",
        "bitsandbytes==",
    ),
    (
        "windows-fork",
        _ev(
            torch="2.6.0+cu124",
            torch_cuda="12.4",
            bnb="0.41.1",
            system="Windows",
            machine="AMD64",
            packages={"bitsandbytes-windows": "0.37.5"},
        ),
        "windows-dll",
        "FAIL",
        "uninstall",
    ),
]


@pytest.mark.parametrize(("case", "ev", "rule", "severity", "fix"), EVIDENCE_CASES, ids=[c[0] for c in EVIDENCE_CASES])
def test_rules_on_evidence(matrix: Matrix, case: str, ev: Evidence, rule: str, severity: str, fix: str) -> None:
    findings = {f.rule: f for f in diagnose(Context(matrix=matrix, evidence=ev, python="/env/bin/python"))}
    assert rule in findings, (case, sorted(findings))
    assert findings[rule].severity == severity
    assert fix in findings[rule].fix


def test_healthy_evidence_has_no_findings(matrix: Matrix) -> None:
    ev = _ev(
        torch="2.11.0+cu130",
        torch_cuda="13.0",
        devices=(H100,),
        bnb="0.50.2",
        packages={"bitsandbytes": "0.50.2", "transformers": "5.24.0"},
    )
    assert diagnose(Context(matrix=matrix, evidence=ev)) == ()


def test_fix_commands_target_the_env(matrix: Matrix) -> None:
    ev = _ev(torch="2.11.0+cu130", torch_cuda="13.0", devices=(H100,), bnb="0.47.0")
    f = next(
        f
        for f in diagnose(Context(matrix=matrix, evidence=ev, python="/e/bin/python"))
        if f.rule == "bnb-lib-cuda-mismatch"
    )
    assert f.commands == (("uv", "pip", "install", "--python", "/e/bin/python", "bitsandbytes==0.50.2"),)
    assert "loads libbitsandbytes_cuda130.so" in f.fix


@pytest.mark.parametrize(
    ("torch", "cuda", "ccs", "python", "want"),
    [
        ("2.13.0+cpu", None, (), "3.11", "0.50.2"),
        ("2.11.0+cu130", "13.0", ("9.0",), "3.11", "0.50.2"),
        ("2.3.1+cu121", "12.1", ("8.6",), "3.10", "0.49.2"),  # 0.50 needs torch >= 2.4
        ("2.8.0+cu128", "12.8", ("6.1",), "3.11", None),  # no bnb cu128 library has Pascal SASS
    ],
)
def test_pick_bnb(
    matrix: Matrix, torch: str, cuda: str | None, ccs: tuple[str, ...], python: str, want: str | None
) -> None:
    f = Facts(
        bnb=None,
        torch=torch,
        torch_cuda=cuda,
        ccs=ccs,
        python=python,
        platform="linux-x86_64",
    )
    rel = pick_bnb(matrix, f)
    assert (rel.version if rel else None) == want


def test_rules_are_registered_in_one_list() -> None:
    assert "envbuilder.doctor.rules_bnb" in RULE_MODULES
    assert len(load_rules()) >= 20


def test_json_document(matrix: Matrix) -> None:
    text = (LOGS / "gh-bnb-1610-glibc-2.34.txt").read_text(encoding="utf-8")
    doc = doctor_json(diagnose(Context(matrix=matrix, log=text)), source="log", evidence=None)
    assert doc["schema"] == DOCTOR_SCHEMA
    assert doc["ok"] is False
    assert set(doc["findings"][0]) == {"rule", "severity", "layer", "seen", "cause", "fix", "commands"}


# --------------------------------------------------------------------------- the light probe (no bnb import)

# (document from the H100, rules that must fire with their severity, what the release loads, a piece of a fix)
LIGHT_CASES = [
    ("light-bnb0.50.2-unset.json", {}, "libbitsandbytes_cuda130.so", ""),
    (
        "light-bnb0.50.2-124.json",
        {"cuda-runtime-missing": "FAIL", "bnb-cuda-version-var": "WARN", "bnb-load-failed": "FAIL"},
        None,
        "unset BNB_CUDA_VERSION",
    ),
    (
        "light-bnb0.50.2-empty.json",
        {"bnb-cuda-version-var": "FAIL", "bnb-load-failed": "FAIL"},
        None,
        "unset BNB_CUDA_VERSION",
    ),
    (
        "light-bnb0.47.0.json",
        {"bnb-lib-cuda-mismatch": "FAIL", "bnb-load-failed": "FAIL"},
        None,
        "bitsandbytes==0.50.2",
    ),
]


@pytest.mark.parametrize(("name", "rules", "loads", "fix"), LIGHT_CASES, ids=[c[0] for c in LIGHT_CASES])
def test_rules_on_real_light_probe(
    matrix: Matrix, name: str, rules: dict[str, str], loads: str | None, fix: str
) -> None:
    ev = from_smoke_document(json.loads((LIGHT / name).read_text(encoding="utf-8")))
    assert ev.bnb_imported is False and ev.bnb_candidate is not None
    found = {f.rule: f for f in diagnose(Context(matrix=matrix, evidence=ev, python="/e/bin/python"))}
    assert {r: f.severity for r, f in found.items()} == rules
    assert judge(matrix, ev).bnb_lib == loads
    assert all(fix in f.fix for f in found.values() if f.severity == "FAIL")


def test_light_probe_and_real_import_agree_on_the_h100() -> None:
    doc = json.loads((LIGHT / "smoke-quick-bnb0.47.0.json").read_text(encoding="utf-8"))
    stages = {s["name"]: s for s in doc["stages"]}
    assert stages["bnb_library"]["status"] == stages["bnb_import"]["status"] == "FAIL"
    assert "Configured CUDA binary not found" in stages["bnb_import"]["detail"]
    assert stages["bnb_library"]["evidence"]["candidate"]["name"] == "libbitsandbytes_cuda130.so"


def _shipped(matrix: Matrix, version: str) -> tuple[str, ...]:
    rel = matrix.bnb_release(version)
    assert rel is not None
    return ("libbitsandbytes_cpu.so", *(f"libbitsandbytes_cuda{c.replace('.', '')}.so" for c in rel.cuda_libs))


@pytest.mark.parametrize(
    ("bnb", "torch_cuda", "override", "cand", "want"),
    [
        # the release's loader rule decides whether the probe's loader-neutral candidate is what loads
        ("0.50.2", "12.9", None, ("libbitsandbytes_cuda128.so", "nearest-same-major"), "libbitsandbytes_cuda128.so"),
        ("0.46.0", "12.9", None, ("libbitsandbytes_cuda128.so", "nearest-same-major"), None),  # exact-or-error
        ("0.45.5", "12.9", None, ("libbitsandbytes_cuda128.so", "nearest-same-major"), "libbitsandbytes_cpu.so"),
        ("0.47.0", "12.8", None, ("libbitsandbytes_cuda128.so", "exact"), "libbitsandbytes_cuda128.so"),
        ("0.47.0", "12.8", "", ("libbitsandbytes_cuda128.so", "exact"), "libbitsandbytes_cuda128.so"),  # ignored
        ("0.50.2", "13.0", "", ("libbitsandbytes_cuda130.so", "exact"), None),  # digits only since 0.50
        ("0.50.2", "13.0", "12.4", ("libbitsandbytes_cuda12.4.so", "override"), None),
        ("0.47.0", "12.8", "12.4", ("libbitsandbytes_cuda12.4.so", "override"), "libbitsandbytes_cuda12.4.so"),
        ("0.50.2", "13.0", "124", ("libbitsandbytes_cuda124.so", "override"), "libbitsandbytes_cuda124.so"),
        ("0.50.2", None, "124", ("libbitsandbytes_cpu.so", "cpu"), "libbitsandbytes_cpu.so"),
    ],
)
def test_expected_library(
    matrix: Matrix, bnb: str, torch_cuda: str | None, override: str | None, cand: tuple[str, str], want: str | None
) -> None:
    candidate = {"name": cand[0], "rule": cand[1], "exact": None, "shipped": _shipped(matrix, bnb)}
    loads, why = expected_library(
        matrix.bnb_release(bnb), bnb, candidate, override=override, torch_cuda=torch_cuda, suffix=".so"
    )
    assert loads == want, why


@pytest.mark.parametrize(
    ("bnb", "value", "devices", "severity", "cause"),
    [
        ("0.50.2", "12.4", (H100,), "FAIL", "accepts digits only"),
        ("0.50.2", "", (), "WARN", "accepts digits only"),  # read only when torch sees a GPU
        ("0.47.0", "12.4", (H100,), "FAIL", "libbitsandbytes_cuda12.4.so, which no release ships"),
        ("0.50.2", "999", (H100,), "FAIL", "which bitsandbytes 0.50.2 does not ship"),
        ("0.50.2", "128", (H100,), "WARN", "needs its own CUDA runtime"),
    ],
)
def test_bnb_cuda_version_var_by_release(
    matrix: Matrix, bnb: str, value: str, devices: tuple[Device, ...], severity: str, cause: str
) -> None:
    ev = _ev(
        torch="2.11.0+cu130",
        torch_cuda="13.0",
        devices=devices,
        bnb=bnb,
        env={"BNB_CUDA_VERSION": value},
        bnb_shipped=_shipped(matrix, bnb),
    )
    f = next(f for f in diagnose(Context(matrix=matrix, evidence=ev)) if f.rule == "bnb-cuda-version-var")
    assert (f.severity, f.fix.startswith("unset BNB_CUDA_VERSION")) == (severity, True)
    assert cause in f.cause


@pytest.mark.parametrize(("env", "layer"), [({}, "driver"), ({"WSL_DISTRO_NAME": "Ubuntu-24.04"}, "platform")])
def test_wsl_distro_name_from_the_environment(matrix: Matrix, env: dict[str, str], layer: str) -> None:
    # a real paste with nothing in it that says WSL: only the environment's WSL_DISTRO_NAME can tell
    log = (WINDOWS / "gh-alpaca-lora-227-wsl2-libcuda-not-found.txt").read_text(encoding="utf-8")
    ev = _ev(torch="2.11.0+cu130", torch_cuda="13.0", bnb="0.50.2", env=env)
    f = next(f for f in diagnose(Context(matrix=matrix, evidence=ev, log=log)) if f.rule == "wsl-libcuda")
    assert (f.severity, f.layer) == ("FAIL", layer)  # no libcuda: nothing runs on the GPU, WSL2 or not


# --------------------------------------------------------------------------- the CLI


def test_cli_log_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["doctor", "--log", str(LOGS / "gh-bnb-1688-configured-cuda-binary-cu129.txt"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert doc["schema"] == "envbuilder.doctor/1"
    assert doc["findings"][0]["rule"] == "bnb-lib-cuda-mismatch"


def test_cli_log_healthy_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--log", str(LOGS / "bnb-0.50.2-python-m-bitsandbytes-cpu.txt")]) == 0
    assert "kernels-hub-warning" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["doctor", "--log", "/nonexistent/log.txt"],
            "envbuilder: --log /nonexistent/log.txt: cannot read it",
        ),
        (
            ["doctor", "--env", "/nonexistent/env"],
            "envbuilder: --env /nonexistent/env: not a virtual environment",
        ),
    ],
)
def test_cli_bad_input_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert "\nTIP " in err


# --------------------------------------------------------------------------- a real broken environment


@pytest.fixture(scope="session")
def old_bnb_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real venv: CPU torch + bitsandbytes 0.45.5 + transformers 5 (the B14 failure), built with uv."""
    from envbuilder.edge.sources import read_pip_config
    from envbuilder.edge.uv import find_uv

    links = read_pip_config().get("find-links", [])
    if not any(Path(d).is_dir() and any(Path(d).glob("torch-*+cpu-*.whl")) for d in links):
        pytest.skip("no wheelhouse with a CPU torch in pip's find-links (the PyTorch index is unreachable here)")
    env = tmp_path_factory.mktemp("doctor") / "env"
    uv = find_uv()
    _run.run([uv, "venv", "-q", "-p", "3.11", str(env)], timeout=120)
    flinks = [a for d in links for a in ("--find-links", d)]
    _run.run(
        [
            uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(env / "bin" / "python"),
            "torch==2.13.0+cpu",
            "bitsandbytes==0.45.5",
            "transformers",
            "accelerate",
            *flinks,
        ],
        timeout=900,
    )
    return env


@pytest.mark.integration
@pytest.mark.network
def test_doctor_on_real_env(old_bnb_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["doctor", "--env", str(old_bnb_env), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1
    rules = {f["rule"]: f for f in doc["findings"]}
    assert "transformers-min-bnb" in rules
    assert re.search(r"uv pip install --python \S+ 'bitsandbytes==0\.50\.2'", rules["transformers-min-bnb"]["fix"])
    assert doc["evidence"]["bitsandbytes"] == "0.45.5"


@pytest.mark.integration
@pytest.mark.network
def test_fix_refuses_foreign_env_without_asking(old_bnb_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # stdin is not a terminal under pytest: the question cannot be answered, so nothing is changed
    assert main(["doctor", "--env", str(old_bnb_env), "--fix", "--yes"]) == 2
    out = capsys.readouterr()
    assert "was not built by envbuilder (no envbuilder.json)" in out.out
    py = old_bnb_env / "bin" / "python"
    still = _run.run([str(py), "-c", "import importlib.metadata as m; print(m.version('bitsandbytes'))"])
    assert still.stdout.strip() == "0.45.5"


# --------------------------------------------------------------------------- GPTQ/AWQ load path (issue 18, item 4)

QUANT_LOAD = Path(__file__).parent / "fixtures" / "quant-load"


@pytest.mark.parametrize(
    ("fixture", "stage", "fmt", "needs"),
    [
        # captured on the CPU host by tests/quant_load_validate.py (tests/fixtures/quant-load/README.md)
        ("awq-current.json", 2, "awq", "gptqmodel"),  # today's awq plan: no gptqmodel
        ("awq-current.json", 3, "gptq", "optimum"),
        ("gptq-current.json", 3, "compressed-tensors", "compressed-tensors"),
    ],
)
def test_quantizer_refusals_answer_with_the_profile_that_loads_the_format(
    matrix: Matrix, fixture: str, stage: int, fmt: str, needs: str
) -> None:
    check = json.loads((QUANT_LOAD / fixture).read_text(encoding="utf-8"))["checks"][stage]
    findings = diagnose(Context(matrix=matrix, log=check["evidence"]["error"]))
    f = next(f for f in findings if f.rule == "quantizer-requires")
    loads = [p.name for p in matrix.profiles for row in p.formats if row.format == fmt and row.load]
    assert loads, f"the matrix names no profile that loads {fmt}"
    want = fmt if fmt in loads else loads[0]  # the profile named after the format where it loads it
    assert (f.severity, f.layer) == ("FAIL", "companion")
    assert needs in f.cause and f"--profile {want}" in f.fix
    assert f.seen in check["evidence"]["error"]


# --------------------------------------------------------------------------- bounded work on big logs


def test_reduced_log_below_the_cap_is_the_trigger_lines() -> None:
    from envbuilder.doctor import load_triggers
    from envbuilder.doctor.logs import reduced_log, relevant_lines

    text = (LOGS / "gh-bnb-1688-configured-cuda-binary-cu129.txt").read_text(errors="replace") * 3
    assert reduced_log(text, load_triggers()) == (relevant_lines(text, load_triggers()), 0)


def test_reduced_log_past_the_cap_keeps_whole_lines_of_its_head_and_tail() -> None:
    from envbuilder.doctor.logs import reduced_log

    lines = [f"{i:07d} CUDA error: out of memory at step {i}" for i in range(5000)]
    text, skipped = reduced_log("\n".join(lines), ("cuda",), cap=20_000)
    kept = text.split("\n")
    assert kept[0] == lines[0] and kept[-1] == lines[-1]  # the first occurrences and the fatal last line
    assert len(text) <= 20_000
    assert skipped == len(lines) - len(kept) > 4000
    from envbuilder.doctor.logs import BIG_LOG

    # at the shipped cap a reduced log is no longer than the size that triggers a reduction: never reduced twice
    assert len(reduced_log("\n".join(lines * 3), ("cuda",))[0]) <= BIG_LOG
    head = [k for k in kept if lines.index(k) < len(lines) // 2]
    assert head == lines[: len(head)] and kept[len(head) :] == lines[len(lines) - (len(kept) - len(head)) :]


def test_a_log_of_megabytes_of_distinct_stack_lines_is_read_bounded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The worst case of the benchmark (every line distinct, most naming the stack): the rules read the head and
    the tail of its trigger lines, say how many they skipped, and still name the cause the log ends with."""
    real = (LOGS / "gh-bnb-1688-configured-cuda-binary-cu129.txt").read_text(errors="replace")
    noise = "\n".join(f"{i:7d} torch.cuda step {i}: loss 0.{i:05d}" for i in range(60_000))  # ~2.5 MB, distinct
    log = tmp_path / "big.log"
    log.write_text(noise + "\n" + real, encoding="utf-8")
    rc = main(["doctor", "--log", str(log), "--json"])
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert rc == 1
    assert doc["findings"][0]["rule"] == "bnb-lib-cuda-mismatch"
    assert re.search(r"read the first and last 128 KiB of them, skipped \d{4,} lines between", out.err), out.err


def test_relevant_lines_keep_the_order_of_first_appearance_across_ascii_and_wide_lines() -> None:
    from envbuilder.doctor.logs import relevant_lines

    text = "\n".join(
        [
            "step 1 ████ 10%",  # a progress bar: not ASCII, no trigger
            "CUDA error: no kernel image",
            "🚀 loading bitsandbytes",  # not ASCII, a trigger
            "loss 0.1",
            "CUDA error: no kernel image",  # a repeat
            "Traceback: CUDA SETUP failed",  # upper case
            "🚀 loading bitsandbytes",
        ]
    )
    assert relevant_lines(text, ("cuda", "bitsandbytes")).split("\n") == [
        "CUDA error: no kernel image",
        "🚀 loading bitsandbytes",
        "Traceback: CUDA SETUP failed",
    ]
    ascii_only = "\n".join(line for line in text.split("\n") if line.isascii())
    kept = relevant_lines(ascii_only, ("cuda",)).split("\n")
    assert kept == ["CUDA error: no kernel image", "Traceback: CUDA SETUP failed"]
