"""Locks: finalize uv's real pylock output, verify digests, refuse tampering, diff, hashed requirements."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from envbuilder._fs import write_text_atomic
from envbuilder.errors import LockError
from envbuilder.lock import (
    check_env_name,
    default_env_name,
    diff_pins,
    finalize,
    hashed_requirements,
    parse_lock,
    requirements_text,
    with_smoke,
)
from envbuilder.resolve import Plan, Sources, resolve
from envbuilder.target import build_target, parse_gpus

FIXTURES = Path(__file__).parent / "fixtures" / "locks"
# Real `uv pip compile --format pylock.toml` outputs (see fixtures/locks/README.md).
UV_CPU = (FIXTURES / "uv-cpu-py3.11.pylock.toml").read_text()
UV_GPU = (FIXTURES / "uv-torch2.10-py3.11.pylock.toml").read_text()
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
    assert lock.name == "cpu-py3.11" and lock.profile == "cpu" and lock.python == "3.11"
    assert lock.pins[:2] == ("torch==2.13.0+cpu", "bitsandbytes==0.50.2")
    assert lock.matrix_digest == cpu_plan.matrix_digest
    assert lock.digest.startswith("sha256:")


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
    before = parse_lock(text, Path("a")).digest
    after = parse_lock(with_smoke(text, {"result": "pass", "date": "2026-11-24"}), Path("a"))
    assert after.digest == before
    assert after.smoke["result"] == "pass"


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
    assert lock.cuda == "12.8" and lock.variant == "cu128"


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
    assert default_env_name(cpu_plan) == "cpu-py3.11"


def test_write_text_atomic_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "f.toml"
    write_text_atomic(path, "a")
    write_text_atomic(path, "b")
    assert path.read_text() == "b"
    assert [p.name for p in path.parent.iterdir()] == ["f.toml"]
