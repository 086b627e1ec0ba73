"""The typed job layer (jobs/): typed requests in, result dataclasses out, and the dry run's command lines are
the ones the real run executes. Real uv, real venvs, real wheels (the CPU build from pip's wheelhouse here)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from envbuilder.edge import _run
from envbuilder.edge.settings import Settings
from envbuilder.jobs import create as create_job
from envbuilder.jobs import lock as lock_job
from envbuilder.jobs import plan as plan_job
from envbuilder.jobs import recipe as recipe_job
from envbuilder.jobs import sync as sync_job
from envbuilder.model.errors import CheckFailed, LockError, TargetError
from envbuilder.model.lock import read_lock
from envbuilder.model.matrix import Matrix
from envbuilder.model.target import build_target, parse_gpus
from envbuilder.resolve import Sources


def test_no_plan_is_a_check_failure_that_carries_the_reasons(matrix: Matrix) -> None:
    # An RTX 5090 (sm_120) on driver 535: no driver of that branch knows the GPU (a pure check, no sources read).
    target = build_target(matrix, gpus=parse_gpus("sm_120", matrix), driver="535.230.02", pythons=("3.12",))
    with pytest.raises(plan_job.NoPlanFound) as caught:
        plan_job.plan(target, matrix, Sources(pytorch_index=None), what="the 5090")
    assert caught.value.exit_code == 1
    assert caught.value.message == "no known-good combination for the 5090"
    assert caught.value.no_plan.reasons
    nearest = caught.value.no_plan.nearest
    assert caught.value.hint == (nearest[0] if nearest else "see the reasons above")


@pytest.mark.integration
@pytest.mark.network
def test_the_lock_job_returns_what_it_wrote(matrix: Matrix, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", cache_dir=tmp_path / "cache")
    target = build_target(matrix, gpus=parse_gpus("sm_90", matrix), driver="580.65.06", pythons=("3.12",))
    out = tmp_path / "pylock.h100.toml"
    said: list[str] = []
    request = lock_job.LockRequest(target=target, name="h100", output=out)
    result = lock_job.lock(request, matrix, settings, progress=said.append)
    written = read_lock(out)
    assert (result.name, result.path, result.changes) == ("h100", out, None)
    assert (result.packages, result.digest) == (len(written.packages), written.tool.digest)
    assert [p.requirement for p in result.plan.packages] == list(written.tool.pins)
    assert any("uv pip compile" in s for s in said)
    again = lock_job.lock(lock_job.LockRequest(target=target, name="h100", output=out, upgrade=True), matrix, settings)
    assert again.changes == () and again.digest == result.digest


def _uv_steps(calls: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    """The uv commands a build ran, the binary called ``uv`` and the random parts of temporary names masked."""
    steps = []
    for argv in calls:
        step = list(argv[1:3]) if argv[1] == "pip" else argv[1:2]
        if Path(argv[0]).name != "uv" or step not in (["pip", "compile"], ["pip", "sync"], ["venv"]):
            continue
        text = [re.sub(r"(\.tmp-|envbuilder-lock-\d+-)[0-9a-z_]{8}(?=/|$)", r"\g<1>XXXXXXXX", str(a)) for a in argv[1:]]
        steps.append(("uv", *text))
    return steps


@pytest.mark.integration
@pytest.mark.network
def test_the_dry_run_shows_the_commands_create_runs(
    matrix: Matrix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_create import WHEELHOUSE  # skips, saying why, where pip's wheelhouse has no CPU torch

    assert WHEELHOUSE is not None
    settings = Settings(home=tmp_path / "home", cache_dir=tmp_path / "cache", find_links=(WHEELHOUSE,), refresh=True)
    target = build_target(matrix, gpus=(), pythons=("3.11",), profile="cpu")
    lock_out = tmp_path / "pylock.jobs.toml"
    request = create_job.CreateRequest(target=target, name="jobs", lock_out=lock_out, smoke=False)
    prepared = create_job.prepare(request, matrix, settings)
    assert (prepared.name, prepared.dest, prepared.lock_path) == ("jobs", settings.env_path("jobs"), lock_out)
    shown = create_job.commands(prepared, settings)
    assert shown.reused is None  # refresh: uv resolves
    assert not lock_out.exists() and not prepared.dest.exists()  # the dry run wrote nothing

    calls: list[Sequence[str]] = []
    real = _run.run

    def recording(argv: Sequence[Any], *args: Any, **kwargs: Any) -> _run.Result:
        calls.append([str(a) for a in argv])
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(_run, "run", recording)
    result = create_job.create(prepared, settings)
    assert (result.name, result.path, result.lock, result.smoke) == ("jobs", prepared.dest, lock_out, None)
    assert read_lock(lock_out).tool.name == "jobs" and (prepared.dest / "pylock.toml").is_file()
    uv_shown = [c for c in shown.argv if c[0] == "uv"]
    assert [c[1:3] for c in uv_shown] == [("pip", "compile"), ("venv", "--quiet"), ("pip", "sync")]
    assert _uv_steps(calls) == uv_shown
    assert [c[0] for c in shown.argv[len(uv_shown) :]] == ["mv"]  # no smoke line: the request skips it


CPU_HOST = sync_job.HostFacts(ccs=(), driver=None, os_name="linux", platform="linux-x86_64")
ADA_HOST = sync_job.HostFacts(ccs=("8.9",), driver="550.54.14", os_name="linux", platform="linux-x86_64")
BNB_SM89 = Path(__file__).resolve().parent.parent / "dockerfiles" / "bnb-sm89" / "pylock.bnb-sm89.toml"


def test_the_sync_check_refuses_a_gpu_lock_on_a_host_without_one(matrix: Matrix) -> None:
    with pytest.raises(CheckFailed) as caught:
        sync_job.check(BNB_SM89, matrix, CPU_HOST, force=False)
    assert caught.value.message.startswith("pylock.bnb-sm89.toml does not fit this host: the lock needs an NVIDIA GPU")
    warned: list[str] = []
    lock = sync_job.check(BNB_SM89, matrix, CPU_HOST, force=True, warn=warned.append)
    assert lock.tool.name == "bnb-sm89" and warned and all(w.startswith("--force: ") for w in warned)
    assert sync_job.check(BNB_SM89, matrix, ADA_HOST, force=False).tool.digest == lock.tool.digest


def test_sync_picks_the_manifests_environment_that_fits(matrix: Matrix, tmp_path: Path) -> None:
    import shutil

    manifest = tmp_path / "envbuilder.toml"
    manifest.write_text('[[env]]\nname = "cpu"\nprofile = "cpu"\n\n[[env]]\nname = "bnb-sm89"\ngpu = "sm_89"\n')
    shutil.copyfile(BNB_SM89, tmp_path / "pylock.bnb-sm89.toml")
    assert sync_job.pick_from_manifest(manifest, matrix, ADA_HOST) == tmp_path / "pylock.bnb-sm89.toml"
    with pytest.raises(CheckFailed) as caught:
        sync_job.pick_from_manifest(manifest, matrix, CPU_HOST)
    assert "cpu: no pylock.cpu.toml (run `envbuilder lock`)" in caught.value.message
    with pytest.raises(LockError):
        sync_job.pick_from_manifest(None, matrix, ADA_HOST)


def test_the_recipe_job_makes_what_the_cli_prints(matrix: Matrix, capsys: pytest.CaptureFixture[str]) -> None:
    from envbuilder.cli import main

    target = build_target(matrix, gpus=parse_gpus("sm_89", matrix), driver="550.54.14", os="wsl2")
    made = recipe_job.render(recipe_job.from_plan(recipe_job.RecipeRequest(os="wsl2"), target, matrix), "wsl2")
    assert main(["recipe", "wsl2", "--gpu", "sm_89", "--driver", "550.54.14"]) == 0
    out, err = capsys.readouterr()
    assert out == made.script
    assert err.splitlines()[1:] == [f"  {i}. {line}" for i, line in enumerate(made.checklist, 1)]
    assert made.spec.name and made.script.startswith("#!")


def test_the_recipe_job_refuses_gptq_on_windows(matrix: Matrix) -> None:
    target = build_target(matrix, gpus=parse_gpus("sm_89", matrix), driver="550.54.14", os="windows", profile="gptq")
    with pytest.raises(TargetError) as caught:
        recipe_job.from_plan(recipe_job.RecipeRequest(os="windows"), target, matrix)
    assert caught.value.hint == "use WSL2 instead: `envbuilder recipe wsl2 --profile gptq`"
