"""The resolve and matrix commands, in-process: exit codes, whole stderr for bad input, --json, --version."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envbuilder import __version__
from envbuilder.cli.app import main
from envbuilder.model.matrix import Matrix


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """main(argv) -> (exit code, stdout, stderr); argparse's own usage errors arrive as SystemExit."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "stderr"),
    [
        (
            ["resolve", "--gpu", "RTX 6000"],
            "envbuilder: --gpu 'RTX 6000' is ambiguous: sm_75 (Turing): Quadro RTX 6000/8000, Quadro RTX 6000; "
            "sm_89 (Ada Lovelace): RTX 6000 Ada Generation; sm_120 (Blackwell): RTX PRO 6000 Blackwell Workstation "
            "Edition, RTX PRO 6000 Blackwell Max-Q Workstation Edition, RTX PRO 6000 Blackwell Server Edition\n"
            "TIP give the full product name, its PCI id or the compute capability (e.g. sm_89)\n",
        ),
        (
            ["resolve", "--gpu", "sm_89", "--driver", "abc"],
            "envbuilder: --driver 'abc' is not an NVIDIA driver version\n"
            "TIP write it as nvidia-smi prints it, e.g. 550.54.14 (Linux) or 576.02 (Windows)\n",
        ),
        (
            ["resolve", "--gpu", "sm_89", "--profile", "qlora"],
            "envbuilder: --profile 'qlora' is not one of: bnb, gptq, awq, cpu\n"
            "TIP bnb (bitsandbytes/QLoRA), gptq, awq or cpu\n",
        ),
        (
            ["resolve", "--gpu", "sm_89", "--python", "2.7"],
            "envbuilder: --python '2.7' is not a CPython version\nTIP write it as 3.N, e.g. --python 3.11\n",
        ),
        (
            ["resolve", "--gpu", "Tesla M4x"],
            "envbuilder: --gpu 'Tesla M4x': no GPU of that name in the matrix\n"
            "TIP give the compute capability instead (nvidia-smi --query-gpu=compute_cap --format=csv)\n",
        ),
        (
            ["resolve", "--gpu", "AMD Radeon PRO W7900"],
            "envbuilder: --gpu 'AMD Radeon PRO W7900': ROCm/AMD GPUs are not supported: envbuilder's matrix "
            "covers NVIDIA CUDA builds only\nTIP name an NVIDIA GPU (sm_89, 8.9, 'RTX 4090'), or use --gpu cpu\n",
        ),
        (
            ["resolve", "--gpu", "sm_89", "--os", "macos"],
            "envbuilder: --os macos is not supported: there is no CUDA on macOS\nTIP use --os linux, wsl2 or windows\n",
        ),
        (
            ["resolve", "--gpu", "sm_89", "--torch", "latest"],
            "envbuilder: --torch 'latest' is not a version or a version range\n"
            "TIP write it like --torch 2.10.0 or --torch '>=2.8,<2.12'\n",
        ),
        (
            ["resolve", "--gpu", "cpu", "--profile", "bnb"],
            "envbuilder: --profile bnb needs an NVIDIA GPU, and the target has none\n"
            "TIP name the GPU with --gpu (e.g. --gpu sm_89), or use --profile cpu\n",
        ),
        (
            ["create", "--gpu", "cpu", "--lock-out", "team.lock.toml"],
            "envbuilder: --lock-out team.lock.toml: 'team.lock.toml' is not a PEP 751 lock name (pylock.toml or "
            "pylock.<name>.toml, <name> without dots); uv and pip refuse it\n"
            "TIP use --lock-out pylock.team-lock.toml\n",
        ),
        (
            ["lock", "--gpu", "cpu", "-o", "out/pylock.cpu-py3.11.toml"],
            "envbuilder: --output out/pylock.cpu-py3.11.toml: 'pylock.cpu-py3.11.toml' is not a PEP 751 lock name "
            "(pylock.toml or pylock.<name>.toml, <name> without dots); uv and pip refuse it\n"
            "TIP use --output out/pylock.cpu-py311.toml\n",
        ),
        (
            ["resolve", "--gpu", "sm_89", "--bogus"],
            "envbuilder: error: unrecognized arguments: --bogus\nTIP run `envbuilder --help` for the options\n",
        ),
    ],
)
def test_bad_input_is_one_line_and_a_tip_exit_2(
    argv: list[str], stderr: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(argv, capsys)
    assert (code, out, err) == (2, "", stderr)


def test_plan_exit_0_and_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["resolve", "--gpu", "sm_89", "--driver", "550.54.14", "--python", "3.12"], capsys)
    assert (code, err) == (0, "")
    assert out.splitlines()[:3] == [
        "plan: bnb profile, Python 3.12, CUDA 12.6 (cu126)",
        "  torch==2.14.1+cu126   from https://download.pytorch.org/whl/cu126",
        "  bitsandbytes==0.50.2  from pypi",
    ]
    assert "  bitsandbytes will load libbitsandbytes_cuda126.so" in out


def test_no_plan_exit_1_with_nearest(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["resolve", "--gpu", "sm_61", "--driver", "470.82.01", "--torch", ">=2.9"], capsys)
    assert (code, err) == (1, "")
    assert out.startswith(
        "no plan: no combination of torch, bitsandbytes and companions works for sm_61 driver 470.82.01"
    )
    assert "nearest workable alternatives:\n  * with a driver >= 525.60.13: torch==2.14.1+cu126" in out


def test_json_plan_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["resolve", "--gpu", "RTX 5090", "--driver", "570.86.10", "--python", "3.12", "--json"], capsys)
    doc = json.loads(out)
    assert code == 0
    assert {"schema", "profile", "python", "cuda", "packages", "reasons", "rejected"} <= set(doc)
    assert (doc["schema"], doc["profile"], doc["python"], doc["cuda"]) == (
        "envbuilder.plan/1",
        "bnb",
        "3.12",
        "12.8",
    )
    assert [{k: p[k] for k in ("name", "version", "index")} for p in doc["packages"][:2]] == [
        {"name": "torch", "version": "2.11.0+cu128", "index": "https://download.pytorch.org/whl/cu128"},
        {"name": "bitsandbytes", "version": "0.50.2", "index": "pypi"},
    ]
    assert all(set(r) == {"candidate", "why"} for r in doc["rejected"])


def test_json_no_plan_and_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["resolve", "--gpu", "sm_120", "--driver", "535.104.05", "--json"], capsys)
    doc = json.loads(out)
    assert (code, doc["ok"], doc["cuda"], doc["packages"]) == (1, False, None, [])
    assert doc["nearest"]
    code, out, _ = _run(["resolve", "--gpu", "cpu", "--python", "3.12", "--json"], capsys)
    assert code == 0 and json.loads(out)["cuda"] is None


def test_version_prints_tool_and_matrix_date(matrix: Matrix, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["--version"], capsys)
    assert (code, out, err) == (0, f"envbuilder {__version__} (matrix {matrix.date})\n", "")


def test_matrix_check(matrix: Matrix, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["matrix", "check", "--json"], capsys)
    doc = json.loads(out)
    assert (code, doc["schema"], doc["ok"], doc["digest"]) == (
        0,
        "envbuilder.matrix-check/1",
        True,
        matrix.digest,
    )
    code, out, _ = _run(["matrix", "check"], capsys)
    assert code == 0 and out.startswith(f"matrix OK ({matrix.date}, digest {matrix.digest[:12]}): ")


# Strings users might type, plus anything at all. Explicit --gpu never probes the host.
FUZZ = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "auto",
            "cpu",
            "sm_89",
            "8.9",
            "RTX 4090",
            "sm_",
            "sm_0",
            "0.0",
            "99.9",
            ",",
            "3.",
            "..",
            "-1",
        ]
    ),
    st.text(max_size=20),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(option=st.sampled_from(["--gpu", "--driver", "--python", "--profile"]), value=FUZZ)
def test_any_string_ends_in_0_1_or_2_never_a_traceback(
    option: str, value: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if option == "--gpu" and value.strip().lower() == "auto":
        value = "sm_89"  # "auto" probes this host: detect's own tests cover it
    argv = ["resolve", "--gpu", "sm_89", "--driver", "580.95.05"]
    argv += [f"{option}={value}"]  # --opt=value: a value starting with '-' is still a value
    code, _, err = _run(argv, capsys)
    assert code in {0, 1, 2}
    assert "Traceback" not in err
    if code == 2:
        assert err.startswith("envbuilder: ") and "\nTIP " in err
