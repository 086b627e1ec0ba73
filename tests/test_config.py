"""Configuration (issue 16): envbuilder.toml and [tool.envbuilder] found upward (to the repository's root), the
user's config.toml, their precedence, --no-config, and a run in a subdirectory that no longer locks there."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from envbuilder.cli._sources import settings_from_args
from envbuilder.cli.app import build_parser, main
from envbuilder.edge.config import find_project, merge_sources
from envbuilder.edge.manifest import load_manifest
from envbuilder.edge.settings import user_config_path

ROOT = Path(__file__).resolve().parent.parent
CPU_LOCK = ROOT / "dockerfiles" / "cpu" / "pylock.cpu.toml"
ENV = '[[env]]\nname = "cpu"\nprofile = "cpu"\npython = "3.11"\n'


def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("/"):
            path.mkdir(exist_ok=True)
        else:
            path.write_text(text, encoding="utf-8")
    return root


@pytest.mark.parametrize(
    ("files", "start", "found"),
    [
        # what it proves: found in a parent (the proj/docker case of issue 16)
        ({"repo/.git/": "", "repo/envbuilder.toml": ENV, "repo/docker/": ""}, "repo/docker", "repo/envbuilder.toml"),
        # the nearest wins
        (
            {"repo/.git/": "", "repo/envbuilder.toml": ENV, "repo/sub/envbuilder.toml": ENV},
            "repo/sub",
            "repo/sub/envbuilder.toml",
        ),
        # pyproject.toml with the table counts
        (
            {"repo/.git/": "", "repo/pyproject.toml": "[project]\nname = 'x'\n[[tool.envbuilder.env]]\nname = 'a'\n"},
            "repo",
            "repo/pyproject.toml",
        ),
        # pyproject.toml without it is passed over, as uv passes over one without [tool.uv]
        (
            {"repo/.git/": "", "repo/envbuilder.toml": ENV, "repo/pkg/pyproject.toml": "[project]\nname = 'x'\n"},
            "repo/pkg",
            "repo/envbuilder.toml",
        ),
        # ... even when it names envbuilder elsewhere (a dependency)
        (
            {
                "repo/.git/": "",
                "repo/envbuilder.toml": ENV,
                "repo/pkg/pyproject.toml": "[project]\nname = 'x'\ndependencies = ['envbuilder']\n",
            },
            "repo/pkg",
            "repo/envbuilder.toml",
        ),
        # envbuilder.toml beats pyproject.toml in one directory (uv.toml beats pyproject.toml)
        (
            {"repo/.git/": "", "repo/envbuilder.toml": ENV, "repo/pyproject.toml": "[tool.envbuilder]\n"},
            "repo",
            "repo/envbuilder.toml",
        ),
        # the search ends at the repository's root: a manifest above the checkout is not the project's
        ({"envbuilder.toml": ENV, "repo/.git/": "", "repo/docker/": ""}, "repo/docker", None),
        # a worktree's .git is a file: still the root
        ({"envbuilder.toml": ENV, "repo/.git": "gitdir: /elsewhere\n", "repo/docker/": ""}, "repo/docker", None),
    ],
)
def test_find_project(tmp_path: Path, files: dict[str, str], start: str, found: str | None) -> None:
    _tree(tmp_path, files)
    got = find_project(tmp_path / start)
    assert got == (tmp_path / found if found else None)


def test_user_config_path_follows_xdg(tmp_path: Path) -> None:
    assert user_config_path({"XDG_CONFIG_HOME": "/x/conf"}) == Path("/x/conf/envbuilder/config.toml")
    assert user_config_path({}, home=tmp_path) == tmp_path / ".config" / "envbuilder" / "config.toml"


def test_merge_sources_project_over_user() -> None:
    project = {"index-url": "https://p.example/simple", "find-links": ["/p"]}
    user = {"index-url": "https://u.example/simple", "find-links": ["/u", "/p"], "offline": True}
    assert merge_sources(project, user) == {
        "index-url": "https://p.example/simple",  # a string: the project's
        "find-links": ["/p", "/u"],  # a list: joined, the project's first
        "offline": True,  # only the user set it
    }


def test_pyproject_table_is_a_manifest(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(
        "[project]\nname = 'app'\n\n[[tool.envbuilder.env]]\nname = 'train'\nprofile = 'bnb'\ngpu = ['sm_89']\n\n"
        "[tool.envbuilder.sources]\nfind-links = ['wheels']\n",
        encoding="utf-8",
    )
    manifest = load_manifest(path)
    assert [e.name for e in manifest.envs] == ["train"]
    assert manifest.sources["find-links"] == [str(tmp_path / "wheels")]  # from the manifest's directory


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[project]\nname = 'app'\n", "no [tool.envbuilder] table"),
        ("[tool.envbuilder]\nsources = {}\n", "no [[tool.envbuilder.env]] tables"),
        ("[[tool.envbuilder.env]]\nname = 'a'\ngpus = ['sm_89']\n", "unknown key in 'tool.envbuilder.env[0].gpus'"),
        (
            "[[tool.envbuilder.env]]\nname = 'a'\n[tool.envbuilder.sources]\nmirror = 'x'\n",
            "'tool.envbuilder.sources.mirror'",
        ),
    ],
)
def test_pyproject_errors_name_the_table(tmp_path: Path, text: str, message: str) -> None:
    from envbuilder.model.errors import LockError

    (tmp_path / "pyproject.toml").write_text(text, encoding="utf-8")
    with pytest.raises(LockError) as info:
        load_manifest(tmp_path / "pyproject.toml")
    assert message in info.value.message


# --------------------------------------------------------------------------- precedence, through the CLI's parser


def _settings(argv: list[str]):  # type: ignore[no-untyped-def]
    args: argparse.Namespace = build_parser().parse_args(["lock", "--no-pip-config", *argv])
    return settings_from_args(args)


@pytest.fixture
def layers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository whose envbuilder.toml names a mirror, a user config naming another, cwd in a subdirectory."""
    repo = _tree(tmp_path, {"repo/.git/": "", "repo/docker/": "", "repo/wheels/": "", "conf/envbuilder/": ""})
    (repo / "repo/envbuilder.toml").write_text(
        ENV + '[sources]\nindex-url = "https://project.example/simple"\nfind-links = ["wheels"]\n', encoding="utf-8"
    )
    (tmp_path / "user-wheels").mkdir()
    (tmp_path / "conf/envbuilder/config.toml").write_text(
        '[sources]\nindex-url = "https://user.example/simple"\npytorch-index = "https://user.example/torch"\n'
        f'find-links = ["{tmp_path / "user-wheels"}"]\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "conf"))
    for name in ("ENVBUILDER_INDEX_URL", "ENVBUILDER_PYTORCH_INDEX", "ENVBUILDER_FIND_LINKS", "ENVBUILDER_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path / "repo" / "docker")
    return tmp_path


def test_precedence_flag_variable_project_user(layers: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings([])
    assert s.index_url == "https://project.example/simple"  # the project over the user
    assert s.pytorch_index == "https://user.example/torch"  # the user's, where the project says nothing
    assert s.find_links == (str(layers / "repo" / "wheels"), str(layers / "user-wheels"))  # both, project first
    monkeypatch.setenv("ENVBUILDER_INDEX_URL", "https://variable.example/simple")
    assert _settings([]).index_url == "https://variable.example/simple"  # a variable over the files
    assert _settings(["--index-url", "https://flag.example/simple"]).index_url == "https://flag.example/simple"


def test_no_config_reads_neither_file(layers: Path) -> None:
    s = _settings(["--no-config"])
    assert s.index_url is None and s.find_links == () and s.pytorch_index == "https://download.pytorch.org/whl"
    s = build_parser().parse_args(["--no-config", "lock", "--no-pip-config"])  # before the command, too
    assert settings_from_args(s).index_url is None


def test_a_user_config_with_environments_is_refused(
    layers: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (layers / "conf/envbuilder/config.toml").write_text(ENV, encoding="utf-8")
    monkeypatch.chdir(layers)  # outside the repository: only the user's file is read
    code = main(["dockerfile", "--lock", str(CPU_LOCK), "--no-pip-config", "-o", str(layers / "ctx")])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"envbuilder: {layers}/conf/envbuilder/config.toml: unknown key 'env' in the user configuration\n"
        "TIP the user configuration holds [sources] only; environments ([[env]]) go in a project's envbuilder.toml\n"
    )


# --------------------------------------------------------------------------- a run in a subdirectory


def test_ci_in_a_subdirectory_uses_the_projects_manifest(layers: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = layers / "repo"
    shutil.copy(CPU_LOCK, repo / "pylock.cpu.toml")
    code = main(["ci", "--json"])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert code == 0 and doc["manifest"] == str(repo / "envbuilder.toml")
    assert doc["bake"] == str(repo / "docker-bake.hcl")  # beside the manifest, not in docker/
    assert "note: using ../envbuilder.toml (found above this directory; --no-config ignores it)" in captured.err
    assert not (repo / "docker" / "docker-bake.hcl").exists()


def test_no_config_finds_no_manifest(layers: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ci", "--no-config"]) == 2
    assert capsys.readouterr().err.startswith(
        "envbuilder: no envbuilder.toml (or [tool.envbuilder] in pyproject.toml) here or in a parent directory\n"
    )


@pytest.mark.integration
@pytest.mark.network
def test_lock_in_a_subdirectory_locks_beside_the_projects_manifest(
    layers: Path, capsys: pytest.CaptureFixture[str], lock_consumers
) -> None:  # type: ignore[no-untyped-def]
    """issue 16: `lock` run in proj/docker/ locked the host into proj/docker/. Now it finds proj/envbuilder.toml,
    locks its environments beside it and says which manifest it used; --save records there too (real uv; pip's
    wheelhouse serves the CPU torch, the project's [sources] are dropped: its mirror is an example)."""
    repo = layers / "repo"
    (repo / "envbuilder.toml").write_text(ENV, encoding="utf-8")
    (layers / "conf/envbuilder/config.toml").unlink()
    assert main(["lock"]) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert "note: using ../envbuilder.toml" in captured.err
    assert captured.out.startswith("locked cpu: torch==2.13.0+cpu") and str(repo / "pylock.cpu.toml") in captured.out
    lock_consumers(repo / "pylock.cpu.toml")
    assert main(["lock", "--gpu", "cpu", "--python", "3.11", "--name", "laptop", "--save"]) == 0
    assert [e.name for e in load_manifest(repo / "envbuilder.toml").envs] == ["cpu", "laptop"]
    assert (repo / "pylock.laptop.toml").is_file()
    assert sorted(p.name for p in (repo / "docker").iterdir()) == []  # nothing written where the user stood


# --------------------------------------------------------------------------- the roots (settings.py owns them)


@pytest.mark.parametrize(
    ("environ", "data", "cache", "config"),
    [
        ({}, "/h/.local/share/envbuilder", "/h/.cache/envbuilder", "/h/.config/envbuilder"),
        (
            {"XDG_DATA_HOME": "/xd", "XDG_CACHE_HOME": "/xc", "XDG_CONFIG_HOME": "/xf"},
            "/xd/envbuilder",
            "/xc/envbuilder",
            "/xf/envbuilder",
        ),
        # envbuilder's own variables win, and name the directory itself (no /envbuilder added)
        (
            {"ENVBUILDER_HOME": "/e", "ENVBUILDER_CACHE": "/c", "XDG_DATA_HOME": "/xd", "XDG_CACHE_HOME": "/xc"},
            "/e",
            "/c",
            "/h/.config/envbuilder",
        ),
        # an empty variable counts as unset, as the shells' ${VAR:-default} has it
        ({"ENVBUILDER_HOME": "", "XDG_DATA_HOME": "", "ENVBUILDER_CACHE": ""}, "/h/.local/share/envbuilder",
         "/h/.cache/envbuilder", "/h/.config/envbuilder"),
    ],
)
def test_every_root_is_decided_in_one_place(environ: dict[str, str], data: str, cache: str, config: str) -> None:
    from envbuilder.edge.settings import cache_root, config_home, data_home

    home = Path("/h")
    assert data_home(environ, home) == Path(data)
    assert cache_root(environ, home) == Path(cache)
    assert config_home(environ, home) == Path(config)
    assert user_config_path(environ, home) == Path(config) / "config.toml"


LOCAL = r"C:\Users\u\AppData\Local"


@pytest.mark.parametrize(
    ("environ", "os_name", "data"),
    [
        ({"LOCALAPPDATA": LOCAL}, "nt", LOCAL + r"\envbuilder"),  # Windows: the local application data, as uv's cache
        ({"LOCALAPPDATA": LOCAL}, "posix", "/h/.local/share/envbuilder"),  # only Windows reads it
        ({"LOCALAPPDATA": LOCAL, "XDG_DATA_HOME": "/xd"}, "nt", "/xd/envbuilder"),  # the XDG variable still wins
        ({"LOCALAPPDATA": LOCAL, "ENVBUILDER_HOME": "/e"}, "nt", "/e"),  # and envbuilder's own above it
        ({"LOCALAPPDATA": ""}, "nt", "/h/.local/share/envbuilder"),  # empty is unset
        ({}, "nt", "/h/.local/share/envbuilder"),
    ],
)
def test_on_windows_environments_live_in_the_local_application_data(
    environ: dict[str, str], os_name: str, data: str
) -> None:
    from envbuilder.edge._roots import data_root
    from envbuilder.edge.settings import data_home

    assert data_root(environ, "/h", os_name) == data
    assert data_home(environ, Path("/h"), os_name) == Path(data)


@pytest.mark.parametrize(
    ("environ", "os_name", "cache"),
    [
        ({"LOCALAPPDATA": LOCAL}, "nt", LOCAL + r"\envbuilder\cache"),  # beside the environments, as uv's own
        ({"LOCALAPPDATA": LOCAL}, "posix", "/h/.cache/envbuilder"),
        ({"LOCALAPPDATA": LOCAL, "XDG_CACHE_HOME": "/xc"}, "nt", "/xc/envbuilder"),
        ({"LOCALAPPDATA": LOCAL, "ENVBUILDER_CACHE": "/c"}, "nt", "/c"),
        ({"LOCALAPPDATA": LOCAL, "XDG_DATA_HOME": "/xd"}, "nt", LOCAL + r"\envbuilder\cache"),  # the cache's own vars
        ({}, "nt", "/h/.cache/envbuilder"),
    ],
)
def test_on_windows_the_cache_lives_in_the_local_application_data(
    environ: dict[str, str], os_name: str, cache: str
) -> None:
    from envbuilder.edge._roots import cache_root as cache_text
    from envbuilder.edge.settings import cache_root

    assert cache_text(environ, "/h", os_name) == cache
    assert cache_root(environ, Path("/h"), os_name) == Path(cache)


def test_the_cache_holds_only_the_entries_its_layout_names(tmp_path: Path) -> None:
    """A real resolve (matrix cache, reachability answers) writes nothing under the cache but CacheEntry's names."""
    import os
    import subprocess
    import sys
    import typing

    from envbuilder.edge.settings import CacheEntry, cache_path

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVBUILDER_", "XDG_"))}
    env |= {"HOME": str(tmp_path), "ENVBUILDER_CACHE": str(tmp_path / "c")}
    argv = [sys.executable, "-m", "envbuilder", "resolve", "--gpu", "sm_89", "--driver", "550.54.14"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    written = {p.name for p in (tmp_path / "c").iterdir()}
    assert written and written <= set(typing.get_args(CacheEntry)), written
    assert cache_path("matrix", tmp_path / "c") == tmp_path / "c" / "matrix"
