"""Shared test fixtures: the shipped matrix (loaded once), a guard that blocks expensive tools, and the check
that every lock the tests write is accepted by its real consumers (``packaging.pylock`` and uv).

STYLE rule 12: unit tests must not start GPU, packaging or container tools by accident. Every process goes
through ``envbuilder.edge._run.run``; the guard below refuses the tools in ``BLOCKED_TOOLS`` unless the test carries
one of ``OPT_IN_MARKERS``. Other commands (``python -m pip config list``, ``ldconfig``) pass through.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from envbuilder.edge import _run
from envbuilder.model.matrix import Matrix, load_matrix

if TYPE_CHECKING:
    from loopback import Index

BLOCKED_TOOLS = frozenset({"nvidia-smi", "uv", "podman", "docker", "buildah"})
OPT_IN_MARKERS = ("integration", "gpu", "podman", "network")


def _tool_name(argv: Sequence[str | os.PathLike[str]]) -> str:
    """'/usr/bin/nvidia-smi' -> 'nvidia-smi'; 'C:\\uv.exe' -> 'uv'."""
    name = Path(os.fspath(argv[0])).name if argv else ""
    return name.removesuffix(".exe")


@pytest.fixture(autouse=True)
def _block_expensive_tools(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse nvidia-smi/uv/podman/docker/buildah unless the test is marked integration, gpu, podman or network."""
    if any(request.node.get_closest_marker(m) for m in OPT_IN_MARKERS):
        return
    real_run: Callable[..., _run.Result] = _run.run

    def guarded(argv: Sequence[str | os.PathLike[str]], *args: Any, **kwargs: Any) -> _run.Result:
        tool = _tool_name(argv)
        if tool in BLOCKED_TOOLS:
            msg = (
                f"use of {tool!r} is blocked in unit tests: mark the test with one of "
                f"{', '.join('@pytest.mark.' + m for m in OPT_IN_MARKERS)}"
            )
            raise RuntimeError(msg)
        return real_run(argv, *args, **kwargs)

    monkeypatch.setattr(_run, "run", guarded)


@pytest.fixture(scope="session")
def matrix() -> Matrix:
    """The shipped matrix, loaded once per session (ignores ENVBUILDER_MATRIX_DIR so tests see the facts)."""
    saved = os.environ.pop("ENVBUILDER_MATRIX_DIR", None)
    try:
        return load_matrix()
    finally:
        if saved is not None:
            os.environ["ENVBUILDER_MATRIX_DIR"] = saved


# --------------------------------------------------------------------------- locks and their real consumers

# The marker environment of each wheel platform a lock is made for (PEP 508 names; values as CPython reports them).
_MARKER_ENV = {
    "linux-x86_64": {
        "sys_platform": "linux",
        "platform_machine": "x86_64",
        "platform_system": "Linux",
        "os_name": "posix",
    },
    "linux-aarch64": {
        "sys_platform": "linux",
        "platform_machine": "aarch64",
        "platform_system": "Linux",
        "os_name": "posix",
    },
    "windows-x86_64": {
        "sys_platform": "win32",
        "platform_machine": "AMD64",
        "platform_system": "Windows",
        "os_name": "nt",
    },
}


def check_lock_with_consumers(
    path: Path, tmp: Path, *, python: str | None = None, platform: str | None = None
) -> set[str]:
    """Fail unless packaging.pylock and uv both accept the lock at ``path``; return uv's install set.

    ``python`` and ``platform`` (``linux-x86_64``) are read from the lock's ``[tool.envbuilder]``; give them for a
    lock uv wrote on its own (tests/fixtures/locks), which has none.

    packaging: the file name (PEP 751's rule, ``is_valid_pylock_path``) and the content (``Pylock.from_dict``).
    uv: ``uv pip install --dry-run -r`` with an installed CPython of the lock's version, for the lock's platform,
    offline (nothing is fetched),
    whose plan must be exactly the lock's packages whose markers hold there.
    """
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    from packaging.markers import Marker
    from packaging.pylock import Pylock, is_valid_pylock_path
    from uv import find_uv_bin

    from envbuilder.edge.uv import UV_PLATFORMS
    from envbuilder.jobs.builder import interpreter_for

    assert is_valid_pylock_path(path), f"{path.name}: not a PEP 751 lock name"
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    pylock = Pylock.from_dict(doc)  # raises PylockValidationError on anything PEP 751 forbids
    tool = doc.get("tool", {}).get("envbuilder", {})
    python, platform = python or str(tool["python"]), platform or str(tool["platform"])
    env = {**_MARKER_ENV[platform], "python_version": python, "python_full_version": f"{python}.0"}
    expected = {
        f"{p.name}=={p.version}" for p in pylock.packages if p.marker is None or Marker(str(p.marker)).evaluate(env)
    }
    target = tmp / f"dry-run-{path.stem}"
    argv = [find_uv_bin(), "pip", "install", "--dry-run", "--offline", "--target", str(target)]
    interpreter = interpreter_for(python)  # an installed CPython of the lock's version, found as envbuilder does
    argv += ["--python", interpreter, "--python-platform", UV_PLATFORMS[platform], "-r", str(path)]
    out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0, f"uv refused {path}:\n{out.stderr}"
    planned = set(re.findall(r"^ \+ (\S+==\S+)$", out.stderr, flags=re.MULTILINE))
    assert planned == expected, f"uv would install {sorted(planned ^ expected)} differently from {path.name}"
    return planned


@pytest.fixture
def lock_consumers(tmp_path: Path) -> Callable[..., set[str]]:
    """``lock_consumers(path)``: the lock passes packaging.pylock and uv's dry run, or the test fails
    (``python=``, ``platform=`` for a lock without ``[tool.envbuilder]``)."""
    return lambda path, **where: check_lock_with_consumers(path, tmp_path, **where)


# --------------------------------------------------------------------------- the torch CPU wheel on disk


def pip_find_links() -> list[str]:
    """The wheelhouse directories pip's configuration names (``pip config list``), as CI finds them."""
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    for line in out.splitlines():
        if ".find-links=" in line:
            return [d.removeprefix("file://") for d in line.split("=", 1)[1].strip("'").split()]
    return []


def _find_cpu_torch_wheel() -> Path | None:
    for d in pip_find_links():
        found = sorted(Path(d).glob("torch-*+cpu-cp311-cp311-manylinux_*_x86_64.whl"))
        if found:
            return found[-1]
    return None


@pytest.fixture(scope="session")
def cpu_torch_wheel() -> Path:
    """The torch CPU wheel for Python 3.11 that the wheelhouse of pip's configuration holds (skips without it)."""
    found = _find_cpu_torch_wheel()
    if found is not None:
        return found
    pytest.skip(
        "no torch CPU wheel for Python 3.11 in the wheelhouse of pip's configuration (`pip config list`): "
        "the PyTorch index cannot be reached here, so the CPU profile has no torch to install"
    )


@pytest.fixture(scope="session")
def loopback_index() -> Iterator[Index]:
    """The session's package index on loopback (tests/loopback.py): the torch CPU wheel (when the wheelhouse has
    it; a test that needs it asks for ``cpu_torch_wheel`` too) at one URL for the whole run, so uv's cache keeps
    one unpacked copy of it; a test opens a site (open or credentialed) on it."""
    from loopback import serve_index

    wheel = _find_cpu_torch_wheel()
    with serve_index([wheel] if wheel else []) as index:
        yield index
