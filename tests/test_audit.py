"""The fat binary reader, against libraries compiled here with nvcc for chosen targets."""

from __future__ import annotations

import json
import shutil
import struct
import zipfile
from pathlib import Path

import pytest

from envbuilder import _run
from envbuilder.audit import (
    AuditError,
    FatbinEntry,
    LibraryReport,
    WheelReport,
    arch_key,
    audit_wheel,
    cuda_of_library,
    elf_sections,
    parse_fatbin,
    read_library,
)
from envbuilder.cli import main as cli_main
from envbuilder import matrix_audit as ma
from envbuilder.cli import matrix_audit as cli_ma
from envbuilder.errors import TargetError
from envbuilder.pypi import WheelFile

FIXTURES = Path(__file__).parent / "fixtures" / "fatbin"


def _lib(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# Each row: the fixture, the SASS and PTX targets it was compiled for (README.md), whether any payload is
# compressed. The whole table must match what nvcc was asked for, not merely contain it.
COMPILED = [
    ("sm75.so", ("7.5",), (), False),  # SASS only
    ("sm90_ptx.so", ("9.0",), ("9.0",), True),  # SASS + PTX (nvcc 13 compresses PTX by default)
    ("multi.so", ("7.5", "8.6", "9.0"), ("9.0",), True),  # several targets at once
    ("multi_zstd.so", ("7.5", "8.6", "9.0"), ("9.0",), True),  # -compress-all: zstd everywhere
    ("multi_lz4.so", ("7.5", "8.6", "9.0"), ("9.0",), True),  # --compress-mode=speed: LZ4
    ("blackwell.so", ("10.0", "12.0"), ("12.0",), True),  # 96/112-byte entry headers; two-digit majors
    ("archspec.so", ("9.0a", "12.0f"), ("12.0f",), True),  # arch-specific and family targets
    ("rdc.so", ("8.0",), (), False),  # only .nv_fatbin is loaded; its PTX sits in __nv_relfatbin
]


@pytest.mark.parametrize(("name", "sass", "ptx", "compressed"), COMPILED)
def test_reader_gives_exactly_the_compiled_targets(
    name: str, sass: tuple[str, ...], ptx: tuple[str, ...], compressed: bool
) -> None:
    report = read_library(_lib(name), name)
    assert (report.sass, report.ptx, report.compressed) == (sass, ptx, compressed)


def test_relocatable_section_is_read_on_request() -> None:
    report = read_library(_lib("rdc.so"), "rdc.so", all_sections=True)
    assert (report.sass, report.ptx) == (("8.0",), ("8.0",))


@pytest.mark.parametrize(
    ("name", "codecs"),
    [
        ("sm75.so", {("sass", None)}),
        ("multi_zstd.so", {("sass", "zstd"), ("ptx", "zstd")}),
        ("multi_lz4.so", {("sass", "lz4"), ("ptx", "lz4")}),
    ],
)
def test_compression_codec_is_reported(name: str, codecs: set[tuple[str, str | None]]) -> None:
    data = _lib(name)
    offset, size = elf_sections(data)[".nv_fatbin"]
    entries = parse_fatbin(data, offset, offset + size)
    assert {(e.kind, e.codec) for e in entries} == codecs
    assert all(e.compressed == (e.codec is not None) for e in entries)


def test_each_container_entry_is_kept() -> None:
    # nvcc writes two containers per library (kernel + device-link stub): cuobjdump lists sm_75 twice.
    data = _lib("sm75.so")
    offset, size = elf_sections(data)[".nv_fatbin"]
    assert parse_fatbin(data, offset, offset + size) == [FatbinEntry("sass", "7.5", False)] * 2


@pytest.mark.parametrize(
    ("path", "cuda"),
    [
        ("bitsandbytes/libbitsandbytes_cuda130.so", "13.0"),
        ("bitsandbytes/libbitsandbytes_cuda118.so", "11.8"),
        ("bitsandbytes/libbitsandbytes_cuda124.so", "12.4"),
        ("bitsandbytes/libbitsandbytes_cpu.so", None),
        ("torch/lib/libtorch_cuda.so", None),
    ],
)
def test_cuda_version_from_library_name(path: str, cuda: str | None) -> None:
    assert cuda_of_library(path) == cuda


def test_arch_order_is_numeric() -> None:
    assert sorted(["12.0", "9.0a", "10.0", "7.5", "9.0"], key=arch_key) == [
        "7.5",
        "9.0",
        "9.0a",
        "10.0",
        "12.0",
    ]


def _fatbin_section(name: str) -> tuple[bytes, int, int]:
    data = _lib(name)
    offset, size = elf_sections(data)[".nv_fatbin"]
    return data, offset, size


def _corrupt(data: bytes, at: int, value: bytes) -> bytes:
    return data[:at] + value + data[at + len(value) :]


def _bad_inputs() -> list[tuple[str, bytes, str]]:
    data, off, size = _fatbin_section("multi.so")
    return [
        ("empty", b"", "not an ELF file"),
        ("text", b"hello, world\n" * 10, "not an ELF file"),
        ("ELF header only", data[:40], "truncated"),
        ("cut before the section table", data[: len(data) // 2], "section table"),
        ("fatbin magic broken", _corrupt(data, off, b"\xde\xad\xbe\xef"), "no fat binary magic"),
        (
            "container claims too much",
            _corrupt(data, off + 8, struct.pack("<Q", 1 << 40)),
            "past the section",
        ),
        ("entry claims too much", _corrupt(data, off + 16 + 8, struct.pack("<Q", 1 << 40)), "claims"),
        ("entry header size zero", _corrupt(data, off + 16 + 4, struct.pack("<I", 0)), "claims"),
        ("section past end of file", data[: off + size - 8], "section table"),
    ]


@pytest.mark.parametrize(("what", "data", "problem"), _bad_inputs(), ids=[c[0] for c in _bad_inputs()])
def test_garbage_gives_a_clear_error(what: str, data: bytes, problem: str) -> None:
    with pytest.raises(AuditError, match=problem) as info:
        read_library(data, "x/libbad.so")
    assert str(info.value).startswith("x/libbad.so")
    assert info.value.hint


def test_raw_fatbin_cut_short() -> None:
    data, off, size = _fatbin_section("multi.so")
    blob = data[off : off + size]
    assert len(parse_fatbin(blob)) == 7
    with pytest.raises(AuditError, match="past the section"):
        parse_fatbin(blob[: size - 100])


def test_zero_padding_between_containers_is_skipped() -> None:
    data, off, size = _fatbin_section("sm75.so")
    blob = data[off : off + size]
    first = 16 + struct.unpack_from("<Q", blob, 8)[0]
    padded = blob[:first] + b"\0" * 8 + blob[first:] + b"\0" * 4
    assert [e.arch for e in parse_fatbin(padded)] == ["7.5", "7.5"]


def test_wheel_audit_lists_native_libraries(tmp_path: Path) -> None:
    wheel = tmp_path / "demo-1.0-py3-none-manylinux_2_24_x86_64.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("demo/libdemo_cuda130.so", _lib("multi.so"))
        zf.writestr("demo/libdemo_cuda126.so", _lib("sm75.so"))
        zf.writestr("demo/__init__.py", "")
        zf.writestr("demo/fake.so", b"not an ELF file")  # not ELF: not a library we can read
    report = audit_wheel(wheel)
    assert (report.name, report.version) == ("demo", "1.0")
    assert [(lib.path, lib.cuda, lib.sass) for lib in report.libraries] == [
        ("demo/libdemo_cuda126.so", "12.6", ("7.5",)),
        ("demo/libdemo_cuda130.so", "13.0", ("7.5", "8.6", "9.0")),
    ]
    assert report.library("libdemo_cuda130.so") is report.libraries[1]
    assert len(report.sha256) == 64


def test_broken_wheel_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(AuditError, match="cannot read the wheel"):
        audit_wheel(wheel)


# --------------------------------------------------------------------------- compiled on the spot

NVCC = shutil.which("nvcc")
KERNEL = FIXTURES / "kernel.cu"


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed here; the committed fixtures cover the reader")
@pytest.mark.parametrize(
    ("gencode", "sass", "ptx"),
    [
        (["-gencode", "arch=compute_80,code=sm_80"], ("8.0",), ()),
        (["-gencode", "arch=compute_89,code=[sm_89,compute_89]"], ("8.9",), ("8.9",)),
        (["-gencode", "arch=compute_75,code=compute_75"], (), ("7.5",)),  # PTX only
    ],
)
def test_reader_matches_nvcc_now(
    tmp_path: Path, gencode: list[str], sass: tuple[str, ...], ptx: tuple[str, ...]
) -> None:
    out = tmp_path / "k.so"
    _run.run(
        [NVCC or "nvcc", "-shared", "-Xcompiler", "-fPIC", "-cudart", "shared", *gencode, KERNEL, "-o", out],
        timeout=300,
    )
    report = read_library(out.read_bytes(), "k.so")
    assert (report.sass, report.ptx) == (sass, ptx)


# --------------------------------------------------------------------------- matrix audit (pure parts)


BNB_TOML = """\
# bitsandbytes facts for the audit tests; this comment must survive --update.
schema-version = 1

[[release]]
version = "9.9.0"
cuda-libs = ["12.8", "13.0"]   # trailing comment kept too
source = "test"
confidence = "confirmed"
verified = "2026-01-01 H100 smoke test"

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
URL = "https://example.invalid/bnb-9.9.0-py3-none-manylinux_2_24_x86_64.whl"


def _report(*libs: tuple[str, tuple[str, ...], tuple[str, ...]]) -> WheelReport:
    return WheelReport(
        "bitsandbytes",
        "9.9.0",
        "bnb-9.9.0-py3-none-manylinux_2_24_x86_64.whl",
        "ab" * 32,
        tuple(LibraryReport(p, s, x, cuda_of_library(p)) for p, s, x in libs),
    )


def _compare(tmp_path: Path, report: WheelReport) -> ma.Comparison:
    (tmp_path / "bitsandbytes.toml").write_text(BNB_TOML)
    sass = ma.matrix_rows([tmp_path], "bitsandbytes.toml", "sass")
    rel = ma.matrix_rows([tmp_path], "bitsandbytes.toml", "release")
    return ma.compare_bnb(report, URL, sass, rel, today="2026-11-24")


AGREES = (
    ("b/libbitsandbytes_cuda128.so", ("7.0", "8.0"), ("8.0",)),
    ("b/libbitsandbytes_cuda130.so", ("7.5", "9.0"), ()),
)


@pytest.mark.parametrize(
    ("libs", "mismatches"),
    [
        (AGREES, []),  # the wheel says what the matrix says
        (  # SASS and PTX differ from the row that covers the library
            (("b/libbitsandbytes_cuda128.so", ("7.0", "8.0", "9.0"), ()), AGREES[1]),
            [
                ("bitsandbytes.toml: sass[0].sass", ["7.0", "8.0"], ["7.0", "8.0", "9.0"]),
                ("bitsandbytes.toml: sass[0].ptx", "8.0", None),
            ],
        ),
        (  # a library no row covers, and the release's cuda-libs list is then wrong too
            (*AGREES, ("b/libbitsandbytes_cuda118.so", ("6.0",), ())),
            [
                ("bitsandbytes.toml: sass", None, ["6.0"]),
                ("bitsandbytes.toml: release[0].cuda-libs", ["12.8", "13.0"], ["11.8", "12.8", "13.0"]),
            ],
        ),
        (  # two libraries under one row that disagree
            (AGREES[0], AGREES[1], ("b/libbitsandbytes_cuda132.so", ("7.5",), ())),
            [
                (
                    "bitsandbytes.toml: sass[1].sass",
                    ["7.5", "9.0"],
                    [(("7.5",), None), (("7.5", "9.0"), None)],
                ),
                ("bitsandbytes.toml: release[0].cuda-libs", ["12.8", "13.0"], ["12.8", "13.0", "13.2"]),
            ],
        ),
    ],
    ids=["agrees", "differs", "uncovered", "row-disagrees"],
)
def test_compare_reports_each_mismatch_with_file_and_key(
    tmp_path: Path, libs: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...], mismatches: list[object]
) -> None:
    comparison = _compare(tmp_path, _report(*libs))
    assert [(m.key, m.claimed, m.observed) for m in comparison.mismatches] == mismatches


def test_update_writes_facts_and_evidence_keeping_comments(tmp_path: Path) -> None:
    libs = (("b/libbitsandbytes_cuda128.so", ("7.0", "8.0", "9.0"), ()), AGREES[1])
    comparison = _compare(tmp_path, _report(*libs))
    ma.apply_edits(comparison.edits)
    text = (tmp_path / "bitsandbytes.toml").read_text()
    assert "# bitsandbytes facts for the audit tests; this comment must survive --update." in text
    assert "# trailing comment kept too" in text
    rows = ma.matrix_rows([tmp_path], "bitsandbytes.toml", "sass")
    evidence = f"2026-11-24 audit of {URL} sha256:{'ab' * 32}"
    # The shared row is kept for the other releases; this release gets its own row, read from the wheel.
    assert rows[0].data["bnb"] == ">=9.0,<10,!=9.9.0"
    assert rows[0].data["sass"] == ["7.0", "8.0"]
    assert {k: rows[1].data[k] for k in ("bnb", "cuda", "sass", "confidence", "verified")} == {
        "bnb": "==9.9.0",
        "cuda": "==12.8",
        "sass": ["7.0", "8.0", "9.0"],
        "confidence": "confirmed",
        "verified": evidence,
    }
    assert "ptx" not in rows[1].data
    assert rows[2].data["verified"] == evidence  # the agreeing row records the evidence
    release = ma.matrix_rows([tmp_path], "bitsandbytes.toml", "release")[0].data
    assert release["verified"] == f"2026-01-01 H100 smoke test; {evidence}"  # GPU evidence kept
    # A second audit of the same wheel finds nothing left to fix.
    assert _compare_again(tmp_path, _report(*libs)).mismatches == ()


def _compare_again(tmp_path: Path, report: WheelReport) -> ma.Comparison:
    sass = ma.matrix_rows([tmp_path], "bitsandbytes.toml", "sass")
    rel = ma.matrix_rows([tmp_path], "bitsandbytes.toml", "release")
    return ma.compare_bnb(report, URL, sass, rel, today="2026-11-25")


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("bitsandbytes==0.50.2", ("bitsandbytes", "0.50.2")),
        ("BitsAndBytes", ("bitsandbytes", None)),
        (" torch == 2.11.0 ", ("torch", "2.11.0")),
    ],
)
def test_parse_spec(spec: str, parsed: tuple[str, str | None]) -> None:
    assert ma.parse_spec(spec) == parsed


@pytest.mark.parametrize("spec", ["", "bitsandbytes>=0.50", "bitsandbytes==", "torch[cuda]==2.0"])
def test_parse_spec_refuses(spec: str) -> None:
    with pytest.raises(TargetError, match="expected PACKAGE or PACKAGE==VERSION"):
        ma.parse_spec(spec)


def _wf(filename: str) -> WheelFile:
    return WheelFile(filename, "https://x/" + filename, "0" * 64, 1)


@pytest.mark.parametrize(
    ("files", "picked"),
    [
        (
            [
                "bitsandbytes-0.50.2-py3-none-win_amd64.whl",
                "bitsandbytes-0.50.2-py3-none-manylinux_2_24_aarch64.whl",
                "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl",
            ],
            "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl",
        ),
        (["x-1.0-py3-none-macosx_14_0_arm64.whl", "x-1.0.tar.gz"], None),
    ],
)
def test_pick_wheel(files: list[str], picked: str | None) -> None:
    chosen = ma.pick_wheel([_wf(f) for f in files])
    assert (chosen.filename if chosen else None) == picked


@pytest.mark.parametrize(
    ("requires", "variant"),
    [
        (['nvidia-cuda-runtime==13.0.96; platform_system == "Linux"', "filelock"], "cu130"),
        (['nvidia-cuda-runtime-cu12==12.8.90; platform_system == "Linux"'], "cu128"),
        (["filelock", "sympy>=1.13"], None),
    ],
)
def test_torch_variant_from_its_cuda_runtime_pin(requires: list[str], variant: str | None) -> None:
    assert ma._torch_variant(requires) == variant


def test_newer_releases() -> None:
    assert ma.newer_releases("0.49.2", ["0.49.1", "0.49.2", "0.50.0", "0.50.2"]) == ["0.50.0", "0.50.2"]
    assert ma.newer_releases(None, ["1.0"]) == ["1.0"]


# --------------------------------------------------------------------------- the real bitsandbytes wheel

BNB_0502_SASS = {
    "libbitsandbytes_cuda118.so": ("6.0", "7.0", "7.5", "8.0", "8.6", "8.9", "9.0"),
    "libbitsandbytes_cuda124.so": ("6.0", "7.0", "7.5", "8.0", "8.6", "8.9", "9.0"),
    "libbitsandbytes_cuda128.so": ("7.0", "7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0"),
    "libbitsandbytes_cuda130.so": ("7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0"),
}  # cuobjdump --list-elf on the H100 host (tests/fixtures/h100-cu130/README.md)


@pytest.mark.network
def test_real_bitsandbytes_wheel_matches_cuobjdump() -> None:
    audited = ma.fetch_and_audit("bitsandbytes", "0.50.2")  # 43 MB, cached after the first run
    report = audited.report
    assert report.filename == "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl"
    for name, sass in BNB_0502_SASS.items():
        lib = report.library(name)
        assert lib is not None, name
        assert (lib.sass, lib.ptx) == (sass, ())
    cudas = [lib.cuda for lib in report.libraries if lib.cuda]
    assert cudas == ["11.8", "12.1", "12.4", "12.6", "12.8", "13.0", "13.2"]


@pytest.mark.network
def test_audit_command_updates_a_copy_of_the_matrix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    matrices = Path(__file__).parent.parent / "matrices"
    copy = tmp_path / "matrices"
    shutil.copytree(matrices, copy)
    first = cli_ma.audit_package("bitsandbytes==0.50.2", [copy], update=True, json=True)
    doc = json.loads(capsys.readouterr().out)
    assert (first, doc["schema"], doc["updated"]) == (
        0,
        "envbuilder.matrix-audit/1",
        [str(copy / "bitsandbytes.toml")],
    )
    again = cli_ma.audit_package("bitsandbytes==0.50.2", [copy], update=False, json=False)
    out = capsys.readouterr().out
    assert again == 0 and "MISMATCH" not in out and "matrix agrees" in out


@pytest.mark.network
def test_refresh_proposes_unconfirmed_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bitsandbytes.toml").write_text(
        'schema-version = 1\n[[release]]\nversion = "0.50.1"\nloader = "nearest-same-major"\ncpu = "full"\n'
    )
    assert cli_ma.refresh([tmp_path], json=True) == 0
    doc = json.loads(capsys.readouterr().out)
    bnb = doc["packages"]["bitsandbytes"]
    assert bnb["newer"] == ["0.50.2"]
    release = next(r for r in bnb["proposed"] if r["table"] == "release")
    assert release["cuda-libs"] == ["11.8", "12.1", "12.4", "12.6", "12.8", "13.0", "13.2"]
    assert (release["loader"], release["confidence"], release["torch"]) == (
        "nearest-same-major",
        "unconfirmed",
        "<3,>=2.4",
    )
    assert all(r["confidence"] == "unconfirmed" for r in bnb["proposed"])
    assert not (tmp_path / "bitsandbytes.toml").read_text().count("0.50.2")  # nothing written without --update


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


@pytest.mark.network
def test_cli_audit_through_main(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["matrix", "audit", "bitsandbytes==0.50.2", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "envbuilder.matrix-audit/1"
    assert code == (0 if doc["ok"] else 1)
    assert doc["wheels"][0]["sha256"] == "55348a9a4a21bfd99cf8c7b32fe67b4030ae5c2a05738e03c1747f65fa6ec283"
