"""Start-up stays light (issue 12, item 6): the compiled matrix, one subcommand's module, nothing heavy imported.

bench/bench_resolve.py measures the figure; these tests fail when later work makes `envbuilder resolve` import
something it does not need, or when the compiled matrix stops being used or starts being trusted blindly.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from envbuilder.cli.app import COMMAND_MODULES, COMMANDS, build_parser
from envbuilder.edge import _run
from envbuilder.edge.matrix_cache import cached_matrix
from envbuilder.model.matrix import load_matrix

ROOT = Path(__file__).resolve().parent.parent
# Never imported by `envbuilder resolve` with a warm compiled matrix: each is either heavy (a network or TOML
# library, the PCI database) or belongs to another command. (packaging.tags comes with packaging.markers, which
# the matrix's requirements need.)
NOT_AT_START = (
    "requests",
    "urllib3",
    "tomlkit",
    "docker",
    "pynvml",
    "hypothesis",
    "tomllib",
    "json",  # --json only
    "difflib",  # a "did you mean" only
    "base64",
    "envbuilder.model.credentials",  # source options only
    "envbuilder.edge.config",
    "envbuilder.edge.sources",
    "envbuilder.edge.detect",  # an explicit --gpu never probes this host
    "envbuilder.model.gpu_table",
    "envbuilder.model.pci_ids",
    "envbuilder.model.lock",
    "envbuilder.render",
    "envbuilder.doctor",
    "envbuilder.smoke",
    "envbuilder.cli.create",
    "envbuilder.cli.lock",
    "envbuilder.cli.docker",
)
PROBE = """
import sys
before = set(sys.modules)
import contextlib, dataclasses, io
from envbuilder.cli.app import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["resolve", "--gpu", "sm_89", "--driver", "550.54.14"])
new = sorted(set(sys.modules) - before)
classes = [
    f"{m}.{v.__name__}" for m in new for v in vars(sys.modules[m]).values()
    if isinstance(v, type) and dataclasses.is_dataclass(v) and v.__module__ == m
]
loaded = sorted(sys.modules)
import json
print(json.dumps({"code": code, "modules": loaded, "new": new, "dataclasses": classes}))
"""
# What a computed `envbuilder resolve` costs beyond the interpreter's own start-up (a replayed one imports only
# REPLAY_MODULES), counted where machine speed does not matter (bench/RESULTS-resolve.md has the times): the
# modules it imports, and the dataclasses it creates (each costs about 1 ms of CPU to create here, as much as a
# tenth of the resolve itself). Counted 2026-12-02 after the layer folders: 89 modules, 45 dataclasses (26 of
# them the matrix's rows); 93 modules on 2026-12-03 with the replay's and the driver rule's (cli/app, _argv,
# _replay, model/driver). Raise a budget only with a new bench figure beside it. +6 on 2026-12-03: the resolver's
# six modules beside its entry (plan, sources, search, companions, ranking, explanation) import in 0.5-0.8 ms
# more than the one module did (-X importtime, best of 20). packaging's own modules are not counted (its internal
# layout moves between its releases: 26.4 added packaging._ranges), which took 12 off the 101 counted until then.
MODULE_BUDGET = 89
DATACLASS_BUDGET = 48


def test_the_command_table_is_what_the_modules_register() -> None:
    registered: dict[str, str] = {}
    for name in COMMANDS:
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(f"envbuilder.cli.{name}").register(sub)
        registered.update(dict.fromkeys(sub.choices, name))
    assert registered == COMMAND_MODULES


def test_a_named_command_builds_only_its_parser() -> None:
    full = build_parser()
    one = build_parser(["--matrix-dir", "resolve", "lock", "--gpu", "sm_89"])  # "resolve" is --matrix-dir's value
    sub = next(a for a in one._actions if isinstance(a, argparse._SubParsersAction))
    assert sorted(sub.choices) == ["lock"]
    assert set(next(a for a in full._actions if isinstance(a, argparse._SubParsersAction)).choices) == set(
        COMMAND_MODULES
    )


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What a second `envbuilder resolve --gpu sm_89 --driver 550.54.14` imported and created (the first run
    compiles the matrix, the second starts from it, as every later command does)."""
    env = {**os.environ, "ENVBUILDER_CACHE": str(tmp_path_factory.mktemp("startup") / "cache")}
    env.pop("ENVBUILDER_MATRIX_DIR", None)
    for _ in range(2):
        result = _run.run([sys.executable, "-c", PROBE], env=env, cwd=ROOT, timeout=120)
    doc: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["code"] == 0
    return doc


# The console script's code (pip's script runs the same), then what it imported, as the exit hook sees it.
REPLAY_PROBE = """
import atexit, json, sys
atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr))
sys.argv[0] = "envbuilder"
from envbuilder.cli import entry
entry()
"""
# A replayed answer imports these of envbuilder's modules, and nothing else of envbuilder's or packaging's.
REPLAY_MODULES = [
    "envbuilder",
    "envbuilder.cli",
    "envbuilder.cli._argv",
    "envbuilder.cli._replay",
    "envbuilder.edge",
    "envbuilder.edge._roots",
]


def test_a_replayed_resolve_imports_only_the_replay(tmp_path: Path) -> None:
    env = {**os.environ, "ENVBUILDER_CACHE": str(tmp_path / "cache")}
    env.pop("ENVBUILDER_MATRIX_DIR", None)
    args = [sys.executable, "-c", REPLAY_PROBE, "resolve", "--gpu", "sm_89", "--driver", "550.54.14"]
    computed, replayed = (_run.run(args, env=env, cwd=ROOT, timeout=120, check=False) for _ in range(2))
    assert replayed.stdout == computed.stdout and replayed.returncode == computed.returncode == 0
    loaded = json.loads(replayed.stderr.strip().splitlines()[-1])
    assert [m for m in loaded if m.startswith(("envbuilder", "packaging"))] == REPLAY_MODULES
    assert not {"argparse", "dataclasses", "hashlib", "_hashlib", "pickle", "json"} & set(loaded) - {"json"}
    assert "envbuilder.cli.app" in json.loads(computed.stderr.strip().splitlines()[-1])


def test_the_kept_off_modules_exist() -> None:
    """A renamed module would make the check below pass for nothing."""
    import importlib.util

    missing = [m for m in NOT_AT_START if m.startswith("envbuilder") and importlib.util.find_spec(m) is None]
    assert missing == []


def test_resolve_imports_nothing_heavy(started: dict[str, Any]) -> None:
    loaded = [m for m in NOT_AT_START if any(x == m or x.startswith(m + ".") for x in started["modules"])]
    assert loaded == [], f"`envbuilder resolve` imports {loaded} at start-up"


def test_resolve_stays_within_its_import_budget(started: dict[str, Any]) -> None:
    counted = [m for m in started["new"] if m != "packaging" and not m.startswith("packaging.")]
    assert len(counted) <= MODULE_BUDGET, f"{len(counted)} modules: {counted}"
    assert len(started["dataclasses"]) <= DATACLASS_BUDGET, f"{len(started['dataclasses'])}: {started['dataclasses']}"


def test_equal_ranges_are_one_object() -> None:
    """The loader parses each distinct range once: the compiled matrix stores it once and the resolver's
    range checks (kept by identity) are answered once."""
    matrix = load_matrix()
    ranges = [b.torch for b in matrix.torch_builds] + [r.python for r in matrix.torch_releases]
    assert len({id(r) for r in ranges}) == len({str(r) for r in ranges}) < len(ranges)


def test_switching_matrix_directory_sets_keeps_each_compiled(tmp_path: Path) -> None:
    from envbuilder.edge.matrix_cache import KEEP

    overlays = []
    for i in range(KEEP + 1):
        overlays.append(tmp_path / f"overlay{i}")
        overlays[-1].mkdir()
        (overlays[-1] / "meta.toml").write_text(f'schema-version = 1\ndate = "203{i}-01-01"\n', encoding="utf-8")
    cache = tmp_path / "c"
    cached_matrix(cache_dir=cache)
    cached_matrix([overlays[0]], cache_dir=cache)
    assert len(list((cache / "matrix").glob("*.pickle"))) == 2  # both kept: going back reads neither again
    for overlay in overlays[1:]:
        assert cached_matrix([overlay], cache_dir=cache).date == overlay.name.replace("overlay", "203") + "-01-01"
    assert len(list((cache / "matrix").glob("*.pickle"))) == KEEP


def test_the_compiled_matrix_is_the_matrix(tmp_path: Path) -> None:
    first = cached_matrix(cache_dir=tmp_path)
    (pickled,) = (tmp_path / "matrix").glob("*.pickle")
    assert pickled.stat().st_mode & 0o777 == 0o600
    again = cached_matrix(cache_dir=tmp_path)
    assert again == first == load_matrix()


def test_a_changed_overlay_is_read_again(tmp_path: Path) -> None:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "meta.toml").write_text('schema-version = 1\ndate = "2030-01-01"\n', encoding="utf-8")
    assert cached_matrix([overlay], cache_dir=tmp_path / "c").date == "2030-01-01"
    (overlay / "meta.toml").write_text('schema-version = 1\ndate = "2031-01-01"\n', encoding="utf-8")
    assert cached_matrix([overlay], cache_dir=tmp_path / "c").date == "2031-01-01"


@pytest.mark.parametrize("damage", ["garbage", "other-writable", "not-a-matrix"])
def test_a_damaged_or_foreign_compiled_matrix_is_not_used(tmp_path: Path, damage: str) -> None:
    import pickle

    cached_matrix(cache_dir=tmp_path)
    (pickled,) = (tmp_path / "matrix").glob("*.pickle")
    if damage == "garbage":
        pickled.write_bytes(b"\x80\x05not a pickle")
    elif damage == "other-writable":
        pickled.write_bytes(pickle.dumps("a planted object"))
        pickled.chmod(0o666)
    else:
        pickled.write_bytes(pickle.dumps({"date": "1999"}))
    assert cached_matrix(cache_dir=tmp_path) == load_matrix()


def test_a_compiled_matrix_of_the_old_module_layout_is_read_again(tmp_path: Path) -> None:
    """Before the layer folders, the model was ``envbuilder`` + ``.matrix``; its pickle names a module that is gone."""
    import pickle

    cached_matrix(cache_dir=tmp_path)
    (pickled,) = (tmp_path / "matrix").glob("*.pickle")
    # protocol 2 names classes as text lines, so the old module path can be written in
    gone = b"envbuilder" + b".matrix"  # spelt in two parts, so that a rewrite of module paths leaves it alone
    old = pickle.dumps(load_matrix(), protocol=2).replace(b"envbuilder.model.matrix", gone)
    with pytest.raises(ModuleNotFoundError):
        pickle.loads(old)  # the file really is unreadable by the new layout
    pickled.write_bytes(old)
    assert cached_matrix(cache_dir=tmp_path) == load_matrix()
    assert pickle.loads(pickled.read_bytes()) == load_matrix()  # written again, in the new layout


def test_a_compiled_matrix_of_a_renamed_model_class_is_read_again(tmp_path: Path) -> None:
    """A class renamed in the model (matrix.Evidence, a smoke run on a real GPU, became GpuRun) is keyed apart
    (the key covers the module's source); a pickle naming the old class under the current key is read again."""
    import pickle

    from envbuilder.edge.matrix_cache import cache_key
    from envbuilder.model.matrix import matrix_dirs

    dirs = matrix_dirs()
    cached_matrix(cache_dir=tmp_path)
    (pickled,) = (tmp_path / "matrix").glob("*.pickle")
    assert pickled.name == f"{cache_key(dirs)}.pickle"
    old = pickle.dumps(load_matrix(), protocol=2).replace(b"\nGpuRun\n", b"\nEvidence\n")
    with pytest.raises(AttributeError):
        pickle.loads(old)  # the file really names a class the model no longer has
    pickled.write_bytes(old)
    assert cached_matrix(cache_dir=tmp_path) == load_matrix()
    assert pickle.loads(pickled.read_bytes()) == load_matrix()  # written again, naming GpuRun
