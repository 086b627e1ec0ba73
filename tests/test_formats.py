"""Checkpoint formats: what transformers' quantizers demand (quantizers.toml), which profile loads and makes each
format (profiles.toml), and the resolver checking the first like any other requirement (issue 18)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from envbuilder.model.matrix import Matrix
from envbuilder.model.target import Target, build_target, parse_gpus
from envbuilder.resolve import NoPlan, Plan, resolve
from envbuilder.rules import formats


@pytest.mark.parametrize(
    ("method", "transformers", "pins", "unmet"),
    [
        # the gptq profile as it was before issue 18: no optimum, and transformers' first check says so
        ("gptq", "5.24.0", {"gptqmodel": "7.6.0"}, ("optimum>=1.24.0 is not installed",)),
        ("gptq", "5.24.0", {"gptqmodel": "7.6.0", "optimum": "2.3.0"}, ()),
        ("gptq", "5.17.0", {"gptqmodel": "1.4.2", "optimum": "2.3.0"}, ("gptqmodel 1.4.2 is not >=1.4.3",)),
        # the awq profile as it was: llmcompressor alone cannot load quant_method awq
        ("awq", "5.17.0", {"llmcompressor": "0.14.0.1", "accelerate": "1.15.0"}, ("gptqmodel is not installed",)),
        ("awq", "5.17.0", {"gptqmodel": "7.6.0", "accelerate": "1.15.0"}, ()),
        (
            "compressed-tensors",
            "5.17.0",
            {"compressed-tensors": "0.14.0"},
            ("compressed-tensors 0.14.0 is not >=0.15.0",),
        ),
        ("bitsandbytes_4bit", "5.24.0", {"accelerate": "1.15.0", "bitsandbytes": "0.50.2"}, ()),
        # transformers 4.57.6: optimum and one of auto-gptq / gptqmodel
        ("gptq", "4.57.6", {"optimum": "2.3.0"}, ("none of auto-gptq>=0.4.2, gptqmodel>=1.4.3 is installed",)),
        ("gptq", "4.57.6", {"optimum": "2.3.0", "auto-gptq": "0.7.1"}, ()),
    ],
)
def test_loader_requirements(
    matrix: Matrix, method: str, transformers: str, pins: dict[str, str], unmet: tuple[str, ...]
) -> None:
    row = formats.quantizer_for(matrix, method, transformers)
    assert row is not None
    assert formats.loader_unmet(row, pins) == unmet


def test_a_transformers_whose_quantizer_was_not_read_has_no_row(matrix: Matrix) -> None:
    assert formats.quantizer_for(matrix, "gptq", "5.10.0") is None
    assert formats.quantizer_for(matrix, "gptq", "not-a-version") is None


@pytest.mark.parametrize(
    ("fmt", "load", "make"),
    [
        ("gptq", ("gptq", "awq"), ("gptq", "awq")),
        ("awq", ("gptq", "awq"), ("gptq", "awq")),
        ("compressed-tensors", ("awq",), ("awq",)),
        ("bitsandbytes_4bit", ("bnb", "cpu"), ("bnb", "cpu")),
        ("bitsandbytes_8bit", ("bnb", "cpu"), ("bnb", "cpu")),
    ],
)
def test_profiles_that_load_and_make(matrix: Matrix, fmt: str, load: tuple[str, ...], make: tuple[str, ...]) -> None:
    assert formats.profiles_that_load(fmt, matrix) == load
    assert formats.profiles_that_make(fmt, matrix) == make


def test_every_profile_says_what_it_does_with_every_format(matrix: Matrix) -> None:
    from envbuilder.model.matrix import QUANT_METHODS

    for p in matrix.profiles:
        assert sorted(f.format for f in p.formats) == sorted(QUANT_METHODS), p.name
        for f in p.formats:
            # a format loaded on the CPU "proven" says where it ran
            assert f.cpu != "proven" or (f.verified and "CPU" in f.verified), (p.name, f.format)


def _target(matrix: Matrix, profile: str) -> Target:
    gpus = parse_gpus("sm_89", matrix)
    return build_target(matrix, gpus=gpus, driver="580.95.05", profile=profile, pythons=("3.12",))


def _without(matrix: Matrix, profile: str, package: str) -> Matrix:
    """The matrix with ``package`` taken out of the profile's packages (as the profiles were before issue 18)."""
    profiles = tuple(
        dataclasses.replace(p, packages=tuple(n for n in p.packages if n != package)) if p.name == profile else p
        for p in matrix.profiles
    )
    return dataclasses.replace(matrix, profiles=profiles, _cache={})


@pytest.mark.parametrize(
    ("profile", "package", "message"),
    [
        (
            "gptq",
            "optimum",
            "the gptq profile loads GPTQ checkpoints, but transformers 5.24.0's gptq quantizer needs "
            "what the pins lack: optimum>=1.24.0 is not installed (quantizers.toml: quantizer[0])",
        ),
        (
            "awq",
            "gptqmodel",
            "the awq profile loads GPTQ checkpoints, but transformers 5.17.0's gptq quantizer needs "
            "what the pins lack: gptqmodel>=1.4.3 is not installed (quantizers.toml: quantizer[0])",
        ),
    ],
)
def test_resolver_refuses_a_profile_that_cannot_load_what_it_claims(
    matrix: Matrix, profile: str, package: str, message: str
) -> None:
    result = resolve(_target(matrix, profile), _without(matrix, profile, package))
    assert isinstance(result, NoPlan)
    hit = next(r for r in result.rejected if r.why == message)
    assert (hit.kind, hit.headline) == ("loader", message.partition(": ")[0])


def test_plan_shows_the_formats_it_loads(matrix: Matrix) -> None:
    plan = resolve(_target(matrix, "awq"), matrix)
    assert isinstance(plan, Plan)
    assert "loads AWQ: transformers' awq quantizer needs gptqmodel, accelerate>=1.1.0: all hold" in plan.reasons
    doc = plan.to_json()
    loads = {f["format"] for f in doc["formats"] if f["load"]}  # type: ignore[attr-defined]
    assert loads == {"gptq", "awq", "compressed-tensors"}


def test_list_shows_what_each_environment_loads_and_makes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from envbuilder.cli.app import main
    from envbuilder.edge.settings import Settings

    home = tmp_path / "h"
    for name, profile in (("q", "gptq"), ("a", "awq")):
        env = Settings(home=home).envs_dir / name
        env.mkdir(parents=True)
        marker = {"schema": "envbuilder.env/1", "name": name, "profile": profile, "python": "3.11"}
        (env / "envbuilder.json").write_text(json.dumps(marker))
    assert main(["list", "--home", str(home), "--json"]) == 0
    envs = {e["name"]: e for e in json.loads(capsys.readouterr().out)["envs"]}
    assert envs["q"]["loads"] == ["gptq", "awq"] and envs["q"]["makes"] == ["gptq", "awq"]
    assert envs["a"]["loads"] == ["gptq", "awq", "compressed-tensors"]
    assert main(["list", "--home", str(home)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["NAME", "PROFILE"] and lines[0].split()[-2:] == ["LOADS", "MAKES"]
    assert lines[1].split()[-2:] == ["gptq,awq,compressed-tensors", "gptq,awq,compressed-tensors"]


@pytest.mark.parametrize(
    ("log", "method", "loads"),
    [
        # the smoke stage's own FAIL in the gptq environment without optimum (tests/fixtures/quant-load)
        ("quant-load/gptq-current.json", "gptq", ("gptq", "awq")),
        ("quant-load/awq-current.json", "awq", ("gptq", "awq")),
    ],
)
def test_a_refused_load_names_its_quantizer_and_the_profiles_that_load_it(
    matrix: Matrix, log: str, method: str, loads: tuple[str, ...]
) -> None:
    text = (Path(__file__).parent / "fixtures" / log).read_text(encoding="utf-8")
    found = formats.quantizer_error(text, matrix)
    assert found is not None
    row, message = found
    assert row.method == method and message in row.errors
    assert formats.profiles_that_load(row.method, matrix) == loads
    assert formats.quantizer_error("nothing transformers said", matrix) is None
