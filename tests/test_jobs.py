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
from envbuilder.model.errors import CheckFailed, EnvbuilderError, LockError, TargetError
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
    settings = Settings(home=tmp_path / "home", cache_dir=tmp_path / "cache", pytorch_index=matrix.pytorch_index)
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
    settings = Settings(
        home=tmp_path / "home",
        cache_dir=tmp_path / "cache",
        pytorch_index=matrix.pytorch_index,  # the CLI's default
        find_links=(WHEELHOUSE,),
        refresh=True,
    )
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
    from envbuilder.cli.app import main

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


def test_an_upgrade_request_says_what_moves_and_names_one_environment() -> None:
    from envbuilder.jobs import upgrade as upgrade_job

    with pytest.raises(TargetError) as caught:
        upgrade_job.UpgradeRequest(name="cpu", dry_run=True)
    assert caught.value.message == "upgrade: say what moves: --torch SPEC, --bnb SPEC or --latest"
    with pytest.raises(TargetError) as caught:
        upgrade_job.UpgradeRequest(name="cpu", path=Path("/envs/cpu"), latest=True)
    assert caught.value.message == "give NAME (cpu) or --path (/envs/cpu), not both"
    assert upgrade_job.UpgradeRequest(path=Path("/envs/cpu"), bnb="0.50.2").smoke


DOCKERFILES = Path(__file__).resolve().parent.parent / "dockerfiles"
CPU_LOCK = DOCKERFILES / "cpu" / "pylock.cpu.toml"


def test_the_dockerfile_job_writes_the_committed_context(tmp_path: Path) -> None:
    """dockerfiles/cpu is the context of its lock with the recorded pins (regen.py): the job writes it again."""
    from envbuilder.edge._fs import written_by_envbuilder
    from envbuilder.jobs import image as image_job
    from envbuilder.render.dockerfile import image_tag

    out = tmp_path / "ctx"
    request = image_job.DockerfileRequest(source=image_job.LockFile(CPU_LOCK), output=out)
    result = image_job.dockerfile(request, Settings(home=tmp_path / "home"))
    assert (result.name, result.context, result.lock) == ("cpu", out, out / "pylock.cpu.toml")
    assert result.image == image_tag(read_lock(CPU_LOCK))
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == list(result.files)
    committed = [rel for rel in written if rel != "smoke/check.py"]  # the smoke program is not committed (regen.py)
    assert {rel: (out / rel).read_bytes() for rel in committed} == {
        rel: (DOCKERFILES / "cpu" / rel).read_bytes() for rel in committed
    }
    assert written_by_envbuilder(out / "Dockerfile")
    # A user's file where a context would go is refused before anything is written.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "Dockerfile").write_text("FROM scratch\n", encoding="utf-8")
    with pytest.raises(EnvbuilderError):
        image_job.dockerfile(image_job.DockerfileRequest(source=image_job.LockFile(CPU_LOCK), output=mine), Settings())
    assert sorted(p.name for p in mine.iterdir()) == ["Dockerfile"]


def test_the_build_job_dry_run_is_the_engines_command(tmp_path: Path) -> None:
    from envbuilder.edge.settings import with_credentials_apart
    from envbuilder.jobs import image as image_job
    from envbuilder.render.dockerfile import image_tags

    ca = tmp_path / "corp-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    netrc = tmp_path / "netrc"
    settings = Settings(home=tmp_path / "home", ca_certs=(str(ca),), index_url="https://mirror.example/simple")
    request = image_job.ImageBuildRequest(
        source=image_job.LockFile(CPU_LOCK),
        engine="podman",
        netrc=netrc,
        repository="registry.example.com/team",
        dry_run=True,
    )
    notes: list[str] = []
    result = image_job.build(request, settings, note=notes.append, progress=notes.append)
    tags = image_tags(read_lock(CPU_LOCK), "registry.example.com/team")
    assert (result.name, result.tags, result.engine) == ("cpu", tags, "podman")
    command = result.command
    assert command is not None and command[0] == "podman" and notes == []
    assert f"id=ca,src={ca}" in command and f"id=netrc,src={netrc}" in command
    assert "UV_DEFAULT_INDEX=https://mirror.example/simple" in command and "CERTIFICATE" not in " ".join(command)
    assert [a for a in command if a.startswith("registry.example.com/team/")] == list(tags)
    # Index credentials never enter a build as arguments (they are recorded in the image's history): said so.
    secret = with_credentials_apart(Settings(home=tmp_path / "home", index_url="https://u:pw@mirror.example/simple"))
    bare = image_job.build(image_job.ImageBuildRequest(source=request.source, dry_run=True), secret, note=notes.append)
    assert bare.engine == "docker" and bare.command is not None and bare.command[0] == "docker"
    assert "pw" not in " ".join(bare.command) and "--secret" not in bare.command
    assert notes == ["the index credentials are not passed into the build; give them as --netrc FILE (a build secret)"]


def test_the_ci_job_writes_a_context_per_environment_and_returns_the_paths(tmp_path: Path) -> None:
    import shutil

    from envbuilder.jobs import ci as ci_job
    from envbuilder.jobs.image import ImageOptions

    manifest = tmp_path / "project" / "envbuilder.toml"
    manifest.parent.mkdir()
    manifest.write_text('[[env]]\nname = "cpu"\nprofile = "cpu"\n\n[[env]]\nname = "bnb-sm89"\ngpu = "sm_89"\n')
    locks = tmp_path / "locks"
    locks.mkdir()
    for lock in (CPU_LOCK, BNB_SM89):
        shutil.copyfile(lock, locks / lock.name)
    request = ci_job.CiRequest(manifest=manifest, images=ImageOptions(), locks=locks, registry="registry.example.com/t")
    result = ci_job.ci(request)
    out = manifest.parent
    assert (result.manifest, result.output, result.images) == (manifest, out, ("cpu", "bnb-sm89"))
    assert (result.bake, result.workflow) == (out / "docker-bake.hcl", out / ".github/workflows/envbuilder-images.yml")
    assert result.contexts == (out / "docker" / "cpu", out / "docker" / "bnb-sm89")
    assert 'default = "registry.example.com/t"' in result.bake.read_text(encoding="utf-8")
    for context, lock in zip(result.contexts, (CPU_LOCK, BNB_SM89), strict=True):
        assert (context / lock.name).read_bytes() == lock.read_bytes()
        assert (context / "Dockerfile").read_bytes() == (DOCKERFILES / context.name / "Dockerfile").read_bytes()
    assert ci_job.ci(request) == result  # its own files: written again
    result.bake.write_text("# mine\n", encoding="utf-8")
    (out / "docker" / "cpu" / "Dockerfile").unlink()
    with pytest.raises(EnvbuilderError):
        ci_job.ci(request)
    assert (
        result.bake.read_text(encoding="utf-8") == "# mine\n" and not (out / "docker" / "cpu" / "Dockerfile").exists()
    )
    with pytest.raises(LockError) as caught:
        ci_job.ci(ci_job.CiRequest(manifest=None, images=ImageOptions()))
    assert caught.value.hint == "create one with `envbuilder lock --gpu ... --name N --save`, or give --manifest"
