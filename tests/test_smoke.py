"""smoke: the pure pieces (arch coverage, document parsing) and a real run against a CPU environment."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest

from envbuilder.cli.app import main
from envbuilder.doctor.evidence import from_smoke_document
from envbuilder.edge import _run
from envbuilder.model.smoke import expect_for, load_smoke_table, program_text
from envbuilder.model.types import PROFILES
from envbuilder.smoke import SCRIPT, env_python, judge_sass, parse_document, run_smoke
from envbuilder.smoke import check as check_program
from envbuilder.smoke.check import choose_library, library_suffix, no_gpu_verdict, sass_for, timing_line

H100_ARCH = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]  # torch 2.11+cu130


@pytest.mark.parametrize(
    ("arch", "cc", "want"),
    [
        (H100_ARCH, "9.0", ("sm_90", None)),
        (H100_ARCH, "8.9", ("sm_86", None)),  # same major, lower minor runs
        (H100_ARCH, "6.1", (None, None)),  # Pascal: nothing in a cu130 build
        (H100_ARCH, "12.1", ("sm_120", "compute_120")),
        (["sm_80", "compute_80"], "9.0", (None, "compute_80")),  # only PTX: JIT
    ],
)
def test_sass_for(arch: list[str], cc: str, want: tuple[str | None, str | None]) -> None:
    assert sass_for(arch, cc) == want


# The libraries the real wheels ship (tests/fixtures/h100-light: the probe listed them on the H100).
FILES_050 = [
    "libbitsandbytes_cpu.so",
    "libbitsandbytes_cuda118.so",
    "libbitsandbytes_cuda121.so",
    "libbitsandbytes_cuda124.so",
    "libbitsandbytes_cuda126.so",
    "libbitsandbytes_cuda128.so",
    "libbitsandbytes_cuda130.so",
    "libbitsandbytes_cuda132.so",
    "libbitsandbytes_rocm64.so",
]
FILES_047 = [
    "libbitsandbytes_cpu.so",
    "libbitsandbytes_cuda118.so",
    "libbitsandbytes_cuda120.so",
    "libbitsandbytes_cuda126.so",
    "libbitsandbytes_cuda128.so",
    "libbitsandbytes_cuda129.so",
]


@pytest.mark.parametrize(
    ("files", "torch_cuda", "override", "want"),
    [
        (FILES_050, None, None, ("libbitsandbytes_cpu.so", "cpu")),  # CPU build or no GPU: override unread
        (FILES_050, None, "124", ("libbitsandbytes_cpu.so", "cpu")),
        (FILES_050, "13.0", None, ("libbitsandbytes_cuda130.so", "exact")),
        (FILES_050, "12.9", None, ("libbitsandbytes_cuda128.so", "nearest-same-major")),  # highest lower
        (FILES_050, "12.0", None, ("libbitsandbytes_cuda121.so", "nearest-same-major")),  # else lowest higher
        (FILES_050, "13.1", None, ("libbitsandbytes_cuda130.so", "nearest-same-major")),
        (FILES_047, "13.0", None, ("libbitsandbytes_cuda130.so", "exact")),  # never across majors: the absent file
        (FILES_047, "12.4", None, ("libbitsandbytes_cuda120.so", "nearest-same-major")),
        (FILES_050, "13.0", "124", ("libbitsandbytes_cuda124.so", "override")),
        (FILES_050, "13.0", "12.4", ("libbitsandbytes_cuda12.4.so", "override")),  # older releases paste it in
        (FILES_050, "13.0", "", ("libbitsandbytes_cuda130.so", "exact")),  # empty: as unset (0.50+ refuse it)
    ],
)
def test_choose_library(files: list[str], torch_cuda: str | None, override: str | None, want: tuple[str, str]) -> None:
    cand = choose_library(files, torch_cuda=torch_cuda, override=override, suffix=".so")
    assert (cand["name"], cand["rule"]) == want


@pytest.mark.parametrize(("system", "suffix"), [("Linux", ".so"), ("Windows", ".dll"), ("Darwin", ".dylib")])
def test_library_suffix(system: str, suffix: str) -> None:
    assert library_suffix(system) == suffix


@pytest.mark.parametrize(
    ("sass", "ptx", "cc", "status"),
    [
        (("7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0"), ("12.0",), "9.0", "OK"),
        (("7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0"), ("12.0",), "6.1", "FAIL"),
        (("7.5", "8.0", "9.0a"), ("9.0",), "10.0", "WARN"),
    ],
)
def test_judge_sass(sass: tuple[str, ...], ptx: tuple[str, ...], cc: str, status: str) -> None:
    check = judge_sass(sass, ptx, [{"index": 0, "cc": cc}], "libbitsandbytes_cuda130.so")
    assert check.status == status


# A GPU environment that sees no GPU fails with the cause (issue 17: on the H200, CUDA_VISIBLE_DEVICES='' made
# the whole smoke test pass on the CPU). Columns: torch's CUDA, profile, --require-gpu, the lock's CUDA,
# CUDA_VISIBLE_DEVICES, --light; the status and words the detail must hold.
@pytest.mark.parametrize(
    ("torch_cuda", "profile", "require", "expect_cuda", "visible", "light", "status", "words"),
    [
        ("13.0", "bnb", False, None, "", False, "FAIL", "no GPU visible: CUDA_VISIBLE_DEVICES=''"),
        ("13.0", "gptq", False, None, "7", False, "FAIL", "CUDA_VISIBLE_DEVICES='7'"),
        ("13.0", "awq", False, None, None, False, "FAIL", "CUDA 13.0 build but sees no GPU: No CUDA GPUs"),
        ("13.0", "cpu", False, None, "", False, "SKIP", "no GPU visible"),  # PyPI's CUDA torch serves cpu plans
        ("13.0", "cpu", True, None, "", False, "FAIL", "(--require-gpu: a GPU environment)"),
        ("13.0", "bnb", False, None, "", True, "SKIP", "no GPU visible"),  # doctor's probe, an image's build step
        ("13.0", "bnb", True, None, "", True, "FAIL", "no GPU visible"),  # a recipe's --require-gpu
        (None, "bnb", False, None, None, False, "SKIP", "torch is a CPU build"),  # a CPU env, default profile
        (None, "cpu", False, "13.0", "", False, "FAIL", "the lock's torch is a CUDA 13.0 build"),
        (None, "cpu", True, None, None, False, "FAIL", "no GPU: torch is a CPU build (--require-gpu)"),
    ],
)
def test_no_gpu_verdict(
    torch_cuda: str | None,
    profile: str,
    require: bool,
    expect_cuda: str | None,
    visible: str | None,
    light: bool,
    status: str,
    words: str,
) -> None:
    got, detail, hint = no_gpu_verdict(
        torch_cuda=torch_cuda,
        profile=profile,
        require_gpu=require,
        expect_cuda=expect_cuda,
        visible=visible,
        reason="No CUDA GPUs are available",
        light=light,
    )
    assert (got, words in detail) == (status, True), detail
    assert bool(hint) or got == "SKIP"  # every failure says what to do
    if visible is not None and torch_cuda is not None and got == "FAIL":
        assert "unset CUDA_VISIBLE_DEVICES" in hint


def test_imports_are_timed_apart_from_the_stage() -> None:
    """A stage's seconds leave out what it imported; the document's imports say how long each took."""
    import time

    sys.modules.pop("wave", None)  # a standard module nothing here imports, so the import really runs
    state: dict[str, object] = {"imports": {}}

    def stage(st: dict[str, object]) -> dict[str, object]:
        check_program.timed_import(st, "wave")
        time.sleep(0.05)
        return check_program._stage("probe", "OK", "ran")

    got = check_program._run_stage("probe", stage, state)
    assert 0.05 <= got["seconds"] < 1.0
    assert got["import_seconds"] == state["imports"]["wave"] > 0  # type: ignore[index]
    doc = {"imports": {"torch": 4.0, "bitsandbytes": 7.5}, "seconds": {"imports": 11.5, "stages": 1.3, "total": 12.9}}
    assert timing_line(doc) == "imports 11.5 s (torch 4.0, bitsandbytes 7.5); stages 1.3 s; total 12.9 s"
    assert timing_line({}) == "imports 0.0 s; stages 0.0 s; total 0.0 s"  # a harness failure's document


@pytest.mark.parametrize(
    ("stdout", "error"),
    [
        ("", "the smoke script printed no JSON document"),
        ('{"schema": "other/1"}\n', "unexpected smoke document schema 'other/1'"),
    ],
)
def test_parse_document_refuses(stdout: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_document(stdout)


def test_script_imports_nothing_from_envbuilder() -> None:
    text = SCRIPT.read_text(encoding="utf-8")
    assert "envbuilder." not in text.replace("envbuilder.smoke/1", "").replace("envbuilder.smoke-expect/1", "")
    assert "import envbuilder" not in text


def test_the_programs_bounds_are_the_matrix_table() -> None:
    """check.py (stdlib only) keeps a copy of matrices/smoke.toml's bounds for runs by hand: they agree."""
    check = check_program
    assert {stage: dict(metrics) for stage, metrics in check.BOUNDS.items()} == load_smoke_table().bounds_json()
    assert check.PROFILES == PROFILES


def test_each_bound_is_the_strictest_in_use_before_issue_12() -> None:
    # check.py nf4 0.15 / fp4 0.20; the image's own smoke nf4 < 0.2; the recipes nf4 and fp4 < 0.25.
    bounds = load_smoke_table().bounds_json()["quant4"]
    assert bounds == {"nf4": min(0.15, 0.2, 0.25), "fp4": min(0.20, 0.25)}


def test_bounds_given_to_the_program_are_checked(tmp_path: Path) -> None:
    script = tmp_path / "check.py"
    script.write_text(program_text(), encoding="utf-8")
    bad = _run.run([sys.executable, str(script), "--bounds", '{"quant4": {"nf5": 0.1}}'], check=False, timeout=60)
    assert bad.returncode != 0 and "unknown bound quant4.nf5 (known: nf4, fp4)" in bad.stderr


def test_env_python_refuses_a_directory_that_is_no_venv(tmp_path: Path) -> None:
    from envbuilder.model.errors import TargetError

    with pytest.raises(TargetError, match="not a virtual environment"):
        env_python(env=tmp_path)


# --------------------------------------------------------------------------- a real CPU environment


@pytest.fixture(scope="session")
def cpu_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real venv for the session: torch CPU (pip's find-links wheelhouse) + bitsandbytes 0.50.2 from PyPI."""
    from envbuilder.edge.sources import read_pip_config
    from envbuilder.edge.uv import find_uv

    links = read_pip_config().get("find-links", [])
    if not any(Path(d).is_dir() and any(Path(d).glob("torch-*+cpu-*.whl")) for d in links):
        pytest.skip("no wheelhouse with a CPU torch in pip's find-links (the PyTorch index is unreachable here)")
    env = tmp_path_factory.mktemp("smoke") / "env"
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
            "bitsandbytes==0.50.2",
            "transformers",
            "accelerate",
            *flinks,
        ],
        timeout=900,
    )
    return env


@pytest.mark.integration
@pytest.mark.network
def test_smoke_passes_on_cpu_env(cpu_env: Path) -> None:
    report = run_smoke(env_python(env=cpu_env))
    status = {c.name: c.status for c in report.checks}
    assert report.ok, report.summary()
    assert status == {
        "interpreter": "OK",
        "torch": "OK",
        "cuda": "SKIP",
        "torch_arch": "SKIP",
        "bnb_library": "OK",
        "bnb_import": "OK",
        "bnb_sass": "SKIP",
        "bnb_kernels": "SKIP",
        "quant4": "OK",
        "linear": "OK",
        "tiny_llama": "OK",
        "vram": "SKIP",
    }
    llama = next(c for c in report.checks if c.name == "tiny_llama").evidence["results"]["cpu"]
    assert llama["nf4"]["layer"] == "Linear4bit" and llama["8bit"]["layer"] == "Linear8bitLt"
    assert llama["nf4"]["max_abs"] <= 0.5 and llama["8bit"]["max_abs"] <= 0.1
    ev = from_smoke_document(report.document)
    assert (ev.bnb, ev.bnb_lib, ev.torch_cuda) == ("0.50.2", "libbitsandbytes_cpu.so", None)
    # the light probe's prediction (no import) names the file the real import loaded
    by = {c.name: c.evidence for c in report.checks}
    assert by["bnb_library"]["candidate"]["path"] == by["bnb_import"]["library"]["path"]
    assert by["bnb_library"]["imported"] is False and ev.bnb_imported
    assert report.record()["result"] == "pass"
    # imports apart from the stages (issue 17): each stage's seconds leave its imports out
    doc = report.to_json()
    assert set(doc["imports"]) >= {"torch", "bitsandbytes", "transformers"}
    assert doc["seconds"]["imports"] == pytest.approx(sum(doc["imports"].values()), abs=0.01)
    assert doc["seconds"]["stages"] == pytest.approx(
        sum(c.seconds for c in report.checks if c.name != "bnb_sass"), abs=0.01
    )
    assert by["tiny_llama"]["build_seconds"] > 0 and llama["nf4"]["load_seconds"] > 0
    assert report.timing().startswith("imports ") and "; stages " in report.timing()


@pytest.mark.integration
@pytest.mark.network
def test_bounds_from_the_table_decide(cpu_env: Path) -> None:
    """The runner hands the matrix's bounds to the program: a bound below what bitsandbytes reaches fails."""
    strict = {"quant4": {"nf4": 0.001}}
    report = run_smoke(env_python(env=cpu_env), quick=True, bounds=strict)
    quant4 = next(c for c in report.checks if c.name == "quant4")
    assert quant4.status == "FAIL" and "nf4 mean error" in quant4.detail and "> 0.001" in quant4.detail
    assert dict(quant4.evidence["bounds"]) == {"nf4": 0.001, "fp4": 0.2}


@pytest.mark.integration
@pytest.mark.network
def test_expectation_of_a_plan_holds_in_its_environment(cpu_env: Path, tmp_path: Path) -> None:
    """What images and recipes run: versions, imports and the library the lock names, in a real environment."""
    python = env_python(env=cpu_env)
    expect = expect_for(
        {"torch": "2.13.0+cpu", "bitsandbytes": "0.50.2"},
        ["torch==2.13.0+cpu", "bitsandbytes==0.50.2"],
        cuda=None,
        bnb_library="libbitsandbytes_cpu.so",
        exact=False,
        table=load_smoke_table(),
    )
    (tmp_path / "expect.json").write_text(expect.to_json(), encoding="utf-8")
    argv = [str(python), str(SCRIPT), "--quick", "--text", "--profile", "cpu"]
    argv += ["--expect", str(tmp_path / "expect.json")]
    result = _run.run(argv, check=False, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok   versions: 2 packages, at the plan's versions" in result.stdout
    assert "ok   imports: imported torch, bitsandbytes" in result.stdout
    assert "smoke: ok (quick, cpu profile)" in result.stdout
    # A lock for another CUDA build of torch, and a library bitsandbytes does not ship, both fail.
    wrong = dataclasses.replace(expect, cuda="12.8", bnb_library="libbitsandbytes_cuda999.so")
    (tmp_path / "expect.json").write_text(wrong.to_json(), encoding="utf-8")
    result = _run.run(argv, check=False, timeout=900)
    assert result.returncode == 1
    assert "FAIL torch: torch 2.13.0+cpu is built for CUDA None, the lock says 12.8" in result.stdout
    # --require-gpu (a recipe for a GPU plan): no GPU is a failure.
    (tmp_path / "expect.json").write_text(expect.to_json(), encoding="utf-8")
    result = _run.run([*argv, "--require-gpu"], check=False, timeout=900)
    assert result.returncode == 1 and "FAIL cuda: no GPU: torch is a CPU build (--require-gpu)" in result.stdout
    # A GPU plan's expectation (the lock's torch is a CUDA build) in an environment that sees no GPU: a failure
    # with its cause, not a pass on the CPU (issue 17).
    gpu = dataclasses.replace(expect, cuda="13.0", packages={}, imports=())
    (tmp_path / "expect.json").write_text(gpu.to_json(), encoding="utf-8")
    argv_bnb = [
        str(python),
        str(SCRIPT),
        "--quick",
        "--text",
        "--profile",
        "bnb",
        "--expect",
        str(tmp_path / "expect.json"),
    ]
    result = _run.run(argv_bnb, check=False, timeout=900, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 1
    assert "FAIL cuda: no GPU: torch is a CPU build (the lock's torch is a CUDA 13.0 build)" in result.stdout
    assert "smoke: FAILED (quick, bnb profile)" in result.stdout


@pytest.mark.integration
@pytest.mark.network
def test_cli_smoke_json_quick(cpu_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["smoke", "--env", str(cpu_env), "--json", "--quick"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "envbuilder.smoke/1"
    assert doc["ok"] is True and doc["doctor"] == []
    assert "tiny_llama" not in {s["name"] for s in doc["stages"]}


@pytest.mark.integration
@pytest.mark.network
def test_cli_doctor_on_healthy_env(cpu_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--env", str(cpu_env), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [f["rule"] for f in doc["findings"]] in ([], ["kernels-hub-warning"])


@pytest.mark.integration
@pytest.mark.network
def test_profile_gptq_skips_when_library_absent(cpu_env: Path) -> None:
    report = run_smoke(env_python(env=cpu_env), quick=True, profile="gptq")
    lib = next(c for c in report.checks if c.name == "quant_lib")
    assert lib.status == "SKIP"
    assert "envbuilder create --profile gptq" in lib.hint


def test_a_torch_that_fails_to_import_skips_the_cuda_stage(tmp_path: Path) -> None:
    """torch's own import error is the finding (the torch stage FAILs with it); the GPU stages after it SKIP
    with the reason instead of failing on a KeyError (GPU run 6 showed `cuda: KeyError: 'torch'`)."""
    import json

    script = tmp_path / "check.py"
    script.write_text(program_text(), encoding="utf-8")
    fake = tmp_path / "site" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('libtorch_cuda.so: cannot open shared object file')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = _run.run([sys.executable, "-S", str(script), "--light", "--json"], check=False, timeout=120, env=env)
    stages = {s["name"]: s for s in json.loads(result.stdout)["stages"]}
    assert stages["torch"]["status"] == "FAIL" and "libtorch_cuda.so" in stages["torch"]["detail"]
    assert stages["cuda"]["status"] == "SKIP", stages["cuda"]
    assert "stage 'torch' did not pass" in stages["cuda"]["detail"]
    assert "KeyError" not in result.stdout
