"""Every install route, for real, on a machine like the users': no pip configuration at all.

These machines set pip's find-links (``PIP_FIND_LINKS`` and the user's pip.conf name a wheelhouse), which sends
envbuilder's installs through its hash-checked requirements route; a laptop or CI runner has none of it and
installs through uv's PEP 751 (pylock) route. So each test here runs envbuilder as a separate process with
``PIP_CONFIG_FILE=/dev/null`` and none of pip's ``PIP_*`` variables, PyPI for everything but torch, and the
PyTorch CPU index served on loopback (the session's index, tests/loopback.py): a PEP 503 tree in the index's own layout
(``<base>/cpu/torch/`` lists the wheel, which lies at ``<base>/cpu/<file>``) holding the torch CPU wheel that
the wheelhouse of pip's configuration holds here.

- the README's main command (``pip install -e .`` then ``python -m envbuilder create``) from the checkout, in a
  fresh venv, with ``ENVBUILDER_PYTORCH_INDEX`` pointing at the loopback index: uv's pylock route, smoke passed;
- the teammate route: ``sync`` of that lock where the only torch source is a wheelhouse (``--find-links``):
  the same set, hashes verified (a wheel with the right name and the wrong bytes is refused);
- a lock shared under an old dotted name (``pylock.cpu-py3.11.toml``) still installs, with ``sync`` and the
  WSL2 recipe, each saying so in one line.

The pip-configuration route (the wheelhouse from pip's find-links) is tests/test_create.py's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from envbuilder.model.lock import read_lock

if TYPE_CHECKING:
    from loopback import Index

pytestmark = [pytest.mark.integration, pytest.mark.network]

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
LOCK = "pylock.cpu-py311-linux-x86_64.toml"  # the default lock of the CPU profile, Python 3.11, on Linux x86_64


class PyTorchMirror:
    """The session's loopback index (tests/loopback.py) as this module reads it: ``url`` the PyTorch index
    (``http://127.0.0.1:<port>/whl``), ``requests`` every path asked for since the module began."""

    def __init__(self, index: Index, start: int) -> None:
        self.url = index.pytorch
        self._index, self._start = index, start

    @property
    def requests(self) -> list[str]:
        return [p for p, _ in self._index.requests[self._start :]]


@pytest.fixture(scope="module")
def torch_index(loopback_index: Index, cpu_torch_wheel: Path) -> Iterator[PyTorchMirror]:
    with loopback_index.site("/whl"):  # open, as download.pytorch.org is
        yield PyTorchMirror(loopback_index, len(loopback_index.requests))


def ordinary_env(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment as an ordinary machine has it: no pip configuration, no uv index settings."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "ENVBUILDER_", "UV_INDEX", "UV_EXTRA_INDEX"))
    }
    env.pop("UV_FIND_LINKS", None)
    env.pop("VIRTUAL_ENV", None)
    env |= {
        "PIP_CONFIG_FILE": os.devnull,  # pip then reads no configuration file at all (pip's documented rule)
        "UV_NO_CONFIG": "1",
        "ENVBUILDER_HOME": str(home),
        "ENVBUILDER_CACHE": str(home / "cache"),
        **extra,
    }
    return env


def _run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def ordinary(torch_index: PyTorchMirror, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The README's main command, as a user's machine runs it: install the checkout, then `create`."""
    work = tmp_path_factory.mktemp("ordinary")
    env = ordinary_env(work / "home", ENVBUILDER_PYTORCH_INDEX=torch_index.url)
    venv = work / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)], work, env)
    assert made.returncode == 0, made.stderr
    python = str(venv / "bin" / "python")
    # `python3 -m pip install -e .` from the checkout, with no pip configuration: every dependency from PyPI.
    installed = _run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-e", str(ROOT)], work, env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    created = _run([python, "-m", "envbuilder", "create"], work, env)
    return {"work": work, "env": env, "python": python, "create": created, "index": torch_index}


def _freeze(env_dir: Path) -> list[str]:
    from uv import find_uv_bin

    out = subprocess.run(
        [find_uv_bin(), "pip", "freeze", "--python", str(env_dir / "bin" / "python")],
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(out.stdout.split())


def test_the_main_command_on_an_ordinary_machine(ordinary: dict[str, object], lock_consumers) -> None:  # type: ignore[no-untyped-def]
    created = ordinary["create"]
    assert isinstance(created, subprocess.CompletedProcess)
    assert created.returncode == 0, created.stdout + created.stderr
    work = Path(str(ordinary["work"]))
    assert sorted(p.name for p in work.glob("pylock*.toml")) == [LOCK]
    # uv's pylock route (not the requirements route that pip's configuration triggers), and no pip config used.
    count = len(read_lock(work / LOCK).packages)  # what PyPI's releases of the day resolved to (42 on 2026-12-03)
    assert f"installing {count} packages from {LOCK} (hashes verified)" in created.stderr, created.stderr
    assert "using pip's" not in created.stderr
    assert "  smoke: passed" in created.stdout
    planned = lock_consumers(work / LOCK)
    assert "torch==2.13.0+cpu" in planned and len(planned) == count
    # The mirror's page listed 2.13.0+cpu only (cp311): the plan is that build, from that index.
    index = ordinary["index"]
    assert isinstance(index, PyTorchMirror)
    text = (work / LOCK).read_text()
    assert f'url = "{index.url}/cpu/torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl"' in text
    assert "/whl/cpu/torch/" in index.requests
    env_dir = work / "home" / "envs" / "cpu-py3.11"
    assert "torch==2.13.0+cpu" in _freeze(env_dir)
    assert json.loads((env_dir / "envbuilder.json").read_text())["smoke"]["result"] == "pass"


def _wheelhouse(tmp: Path, wheel: Path) -> Path:
    """A teammate's wheelhouse holding only the torch wheel (everything else comes from PyPI)."""
    house = tmp / "wheelhouse"
    house.mkdir()
    (house / wheel.name).symlink_to(wheel)
    return house


def test_a_teammate_syncs_the_lock_from_a_wheelhouse(  # type: ignore[no-untyped-def]
    ordinary: dict[str, object], cpu_torch_wheel: Path, tmp_path: Path, lock_consumers
) -> None:
    """Only a wheelhouse serves torch (the PyTorch index is out of reach): the same set, hashes verified."""
    created = ordinary["create"]
    assert isinstance(created, subprocess.CompletedProcess) and created.returncode == 0, "the create test failed"
    index = ordinary["index"]
    assert isinstance(index, PyTorchMirror)
    shared = tmp_path / LOCK
    shutil.copyfile(Path(str(ordinary["work"])) / LOCK, shared)  # as a teammate gets it from version control
    env = ordinary_env(tmp_path / "home", ENVBUILDER_PYTORCH_INDEX="http://127.0.0.1:9/whl")  # nothing listens
    house = _wheelhouse(tmp_path, cpu_torch_wheel)
    before = len(index.requests)
    argv = [str(ordinary["python"]), "-m", "envbuilder", "sync", str(shared), "--find-links", str(house)]
    synced = _run([*argv, "--name", "teammate", "--no-smoke"], tmp_path, env)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    count = len(read_lock(shared).packages)
    assert f"installing {count} packages (hash-checked, from the configured sources)" in synced.stderr
    assert (
        "the PyTorch index http://127.0.0.1:9/whl is out of reach: its files come from the wheelhouse" in synced.stderr
    )
    assert index.requests[before:] == []  # the lock's loopback URLs were never used
    work_env = Path(str(ordinary["work"])) / "home" / "envs" / "cpu-py3.11"
    assert _freeze(tmp_path / "home" / "envs" / "teammate") == _freeze(work_env)
    lock_consumers(shared)


def test_a_wheel_with_the_right_name_and_wrong_bytes_is_refused(
    ordinary: dict[str, object], cpu_torch_wheel: Path, tmp_path: Path
) -> None:
    created = ordinary["create"]
    assert isinstance(created, subprocess.CompletedProcess) and created.returncode == 0, "the create test failed"
    house = tmp_path / "wheelhouse"
    house.mkdir()
    with zipfile.ZipFile(house / cpu_torch_wheel.name, "w") as fake:
        fake.writestr("torch/__init__.py", "raise SystemExit('not the locked torch')\n")
    env = ordinary_env(tmp_path / "home", ENVBUILDER_PYTORCH_INDEX="http://127.0.0.1:9/whl")
    argv = [str(ordinary["python"]), "-m", "envbuilder", "sync", str(Path(str(ordinary["work"])) / LOCK)]
    synced = _run([*argv, "--find-links", str(house), "--name", "fake", "--no-smoke"], tmp_path, env)
    assert synced.returncode == 2, synced.stdout + synced.stderr
    assert "envbuilder: uv pip sync: a file does not match the lock's hash: Hash mismatch for `torch==2.13.0+cpu`" in (
        synced.stderr
    )
    assert "TIP a wheelhouse or mirror holds another file under that name" in synced.stderr
    assert "Traceback" not in synced.stderr
    assert not (tmp_path / "home" / "envs" / "fake").exists()


def test_a_lock_under_an_old_dotted_name_still_syncs(ordinary: dict[str, object], tmp_path: Path) -> None:
    created = ordinary["create"]
    assert isinstance(created, subprocess.CompletedProcess) and created.returncode == 0, "the create test failed"
    index = ordinary["index"]
    assert isinstance(index, PyTorchMirror)
    old = tmp_path / "pylock.cpu-py3.11.toml"  # the name envbuilder itself gave this lock before
    shutil.copyfile(Path(str(ordinary["work"])) / LOCK, old)
    env = ordinary_env(tmp_path / "home", ENVBUILDER_PYTORCH_INDEX=index.url)
    synced = _run(
        [str(ordinary["python"]), "-m", "envbuilder", "sync", str(old), "--name", "old", "--no-smoke"], tmp_path, env
    )
    assert synced.returncode == 0, synced.stdout + synced.stderr
    note = (
        "note: pylock.cpu-py3.11.toml is not a valid PEP 751 name (uv refuses it): installing a copy named "
        "pylock.cpu-py311.toml; rename the file to pylock.cpu-py311.toml to share it"
    )
    assert synced.stderr.count(note) == 1, synced.stderr
    assert "torch==2.13.0+cpu" in _freeze(tmp_path / "home" / "envs" / "old")


def test_the_wsl2_recipe_installs_a_lock_under_an_old_dotted_name(ordinary: dict[str, object], tmp_path: Path) -> None:
    """The recipe writes the embedded lock under a valid name, and its uv pip sync installs it for real."""
    created = ordinary["create"]
    assert isinstance(created, subprocess.CompletedProcess) and created.returncode == 0, "the create test failed"
    old = tmp_path / "pylock.cpu-py3.11.toml"
    shutil.copyfile(Path(str(ordinary["work"])) / LOCK, old)
    env = ordinary_env(tmp_path / "home")
    script = tmp_path / "setup.sh"
    made = _run(
        [str(ordinary["python"]), "-m", "envbuilder", "recipe", "wsl2", "--lock", str(old), "-o", str(script)],
        tmp_path,
        env,
    )
    assert made.returncode == 0, made.stderr
    note = (
        "note: pylock.cpu-py3.11.toml is not a valid PEP 751 name (uv refuses it): "
        "the script writes it as pylock.cpu-py311.toml"
    )
    assert made.stderr.count(note) == 1, made.stderr
    # A fake WSL2 (tests/test_wsl.py's layout): the kernel's /proc/version and /dev/dxg; no GPU is needed.
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "usr" / "lib" / "wsl" / "lib").mkdir(parents=True)
    (root / "proc" / "version").write_text((FIXTURES / "wsl2" / "proc-version-wsl2-5.4.91.txt").read_text())
    (root / "dev" / "dxg").write_text("")
    from uv import find_uv_bin

    uv = find_uv_bin()
    cache = subprocess.run([uv, "cache", "dir"], capture_output=True, text=True, check=True).stdout.strip()
    home = tmp_path / "wsl-home"
    home.mkdir()
    run_env = {
        "HOME": str(home),
        "PATH": os.pathsep.join([str(Path(uv).parent), "/usr/bin", "/bin"]),
        "ENVBUILDER_ROOT": str(root),
        "ENVBUILDER_ALLOW_ROOT": "1",  # CI runs as root; the root refusal is tests/test_wsl.py's
        "LANG": "C.UTF-8",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_CACHE_DIR": cache,  # the downloads the create above made
        "UV_NO_CONFIG": "1",
        # This network's TLS needs the system's CA bundle, as a user's shell here has it (SSL_CERT_FILE).
        **{k: os.environ[k] for k in ("SSL_CERT_FILE", "SSL_CERT_DIR") if k in os.environ},
    }
    proc = subprocess.run(["bash", str(script)], env=run_env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env_dir = home / ".local" / "share" / "envbuilder" / "envs" / "cpu-py3.11"
    assert (env_dir / "pylock.cpu-py311.toml").is_file()
    assert "smoke: ok" in proc.stdout
    assert "torch==2.13.0+cpu" in _freeze(env_dir)
    # The recipe's guard (issue 15), the same as create's: constraints file, pip.conf, activation block.
    guard = (env_dir / "envbuilder-constraints.txt").read_text()
    assert "torch==2.13.0+cpu" in guard.splitlines() and "envbuilder upgrade" in guard
    assert "envbuilder-constraints.txt" in (env_dir / "pip.conf").read_text()
    assert "UV_CONSTRAINT=" in (env_dir / "bin" / "activate").read_text()
