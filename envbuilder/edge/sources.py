"""Package sources at the edge: pip's own configuration, the PyTorch index's reachability, wheelhouses.

Corporate and air-gapped users keep their mirror, wheelhouse and CA bundle in pip's configuration, which uv
does not read; envbuilder honours it explicitly and says so in its output.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

from envbuilder.edge._fs import read_json_object, write_text_atomic
from envbuilder.edge.settings import Settings, cache_path, env_flag
from envbuilder.model.credentials import credential_for, redact
from envbuilder.model.errors import SourceError
from envbuilder.resolve import Sources

if TYPE_CHECKING:
    import ssl
    import urllib.request

__all__ = [
    "apply_pip_config",
    "gather_sources",
    "list_wheelhouse",
    "parse_index_page",
    "parse_pip_config",
    "parse_pip_ini",
    "pip_config_files",
    "reachable",
    "read_pip_config",
    "read_torch_pages",
]

_PIP_LINE = re.compile(r"^(?P<scope>[\w:.-]*)\.(?P<key>[\w-]+)='(?P<value>.*)'$")
_PIP_KEYS = {"index-url", "extra-index-url", "find-links", "cert"}


def parse_pip_config(text: str) -> dict[str, list[str]]:
    """``pip config list`` output -> {key: [values]}; later scopes (env) override earlier ones."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = _PIP_LINE.match(line.strip())
        if not match or match["key"] not in _PIP_KEYS:
            continue
        values = match["value"].split()
        found[match["key"]] = values
    return found


def pip_config_files(environ: Mapping[str, str], home: Path, prefix: Path, *, windows: bool = False) -> list[Path]:
    """pip's configuration files in its order of precedence, lowest first (pip's "Configuration" docs).

    global (XDG_CONFIG_DIRS/pip/pip.conf, /etc/pip.conf), user (~/.pip/pip.conf, then
    XDG_CONFIG_HOME/pip/pip.conf), site (<sys.prefix>/pip.conf), then PIP_CONFIG_FILE. On Windows the
    same places with pip.ini under ProgramData and APPDATA.
    """
    name = "pip.ini" if windows else "pip.conf"
    if windows:
        files = [Path(environ.get("PROGRAMDATA", "C:/ProgramData")) / "pip" / name]
        files += [home / "pip" / name, Path(environ.get("APPDATA", str(home / "AppData" / "Roaming"))) / "pip" / name]
    else:
        xdg_dirs = [d for d in environ.get("XDG_CONFIG_DIRS", "/etc/xdg").split(":") if d]
        files = [Path(d) / "pip" / name for d in reversed(xdg_dirs)] + [Path("/etc") / name]
        files += [home / ".pip" / name, Path(environ.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / name]
    files.append(prefix / name)
    if environ.get("PIP_CONFIG_FILE"):
        files.append(Path(environ["PIP_CONFIG_FILE"]))
    return files


def parse_pip_ini(texts: list[str], environ: Mapping[str, str]) -> dict[str, list[str]]:
    """The keys envbuilder honours, from pip's INI files (lowest precedence first) and PIP_* variables.

    Sections [global] then [install] (the command envbuilder stands in for); a later file overrides an
    earlier one; environment variables override files, as in pip.
    """
    import configparser

    found: dict[str, list[str]] = {}
    for text in texts:
        parser = configparser.RawConfigParser()
        try:
            parser.read_string(text)
        except configparser.Error:
            continue  # pip itself would refuse the file; envbuilder just does not take anything from it
        for section in ("global", "install"):
            if parser.has_section(section):
                for key in _PIP_KEYS:
                    if parser.has_option(section, key):
                        found[key] = parser.get(section, key).split()
    for key in _PIP_KEYS:
        value = environ.get("PIP_" + key.upper().replace("-", "_"))
        if value:
            found[key] = value.split()
    return found


def read_pip_config() -> dict[str, list[str]]:
    """pip's configuration, read the way pip reads it (no `pip config list` subprocess: ~0.2-0.8 s saved).

    tests/test_sources.py checks that this agrees with `pip config list` on the machine it runs on.
    """
    if os.environ.get("PIP_CONFIG_FILE") == os.devnull or env_flag("PIP_NO_CONFIG"):
        return parse_pip_ini([], os.environ)
    texts = []
    for path in pip_config_files(os.environ, Path.home(), Path(sys.prefix), windows=sys.platform == "win32"):
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
    return parse_pip_ini(texts, os.environ)


def apply_pip_config(settings: Settings, config: Mapping[str, list[str]]) -> Settings:
    """Honour pip's index-url, find-links and cert; name each in ``notes`` so the output says so.

    pip's extra-index-url is reported, not used: with exact pins a partial extra index would shadow PyPI
    (uv searches indexes in order); pass --extra-index-url explicitly to add one.
    """
    notes = list(settings.notes)
    index_url = settings.index_url
    if not index_url and config.get("index-url"):
        index_url = config["index-url"][0]
        notes.append(f"using pip's index-url {redact(index_url)}")
    links = list(settings.find_links)
    for d in config.get("find-links", []):
        path = d.removeprefix("file://")
        if path not in links and Path(path).is_dir():
            links.append(path)
            notes.append(f"using pip's find-links {path}")
    certs = list(settings.ca_certs)
    for cert in config.get("cert", []):
        if cert not in certs and Path(cert).is_file():
            certs.append(cert)
            notes.append(f"using pip's cert {cert}")
    if config.get("extra-index-url"):
        notes.append(
            "not using pip's extra-index-url ("
            + " ".join(redact(u) for u in config["extra-index-url"])
            + "): pass --extra-index-url to add it"
        )
    return replace(settings, index_url=index_url, find_links=tuple(links), ca_certs=tuple(certs), notes=tuple(notes))


def list_wheelhouse(dirs: tuple[str, ...]) -> tuple[str, ...]:
    names: list[str] = []
    for d in dirs:
        try:
            names += [n for n in os.listdir(d) if n.endswith(".whl")]
        except OSError:
            continue
    return tuple(sorted(set(names)))


def reachable(url: str, settings: Settings, timeout: float = 5.0) -> bool:
    """Can ``url`` be reached within a few seconds? (never hangs: connect and read time-outs).

    The stdlib client honours the same proxy variables as pip and uv and costs no `requests` import at
    start-up; an answer is kept for a few minutes (``_REACH_TTL_S``), so commands in a row probe once.
    ``url`` carries no userinfo (settings keep it apart); a credential for it goes in an Authorization header,
    which is also how urllib, which refuses userinfo in a URL, can probe a credentialed mirror.
    """
    if settings.offline:
        return False
    cached = _reach_cache(settings).get(url)
    if cached is not None:
        return cached
    import ssl
    import urllib.error
    import urllib.request

    if not url.startswith(("https://", "http://")):
        return url.startswith("file://") and Path(url.removeprefix("file://")).exists()
    context = ssl.create_default_context(cafile=settings.ca_certs[0] if settings.ca_certs else None)
    credential = credential_for(url, settings.credentials)
    headers = {"Authorization": credential.basic()} if credential else {}
    request = urllib.request.Request(url.rstrip("/") + "/", method="HEAD", headers=headers)  # noqa: S310  # http(s) only, checked above
    from envbuilder.edge.pypi import BACKOFF_S, RETRIES

    deadline = time.monotonic() + timeout
    for attempt in range(RETRIES + 1):
        answer = _probe(request, context, min(timeout, deadline - time.monotonic()), credential is not None)
        wait = BACKOFF_S * 2**attempt
        if answer != "retry" or attempt == RETRIES or time.monotonic() + wait >= deadline:
            break
        time.sleep(wait)
    ok = answer == "yes"
    _reach_cache(settings).put(url, ok)
    return ok


# The reader's bounded retries (pypi.RETRIES, BACKOFF_S, RETRY_STATUS), inside the probe's one time-out: a reset
# or refused connection or a busy index is asked again; a name that does not resolve, a time-out, a TLS failure
# or a refusal of the credential is an answer. The whole probe never takes longer than ``timeout``.


def _probe(request: urllib.request.Request, context: ssl.SSLContext, timeout: float, credentialed: bool) -> str:
    """One HEAD request: ``"yes"`` (the host serves), ``"no"``, or ``"retry"`` (a transient failure)."""
    import socket
    import ssl
    import urllib.error
    import urllib.request

    from envbuilder.edge.pypi import RETRY_STATUS

    try:
        with urllib.request.urlopen(request, timeout=max(timeout, 0.1), context=context) as response:  # noqa: S310  # http(s) only
            status = int(response.status)
    except urllib.error.HTTPError as exc:  # an answer, even 404, means the host serves
        status = exc.code
    except urllib.error.URLError as exc:
        return "no" if isinstance(exc.reason, (socket.gaierror, TimeoutError, ssl.SSLError)) else "retry"
    except (TimeoutError, ValueError):
        return "no"
    except OSError:  # a connection reset or closed mid-answer
        return "retry"
    if status in RETRY_STATUS:
        return "retry"
    return "yes" if status < 500 and not (credentialed and status in {401, 403}) else "no"


_REACH_TTL_S = 600


class _ReachCache:
    """Reachability answers by URL, for ``_REACH_TTL_S`` seconds, in the cache directory.

    The file is outside input like any other: an entry that is not ``[bool, number]`` counts as absent."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, list[object]]:
        return read_json_object(self.path) or {}

    def get(self, url: str) -> bool | None:
        entry = self._load().get(url)
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], bool)):
            return None
        stamp = entry[1]
        if isinstance(stamp, bool) or not isinstance(stamp, (int, float)):
            return None
        return entry[0] if 0 <= time.time() - stamp < _REACH_TTL_S else None

    def put(self, url: str, ok: bool) -> None:
        data = self._load()
        data[redact(url)] = [ok, time.time()]
        with contextlib.suppress(OSError):  # an unwritable cache only costs the next probe
            write_text_atomic(self.path, json.dumps(data))


def _reach_cache(settings: Settings) -> _ReachCache:
    return _ReachCache(cache_path("reachable.json", settings.cache_dir))


# --------------------------------------------------------------------------- the PyTorch index's torch pages

_PAGE_TTL_S = 600
_PAGE_MAX_BYTES = 32 * 1024 * 1024  # the real cu128 page is well under 1 MB; a page is never read without end


class _Links(HTMLParser):
    """The wheel file names a PEP 503 page links to (the last part of each href, unquoted)."""

    def __init__(self) -> None:
        super().__init__()
        self.files: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href") if tag == "a" else None
        if href:
            name = urllib.parse.unquote(href.split("#", 1)[0].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])
            if name.endswith(".whl"):
                self.files.append(name)


def parse_index_page(html: str) -> tuple[str, ...]:
    """A PEP 503 project page -> the wheel file names it lists (pure)."""
    links = _Links()
    links.feed(html)
    links.close()
    return tuple(sorted(set(links.files)))


def _read_page(url: str, settings: Settings, timeout: float) -> tuple[str, ...] | None:
    """The wheels a page lists; () when the index answers that it has no such page (404); None when unreadable.

    Through the Simple API of the index as configured (a mirror such as devpi, Artifactory or Nexus serves it,
    where few serve PyPI's JSON API): PEP 691 JSON where the index offers it, else PEP 503 HTML; over
    ``pypi.Http``, so with its retries (connection errors, 429 and 5xx; bounded, with backoff), the CA bundle
    and the index's credentials, sent to that host only.
    """
    from envbuilder.edge.pypi import SIMPLE_ACCEPT, SIMPLE_JSON, Http, parse_simple_json

    http = Http(
        ca_cert=settings.ca_certs[0] if settings.ca_certs else None,
        timeout=(timeout, timeout),
        credentials=settings.credentials,
    )
    with http:
        try:
            status, headers, body = http.answer(url, {"Accept": SIMPLE_ACCEPT}, limit=_PAGE_MAX_BYTES)
            if status in {404, 410}:
                return ()
            if status != 200:
                return None
        except SourceError:  # unreachable, or a page too large to be one
            return None
    if headers.get("content-type", "").split(";", 1)[0].strip() != SIMPLE_JSON:
        return parse_index_page(body.decode("utf-8", errors="replace"))
    try:
        doc = json.loads(body)
        files = parse_simple_json(doc, url) if isinstance(doc, dict) else None
    except (ValueError, TypeError, AttributeError):  # JSON that is no PEP 691 project page
        return None
    return None if files is None else tuple(sorted({f.filename for f in files if f.is_wheel}))


def _cached_page(entry: object) -> tuple[str, ...] | None:
    """A cache entry ``[time, [file, ...]]`` younger than ``_PAGE_TTL_S``; anything else is no entry."""
    if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], (int, float))):
        return None
    if time.time() - float(entry[0]) >= _PAGE_TTL_S or not isinstance(entry[1], list):
        return None
    return tuple(str(f) for f in entry[1])


def read_torch_pages(
    base: str, variants: Sequence[str], settings: Settings, timeout: float = 10.0
) -> dict[str, tuple[str, ...]]:
    """What ``<base>/<variant>/torch/`` lists, for each variant whose page could be read (all at once).

    Kept for ``_PAGE_TTL_S`` seconds in the cache directory, so commands in a row read each page once.
    """
    from concurrent.futures import ThreadPoolExecutor

    if not base.startswith(("https://", "http://")):
        return {}
    cache_path = settings.cache_dir / "pytorch-pages.json"
    cache = read_json_object(cache_path) or {}
    urls = {v: f"{base.rstrip('/')}/{v}/torch/" for v in variants}
    found: dict[str, tuple[str, ...]] = {}
    for variant, url in urls.items():
        cached = _cached_page(cache.get(url))
        if cached is not None:
            found[variant] = cached
    todo = [v for v in urls if v not in found]
    if todo:
        with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
            pages = list(pool.map(lambda v: _read_page(urls[v], settings, timeout), todo))
        for variant, files in zip(todo, pages, strict=True):
            if files is not None:
                found[variant] = files
                cache[urls[variant]] = [time.time(), list(files)]
        with contextlib.suppress(OSError):  # an unwritable cache only costs the next read
            write_text_atomic(cache_path, json.dumps(cache))
    return found


def gather_sources(settings: Settings, variants: Sequence[str] = ()) -> Sources:
    """What the configured sources can serve, probed once (seconds at most).

    ``variants`` are the torch variants the plan could take from the PyTorch index (``resolve.index_variants``):
    their torch pages are read, so the plan holds what the index (or its mirror) lists, not what the matrix
    assumes it holds.
    """
    notes = list(settings.notes)
    pytorch = settings.pytorch_index
    if pytorch and settings.check_pytorch_index and not reachable(pytorch, settings):
        notes.append(
            f"the PyTorch index {redact(pytorch)} cannot be reached: only PyPI builds and the wheelhouse are used"
        )
        pytorch = None
    if settings.offline:
        notes.append("offline: only the wheelhouse and uv's cache are used")
        pytorch = None
    files = None
    if pytorch and variants and settings.check_pytorch_index:
        files = read_torch_pages(pytorch, variants, settings)
        unread = [v for v in variants if v not in files]
        if unread:
            notes.append(
                f"could not read the torch page of {pytorch} for {', '.join(unread)}: "
                "those builds are assumed from the matrix and ranked lower"
            )
    return Sources(
        pypi=not settings.offline,
        pytorch_index=pytorch,
        wheelhouse=list_wheelhouse(settings.find_links),
        wheelhouse_dirs=settings.find_links,
        notes=tuple(notes),
        pytorch_files=files,
    )
