"""PyPI's JSON API and cached, verified, resumable wheel downloads (the edge ``matrix audit/refresh`` use).

Every request has a timeout; an unreachable index or a missing release raises ``SourceError`` with one line.
The CA bundle is requests' usual one (``REQUESTS_CA_BUNDLE`` honoured). ``requests`` is imported inside the
functions so that the CLI starts fast when no command needs the network.
"""

from __future__ import annotations

import email.parser
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from packaging.version import InvalidVersion, Version

from envbuilder import __version__
from envbuilder.errors import SourceError

if TYPE_CHECKING:
    import requests

PYPI_JSON = "https://pypi.org/pypi"
ENV_CACHE = "ENVBUILDER_CACHE"
TIMEOUT = (10.0, 60.0)  # (connect, read) seconds: a slow mirror is fine, a dead one is not
CHUNK = 1 << 20
Progress = Callable[[int, int], None]  # (bytes done, bytes in all)


@dataclass(frozen=True, slots=True)
class WheelFile:
    """One file of a release, as the index lists it."""

    filename: str
    url: str
    sha256: str
    size: int
    requires_python: str | None = None
    upload_time: str | None = None  # ISO 8601, as PyPI gives it


@dataclass(frozen=True, slots=True)
class ReleaseInfo:
    """What the JSON API says of one release besides its files: what it requires."""

    name: str
    version: str
    requires_python: str | None
    requires_dist: tuple[str, ...]
    files: tuple[WheelFile, ...]


def default_cache_dir() -> Path:
    """``$ENVBUILDER_CACHE``, else ``$XDG_CACHE_HOME/envbuilder/wheels`` (``~/.cache/envbuilder/wheels``)."""
    env = os.environ.get(ENV_CACHE)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "envbuilder" / "wheels"


def _session() -> requests.Session:
    import requests  # kept out of CLI start-up

    session = requests.Session()
    session.headers["User-Agent"] = f"envbuilder/{__version__}"
    return session


def _unreachable(url: str, exc: Exception) -> SourceError:
    reason = type(exc).__name__
    msg = f"cannot reach {url} ({reason})"
    return SourceError(msg, hint="check the network, the proxy and REQUESTS_CA_BUNDLE, then try again")


def get_text(url: str, what: str) -> str:
    """A text document over HTTP(S) through the same session, timeout and errors as the index requests
    (``matrix refresh --pci-ids`` downloads the PCI ID database with it)."""
    import requests  # kept out of CLI start-up

    try:
        with _session() as session:
            resp = session.get(url, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise _unreachable(url, exc) from None
    if resp.status_code != 200:
        msg = f"{url} answered HTTP {resp.status_code} for {what}"
        raise SourceError(msg, hint="check the URL, or give a local file instead")
    resp.encoding = resp.encoding or "utf-8"
    return resp.text


def _get_json(url: str, what: str) -> Mapping[str, Any]:
    import requests  # kept out of CLI start-up

    try:
        with _session() as session:
            resp = session.get(url, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise _unreachable(url, exc) from None
    if resp.status_code == 404:
        msg = f"{what} is not on the index ({url} answered 404)"
        raise SourceError(msg, hint="check the name and version: `pip index versions NAME` lists them")
    if resp.status_code != 200:
        msg = f"{url} answered HTTP {resp.status_code}"
        raise SourceError(msg, hint="the index may be down: try again later")
    try:
        doc = resp.json()
    except ValueError:
        msg = f"{url} did not answer JSON"
        raise SourceError(msg, hint="is this a PyPI-compatible JSON API?") from None
    if not isinstance(doc, dict):
        msg = f"{url} answered JSON that is not an object"
        raise SourceError(msg, hint="is this a PyPI-compatible JSON API?")
    return doc


def _files(entries: object, base: str) -> Iterator[WheelFile]:
    """The files (not yanked) of a JSON ``urls``/``releases[v]`` list, URLs resolved against ``base``."""
    for item in entries if isinstance(entries, list) else ():
        if not isinstance(item, dict) or item.get("yanked"):
            continue
        sha = (item.get("digests") or {}).get("sha256")
        if not sha or not item.get("filename") or not item.get("url"):
            continue
        yield WheelFile(
            filename=str(item["filename"]),
            url=urljoin(base, str(item["url"])),  # some mirrors answer "../../packages/..."
            sha256=str(sha),
            size=int(item.get("size") or 0),
            requires_python=item.get("requires_python") or None,
            upload_time=item.get("upload_time_iso_8601") or item.get("upload_time"),
        )


def _requires_from_metadata(files: tuple[WheelFile, ...]) -> tuple[str, ...] | None:
    """Requires-Dist from a wheel's PEP 658 ``.metadata`` file, where the index serves one."""
    import requests  # kept out of CLI start-up

    wheel = next((f for f in files if f.filename.endswith(".whl")), None)
    if wheel is None:
        return None
    try:
        with _session() as session:
            resp = session.get(wheel.url + ".metadata", timeout=TIMEOUT)
    except requests.RequestException:
        return None  # optional: the caller goes on without requirements
    if resp.status_code != 200:
        return None
    return parse_requires_dist(resp.text)


def parse_requires_dist(metadata: str) -> tuple[str, ...]:
    """The ``Requires-Dist`` lines of a core-metadata (METADATA) text."""
    message = email.parser.HeaderParser().parsestr(metadata)
    return tuple(str(v) for v in message.get_all("Requires-Dist") or ())


def release_info(name: str, version: str, *, base_url: str = PYPI_JSON) -> ReleaseInfo:
    """The release's files (not yanked) and requirements.

    Asks ``<base_url>/<name>/<version>/json``; an index that lacks that endpoint (some mirrors) is asked for
    the project's JSON instead, whose ``info`` describes only the newest release: then the requirements
    come from the wheel's ``.metadata`` file if the index serves it, else they stay empty.
    """
    base = base_url.rstrip("/")
    url = f"{base}/{name}/{version}/json"
    try:
        doc = _get_json(url, f"{name} {version}")
        files = tuple(_files(doc.get("urls"), url))
    except SourceError as exc:
        if "404" not in exc.message:
            raise
        url = f"{base}/{name}/json"
        doc = _get_json(url, name)
        listed = (doc.get("releases") or {}).get(version)
        if listed is None:
            msg = f"{name} {version} is not on the index ({url} lists no such release)"
            raise SourceError(msg, hint=f"`envbuilder matrix refresh` lists the releases of {name}") from None
        files = tuple(_files(listed, url))
    info = doc.get("info") or {}
    same = str(info.get("version")) == version
    requires = tuple(str(r) for r in info.get("requires_dist") or ()) if same else _requires_from_metadata(files)
    python = (info.get("requires_python") if same else None) or next(
        (f.requires_python for f in files if f.requires_python), None
    )
    return ReleaseInfo(
        name=str(info.get("name") or name),
        version=version,
        requires_python=python or None,
        requires_dist=requires or (),
        files=files,
    )


def release_files(name: str, version: str, *, base_url: str = PYPI_JSON) -> list[WheelFile]:
    """The wheels (and sdists) of one release, with their URL, sha256 and size."""
    return list(release_info(name, version, base_url=base_url).files)


def releases(name: str, *, base_url: str = PYPI_JSON, prereleases: bool = False) -> list[str]:
    """A project's releases that still have files not yanked, oldest first (PEP 440 order)."""
    url = f"{base_url.rstrip('/')}/{name}/json"
    doc = _get_json(url, name)
    found: list[tuple[Version, str]] = []
    for text, files in (doc.get("releases") or {}).items():
        try:
            version = Version(text)
        except InvalidVersion:
            continue  # legacy version strings from long ago
        if (version.is_prerelease and not prereleases) or not any(True for _ in _files(files, url)):
            continue
        found.append((version, text))
    return [text for _, text in sorted(found)]


# --------------------------------------------------------------------------- downloads


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _fetch_into(part: Path, file: WheelFile, progress: Progress | None) -> None:
    """Append the rest of ``file`` to ``part`` (Range from its size), or start over if the server won't."""
    import requests  # kept out of CLI start-up

    have = part.stat().st_size if part.exists() else 0
    if file.size and have >= file.size:
        return  # complete (or too long: the sha256 check decides)
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with (
            _session() as session,
            session.get(file.url, headers=headers, stream=True, timeout=TIMEOUT) as resp,
        ):
            if resp.status_code == 206:
                mode = "ab"
            elif resp.status_code == 200:
                mode, have = "wb", 0  # the server ignored the Range: take the whole file
            else:
                msg = f"{file.url} answered HTTP {resp.status_code}"
                raise SourceError(msg, hint="the index may be down or the file gone: try again later")
            with part.open(mode) as fh:
                for block in resp.iter_content(CHUNK):
                    fh.write(block)
                    have += len(block)
                    if progress:
                        progress(have, file.size)
    except requests.RequestException as exc:
        raise _unreachable(file.url, exc) from None


def download(file: WheelFile, cache_dir: Path | None = None, *, progress: Progress | None = None) -> Path:
    """``file`` in the cache, downloaded if needed: sha256-checked, resumed from a partial ``.part``.

    A cached file whose sha256 does not match is fetched again; a download whose sha256 does not match
    is deleted and refused (``SourceError``). The file is moved into place atomically.
    """
    cache = cache_dir or default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    final = cache / file.filename
    if final.exists():
        if _sha256_of(final) == file.sha256:
            return final
        final.unlink()  # stale or tampered: fetch again
    part = cache / (file.filename + ".part")
    _fetch_into(part, file, progress)
    got = _sha256_of(part)
    if got != file.sha256:
        part.unlink(missing_ok=True)
        msg = f"{file.filename}: sha256 {got[:16]}... does not match the index's {file.sha256[:16]}..."
        raise SourceError(msg, hint="the download was corrupted or tampered with: run the command again")
    os.replace(part, final)
    return final
