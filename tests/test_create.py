"""create / lock / sync / list / remove / run for real: real uv, real venvs, real wheels.

The CPU profile is built for real through the pip-configuration route (torch 2.13.0+cpu from the wheelhouse that
pip's configuration names here, the rest from PyPI); CUDA targets are resolved and locked (metadata only), never
downloaded. The route of a machine without pip configuration is tests/test_ordinary_machine.py's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envbuilder.cli.app import main
from envbuilder.model.lock import read_lock

pytestmark = [pytest.mark.integration, pytest.mark.network]

CPU = ["--gpu", "cpu", "--python", "3.11"]


def _pip_find_links() -> str | None:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    for line in out.splitlines():
        if ".find-links=" in line:
            return line.split("=", 1)[1].strip("'").split()[0]
    return None


WHEELHOUSE = _pip_find_links()
if WHEELHOUSE is None or not list(Path(WHEELHOUSE).glob("torch-*+cpu-cp311-*.whl")):
    pytest.skip(
        "no CPU torch wheel for Python 3.11 in pip's find-links here: the CPU profile cannot be built offline of the PyTorch index",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("envbuilder-home")


@pytest.fixture(scope="module")
def built(home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One real CPU environment with its smoke test, shared by the module (it is the expensive part)."""
    work = tmp_path_factory.mktemp("work")
    lock = work / "pylock.cpu.toml"
    rc = main(["create", *CPU, "--home", str(home), "--name", "cpu", "--lock-out", str(lock)])
    assert rc == 0
    return {"env": home / "envs" / "cpu", "lock": lock, "work": work}


def _freeze(env: Path) -> list[str]:
    """The environment's packages as ``uv pip freeze`` lists them, sorted: what two builds compare."""
    from envbuilder.edge import _run
    from envbuilder.edge.uv import find_uv

    out = _run.run([find_uv(), "pip", "freeze", "--python", str(env / "bin" / "python")], timeout=60)
    return sorted(line.strip() for line in out.stdout.splitlines() if line.strip())


def test_create_builds_a_proven_environment(built: dict[str, Path], lock_consumers) -> None:  # type: ignore[no-untyped-def]
    env = built["env"]
    assert "torch==2.13.0+cpu" in lock_consumers(built["lock"])
    assert lock_consumers(env / "pylock.toml") == lock_consumers(built["lock"])  # the copy kept in the environment
    marker = json.loads((env / "envbuilder.json").read_text())
    assert marker["profile"] == "cpu" and marker["python"] == "3.11"
    assert marker["smoke"]["result"] == "pass"
    lock = read_lock(built["lock"])
    assert lock.tool.smoke["result"] == "pass"  # the evidence travels with the lock
    assert "torch==2.13.0+cpu" in _freeze(env)
    out = subprocess.run(
        [env / "bin" / "python", "-c", "import bitsandbytes, torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "2.13.0+cpu"
    assert not list(env.parent.glob(".cpu.tmp-*"))


def test_sync_rebuilds_the_same_set(built: dict[str, Path], home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The pip-configuration route: the wheelhouse pip's find-links names serves torch (hash-checked)."""
    rc = main(["sync", str(built["lock"]), "--home", str(home), "--name", "cpu-copy", "--no-smoke", "--no-guard"])
    assert rc == 0
    err = capsys.readouterr().err
    count = len(read_lock(built["lock"]).packages)  # what PyPI's releases of the day resolved to (42 on 2026-12-03)
    assert f"installing {count} packages (hash-checked, from the configured sources)" in err
    assert _freeze(home / "envs" / "cpu-copy") == _freeze(built["env"])
    # --no-guard: no constraints file, no pip.conf, the activation script as uv wrote it; create's has all three
    copy = home / "envs" / "cpu-copy"
    assert not (copy / "envbuilder-constraints.txt").exists() and not (copy / "pip.conf").exists()
    assert "envbuilder guard" not in (copy / "bin" / "activate").read_text()
    assert json.loads((copy / "envbuilder.json").read_text())["guard"] is None
    assert "torch==2.13.0+cpu" in (built["env"] / "envbuilder-constraints.txt").read_text().splitlines()


def test_list_run_remove(built: dict[str, Path], home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--home", str(home), "--json"]) == 0
    envs = {e["name"]: e for e in json.loads(capsys.readouterr().out)["envs"]}
    assert (
        envs["cpu"]["smoke"] == "pass" and envs["cpu"]["profile"] == "cpu" and envs["cpu"]["size_bytes"] > 100_000_000
    )
    assert main(["run", "--home", str(home), "cpu", "--", "python", "-c", "import sys; sys.exit(7)"]) == 7
    main(["sync", str(built["lock"]), "--home", str(home), "--name", "doomed", "--no-smoke"])
    assert main(["remove", "doomed", "--home", str(home)]) == 0
    assert not (home / "envs" / "doomed").exists()
    assert main(["remove", "doomed", "--home", str(home)]) == 2


def test_tampered_lock_is_refused_and_nothing_is_built(
    built: dict[str, Path], home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "pylock.bad.toml"
    bad.write_text(built["lock"].read_text().replace('version = "0.50.2"', 'version = "0.49.2"', 1))
    t0 = time.monotonic()
    assert main(["sync", str(bad), "--home", str(home), "--name", "bad"]) == 2
    assert time.monotonic() - t0 < 10
    err = capsys.readouterr().err
    assert "modified after envbuilder wrote it" in err and "Traceback" not in err
    assert not (home / "envs" / "bad").exists()


def test_failed_rebuild_leaves_the_existing_environment_untouched(
    built: dict[str, Path], home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (built["env"] / "envbuilder.json").read_text()
    rc = main(
        [
            "create",
            *CPU,
            "--home",
            str(home),
            "--name",
            "cpu",
            "--lock-out",
            str(built["work"] / "pylock.x.toml"),
            "--package",
            "this-package-does-not-exist-envbuilder==1.0",
        ]
    )
    assert rc == 2
    assert (built["env"] / "envbuilder.json").read_text() == before
    assert not (built["work"] / "pylock.x.toml").exists()  # no lock for a build that never happened
    err = capsys.readouterr().err
    assert "Traceback" not in err and "this-package-does-not-exist-envbuilder" in err


def test_a_failed_smoke_test_leaves_the_users_lock_and_environment(
    built: dict[str, Path],
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 11 item 4: a build whose smoke test fails (exit 1) keeps the user's lock byte for byte and the
    environment of that name as it was. The failure is a real one a user meets: a stray PYTHONPATH that
    shadows bitsandbytes with a package that cannot be imported (the smoke test runs in the new environment)."""
    shadow = tmp_path / "shadow" / "bitsandbytes"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("a stray bitsandbytes on PYTHONPATH")\n')
    lock = tmp_path / "pylock.mine.toml"  # another lock than the build would write, so a rewrite shows
    lock.write_bytes((Path(__file__).parent.parent / "dockerfiles" / "cpu" / "pylock.cpu.toml").read_bytes())
    before, marker = lock.read_bytes(), (built["env"] / "envbuilder.json").read_text()
    monkeypatch.setenv("PYTHONPATH", str(shadow.parent))
    rc = main(["create", *CPU, "--home", str(home), "--name", "cpu", "--lock-out", str(lock)])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert "a stray bitsandbytes on PYTHONPATH" in err and "Traceback" not in err.split("smoke")[0]
    assert lock.read_bytes() == before
    assert (built["env"] / "envbuilder.json").read_text() == marker
    assert not list((home / "envs").glob(".cpu.tmp-*"))  # the failed build's directory is gone


def test_interrupted_create_leaves_nothing_behind(home: Path, tmp_path: Path) -> None:
    env = dict(os.environ, ENVBUILDER_HOME=str(home))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "envbuilder",
            "create",
            *CPU,
            "--name",
            "interrupted",
            "--lock-out",
            str(tmp_path / "pylock.l.toml"),
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((home / "envs").glob(".interrupted.tmp-*")):
        time.sleep(0.05)
    assert list((home / "envs").glob(".interrupted.tmp-*")), "the build never started"
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group, as in a terminal
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert not (home / "envs" / "interrupted").exists()
    assert not list((home / "envs").glob(".interrupted.*tmp*"))


def test_concurrent_create_of_one_name_is_refused(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from envbuilder.edge.venv import name_lock

    with name_lock(home / "envs" / "busy"):
        rc = main(
            [
                "create",
                *CPU,
                "--home",
                str(home),
                "--name",
                "busy",
                "--lock-out",
                str(tmp_path / "pylock.l.toml"),
                "--no-smoke",
            ]
        )
    assert rc == 2
    assert "another envbuilder is building" in capsys.readouterr().err
    assert not (home / "envs" / "busy").exists()


def test_dry_run_touches_nothing(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = tmp_path / "pylock.dry.toml"
    assert (
        main(["create", *CPU, "--home", str(home), "--name", "dry", "--lock-out", str(lock), "--dry-run", "--json"])
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["dry_run"] is True and doc["packages"][0]["version"] == "2.13.0+cpu"
    # uv resolves unless the resolution of the same input is cached (an earlier test here locked this target),
    # as the real run would; then the dry run names the file it reuses.
    assert any(c.startswith("uv pip compile") for c in doc["commands"]) == (doc["reused_resolution"] is None)
    assert [c.split()[:3] for c in doc["commands"] if c.startswith("uv ")][-2:] == [
        ["uv", "venv", "--quiet"],
        ["uv", "pip", "sync"],
    ]
    assert not lock.exists() and not (home / "envs" / "dry").exists()


def test_lock_for_another_machine_and_upgrade(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lock_consumers
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "pylock.h100.toml"
    args = ["lock", "--gpu", "sm_90", "--driver", "580.65.06", "--os", "linux", "--python", "3.12", "-o", str(out)]
    assert main(args) == 0
    lock_consumers(out)
    lock = read_lock(out)
    torch = lock.package("torch")
    assert torch is not None and torch.files[0].url.startswith("https://files.pythonhosted.org/")
    assert lock.tool.cuda is not None and lock.tool.cuda.startswith("13.")
    assert lock.tool.target["gpus"][0]["cc"] == "9.0"
    capsys.readouterr()
    assert main([*args, "--upgrade", "--bnb", "0.49.2"]) == 0
    text = capsys.readouterr().out
    assert "~ bitsandbytes 0.50.2 -> 0.49.2" in text
    assert "bitsandbytes==0.49.2" in lock_consumers(out)


def test_manifest_lock_all_and_sync_the_one_that_fits(  # type: ignore[no-untyped-def]
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], lock_consumers
) -> None:
    (tmp_path / "envbuilder.toml").write_text(
        "# the team's environments\n"
        '[[env]]\nname = "train-h100"\nprofile = "bnb"\ngpu = ["sm_90"]\ndriver = "580.65.06"\npython = "3.12"\n\n'
        '[[env]]\nname = "laptop"\nprofile = "cpu"\npython = "3.11"\n'
    )
    monkeypatch.chdir(tmp_path)
    assert main(["lock"]) == 0
    lock_consumers(tmp_path / "pylock.train-h100.toml")
    lock_consumers(tmp_path / "pylock.laptop.toml")
    capsys.readouterr()
    # This host has no GPU: the H100 lock does not fit, the CPU one does.
    assert main(["sync", "--home", str(home), "--no-smoke"]) == 0
    assert "synced laptop" in capsys.readouterr().out
    assert main(["sync", "pylock.train-h100.toml", "--home", str(home), "--no-smoke"]) == 1
    assert "needs an NVIDIA GPU" in capsys.readouterr().err


def test_gptq_packages_refused_in_a_bnb_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "lock",
            "--gpu",
            "sm_89",
            "--driver",
            "550.54.14",
            "--python",
            "3.11",
            "--package",
            "auto-gptq==0.7.1",
            "-o",
            str(tmp_path / "pylock.x.toml"),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "cannot go into a bnb environment" in err
    assert not (tmp_path / "pylock.x.toml").exists()


def test_unreachable_index_fails_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    t0 = time.monotonic()
    rc = main(
        [
            "lock",
            *CPU,
            "--no-pip-config",
            "--find-links",
            str(WHEELHOUSE),
            "--index-url",
            "http://127.0.0.1:9/simple",
            "-o",
            str(tmp_path / "pylock.x.toml"),
        ]
    )
    assert rc == 2
    assert time.monotonic() - t0 < 60
    assert "could not be reached" in capsys.readouterr().err


def test_missing_python_is_a_clear_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["create", "--gpu", "sm_90", "--driver", "580.65.06", "--python", "3.14", "--dry-run"])
    assert rc == 2
    assert "Python 3.14 is not installed" in capsys.readouterr().err


def test_offline_sync_uses_the_cache_and_the_wheelhouse(built: dict[str, Path], home: Path) -> None:
    # The module's first create filled uv's cache; offline, nothing else may be reached.
    rc = main(["sync", str(built["lock"]), "--home", str(home), "--name", "offline", "--no-smoke", "--offline"])
    assert rc == 0
    assert _freeze(home / "envs" / "offline") == _freeze(built["env"])


def test_lock_save_records_the_env_in_the_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = tmp_path / "envbuilder.toml"
    manifest.write_text("# hand-written header stays\n")
    monkeypatch.chdir(tmp_path)
    assert main(["lock", "--gpu", "sm_86", "--driver", "550.54.14", "--python", "3.11", "--name", "a10", "--save"]) == 0
    text = manifest.read_text()
    assert text.startswith("# hand-written header stays\n")
    from envbuilder.edge.manifest import load_manifest

    env = load_manifest(manifest).env("a10")
    assert env is not None and env.gpus == ("sm_86",) and env.driver == "550.54.14" and env.python == "3.11"
    assert main(["lock", "--gpu", "sm_86", "--driver", "550.54.14", "--python", "3.11", "--name", "a10", "--save"]) == 2


def test_a_resolution_is_reused_until_refresh(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lock_consumers
) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "cache"
    args = ["lock", *CPU, "-o", str(tmp_path / "pylock.l.toml")]
    os.environ["ENVBUILDER_CACHE"] = str(cache)
    try:
        assert main(args) == 0
        first = capsys.readouterr().err
        assert main(args) == 0
        second = capsys.readouterr().err
        assert main([*args, "--refresh"]) == 0
        third = capsys.readouterr().err
        # A uv setting that moves what uv picks is part of the input: no reuse across it.
        os.environ["UV_EXCLUDE_NEWER"] = "2026-12-01T00:00:00Z"
        assert main(args) == 0
        fourth = capsys.readouterr().err
    finally:
        del os.environ["ENVBUILDER_CACHE"]
        os.environ.pop("UV_EXCLUDE_NEWER", None)
    assert "(uv pip compile)" in first and "reusing the resolution" in second and "(uv pip compile)" in third
    assert "(uv pip compile)" in fourth and "reusing" not in fourth
    assert len(list((cache / "resolutions").glob("pylock.*.toml"))) == 2
    lock_consumers(tmp_path / "pylock.l.toml")


def test_shell_opens_inside_the_environment(
    built: dict[str, Path], home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in for the user's $SHELL that records what it was started with.
    shell = tmp_path / "fake-shell"
    seen = tmp_path / "seen"
    shell.write_text(f'#!/bin/sh\necho "$VIRTUAL_ENV" > {seen}\ncommand -v python >> {seen}\n')
    shell.chmod(0o755)
    monkeypatch.setenv("SHELL", str(shell))
    assert main(["shell", "--home", str(home), "cpu"]) == 0
    venv, python = seen.read_text().splitlines()
    assert venv == str(built["env"]) and python == str(built["env"] / "bin" / "python")


def test_a_path_environment_is_recorded_and_only_it_can_be_removed(
    built: dict[str, Path], home: Path, tmp_path: Path
) -> None:
    """Issue 11, item 1: a --path build is recorded in the home's state; remove/run then accept that path only."""
    env = tmp_path / "project" / "venv"
    assert main(["sync", str(built["lock"]), "--home", str(home), "--path", str(env), "--no-smoke"]) == 0
    record = json.loads((home / "state" / "paths.json").read_text())["envs"]
    marker = json.loads((env / "envbuilder.json").read_text())
    assert record[str(env.resolve())] == marker["id"]
    assert main(["run", "--home", str(home), "--path", str(env), "--", "python", "-c", "import torch"]) == 0
    twin = tmp_path / "twin"  # the same files, copied: the marker alone does not make it envbuilder's
    subprocess.run(["cp", "-a", str(env), str(twin)], check=True)
    assert main(["remove", "--home", str(home), "--path", str(twin)]) == 2
    assert main(["remove", "--home", str(home), "--path", str(env)]) == 0
    assert not env.exists() and twin.is_dir()
    assert str(env.resolve()) not in json.loads((home / "state" / "paths.json").read_text())["envs"]
