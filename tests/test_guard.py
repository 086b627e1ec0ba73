"""The guard and drift (issue 15), without building a stack: the pure rules as tables, the activation scripts
uv really writes (edited, sourced by real shells, restored byte for byte), and drift against a real uv lock.

The whole scenario (build, stray installs with uv and pip refused, upgrade) is tests/test_keep_known_good.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from envbuilder.doctor.drift import changes, drift_findings, torch_cuda
from envbuilder.edge import guard as edge_guard
from envbuilder.model import guard
from envbuilder.model.matrix import Matrix

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LOCKS = Path(__file__).parent / "fixtures" / "locks"
# uv's own lock of torch 2.10.0 (PyPI's cu128 build) with bitsandbytes 0.50.2 (see fixtures/locks/README.md)
TORCH210 = LOCKS / "pylock.uv-torch210-py311.toml"


def _locked(path: Path) -> dict[str, str]:
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    return {p["name"]: p["version"] for p in doc["packages"]}


@pytest.mark.parametrize(
    ("name", "layer"),
    [
        ("torch", True),
        ("bitsandbytes", True),
        ("Transformers", True),
        ("accelerate", True),
        ("peft", True),
        ("gptqmodel", True),
        ("auto_gptq", True),
        ("autoawq", True),
        ("llmcompressor", True),
        ("triton", True),
        ("nvidia-cublas-cu12", True),
        ("nvidia_cudnn_cu12", True),
        ("cuda-bindings", True),
        ("numpy", False),
        ("datasets", False),
        ("safetensors", False),
        ("torchvision", False),  # pinned through torch: its METADATA requires torch==X exactly
    ],
)
def test_stack_layers(name: str, layer: bool) -> None:
    assert guard.is_layer(name) is layer


def test_every_package_a_profile_names_is_a_layer(matrix: Matrix) -> None:
    """The layer list in code agrees with the data: nothing a profile holds or forbids is left unguarded."""
    named = {n for p in matrix.profiles for n in (*p.packages, *p.forbidden)}
    assert named and all(guard.is_layer(n) for n in named), sorted(n for n in named if not guard.is_layer(n))


def test_constraints_of_a_real_lock() -> None:
    pins = guard.guarded_pins(_locked(TORCH210))
    assert "torch==2.10.0" in pins and "bitsandbytes==0.50.2" in pins and "triton==3.6.0" in pins
    assert any(p.startswith("nvidia-cublas-cu12==") for p in pins) and any(
        p.startswith("cuda-bindings==") for p in pins
    )
    assert not any(p.startswith(("numpy==", "safetensors==", "tokenizers==")) for p in pins)
    text = guard.constraints_text("bnb-cu128", pins, lock_file="pylock.bnb-cu128.toml")
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any("envbuilder upgrade bnb-cu128" in line for line in header)
    assert any("envbuilder unguard bnb-cu128" in line for line in header)
    body = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert body == list(pins)


@pytest.fixture(scope="module")
def uv_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv exactly as uv writes it (the scripts envbuilder's environments carry)."""
    from envbuilder.edge.uv import find_uv

    env = tmp_path_factory.mktemp("guard") / "env"
    subprocess.run([find_uv(), "venv", "--quiet", "--relocatable", "--python", sys.executable, str(env)], check=True)
    return env


def test_blocks_go_in_and_come_out_byte_for_byte(uv_venv: Path, tmp_path: Path) -> None:
    env = tmp_path / "env"
    shutil.copytree(uv_venv, env, symlinks=True)
    scripts = {s: (env / "bin" / s).read_bytes() for s in guard.activation_blocks() if (env / "bin" / s).is_file()}
    assert {"activate", "activate.fish", "activate.ps1"} <= scripts.keys()
    result = edge_guard.apply(env, name="t", packages={"torch": "2.13.0+cpu"}, lock_file="pylock.t.toml", final=env)
    assert result is not None and result.pins == ("torch==2.13.0+cpu",) and not result.notes
    assert set(result.scripts) == set(scripts)
    for name in scripts:
        text = (env / "bin" / name).read_bytes().decode()
        assert text.count("envbuilder guard") == (4 if name in {"activate", "activate.fish", "activate.ps1"} else 2)
        assert guard.with_blocks(name, text) == text  # a second guard changes nothing
    assert (env / "pip.conf").read_text().splitlines()[1:3] == [
        "[install]",
        f"constraint = {env}/{guard.CONSTRAINTS_FILE}",
    ]
    assert edge_guard.env_variables(env) == {
        "UV_CONSTRAINT": str(env / guard.CONSTRAINTS_FILE),
        "PIP_CONSTRAINT": str(env / guard.CONSTRAINTS_FILE),
    }
    removed = edge_guard.remove(env)
    assert guard.CONSTRAINTS_FILE in removed and "pip.conf" in removed
    assert {s: (env / "bin" / s).read_bytes() for s in scripts} == scripts
    assert not (env / "pip.conf").exists() and edge_guard.env_variables(env) == {}


def test_the_bat_scripts_keep_single_crlf_line_ends(uv_venv: Path, tmp_path: Path) -> None:
    """uv writes activate.bat/deactivate.bat with CRLF; the guard's blocks follow, and no line end is doubled
    (the files are written with newline="", so native Windows does not translate their LF again)."""
    env = tmp_path / "env"
    shutil.copytree(uv_venv, env, symlinks=True)
    bats = [env / "bin" / s for s in ("activate.bat", "deactivate.bat")]
    assert all(b"\r\n" in p.read_bytes() for p in bats)
    assert edge_guard.apply(env, name="t", packages={"torch": "2.13.0+cpu"}, lock_file="pylock.t.toml", final=env)
    for path in bats:
        data = path.read_bytes()
        assert b"envbuilder guard" in data and b"\r\r" not in data
        assert data.count(b"\n") == data.count(b"\r\n"), path.name


def test_a_path_with_whitespace_gets_no_guard(uv_venv: Path) -> None:
    """UV_CONSTRAINT, PIP_CONSTRAINT and pip.conf values are split on whitespace: such a path cannot carry it."""
    assert edge_guard.apply(uv_venv, name="t", packages={}, lock_file="x", final=Path("/tmp/my env")) is None


def test_a_script_without_deactivate_is_left_alone() -> None:
    assert guard.with_blocks("activate", "echo hello\n") is None
    assert guard.with_blocks("activate.csh", "anything") is None


SHELLS = {
    "bash": (
        "activate",
        '. {script}; echo "$UV_CONSTRAINT|$PIP_CONSTRAINT"; deactivate; '
        'echo "${{UV_CONSTRAINT-unset}}|${{PIP_CONSTRAINT-unset}}"',
    ),
    "zsh": (
        "activate",
        '. {script}; echo "$UV_CONSTRAINT|$PIP_CONSTRAINT"; deactivate; '
        'echo "${{UV_CONSTRAINT-unset}}|${{PIP_CONSTRAINT-unset}}"',
    ),
    "fish": (
        "activate.fish",
        'source {script}; echo "$UV_CONSTRAINT|$PIP_CONSTRAINT"; deactivate; '
        "set -q UV_CONSTRAINT; and echo -n $UV_CONSTRAINT; or echo -n unset; echo -n '|'; "
        "set -q PIP_CONSTRAINT; and echo $PIP_CONSTRAINT; or echo unset",
    ),
    "pwsh": (
        "activate.ps1",
        '. {script}; Write-Output "$env:UV_CONSTRAINT|$env:PIP_CONSTRAINT"; deactivate; '
        "Write-Output \"$(if (Test-Path env:UV_CONSTRAINT) {{$env:UV_CONSTRAINT}} else {{'unset'}})|"
        "$(if (Test-Path env:PIP_CONSTRAINT) {{$env:PIP_CONSTRAINT}} else {{'unset'}})\"",
    ),
}


@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_activation_puts_the_guard_in_force_and_deactivate_restores(shell: str, uv_venv: Path, tmp_path: Path) -> None:
    """Sourced by the real shell: both variables name the environment's file; deactivate gives back what the
    user had (UV_CONSTRAINT set before) and removes what was not set (PIP_CONSTRAINT)."""
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed here (the text of its block is checked by the byte-for-byte test)")
    env = tmp_path / "env"
    shutil.copytree(uv_venv, env, symlinks=True)
    assert edge_guard.apply(env, name="t", packages={"torch": "1"}, lock_file="x", final=env) is not None
    script_name, program = SHELLS[shell]
    argv = [exe, "-NoProfile", "-Command"] if shell == "pwsh" else [exe, "-c"]
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "UV_CONSTRAINT": "/mine.txt"}
    out = subprocess.run(
        [*argv, program.format(script=env / "bin" / script_name)],
        capture_output=True,
        text=True,
        env=base,
        check=True,
        cwd=tmp_path,
    ).stdout.split()
    file = str(env.resolve() / guard.CONSTRAINTS_FILE)
    assert out[-2:] == [f"{file}|{file}", "/mine.txt|unset"]


# --------------------------------------------------------------------------- drift


def test_drift_names_the_torch_that_replaced_the_lock_and_what_bitsandbytes_loads(matrix: Matrix) -> None:
    """The field guide's first failure: torch upgraded under bitsandbytes (the issue's own example)."""
    locked = _locked(TORCH210)
    installed = {**locked, "torch": "2.14.1+cu130", "triton": "3.7.0"}
    found = drift_findings(matrix, installed, locked, env="bnb", sync=("envbuilder", "sync", "/e/pylock.toml"))
    assert [f.rule for f in found] == ["stack-drift"] and found[0].severity == "FAIL"
    assert found[0].seen.startswith(
        "torch 2.14.1+cu130 replaced the locked 2.10.0: bitsandbytes will load libbitsandbytes_cuda130.so"
    )
    assert "triton 3.7.0 replaced the locked 3.6.0" in found[0].seen
    assert "envbuilder sync /e/pylock.toml" in found[0].fix and "envbuilder upgrade bnb" in found[0].fix
    assert found[0].commands == (("envbuilder", "sync", "/e/pylock.toml"),)


def test_drift_outside_the_layers_is_a_warning_and_an_added_package_is_none(matrix: Matrix) -> None:
    locked = _locked(TORCH210)
    installed = {**locked, "numpy": "9.9.9", "datasets": "4.0.0"}
    found = drift_findings(matrix, installed, locked, env="x", sync=("envbuilder", "sync", "l"))
    assert [(f.rule, f.severity) for f in found] == [("package-drift", "WARN")]
    assert "numpy 9.9.9 replaced the locked" in found[0].seen and "datasets" not in found[0].seen
    assert drift_findings(matrix, locked, locked, env="x", sync=("s",)) == ()


@pytest.mark.parametrize(
    ("installed", "locked", "expected"),
    [
        ({"torch": "2"}, {"torch": "1"}, [("torch", "changed", True)]),
        ({}, {"peft": "0.1"}, [("peft", "removed", True)]),
        ({"Bitsandbytes": "0.50.2"}, {"bitsandbytes": "0.50.2"}, []),
        ({"nvidia-nccl-cu13": "2"}, {}, [("nvidia-nccl-cu13", "added", True)]),
        ({"rich": "1"}, {}, []),
        (
            {"numpy": "2", "torch": "2"},
            {"numpy": "1", "torch": "1"},
            [("torch", "changed", True), ("numpy", "changed", False)],
        ),
    ],
)
def test_changes(installed: dict[str, str], locked: dict[str, str], expected: list[tuple[str, str, bool]]) -> None:
    assert [(c.name, c.kind, c.layer) for c in changes(installed, locked)] == expected


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("2.14.1+cu130", (True, "13.0")),
        ("2.13.0+cpu", (True, None)),
        ("2.10.0", (True, "12.8")),
        ("9.9.9", (False, None)),
    ],
)
def test_torch_cuda(matrix: Matrix, version: str, expected: tuple[bool, str | None]) -> None:
    assert torch_cuda(matrix, version, "linux-x86_64") == expected


def test_upgrade_and_unguard_refuse_bad_input_with_one_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from envbuilder.cli.app import main

    assert main(["upgrade", "cpu", "--home", str(tmp_path)]) == 2
    assert "say what moves: --torch SPEC, --bnb SPEC or --latest" in capsys.readouterr().err
    assert main(["upgrade", "nope", "--home", str(tmp_path), "--latest"]) == 2
    assert main(["unguard", "nope", "--home", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("no environment named 'nope'") == 2 and "Traceback" not in err
