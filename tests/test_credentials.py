"""Credentials in index URLs, without uv (issue 11, items 2 and 3): taken apart once, given to uv by name.

The end-to-end proof (real uv through a credentialed loopback index, every output searched) is
tests/test_secrets.py; these are the tables and the edges that do not need uv.
"""

from __future__ import annotations

import argparse
import logging

import pytest
from loopback import Index

from envbuilder.edge import uv
from envbuilder.edge.settings import Settings, with_credentials_apart
from envbuilder.edge.sources import reachable
from envbuilder.model.credentials import Credential, credential_for, redact, split_userinfo


@pytest.mark.parametrize(
    ("url", "clean", "user", "password"),
    [
        ("https://u:p@mirror.example/simple", "https://mirror.example/simple", "u", "p"),
        ("https://TOKEN@host:8443/pypi/simple/", "https://host:8443/pypi/simple/", "TOKEN", ""),
        ("http://alice:S3%40CRET@127.0.0.1:8765/whl", "http://127.0.0.1:8765/whl", "alice", "S3@CRET"),
        ("https://__token__:pypi-AgEI@x.example/a@b", "https://x.example/a@b", "__token__", "pypi-AgEI"),
    ],
)
def test_split_userinfo(url: str, clean: str, user: str, password: str) -> None:
    bare, credential = split_userinfo(url)
    assert bare == clean
    assert credential is not None and (credential.username, credential.password) == (user, password)
    assert repr(credential) == f"Credential(prefix={clean.rstrip('/')!r})"  # no user name, no password


def test_a_url_without_userinfo_is_unchanged() -> None:
    assert split_userinfo("https://pypi.org/simple") == ("https://pypi.org/simple", None)
    assert split_userinfo("/opt/wheels") == ("/opt/wheels", None)


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("--default-index http://alice:S3CRET@h/simple", "--default-index http://***@h/simple"),
        ("error: GET https://TOKEN@h:1/x failed", "error: GET https://***@h:1/x failed"),
        ('url = "https://u:p@a/b" and "http://v:q@c/d"', 'url = "https://***@a/b" and "http://***@c/d"'),
        ("mail bob@example.com, see https://example.com/x@y", "mail bob@example.com, see https://example.com/x@y"),
    ],
)
def test_redact(text: str, redacted: str) -> None:
    assert redact(text) == redacted


def test_the_most_specific_credential_covers_a_url() -> None:
    wide, narrow = Credential("https://h/whl", "a", "1"), Credential("https://h/whl/cu128", "b", "2")
    assert credential_for("https://h/whl/cu128", (wide, narrow)) is narrow
    assert credential_for("https://h/whl/cpu/", (wide, narrow)) is wide
    assert credential_for("https://h/whlx", (wide, narrow)) is None


def test_settings_keep_userinfo_apart() -> None:
    settings = with_credentials_apart(
        Settings(
            index_url="https://u:p@mirror/simple",
            extra_index_urls=("https://v:q@extra/simple",),
            pytorch_index="http://bob:PTTOKEN@127.0.0.1:8765/whl/",
        )
    )
    assert settings.index_url == "https://mirror/simple"
    assert settings.extra_index_urls == ("https://extra/simple",)
    assert settings.pytorch_index == "http://127.0.0.1:8765/whl"
    assert len(settings.credentials) == 3
    assert "PTTOKEN" not in repr(settings) and ":p@" not in repr(settings)


def test_uv_gets_credentials_by_index_name_not_in_argv() -> None:
    settings = with_credentials_apart(
        Settings(index_url="https://u:p@mirror/simple", pytorch_index="http://bob:PTTOKEN@127.0.0.1:8765/whl")
    )
    args = uv.source_args(settings, ["http://127.0.0.1:8765/whl/cpu"])
    env = uv.base_env(settings, ["http://127.0.0.1:8765/whl/cpu"])
    assert args == [
        "--index",
        "envbuilder-1=http://127.0.0.1:8765/whl/cpu",
        "--default-index",
        "envbuilder-2=https://mirror/simple",
    ]
    assert (env["UV_INDEX_ENVBUILDER_1_USERNAME"], env["UV_INDEX_ENVBUILDER_1_PASSWORD"]) == ("bob", "PTTOKEN")
    assert (env["UV_INDEX_ENVBUILDER_2_USERNAME"], env["UV_INDEX_ENVBUILDER_2_PASSWORD"]) == ("u", "p")
    # Installing a pylock as it stands: only the credentialed prefixes are named, so uv can authenticate.
    assert uv.source_args(settings, None) == [
        "--index",
        "envbuilder-1=https://mirror/simple",
        "--index",
        "envbuilder-2=http://127.0.0.1:8765/whl",
    ]


def test_pip_config_credentials_are_named_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    from envbuilder.cli._sources import settings_from_args

    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_INDEX_URL", "https://u:TOKEN-1@h/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "https://v:TOKEN-2@e/simple")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    args = argparse.Namespace(
        find_links=[], ca_cert=[], offline=False, index_url=None, extra_index_url=[], pytorch_index=None,
        no_pip_config=False, home=None, refresh=False,
    )
    settings = settings_from_args(args)
    assert settings.index_url == "https://h/simple"
    assert "TOKEN" not in " ".join(settings.notes) and "https://***@h/simple" in " ".join(settings.notes)


def test_the_probe_of_a_credentialed_mirror_authenticates(tmp_path: object, loopback_index: Index) -> None:
    from pathlib import Path

    cache = Path(str(tmp_path))
    before = len(loopback_index.requests)
    with loopback_index.site("/whl", user="bob", password="PTTOKEN") as idx:
        settings = with_credentials_apart(Settings(cache_dir=cache, pytorch_index=idx.with_auth("/whl")))
        assert settings.pytorch_index is not None
        assert reachable(settings.pytorch_index, settings) is True
        assert loopback_index.requests[before:] == [("/whl/", True)]
        wrong = with_credentials_apart(Settings(cache_dir=cache / "2", pytorch_index=f"http://bob:nope@{idx.url[7:]}/whl"))
        assert wrong.pytorch_index is not None and reachable(wrong.pytorch_index, wrong) is False
    assert "PTTOKEN" not in (cache / "reachable.json").read_text()


def test_verbose_logs_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    from envbuilder.cli.app import _RedactingFormatter

    argv = ("--index http://a:b@h/x",)
    record = logging.LogRecord("envbuilder.run", logging.DEBUG, __file__, 1, "run: %s", argv, None)
    assert _RedactingFormatter("%(message)s").format(record) == "run: --index http://***@h/x"
