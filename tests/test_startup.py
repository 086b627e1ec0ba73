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

import pytest

from envbuilder import _run
from envbuilder.cli import COMMAND_MODULES, COMMANDS, build_parser
from envbuilder.edge.matrix_cache import cached_matrix
from envbuilder.matrix import load_matrix

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
    "envbuilder.gpu_table",
    "envbuilder.pci_ids",
    "envbuilder.lock",
    "envbuilder.render",
    "envbuilder.doctor",
    "envbuilder.smoke",
    "envbuilder.cli.create",
    "envbuilder.cli.lock",
    "envbuilder.cli.docker",
)
PROBE = """
import contextlib, io, json, sys
from envbuilder.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(["resolve", "--gpu", "sm_89", "--driver", "550.54.14"])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""


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


def test_resolve_imports_nothing_heavy(tmp_path: Path) -> None:
    env = {**os.environ, "ENVBUILDER_CACHE": str(tmp_path / "cache")}
    env.pop("ENVBUILDER_MATRIX_DIR", None)
    for _ in range(2):  # the first run compiles the matrix, the second starts from it
        result = _run.run([sys.executable, "-c", PROBE], env=env, cwd=ROOT, timeout=120)
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    assert doc["code"] == 0
    loaded = [m for m in NOT_AT_START if any(x == m or x.startswith(m + ".") for x in doc["modules"])]
    assert loaded == [], f"`envbuilder resolve` imports {loaded} at start-up"


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
