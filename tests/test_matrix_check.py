"""`matrix check --upstream`, `refresh` and `audit` on recorded real files (tests/fixtures/upstream), offline.

The recording holds PyPI's project pages as served and what the reader took out of each file (METADATA,
torch/version.py, the SASS/PTX of each CUDA library's loaded image), written by
`envbuilder matrix refresh --record` on 2026-12-01 (its README lists every URL). Mutated overlays show
that each kind of wrong fact is caught with its file and key, and that --update writes it back.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from envbuilder.cli.app import main as cli_main
from envbuilder.edge.pypi import IndexFile
from envbuilder.edge.reader import WheelFacts
from envbuilder.edge.upstream import FileObs, ReleaseObs
from envbuilder.jobs import matrix_audit as ma
from envbuilder.jobs.matrix_check import Report, check_bnb_sass, kept_requirements, python_range, same_spec
from envbuilder.model.audit import LibraryReport

RECORDED = Path(__file__).parent / "fixtures" / "upstream"
MATRICES = Path(__file__).parent.parent / "matrices"


def _check(tmp_path: Path, capsys: pytest.CaptureFixture[str], *first: str) -> tuple[int, dict[str, object]]:
    env_cache = tmp_path / "cache"
    argv = [*first, "matrix", "check", "--upstream", "--recorded", str(RECORDED), "--json", "--no-pip-config"]
    code = cli_main(argv)
    doc = json.loads(capsys.readouterr().out)
    # Nothing fetched is kept: the only entry may be the compiled matrix every command keeps (edge/matrix_cache.py).
    assert {p.name for p in env_cache.iterdir()} <= {"matrix"} if env_cache.exists() else True
    return code, doc


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The recorded mode must never open a connection: any request fails the test."""
    import requests

    def refuse(*args: object, **kwargs: object) -> None:
        msg = "a recorded check reached the network"
        raise AssertionError(msg)

    monkeypatch.setattr(requests.Session, "request", refuse)
    monkeypatch.setenv("ENVBUILDER_CACHE", str(tmp_path / "cache"))


def test_the_shipped_matrix_agrees_with_the_recorded_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, doc = _check(tmp_path, capsys)
    assert (code, doc["ok"], doc["mismatches"]) == (0, True, [])
    assert doc["checked"] >= 100  # rows whose facts were read and agree
    assert doc["schema"] == "envbuilder.matrix-upstream/1"
    # What the files cannot tell is said, not hidden: PyTorch-index builds and older torch's SASS.
    assert any("PyTorch index" in line for line in doc["unchecked"])  # type: ignore[attr-defined]


def _overlay(tmp_path: Path, name: str, text: str) -> Path:
    over = tmp_path / "over"
    over.mkdir(exist_ok=True)
    (over / name).write_text("schema-version = 1\n" + text)
    return over


def _row(file: str, table: str, **match: str) -> str:
    """The TOML text of the one shipped row whose keys match, as its file writes it."""
    import tomlkit

    doc = tomlkit.parse((MATRICES / file).read_text())
    (row,) = [r for r in doc[table] if all(str(r.get(k)) == v or list(r.get(k) or []) == [v] for k, v in match.items())]
    return tomlkit.dumps({table: [row]})


WRONG = [
    # The audit's wrong rows, put back: each is caught, with its file and key.
    (
        "torch.toml",
        lambda: _row("torch.toml", "release", version="2.15.0").replace(
            'linux-x86_64 = "cu132"', 'linux-x86_64 = "cu130"'
        ),
        "torch.toml: release[0].pypi.linux-x86_64",
        ("cu130", "cu132"),
    ),
    (
        "torch.toml",
        lambda: _row("torch.toml", "build", torch=">=2.12,<2.15", variant="cu130", platforms="linux-x86_64").replace(
            'sass = ["7.5"', 'ptx = "12.0"\nsass = ["7.5"'
        ),
        "torch.toml: build[0].ptx",
        ("12.0", None),
    ),
    (
        "bitsandbytes.toml",
        lambda: _row("bitsandbytes.toml", "sass", bnb=">=0.48.0,<0.51,!=0.50.2", cuda=">=13.0,<14").replace(
            'sass = ["7.5"', 'ptx = "12.0"\nsass = ["7.5"'
        ),
        "bitsandbytes.toml: sass[0].ptx",
        ("12.0", None),
    ),
    (
        "companions.toml",
        lambda: _row("companions.toml", "package", name="transformers", version="5.20.2").replace(
            ', "torch>=2.6; extra == \\"torch\\""', ""
        ),
        "companions.toml: package[0].requires-dist",
        (
            ['accelerate>=1.1.0; extra == "torch"', "numpy>=1.17"],
            ['accelerate>=1.1.0; extra == "torch"', "numpy>=1.17", 'torch>=2.6; extra == "torch"'],
        ),
    ),
    (
        "quant.toml",
        lambda: _row("quant.toml", "library", name="gptqmodel", version="7.3.4").replace(
            '"transformers>=5.4.0"', '"transformers>=5.14.0"'
        ),
        "quant.toml: library[0].requires-dist",
        None,
    ),
]


@pytest.mark.parametrize(("file", "text", "key", "values"), WRONG, ids=[w[2] for w in WRONG])
def test_each_wrong_fact_is_reported_with_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], file: str, text: object, key: str, values: object
) -> None:
    over = _overlay(tmp_path, file, text())  # type: ignore[operator]
    code, doc = _check(tmp_path, capsys, "--matrix-dir", str(over))
    assert code == 1
    found = [m for m in doc["mismatches"] if m["key"] == key]  # type: ignore[union-attr]
    assert len(found) == 1, doc["mismatches"]
    assert found[0]["file"] == file
    if values is not None:
        assert (found[0]["claimed"], found[0]["observed"]) == values
    assert " sha256 " in found[0]["why"]  # the evidence: which file said so


def test_update_writes_the_files_facts_back_keeping_comments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "# my overlay: this comment stays\n" + WRONG[0][1]()  # type: ignore[operator]
    over = _overlay(tmp_path, "torch.toml", text)
    code = cli_main(
        ["--matrix-dir", str(over), "matrix", "refresh", "--recorded", str(RECORDED), "--update", "--no-pip-config"]
    )
    out = capsys.readouterr().out
    assert code == 0 and f"updated {over / 'torch.toml'}" in out
    written = (over / "torch.toml").read_text()
    assert "# my overlay: this comment stays" in written and 'linux-x86_64 = "cu132"' in written
    assert 'verified = "wheel torch-2.15.0-cp312-cp312-manylinux_2_28_x86_64.whl sha256 6d8c86f4' in written
    code, doc = _check(tmp_path, capsys, "--matrix-dir", str(over))
    assert (code, doc["mismatches"]) == (0, [])


def test_audit_of_one_release_lists_what_was_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["matrix", "audit", "torch==2.15.0", "--recorded", str(RECORDED), "--no-pip-config"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "torch/version.py: 2.15.0+cu132 (CUDA 13.2)" in out
    assert "libtorch_nvshmem.so: SASS 7.5 8.0 8.6 9.0 10.0 12.0; no PTX (.nv_fatbin)" in out
    assert "libtorch_nvshmem.so: SASS 8.0 9.0 10.0 11.0 12.0; no PTX (.nv_fatbin)" in out  # aarch64
    assert out.rstrip().endswith("rows checked)")


def test_a_recording_that_is_not_there_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["matrix", "check", "--upstream", "--recorded", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert code == 2 and "no recorded index pages there" in err and "Traceback" not in err


# --------------------------------------------------------------------------- pure pieces


def test_specs_compare_as_ranges() -> None:
    assert same_spec(">=3.10.0", ">=3.10") and same_spec("<3,>=2.4", ">=2.4,<3") and not same_spec(">=3.10", ">=3.11")
    assert same_spec("", None)


def test_python_range_from_cp_tags() -> None:
    files = [
        IndexFile(f"torch-2.15.0-{t}-manylinux_2_28_x86_64.whl", "u", None)
        for t in ("cp311-cp311", "cp315-cp315", "cp314-cp314t", "cp313-cp313")
    ]
    assert python_range(files) == ">=3.11,<3.16"  # the free-threaded cp314t does not widen it


def test_kept_requirements_hold_hard_ones_and_the_rows_extras() -> None:
    declared = [
        "numpy>=1.17",
        "requests",
        'torch>=2.6; extra == "torch"',
        'torch>=2.6; extra == "all"',
        'accelerate>=1.1.0; extra == "torch"',
        'deepspeed>=0.9; extra == "deepspeed"',
    ]
    assert kept_requirements(declared, ["torch"]) == [
        'accelerate>=1.1.0; extra == "torch"',
        "numpy>=1.17",
        'torch>=2.6; extra == "torch"',
    ]


BNB_TOML = """\
# bitsandbytes facts for the tests; this comment must survive --update.
schema-version = 1

[[sass]]
bnb = ">=9.0,<10"
cuda = "==12.8"
platform = "linux-x86_64"
sass = ["7.0", "8.0"]
ptx = "8.0"
source = "test"
confidence = "confirmed"

[[sass]]
bnb = "==9.9.0"
cuda = ">=13.0,<14"
platform = "linux-x86_64"
sass = ["7.5", "9.0"]
source = "test"
confidence = "unconfirmed"
"""


def _wheel(version: str, libs: dict[str, tuple[str, ...]]) -> ReleaseObs:
    name = f"bitsandbytes-{version}-py3-none-manylinux_2_24_x86_64.whl"
    file = IndexFile(name, f"https://x/{name}", version.replace(".", "") * 8)
    reports = {f"bitsandbytes/{k}": LibraryReport(f"bitsandbytes/{k}", v, ()) for k, v in libs.items()}
    facts = WheelFacts(name, file.sha256, None, native=tuple(reports), libraries=reports)  # type: ignore[arg-type]
    return ReleaseObs("bitsandbytes", version, (file,), (FileObs(file, "linux-x86_64", facts),))


def test_rows_whose_releases_differ_are_split_and_uncovered_libraries_proposed(tmp_path: Path) -> None:
    (tmp_path / "bitsandbytes.toml").write_text(BNB_TOML)
    rows = ma.matrix_rows([tmp_path], "bitsandbytes.toml", "sass")
    obs = {
        "9.8.0": _wheel(
            "9.8.0", {"libbitsandbytes_cuda128.so": ("7.0", "8.0"), "libbitsandbytes_cuda118.so": ("6.0",)}
        ),
        "9.9.0": _wheel(
            "9.9.0", {"libbitsandbytes_cuda128.so": ("7.0", "8.0", "9.0"), "libbitsandbytes_cuda130.so": ("7.5", "9.0")}
        ),
    }
    report = Report()
    check_bnb_sass(rows, ["9.8.0", "9.9.0"], obs, report, "2026-12-01")
    keys = [m.key for m in report.mismatches]
    assert keys == ["bitsandbytes.toml: sass[0].sass", "bitsandbytes.toml: sass[1].ptx", "bitsandbytes.toml: sass"] or (
        "bitsandbytes.toml: sass[0].sass" in keys and "bitsandbytes.toml: sass" in keys
    )
    proposed = [(row["bnb"], row["cuda"], row["sass"]) for _, row in report.proposals]
    assert ("==9.9.0", "==12.8", ["7.0", "8.0", "9.0"]) in proposed  # the split-off release
    assert ("==9.8.0", "==11.8", ["6.0"]) in proposed  # the library no row covered
    ma.apply_edits(report.edits)
    ma.append_rows(report.proposals)
    text = (tmp_path / "bitsandbytes.toml").read_text()
    assert text.startswith("# bitsandbytes facts for the tests; this comment must survive --update.")
    again = Report()
    check_bnb_sass(
        ma.matrix_rows([tmp_path], "bitsandbytes.toml", "sass"), ["9.8.0", "9.9.0"], obs, again, "2026-12-02"
    )
    assert again.mismatches == [] and again.proposals == [] and again.edits == []


def test_overlay_rows_replace_shipped_rows_with_the_same_key(tmp_path: Path) -> None:
    base, over = tmp_path / "base", tmp_path / "over"
    base.mkdir()
    over.mkdir()
    (base / "bitsandbytes.toml").write_text(BNB_TOML)
    (over / "bitsandbytes.toml").write_text(
        'schema-version = 1\n[[sass]]\nbnb = ">=9.0,<10"\ncuda = "==12.8"\nplatform = "linux-x86_64"\n'
        'sass = ["7.0", "8.0", "9.0"]\nsource = "mine"\nconfidence = "confirmed"\n'
    )
    rows = ma.matrix_rows([base, over], "bitsandbytes.toml", "sass")
    assert [(r.file.parent.name, r.index, r.data["sass"]) for r in rows] == [
        ("base", 1, ["7.5", "9.0"]),
        ("over", 0, ["7.0", "8.0", "9.0"]),
    ]


def test_the_recording_readme_names_every_file(tmp_path: Path) -> None:
    readme = (RECORDED / "README.md").read_text()
    for facts in (RECORDED / "files").glob("*/facts.json"):
        doc = json.loads(facts.read_text())
        assert doc["filename"] in readme and f"`{facts.parent.name[:16]}" in readme
    assert "https://files.pythonhosted.org/packages/" in readme
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_build_the_pytorch_index_does_not_list_is_reported(tmp_path: Path) -> None:
    from envbuilder.edge.upstream import Observed
    from envbuilder.jobs.matrix_check import check_torch_builds

    (tmp_path / "torch.toml").write_text(
        'schema-version = 1\n[[build]]\ntorch = ">=2.7,<2.8"\nvariant = "cu128"\ncuda = "12.8"\n'
        'platforms = ["linux-x86_64"]\nsass = ["7.5"]\nsource = "test"\nconfidence = "unconfirmed"\n'
    )
    rows = ma.matrix_rows([tmp_path], "torch.toml", "build")
    index = "https://download.pytorch.org/whl/cu128"
    obs = Observed(
        releases={}, variants={("cu128", "2.7.1", "linux-x86_64"): ReleaseObs("torch", "2.7.1", (), (), index)}
    )
    report = Report()
    check_torch_builds(rows, ["2.7.1"], obs, report, "2026-12-01")
    assert [(m.key, m.why) for m in report.mismatches] == [
        ("torch.toml: build[0].torch", f"{index}/torch/ lists no torch 2.7.1+cu128 for linux-x86_64")
    ]
