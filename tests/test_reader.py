"""envbuilder/edge/reader.py and pypi.py: facts read by byte ranges, through a real HTTP server and from PyPI.

The loopback server (tests/loopback.py) serves real files: the torch CPU wheel of the wheelhouse (a PyTorch
index file) and wheels built here from the compiled fatbin fixtures. The live test reads one torch wheel
from PyPI. Recorded real metadata (tests/fixtures/upstream) is read back in test_matrix_check.py.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest
from loopback import Served, serve

from envbuilder.edge.pypi import (
    Http,
    IndexFile,
    parse_project_page,
    parse_simple_html,
    parse_simple_json,
    split_credentials,
)
from envbuilder.edge.reader import (
    FactsCache,
    Reader,
    RemoteZip,
    find_central_directory,
    parse_central_directory,
    parse_version_py,
    torch_variant,
)
from envbuilder.edge.sources import read_pip_config
from envbuilder.model.audit import AuditError
from envbuilder.model.credentials import redact
from envbuilder.model.errors import SourceError

FIXTURES = Path(__file__).parent / "fixtures"
FATBIN = FIXTURES / "fatbin"
PYTORCH_PAGE = FIXTURES / "pytorch-index" / "cu128-torch-2.7.0-excerpt.html"


def _wheelhouse_torch() -> Path | None:
    for directory in read_pip_config().get("find-links", []):
        found = sorted(Path(directory.removeprefix("file://")).glob("torch-*+cpu-*.whl"))
        if found:
            return found[0]
    return None


TORCH_CPU = _wheelhouse_torch()
needs_torch_wheel = pytest.mark.skipif(TORCH_CPU is None, reason="no torch CPU wheel in pip's find-links here")


def _zip(members: dict[str, bytes], *, method: int = zipfile.ZIP_DEFLATED, force_zip64: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = method
            with zf.open(info, "w", force_zip64=force_zip64) as fh:
                fh.write(data)
    return buf.getvalue()


def _demo_wheel(method: int) -> bytes:
    return _zip(
        {
            "demo/libdemo_cuda130.so": (FATBIN / "multi.so").read_bytes(),
            "demo/libdemo_cuda128.so": (FATBIN / "rdc.so").read_bytes(),
            "demo-1.0.dist-info/METADATA": (
                b"Metadata-Version: 2.1\nName: demo\nVersion: 1.0\nRequires-Dist: torch>=2.4\n"
            ),
        },
        method=method,
    )


def _index_file(base: str, name: str, data: bytes) -> IndexFile:
    import hashlib

    return IndexFile(name, f"{base}/files/{name}", hashlib.sha256(data).hexdigest(), len(data))


# --------------------------------------------------------------------------- zip directory (pure)


def test_central_directory_of_a_zip() -> None:
    data = _demo_wheel(zipfile.ZIP_DEFLATED)
    offset, size = find_central_directory(data[-4096:], len(data))
    entries = parse_central_directory(data[offset : offset + size])
    assert [e.name for e in entries] == [
        "demo/libdemo_cuda130.so",
        "demo/libdemo_cuda128.so",
        "demo-1.0.dist-info/METADATA",
    ]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for entry in entries:
            info = zf.getinfo(entry.name)
            assert (entry.size, entry.compressed_size, entry.crc, entry.header_offset) == (
                info.file_size,
                info.compress_size,
                info.CRC,
                info.header_offset,
            )


def test_zip64_extra_fields_and_end_records(monkeypatch: pytest.MonkeyPatch) -> None:
    # force_zip64 writes zip64 extra fields; above ZIP_FILECOUNT_LIMIT entries (65,535; lowered here so the
    # test stays small) zipfile writes the zip64 end record and its locator as well.
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 2)
    data = _zip({"a": b"", "b": b"1", "last": b"x" * 100}, method=zipfile.ZIP_STORED, force_zip64=True)
    assert b"PK\x06\x06" in data[-200:] and b"PK\x06\x07" in data[-200:]
    offset, size = find_central_directory(data[-4096:], len(data))
    entries = parse_central_directory(data[offset : offset + size])
    assert [(e.name, e.size) for e in entries] == [("a", 0), ("b", 1), ("last", 100)]
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert [(i.header_offset, i.compress_size) for i in zf.infolist()] == [
            (e.header_offset, e.compressed_size) for e in entries
        ]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"not a zip at all" * 100, "no zip end-of-central-directory"),
        (
            b"PK\x05\x06" + b"\0" * 8 + (10**6).to_bytes(4, "little") + (0).to_bytes(4, "little") + b"\0\0",
            "past the end",
        ),
    ],
    ids=["no-eocd", "directory-past-end"],
)
def test_damaged_zip_is_one_clear_error(data: bytes, problem: str) -> None:
    with pytest.raises(AuditError, match=problem):
        find_central_directory(data, len(data))


# --------------------------------------------------------------------------- index pages (pure)


def test_pytorch_index_page_excerpt_is_read() -> None:
    # A verbatim excerpt of download.pytorch.org/whl/cu128/torch/ quoted in astral-sh/uv#13195 (see README).
    files = parse_simple_html(PYTORCH_PAGE.read_text(), "https://download.pytorch.org/whl/cu128/torch/")
    assert len(files) == 18
    first = files[0]
    assert first.filename == "torch-2.7.0+cu128-cp310-cp310-manylinux_2_28_aarch64.whl"
    assert (
        first.url == "https://download.pytorch.org/whl/cu128/torch-2.7.0%2Bcu128-cp310-cp310-manylinux_2_28_aarch64.whl"
    )
    assert first.sha256 is None  # the aarch64 hashes were missing that day: the reader does not invent one
    assert first.metadata_sha256 == "86107f52ff49e63a75c9d345374cac30140e053a12ffa728d676fee836e69022"
    assert files[1].sha256 == "ac1849553ee673dfafb44c610c60cb60a2890f0e117f43599a526cf777eb8b8c"
    assert all(f.serves_metadata for f in files)  # so the reader takes PEP 658 there, no range reads


def test_simple_json_page_fields() -> None:
    doc = {
        "files": [
            {
                "filename": "x-1.0-py3-none-any.whl",
                "url": "../../packages/x-1.0-py3-none-any.whl",
                "hashes": {"sha256": "a" * 64},
                "size": 10,
                "requires-python": ">=3.10",
                "upload-time": "2026-10-28T15:17:10Z",
                "core-metadata": {"sha256": "b" * 64},
            },
            {"filename": "x-0.9.tar.gz", "url": "https://h/x-0.9.tar.gz", "hashes": {}, "yanked": "broken"},
        ]
    }
    files = parse_simple_json(doc, "https://mirror.example/simple/x/")
    assert files[0] == IndexFile(
        "x-1.0-py3-none-any.whl",
        "https://mirror.example/packages/x-1.0-py3-none-any.whl",
        "a" * 64,
        10,
        ">=3.10",
        "2026-10-28T15:17:10Z",
        False,
        "b" * 64,
    )
    assert (files[1].sha256, files[1].yanked, files[1].serves_metadata) == (None, True, False)
    assert parse_project_page(json.dumps(doc).encode(), "application/vnd.pypi.simple.v1+json", "https://m/x/") == (
        parse_simple_json(doc, "https://m/x/")
    )


def test_credentials_are_split_from_urls_and_redacted() -> None:
    clean, credential = split_credentials("https://bob:T%40K@mirror.example:8443/simple")
    assert clean == "https://mirror.example:8443/simple"
    assert credential is not None and (credential.username, credential.password) == ("bob", "T@K")
    assert redact("https://bob:TOKEN@mirror.example/simple/x/") == "https://***@mirror.example/simple/x/"
    assert redact("https://pypi.org/simple") == "https://pypi.org/simple"


@pytest.mark.parametrize(
    ("text", "variant"),
    [
        ("__version__ = '2.15.0+cu132'\ncuda: Optional[str] = '13.2'\n", "cu132"),
        ("__version__ = '2.1.2'\ndebug = False\ncuda: Optional[str] = None\n", "cpu"),  # old aarch64 wheels
        ("__version__ = '2.1.2'\ncuda: Optional[str] = '12.1'\n", "cu121"),  # PyPI's untagged CUDA builds
        ("print('hello')\n", None),
    ],
)
def test_torch_variant_from_version_py(text: str, variant: str | None) -> None:
    assert torch_variant(text) == variant


# --------------------------------------------------------------------------- through a real HTTP server


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED], ids=["stored", "deflated"])
def test_library_targets_by_range_reads(tmp_path: Path, method: int) -> None:
    data = _demo_wheel(method)
    served = Served()
    served.files["/files/demo-1.0-py3-none-manylinux_2_28_x86_64.whl"] = data
    with serve(served) as base, Http() as http:
        remote = RemoteZip(http, f"{base}/files/demo-1.0-py3-none-manylinux_2_28_x86_64.whl")
        entry = remote.entries["demo/libdemo_cuda130.so"]
        before = served.sent
        lib = remote.library("demo/libdemo_cuda130.so")
        spent = served.sent - before
        rdc = remote.library("demo/libdemo_cuda128.so")
        metadata = remote.read("demo-1.0.dist-info/METADATA")
    assert (lib.sass, lib.ptx, lib.section) == (("7.5", "8.6", "9.0"), ("9.0",), ".nv_fatbin")
    # Separable compilation: the loaded image has SASS only; the PTX of __nv_relfatbin is never JIT-loaded.
    assert (rdc.sass, rdc.ptx, rdc.section) == (("8.0",), (), ".nv_fatbin")
    assert b"Requires-Dist: torch>=2.4" in metadata
    assert all(r is not None for _, r, _ in served.log)  # every request was a range request
    if method == zipfile.ZIP_STORED:  # sparse: header, section table, names, fat binary -- not the whole library
        assert spent < entry.size - 2_000
    else:  # the member's compressed bytes (and its local header), nothing else of the file
        assert entry.compressed_size <= spent < entry.compressed_size + 1_000


def test_a_damaged_member_fails_its_crc(tmp_path: Path) -> None:
    data = bytearray(_demo_wheel(zipfile.ZIP_STORED))
    at = bytes(data).index(b"Requires-Dist")
    data[at] = ord("X")
    served = Served(files={"/files/demo-1.0-py3-none-any.whl": bytes(data)})
    with serve(served) as base, Http() as http, pytest.raises(AuditError, match="CRC-32"):
        RemoteZip(http, f"{base}/files/demo-1.0-py3-none-any.whl").read("demo-1.0.dist-info/METADATA")


@needs_torch_wheel
def test_torch_wheel_through_a_credentialed_mirror(tmp_path: Path) -> None:
    assert TORCH_CPU is not None
    served = Served(credentials=("bob", "S3CRET-T0KEN"))
    served.add_wheel("torch", TORCH_CPU)
    cache = tmp_path / "cache"
    with serve(served) as base, Http() as http:
        index = http.add_index(f"http://bob:S3CRET-T0KEN@{base.removeprefix('http://')}/simple")
        body, ctype, url = http.get(f"{index}/torch/")
        (file,) = parse_project_page(body, ctype, url)
        facts = Reader(http, FactsCache(cache)).torch_facts(file)
        again = Reader(http, FactsCache(cache)).torch_facts(file)
    assert parse_version_py(facts.members["torch/version.py"])["__version__"] == "2.13.0+cpu"
    assert facts.metadata is not None and "Requires-Python: >=3.10" in facts.metadata
    assert facts.metadata_via == "range read" and facts.libraries == {}  # a CPU build: no GPU library to read
    assert again == facts
    # About 1.2 MB (the 191 MB wheel's central directory, METADATA, version.py), each fact read once.
    assert served.sent < 2_500_000
    assert all(auth for _, _, auth in served.log)
    for path in cache.rglob("*"):
        assert not path.is_file() or b"S3CRET" not in path.read_bytes()


def test_credentials_never_reach_another_host_or_a_message(tmp_path: Path) -> None:
    served, other = Served(credentials=("bob", "S3CRET")), Served()
    other.files["/files/x-1.0-py3-none-any.whl"] = _zip({"x-1.0.dist-info/METADATA": b"Name: x\n"})
    with serve(served) as base, serve(other) as elsewhere, Http() as http:
        index = http.add_index(f"http://bob:S3CRET@{base.removeprefix('http://')}/simple")
        RemoteZip(http, f"{elsewhere}/files/x-1.0-py3-none-any.whl").read("x-1.0.dist-info/METADATA")
        with pytest.raises(SourceError) as info:
            http.get(f"http://bob:WRONG@{base.removeprefix('http://')}/simple/x/")
        assert served.log and served.log[-1][2]  # the request carried credentials ...
    assert not any(auth for _, _, auth in other.log)  # ... and none went to the other host
    assert index.startswith("http://127.0.0.1")
    assert "WRONG" not in str(info.value) and "401" in str(info.value) and "***@" not in index
    assert "credentials" in str(info.value)


def test_retries_a_busy_server(tmp_path: Path) -> None:
    served = Served(fail_first=2)
    served.pages["/simple/x/"] = '<a href="/files/x-1.0.tar.gz#sha256=' + "c" * 64 + '">x-1.0.tar.gz</a>'
    with serve(served) as base, Http() as http:
        body, ctype, url = http.get(f"{base}/simple/x/")
    assert [f.filename for f in parse_project_page(body, ctype, url)] == ["x-1.0.tar.gz"]
    assert len(served.log) == 3


def test_a_server_without_ranges_is_refused_for_large_files() -> None:
    big = b"\0" * (40 << 20)
    served = Served(ignore_ranges=True, files={"/files/big-1.0-py3-none-any.whl": big})
    with serve(served) as base, Http() as http, pytest.raises(SourceError, match="does not serve byte ranges"):
        RemoteZip(http, f"{base}/files/big-1.0-py3-none-any.whl").entries  # noqa: B018


def test_a_server_without_ranges_still_serves_small_files() -> None:
    data = _demo_wheel(zipfile.ZIP_DEFLATED)
    served = Served(ignore_ranges=True, files={"/files/demo-1.0-py3-none-any.whl": data})
    with serve(served) as base, Http() as http:
        remote = RemoteZip(http, f"{base}/files/demo-1.0-py3-none-any.whl")
        assert b"torch>=2.4" in remote.read("demo-1.0.dist-info/METADATA")


def test_recorded_cache_never_fetches(tmp_path: Path) -> None:
    file = IndexFile("y-1.0-py3-none-any.whl", "http://127.0.0.1:9/y.whl", "d" * 64, 10)
    with Http() as http, pytest.raises(SourceError, match="was not recorded") as info:
        Reader(http, FactsCache(tmp_path, read_only=True)).metadata(file)
    assert "--record" in (info.value.hint or "")


# --------------------------------------------------------------------------- PyPI, for real


@pytest.mark.network
def test_one_torch_wheel_from_pypi_under_8_mb(tmp_path: Path) -> None:
    from envbuilder.edge.upstream import open_upstream, pick_file

    upstream, http = open_upstream(index_url=None, pytorch_index=None, cache_root=tmp_path)
    with http:
        file = pick_file(upstream.releases("torch")["2.15.0"], "linux-x86_64")
        assert file is not None
        before = http.bytes_in
        facts = upstream.reader.torch_facts(file)
        spent = http.bytes_in - before
    version = parse_version_py(facts.members["torch/version.py"])
    assert (version["__version__"], version["cuda"]) == ("2.15.0+cu132", "13.2")
    assert facts.metadata is not None and "cuda-toolkit" in facts.metadata and "==13.2.2" in facts.metadata
    lib = facts.libraries["torch/lib/libtorch_nvshmem.so"]
    assert lib is not None and (lib.sass, lib.ptx) == (("7.5", "8.0", "8.6", "9.0", "10.0", "12.0"), ())
    assert spent < 8_000_000, spent
