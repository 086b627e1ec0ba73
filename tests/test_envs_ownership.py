"""remove / run / shell act only on environments envbuilder made (issue 11, item 1).

By name under envbuilder's home, or a ``--path`` environment that envbuilder recorded in its home's state when it
built it. A directory that merely holds a file named ``envbuilder.json`` is refused with one message and exit 2,
and nothing in it is touched. These run in-process, without uv: the record is what a build writes (``venv``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from envbuilder.cli.app import main
from envbuilder.edge.settings import Settings
from envbuilder.model.errors import EnvbuilderError


def _victim(tmp_path: Path) -> Path:
    """The issue's reproduction: a user's directory with a file named envbuilder.json and data beside it."""
    victim = tmp_path / "v"
    victim.mkdir()
    (victim / "envbuilder.json").write_text("{}")
    (victim / "x").write_text("data")
    (victim / "bin").mkdir()
    return victim


def _one_message(err: str) -> None:
    assert err.startswith("envbuilder: ") and "Traceback" not in err
    assert err.count("envbuilder: ") == 1 and "\nTIP " in err


@pytest.mark.parametrize("cmd", [["remove"], ["run"], ["shell"]])
def test_a_path_given_as_name_is_refused(cmd: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    victim = _victim(tmp_path)
    home = tmp_path / "h"
    tail = ["--", "true"] if cmd == ["run"] else []
    assert main([*cmd, "--home", str(home), str(victim), *tail]) == 2
    _one_message(capsys.readouterr().err)
    assert (victim / "x").read_text() == "data"


def test_a_relative_escape_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "h"
    (home / "envs").mkdir(parents=True)
    victim = _victim(tmp_path)  # tmp/v == tmp/h/envs/../../v
    assert main(["remove", "--home", str(home), "../../v"]) == 2
    _one_message(capsys.readouterr().err)
    assert (victim / "x").exists()


@pytest.mark.parametrize("cmd", [["remove"], ["run"], ["shell"]])
def test_an_unrecorded_path_is_refused(cmd: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    victim = _victim(tmp_path)
    tail = ["--", "true"] if cmd == ["run"] else []
    assert main([*cmd, "--home", str(tmp_path / "h"), "--path", str(victim), *tail]) == 2
    err = capsys.readouterr().err
    _one_message(err)
    assert "was not built by envbuilder" in err
    assert (victim / "x").read_text() == "data"


def _recorded_env(tmp_path: Path, settings: Settings) -> Path:
    """A --path environment as a build leaves it: its marker carries an id that the home's record holds."""
    from envbuilder.edge import venv

    env = tmp_path / "proj" / ".venv"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").symlink_to("/bin/sh")
    env_id = venv.new_env_id()
    (env / venv.MARKER).write_text(json.dumps({"schema": "envbuilder.env/1", "id": env_id, "name": ".venv"}))
    venv.record_path_env(env, env_id, settings)
    return env


def test_a_recorded_path_can_be_run_and_removed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "h"
    env = _recorded_env(tmp_path, Settings(home=home))
    out = tmp_path / "out"
    assert main(["run", "--home", str(home), "--path", str(env), "--", "sh", "-c", f'echo "$VIRTUAL_ENV" > {out}']) == 0
    assert out.read_text().strip() == str(env)
    assert main(["list", "--home", str(home), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["envs"]
    assert [e["path"] for e in listed] == [str(env)]
    assert main(["remove", "--home", str(home), "--path", str(env)]) == 0
    assert not env.exists() and env.parent.exists()
    # Gone from the record too: the same path again is refused, and nothing else is touched.
    assert main(["remove", "--home", str(home), "--path", str(env)]) == 2


def test_a_recorded_path_whose_marker_was_replaced_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "h"
    env = _recorded_env(tmp_path, Settings(home=home))
    (env / "envbuilder.json").write_text('{"schema": "envbuilder.env/1", "id": "0123"}')
    (env / "x").write_text("data")
    assert main(["remove", "--home", str(home), "--path", str(env)]) == 2
    _one_message(capsys.readouterr().err)
    assert (env / "x").exists()


def test_a_build_over_an_unrecorded_marker_directory_is_refused(tmp_path: Path) -> None:
    """create/sync --path onto a directory with a foreign envbuilder.json would have replaced (deleted) it."""
    from envbuilder.edge import venv

    victim = _victim(tmp_path)
    with pytest.raises(EnvbuilderError, match="was not made by envbuilder"):
        venv.refuse_foreign(victim.absolute(), Settings(home=tmp_path / "h"), force=False)
    assert (victim / "x").exists()
