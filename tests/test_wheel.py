"""The wheel carries the matrix: a non-editable install into a fresh venv resolves with no checkout around it.

Before issue 12 the matrix was read from ``matrices/`` beside the package directory, which only a checkout or an
editable install has: ``pip install .`` gave an envbuilder that could not start. ``matrices/`` now ships as the
package data ``envbuilder.matrices`` (pyproject ``package-dir``).
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import pytest

from envbuilder.edge import _run

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.integration
@pytest.mark.network
def test_a_wheel_install_resolves_without_the_checkout(tmp_path: Path) -> None:
    from envbuilder.edge.uv import find_uv

    uv = find_uv()
    dist = tmp_path / "dist"
    _run.run([uv, "build", "--wheel", "-q", "--out-dir", str(dist), str(ROOT)], timeout=600)
    (wheel,) = dist.glob("envbuilder-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {f"envbuilder/matrices/{p.name}" for p in (ROOT / "matrices").iterdir() if p.is_file()}
    assert shipped <= names, sorted(shipped - names)
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "envbuilder").rglob("*") if p.is_file()}
    sources = {s for s in sources if "__pycache__" not in s}
    assert sources <= names, sorted(sources - names)  # every module, template and the smoke program

    venv = tmp_path / "venv"
    _run.run([uv, "venv", "-q", "-p", f"{sys.version_info.major}.{sys.version_info.minor}", str(venv)], timeout=120)
    python = venv / "bin" / "python"
    _run.run([uv, "pip", "install", "-q", "--python", str(python), str(wheel)], timeout=600)
    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ENVBUILDER_MATRIX_DIR", "PYTHONPATH")}
    where = _run.run(
        [str(python), "-c", "from envbuilder.model.matrix import BUILTIN_DIR; print(BUILTIN_DIR)"], cwd=away, env=env
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
    result = _run.run(
        [str(venv / "bin" / "envbuilder"), "resolve", "--gpu", "sm_89", "--driver", "550.54.14"],
        cwd=away,
        env=env,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "torch" in result.stdout and "bitsandbytes" in result.stdout
