"""Package indexes over HTTP: one session with retries, byte ranges, and the Simple API (the edge the reader uses).

``Http`` is the one HTTP client of ``matrix refresh/audit/check --upstream``: one ``requests`` session with
retries on connection errors and 429/5xx answers, the configured CA bundle, and credentials kept apart from
URLs. A credentialed index is configured as ``https://user:token@mirror/simple`` (or through ``~/.netrc``, which
requests reads): the user info is taken out of the URL, sent only to that host (never to another host a page
links to), and every URL that reaches a message, a log or a cache goes through ``redact`` first.

``project_files`` reads a project page of a PEP 503 / PEP 691 index (PyPI, a mirror, the PyTorch index): JSON
where the index serves it, else HTML; each file with its sha256, size and whether the index serves its PEP 658
core metadata (``core-metadata``, or PEP 714's older ``data-dist-info-metadata``). Parsing is pure.

``requests`` is imported inside ``Http`` so that the CLI starts fast when no command needs the network.
"""

from __future__ import annotations

import html.parser
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urljoin, urlsplit

from envbuilder import __version__
from envbuilder.model.credentials import Credential, credential_for, redact, split_userinfo
from envbuilder.model.errors import SourceError

if TYPE_CHECKING:
    import requests

__all__ = [
    "BACKOFF_S",
    "CHUNK",
    "PYPI_SIMPLE",
    "RETRIES",
    "RETRY_AFTER_MAX",
    "RETRY_STATUS",
    "SIMPLE_ACCEPT",
    "SIMPLE_JSON",
    "TIMEOUT",
    "WHOLE_FILE_LIMIT",
    "Http",
    "IndexFile",
    "get_text",
    "parse_project_page",
    "parse_simple_html",
    "parse_simple_json",
    "project_page",
    "project_url",
    "split_credentials",
]

PYPI_SIMPLE = "https://pypi.org/simple"
TIMEOUT = (10.0, 60.0)  # (connect, read) seconds: a slow mirror is fine, a dead one is not
RETRIES = 3
BACKOFF_S = 0.5  # urllib3 waits 0.5, 1, 2 s between the retries
RETRY_STATUS = (429, 500, 502, 503, 504)
CHUNK = 1 << 20
# A server that ignores Range answers 200 with the whole file; below this size that is still acceptable.
WHOLE_FILE_LIMIT = 32 << 20
SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"  # PEP 691's JSON form
_JSON = SIMPLE_JSON
# PEP 691 content negotiation: JSON first, the HTML of PEP 691 next, PEP 503's plain text/html last.
SIMPLE_ACCEPT = f"{_JSON}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"


def split_credentials(url: str) -> tuple[str, Credential | None]:
    """(the URL without user info, its credential or None): ``envbuilder.model.credentials``, the one place."""
    return split_userinfo(url)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


# --------------------------------------------------------------------------- the session


@dataclass
class Http:
    """One HTTP session for every read of a command; counts the bytes it received (``bytes_in``)."""

    ca_cert: str | None = None
    timeout: tuple[float, float] = TIMEOUT
    retries: int = RETRIES
    bytes_in: int = 0
    requests_made: int = 0
    credentials: tuple[Credential, ...] = field(default=(), repr=False)
    _session: requests.Session | None = field(default=None, repr=False)

    def add_index(self, url: str) -> str:
        """Register an index URL; its credentials (if any) are kept apart. Returns the clean URL."""
        clean, credential = split_credentials(url)
        if credential is not None and credential not in self.credentials:
            self.credentials = (*self.credentials, credential)
        return clean

    def _auth_for(self, url: str) -> tuple[str, str] | None:
        """The credential of the index ``url`` lies under, else of an index on the same host and port (a
        mirror's files live beside its /simple pages); never one of another host."""
        found = credential_for(url, self.credentials) or next(
            (c for c in self.credentials if _origin(c.prefix) == _origin(url)), None
        )
        return (found.username, found.password) if found else None

    def _get_session(self) -> requests.Session:
        if self._session is None:
            import requests  # kept out of CLI start-up
            from requests.adapters import HTTPAdapter

            retry = _bounded_retry()(
                total=self.retries,
                backoff_factor=BACKOFF_S,
                status_forcelist=RETRY_STATUS,
                allowed_methods=frozenset({"GET", "HEAD"}),
                respect_retry_after_header=True,
                raise_on_status=False,
            )
            session = requests.Session()
            session.headers["User-Agent"] = f"envbuilder/{__version__}"
            session.mount("https://", HTTPAdapter(max_retries=retry))
            session.mount("http://", HTTPAdapter(max_retries=retry))
            if self.ca_cert:
                session.verify = self.ca_cert
            self._session = session
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> Http:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, url: str, headers: Mapping[str, str], *, stream: bool = False) -> requests.Response:
        import requests  # kept out of CLI start-up

        clean, inline = split_credentials(url)
        auth = (inline.username, inline.password) if inline else self._auth_for(clean)
        self.requests_made += 1
        try:
            return self._get_session().get(clean, headers=dict(headers), timeout=self.timeout, stream=stream, auth=auth)
        except requests.RequestException as exc:
            raise _unreachable(clean, exc) from None

    def get(self, url: str, *, accept: str | None = None) -> tuple[bytes, str, str]:
        """(body, content type, final URL) of a 200 answer; anything else is a ``SourceError``."""
        resp = self._request(url, {"Accept": accept} if accept else {})
        with resp:
            _check_status(resp, url, 200)
            body = resp.content
        self.bytes_in += len(body)
        return body, resp.headers.get("Content-Type", ""), resp.url

    def answer(
        self, url: str, headers: Mapping[str, str], *, limit: int = WHOLE_FILE_LIMIT
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of any answer, 401 included: for protocols that read their refusals (a
        registry's token exchange). Retries as ``get``; a body over ``limit`` bytes is refused."""
        resp = self._request(url, headers, stream=True)
        with resp:
            body = b""
            for block in resp.iter_content(CHUNK):
                body += block
                if len(body) > limit:
                    msg = f"{redact(url)} answered more than {limit} bytes"
                    raise SourceError(msg, hint="is this the right URL?")
            self.bytes_in += len(body)
            return resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, body

    def read_range(self, url: str, start: int, length: int, *, total: int | None = None) -> bytes:
        """Exactly ``length`` bytes at ``start`` (fewer only at the end of the file)."""
        if length <= 0:
            return b""
        return b"".join(self.stream_range(url, start, length, total=total))

    def stream_range(self, url: str, start: int, length: int, *, total: int | None = None) -> Iterator[bytes]:
        """The bytes ``[start, start+length)`` in blocks, as they arrive (for inflating on the fly)."""
        resp = self._request(url, {"Range": f"bytes={start}-{start + length - 1}"}, stream=True)
        with resp:
            _check_status(resp, url, 200, 206)
            skip = 0
            if resp.status_code == 200:  # the server ignored the Range: tolerable only for a small file
                size = int(resp.headers.get("Content-Length") or total or 0)
                if not size or size > WHOLE_FILE_LIMIT:
                    raise _no_ranges(url, size)
                skip = start
            want = length
            for received in resp.iter_content(CHUNK):
                self.bytes_in += len(received)
                cut = min(skip, len(received))
                block, skip = received[cut:][:want], skip - cut
                if block:
                    yield block
                    want -= len(block)
                if want <= 0:
                    break

    def read_tail(self, url: str, length: int) -> tuple[bytes, int]:
        """(the last ``length`` bytes, the file's whole size): a suffix range, so the size need not be known."""
        resp = self._request(url, {"Range": f"bytes=-{length}"}, stream=True)
        with resp:
            _check_status(resp, url, 200, 206)
            if resp.status_code == 206:
                total = _total_from_content_range(resp.headers.get("Content-Range", ""), url)
                body = resp.content
                self.bytes_in += len(body)
                return body, total
            size = int(resp.headers.get("Content-Length") or 0)
            if not size or size > WHOLE_FILE_LIMIT:
                raise _no_ranges(url, size)
            body = resp.content
            self.bytes_in += len(body)
            return body[-length:], len(body)


RETRY_AFTER_MAX = 10.0  # seconds: a busy index's Retry-After is honoured up to this, so a retry stays bounded


def _bounded_retry() -> type[Any]:
    """urllib3's Retry with the wait a ``Retry-After`` header asks for capped at ``RETRY_AFTER_MAX`` (urllib3's
    own cap is six hours: a mirror answering ``429 Retry-After: 3600`` would hold a command for an hour)."""
    from urllib3.util.retry import Retry

    class BoundedRetry(Retry):
        def get_retry_after(self, response: Any) -> float | None:
            after = super().get_retry_after(response)
            return None if after is None else min(after, RETRY_AFTER_MAX)

    return BoundedRetry


def _total_from_content_range(header: str, url: str) -> int:
    match = re.fullmatch(r"bytes \d+-\d+/(\d+)", header.strip())
    if not match:
        msg = f"{redact(url)} answered a range without its total size (Content-Range: {header!r})"
        raise SourceError(msg, hint="the index or a proxy in between rewrites range answers: try another mirror")
    return int(match.group(1))


def _no_ranges(url: str, size: int) -> SourceError:
    mb = f"{size / 1e6:.0f} MB" if size else "the whole file"
    msg = f"{redact(url)} does not serve byte ranges: reading its metadata would download {mb}"
    return SourceError(msg, hint="use an index or mirror that honours HTTP Range requests (PyPI does)")


def _unreachable(url: str, exc: Exception) -> SourceError:
    msg = f"cannot reach {redact(url)} ({type(exc).__name__})"
    return SourceError(msg, hint="check the network, the proxy and the CA bundle (--ca-cert), then try again")


def get_text(url: str, what: str) -> str:
    """A text document over HTTP(S) through the same session, retries and errors as the index requests
    (``matrix refresh --pci-ids`` downloads the PCI ID database with it)."""
    with Http() as http:
        try:
            body, content_type, _ = http.get(url)
        except SourceError as exc:
            msg = f"{exc.message} (for {what})"
            raise SourceError(msg, hint="check the URL, or give a local file instead") from None
    charset = content_type.partition("charset=")[2].split(";")[0].strip() or "utf-8"
    return body.decode(charset, errors="replace")


def _check_status(resp: requests.Response, url: str, *ok: int) -> None:
    if resp.status_code in ok:
        return
    where = redact(url)
    if resp.status_code in {401, 403}:
        msg = f"{where} answered HTTP {resp.status_code}: the index wants credentials, or refused them"
        hint = "put them in the index URL (https://user:token@host/...) or in ~/.netrc; they are never printed"
        raise SourceError(msg, hint=hint)
    if resp.status_code == 404:
        msg = f"{where} is not on the index (HTTP 404)"
        raise SourceError(msg, hint="check the package name and the index URL")
    msg = f"{where} answered HTTP {resp.status_code}"
    raise SourceError(msg, hint="the index may be down: try again later")


# --------------------------------------------------------------------------- index pages (pure parsing)


@dataclass(frozen=True, slots=True)
class IndexFile:
    """One file of a project page, as the index lists it."""

    filename: str
    url: str  # absolute, without user info
    sha256: str | None
    size: int | None = None
    requires_python: str | None = None
    upload_time: str | None = None  # ISO 8601, where the index says (PEP 700)
    yanked: bool = False
    metadata_sha256: str | None = None  # PEP 658/714: the core metadata file's hash ("" when served, hash unknown)

    @property
    def serves_metadata(self) -> bool:
        return self.metadata_sha256 is not None

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")


def _metadata_hash(value: object) -> str | None:
    """PEP 658/714: ``true`` or ``{"sha256": ...}`` means the index serves ``<url>.metadata``."""
    if isinstance(value, dict):
        return str(value.get("sha256") or "")
    return "" if value is True else None


def parse_simple_json(doc: Mapping[str, Any], base_url: str) -> tuple[IndexFile, ...]:
    """The files of a PEP 691 JSON project page; URLs resolved against ``base_url``."""
    out: list[IndexFile] = []
    for item in doc.get("files") or ():
        if not isinstance(item, dict) or not item.get("filename") or not item.get("url"):
            continue
        hashes = item.get("hashes") or {}
        meta = item.get("core-metadata", item.get("data-dist-info-metadata"))
        size = item.get("size")
        out.append(
            IndexFile(
                filename=str(item["filename"]),
                url=split_credentials(urljoin(base_url, str(item["url"])))[0],
                sha256=str(hashes["sha256"]) if isinstance(hashes, dict) and hashes.get("sha256") else None,
                size=int(size) if isinstance(size, int) else None,
                requires_python=str(item["requires-python"]) if item.get("requires-python") else None,
                upload_time=str(item["upload-time"]) if item.get("upload-time") else None,
                yanked=bool(item.get("yanked")),
                metadata_sha256=_metadata_hash(meta),
            )
        )
    return tuple(out)


class _Anchors(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open, self._text = dict(attrs), []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.found.append((self._open, "".join(self._text).strip()))
            self._open = None


def _html_metadata(attrs: Mapping[str, str | None]) -> str | None:
    for key in ("data-core-metadata", "data-dist-info-metadata"):
        if key in attrs:
            value = attrs[key] or "true"
            return value.split("=", 1)[1] if value.startswith("sha256=") else ""
    return None


def parse_simple_html(text: str, base_url: str) -> tuple[IndexFile, ...]:
    """The files of a PEP 503 HTML project page (the PyTorch index, most mirrors); URLs against ``base_url``."""
    parser = _Anchors()
    parser.feed(text)
    out: list[IndexFile] = []
    for attrs, label in parser.found:
        href = attrs.get("href")
        if not href:
            continue
        url = split_credentials(urljoin(base_url, href))[0]
        path, _, fragment = url.partition("#")
        sha = fragment.split("=", 1)[1] if fragment.startswith("sha256=") else None
        filename = unquote(path.rsplit("/", 1)[-1]) or label
        out.append(
            IndexFile(
                filename=filename,
                url=path,
                sha256=sha,
                requires_python=attrs.get("data-requires-python") or None,
                yanked="data-yanked" in attrs,
                metadata_sha256=_html_metadata(attrs),
            )
        )
    return tuple(out)


def project_url(index_url: str, project: str) -> str:
    """``<index>/<normalized name>/`` (PEP 503)."""
    from packaging.utils import canonicalize_name

    return f"{index_url.rstrip('/')}/{canonicalize_name(project)}/"


def parse_project_page(body: bytes, content_type: str, url: str) -> tuple[IndexFile, ...]:
    """A project page as JSON (PEP 691) or HTML (PEP 503), by its content type."""
    import json

    text = body.decode("utf-8", errors="replace")
    if content_type.split(";", 1)[0].strip() == _JSON or text.lstrip().startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            msg = f"{redact(url)} answered JSON that cannot be read"
            raise SourceError(msg, hint="is this a PEP 691 index?") from None
        if not isinstance(doc, dict):
            msg = f"{redact(url)} answered JSON that is not a project page"
            raise SourceError(msg, hint="is this a PEP 691 index?")
        return parse_simple_json(doc, url)
    return parse_simple_html(text, url)


def project_page(http: Http, index_url: str, project: str) -> tuple[bytes, str, str]:
    """(body, content type, URL) of a project page; JSON preferred."""
    url = project_url(index_url, project)
    return http.get(url, accept=SIMPLE_ACCEPT)
