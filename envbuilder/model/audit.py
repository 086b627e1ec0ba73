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
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from envbuilder.model.errors import EnvbuilderError

__all__ = [
    "FATBIN_MAGIC",
    "FATBIN_SECTION",
    "RELFATBIN_SECTION",
    "AuditError",
    "Codec",
    "FatbinEntry",
    "Kind",
    "LibraryReport",
    "Read",
    "WheelReport",
    "arch_key",
    "audit_wheel",
    "cuda_of_library",
    "elf_section_table",
    "elf_sections",
    "file_sha256",
    "is_native",
    "parse_fatbin",
    "pe_section_table",
    "read_library",
    "read_library_from",
]

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
# A native library inside a wheel: foo.so, foo.so.12, foo.cpython-312-x86_64-linux-gnu.so, foo.dll.
_NATIVE = re.compile(r"(\.so(\.\d+)*|\.dll)$")
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
    section: str | None = None  # the fat-binary section read (".nv_fatbin": the image the driver loads)


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


# Reads ``size`` bytes at ``offset`` of a file (or returns fewer at its end): a bytes slice for a file in memory,
# an HTTP range read for a library stored uncompressed inside a remote wheel (envbuilder.remote_wheel).
Read = Callable[[int, int], bytes]
_ELF_HEADER = 64


def _elf_layout(read: Read, size: int, where: str) -> _ElfLayout:
    data = read(0, _ELF_HEADER)
    if data[:4] != _ELF_MAGIC:
        raise _fail(where, "not an ELF file (no \\x7fELF magic)")
    if len(data) < _ELF_HEADER or data[4] not in (1, 2) or data[5] not in (1, 2):
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
    if shoff and (shentsize < shdr.size or shoff + shdr.size > size):
        raise _fail(where, f"ELF section table at byte {shoff} lies outside the file ({size} bytes)")
    if shoff and (shnum == 0 or shstrndx == 0xFFFF):
        # Extended numbering: the real count and string-table index live in section 0 (size, link).
        first = read(shoff, shentsize)
        shnum = shnum or shdr.unpack_from(first)[5]
        if shstrndx == 0xFFFF:
            (shstrndx,) = struct.unpack_from(bo + "I", first, link_at)
    return _ElfLayout(shdr, shoff, shentsize, shnum, shstrndx)


def elf_sections(data: bytes, *, where: str = "library") -> dict[str, tuple[int, int]]:
    """The named sections of an ELF file, as ``name -> (offset, size)`` into ``data``."""
    return elf_section_table(lambda offset, size: data[offset : offset + size], len(data), where=where)


def elf_section_table(read: Read, size: int, *, where: str = "library") -> dict[str, tuple[int, int]]:
    """The named sections of an ELF file of ``size`` bytes that ``read`` serves: three reads (header, section
    table, section names), so a library inside a remote wheel needs only those bytes."""
    elf = _elf_layout(read, size, where)
    if elf.shoff == 0:
        return {}  # no section table at all: nothing to read
    if elf.shoff + elf.shnum * elf.shentsize > size or elf.shstrndx >= elf.shnum:
        raise _fail(where, f"ELF section table ({elf.shnum} entries at byte {elf.shoff}) is truncated")
    table = read(elf.shoff, elf.shnum * elf.shentsize)
    headers = [elf.shdr.unpack_from(table, i * elf.shentsize) for i in range(elf.shnum)]
    str_off, str_size = headers[elf.shstrndx][4:6]
    if str_off + str_size > size:
        raise _fail(where, "ELF section-name table lies outside the file")
    names = read(str_off, str_size)
    out: dict[str, tuple[int, int]] = {}
    for name_off, sh_type, _flags, _addr, offset, sec_size in headers:
        if name_off >= str_size:
            continue
        nul = names.find(b"\0", name_off)
        name = names[name_off : nul if nul >= 0 else str_size].decode("latin-1")
        out[name] = (offset, 0 if sh_type == _SHT_NOBITS else sec_size)
    return out


# --------------------------------------------------------------------------- PE (Windows DLLs)

_MZ = b"MZ"
# PE section names hold 8 bytes: nvcc's ".nv_fatbin" and "__nv_relfatbin" appear cut to these.
_PE_SECTIONS = {".nv_fatb": FATBIN_SECTION, "__nv_rel": RELFATBIN_SECTION}


def pe_section_table(read: Read, size: int, *, where: str = "library") -> dict[str, tuple[int, int]]:
    """The fat-binary sections of a PE file (a Windows DLL), named as in ELF, as ``name -> (offset, size)``.

    DOS header -> ``e_lfanew`` -> "PE\\0\\0", the COFF header (section count, optional-header size), then
    40-byte section headers: name, virtual size, virtual address, raw size, raw offset.
    """
    dos = read(0, 64)
    if len(dos) < 64 or dos[:2] != _MZ:
        raise _fail(where, "not a PE file (no MZ header)")
    (pe,) = struct.unpack_from("<I", dos, 0x3C)
    head = read(pe, 24)
    if len(head) < 24 or head[:4] != b"PE\0\0":
        raise _fail(where, f"no PE signature at byte {pe}")
    count, opt_size = struct.unpack_from("<H", head, 6)[0], struct.unpack_from("<H", head, 20)[0]
    table = read(pe + 24 + opt_size, 40 * count)
    if len(table) < 40 * count:
        raise _fail(where, "PE section table is truncated")
    out: dict[str, tuple[int, int]] = {}
    for i in range(count):
        raw_name, vsize, _vaddr, raw_size, raw_offset = struct.unpack_from("<8sIIII", table, 40 * i)
        name = raw_name.rstrip(b"\0").decode("latin-1")
        if name in _PE_SECTIONS:
            length = min(vsize, raw_size) if vsize else raw_size  # raw data is padded to the file alignment
            out[_PE_SECTIONS[name]] = (raw_offset, length)
    return out


def _sorted(archs: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(archs), key=arch_key))


def read_library(data: bytes, path: str, *, all_sections: bool = False) -> LibraryReport:
    """The SASS and PTX targets of one ELF library held in memory (see ``read_library_from``)."""
    return read_library_from(
        lambda offset, size: data[offset : offset + size], len(data), path, all_sections=all_sections
    )


def read_library_from(read: Read, size: int, path: str, *, all_sections: bool = False) -> LibraryReport:
    """The SASS and PTX targets of one ELF library (or Windows DLL) of ``size`` bytes, read through ``read``.

    Only the image the driver loads counts: as cuobjdump does by default, the loadable ``.nv_fatbin`` is read,
    and ``__nv_relfatbin`` only when there is no ``.nv_fatbin`` (``all_sections=True`` reads both).
    Relocatable device code serves later device links, never the GPU that loads this library: a library
    built with separable compilation (bitsandbytes since 0.43) keeps its PTX there, and that PTX is never
    JIT-compiled for a newer GPU.
    """
    try:
        magic = read(0, 4)
        table = pe_section_table if magic[:2] == _MZ else elf_section_table
        sections = table(read, size, where=path)
        names = [s for s in (FATBIN_SECTION, RELFATBIN_SECTION) if s in sections]
        if not all_sections:
            names = names[:1]
        entries: list[FatbinEntry] = []
        for name in names:
            offset, length = sections[name]
            if offset + length > size:
                raise _fail(f"{path} {name}", f"fat binary section runs past the end of the file ({size} bytes)")
            blob = read(offset, length)
            entries += parse_fatbin(blob, 0, len(blob), where=f"{path} {name}")
    except struct.error as exc:  # a bounds check missed something: still one clear line
        raise _fail(path, f"cannot be read as ELF/fatbin ({exc})") from None
    return LibraryReport(
        path=path,
        sass=_sorted(e.arch for e in entries if e.kind == "sass"),
        ptx=_sorted(e.arch for e in entries if e.kind == "ptx"),
        cuda=cuda_of_library(path),
        compressed=any(e.compressed for e in entries),
        entries=len(entries),
        section=names[0] if names else None,
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
                if data[:4] == _ELF_MAGIC or data[:2] == _MZ:
                    libraries.append(read_library(data, member))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError) as exc:
        msg = f"{path}: cannot read the wheel ({exc})"
        raise AuditError(msg, hint="delete it from the cache and download it again") from None
    return WheelReport(str(name), str(version), path.name, sha256, tuple(libraries))
