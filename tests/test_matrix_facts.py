"""Release facts live in matrices/ and the rules read them there: change the row and the answer follows.

Each case runs a rule on the shipped matrix, then on a copy whose one row says otherwise (what an overlay
directory or the next release's row would say), and checks that the answer moved with the row.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from envbuilder.doctor import Context, Device, Evidence, diagnose
from envbuilder.model.errors import MatrixError
from envbuilder.model.matrix import BnbFirst, Matrix, load_matrix
from envbuilder.model.target import build_target, parse_gpus
from envbuilder.resolve import Plan, resolve

H100 = Device(index=0, name="NVIDIA H100 80GB HBM3", cc="9.0", vram_bytes=85 * 10**9)


def _ev(**kw: object) -> Evidence:
    base: dict[str, object] = {"python": "3.11.7", "system": "Linux", "machine": "x86_64", "libc": "glibc-2.36"}
    return Evidence(**{**base, **kw})  # type: ignore[arg-type]


def _rules(matrix: Matrix, ev: Evidence) -> set[str]:
    return {f.rule for f in diagnose(Context(matrix=matrix, evidence=ev))}


def _limit(matrix: Matrix, package: str, **change: object) -> Matrix:
    rows = tuple(dataclasses.replace(x, **change) if x.package == package else x for x in matrix.bnb_limits)
    return dataclasses.replace(matrix, bnb_limits=rows)


def test_the_triton_limit_is_the_matrixs(matrix: Matrix) -> None:
    ev = _ev(torch="2.6.0+cu124", torch_cuda="12.4", devices=(H100,), bnb="0.44.1", packages={"triton": "3.2.0"})
    assert "triton-ops" in _rules(matrix, ev)  # bitsandbytes.toml: <=0.45.0 needs triton < 3.2
    assert "triton-ops" not in _rules(_limit(matrix, "triton", needs=SpecifierSet("<3.3")), ev)


def test_the_triton_finding_says_the_matrixs_limit(matrix: Matrix) -> None:
    ev = _ev(torch="2.6.0+cu124", torch_cuda="12.4", devices=(H100,), bnb="0.44.1", packages={"triton": "3.2.0"})
    (found,) = (f for f in diagnose(Context(matrix=matrix, evidence=ev)) if f.rule == "triton-ops")
    assert "which triton 3.2 removed" in found.cause and found.fix.endswith("pin triton <3.2")
    moved = _limit(matrix, "triton", needs=SpecifierSet("<3.1"))
    (found,) = (f for f in diagnose(Context(matrix=moved, evidence=ev)) if f.rule == "triton-ops")
    assert "which triton 3.1 removed" in found.cause and found.fix.endswith("pin triton <3.1")


def test_the_glibc_finding_says_the_matrixs_limits(matrix: Matrix) -> None:
    log = (
        "OSError: /lib/x86_64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found "
        "(required by libbitsandbytes_cuda126.so)"
    )
    (found,) = (f for f in diagnose(Context(matrix=matrix, log=log)) if f.rule == "glibc-too-old")
    assert "(CUDA 12.6/12.8 libraries) needs glibc >=2.34" in found.cause
    assert "==0.45.3 needs libstdc++ >=3.4.32" in found.cause and "0.46.0 and later have no such floor" in found.cause
    moved = _limit(matrix, "glibc", needs=SpecifierSet(">=2.35"))
    (found,) = (f for f in diagnose(Context(matrix=moved, log=log)) if f.rule == "glibc-too-old")
    assert "needs glibc >=2.35" in found.cause


def test_the_windows_fork_fix_names_the_matrixs_first_windows_release(matrix: Matrix) -> None:
    """A real log (tests/fixtures/logs: MiniGPT-4#156, bitsandbytes-windows on a V100)."""
    log = (Path(__file__).parent / "fixtures" / "logs" / "gh-minigpt4-156-no-kernel-image-windows-v100.txt").read_text()
    first = (BnbFirst(platform="windows-x86_64", version="0.44.0", source="test", confidence="confirmed"),)
    later = dataclasses.replace(matrix, bnb_first=first)
    for m, said in ((matrix, ">= 0.43.0 ships Windows DLLs"), (later, ">= 0.44.0")):
        (found,) = (f for f in diagnose(Context(matrix=m, log=log)) if f.rule == "bnb-no-kernel")
        assert "uninstall bitsandbytes-windows" in found.fix and said in found.fix


def test_the_glibc_limit_is_the_matrixs(matrix: Matrix) -> None:
    ev = _ev(torch="2.7.0+cu126", torch_cuda="12.6", devices=(H100,), bnb="0.45.5", libc="glibc-2.31")
    assert "glibc-too-old" in _rules(matrix, ev)  # 0.45.x cu126/cu128 libraries need glibc >= 2.34
    assert "glibc-too-old" not in _rules(_limit(matrix, "glibc", cuda=("12.8",)), ev)
    assert "glibc-too-old" not in _rules(_limit(matrix, "glibc", needs=SpecifierSet(">=2.31")), ev)


def test_transformers_bnb_floor_is_the_matrixs(matrix: Matrix) -> None:
    ev = _ev(torch="2.13.0+cpu", bnb="0.46.0", packages={"transformers": "5.24.0"})
    assert "transformers-min-bnb" in _rules(matrix, ev)  # companions.toml: requires bitsandbytes >= 0.46.1
    lowered = tuple(
        dataclasses.replace(c, requires={**c.requires, "bitsandbytes": SpecifierSet(">=0.46.0")})
        if c.name == "transformers" and "bitsandbytes" in c.requires
        else c
        for c in matrix.companions
    )
    assert "transformers-min-bnb" not in _rules(dataclasses.replace(matrix, companions=lowered), ev)


@pytest.mark.parametrize(("version", "floor"), [("5.24.0", ">=0.46.1"), ("5.0.0", ">=0.46.1"), ("4.57.1", None)])
def test_companion_requires_reads_the_nearest_row(matrix: Matrix, version: str, floor: str | None) -> None:
    got = matrix.companion_requires("transformers", version, "bitsandbytes")
    assert (str(got) if got is not None else None) == floor


def test_the_first_windows_release_is_the_matrixs(matrix: Matrix) -> None:
    ev = _ev(torch="2.4.1+cu121", torch_cuda="12.1", bnb="0.43.3", system="Windows", machine="AMD64")
    assert "windows-linux-only-bnb" not in _rules(matrix, ev)  # 0.43.0 brought the first Windows wheels
    first = (BnbFirst(platform="windows-x86_64", version="0.44.0", source="test", confidence="confirmed"),)
    assert "windows-linux-only-bnb" in _rules(dataclasses.replace(matrix, bnb_first=first), ev)


def _log_findings(matrix: Matrix, log: str) -> dict[str, tuple[str, str]]:
    return {f.rule: (f.cause, f.fix) for f in diagnose(Context(matrix=matrix, log=log))}


def test_the_first_4bit_release_is_the_matrixs(matrix: Matrix) -> None:
    """peft's missing Linear4bit: the release to install is bitsandbytes.toml's [[feature]] linear4bit."""
    log = "AttributeError: module 'bitsandbytes.nn' has no attribute 'Linear4bit'"
    cause, fix = _log_findings(matrix, log)["peft-needs-4bit-bnb"]
    assert matrix.bnb_feature_since("linear4bit") == "0.39.0"
    assert "came in 0.39.0" in cause and "bitsandbytes >= 0.39.0" in fix
    later = tuple(dataclasses.replace(f, since="0.40.0") for f in matrix.bnb_features)
    cause, fix = _log_findings(dataclasses.replace(matrix, bnb_features=later), log)["peft-needs-4bit-bnb"]
    assert "came in 0.40.0" in cause and "bitsandbytes >= 0.40.0" in fix
    cause, _ = _log_findings(dataclasses.replace(matrix, bnb_features=()), log)["peft-needs-4bit-bnb"]
    assert "has no bnb.nn.Linear4bit" in cause  # no row: no version is made up


def test_the_extension_owner_is_the_matrixs(matrix: Matrix, tmp_path: Path) -> None:
    """Which package ships a compiled extension is quant.toml's [[extension]]: an overlay row replaces it."""
    log = (
        "ImportError: /usr/local/lib/python3.10/dist-packages/exllama_kernels.cpython-310-x86_64-linux-gnu.so: "
        "undefined symbol: _ZN3c104cuda9SetDeviceEi"
    )
    assert matrix.extension_owner("exllama_kernels") == "auto-gptq"
    assert matrix.extension_owner("no_such_ext") is None
    assert "exllama_kernels (auto-gptq)" in _log_findings(matrix, log)["extension-torch-abi"][0]
    (tmp_path / "quant.toml").write_text(
        'schema-version = 1\n[[extension]]\nmodule = "exllama_kernels"\npackage = "gptqmodel"\n'
        'source = "test overlay"\nconfidence = "unconfirmed"\n',
        encoding="utf-8",
    )
    laid = load_matrix([tmp_path])
    assert laid.extension_owner("exllama_kernels") == "gptqmodel"
    assert len(laid.extensions) == len(matrix.extensions)  # replaced by its module, not added
    assert "exllama_kernels (gptqmodel)" in _log_findings(laid, log)["extension-torch-abi"][0]


def test_a_bad_extension_row_is_refused(tmp_path: Path) -> None:
    (tmp_path / "quant.toml").write_text(
        'schema-version = 1\n[[extension]]\nmodule = "x_ext"\nowner = "y"\nsource = "s"\nconfidence = "confirmed"\n',
        encoding="utf-8",
    )
    with pytest.raises(MatrixError, match="quant.toml"):
        load_matrix([tmp_path])


def test_the_pytorch_index_is_the_matrixs(matrix: Matrix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.toml's indexes.pytorch is where plans take variant builds from, where a NoPlan looks for one, and the
    CLI's default --pytorch-index: an overlay's index moves all three (before, the CLI kept its own copy)."""
    from envbuilder.cli._sources import settings_from_args
    from envbuilder.cli.app import build_parser

    monkeypatch.delenv("ENVBUILDER_PYTORCH_INDEX", raising=False)
    argv = ["--no-config", "lock", "--no-pip-config"]
    assert settings_from_args(build_parser().parse_args(argv)).pytorch_index == matrix.pytorch_index
    (tmp_path / "torch.toml").write_text('schema-version = 1\nindexes.pytorch = "https://mirror.example/whl/"\n')
    laid = settings_from_args(build_parser().parse_args(["--matrix-dir", str(tmp_path), *argv]))
    assert laid.pytorch_index == load_matrix([tmp_path]).pytorch_index == "https://mirror.example/whl"
    given = build_parser().parse_args([*argv, "--pytorch-index", "https://given.example/whl"])
    assert settings_from_args(given).pytorch_index == "https://given.example/whl"
    (tmp_path / "torch.toml").write_text('schema-version = 1\nindexes.pytorch = "mirror.example/whl"\n')
    with pytest.raises(MatrixError, match=r"torch.toml: not an index URL: 'mirror.example/whl' in 'indexes.pytorch'"):
        load_matrix([tmp_path])
    (tmp_path / "torch.toml").write_text('schema-version = 1\nindexes.source = " "\n')  # a fact carries its source
    with pytest.raises(MatrixError, match=r"torch.toml: empty in 'indexes.source'"):
        load_matrix([tmp_path])
    log = "libcusparse.so.12: undefined symbol: __nvJitLinkComplete_12_4, version libnvJitLink.so.12"
    assert f"({matrix.pytorch_index}/cuXYZ)" in _log_findings(matrix, log)["cuda-libs-mixed"][1]
    mirror = dataclasses.replace(matrix, pytorch_index="https://mirror.example/whl")
    assert "(https://mirror.example/whl/cuXYZ)" in _log_findings(mirror, log)["cuda-libs-mixed"][1]  # the doctor's fix
    target = build_target(mirror, gpus=parse_gpus("sm_120", mirror), pythons=("3.12",), torch="==2.7.1")
    plan = resolve(target, mirror)  # Blackwell needs torch 2.7.1's cu128 build: PyPI's is cu126
    assert isinstance(plan, Plan)
    torch = plan.package("torch")
    assert torch is not None and torch.index.startswith("https://mirror.example/whl/"), torch
