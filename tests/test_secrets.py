"""Secrets (issue 11, items 2 and 3): userinfo in an index URL never reaches a file, a cache or the console.

A credentialed index is served on loopback (the session's index of ``tests/loopback.py``, here behind HTTP Basic
auth on every request: the real CPU torch wheel as a PyTorch mirror, PyPI's pages passed through as a PyPI
mirror). lock, create and sync run through it as a user's laptop would (pip's wheelhouse and configuration off),
with the credentials given as a flag, as PIP_INDEX_URL, as ENVBUILDER_INDEX_URL and in the manifest, all with
``--verbose``; then every output is searched for the user name and the password: stdout and stderr, every file
under the test's home, cache and work directories, the files uv's cache gained meanwhile, the Dockerfile and the
recipe. The server's log shows the credentials did reach uv (every request authorised), so the mirror works.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback import Index, Site

pytestmark = [pytest.mark.integration, pytest.mark.network]

USER, PASSWORD = "ebuser-4d7a", "PTTOKEN-9c3e51"  # distinctive, so that a search cannot miss or mistake them
MIRROR_USER, MIRROR_PASSWORD = "mirror-6b2f", "S3CRET-e8a40d"
CPU = ("--gpu", "cpu", "--python", "3.11", "--torch", "2.13.0")  # the torch build the loopback mirror holds


@pytest.fixture(scope="module")
def index(loopback_index: Index, cpu_torch_wheel: Path) -> Iterator[Site]:
    with loopback_index.site("/whl", user=USER, password=PASSWORD) as site:
        yield site


@pytest.fixture(scope="module")
def mirror(loopback_index: Index) -> Iterator[Site]:
    with loopback_index.site("/simple", "/files", user=MIRROR_USER, password=MIRROR_PASSWORD) as site:
        yield site


class Runs:
    """envbuilder as a subprocess, on a laptop's configuration; every output kept for the search."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.outputs: list[str] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "ENVBUILDER_"))}
        self.env |= {
            "PIP_CONFIG_FILE": os.devnull,
            "ENVBUILDER_HOME": str(root / "home"),
            "ENVBUILDER_CACHE": str(root / "cache"),
        }

    def __call__(self, *argv: str, env: dict[str, str] | None = None, cwd: Path | None = None, code: int = 0) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "envbuilder", "--verbose", *argv],
            env=self.env | (env or {}),
            cwd=cwd or self.root / "work",
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        self.outputs += [proc.stdout, proc.stderr]
        assert proc.returncode == code, proc.stderr[-3000:]
        if argv[0] in {"lock", "create", "sync"}:
            assert "run: " in proc.stderr  # --verbose did echo the commands it ran
        return proc.stdout + proc.stderr


def _leaks(text: str) -> list[str]:
    return [s for s in (USER, PASSWORD, MIRROR_USER, MIRROR_PASSWORD) if s in text]


def _files_with_secrets(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if any(s.encode() in data for s in (USER, PASSWORD, MIRROR_USER, MIRROR_PASSWORD)):
            found.append(str(path))
    return found


def _new_files(root: Path, since: float) -> list[Path]:
    """Files under ``root`` changed since ``since`` (uv's cache is shared: others' temporary files come and go)."""
    found = []
    for directory, _dirs, files in os.walk(root):  # os.walk skips what vanishes under it; rglob raises
        for name in files:
            path = Path(directory) / name
            try:
                if path.stat().st_mtime >= since:
                    found.append(path)
            except OSError:
                continue
    return found


def _uv_cache_dir() -> Path:
    from envbuilder.edge.uv import find_uv

    return Path(subprocess.run([find_uv(), "cache", "dir"], capture_output=True, text=True, check=True).stdout.strip())


def test_credentials_reach_uv_and_nothing_else(  # type: ignore[no-untyped-def]
    tmp_path: Path, index: Site, mirror: Site, lock_consumers
) -> None:
    started = time.time() - 1
    (tmp_path / "work").mkdir()
    run = Runs(tmp_path)
    pytorch = index.with_auth("/whl")
    work = tmp_path / "work"

    # lock through the credentialed PyTorch mirror (its reachability probe must authenticate: urllib refuses
    # userinfo in a URL, so the probe sends an Authorization header).
    out = run("lock", *CPU, "--pytorch-index", pytorch, "-o", str(work / "pylock.a.toml"))
    assert "cannot be reached" not in out
    lock_text = (work / "pylock.a.toml").read_text()
    assert f'url = "{index.url}/whl/cpu/torch-2.13.0' in lock_text  # credential-free, from the mirror
    reach = json.loads((tmp_path / "cache" / "reachable.json").read_text())
    assert reach[f"{index.url}/whl"][0] is True

    # create and sync through it: the lock's URLs need the credentials again, which uv gets from its environment.
    run("create", *CPU, "--pytorch-index", pytorch, "--name", "cred", "--no-smoke",
        "--lock-out", str(work / "pylock.cred.toml"))
    run("sync", str(work / "pylock.cred.toml"), "--pytorch-index", pytorch, "--name", "cred2", "--no-smoke")
    torch_version = subprocess.run(
        [str(tmp_path / "home" / "envs" / "cred2" / "bin" / "python"), "-c", "import torch; print(torch.__version__)"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert torch_version == "2.13.0+cpu"

    # A credentialed PyPI mirror from pip's environment variable, from ENVBUILDER_INDEX_URL and from the manifest.
    simple = mirror.with_auth("/simple")
    run("lock", *CPU, "--pytorch-index", pytorch, "-o", str(work / "pylock.b.toml"),
        "--refresh", env={"PIP_INDEX_URL": simple, "PIP_CONFIG_FILE": os.devnull})
    assert f'url = "{mirror.url}/files/' in (work / "pylock.b.toml").read_text()
    run("lock", *CPU, "--pytorch-index", pytorch, "-o", str(work / "pylock.c.toml"),
        env={"ENVBUILDER_INDEX_URL": simple})
    (work / "envbuilder.toml").write_text(
        f'[sources]\nindex-url = "{simple}"\npytorch-index = "{pytorch}"\n\n'
        '[[env]]\nname = "m"\nprofile = "cpu"\npython = "3.11"\ntorch = "2.13.0"\n'
    )
    run("lock", "--manifest", str(work / "envbuilder.toml"))

    # Generated files from those locks.
    run("dockerfile", "--lock", str(work / "pylock.b.toml"), "-o", str(work / "docker-b"))
    # (recipes take https indexes, or plain http to this machine: the loopback mirror's script is searched too)
    run("recipe", "wsl2", "--lock", str(work / "pylock.cred.toml"), "-o", str(work / "setup.sh"))

    # The credentials were used: the mirrors answered only authorised requests, and got some.
    assert index.authorised and mirror.authorised
    assert all(ok for _, ok in index.requests if _.startswith("/whl/cpu/torch-"))

    # ... and reached nothing else.
    assert _leaks("".join(run.outputs)) == []
    manifest = work / "envbuilder.toml"  # the user's own file, which holds the credentials they wrote
    ours = [p for p in tmp_path.rglob("*") if p.is_file() and p != manifest]
    assert len(ours) > 100  # the environments, locks, caches, Dockerfile and recipe are all searched
    uv_new = _new_files(_uv_cache_dir(), started)
    assert _files_with_secrets(ours + uv_new) == []
    # Every lock written here is one uv and packaging.pylock accept (tests/conftest.py).
    locks = sorted((tmp_path / "work").glob("pylock.*.toml"))
    assert len(locks) >= 4
    for lock in locks:
        lock_consumers(lock)
    # For the README's reliability figures (pytest -rP shows it).
    print(f"secrets: {len(run.outputs) // 2} runs, {len(run.outputs)} stdout/stderr streams, "
          f"{len(ours)} files of ours and {len(uv_new)} new files of uv's cache searched; "
          f"{len(index.authorised) + len(mirror.authorised)} authorised requests; leaks: 0")
