"""Malformed files and inputs (issue 11, items 7 and 12): one message and exit 2, never a traceback.

Each case is one the issue reproduced on main: binary bytes and wrong types in the manifest, a lock, a matrix
overlay and the caches; string booleans; empty option values; unknown `--only` names; matrix rows that contradict
themselves; and a mirror-made lock's Dockerfile. The property tests over the same parsers are tests/test_fuzz.py.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from envbuilder.cli.app import main
from envbuilder.model.lock import content_digest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
CPU_LOCK = ROOT / "dockerfiles" / "cpu" / "pylock.cpu.toml"
BINARY = b"\xff\xfe\x00\x9c[[env]]\nname = \"\xc3\x28\"\n"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _one_message(err: str) -> str:
    """Exactly one `envbuilder: ...` message and its TIP, no traceback; the message is returned."""
    assert "Traceback" not in err, err
    assert err.startswith("envbuilder: ") and err.count("envbuilder: ") == 1, err
    assert "\nTIP " in err, err
    return err.splitlines()[0]


def reseal(text: str) -> str:
    """A lock edited and its digest recomputed (what an attacker, or a careless tool, would do)."""
    digest = content_digest(tomllib.loads(text))
    return re.sub(r'lock-digest = "sha256:[0-9a-f]+"', f'lock-digest = "{digest}"', text)


# --------------------------------------------------------------------------- the manifest


@pytest.mark.parametrize(
    ("content", "where"),
    [
        (BINARY, "UTF-8"),
        (b"env = [1, 2]\n", "env[0]"),
        (b'env = "train"\n', "[[env]]"),
        (b'[sources]\nindex-url = 5\n\n[[env]]\nname = "a"\n', "sources.index-url"),
        (b'[sources]\nfind-links = [1]\n\n[[env]]\nname = "a"\n', "sources.find-links"),
        (b'[sources]\noffline = "false"\n\n[[env]]\nname = "a"\n', "sources.offline"),
        (b'sources = "x"\n\n[[env]]\nname = "a"\n', "sources"),
        (b'[[env]]\nname = "a"\ngpu = [1]\n', "env[0].gpu"),
    ],
)
def test_a_malformed_manifest_is_one_message(
    content: bytes, where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "envbuilder.toml"
    manifest.write_bytes(content)
    code, _, err = _run(["lock", "--manifest", str(manifest)], capsys)
    assert code == 2
    assert where in _one_message(err)


def test_manifest_sources_are_typed(tmp_path: Path) -> None:
    from envbuilder.edge.manifest import load_manifest

    (tmp_path / "wheels").mkdir()
    manifest = tmp_path / "envbuilder.toml"
    manifest.write_text(
        f'[sources]\nfind-links = "{tmp_path / "wheels"}"\noffline = true\n\n[[env]]\nname = "a"\n'
    )
    sources = load_manifest(manifest).sources
    assert sources["find-links"] == [str(tmp_path / "wheels")]  # one path, not one per character
    assert sources["offline"] is True


# --------------------------------------------------------------------------- boolean variables, empty options


def _source_args(**over: object) -> object:
    import argparse

    base = {
        "find_links": [], "ca_cert": [], "offline": False, "index_url": None, "extra_index_url": [],
        "pytorch_index": None, "no_pip_config": True, "home": None, "refresh": False,
    }
    return argparse.Namespace(**(base | over))


@pytest.mark.parametrize(("value", "offline"), [("1", True), ("true", True), ("YES", True), ("on", True),
                                                ("0", False), ("false", False), ("No", False), ("off", False),
                                                ("", False)])
def test_envbuilder_offline_reads_like_a_boolean(value: str, offline: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    from envbuilder.cli._sources import settings_from_args

    monkeypatch.setenv("ENVBUILDER_OFFLINE", value)
    assert settings_from_args(_source_args()).offline is offline  # type: ignore[arg-type]


def test_envbuilder_offline_refuses_other_words(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("ENVBUILDER_OFFLINE", "maybe")
    code, _, err = _run(["lock", "--gpu", "cpu", "--python", "3.11", "-o", str(tmp_path / "pylock.x.toml")], capsys)
    assert code == 2
    assert "ENVBUILDER_OFFLINE" in _one_message(err)
    assert not (tmp_path / "pylock.x.toml").exists()


@pytest.mark.parametrize("option", ["--gpu", "--driver", "--python", "--profile", "--os", "--machine", "--torch", "--bnb"])
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_target_option_is_refused(option: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["resolve", "--gpu", "sm_89", "--driver", "550.54.14", f"{option}={value}"]
    code, _, err = _run(argv, capsys)
    assert code == 2
    assert option in _one_message(err)


def test_lock_only_an_unknown_name_names_those_that_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "envbuilder.toml"
    manifest.write_text('[[env]]\nname = "train"\nprofile = "cpu"\n\n[[env]]\nname = "serve"\nprofile = "cpu"\n')
    code, _, err = _run(["lock", "--manifest", str(manifest), "--only", "nosuch"], capsys)
    assert code == 2
    message = _one_message(err)
    assert "nosuch" in message and "train" in err and "serve" in err
    assert not list(tmp_path.glob("pylock.*.toml"))


# --------------------------------------------------------------------------- the matrix


def _overlay(tmp_path: Path, text: str | bytes) -> Path:
    d = tmp_path / "overlay"
    d.mkdir(exist_ok=True)
    (d / "gpus.toml").write_bytes(text if isinstance(text, bytes) else text.encode())
    return d


def test_a_binary_matrix_overlay_is_one_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["--matrix-dir", str(_overlay(tmp_path, BINARY)), "matrix", "check"], capsys)
    assert code == 2
    assert "gpus.toml" in _one_message(err)


_ARCH = """schema-version = 1
[[arch]]
cc = "{cc}"
name = "Test"
first-cuda = "{first}"
last-cuda = "{last}"
source = "test"
confidence = "confirmed"
products = {{ geforce = ["{product}"] }}
"""


def test_matrix_check_refuses_first_cuda_after_last_cuda(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    overlay = _overlay(tmp_path, _ARCH.format(cc="8.9", first="12.8", last="11.8", product="RTX 4090"))
    code, _, err = _run(["--matrix-dir", str(overlay), "matrix", "check"], capsys)
    assert code == 2
    assert "first-cuda" in _one_message(err)


def test_matrix_check_refuses_one_product_under_two_architectures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    overlay = _overlay(tmp_path, _ARCH.format(cc="8.6", first="11.1", last="13.2", product="RTX 4090"))
    code, _, err = _run(["--matrix-dir", str(overlay), "matrix", "check"], capsys)
    assert code == 2
    message = _one_message(err)
    assert "RTX 4090" in message and "sm_86" in message and "sm_89" in message


# --------------------------------------------------------------------------- locks


def _lock_variant(tmp_path: Path, edit: str, old: str, new: str, *, sealed: bool = True) -> Path:
    text = CPU_LOCK.read_text()
    assert old in text, edit
    text = text.replace(old, new, 1)
    path = tmp_path / "pylock.cpu.toml"
    path.write_text(reseal(text) if sealed else text)
    return path


@pytest.mark.parametrize(
    ("edit", "old", "new"),
    [
        ("hashes as a list", 'hashes = { sha256 = "6746', 'hashes = ["abc"], x = { sha256 = "6746'),
        ("a file without url", 'url = "https://download.pytorch.org/whl/cpu/torch-', 'u = "https://download.pytorch.org/whl/cpu/torch-'),
        ("a package without a version", 'name = "accelerate"\nversion = "1.15.0"\n', 'name = "accelerate"\n'),
        ("a marker with a newline", 'name = "torch"\n', 'name = "torch"\nmarker = "python_version >= \'3\'\\nRUN evil"\n'),
        ("a version with a newline", 'version = "2.13.0+cpu"', 'version = "2.13.0+cpu\\nRUN evil"'),
        ("a name with a space", 'name = "torch"\n', 'name = "torch evil"\n'),
        ("an index with a quote", "indexes = []", 'indexes = ["https://x\\"y"]'),
        ("a URL with credentials", "https://download.pytorch.org/whl/cpu/torch-", "https://u:p@download.pytorch.org/whl/cpu/torch-"),
        ("a hash of the wrong form", 'sha256 = "6746dbcb', 'sha256 = "XYZ6dbcb'),
        ("pins as a number", "pins = [", "pins = 5\nold-pins = ["),
    ],
)
def test_a_malformed_or_injecting_lock_is_one_message(
    edit: str, old: str, new: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lock = _lock_variant(tmp_path, edit, old, new)
    for argv in (["dockerfile", "--lock", str(lock), "-o", str(tmp_path / "ctx")],
                 ["recipe", "wsl2", "--lock", str(lock), "-o", str(tmp_path / "setup.sh")]):
        code, _, err = _run(argv, capsys)
        assert code == 2, (edit, err)
        _one_message(err)
    assert not (tmp_path / "ctx").exists() and not (tmp_path / "setup.sh").exists()


def test_a_binary_lock_is_one_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = tmp_path / "pylock.x.toml"
    lock.write_bytes(BINARY)
    code, _, err = _run(["dockerfile", "--lock", str(lock), "-o", str(tmp_path / "ctx")], capsys)
    assert code == 2
    assert "pylock.x.toml" in _one_message(err)


def test_a_mirror_made_lock_lists_only_the_indexes_it_uses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A lock made through a mirror has one file URL directory per file: those are not indexes (issue: 82 entries)."""
    text = CPU_LOCK.read_text().replace("https://files.pythonhosted.org/packages/", "https://mirror.example/pypi/packages/")
    lock = tmp_path / "pylock.cpu.toml"
    lock.write_text(reseal(text))
    code, _, err = _run(["dockerfile", "--lock", str(lock), "-o", str(tmp_path / "ctx")], capsys)
    assert code == 0, err
    args = [ln for ln in (tmp_path / "ctx" / "Dockerfile").read_text().splitlines() if ln.startswith("ARG UV_INDEX")]
    assert args == ['ARG UV_INDEX="https://download.pytorch.org/whl/cpu"']


# --------------------------------------------------------------------------- caches and tool output


@pytest.mark.parametrize("entry", [[True, "x"], [True], "yes", [1, 2], [True, None], {"a": 1}])
def test_a_malformed_reachability_entry_is_a_miss(entry: object, tmp_path: Path) -> None:
    from envbuilder.edge.settings import Settings
    from envbuilder.edge.sources import reachable

    url = "http://127.0.0.1:9/simple"
    (tmp_path / "reachable.json").write_text(json.dumps({url: entry}))
    assert reachable(url, Settings(cache_dir=tmp_path)) is False  # probed again (nothing listens on port 9)


def test_malformed_pythons_cache_entries_are_probed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from envbuilder.edge import detect

    monkeypatch.setenv("ENVBUILDER_CACHE", str(tmp_path))
    detect.find_pythons.cache_clear()
    real = detect.find_pythons()
    assert real
    doc = json.loads((tmp_path / "pythons.json").read_text())
    for i, key in enumerate(doc):
        doc[key] = [{"stamp": doc[key]["stamp"], "probe": ["cpython"]}, "x", {"stamp": doc[key]["stamp"], "probe": 5}][i % 3]
    (tmp_path / "pythons.json").write_text(json.dumps(doc))
    detect.find_pythons.cache_clear()
    try:
        assert detect.find_pythons() == real
    finally:
        detect.find_pythons.cache_clear()


def test_binary_output_of_a_tool_is_read_not_a_crash() -> None:
    """nvidia-smi (or any tool) printing bytes that are not UTF-8 reached Python as a UnicodeDecodeError."""
    from envbuilder.edge import _run

    result = _run.run(["sh", "-c", r"printf '\377\376 NVIDIA \351\n'"])
    assert "NVIDIA" in result.stdout


# --------------------------------------------------------------------------- the resolution cache, with real uv

_POISONS = {
    "empty": lambda t: "",
    "binary": lambda t: BINARY.decode("latin-1"),
    "not TOML": lambda t: t[: len(t) // 2] + "\n[[[",
    "another host": lambda t: t.replace("https://files.pythonhosted.org/", "https://evil.example/"),
    "an injected marker": lambda t: t.replace('name = "accelerate"\n', 'name = "accelerate"\nmarker = "os_name == \'x\'\\r"\n', 1),
    "a pin moved": lambda t: re.sub(r'(name = "peft"\nversion = ")[^"]+', r"\g<1>0.0.1", t),
}


@pytest.mark.integration
@pytest.mark.network
def test_a_damaged_or_poisoned_cached_resolution_is_resolved_again(  # type: ignore[no-untyped-def]
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], lock_consumers
) -> None:
    """Item 7 and 9: a cached resolution is outside input. Damaged or poisoned, it is discarded and uv resolves
    again: exit 0, the user's lock is not blamed, and nothing of the poison reaches the lock."""
    monkeypatch.setenv("ENVBUILDER_CACHE", str(tmp_path / "cache"))
    lock = tmp_path / "pylock.cpu.toml"
    argv = ["lock", "--gpu", "cpu", "--python", "3.11", "-o", str(lock)]
    assert main(argv) == 0
    capsys.readouterr()
    (cached,) = (tmp_path / "cache" / "resolutions").glob("pylock.*.toml")
    good = cached.read_text()
    for what, poison in _POISONS.items():
        bad = poison(good)
        assert bad != good, what
        cached.write_bytes(bad.encode("latin-1") if what == "binary" else bad.encode())
        code, _, err = _run(argv, capsys)
        assert code == 0, (what, err)
        assert "discarding the cached resolution" in err and "(uv pip compile)" in err, (what, err)
        assert "evil.example" not in lock.read_text() and "\\r" not in lock.read_text()
        assert cached.read_text() == good or "discarding" not in _run(argv, capsys)[2], what
    lock_consumers(lock)  # what the last re-resolution wrote, as uv and packaging.pylock read it


# --------------------------------------------------------------------------- doctor --log in bounded memory


def test_doctor_log_of_a_huge_file_reads_its_head_and_tail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Item 8: a 300 MB log (sparse here) is read as its first and last 8 MiB; the error at its end is found."""
    from envbuilder.cli.doctor import LOG_CAP

    error = (ROOT / "tests" / "fixtures" / "logs" / "bnb-0.45.4-import-no-cpu-lib.txt").read_text()
    log = tmp_path / "train.log"
    with log.open("w") as fh:
        fh.write("step 1: loss 2.31\n")
        fh.seek(300 * 2**20)
        fh.write("\n" + error)
    assert log.stat().st_size > 18 * LOG_CAP
    code, out, err = _run(["doctor", "--log", str(log)], capsys)
    assert code == 1 and "[FAIL]" in out
    assert "read its first and last 8.0 MiB, skipped 284.0 MiB between" in err


def test_doctor_log_of_an_endless_stream_stops_at_the_cap(capsys: pytest.CaptureFixture[str]) -> None:
    import time

    t0 = time.monotonic()
    code, _, err = _run(["doctor", "--log", "/dev/zero"], capsys)
    assert code == 0
    assert "stopped reading /dev/zero at 16.0 MiB" in err
    assert time.monotonic() - t0 < 60


def test_a_nul_byte_in_an_argument_is_one_message(capsys: pytest.CaptureFixture[str]) -> None:
    """Found by the fuzz suite: `--lock=\\x00` raised ValueError (embedded null byte) from the file call."""
    code, _, err = _run(["recipe", "wsl2", "--lock=\x00"], capsys)
    assert code == 2 and err.startswith("envbuilder: error: ") and "NUL" in err


def test_a_nul_byte_reaching_a_process_is_a_command_failure() -> None:
    from envbuilder.edge import _run as run_module
    from envbuilder.model.errors import CommandFailed

    with pytest.raises(CommandFailed, match="NUL byte"):
        run_module.run(["echo", "a\x00b"])
