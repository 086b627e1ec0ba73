"""The console script's replayed answers (cli/_replay.py): the same bytes and exit code as the command computes,
and never an answer that something outside the key and the recorded files could have changed.

Every run here is a real process that enters through ``envbuilder.cli.entry`` (the console script's code) with
its own cache directory; an exit hook in the process says whether the command was computed (``app`` imported)
or replayed.
"""

from __future__ import annotations

import marshal
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from envbuilder.cli import _replay
from envbuilder.model.matrix import BUILTIN_DIR

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(os.name != "posix", reason="answers are replayed on POSIX only (owner and mode checks)")

# The console script's own code, plus an exit hook that writes whether the CLI's parser module was imported.
RUNNER = """
import atexit, os, sys
def said():
    with open(os.environ["REPLAY_PROBE"], "a") as fh:
        fh.write("computed\\n" if "envbuilder.cli.app" in sys.modules else "replayed\\n")
atexit.register(said)
from envbuilder.cli import entry
sys.argv[0] = "envbuilder"
entry()
"""


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str
    how: str  # "computed" or "replayed"


def _run(args: list[str], cache: Path, *, env: dict[str, str] | None = None, cwd: Path = ROOT) -> Run:
    probe = cache.parent / "probe.txt"
    probe.unlink(missing_ok=True)
    base = {k: v for k, v in os.environ.items() if not k.startswith("ENVBUILDER_")}
    full = {**base, "ENVBUILDER_CACHE": str(cache), "REPLAY_PROBE": str(probe), "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, *args], cwd=cwd, env=full, capture_output=True, text=True, check=False
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, probe.read_text().strip())


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "replay").glob("*.marshal"))


RESOLVE = ["resolve", "--gpu", "sm_89", "--driver", "550.54.14"]
# Queries whose answers are kept: a plan (text, JSON, every rejection), another profile, no plan (exit 1).
KEPT = [
    pytest.param(RESOLVE, 0, id="plan"),
    pytest.param([*RESOLVE, "--json"], 0, id="json"),
    pytest.param(["-q", *RESOLVE, "--all"], 0, id="all-quiet"),
    pytest.param(["resolve", "--gpu", "cpu"], 0, id="cpu"),
    pytest.param(["resolve", "--gpu", "sm_89", "--driver", "450.80.02"], 1, id="no-plan"),
    pytest.param(["--color", "never", "resolve", "--gpu", "sm_61", "--driver", "550.54.14", "--json"], 0, id="pascal"),
]


@pytest.mark.parametrize(("args", "code"), KEPT)
def test_a_replayed_answer_is_the_computed_one(tmp_path: Path, args: list[str], code: int) -> None:
    cache = tmp_path / "cache"
    first, second, third = (_run(args, cache) for _ in range(3))
    assert (first.how, second.how, third.how) == ("computed", "replayed", "replayed")
    assert first.code == second.code == third.code == code
    assert (second.out, second.err) == (first.out, first.err) == (third.out, third.err)
    assert first.out  # an answer, not an empty replay
    (entry,) = _entries(cache)
    assert entry.stat().st_mode & 0o777 == 0o600
    assert (cache / "replay").stat().st_mode & 0o777 == 0o700


# Runs whose answer may depend on more than the key and the files: computed every time, nothing kept.
NOT_KEPT = [
    pytest.param(["resolve"], {}, id="host-probed"),  # no --gpu: the host is probed (edge/detect)
    pytest.param([*RESOLVE, "--check-sources", "--offline"], {}, id="sources-probed"),
    pytest.param(["resolve", "--gpu", "sm_89", "--driver", "nope"], {}, id="usage-error"),  # exit 2: not kept
    pytest.param(["detect"], {}, id="not-a-query"),
    pytest.param(["lock", "--help"], {}, id="other-command"),
]


@pytest.mark.parametrize(("args", "env"), NOT_KEPT)
def test_runs_that_asked_the_world_are_not_kept(tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
    cache = tmp_path / "cache"
    runs = [_run(args, cache, env=env) for _ in range(2)]
    assert [r.how for r in runs] == ["computed", "computed"]
    assert _entries(cache) == []


def test_a_changed_matrix_file_or_a_new_one_is_computed_again(tmp_path: Path) -> None:
    cache, overlay = tmp_path / "cache", tmp_path / "overlay"
    overlay.mkdir()
    shutil.copy(BUILTIN_DIR / "advisories.toml", overlay / "advisories.toml")
    env = {"ENVBUILDER_MATRIX_DIR": str(overlay)}
    assert [_run(RESOLVE, cache, env=env).how for _ in range(2)] == ["computed", "replayed"]
    with (overlay / "advisories.toml").open("a") as fh:
        fh.write("\n# a reader's note\n")
    assert [_run(RESOLVE, cache, env=env).how for _ in range(2)] == ["computed", "replayed"]
    shutil.copy(BUILTIN_DIR / "evidence.toml", overlay / "evidence.toml")  # a new file: the listing changed
    assert [_run(RESOLVE, cache, env=env).how for _ in range(2)] == ["computed", "replayed"]


def test_the_key_covers_arguments_variables_and_the_directory(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert _run(RESOLVE, cache).how == "computed"
    assert _run(RESOLVE, cache).how == "replayed"
    assert _run([*RESOLVE, "--profile", "bnb"], cache).how == "computed"
    assert _run(RESOLVE, cache, env={"NO_COLOR": "1"}).how == "computed"
    assert _run(RESOLVE, cache, cwd=tmp_path).how == "computed"
    # The shell's own bookkeeping is not part of the key: a `cd` elsewhere and back changes OLDPWD only.
    assert _run(RESOLVE, cache, env={"OLDPWD": "/somewhere", "SHLVL": "7"}).how == "replayed"


def test_an_entry_names_the_files_it_depends_on_and_no_variable(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    secret = "hf_replaySecret0123456789"
    _run(RESOLVE, cache, env={"HF_TOKEN": secret})
    (entry,) = _entries(cache)
    data = entry.read_bytes()
    assert secret.encode() not in data
    deps, code, chunks = marshal.loads(data)
    paths = {path for path, _ in deps}
    assert str(BUILTIN_DIR / "torch.toml") in paths  # a matrix file it read
    assert str(ROOT / "envbuilder" / "resolve" / "__init__.py") in paths  # the code that computed it
    assert code == 0 and chunks[0][0] == 1


def test_an_entry_others_may_write_or_a_damaged_one_is_not_replayed(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _run(RESOLVE, cache)
    (entry,) = _entries(cache)
    entry.chmod(0o666)
    assert _run(RESOLVE, cache).how == "computed"  # not trusted: computed and written again, private
    assert entry.stat().st_mode & 0o777 == 0o600
    entry.write_bytes(b"\x00not marshal")
    again = _run(RESOLVE, cache)
    assert (again.how, again.out) == ("computed", first.out)
    assert _run(RESOLVE, cache).how == "replayed"


def test_no_more_than_keep_entries_stay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    where = tmp_path / "replay"
    where.mkdir()
    for i in range(_replay.KEEP + 5):
        (where / f"{i:03}.marshal").write_bytes(b"x")
        os.utime(where / f"{i:03}.marshal", ns=(i * 10**9, i * 10**9))
    assert _replay._store(str(where / "new.marshal"), marshal.dumps(((), 0, ())))
    left = sorted(p.name for p in where.iterdir())
    assert len(left) == _replay.KEEP and "new.marshal" in left and "000.marshal" not in left


def test_recording_spoils_on_a_process_a_write_or_stdin(tmp_path: Path) -> None:
    """In a child interpreter (an audit hook cannot be removed): each thing the world could answer spoils."""
    script = f"""
import subprocess, sys
from envbuilder.cli._replay import Recorder
cases = []
for what in ("process", "write", "stdin", "bytes", "nothing"):
    with Recorder({str(tmp_path / "replay" / "x.marshal")!r}) as r:
        if what == "process":
            subprocess.run(["true"], check=False)
        elif what == "write":
            open({str(tmp_path / "out.txt")!r}, "w").close()
        elif what == "stdin":
            sys.stdin.readline()
        elif what == "bytes":
            sys.stdout.buffer.write(b"")
    cases.append(f"{{what}}={{r.spoiled is not None}}")
print(" ".join(cases))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, input="", capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["process=True", "write=True", "stdin=True", "bytes=True", "nothing=False"]
