"""Shared test fixtures: the shipped matrix (loaded once), and a guard that blocks expensive tools.

STYLE rule 12: unit tests must not start GPU, packaging or container tools by accident. Every process goes
through ``envbuilder._run.run``; the guard below refuses the tools in ``BLOCKED_TOOLS`` unless the test carries
one of ``OPT_IN_MARKERS``. Other commands (``python -m pip config list``, ``ldconfig``) pass through.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from envbuilder import _run
from envbuilder.matrix import Matrix, load_matrix

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
