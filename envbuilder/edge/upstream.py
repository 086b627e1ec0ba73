"""What the indexes say about the packages the matrix tracks: the edge behind refresh, audit and check --upstream.

``Upstream`` lists a project's releases from the configured index (PyPI or its mirror; the PyTorch index or
its mirror for torch's variant builds) and reads, through ``envbuilder.edge.reader``, the facts of the files that
matter: core metadata of every release the matrix names (and of newer ones), ``torch/version.py`` of each
platform's PyPI torch wheel, and the loaded GPU image of torch's and bitsandbytes' CUDA libraries.

Online, pages are fetched every run (new releases are the news) and files' facts come from the cache when
their sha256 was read before. ``record=DIR`` also writes every page and fact read under ``DIR`` (what
``tests/fixtures/upstream`` holds); ``recorded=DIR`` reads only from such a directory and never touches the
network (``matrix check --upstream --offline``). Results are plain values (``Observed``) for the pure
comparison in ``envbuilder.jobs.matrix_check``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from envbuilder.edge._fs import read_json_object, write_text_atomic
from envbuilder.edge.pypi import PYPI_SIMPLE, Http, IndexFile, parse_project_page, project_page
from envbuilder.edge.reader import FactsCache, Reader, WheelFacts
from envbuilder.edge.settings import cache_path
from envbuilder.model.credentials import Credential, redact
from envbuilder.model.errors import SourceError

__all__ = [
    "BNB_PLATFORMS",
    "COMPANIONS",
    "QUANT",
    "TORCH_PLATFORMS",
    "TRACKED",
    "FileObs",
    "Observed",
    "Pages",
    "Platform",
    "ReleaseObs",
    "Upstream",
    "cp_tags",
    "file_version",
    "gather",
    "open_upstream",
    "pick_file",
    "recording_readme",
    "releases_of",
    "today_iso",
    "wheel_platform",
]

Platform = Literal["linux-x86_64", "linux-aarch64", "windows-x86_64", "windows-arm64", "macos-arm64", "any"]
TORCH_PLATFORMS: tuple[Platform, ...] = ("linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64")
BNB_PLATFORMS: tuple[Platform, ...] = ("linux-x86_64", "linux-aarch64", "windows-x86_64")
COMPANIONS = ("transformers", "accelerate", "peft")
QUANT = ("gptqmodel", "auto-gptq", "autoawq", "llmcompressor", "compressed-tensors", "optimum")
TRACKED = ("torch", "bitsandbytes", *COMPANIONS, *QUANT)


# A wheel's platform tag -> the matrix platform: (test on the tag, platform). The first that matches wins.
_PLATFORM_TAGS: tuple[tuple[str, str, Platform], ...] = (
    ("linux", "x86_64", "linux-x86_64"),
    ("linux", "aarch64", "linux-aarch64"),
    ("win_amd64", "", "windows-x86_64"),
    ("win_arm64", "", "windows-arm64"),
    ("macosx", "arm64", "macos-arm64"),
)


def wheel_platform(filename: str) -> Platform | None:
    """The matrix platform a wheel file serves ("any" for a pure wheel), or None (sdist, other platforms)."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    for tag in tags:
        if tag.platform == "any":
            return "any"
        for start, end, platform in _PLATFORM_TAGS:
            if (
                start in tag.platform if start == "linux" else tag.platform.startswith(start)
            ) and tag.platform.endswith(end):
                return platform
    return None


def file_version(filename: str) -> str | None:
    """The version a wheel or sdist file name carries, without a local tag (``2.11.0+cu126`` -> 2.11.0)."""
    from packaging.utils import InvalidSdistFilename, InvalidWheelFilename, parse_sdist_filename, parse_wheel_filename

    try:
        if filename.endswith(".whl"):
            return parse_wheel_filename(filename)[1].public
        return parse_sdist_filename(filename)[1].public
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None


def cp_tags(filename: str) -> set[str]:
    """The CPython versions a wheel is built for ("3.11"); free-threaded (cp314t) and abi3 builds excluded."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return set()
    return {f"3.{t.interpreter[3:]}" for t in tags if t.interpreter.startswith("cp3") and t.abi == t.interpreter}


# --------------------------------------------------------------------------- pages: online, recorded, replayed


@dataclass
class Pages:
    """Project pages: fetched through ``http`` (and written to ``record``), or read from ``recorded``."""

    http: Http
    recorded: Path | None = None
    record: Path | None = None
    _seen: dict[str, tuple[IndexFile, ...]] = field(default_factory=dict)

    def files(self, index_url: str, project: str) -> tuple[IndexFile, ...]:
        key = f"{redact(index_url)} {project}"
        if key not in self._seen:
            self._seen[key] = self._replay(index_url, project) if self.recorded else self._fetch(index_url, project)
        return self._seen[key]

    def _fetch(self, index_url: str, project: str) -> tuple[IndexFile, ...]:
        body, content_type, url = project_page(self.http, index_url, project)
        files = parse_project_page(body, content_type, url)
        if self.record is not None:
            _save_page(self.record, index_url, project, body, content_type, url)
        return files

    def _replay(self, index_url: str, project: str) -> tuple[IndexFile, ...]:
        assert self.recorded is not None
        entry = (_page_index(self.recorded).get(_page_key(index_url, project))) or {}
        path = self.recorded / "pages" / str(entry.get("file", ""))
        if not entry or not path.is_file():
            msg = f"no recorded page for {project} on {redact(index_url)} in {self.recorded}"
            raise SourceError(msg, hint="record it online: `envbuilder matrix refresh --record DIR`")
        body = gzip.decompress(path.read_bytes())
        return parse_project_page(body, str(entry.get("content-type", "")), str(entry.get("url", index_url)))


def _page_key(index_url: str, project: str) -> str:
    return f"{redact(index_url).rstrip('/')} {project}"


def today_iso() -> str:
    """Today's UTC date (the day a fact or page was read)."""
    return dt.datetime.now(dt.timezone.utc).date().isoformat()


def _page_index(root: Path) -> dict[str, dict[str, str]]:
    doc = read_json_object(root / "pages" / "index.json") or {}
    return {k: v for k, v in doc.items() if isinstance(v, dict)}


def _save_page(root: Path, index_url: str, project: str, body: bytes, content_type: str, url: str) -> None:
    pages = root / "pages"
    pages.mkdir(parents=True, exist_ok=True)
    host = (redact(index_url).split("//", 1)[-1].split("/", 1)[0].split("@")[-1]).replace(":", "_")
    name = f"{host}-{project}.{'json' if 'json' in content_type else 'html'}.gz"
    (pages / name).write_bytes(gzip.compress(body, mtime=0))
    index = _page_index(root)
    index[_page_key(index_url, project)] = {
        "file": name,
        "url": redact(url),
        "content-type": content_type,
        "read": today_iso(),
    }
    write_text_atomic(pages / "index.json", json.dumps(index, indent=1, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- observed facts (plain values)


@dataclass(frozen=True, slots=True)
class FileObs:
    """One file of a release and what was read inside it (``facts`` None: its insides were not read)."""

    file: IndexFile
    platform: Platform | None
    facts: WheelFacts | None = None

    @property
    def evidence(self) -> str:
        if self.facts:
            return self.facts.evidence
        kind = "wheel" if self.file.is_wheel else "sdist"
        return f"{kind} {self.file.filename} sha256 {self.file.sha256}"


@dataclass(frozen=True, slots=True)
class ReleaseObs:
    """A release on the index: all its files (tags, upload times), and those whose insides were read."""

    project: str
    version: str
    files: tuple[IndexFile, ...]
    read: tuple[FileObs, ...] = ()
    index: str = PYPI_SIMPLE

    def on(self, platform: Platform) -> FileObs | None:
        return next((f for f in self.read if f.platform == platform), None)


@dataclass(frozen=True, slots=True)
class Observed:
    """Everything read, by project then version; ``unread`` says what could not be, and why."""

    releases: Mapping[str, Mapping[str, ReleaseObs]]
    variants: Mapping[tuple[str, str, str], ReleaseObs] = field(default_factory=dict)  # (variant, version, platform)
    newer: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # releases newer than the matrix's newest
    unread: tuple[str, ...] = ()
    date: str = ""
    index: str = PYPI_SIMPLE
    pytorch_index: str | None = None


def releases_of(files: Iterable[IndexFile]) -> dict[str, tuple[IndexFile, ...]]:
    """Files (not yanked) grouped by release version, oldest release first (PEP 440 order)."""
    from packaging.version import Version

    grouped: dict[str, list[IndexFile]] = {}
    for f in files:
        version = file_version(f.filename)
        if version is None or f.yanked:
            continue
        grouped.setdefault(version, []).append(f)
    return {v: tuple(grouped[v]) for v in sorted(grouped, key=Version)}


def pick_file(files: Iterable[IndexFile], platform: Platform, *, prefer_python: str = "3.12") -> IndexFile | None:
    """The file to read for ``platform``: a wheel for it (this CPython if there is one), else a pure wheel,
    else an sdist ("any" takes pure wheels, then sdists)."""
    candidates = [f for f in files if f.is_wheel and wheel_platform(f.filename) == platform]
    if candidates:
        return next((f for f in candidates if prefer_python in cp_tags(f.filename)), sorted(candidates, key=_name)[0])
    if platform == "any":
        sdists = [f for f in files if f.filename.endswith((".tar.gz", ".zip"))]
        return sdists[0] if sdists else None
    return None


def _name(f: IndexFile) -> str:
    return f.filename


def _pure_or_sdist(files: Iterable[IndexFile]) -> IndexFile | None:
    listed = tuple(files)
    return pick_file(listed, "any") or next(
        (f for f in listed if f.is_wheel and wheel_platform(f.filename) == "linux-x86_64"), None
    )


# --------------------------------------------------------------------------- gathering


@dataclass
class Upstream:
    """Reads what the matrix needs from the indexes; collects what it could not read instead of failing."""

    pages: Pages
    reader: Reader
    index_url: str = PYPI_SIMPLE
    pytorch_index: str | None = None
    unread: list[str] = field(default_factory=list)

    def releases(self, project: str) -> dict[str, tuple[IndexFile, ...]]:
        return releases_of(self.pages.files(self.index_url, project))

    def _try(self, what: str, read: object) -> WheelFacts | None:
        try:
            return read() if callable(read) else None
        except (SourceError, OSError) as exc:
            self.unread.append(f"{what}: {exc}")
            return None
        except Exception as exc:  # an AuditError from a damaged file: say so, go on with the rest
            from envbuilder.model.errors import EnvbuilderError

            if not isinstance(exc, EnvbuilderError):
                raise
            self.unread.append(f"{what}: {exc}")
            return None

    def torch(self, versions: Iterable[str], *, listed_only: Iterable[str] = ()) -> dict[str, ReleaseObs]:
        """torch releases, each platform's PyPI wheel read; ``listed_only`` releases get their file list only."""
        listed = self.releases("torch")
        out = {v: ReleaseObs("torch", v, listed.get(v, ()), (), self.index_url) for v in listed_only}
        for version in versions:
            files = listed.get(version, ())
            read: list[FileObs] = []
            for platform in TORCH_PLATFORMS:
                f = pick_file(files, platform)
                if f is None:
                    continue
                facts = self._try(f.filename, lambda f=f: self.reader.torch_facts(f))
                read.append(FileObs(f, platform, facts))
            out[version] = ReleaseObs("torch", version, files, tuple(read), self.index_url)
        return out

    def torch_variant(self, variant: str, version: str, platform: Platform) -> ReleaseObs | None:
        """A variant build from the PyTorch index (``<index>/<variant>/torch/``), when one is configured."""
        if not self.pytorch_index:
            return None
        index = f"{self.pytorch_index.rstrip('/')}/{variant}"
        try:
            listed = releases_of(self.pages.files(index, "torch"))
        except SourceError as exc:
            self.unread.append(f"torch {version}+{variant}: {exc}")
            return None
        files = listed.get(version, ())
        f = pick_file(files, platform)
        if f is None:  # none for this platform: the index does not serve the build the matrix names
            return ReleaseObs("torch", version, (), (), index)
        facts = self._try(f.filename, lambda: self.reader.torch_facts(f))
        return ReleaseObs("torch", version, files, (FileObs(f, platform, facts),), index)

    def bnb(self, versions: Iterable[str]) -> dict[str, ReleaseObs]:
        listed = self.releases("bitsandbytes")
        out: dict[str, ReleaseObs] = {}
        for version in versions:
            files = listed.get(version, ())
            read = []
            for platform in BNB_PLATFORMS:
                f = pick_file(files, platform)
                if f is not None:
                    read.append(FileObs(f, platform, self._try(f.filename, lambda f=f: self.reader.bnb_facts(f))))
            out[version] = ReleaseObs("bitsandbytes", version, files, tuple(read), self.index_url)
        return out

    def metadata_only(self, project: str, versions: Iterable[str]) -> dict[str, ReleaseObs]:
        """Pure-Python packages: one file per release (a pure wheel, else an sdist), its metadata."""
        listed = self.releases(project)
        out: dict[str, ReleaseObs] = {}
        for version in versions:
            files = listed.get(version, ())
            f = _pure_or_sdist(files)
            read: tuple[FileObs, ...] = ()
            if f is not None:
                facts = self._try(f.filename, lambda f=f: self.reader.metadata(f))
                read = (FileObs(f, wheel_platform(f.filename), facts),)
            out[version] = ReleaseObs(project, version, files, read, self.index_url)
        return out

    def newest(self, project: str, count: int = 1) -> list[str]:
        """The newest final releases of a project (prereleases and yanked files left out)."""
        from packaging.version import Version

        finals = [v for v in self.releases(project) if not Version(v).is_prerelease]
        return finals[-count:]


def open_upstream(
    *,
    index_url: str | None,
    pytorch_index: str | None,
    ca_cert: str | None = None,
    cache_root: Path,
    recorded: Path | None = None,
    record: Path | None = None,
    credentials: tuple[Credential, ...] = (),
) -> tuple[Upstream, Http]:
    """An ``Upstream`` over one ``Http``: online (cache under ``cache_root``), or replaying ``recorded``."""
    http = Http(ca_cert=ca_cert, credentials=credentials)
    index = http.add_index(index_url or PYPI_SIMPLE)
    pytorch = http.add_index(pytorch_index) if pytorch_index else None
    if recorded is not None:
        cache = FactsCache(recorded / "files", read_only=True)
    else:
        cache = FactsCache(cache_path("upstream", cache_root), copy_to=(record / "files") if record else None)
    pages = Pages(http, recorded=recorded, record=record)
    return Upstream(pages, Reader(http, cache), index, pytorch), http


# --------------------------------------------------------------------------- what the matrix needs


def _final_newer(listed: Iterable[str], known: Iterable[str]) -> list[str]:
    from packaging.version import Version

    top = max((Version(v) for v in known), default=None)
    return [v for v in listed if not Version(v).is_prerelease and (top is None or Version(v) > top)]


def _newest_patches(listed: Iterable[str], known: Iterable[str]) -> list[str]:
    """For each minor the matrix has, the newest final patch on the index (to tell a row is behind)."""
    from packaging.version import Version

    minors = {Version(v).release[:2] for v in known}
    best: dict[tuple[int, ...], Version] = {}
    for text in listed:
        v = Version(text)
        if not v.is_prerelease and v.release[:2] in minors and (v.release[:2] not in best or v > best[v.release[:2]]):
            best[v.release[:2]] = v
    return [str(v) for v in best.values()]


def gather(
    upstream: Upstream,
    wanted: Mapping[str, Sequence[str]],
    *,
    pytorch_builds: Iterable[tuple[str, str, Platform]] = (),
    newer: bool = True,
) -> Observed:
    """Read what the matrix names (``wanted``: package -> its versions in the matrix), the newest patch of each
    of its minors, and every newer release; ``pytorch_builds`` (variant, version, platform) from the PyTorch
    index when one is configured."""
    releases: dict[str, dict[str, ReleaseObs]] = {}
    found_newer: dict[str, tuple[str, ...]] = {}
    for package in TRACKED:
        known = list(wanted.get(package, ()))
        if not known:
            continue
        try:
            listed = list(upstream.releases(package))
        except SourceError as exc:
            upstream.unread.append(f"{package}: {exc}")
            continue
        new = _final_newer(listed, known) if newer else []
        found_newer[package] = tuple(new)
        patches = _newest_patches(listed, known) if newer else []
        versions = list(dict.fromkeys([*known, *patches, *new]))
        if package == "torch":
            from packaging.version import Version

            firsts = {f"{Version(v).major}.{Version(v).minor}.0" for v in versions} - set(versions)
            releases[package] = upstream.torch(versions, listed_only=sorted(firsts & set(listed)))
        elif package == "bitsandbytes":
            releases[package] = upstream.bnb(versions)
        else:
            releases[package] = upstream.metadata_only(package, versions)
    variants: dict[tuple[str, str, str], ReleaseObs] = {}
    for variant, version, platform in pytorch_builds:
        found = upstream.torch_variant(variant, version, platform)
        if found is not None:
            variants[(variant, version, platform)] = found
    return Observed(
        releases=releases,
        variants=variants,
        newer=found_newer,
        unread=tuple(upstream.unread),
        index=redact(upstream.index_url),
        pytorch_index=redact(upstream.pytorch_index) if upstream.pytorch_index else None,
    )


def recording_readme(root: Path) -> str:
    """The README of a recording (``refresh --record DIR``): every page and file, its URL and the date read."""
    pages = _page_index(root)
    urls: dict[str, str] = {}
    lines = [
        "# Recorded index pages and facts (`envbuilder matrix refresh --record`)",
        "",
        "Written by `envbuilder matrix refresh --record DIR`; read back by `envbuilder matrix check --upstream",
        "--recorded DIR`, which then never touches the network. `pages/` holds each project page exactly as the",
        "index served it (gzip-compressed); `files/<sha256>/` holds what the reader took out of one file by HTTP",
        "range reads: `METADATA` (or an sdist's `PKG-INFO`) and `members/torch/version.py` verbatim, and in",
        "`facts.json` the names of its native libraries and the SASS/PTX of each library's loaded GPU image (as",
        "`envbuilder.model.audit` read them; the libraries themselves are not kept: 3-100 MB each).",
        "",
        "| page | URL | read |",
        "| --- | --- | --- |",
    ]
    for key, entry in sorted(pages.items()):
        lines.append(f"| `pages/{entry.get('file')}` | {entry.get('url')} | {entry.get('read')} |")
        path = root / "pages" / str(entry.get("file", ""))
        if path.is_file():
            files = parse_project_page(
                gzip.decompress(path.read_bytes()), str(entry.get("content-type", "")), str(entry.get("url", ""))
            )
            urls.update({f.sha256: f.url for f in files if f.sha256})
        del key
    lines += ["", "| file | sha256 | read | what | URL |", "| --- | --- | --- | --- | --- |"]
    for facts_json in sorted((root / "files").glob("*/facts.json")):
        doc = read_json_object(facts_json) or {}
        sha = facts_json.parent.name
        what = [str(doc["metadata"])] if doc.get("metadata") else []
        what += [str(m) for m in doc.get("members") or ()]
        libs = doc.get("libraries") or {}
        if libs:
            what.append(f"{len(libs)} librar{'y' if len(libs) == 1 else 'ies'}")
        lines.append(
            f"| {doc.get('filename')} | `{sha[:16]}…` | {doc.get('read', '')} | {', '.join(what) or 'file list'} "
            f"| {urls.get(sha, '')} |"
        )
    return "\n".join(lines) + "\n"
