"""PyPI JSON API and the cached, verified, resumable download: against the real PyPI with a small wheel."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from envbuilder import pypi
from envbuilder.errors import SourceError

SMALL = ("six", "1.17.0", "six-1.17.0-py2.py3-none-any.whl")  # 11 KB
DEAD = "http://127.0.0.1:9"  # the discard port: nothing listens, the connection is refused at once


def _small_wheel() -> pypi.WheelFile:
    name, version, filename = SMALL
    return next(f for f in pypi.release_files(name, version) if f.filename == filename)


# --------------------------------------------------------------------------- offline


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENVBUILDER_CACHE", str(tmp_path / "c"))
    assert pypi.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("ENVBUILDER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert pypi.default_cache_dir() == tmp_path / "envbuilder" / "wheels"


def test_cached_file_with_matching_sha_needs_no_network(tmp_path: Path) -> None:
    body = b"not really a wheel, but its hash is what counts"
    (tmp_path / "x-1.0-py3-none-any.whl").write_bytes(body)
    file = pypi.WheelFile("x-1.0-py3-none-any.whl", f"{DEAD}/x.whl", hashlib.sha256(body).hexdigest(), len(body))
    assert pypi.download(file, tmp_path) == tmp_path / "x-1.0-py3-none-any.whl"


@pytest.mark.parametrize(
    "call",
    [
        lambda: pypi.release_files("six", "1.17.0", base_url=f"{DEAD}/pypi"),
        lambda: pypi.releases("six", base_url=f"{DEAD}/pypi"),
        lambda: pypi.download(pypi.WheelFile("y-1.0-py3-none-any.whl", f"{DEAD}/y.whl", "0" * 64, 10), Path("/tmp")),
    ],
    ids=["release_files", "releases", "download"],
)
def test_unreachable_index_is_one_line(call: object) -> None:
    with pytest.raises(SourceError, match=r"^cannot reach http://127\.0\.0\.1:9/\S+ \(ConnectionError\)$") as info:
        call()  # type: ignore[operator]
    assert "REQUESTS_CA_BUNDLE" in (info.value.hint or "")


def test_requires_dist_from_metadata_text() -> None:
    text = "Metadata-Version: 2.1\nName: x\nRequires-Dist: torch<3,>=2.4\nRequires-Dist: numpy>=1.17\n\nbody\n"
    assert pypi.parse_requires_dist(text) == ("torch<3,>=2.4", "numpy>=1.17")


# --------------------------------------------------------------------------- real PyPI


@pytest.mark.network
def test_release_files_lists_the_wheel_with_its_hash() -> None:
    wheel = _small_wheel()
    assert wheel.url.startswith("https://") and wheel.url.endswith(SMALL[2])
    assert len(wheel.sha256) == 64 and 5_000 < wheel.size < 50_000


@pytest.mark.network
def test_releases_are_in_version_order() -> None:
    found = pypi.releases("six")
    assert found.index("1.16.0") < found.index("1.17.0")
    assert all("a" not in v and "b" not in v and "rc" not in v for v in found)


@pytest.mark.network
def test_unknown_release_is_a_source_error() -> None:
    with pytest.raises(SourceError, match=r"six 0\.0\.0\.1 is not on the index"):
        pypi.release_files("six", "0.0.0.1")


@pytest.mark.network
def test_download_verifies_and_reports_progress(tmp_path: Path) -> None:
    wheel = _small_wheel()
    seen: list[tuple[int, int]] = []
    path = pypi.download(wheel, tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert hashlib.sha256(path.read_bytes()).hexdigest() == wheel.sha256
    assert seen[-1] == (wheel.size, wheel.size)
    assert sorted(p.name for p in tmp_path.iterdir()) == [wheel.filename]  # no .part left behind


@pytest.mark.network
def test_download_resumes_a_truncated_part(tmp_path: Path) -> None:
    wheel = _small_wheel()
    whole = pypi.download(wheel, tmp_path / "ref").read_bytes()
    half = len(whole) // 2
    (tmp_path / (wheel.filename + ".part")).write_bytes(whole[:half])
    seen: list[int] = []
    path = pypi.download(wheel, tmp_path, progress=lambda done, _total: seen.append(done))
    assert path.read_bytes() == whole
    assert seen[-1] == len(whole)


@pytest.mark.network
def test_resume_keeps_the_prefix_so_a_bad_prefix_is_refused(tmp_path: Path) -> None:
    # A .part of the right length but wrong bytes: only a Range request keeps it, and then the sha256
    # check must refuse the result and delete it (a full download would have succeeded).
    wheel = _small_wheel()
    part = tmp_path / (wheel.filename + ".part")
    part.write_bytes(b"X" * (wheel.size // 2))
    with pytest.raises(SourceError, match=r"sha256 .* does not match"):
        pypi.download(wheel, tmp_path)
    assert not part.exists() and not (tmp_path / wheel.filename).exists()
    assert pypi.download(wheel, tmp_path).stat().st_size == wheel.size  # the next try starts afresh


@pytest.mark.network
def test_sha_mismatch_is_refused(tmp_path: Path) -> None:
    wrong = dataclasses.replace(_small_wheel(), sha256="0" * 64)
    with pytest.raises(SourceError, match="does not match the index's 0000000000000000"):
        pypi.download(wrong, tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.network
def test_stale_cached_file_is_fetched_again(tmp_path: Path) -> None:
    wheel = _small_wheel()
    (tmp_path / wheel.filename).write_bytes(b"stale")
    path = pypi.download(wheel, tmp_path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == wheel.sha256
