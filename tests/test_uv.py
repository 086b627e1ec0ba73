"""uv.py's reading of uv's failures (real uv outputs in tests/fixtures/uv/): uv's own cause, and a TIP that
names the source the plan takes the missing file from."""

from __future__ import annotations

from pathlib import Path

import pytest

from envbuilder.edge.uv import _classify, uv_cause
from envbuilder.model.errors import CommandFailed, SourceError

FIXTURES = Path(__file__).parent / "fixtures" / "uv"


def _out(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("fixture", "cause"),
    [
        (
            "compile-no-version.txt",
            "Because there is no version of torch==2.14.1+cpu and you require torch==2.14.1+cpu, we can conclude "
            "that your requirements are unsatisfiable.",
        ),
        (
            "compile-not-found.txt",
            "Because this-package-does-not-exist-envbuilder was not found in the package registry and you require "
            "this-package-does-not-exist-envbuilder==1.0, we can conclude that your requirements are unsatisfiable.",
        ),
        (
            "compile-connection-refused.txt",
            "Request failed after 3 retries in 10.3s; "
            "Failed to fetch: http://127.0.0.1:9/whl/cpu/this-package-does-not-exist-envbuilder/; "
            "Connection refused (os error 111)",
        ),
        (
            "sync-invalid-name.txt",
            "`pylock.cpu-py3.11.toml` is not a valid PEP 751 filename: expected `pylock.toml` or "
            "`pylock.<name>.toml`, where `<name>` is non-empty and contains no dots",
        ),
        (
            "sync-hash-mismatch.txt",
            "Hash mismatch for `torch==2.13.0+cpu` (expected "
            "sha256:6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b, got "
            "sha256:02db2328d8602cdde2e51ee1f7ca71e4fd5d63b56cc7fc0993bae50097c1ad36)",
        ),
        ("", "uv gave no reason"),
    ],
)
def test_uv_cause_is_uvs_own_sentence(fixture: str, cause: str) -> None:
    assert uv_cause(_out(fixture) if fixture else "") == cause


ORIGINS = {
    "torch": "http://127.0.0.1:8765/whl/cpu",
    "bitsandbytes": "PyPI",
    "this-package-does-not-exist-envbuilder": "PyPI",
}


@pytest.mark.parametrize(
    ("fixture", "message", "hint"),
    [
        (
            "compile-no-version.txt",
            "uv pip compile: the sources cannot serve the plan's pins: Because there is no version of "
            "torch==2.14.1+cpu and you require torch==2.14.1+cpu, we can conclude that your requirements are "
            "unsatisfiable.",
            "torch comes from http://127.0.0.1:8765/whl/cpu, which does not serve the file the plan needs: add it "
            "there, or give a wheelhouse (--find-links DIR) or mirror that has it",
        ),
        (
            "compile-not-found.txt",
            "uv pip compile: the sources cannot serve the plan's pins: Because this-package-does-not-exist-envbuilder "
            "was not found in the package registry and you require this-package-does-not-exist-envbuilder==1.0, we "
            "can conclude that your requirements are unsatisfiable.",
            "this-package-does-not-exist-envbuilder comes from PyPI, which does not serve the file the plan needs: "
            "add it there, or give a wheelhouse (--find-links DIR) or mirror that has it",
        ),
        (
            "sync-hash-mismatch.txt",
            "uv pip compile: a file does not match the lock's hash: Hash mismatch for `torch==2.13.0+cpu` (expected "
            "sha256:6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b, got "
            "sha256:02db2328d8602cdde2e51ee1f7ca71e4fd5d63b56cc7fc0993bae50097c1ad36)",
            "a wheelhouse or mirror holds another file under that name: replace it with the file the lock names "
            "(the lock records its sha256), or remove it",
        ),
        (
            "compile-connection-refused.txt",
            "uv pip compile: a package source could not be reached: Request failed after 3 retries in 10.3s; "
            "Failed to fetch: http://127.0.0.1:9/whl/cpu/this-package-does-not-exist-envbuilder/; "
            "Connection refused (os error 111)",
            "check the network, or use --index-url / --find-links / --offline with a wheelhouse",
        ),
    ],
)
def test_failures_carry_uvs_cause_and_name_the_source(fixture: str, message: str, hint: str) -> None:
    exc = CommandFailed("uv exited 1", returncode=1, output=_out(fixture))
    err = _classify(exc, "uv pip compile", ORIGINS)
    assert isinstance(err, SourceError)
    assert (err.message, err.hint) == (message, hint)


def test_a_failure_uv_does_not_explain_keeps_its_output() -> None:
    exc = CommandFailed("uv pip sync exited 2", returncode=2, output=_out("sync-invalid-name.txt"))
    assert _classify(exc, "uv pip sync") is exc


@pytest.mark.parametrize(
    ("name", "counted"),
    [
        ("UV_EXCLUDE_NEWER", True),  # moves the unpinned dependencies
        ("UV_PRERELEASE", True),
        ("UV_INDEX_STRATEGY", True),
        ("UV_DEFAULT_INDEX", True),
        ("UV_SOMETHING_NEW", True),  # unknown: counted (a cache miss at worst)
        ("UV_NO_PROGRESS", False),  # output only
        ("UV_CACHE_DIR", False),
        ("UV_CONCURRENT_DOWNLOADS", False),
        ("UV_INDEX_ENVBUILDER_1_PASSWORD", False),  # a secret never reaches a cache key
        ("UV_INDEX_ENVBUILDER_1_USERNAME", False),
        ("UV_PUBLISH_TOKEN", False),
        ("PIP_INDEX_URL", False),  # not uv's
    ],
)
def test_the_uv_settings_a_cached_resolution_is_keyed_on(name: str, counted: bool) -> None:
    from envbuilder.edge.uv import resolution_vars

    assert (resolution_vars({name: "x"}) == [(name, "x")]) is counted
