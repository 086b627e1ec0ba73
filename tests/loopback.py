"""The tests' HTTP servers on 127.0.0.1, in one module.

``serve_index`` (the session's package index, fixture ``loopback_index`` in conftest.py): one server on one
port for the whole session, a PyTorch mirror and a PyPI mirror, open or behind credentials per test. uv reads
it, and uv caches a wheel per index URL, so every test that hands torch to uv shares the one URL.

``serve``: the reader's tests: a PEP 503 index with byte ranges (envbuilder's own HTTP client reads it, not uv).

It serves real files (the torch CPU wheel in the wheelhouse, wheels the tests build from the fatbin fixtures)
the way PyPI and most mirrors do: HTML project pages (PEP 691 JSON ones to a client that asks for them),
``Range: bytes=a-b`` and suffix ranges (206 with Content-Range), optional Basic auth, and, to test the failure
paths, a mode that ignores ranges and a number of 503 (or 429, with a Retry-After) answers before the first
real one. Every request is logged (path, Range, whether it carried credentials), so tests can assert how many
bytes the reader took and where credentials went.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote

_JSON = "application/vnd.pypi.simple.v1+json"


@dataclass
class Served:
    """What the server holds and how it behaves; ``log`` fills as requests arrive."""

    files: dict[str, Path | bytes] = field(default_factory=dict)  # "/files/name.whl" -> file or bytes
    pages: dict[str, str] = field(default_factory=dict)  # "/simple/torch/" -> HTML
    # PEP 691: "/simple/torch/" -> the JSON form, served to a client whose Accept names it (content negotiation)
    json_pages: dict[str, str] = field(default_factory=dict)
    credentials: tuple[str, str] | None = None
    ignore_ranges: bool = False
    fail_first: int = 0  # answer 503 to this many requests first
    fail_status: int = 503  # or 429 (too many requests)
    retry_after: str | None = None  # the Retry-After header of those answers
    log: list[tuple[str, str | None, bool]] = field(default_factory=list)
    sent: int = 0  # body bytes sent

    def add_wheel(self, project: str, path: Path | None = None, *, name: str | None = None, data: bytes = b"") -> None:
        """Serve a file under /files/ and list it (with its sha256) on /simple/<project>/."""
        filename = name or (path.name if path else "")
        digest = hashlib.sha256(path.read_bytes() if path else data).hexdigest()
        self.files[f"/files/{filename}"] = path if path is not None else data
        link = f'<a href="/files/{quote(filename)}#sha256={digest}">{html.escape(filename)}</a><br/>\n'
        page = self.pages.get(f"/simple/{project}/", "<!DOCTYPE html><html><body>\n")
        self.pages[f"/simple/{project}/"] = page.replace("</body></html>\n", "") + link + "</body></html>\n"


class _Handler(BaseHTTPRequestHandler):
    served: Served

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def _authorized(self) -> bool:
        if self.served.credentials is None:
            return True
        user, password = self.served.credentials
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        return self.headers.get("Authorization") == f"Basic {token}"

    def do_GET(self) -> None:
        path = unquote(self.path.split("?", 1)[0])
        self.served.log.append((path, self.headers.get("Range"), "Authorization" in self.headers))
        if self.served.fail_first > 0:
            self.served.fail_first -= 1
            after = {"Retry-After": self.served.retry_after} if self.served.retry_after else {}
            self._send(self.served.fail_status, b"busy", after)
            return
        if not self._authorized():
            self._send(401, b"credentials needed", {"WWW-Authenticate": 'Basic realm="x"'})
            return
        if path in self.served.json_pages and _JSON in self.headers.get("Accept", ""):
            self._send(200, self.served.json_pages[path].encode(), {"Content-Type": _JSON})
            return
        if path in self.served.pages:
            self._send(200, self.served.pages[path].encode(), {"Content-Type": "text/html"})
            return
        source = self.served.files.get(path)
        if source is None:
            self._send(404, b"not found")
            return
        data = source.read_bytes() if isinstance(source, Path) else source
        self._send_file(data)

    def _send_file(self, data: bytes) -> None:
        wanted = self.headers.get("Range")
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", wanted or "")
        if self.served.ignore_ranges or not match:
            self._send(200, data, {"Content-Type": "application/octet-stream"})
            return
        first, last = match.groups()
        if first == "":
            start, end = max(0, len(data) - int(last)), len(data) - 1
        else:
            start, end = int(first), min(len(data) - 1, int(last) if last else len(data) - 1)
        headers = {"Content-Range": f"bytes {start}-{end}/{len(data)}", "Content-Type": "application/octet-stream"}
        self._send(206, data[start : end + 1], headers)

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.served.sent += len(body)


@contextmanager
def serve(served: Served) -> Iterator[str]:
    """Run the server for the duration of the block; yields its base URL (http://127.0.0.1:PORT)."""
    handler = type("Handler", (_Handler,), {"served": served})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- the session's package index

# One port for the whole session, and from run to run: uv caches a registry wheel by its index URL, so every
# new port stores another unpacked copy of the 700 MB torch wheel in ~/.cache/uv.
STABLE_PORT = 47651
PYPI = "https://pypi.org/simple"
PYPI_FILES = "https://files.pythonhosted.org/"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _metadata(wheel: Path) -> bytes:
    import zipfile

    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        return zf.read(name)


@dataclass
class Site:
    """A part of the index a test uses (``/whl`` the PyTorch mirror, ``/simple`` and ``/files`` the PyPI
    mirror), the credentials it asks for (None: open), and the requests it answered: (path, authorised)."""

    index: Index
    prefixes: tuple[str, ...]
    user: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        return self.index.url

    def with_auth(self, path: str) -> str:
        host = self.url.removeprefix("http://")
        return f"http://{self.user}:{self.password}@{host}{path}"

    @property
    def requests(self) -> list[tuple[str, bool]]:
        return [(p, ok) for p, ok in self.index.requests if p.startswith(self.prefixes)]

    @property
    def authorised(self) -> list[str]:
        return [p for p, ok in self.requests if ok]


@dataclass
class Index:
    """The session's index on loopback: ``/whl/<variant>/`` laid out as download.pytorch.org is (the project
    page at ``cpu/torch/``, the file one level up, ``+`` percent-encoded, PEP 658 metadata beside it), and
    ``/simple`` passing PyPI's pages through with their files served back from ``/files``. A site that has
    credentials answers 401 to a request without them (any site's pair is accepted: the sites share a host, so
    a client may send either)."""

    url: str
    wheels: dict[str, Path]
    requests: list[tuple[str, bool]] = field(default_factory=list)
    sites: list[Site] = field(default_factory=list)

    @property
    def pytorch(self) -> str:
        return f"{self.url}/whl"

    @contextmanager
    def site(self, *prefixes: str, user: str | None = None, password: str | None = None) -> Iterator[Site]:
        """Serve ``prefixes`` behind ``user``:``password`` (or open) for the duration of the block."""
        site = Site(self, prefixes, user, password)
        self.sites.append(site)
        try:
            yield site
        finally:
            self.sites.remove(site)

    def _site(self, path: str) -> Site | None:
        return next((s for s in reversed(self.sites) if path.startswith(s.prefixes)), None)

    def authorised(self, path: str, header: str | None) -> bool:
        site = self._site(path)
        if site is None or site.user is None:
            return True
        tokens = {
            base64.b64encode(f"{s.user}:{s.password}".encode()).decode() for s in self.sites if s.user is not None
        }
        return header is not None and header.removeprefix("Basic ") in tokens and header.startswith("Basic ")


class _IndexHandler(BaseHTTPRequestHandler):
    index: Index

    def log_message(self, format: str, *args: object) -> None:  # quiet: the tests read ``index.requests``
        return

    def _send(self, code: int, body: bytes, ctype: str = "text/html") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if code == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="envbuilder-test"')
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        ok = self.index.authorised(path, self.headers.get("Authorization"))
        self.index.requests.append((path, ok))
        if not ok:
            self._send(401, b"credentials required")
        elif path.startswith("/whl/"):
            self._pytorch(path)
        elif path.startswith("/simple/"):
            self._pypi(path)
        elif path.startswith("/files/"):
            code, body, ctype = self._upstream(PYPI_FILES + path.removeprefix("/files/"), None)
            self._send(code, body, ctype)
        else:
            self._send(404, b"not found")

    def _pytorch(self, path: str) -> None:
        parts = [unquote(p) for p in path.split("/") if p]  # whl, variant[, project | file]
        wheels = self.index.wheels
        if len(parts) == 2:
            body = "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted({_normalise(n.split("-")[0]) for n in wheels}))
            self._send(200, f"<html><body>\n{body}</body></html>".encode())
        elif len(parts) == 3 and parts[2] in wheels:
            self._send(200, wheels[parts[2]].read_bytes(), "application/octet-stream")
        elif len(parts) == 3 and parts[2].removesuffix(".metadata") in wheels:
            self._send(200, _metadata(wheels[parts[2].removesuffix(".metadata")]), "application/octet-stream")
        elif len(parts) == 3:
            names = [n for n in wheels if _normalise(n.split("-")[0]) == _normalise(parts[2])]
            links = "".join(
                f'<a href="/whl/{parts[1]}/{quote(n)}#sha256={hashlib.sha256(wheels[n].read_bytes()).hexdigest()}"'
                f' data-dist-info-metadata="true">{html.escape(n)}</a><br/>\n'
                for n in names
            )
            self._send(200 if names else 404, f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n".encode())
        else:
            self._send(404, b"not found")

    def _upstream(self, url: str, accept: str | None) -> tuple[int, bytes, str]:
        import urllib.error
        import urllib.request

        req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:  # https PyPI only
                return resp.status, resp.read(), resp.headers.get("Content-Type", "text/html")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), "text/plain"

    def _pypi(self, path: str) -> None:
        code, body, ctype = self._upstream(PYPI + path.removeprefix("/simple"), self.headers.get("Accept"))
        self._send(code, body.replace(PYPI_FILES.encode(), f"{self.index.url}/files/".encode()), ctype)


@contextmanager
def serve_index(wheels: list[Path]) -> Iterator[Index]:
    """The index on ``STABLE_PORT`` if it is free, else on an ephemeral port, for the duration of the block."""
    try:
        server = ThreadingHTTPServer(("127.0.0.1", STABLE_PORT), BaseHTTPRequestHandler)
    except OSError:  # taken (another run at the same time): any free port
        server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    index = Index(url=f"http://127.0.0.1:{server.server_address[1]}", wheels={w.name: w for w in wheels})
    server.RequestHandlerClass = type("Handler", (_IndexHandler,), {"index": index})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield index
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
