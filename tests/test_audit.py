"""The fat binary reader, against libraries compiled here with nvcc for chosen targets."""

from __future__ import annotations

import shutil
import struct
import zipfile
from pathlib import Path

import pytest

from envbuilder.edge import _run
from envbuilder.jobs import matrix_audit as ma
from envbuilder.model.audit import (
    AuditError,
    FatbinEntry,
    arch_key,
    audit_wheel,
    cuda_of_library,
    elf_sections,
    parse_fatbin,
    read_library,
    read_library_from,
)
from envbuilder.model.errors import TargetError

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


def test_the_committed_libraries_are_the_ones_the_readme_lists() -> None:
    """The fixtures are binaries in git: each is the file README.md's sha256 list names, and that list names
    every one, so a library replaced without make.sh and the README in step fails here."""
    import hashlib
    import re

    text = (FIXTURES / "README.md").read_text(encoding="utf-8")
    listed = dict((name, digest) for digest, name in re.findall(r"^([0-9a-f]{64})  (\S+\.so)$", text, re.MULTILINE))
    found = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(FIXTURES.glob("*.so"))}
    assert found == listed and sorted(found) == sorted(row[0] for row in COMPILED)


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


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed here; the committed fixtures cover the reader")
def test_make_sh_rebuilds_libraries_the_reader_reads_as_committed(tmp_path: Path) -> None:
    """The committed binaries come from kernel.cu and make.sh: rebuilt with them, every library holds the
    targets the table above says (byte equality is not asked: another nvcc release links other bytes)."""
    _run.run(["sh", str(FIXTURES / "make.sh"), str(tmp_path)], timeout=600)
    for name, sass, ptx, compressed in COMPILED:
        report = read_library((tmp_path / name).read_bytes(), name)
        assert (name, report.sass, report.ptx, report.compressed) == (name, sass, ptx, compressed)


# --------------------------------------------------------------------------- matrix audit (pure parts)


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


# --------------------------------------------------------------------------- Windows DLLs (PE)


def _pe(sections: dict[bytes, bytes]) -> bytes:
    """A minimal PE file around real fat binary bytes: DOS header, "PE\\0\\0", COFF header, section table."""
    count = len(sections)
    header = 0x40
    table = header + 24  # no optional header
    body = table + 40 * count
    out = bytearray(b"MZ" + b"\0" * 58 + struct.pack("<I", header))
    out += b"PE\0\0" + struct.pack("<HHIIIHH", 0x8664, count, 0, 0, 0, 0, 0x2022)
    offset, blobs = body, b""
    for name, blob in sections.items():
        out += struct.pack("<8sIIIIIIHHI", name, len(blob), 0, len(blob), offset, 0, 0, 0, 0, 0)
        offset += len(blob)
        blobs += blob
    return bytes(out) + blobs


def test_windows_dll_sections_are_read_like_elf_ones() -> None:
    # nvcc's ".nv_fatbin" and "__nv_relfatbin" are cut to 8 bytes in a PE section table (as in the
    # bitsandbytes win_amd64 DLLs); the loaded image is .nv_fatb, the relocatable code __nv_rel.
    multi = _lib("multi.so")
    off, size = elf_sections(multi)[".nv_fatbin"]
    rdc = _lib("rdc.so")
    roff, rsize = elf_sections(rdc)["__nv_relfatbin"]
    dll = _pe({b".nv_fatb": multi[off : off + size], b"__nv_rel": rdc[roff : roff + rsize]})
    report = read_library_from(lambda o, n: dll[o : o + n], len(dll), "b/libbitsandbytes_cuda130.dll")
    assert (report.sass, report.ptx, report.section, report.cuda) == (
        ("7.5", "8.6", "9.0"),
        ("9.0",),
        ".nv_fatbin",
        "13.0",
    )
    both = read_library(dll, "x.dll", all_sections=True)
    assert both.sass == ("7.5", "8.0", "8.6", "9.0")


def test_truncated_dll_is_one_clear_error() -> None:
    with pytest.raises(AuditError, match="no PE signature"):
        read_library(b"MZ" + b"\0" * 100, "x.dll")
