"""The field guide's first failure as a test (issue 15): a known-good CPU environment, a stray upgrade of a
stack layer inside it with uv and with pip, refused before anything changes; drift shown by list and doctor
once the guard is off; then `envbuilder upgrade` to another pin, proven and swapped in.

Real parts throughout: the CPU profile built by envbuilder (torch 2.13.0+cpu from the wheelhouse pip's
configuration names here, the rest from PyPI), real uv and a real pip (installed into the environment from
PyPI), and a wheelhouse made by the test holding a second torch build (2.14.1+cpu) and another accelerate
(1.99.0): real wheels (zip, METADATA, RECORD) that uv and pip would install if nothing stopped them.

Every stray install runs as on an ordinary machine: a temporary HOME, none of pip's or uv's variables
(PIP_FIND_LINKS, PIP_CERT, ...), and either PIP_CONFIG_FILE=/dev/null (no pip configuration at all, so the
environment's pip.conf is off too and the activation script's variables must carry the guard) or no
activation (pip's reading of the environment's own pip.conf must carry it).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from envbuilder.cli.app import main
from envbuilder.edge.guard import installed_versions
from envbuilder.model.guard import CONSTRAINTS_FILE, is_layer
from envbuilder.model.lock import read_lock

pytestmark = [pytest.mark.integration, pytest.mark.network]

CPU = ["--gpu", "cpu", "--python", "3.11"]
OLD_BNB, NEW_BNB = "0.49.2", "0.50.2"


def _wheel(directory: Path, name: str, version: str) -> Path:
    """A real, minimal pure-Python wheel of ``name`` ``version`` (what a second build in a wheelhouse looks like)."""
    dist = name.replace("-", "_")
    files = {
        f"{dist}/__init__.py": f"__version__ = {version!r}\n",
        f"{dist}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}-{version}.dist-info/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: envbuilder-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    record = f"{dist}-{version}.dist-info/RECORD"
    rows = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        rows.append(f"{path},sha256={digest},{len(text.encode())}")
    files[record] = "\n".join([*rows, f"{record},,"]) + "\n"
    out = directory / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(out, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return out


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory, cpu_torch_wheel: Path) -> dict[str, Path]:
    """A guarded CPU environment built by `create` (bitsandbytes 0.49.2, so that upgrade has a pin to move to)."""
    home = tmp_path_factory.mktemp("known-good-home")
    work = tmp_path_factory.mktemp("known-good-work")
    lock = work / "pylock.cpu.toml"
    rc = main(["create", *CPU, "--bnb", OLD_BNB, "--home", str(home), "--name", "cpu", "--lock-out", str(lock)])
    assert rc == 0
    wheels = work / "wheelhouse"
    wheels.mkdir()
    _wheel(wheels, "torch", "2.14.1+cpu")
    _wheel(wheels, "accelerate", "1.99.0")
    _wheel(wheels, "envbuilder-unrelated-a", "1.0")
    _wheel(wheels, "envbuilder-unrelated-b", "1.0")
    return {"home": home, "env": home / "envs" / "cpu", "lock": lock, "work": work, "wheels": wheels}


def _ordinary(tmp: Path, *, pip_config: bool) -> dict[str, str]:
    """A user's machine: a fresh HOME, no PIP_*/UV_* variable, no VIRTUAL_ENV; no pip configuration at all
    unless ``pip_config`` (then pip reads the files it would read there: the environment's own pip.conf)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "VIRTUAL_ENV"))}
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env |= {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "XDG_CACHE_HOME": str(home / ".cache")}
    env["UV_CACHE_DIR"] = os.environ.get("UV_CACHE_DIR") or str(Path.home() / ".cache" / "uv")  # no new torch copy
    if not pip_config:
        env["PIP_CONFIG_FILE"] = os.devnull
    return env


def _sh(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], env=env, cwd=cwd, capture_output=True, text=True, check=False)


def _layers(env: Path) -> dict[str, str]:
    return {n: v for n, v in installed_versions(env).items() if is_layer(n)}


def _uv() -> str:
    from envbuilder.edge.uv import find_uv

    return find_uv()


def test_a_stray_upgrade_is_refused_with_uv_and_with_pip(scene: dict[str, Path], tmp_path: Path) -> None:
    env, wheels = scene["env"], scene["wheels"]
    before = _layers(env)
    assert before["torch"] == "2.13.0+cpu" and before["bitsandbytes"] == OLD_BNB
    lock_bytes = scene["lock"].read_bytes()
    activate = f". {env}/bin/activate"
    bare = _ordinary(tmp_path, pip_config=False)
    uv = _uv()

    # uv, activated: a second torch build from a wheelhouse, asked for by version, and by -U.
    out = _sh(f"{activate} && {uv} pip install --find-links {wheels} 'torch==2.14.1+cpu'", bare, tmp_path)
    assert out.returncode != 0
    assert "torch==2.14.1+cpu and torch==2.13.0+cpu" in out.stderr and "unsatisfiable" in out.stderr
    out = _sh(f"{activate} && {uv} pip install --find-links {wheels} --upgrade torch accelerate", bare, tmp_path)
    assert out.returncode == 0, out.stderr  # nothing to do within the constraints: the layers stay (an unpinned
    # dependency of theirs may move to a newer release: the drift test below says what that shows)
    assert _layers(env) == before

    # An unrelated package still installs (and pip itself, from PyPI, for the pip half).
    out = _sh(f"{activate} && {uv} pip install --find-links {wheels} envbuilder-unrelated-a pip", bare, tmp_path)
    assert out.returncode == 0, out.stderr
    assert "envbuilder-unrelated-a" in installed_versions(env) and "pip" in installed_versions(env)

    # pip, activated, with no pip configuration at all (PIP_CONFIG_FILE=/dev/null: the venv's pip.conf is off):
    # PIP_CONSTRAINT from the activation script carries the guard.
    out = _sh(f"{activate} && pip install --no-index --find-links {wheels} accelerate==1.99.0", bare, tmp_path)
    assert out.returncode == 1 and "ResolutionImpossible" in out.stderr, out.stdout + out.stderr
    assert "accelerate==1.15.0" in out.stdout + out.stderr  # pip names the constraint that stopped it

    # pip, not activated, on a machine with no pip configuration of its own: the environment's pip.conf does.
    conf = _ordinary(tmp_path, pip_config=True)
    shown = _sh(f"{env}/bin/pip config list", conf, tmp_path).stdout
    assert f"install.constraint='{env}/{CONSTRAINTS_FILE}'" in shown
    out = _sh(f"{env}/bin/pip install --no-index --find-links {wheels} 'torch==2.14.1+cpu'", conf, tmp_path)
    assert out.returncode == 1 and "ResolutionImpossible" in out.stderr, out.stdout + out.stderr
    out = _sh(f"{env}/bin/pip install --no-index --find-links {wheels} envbuilder-unrelated-b", conf, tmp_path)
    assert out.returncode == 0, out.stderr

    # `envbuilder run` puts the same guard in force.
    home = str(scene["home"])
    argv = ["run", "--home", home, "cpu", "--", uv, "pip", "install", "--find-links", str(wheels), "accelerate==1.99.0"]
    assert main(argv) != 0

    # Nothing changed: the layers, the lock; the environment is still proven, and its smoke test still passes.
    assert _layers(env) == before
    assert scene["lock"].read_bytes() == lock_bytes
    assert main(["smoke", "--env", str(env), "--quick"]) == 0


def test_drift_without_the_guard_is_a_diagnosis(
    scene: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env, home = scene["env"], str(scene["home"])
    assert main(["list", "--home", home, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["envs"][0]
    # Guarded, no layer moved. The guard holds the layers only: the `-U torch accelerate` above may have moved
    # an unpinned dependency of theirs to a release newer than the lock (filelock 4.3.1 -> 4.3.2 did, when
    # PyPI published it between the lock and the -U), and that shows as drift outside the layers.
    installed, locked = installed_versions(env), {p.name: p.version for p in read_lock(scene["lock"]).packages}
    moved = sorted(n for n, v in locked.items() if n in installed and installed[n] != v)
    assert row["proven"] is True and row["guard"]["pins"] and not any(is_layer(n) for n in moved)
    assert [(d["name"], d["layer"]) for d in row["drift"]] == [(n, False) for n in moved]

    assert main(["unguard", "cpu", "--home", home]) == 0
    assert not (env / CONSTRAINTS_FILE).exists() and "envbuilder guard" not in (env / "bin" / "activate").read_text()
    out = _sh(
        f". {env}/bin/activate && {_uv()} pip install --find-links {scene['wheels']} accelerate==1.99.0",
        _ordinary(tmp_path, pip_config=False),
        tmp_path,
    )
    assert out.returncode == 0, out.stderr  # no guard: the stray install goes through
    capsys.readouterr()

    assert main(["list", "--home", home, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["envs"][0]
    assert row["proven"] is False and row["guard"] is None
    assert {"name": "accelerate", "kind": "changed", "locked": "1.15.0", "installed": "1.99.0", "layer": True} in row[
        "drift"
    ]
    assert main(["list", "--home", home]) == 0
    text = capsys.readouterr().out
    assert "stale: accelerate 1.99.0" in text and "off" in text and "envbuilder sync" in text

    os.environ["ENVBUILDER_HOME"] = home
    try:
        assert main(["doctor", "--env", str(env), "--json"]) == 1
    finally:
        del os.environ["ENVBUILDER_HOME"]
    doc = json.loads(capsys.readouterr().out)
    drift = next(f for f in doc["findings"] if f["rule"] == "stack-drift")
    assert drift["severity"] == "FAIL" and drift["seen"] == "accelerate 1.99.0 replaced the locked 1.15.0"
    assert "envbuilder sync" in drift["fix"] and "envbuilder upgrade cpu" in drift["fix"]

    assert main(["guard", "cpu", "--home", home]) == 0  # back on, for the upgrade that follows
    assert (env / CONSTRAINTS_FILE).is_file()


def test_the_upgrade_job_decides_the_change_before_anything_is_written(scene: dict[str, Path]) -> None:
    """The job the CLI adapts, called directly: the change and the new lock in memory, the dry run and an
    upgrade to where the environment already is leave every file as it was."""
    from envbuilder.edge.matrix_cache import cached_matrix
    from envbuilder.edge.settings import Settings
    from envbuilder.edge.sources import apply_pip_config, read_pip_config
    from envbuilder.jobs import upgrade as job
    from envbuilder.jobs.plan import NoPlanFound

    env, lock, matrix = scene["env"], scene["lock"], cached_matrix()
    settings = apply_pip_config(Settings(home=scene["home"]), read_pip_config())  # as the CLI reads pip's config
    marker, lock_bytes = (env / "envbuilder.json").read_bytes(), lock.read_bytes()
    said: list[str] = []
    request = job.UpgradeRequest(name="cpu", bnb=NEW_BNB, dry_run=True)
    prepared = job.prepare(request, matrix, settings, progress=said.append)
    assert (prepared.env, prepared.lock_path, prepared.changes) == (
        env,
        lock,
        (f"~ bitsandbytes {OLD_BNB} -> {NEW_BNB}",),
    )
    moved = prepared.new.package("bitsandbytes") if prepared.new is not None else None
    assert moved is not None and moved.version == NEW_BNB
    assert prepared.old.tool.digest == read_lock(lock).tool.digest and said[0].startswith("resolving cpu again for ")
    result = job.upgrade(prepared, settings)
    assert (result.name, result.path, result.lock, result.upgraded, result.dry_run) == ("cpu", env, lock, False, True)
    assert result.changes == prepared.changes and result.plan == prepared.plan

    there = job.prepare(job.UpgradeRequest(name="cpu", bnb=OLD_BNB), matrix, settings)
    assert there.new is None and there.changes == ()
    assert job.upgrade(there, settings).upgraded is False  # nothing to build
    with pytest.raises(NoPlanFound) as caught:
        job.prepare(job.UpgradeRequest(name="cpu", torch="==2.99.0"), matrix, settings)
    assert caught.value.exit_code == 1 and caught.value.no_plan.reasons
    assert caught.value.hint is not None and caught.value.hint.startswith("nearest that works")
    assert (env / "envbuilder.json").read_bytes() == marker and lock.read_bytes() == lock_bytes


def _stopped_before_the_swap(scene: dict[str, Path]) -> None:
    """`upgrade` as its own process, paused by envbuilder's fault hook just before the swap, then SIGTERM."""
    import signal
    import sys
    import time

    log = scene["work"] / "upgrade-stopped.stderr"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVBUILDER_")}
    env["ENVBUILDER_FAULT_PAUSE"] = "swap"
    argv = [sys.executable, "-m", "envbuilder", "upgrade", "cpu", "--home", str(scene["home"]), "--bnb", NEW_BNB]
    with log.open("w") as err:
        proc = subprocess.Popen(
            [*argv, "--no-smoke"], env=env, cwd=scene["work"], stdout=subprocess.DEVNULL, stderr=err, text=True
        )
    deadline = time.monotonic() + 600
    while "fault point: swap" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, log.read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143, log.read_text()


def test_upgrade_refuses_what_no_plan_serves_then_moves_the_stack_as_a_whole(
    scene: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    env, home, lock = scene["env"], str(scene["home"]), scene["lock"]
    marker = (env / "envbuilder.json").read_bytes()
    lock_bytes = lock.read_bytes()

    assert main(["upgrade", "cpu", "--home", home, "--torch", "==2.99.0"]) == 1
    err = capsys.readouterr().err
    assert "no plan serves torch ==2.99.0" in err and "nearest that works" in err and "Traceback" not in err
    assert main(["upgrade", "cpu", "--home", home, "--bnb", NEW_BNB, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"~ bitsandbytes   {OLD_BNB} -> {NEW_BNB}" in out and "= torch          2.13.0+cpu" in out
    assert "dry run: nothing was changed" in out
    assert (env / "envbuilder.json").read_bytes() == marker and lock.read_bytes() == lock_bytes

    # Stopped at the last moment before the swap (SIGTERM at the fault point): exit 143, everything as it was.
    _stopped_before_the_swap(scene)
    assert (env / "envbuilder.json").read_bytes() == marker and lock.read_bytes() == lock_bytes
    assert _layers(env)["bitsandbytes"] == OLD_BNB and not list(env.parent.glob(".cpu.tmp-*"))

    assert main(["upgrade", "cpu", "--home", home, "--bnb", NEW_BNB]) == 0
    assert "upgraded cpu: 1 package changed, smoke passed" in capsys.readouterr().out

    # The new set (accelerate's stray 1.99.0 is gone too: the new environment is the lock), the new lock, the
    # smoke test that passed in the new environment before the swap recorded in both, the guard on the new pins.
    layers = _layers(env)
    assert layers["bitsandbytes"] == NEW_BNB and layers["torch"] == "2.13.0+cpu" and layers["accelerate"] == "1.15.0"
    new = read_lock(lock)
    assert new.package("bitsandbytes").version == NEW_BNB and new.tool.smoke["result"] == "pass"  # type: ignore[union-attr]
    assert read_lock(env / "pylock.toml").tool.digest == new.tool.digest
    assert json.loads((env / "envbuilder.json").read_text())["smoke"]["result"] == "pass"
    assert f"bitsandbytes=={NEW_BNB}" in (env / CONSTRAINTS_FILE).read_text()
    assert not list(env.parent.glob(".cpu.tmp-*")) and not list(env.parent.glob(".cpu.old-*"))
    assert main(["list", "--home", home, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["envs"][0]
    assert row["proven"] is True and row["smoke"] == "pass" and row["drift"] == []
