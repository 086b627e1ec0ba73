"""Locks: finalize uv's real pylock output, verify digests, refuse tampering, diff, hashed requirements."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from envbuilder.edge._fs import write_text_atomic
from envbuilder.model.errors import LockError
from envbuilder.model.lock import (
    check_env_name,
    check_lock_path,
    default_env_name,
    default_lock_file_name,
    diff_pins,
    finalize,
    hashed_requirements,
    is_valid_lock_file_name,
    legacy_name_note,
    lock_file_name,
    parse_lock,
    requirements_text,
    suggest_lock_file_name,
    with_smoke,
)
from envbuilder.model.target import build_target, parse_gpus
from envbuilder.resolve import Plan, Sources, resolve

FIXTURES = Path(__file__).parent / "fixtures" / "locks"
CPU_LOCK = Path(__file__).parent.parent / "dockerfiles" / "cpu" / "pylock.cpu.toml"
# Real `uv pip compile --format pylock.toml` outputs (see fixtures/locks/README.md).
UV_CPU = (FIXTURES / "pylock.uv-cpu-py311.toml").read_text()
UV_GPU = (FIXTURES / "pylock.uv-torch210-py311.toml").read_text()
WHEELHOUSE = Sources(pytorch_index=None, wheelhouse=("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",))


@pytest.fixture(scope="module")
def cpu_plan(matrix) -> Plan:
    target = build_target(matrix, gpus=(), pythons=("3.11",), profile="cpu")
    plan = resolve(target, matrix, WHEELHOUSE)
    assert isinstance(plan, Plan)
    return plan


def test_requirements_are_the_exact_pins_then_extras(cpu_plan: Plan) -> None:
    text = requirements_text(cpu_plan, ["datasets==3.2.0"])
    lines = text.splitlines()
    assert lines[0] == "torch==2.13.0+cpu"
    assert lines[-1] == "datasets==3.2.0"
    assert all("==" in line for line in lines)


def test_finalize_records_canonical_url_and_provenance(cpu_plan: Plan) -> None:
    text = finalize(UV_CPU, cpu_plan, name="cpu-py3.11", pytorch_index="https://download.pytorch.org/whl")
    lock = parse_lock(text, Path("pylock.cpu-py3.11.toml"))
    torch = lock.package("torch")
    assert torch is not None and torch.version == "2.13.0+cpu"
    # The wheelhouse file is recorded under the PyTorch CPU index URL, same name, same hash.
    assert torch.files[0].url == (
        "https://download.pytorch.org/whl/cpu/torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    )
    assert torch.files[0].filename == "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    assert torch.files[0].sha256 == "6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b"
    assert "wheelhouse-files" in text and "file:///opt/wheels/" in text
    assert lock.tool.name == "cpu-py3.11" and lock.tool.profile == "cpu" and lock.tool.python == "3.11"
    assert lock.tool.pins[:2] == ("torch==2.13.0+cpu", "bitsandbytes==0.50.2")
    assert lock.tool.matrix_digest == cpu_plan.matrix_digest
    assert lock.tool.digest.startswith("sha256:")


def test_a_percent_encoded_file_url_gets_its_name_for_every_reader(cpu_plan: Plan) -> None:
    """packaging before 26.4 takes ``torch-2.13.0%2Bcpu-...whl`` as the file name and refuses the lock (CI's 26.2 did).

    The lock envbuilder writes names the file, so any packaging.pylock reads it; a lock uv wrote without the
    name (PEP 751 allows that) is still read by envbuilder, whichever packaging is installed.
    """
    import tomllib
    from packaging.pylock import Pylock

    text = finalize(UV_CPU, cpu_plan, name="cpu-py3.11", pytorch_index="https://download.pytorch.org/whl")
    wheel = 'name = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", url = "https://download.pytorch.org/whl/cpu/torch-2.13.0%2Bcpu-'
    assert wheel in text
    Pylock.from_dict(tomllib.loads(text))  # the installed packaging, as a teammate's tool would read it
    unnamed = text.replace('name = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", ', "")
    assert "%2Bcpu" in unnamed and "name = \"torch-" not in unnamed
    assert parse_lock(unnamed, Path("pylock.cpu-py311.toml")).package("torch") is not None


def test_without_pytorch_index_the_wheelhouse_url_stays(cpu_plan: Plan) -> None:
    text = finalize(UV_CPU, cpu_plan, name="x", pytorch_index=None)
    torch = parse_lock(text, Path("x")).package("torch")
    assert torch is not None and torch.files[0].url.startswith("file:///opt/wheels/")


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda t: t.replace('version = "0.50.2"', 'version = "0.50.1"', 1), "a version changed"),
        (lambda t: re.sub(r'sha256 = "55348a9a', 'sha256 = "00000000', t, count=1), "a wheel hash changed"),
        (lambda t: t.replace("files.pythonhosted.org", "evil.example.org", 1), "a URL changed"),
        (lambda t: t.replace('profile = "cpu"', 'profile = "bnb"', 1), "the envbuilder table changed"),
    ],
)
def test_tampered_lock_is_refused(cpu_plan: Plan, edit, why: str) -> None:  # type: ignore[no-untyped-def]
    text = finalize(UV_CPU, cpu_plan, name="cpu-py3.11", pytorch_index="https://download.pytorch.org/whl")
    tampered = edit(text)
    assert tampered != text, why
    with pytest.raises(LockError, match="modified after envbuilder wrote it"):
        parse_lock(tampered, Path("pylock.cpu-py3.11.toml"))


def test_smoke_evidence_does_not_change_the_digest(cpu_plan: Plan) -> None:
    text = finalize(UV_CPU, cpu_plan, name="n", pytorch_index=None)
    before = parse_lock(text, Path("a")).tool.digest
    after = parse_lock(with_smoke(text, {"result": "pass", "date": "2026-11-24"}), Path("a"))
    assert after.tool.digest == before
    assert after.tool.smoke["result"] == "pass"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not toml [", "not a valid lock"),
        ('lock-version = "1.0"\n', "not an envbuilder PEP 751 lock"),
        (UV_CPU, "not an envbuilder PEP 751 lock"),  # uv's lock without [tool.envbuilder]
        ('lock-version = "1.0"\n[tool.envbuilder]\nschema = 99\n', "schema 99 is not supported"),
    ],
)
def test_malformed_locks(text: str, message: str) -> None:
    with pytest.raises(LockError, match=message):
        parse_lock(text, Path("pylock.x.toml"))


def _resealed(text: str) -> str:
    import tomllib

    from envbuilder.model.lock import content_digest

    digest = content_digest(tomllib.loads(text))
    return re.sub(r'lock-digest = "sha256:[0-9a-f]+"', f'lock-digest = "{digest}"', text)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        # packaging.pylock's validation, its dotted context first
        (
            'hashes = { sha256 = "6746',
            'hashes = ["abc"], x = { sha256 = "6746',
            "packages[35].wheels[0].hashes: not a valid PEP 751 lock ('Unexpected type list (expected Mapping)')",
        ),
        (
            'name = "torch"\n',
            'name = "torch evil"\n',
            "packages[35].name: not a valid PEP 751 lock (\"Name 'torch evil' is not normalized\")",
        ),
        (
            'lock-version = "1.0"',
            'lock-version = "1.0"\nenvironments = 3',
            "environments: not a valid PEP 751 lock ('Unexpected type int (expected Sequence)')",
        ),
        # envbuilder's own rules over the validated model and over [tool.envbuilder]
        (
            'name = "accelerate"\nversion = "1.15.0"\n',
            'name = "accelerate"\n',
            "packages[0]: package accelerate has no version (envbuilder installs exact versions)",
        ),
        (
            "https://download.pytorch.org/whl/cpu/torch-",
            "https://u:p@download.pytorch.org/whl/cpu/torch-",
            "packages[35]: a URL carries credentials (user:password@); locks record URLs without them",
        ),
        (
            'sha256 = "6746dbcb',
            'sha256 = "XYZ6dbcb',
            "packages[35]: package torch has a file without a valid sha256 hash",
        ),
        ("pins = [", "pins = 5\nold-pins = [", "[tool.envbuilder].pins: expected a list of one-line strings, got 5"),
        (
            'profile = "cpu"',
            'profile = "c p u"',
            "[tool.envbuilder].profile: expected a short plain value, got 'c p u'",
        ),
    ],
)
def test_a_bad_lock_names_the_file_and_the_field(old: str, new: str, message: str) -> None:
    """One message, exit 2 (LockError): the file, then the field (PEP 751's dotted path, or envbuilder's key)."""
    text = CPU_LOCK.read_text(encoding="utf-8")
    assert old in text
    with pytest.raises(LockError) as info:
        parse_lock(_resealed(text.replace(old, new, 1)), CPU_LOCK)
    assert info.value.message == f"{CPU_LOCK}: {message}"
    assert info.value.exit_code == 2


def test_the_pylock_check_leaves_the_document_as_read(cpu_plan: Plan) -> None:
    """A percent-encoded URL without its name is validated on a named copy; the caller's document (whose digest
    was taken) is not changed, and a lock without such URLs is validated as it is."""
    import copy

    import tomllib

    from envbuilder.model.lock import check_pylock

    text = finalize(UV_CPU, cpu_plan, name="cpu-py3.11", pytorch_index="https://download.pytorch.org/whl")
    unnamed = tomllib.loads(text.replace('name = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", ', ""))
    for doc in (unnamed, tomllib.loads(UV_GPU)):
        before = copy.deepcopy(doc)
        pylock, packages = check_pylock(doc, "x")
        assert doc == before
        assert [p.name for p in pylock.packages] == [p.name for p in packages]
    torch = next(p for p in check_pylock(unnamed, "x")[1] if p.name == "torch")
    assert torch.files[0].filename == "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"


def test_gpu_lock_from_pypi_keeps_pypi_urls(matrix) -> None:  # type: ignore[no-untyped-def]
    target = build_target(
        matrix, gpus=parse_gpus("sm_86", matrix), driver="550.54.14", pythons=("3.11",), torch="2.10.0"
    )
    plan = resolve(target, matrix, Sources(pytorch_index=None))
    assert isinstance(plan, Plan)
    lock = parse_lock(finalize(UV_GPU, plan, name="g"), Path("g"))
    torch = lock.package("torch")
    assert torch is not None and torch.version == "2.10.0"
    assert torch.files[0].url.startswith("https://files.pythonhosted.org/")
    assert lock.tool.cuda == "12.8" and lock.tool.variant == "cu128"


def test_hashed_requirements_pin_every_file(cpu_plan: Plan) -> None:
    lock = parse_lock(finalize(UV_CPU, cpu_plan, name="n", pytorch_index=None), Path("n"))
    lines = hashed_requirements(lock).splitlines()
    assert len(lines) == len(lock.packages)
    assert all(re.search(r"==\S+( ; .+)? (--hash=sha256:[0-9a-f]{64} ?)+$", line) for line in lines)


def test_diff_pins(cpu_plan: Plan) -> None:
    old = parse_lock(finalize(UV_CPU, cpu_plan, name="n", pytorch_index=None), Path("n"))
    new = replace(
        old,
        packages=tuple(
            replace(p, version="9.9.9") if p.name == "accelerate" else p for p in old.packages if p.name != "rich"
        ),
    )
    assert diff_pins(old, new) == ["~ accelerate 1.15.0 -> 9.9.9", "- rich " + old.package("rich").version]  # type: ignore[union-attr]
    assert diff_pins(old, old) == []


@pytest.mark.parametrize("name", ["x; rm -rf /", "../up", "", "a b", "$(id)", ".", "-lead"])
def test_unsafe_env_names_refused(name: str) -> None:
    with pytest.raises(LockError, match="is not allowed"):
        check_env_name(name)


def test_default_names(cpu_plan: Plan) -> None:
    assert default_env_name(cpu_plan) == "cpu-py3.11"  # environment names keep their dots
    assert default_lock_file_name(cpu_plan) == "pylock.cpu-py311-linux-x86_64.toml"  # file names may not


# --------------------------------------------------------------------------- PEP 751 file names


LOCK_NAMES = [
    ("pylock.toml", True),
    ("pylock.cpu-py311.toml", True),
    ("pylock.bnb-cu126-py311-linux-x86_64.toml", True),
    ("pylock.cpu-py3.11.toml", False),  # every default name envbuilder wrote before (uv refuses it)
    ("pylock.bnb-cu128-py3.11.toml", False),
    ("pylock..toml", False),  # <name> must not be empty
    ("team.lock.toml", False),
    ("pylock.team.lock.toml", False),
    ("lock.toml", False),
    ("pylock.x.json", False),
]


@pytest.mark.parametrize(("filename", "valid"), LOCK_NAMES)
def test_lock_names_follow_packaging_pylock(filename: str, valid: bool) -> None:
    """envbuilder's check is packaging.pylock's own (uv and pip apply the same PEP 751 rule)."""
    from packaging.pylock import is_valid_pylock_path

    assert is_valid_lock_file_name(filename) is valid
    assert is_valid_pylock_path(Path(filename)) is valid
    # PEP 751's wording, written out: pylock.toml or pylock.<name>.toml, <name> non-empty and without dots.
    assert bool(filename == "pylock.toml" or re.fullmatch(r"pylock\.[^.]+\.toml", filename)) is valid


@pytest.mark.parametrize(
    ("name", "filename"),
    [
        ("cpu-py3.11", "pylock.cpu-py311.toml"),  # the environment keeps its dots, the file drops them
        ("bnb-cu128-py3.12", "pylock.bnb-cu128-py312.toml"),
        ("train", "pylock.train.toml"),
        ("team.lock", "pylock.team-lock.toml"),
        ("a_b-c", "pylock.a_b-c.toml"),
        ("v1.2.3", "pylock.v123.toml"),
        ("x.", "pylock.x.toml"),
    ],
)
def test_lock_file_name(name: str, filename: str) -> None:
    assert lock_file_name(name) == filename
    assert is_valid_lock_file_name(filename)


@pytest.mark.parametrize("name", ["", ".", "...", "-"])
def test_a_name_without_letters_cannot_name_a_lock(name: str) -> None:
    with pytest.raises(LockError, match="cannot name a lock file"):
        lock_file_name(name)


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True))
def test_every_environment_name_makes_a_valid_lock_name(name: str) -> None:
    assert is_valid_lock_file_name(lock_file_name(check_env_name(name)))


@pytest.mark.parametrize(
    ("os", "gpu", "driver", "profile", "python", "filename"),
    [
        ("linux", None, None, "cpu", "3.11", "pylock.cpu-py311-linux-x86_64.toml"),
        ("windows", None, None, "cpu", "3.11", "pylock.cpu-py311-windows-x86_64.toml"),
        ("linux", "sm_89", "550.54.14", "bnb", "3.11", "pylock.bnb-cu126-py311-linux-x86_64.toml"),
        ("windows", "sm_89", "560.94", "bnb", "3.11", "pylock.bnb-cu126-py311-windows-x86_64.toml"),
        ("wsl2", "sm_89", "560.94", "bnb", "3.11", "pylock.bnb-cu126-py311-wsl2-x86_64.toml"),
        ("linux", "sm_89", "550.54.14", "bnb", "3.12", "pylock.bnb-cu126-py312-linux-x86_64.toml"),
    ],
)
def test_default_lock_names_carry_what_tells_locks_apart(  # type: ignore[no-untyped-def]
    matrix, os: str, gpu: str | None, driver: str | None, profile: str, python: str, filename: str
) -> None:
    """Profile, CUDA variant, Python and platform: a Windows lock no longer overwrites the Linux one."""
    gpus = parse_gpus(gpu, matrix) if gpu else ()
    target = build_target(matrix, gpus=gpus, driver=driver, os=os, pythons=(python,), profile=profile)
    plan = resolve(target, matrix, Sources(pytorch_index=matrix.pytorch_index))
    assert isinstance(plan, Plan)
    assert default_lock_file_name(plan) == filename


@pytest.mark.parametrize(
    ("given", "suggested"),
    [
        ("team.lock.toml", "pylock.team-lock.toml"),
        ("pylock.cpu-py3.11.toml", "pylock.cpu-py311.toml"),
        ("lock", "pylock.lock.toml"),
        ("pylock..toml", "pylock.toml"),
        ("pylock.train.toml", "pylock.train.toml"),
    ],
)
def test_suggested_lock_names(given: str, suggested: str) -> None:
    assert suggest_lock_file_name(given) == suggested


def test_a_user_given_invalid_lock_name_is_refused_with_a_valid_one(tmp_path: Path) -> None:
    with pytest.raises(LockError) as info:
        check_lock_path(tmp_path / "team.lock.toml", "--lock-out")
    assert info.value.message == (
        f"--lock-out {tmp_path}/team.lock.toml: 'team.lock.toml' is not a PEP 751 lock name "
        "(pylock.toml or pylock.<name>.toml, <name> without dots); uv and pip refuse it"
    )
    assert info.value.hint == f"use --lock-out {tmp_path}/pylock.team-lock.toml"
    assert check_lock_path(tmp_path / "pylock.team.toml", "-o") == tmp_path / "pylock.team.toml"


def test_legacy_name_note() -> None:
    assert legacy_name_note(Path("pylock.cpu-py311.toml"), "x") is None
    assert legacy_name_note(Path("/t/pylock.cpu-py3.11.toml"), "installing a copy named pylock.cpu-py311.toml") == (
        "note: pylock.cpu-py3.11.toml is not a valid PEP 751 name (uv refuses it): installing a copy named "
        "pylock.cpu-py311.toml; rename the file to pylock.cpu-py311.toml to share it"
    )


def test_write_text_atomic_keeps_a_text_s_own_line_ends_when_told(tmp_path: Path) -> None:
    """newline="" writes CRLF text byte for byte; translating it (Windows' default, spelled out) doubles the CR."""
    path = tmp_path / "activate.bat"
    write_text_atomic(path, "@echo off\r\n@set X=1\r\n", newline="")
    assert path.read_bytes() == b"@echo off\r\n@set X=1\r\n"
    write_text_atomic(path, "@echo off\r\n", newline="\r\n")  # what newline=None does on native Windows
    assert path.read_bytes() == b"@echo off\r\r\n"


def test_write_text_atomic_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.toml"
    write_text_atomic(path, "a")
    write_text_atomic(path, "b")
    assert path.read_text() == "b"
    assert [p.name for p in path.parent.iterdir()] == ["f.toml"]


@pytest.mark.integration
def test_the_lock_check_accepts_finalized_locks_and_refuses_bad_ones(  # type: ignore[no-untyped-def]
    cpu_plan: Plan, tmp_path: Path, lock_consumers
) -> None:
    """The shared check (tests/conftest.py) every test runs on the locks it writes: it can fail."""
    from packaging.pylock import PylockValidationError

    text = finalize(UV_CPU, cpu_plan, name="cpu-py3.11", pytorch_index="https://download.pytorch.org/whl")
    good = tmp_path / default_lock_file_name(cpu_plan)
    good.write_text(text)
    assert "torch==2.13.0+cpu" in lock_consumers(good)
    dotted = tmp_path / "pylock.cpu-py3.11.toml"  # the name every default lock had before
    dotted.write_text(text)
    with pytest.raises(AssertionError, match="not a PEP 751 lock name"):
        lock_consumers(dotted)
    inconsistent = tmp_path / "pylock.inconsistent.toml"
    inconsistent.write_text(text.replace('name = "torch"', 'name = "torchx"', 1))
    with pytest.raises(PylockValidationError, match="not consistent with package name 'torchx'"):
        lock_consumers(inconsistent)


@pytest.mark.integration
@pytest.mark.parametrize(("filename", "valid"), LOCK_NAMES)
def test_uv_draws_the_same_line(filename: str, valid: bool, tmp_path: Path) -> None:
    """uv, the consumer, refuses exactly the names envbuilder's rule refuses (it checks before resolving)."""
    import subprocess

    from uv import find_uv_bin

    requirements = tmp_path / "requirements.in"
    requirements.write_text("")
    argv = [
        find_uv_bin(),
        "pip",
        "compile",
        str(requirements),
        "--format",
        "pylock.toml",
        "-o",
        str(tmp_path / filename),
    ]
    out = subprocess.run(
        [*argv, "--python-version", "3.11", "--offline", "--quiet", "--no-header"],
        capture_output=True,
        text=True,
        check=False,
    )
    refused = "Expected the output filename to be `pylock.toml` or `pylock.<name>.toml`" in out.stderr
    assert (refused, out.returncode == 0) == (not valid, valid), out.stderr


@pytest.mark.parametrize(
    ("present", "found"),
    [
        ((), "pylock.cpu-py311.toml"),  # nothing yet: where `lock` writes it
        (("pylock.cpu-py311.toml",), "pylock.cpu-py311.toml"),
        (("pylock.cpu-py3.11.toml",), "pylock.cpu-py3.11.toml"),  # a team's lock from before: still found
        (("pylock.cpu-py3.11.toml", "pylock.cpu-py311.toml"), "pylock.cpu-py311.toml"),
    ],
)
def test_a_manifests_lock_is_found_under_its_name_or_the_old_one(
    tmp_path: Path, present: tuple[str, ...], found: str
) -> None:
    from envbuilder.model.lock import manifest_lock_path

    for name in present:
        (tmp_path / name).write_text("")
    assert manifest_lock_path(tmp_path, "cpu-py3.11") == tmp_path / found


# --------------------------------------------------------------------------- every lock, as each reader reads it

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_LOCKS = sorted([*(ROOT / "dockerfiles").glob("*/pylock.*.toml"), *FIXTURES.glob("pylock.*.toml")])
# The packaging a user may have: the floor pyproject allows (26.0, the first with packaging.pylock), CI's 26.2
# (which took a percent-encoded URL segment as the file name and refused every lock from the PyTorch index),
# and 26.4 (which decodes it).
PACKAGINGS = ("26.0", "26.2", "26.4")
_READ_ALL = """
import sys, tomllib
sys.path.insert(0, sys.argv[1])
import packaging
from pathlib import Path
from packaging.pylock import Pylock, is_valid_pylock_path
print(packaging.__version__)
for name in sys.argv[2:]:
    path = Path(name)
    try:
        Pylock.from_dict(tomllib.loads(path.read_text(encoding="utf-8")))
    except Exception as exc:
        print(f"{path}: {type(exc).__name__}: {exc}")
    if not is_valid_pylock_path(path):
        print(f"{path}: not a PEP 751 name")
"""


def _written_locks(cpu_plan: Plan, matrix, out: Path) -> list[Path]:  # type: ignore[no-untyped-def]
    """What envbuilder writes from uv's real output: the PyTorch index's percent-encoded torch URL, and PyPI's."""
    cpu = out / default_lock_file_name(cpu_plan)
    cpu.write_text(finalize(UV_CPU, cpu_plan, name="cpu-py3.11", pytorch_index="https://download.pytorch.org/whl"))
    assert "%2Bcpu" in cpu.read_text()
    gpus = parse_gpus("sm_86", matrix)
    target = build_target(matrix, gpus=gpus, driver="550.54.14", pythons=("3.11",), torch="2.10.0")
    plan = resolve(target, matrix, Sources(pytorch_index=None))
    assert isinstance(plan, Plan)
    gpu = out / default_lock_file_name(plan)
    gpu.write_text(finalize(UV_GPU, plan, name="g"))
    return [cpu, gpu]


@pytest.mark.network
@pytest.mark.parametrize("version", PACKAGINGS)
def test_every_lock_shipped_or_written_is_read_by_each_packaging(  # type: ignore[no-untyped-def]
    version: str, cpu_plan: Plan, matrix, tmp_path: Path
) -> None:
    """dockerfiles/'s locks, the uv outputs of tests/fixtures and the locks finalize writes, each read by
    ``Pylock.from_dict`` and PEP 751's name rule of that packaging (installed from PyPI beside the test's own)."""
    import subprocess
    import sys

    from uv import find_uv_bin

    locks = [*SHIPPED_LOCKS, *_written_locks(cpu_plan, matrix, tmp_path)]
    assert len(SHIPPED_LOCKS) >= 9
    target = tmp_path / f"packaging-{version}"
    installed = subprocess.run(
        [find_uv_bin(), "pip", "install", "--quiet", "--no-config", "--target", str(target),
         "--python", sys.executable, f"packaging=={version}"],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    read = subprocess.run(
        [sys.executable, "-I", "-c", _READ_ALL, str(target), *map(str, locks)],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout.splitlines() == [version], read.stdout


@pytest.mark.integration
def test_the_uv_outputs_of_the_fixtures_and_the_locks_written_from_them_pass_uv(  # type: ignore[no-untyped-def]
    cpu_plan: Plan, matrix, tmp_path: Path, lock_consumers
) -> None:
    """uv's dry run of every lock tests/fixtures ships (uv's own output: no [tool.envbuilder]) and of those
    finalize writes from them (dockerfiles/'s are tests/test_docker.py's)."""
    for path in FIXTURES.glob("pylock.*.toml"):
        planned = lock_consumers(path, python="3.11", platform="linux-x86_64")
        assert "torch" in {p.split("==")[0] for p in planned}
    for path in _written_locks(cpu_plan, matrix, tmp_path):
        assert "torch" in {p.split("==")[0] for p in lock_consumers(path)}
