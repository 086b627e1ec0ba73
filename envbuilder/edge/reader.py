"""Facts read from release files on an index, without downloading whole wheels (the edge under refresh/audit).

For one file the reader gets, as it needs them:

- **core metadata** (Requires-Python, Requires-Dist with every extra): the PEP 658 ``<url>.metadata`` file
  where the index serves it (its hash checked), else HTTP range reads of the wheel's zip central directory
  (the last bytes of the file) and of the one ``*.dist-info/METADATA`` member; for an sdist (gptqmodel ships
  only those), its ``PKG-INFO``, streamed out of the tarball (sdists are small; a large one is refused);
- **a member's text**, such as torch's ``torch/version.py`` (the build's CUDA variant), by one range read;
- **the GPU code of native libraries**: the SASS and PTX of the image the driver loads (``.nv_fatbin``),
  read by ``envbuilder.model.audit``. A stored member is read sparsely (ELF header, section table, names, then that
  section); a deflated one is fetched as that member's bytes only and inflated as they arrive.

Every member is checked against its CRC-32 from the central directory. What was read is cached under the
cache root, keyed by the file's sha256 as the index lists it (``upstream/<sha256>/``: ``facts.json`` plus
the metadata and member texts verbatim), so a second refresh reads nothing but the index pages. The cache
holds file names and hashes, never an index URL (which may carry credentials).
"""

from __future__ import annotations

import io
import json
import mmap
import re
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envbuilder.edge._fs import read_json_object, write_text_atomic
from envbuilder.edge.pypi import Http, IndexFile
from envbuilder.model.audit import AuditError, LibraryReport, cuda_of_library, read_library, read_library_from
from envbuilder.model.errors import SourceError

__all__ = [
    "CACHE_SCHEMA",
    "IN_MEMORY",
    "LIBRARY_LIMIT",
    "SDIST_LIMIT",
    "TAIL",
    "TORCH_LIBRARIES",
    "FactsCache",
    "Reader",
    "RemoteZip",
    "WheelFacts",
    "ZipEntry",
    "find_central_directory",
    "native_members",
    "parse_central_directory",
    "parse_version_py",
    "sdist_pkg_info",
    "torch_variant",
]

CACHE_SCHEMA = 1
TAIL = 64 << 10  # the first read of a wheel: its end, where the central directory lives
LIBRARY_LIMIT = 96 << 20  # the largest library (compressed) the reader fetches; torch's libtorch_cuda is ~360 MB
IN_MEMORY = 128 << 20  # a larger inflated library goes to a temporary file, mapped, instead of memory
SDIST_LIMIT = 32 << 20
_EOCD = b"PK\x05\x06"
_ZIP64_LOCATOR = b"PK\x06\x07"
_ZIP64_EOCD = b"PK\x06\x06"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"
_CENTRAL_ENTRY = struct.Struct("<IHHHHHHIIIHHHHHII")
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
STORED, DEFLATED = 0, 8


# --------------------------------------------------------------------------- zip (pure)


@dataclass(frozen=True, slots=True)
class ZipEntry:
    """A member of a zip file, as its central directory describes it."""

    name: str
    method: int
    compressed_size: int
    size: int
    header_offset: int
    crc: int
    extra_length: int = 0


def find_central_directory(tail: bytes, total: int) -> tuple[int, int]:
    """(offset, size) of the central directory, from the last bytes of a zip file of ``total`` bytes.

    The end-of-central-directory record is the last ``PK\\x05\\x06`` in the tail; a zip64 file (over 4 GiB
    or 65535 entries) puts the real values in a zip64 record named by the locator just before it.
    """
    at = tail.rfind(_EOCD)
    if at < 0 or at + 22 > len(tail):
        msg = "no zip end-of-central-directory record in the file's last bytes"
        raise AuditError(msg, hint="the file is not a zip (wheel) file, or it is truncated")
    _sig, _disk, _cd_disk, _n_here, _n, cd_size, cd_offset, _comment = struct.unpack_from("<IHHHHIIH", tail, at)
    locator = at - 20
    if locator >= 0 and tail[locator : locator + 4] == _ZIP64_LOCATOR:
        (record,) = struct.unpack_from("<Q", tail, locator + 8)
        start = len(tail) - (total - record)  # where the zip64 record lies within the tail
        if start >= 0 and tail[start : start + 4] == _ZIP64_EOCD:
            cd_size, cd_offset = struct.unpack_from("<QQ", tail, start + 40)
    if cd_offset + cd_size > total:
        msg = f"the central directory ({cd_size} bytes at {cd_offset}) lies past the end of the file ({total})"
        raise AuditError(msg, hint="the file is truncated, or not the file the index lists")
    return cd_offset, cd_size


def _zip64_values(extra: bytes, want: Sequence[bool]) -> list[int]:
    """The zip64 extra field (0x0001) holds, in order, the sizes and offset whose 32-bit fields are 0xFFFFFFFF."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        if tag == 1:
            values = list(struct.unpack_from(f"<{length // 8}Q", extra, pos + 4))
            return [values.pop(0) if need and values else -1 for need in want]
        pos += 4 + length
    return [-1 for _ in want]


def parse_central_directory(data: bytes) -> tuple[ZipEntry, ...]:
    """Every entry of a zip central directory."""
    out: list[ZipEntry] = []
    pos = 0
    while pos + _CENTRAL_ENTRY.size <= len(data) and data[pos : pos + 4] == _CENTRAL:
        fields = _CENTRAL_ENTRY.unpack_from(data, pos)
        method, crc, csize, size = fields[4], fields[7], fields[8], fields[9]
        name_len, extra_len, comment_len, offset = fields[10], fields[11], fields[12], fields[16]
        name = data[pos + 46 : pos + 46 + name_len].decode("utf-8", errors="replace")
        extra = data[pos + 46 + name_len : pos + 46 + name_len + extra_len]
        big = [size == 0xFFFFFFFF, csize == 0xFFFFFFFF, offset == 0xFFFFFFFF]
        if any(big):
            z_size, z_csize, z_offset = _zip64_values(extra, big)
            size, csize, offset = (
                z if z >= 0 else v for z, v in ((z_size, size), (z_csize, csize), (z_offset, offset))
            )
        out.append(ZipEntry(name, method, csize, size, offset, crc, extra_len))
        pos += 46 + name_len + extra_len + comment_len
    if pos != len(data):
        msg = f"the zip central directory is damaged at byte {pos} of {len(data)}"
        raise AuditError(msg, hint="the file is truncated, or not the file the index lists")
    return tuple(out)


def _member_error(name: str, problem: str) -> AuditError:
    return AuditError(f"{name}: {problem}", hint="the index served a damaged file: run the command again")


# --------------------------------------------------------------------------- reading one remote file


@dataclass
class RemoteZip:
    """A zip file on an index, read by byte ranges; ``entries`` costs one or two reads at its end."""

    http: Http
    url: str
    size: int | None = None
    _entries: dict[str, ZipEntry] | None = None

    @property
    def entries(self) -> dict[str, ZipEntry]:
        if self._entries is None:
            tail, total = self.http.read_tail(self.url, TAIL)
            self.size = total
            offset, length = find_central_directory(tail, total)
            start = total - len(tail)
            if offset >= start:
                directory = tail[offset - start : offset - start + length]
            else:  # the directory begins before the tail: read the rest of it
                directory = (
                    self.http.read_range(self.url, offset, start - offset, total=total)
                    + tail[: offset + length - start]
                )
            self._entries = {e.name: e for e in parse_central_directory(directory)}
        return self._entries

    def _data_start(self, entry: ZipEntry, prefetch: int = 1 << 16) -> tuple[int, bytes]:
        """(where the member's data begins, its first bytes, up to ``prefetch``, read with the local header)."""
        guess = 30 + len(entry.name.encode()) + entry.extra_length + 64
        head = self.http.read_range(self.url, entry.header_offset, guess + min(entry.compressed_size, prefetch))
        if head[:4] != _LOCAL:
            raise _member_error(entry.name, "no local file header where the central directory says")
        fields = _LOCAL_HEADER.unpack_from(head)
        start = 30 + fields[9] + fields[10]
        return entry.header_offset + start, head[start:]

    def blocks(self, entry: ZipEntry) -> Iterator[bytes]:
        """The member's stored (compressed) bytes, as they arrive."""
        begin, first = self._data_start(entry)
        first = first[: entry.compressed_size]
        if first:
            yield first
        rest = entry.compressed_size - len(first)
        if rest > 0:
            yield from self.http.stream_range(self.url, begin + len(first), rest)

    def read(self, name: str, *, limit: int = LIBRARY_LIMIT) -> bytes:
        """A member's content, inflated and CRC-checked."""
        entry = self._entry(name, limit)
        return _inflate_all(entry, self.blocks(entry))

    def _entry(self, name: str, limit: int) -> ZipEntry:
        entry = self.entries.get(name)
        if entry is None:
            raise _member_error(name, "not in this file")
        if entry.compressed_size > limit:
            msg = f"{entry.compressed_size / 1e6:.0f} MB, over the {limit / 1e6:.0f} MB the reader fetches"
            raise _member_error(name, msg)
        return entry

    def library(self, name: str) -> LibraryReport:
        """The GPU code of a native library member (its loaded image), reading as little as the zip allows."""
        entry = self._entry(name, LIBRARY_LIMIT)
        if entry.method == STORED:
            begin, _ = self._data_start(entry, prefetch=0)

            def read(offset: int, size: int) -> bytes:
                return self.http.read_range(self.url, begin + offset, max(0, min(size, entry.size - offset)))

            return read_library_from(read, entry.size, name)
        if entry.size <= IN_MEMORY:
            return read_library(_inflate_all(entry, self.blocks(entry)), name)
        with tempfile.TemporaryFile() as spill:  # a large library: inflate to disk, map it, read from the map
            _inflate_into(entry, self.blocks(entry), spill.write)
            spill.flush()
            with mmap.mmap(spill.fileno(), 0, access=mmap.ACCESS_READ) as view:
                return read_library_from(lambda offset, size: view[offset : offset + size], entry.size, name)


def _inflate_into(entry: ZipEntry, blocks: Iterable[bytes], write: Callable[[bytes], object]) -> None:
    if entry.method not in (STORED, DEFLATED):
        raise _member_error(entry.name, f"zip compression method {entry.method} (the reader takes stored or deflate)")
    inflater = zlib.decompressobj(-15) if entry.method == DEFLATED else None
    crc, size = 0, 0
    try:
        for block in blocks:
            out = inflater.decompress(block) if inflater else block
            crc, size = zlib.crc32(out, crc), size + len(out)
            write(out)
        if inflater:
            out = inflater.flush()
            crc, size = zlib.crc32(out, crc), size + len(out)
            write(out)
    except zlib.error as exc:
        raise _member_error(entry.name, f"cannot be inflated ({exc})") from None
    if (crc, size) != (entry.crc, entry.size):
        raise _member_error(entry.name, f"CRC-32/size {crc:08x}/{size} differ from the directory's")


def _inflate_all(entry: ZipEntry, blocks: Iterable[bytes]) -> bytes:
    out = bytearray()
    _inflate_into(entry, blocks, out.extend)
    return bytes(out)


def sdist_pkg_info(http: Http, file: IndexFile) -> str:
    """The top-level ``PKG-INFO`` of an sdist (a .tar.gz of at most ``SDIST_LIMIT`` bytes), streamed."""
    import tarfile

    if file.size is not None and file.size > SDIST_LIMIT:
        raise _member_error(file.filename, f"an sdist of {file.size / 1e6:.0f} MB: too large to read for PKG-INFO")
    body, _, _ = http.get(file.url)
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
            for member in tar:
                parts = member.name.split("/")
                if len(parts) == 2 and parts[1] == "PKG-INFO" and member.isfile():
                    handle = tar.extractfile(member)
                    if handle is not None:
                        return handle.read().decode("utf-8", errors="replace")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise _member_error(file.filename, f"cannot be read as a tarball ({exc})") from None
    raise _member_error(file.filename, "has no PKG-INFO")


# --------------------------------------------------------------------------- facts and their cache


def parse_version_py(text: str) -> dict[str, str | None]:
    """``__version__``, ``cuda`` and ``git_version`` of a torch ``version.py`` (read, never executed)."""
    out: dict[str, str | None] = {}
    for key in ("__version__", "cuda", "git_version", "hip", "xpu"):
        match = re.search(rf"^{key}\s*(?::[^=]*)?=\s*(?:'([^']*)'|\"([^\"]*)\"|None)", text, re.MULTILINE)
        if match:
            out[key] = match.group(1) if match.group(1) is not None else match.group(2)
    return out


def torch_variant(version_py: str) -> str | None:
    """The build variant a torch ``version.py`` declares: the local tag (``+cu132`` -> cu132), else from
    ``cuda`` (old aarch64 wheels carry no tag: ``cuda = None`` -> cpu)."""
    facts = parse_version_py(version_py)
    version = facts.get("__version__") or ""
    if "+" in version:
        return version.split("+", 1)[1]
    cuda = facts.get("cuda")
    return f"cu{cuda.replace('.', '')}" if cuda else "cpu" if "__version__" in facts else None


@dataclass(frozen=True, slots=True)
class WheelFacts:
    """What was read from one file. ``None`` means not read (never "nothing there")."""

    filename: str
    sha256: str | None
    size: int | None
    metadata: str | None = None  # METADATA / PKG-INFO text, verbatim
    members: dict[str, str] = field(default_factory=dict)  # member name -> its text, verbatim (torch/version.py)
    native: tuple[str, ...] | None = None  # native library members in the file
    libraries: dict[str, LibraryReport | None] = field(default_factory=dict)  # None: no loadable image in it
    metadata_via: str | None = None  # "PEP 658", "range read", "sdist"
    read_on: str | None = None  # the date the first fact of it was read (ISO)

    @property
    def evidence(self) -> str:
        kind = "wheel" if self.filename.endswith(".whl") else "sdist"
        return f"{kind} {self.filename} sha256 {self.sha256 or 'not given by the index'}"


def _library_json(lib: LibraryReport | None) -> dict[str, Any] | None:
    if lib is None:
        return None
    return {"sass": list(lib.sass), "ptx": list(lib.ptx), "section": lib.section, "entries": lib.entries}


def _library_from_json(path: str, doc: object) -> LibraryReport | None:
    if not isinstance(doc, dict):
        return None
    return LibraryReport(
        path=path,
        sass=tuple(str(s) for s in doc.get("sass") or ()),
        ptx=tuple(str(s) for s in doc.get("ptx") or ()),
        cuda=cuda_of_library(path),
        entries=int(doc.get("entries") or 0),
        section=str(doc["section"]) if doc.get("section") else None,
    )


@dataclass(frozen=True, slots=True)
class FactsCache:
    """``<root>/<sha256>/``: facts.json, plus METADATA and member texts as read (``torch/version.py``).

    ``read_only`` serves recorded facts (tests/fixtures/upstream) and never fetches: a missing fact is then a
    ``SourceError`` that says it was not recorded.
    """

    root: Path
    read_only: bool = False
    copy_to: Path | None = None  # also write every fact served into this directory (``refresh --record``)

    def _dir(self, sha256: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            msg = f"not a sha256: {sha256[:80]!r}"
            raise SourceError(msg, hint="the index listed a file with a malformed hash")
        return self.root / sha256

    def load(self, file: IndexFile) -> WheelFacts:
        empty = WheelFacts(file.filename, file.sha256, file.size)
        if not file.sha256:
            return empty
        where = self._dir(file.sha256)
        doc = read_json_object(where / "facts.json")
        if doc is None or doc.get("schema") != CACHE_SCHEMA or doc.get("filename") != file.filename:
            return empty
        facts = self._facts(file, where, doc)
        if self.copy_to is not None:
            FactsCache(self.copy_to).save(facts)
        return facts

    def _facts(self, file: IndexFile, where: Path, doc: Mapping[str, Any]) -> WheelFacts:
        metadata = _read_text(where / "METADATA") if doc.get("metadata") else None
        members = {str(m): t for m in doc.get("members") or () if (t := _read_text(where / "members" / str(m)))}
        native = doc.get("native")
        libraries = {str(k): _library_from_json(str(k), v) for k, v in (doc.get("libraries") or {}).items()}
        return WheelFacts(
            filename=file.filename,
            sha256=file.sha256,
            size=file.size,
            metadata=metadata,
            members=members,
            native=tuple(str(n) for n in native) if isinstance(native, list) else None,
            libraries=libraries,
            metadata_via=str(doc.get("metadata")) if doc.get("metadata") else None,
            read_on=str(doc["read"]) if doc.get("read") else None,
        )

    def save(self, facts: WheelFacts) -> None:
        if self.read_only or not facts.sha256:
            return
        if self.copy_to is not None:
            FactsCache(self.copy_to).save(facts)
        where = self._dir(facts.sha256)
        if facts.metadata is not None:
            write_text_atomic(where / "METADATA", facts.metadata)
        for name, text in facts.members.items():
            if ".." in Path(name).parts or Path(name).is_absolute():
                continue  # a member name from a hostile wheel never leaves the cache directory
            write_text_atomic(where / "members" / name, text)
        doc = {
            "schema": CACHE_SCHEMA,
            "filename": facts.filename,
            "sha256": facts.sha256,
            "size": facts.size,
            "metadata": facts.metadata_via,
            "members": sorted(facts.members),
            "native": list(facts.native) if facts.native is not None else None,
            "libraries": {k: _library_json(v) for k, v in sorted(facts.libraries.items())},
            "read": facts.read_on or _today(),
        }
        write_text_atomic(where / "facts.json", json.dumps(doc, indent=1, sort_keys=True) + "\n")


def _today() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).date().isoformat()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _not_recorded(file: IndexFile, what: str) -> SourceError:
    msg = f"{file.filename}: its {what} was not recorded"
    return SourceError(msg, hint="run `envbuilder matrix refresh --record DIR` online to record it")


# Which library of a torch wheel to read, in order: small ones that torch's own build compiles with its
# TORCH_CUDA_ARCH_LIST (libtorch_nvshmem.so is 3.5-5 MB; libtorch_cuda.so is ~360 MB and never read).
TORCH_LIBRARIES = ("torch/lib/libtorch_nvshmem.so", "torch/lib/libtorch_cuda_linalg.so")
_BNB_CUDA_LIB = re.compile(r"^bitsandbytes/libbitsandbytes_cuda\d+\.(so|dll)$")


def native_members(names: Iterable[str]) -> tuple[str, ...]:
    from envbuilder.model.audit import is_native

    return tuple(sorted(n for n in names if is_native(n)))


@dataclass
class Reader:
    """Reads facts from index files through one ``Http``, caching them by sha256."""

    http: Http
    cache: FactsCache
    _zips: dict[str, RemoteZip] = field(default_factory=dict)

    def _zip(self, file: IndexFile) -> RemoteZip:
        if file.url not in self._zips:
            self._zips[file.url] = RemoteZip(self.http, file.url, file.size)
        return self._zips[file.url]

    def metadata(self, file: IndexFile) -> WheelFacts:
        """The file's core metadata (METADATA, or an sdist's PKG-INFO)."""
        facts = self.cache.load(file)
        if facts.metadata is not None:
            return facts
        if self.cache.read_only:
            raise _not_recorded(file, "core metadata")
        text, via = self._read_metadata(file)
        facts = _replace(facts, metadata=text, metadata_via=via)
        self.cache.save(facts)
        return facts

    def _read_metadata(self, file: IndexFile) -> tuple[str, str]:
        if file.serves_metadata:
            body, _, _ = self.http.get(file.url + ".metadata")
            if file.metadata_sha256:
                import hashlib

                if hashlib.sha256(body).hexdigest() != file.metadata_sha256:
                    msg = f"{file.filename}.metadata does not match the hash its index page gives"
                    raise SourceError(msg, hint="the index or a proxy served a damaged file: run the command again")
            return body.decode("utf-8", errors="replace"), "PEP 658"
        if not file.is_wheel:
            return sdist_pkg_info(self.http, file), "sdist PKG-INFO"
        remote = self._zip(file)
        names = [n for n in remote.entries if n.endswith(".dist-info/METADATA") and n.count("/") == 1]
        if len(names) != 1:
            raise _member_error(file.filename, f"{len(names)} .dist-info/METADATA members (a wheel has one)")
        return remote.read(names[0], limit=4 << 20).decode("utf-8", errors="replace"), "range read"

    def member_text(self, file: IndexFile, name: str) -> WheelFacts:
        """A small member's text (``torch/version.py``), by one range read."""
        facts = self.cache.load(file)
        if name in facts.members:
            return facts
        if self.cache.read_only:
            raise _not_recorded(file, name)
        text = self._zip(file).read(name, limit=1 << 20).decode("utf-8", errors="replace")
        facts = _replace(facts, members={**facts.members, name: text}, native=facts.native or self._native(file))
        self.cache.save(facts)
        return facts

    def _native(self, file: IndexFile) -> tuple[str, ...]:
        return native_members(self._zip(file).entries)

    def native(self, file: IndexFile) -> WheelFacts:
        """Which native libraries the file holds (its central directory only)."""
        facts = self.cache.load(file)
        if facts.native is not None:
            return facts
        if self.cache.read_only:
            raise _not_recorded(file, "list of native libraries")
        facts = _replace(facts, native=self._native(file))
        self.cache.save(facts)
        return facts

    def libraries(self, file: IndexFile, names: Sequence[str], *, first_loadable: bool = False) -> WheelFacts:
        """The GPU code of ``names`` (members); with ``first_loadable`` stop at the first with a loaded image."""
        facts = self.native(file)
        libraries = dict(facts.libraries)
        for name in names:
            if name not in libraries:
                if self.cache.read_only:
                    raise _not_recorded(file, name)
                report = self._zip(file).library(name)
                libraries[name] = report if report.section == ".nv_fatbin" else None
                facts = _replace(facts, libraries=libraries)
                self.cache.save(facts)
            if first_loadable and libraries.get(name) is not None:
                break
        return _replace(facts, libraries=libraries)

    def torch_facts(self, file: IndexFile) -> WheelFacts:
        """A torch wheel: metadata, ``torch/version.py``, and one CUDA library's loaded image (CUDA builds)."""
        self.metadata(file)
        facts = self.member_text(file, "torch/version.py")
        variant = torch_variant(facts.members["torch/version.py"])
        if variant is None or not variant.startswith("cu"):
            return facts
        names = [n for n in TORCH_LIBRARIES if n in (facts.native or ())]
        return self.libraries(file, names, first_loadable=True)

    def bnb_facts(self, file: IndexFile) -> WheelFacts:
        """A bitsandbytes wheel: metadata and every ``libbitsandbytes_cuda*`` library (ELF .so, PE .dll)."""
        self.metadata(file)
        facts = self.native(file)
        return self.libraries(file, [n for n in facts.native or () if _BNB_CUDA_LIB.match(n)])


def _replace(facts: WheelFacts, **changes: Any) -> WheelFacts:
    from dataclasses import replace

    return replace(facts, **changes)
