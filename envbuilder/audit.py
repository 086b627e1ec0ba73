"""Read the GPU targets inside native libraries: ELF sections, then the CUDA fat binaries they hold.

Pure Python (``struct``), no cuobjdump. The layout below was learned from public descriptions of the format
and checked against ``cuobjdump --list-elf/--list-ptx`` on objects compiled here (tests/fixtures/fatbin/).

A fat binary section (``.nv_fatbin``: loaded by the CUDA runtime; ``__nv_relfatbin``: relocatable device code
kept for later device linking) holds one or more *containers*, little-endian, each::

    u32 magic 0xBA55ED50   u16 version (1)   u16 header size (16)   u64 size of the entries that follow

and each entry, at the offset the previous one ended::

    +0  u16 kind (1 PTX, 2 ELF/cubin)   +2 u16 version   +4 u32 entry header size (64, 80, 96, 112)
    +8  u64 payload size (padded)       +16 u32 compressed size   +24 u16 minor, u16 major (code version)
    +28 u32 SM arch (75, 90, 120)       +40 u64 flags             payload at +header size

Flags: 0x2000 the payload is LZ4-compressed, 0x8000 zstd-compressed (CUDA 13's default); 0x100000 an
arch-specific target (``sm_90a``), 0x200000 a family target (``sm_120f``). The arch is read from the header,
so compressed payloads never need to be decompressed.

``audit_wheel`` is the one edge here: it reads a wheel (a zip file) given by path.
"""

from __future__ import annotations

import hashlib
import re
import struct
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from envbuilder.errors import EnvbuilderError

Kind = Literal["sass", "ptx"]
Codec = Literal["lz4", "zstd"]

FATBIN_MAGIC = 0xBA55ED50
FATBIN_SECTION = ".nv_fatbin"
RELFATBIN_SECTION = "__nv_relfatbin"
_MAGIC_BYTES = struct.pack("<I", FATBIN_MAGIC)
_CONTAINER = struct.Struct("<IHHQ")  # magic, version, header size, size of what follows
_ENTRY = struct.Struct("<HHIQI")  # kind, version, header size, payload size, compressed size
_ENTRY_MIN = 64
_KINDS: dict[int, Kind] = {1: "ptx", 2: "sass"}
_FLAG_LZ4 = 0x2000
_FLAG_ZSTD = 0x8000
_FLAG_ARCH_SPECIFIC = 0x100000
_FLAG_FAMILY = 0x200000
_ELF_MAGIC = b"\x7fELF"
_SHT_NOBITS = 8
# A native library inside a wheel: foo.so, foo.so.12, foo.cpython-312-x86_64-linux-gnu.so.
_NATIVE = re.compile(r"\.so(\.\d+)*$")
# libbitsandbytes_cuda130.so -> 13.0; libbitsandbytes_cuda118.so -> 11.8 (the last digit is the minor).
_CUDA_IN_NAME = re.compile(r"cuda(\d{1,2})(\d)(?!\d)")


class AuditError(EnvbuilderError):
    """A file is not the ELF library, fat binary or wheel it should be (truncated, corrupt, or not one)."""


@dataclass(frozen=True, slots=True)
class FatbinEntry:
    """One code object in a fat binary: SASS (a cubin) or PTX, for one compute capability."""

    kind: Kind
    arch: str  # "8.9"; "9.0a" for an arch-specific target, "12.0f" for a family target
    compressed: bool
    codec: Codec | None = None


@dataclass(frozen=True, slots=True)
class LibraryReport:
    """The GPU targets of one native library (sorted, without repeats)."""

    path: str
    sass: tuple[str, ...]
    ptx: tuple[str, ...]
    cuda: str | None = None  # the CUDA version its name says it was built for ("13.0"), if it says
    compressed: bool = False  # any payload compressed
    entries: int = 0  # code objects read


@dataclass(frozen=True, slots=True)
class WheelReport:
    """What a wheel holds: its identity and the targets of each native library in it."""

    name: str
    version: str
    filename: str
    sha256: str
    libraries: tuple[LibraryReport, ...]

    def library(self, suffix: str) -> LibraryReport | None:
        """The library whose path ends with ``suffix`` (``"libbitsandbytes_cuda130.so"``), if any."""
        return next((lib for lib in self.libraries if lib.path.endswith(suffix)), None)


# --------------------------------------------------------------------------- arch strings


def arch_key(arch: str) -> tuple[int, int, str]:
    """Sort key for "8.9", "10.0", "9.0a": numeric, then the suffix."""
    m = re.fullmatch(r"(\d+)\.(\d+)([a-z]?)", arch)
    if not m:
        return (999, 999, arch)
    return (int(m.group(1)), int(m.group(2)), m.group(3))


def _arch_name(sm: int, flags: int) -> str:
    suffix = "a" if flags & _FLAG_ARCH_SPECIFIC else "f" if flags & _FLAG_FAMILY else ""
    return f"{sm // 10}.{sm % 10}{suffix}"


def cuda_of_library(path: str) -> str | None:
    """The CUDA version a library's file name declares (``libbitsandbytes_cuda124.so`` -> "12.4")."""
    m = _CUDA_IN_NAME.search(Path(path).name)
    return f"{int(m.group(1))}.{m.group(2)}" if m else None


# --------------------------------------------------------------------------- fat binaries


def _fail(where: str, problem: str) -> AuditError:
    msg = f"{where}: {problem}"
    return AuditError(msg, hint="the file is truncated or not what its name says: download it again")


def _parse_entries(data: bytes, start: int, end: int, where: str) -> list[FatbinEntry]:
    """The entries of one container, whose entries span ``data[start:end]``."""
    out: list[FatbinEntry] = []
    pos = start
    while pos < end:
        if pos + _ENTRY_MIN > end:
            raise _fail(where, f"fat binary entry at byte {pos} is cut short ({end - pos} bytes left)")
        kind, _version, header_size, payload_size, _csize = _ENTRY.unpack_from(data, pos)
        if header_size < _ENTRY_MIN or pos + header_size + payload_size > end:
            raise _fail(where, f"fat binary entry at byte {pos} claims {header_size}+{payload_size} bytes")
        (sm,) = struct.unpack_from("<I", data, pos + 28)
        (flags,) = struct.unpack_from("<Q", data, pos + 40)
        # Kinds other than PTX and ELF are not code for a GPU arch; cuobjdump lists neither.
        if kind in _KINDS:
            codec: Codec | None = "zstd" if flags & _FLAG_ZSTD else "lz4" if flags & _FLAG_LZ4 else None
            out.append(FatbinEntry(_KINDS[kind], _arch_name(sm, flags), codec is not None, codec))
        pos += header_size + payload_size
    return out


def parse_fatbin(data: bytes, start: int = 0, end: int | None = None, *, where: str = "fatbin") -> list[FatbinEntry]:
    """Every entry of every container in ``data[start:end]`` (a fat binary section, or a .fatbin file).

    Containers follow each other, sometimes with zero padding between them; anything else is an error.
    """
    end = len(data) if end is None else end
    if end > len(data):
        raise _fail(where, f"fat binary section runs past the end of the file ({end} > {len(data)} bytes)")
    out: list[FatbinEntry] = []
    pos = start
    while pos < end:
        if pos + _CONTAINER.size > end:
            if not any(data[pos:end]):
                break  # trailing alignment padding
            raise _fail(where, f"fat binary container at byte {pos} is cut short")
        magic, _version, header_size, size = _CONTAINER.unpack_from(data, pos)
        if magic != FATBIN_MAGIC:
            nxt = data.find(_MAGIC_BYTES, pos, end)
            stop = end if nxt < 0 else nxt
            if any(data[pos:stop]):
                raise _fail(where, f"no fat binary magic 0x{FATBIN_MAGIC:08X} at byte {pos} (found 0x{magic:08X})")
            pos = stop  # zero padding between containers
            continue
        if header_size < _CONTAINER.size or pos + header_size + size > end:
            raise _fail(
                where,
                f"fat binary container at byte {pos} claims {header_size}+{size} bytes, past the section",
            )
        out += _parse_entries(data, pos + header_size, pos + header_size + size, where)
        pos += header_size + size
    return out


# --------------------------------------------------------------------------- ELF


@dataclass(frozen=True, slots=True)
class _ElfLayout:
    """Where an ELF file keeps its section table, and how to read it."""

    shdr: struct.Struct  # name, type, flags, addr, offset, size
    shoff: int
    shentsize: int
    shnum: int
    shstrndx: int


def _elf_layout(data: bytes, where: str) -> _ElfLayout:
    if data[:4] != _ELF_MAGIC:
        raise _fail(where, "not an ELF file (no \\x7fELF magic)")
    if len(data) < 64 or data[4] not in (1, 2) or data[5] not in (1, 2):
        raise _fail(where, "ELF header is truncated or has an unknown class/byte order")
    bo = "<" if data[5] == 1 else ">"
    if data[4] == 2:  # ELFCLASS64
        (shoff,) = struct.unpack_from(bo + "Q", data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(bo + "HHH", data, 0x3A)
        shdr, link_at = struct.Struct(bo + "IIQQQQ"), 40
    else:
        (shoff,) = struct.unpack_from(bo + "I", data, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(bo + "HHH", data, 0x2E)
        shdr, link_at = struct.Struct(bo + "IIIIII"), 24
    if shoff and (shentsize < shdr.size or shoff + shdr.size > len(data)):
        raise _fail(where, f"ELF section table at byte {shoff} lies outside the file ({len(data)} bytes)")
    if shoff and (shnum == 0 or shstrndx == 0xFFFF):
        # Extended numbering: the real count and string-table index live in section 0 (size, link).
        shnum = shnum or shdr.unpack_from(data, shoff)[5]
        if shstrndx == 0xFFFF:
            (shstrndx,) = struct.unpack_from(bo + "I", data, shoff + link_at)
    return _ElfLayout(shdr, shoff, shentsize, shnum, shstrndx)


def elf_sections(data: bytes, *, where: str = "library") -> dict[str, tuple[int, int]]:
    """The named sections of an ELF file, as ``name -> (offset, size)`` into ``data``."""
    elf = _elf_layout(data, where)
    if elf.shoff == 0:
        return {}  # no section table at all: nothing to read
    if elf.shoff + elf.shnum * elf.shentsize > len(data) or elf.shstrndx >= elf.shnum:
        raise _fail(where, f"ELF section table ({elf.shnum} entries at byte {elf.shoff}) is truncated")
    headers = [elf.shdr.unpack_from(data, elf.shoff + i * elf.shentsize) for i in range(elf.shnum)]
    str_off, str_size = headers[elf.shstrndx][4:6]
    if str_off + str_size > len(data):
        raise _fail(where, "ELF section-name table lies outside the file")
    out: dict[str, tuple[int, int]] = {}
    for name_off, sh_type, _flags, _addr, offset, size in headers:
        if name_off >= str_size:
            continue
        nul = data.find(b"\0", str_off + name_off, str_off + str_size)
        name = data[str_off + name_off : nul if nul >= 0 else str_off + str_size].decode("latin-1")
        out[name] = (offset, 0 if sh_type == _SHT_NOBITS else size)
    return out


def _sorted(archs: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(archs), key=arch_key))


def read_library(data: bytes, path: str, *, all_sections: bool = False) -> LibraryReport:
    """The SASS and PTX targets of one ELF library.

    As cuobjdump does by default, the loadable ``.nv_fatbin`` is read, and ``__nv_relfatbin`` only when
    there is no ``.nv_fatbin`` (``all_sections=True`` reads both): relocatable device code serves later
    device links, not the GPU that loads this library.
    """
    try:
        sections = elf_sections(data, where=path)
        names = [s for s in (FATBIN_SECTION, RELFATBIN_SECTION) if s in sections]
        if not all_sections:
            names = names[:1]
        entries: list[FatbinEntry] = []
        for name in names:
            offset, size = sections[name]
            entries += parse_fatbin(data, offset, offset + size, where=f"{path} {name}")
    except struct.error as exc:  # a bounds check missed something: still one clear line
        raise _fail(path, f"cannot be read as ELF/fatbin ({exc})") from None
    return LibraryReport(
        path=path,
        sass=_sorted(e.arch for e in entries if e.kind == "sass"),
        ptx=_sorted(e.arch for e in entries if e.kind == "ptx"),
        cuda=cuda_of_library(path),
        compressed=any(e.compressed for e in entries),
        entries=len(entries),
    )


# --------------------------------------------------------------------------- wheels (the edge)


def is_native(member: str) -> bool:
    """Whether a wheel member's name says it is a native shared library."""
    return bool(_NATIVE.search(member))


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def audit_wheel(path: Path, *, sha256: str | None = None) -> WheelReport:
    """Read every native library of the wheel at ``path``. ``sha256``, when known, is not recomputed."""
    try:
        name, version, _build, _tags = parse_wheel_filename(path.name)
    except InvalidWheelFilename:
        msg = f"{path.name}: not a wheel file name"
        raise AuditError(msg, hint="pass a .whl file, as PyPI names it") from None
    if sha256 is None:
        sha256 = file_sha256(path)
    libraries = []
    try:
        with zipfile.ZipFile(path) as zf:
            for member in sorted(zf.namelist()):
                if not is_native(member):
                    continue
                data = zf.read(member)
                if data[:4] == _ELF_MAGIC:
                    libraries.append(read_library(data, member))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError) as exc:
        msg = f"{path}: cannot read the wheel ({exc})"
        raise AuditError(msg, hint="delete it from the cache and download it again") from None
    return WheelReport(str(name), str(version), path.name, sha256, tuple(libraries))
