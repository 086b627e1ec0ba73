"""A package index on loopback that requires HTTP Basic auth: the credentialed mirror of the secrets tests.

Two trees, both behind the same user and password:
- ``/whl/<variant>/<project>/``: a PyTorch-index mirror (PEP 503 HTML) holding real wheel files from a local
  directory (the CPU torch wheel of pip's wheelhouse here), each with its PEP 658 ``.metadata`` read from the wheel;
- ``/simple/<project>/``: a PyPI mirror that passes PyPI's own simple pages through, file URLs rewritten to come
  back through this server (``/files/...``), so every request a resolver makes carries the credentials.

Every request is recorded (path and whether it was authorised), so a test can show the credentials were used.
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import re
import threading
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PYPI = "https://pypi.org/simple"
PYPI_FILES = "https://files.pythonhosted.org/"


@dataclass
class Index:
    url: str  # http://127.0.0.1:PORT (no credentials)
    user: str
    password: str
    requests: list[tuple[str, bool]] = field(default_factory=list)

    def with_auth(self, path: str) -> str:
        host = self.url.removeprefix("http://")
        return f"http://{self.user}:{self.password}@{host}{path}"

    @property
    def authorised(self) -> list[str]:
        return [p for p, ok in self.requests if ok]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _wheel_project(filename: str) -> str:
    return _normalise(filename.split("-", 1)[0])


def _metadata(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        return zf.read(name)


def _handler(index: Index, wheels: dict[str, Path], token: str) -> type[http.server.BaseHTTPRequestHandler]:  # noqa: C901
    sha = {name: hashlib.sha256(p.read_bytes()).hexdigest() for name, p in wheels.items()}
    meta = {name: _metadata(p) for name, p in wheels.items()}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # quiet: the test reads ``index.requests``
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
            ok = self.headers.get("Authorization") == f"Basic {token}"
            index.requests.append((self.path, ok))
            if not ok:
                self._send(401, b"credentials required")
                return
            path = self.path.split("?", 1)[0]
            if path.startswith("/whl/"):
                self._pytorch(path)
            elif path.startswith("/simple/"):
                self._pypi(path)
            elif path.startswith("/files/"):
                self._pypi_file(path.removeprefix("/files/"))
            else:
                self._send(404, b"not found")

        def _pytorch(self, path: str) -> None:
            parts = [p for p in path.split("/") if p]  # whl, variant[, project[, file]]
            if len(parts) == 2:
                links = sorted({_wheel_project(n) for n in wheels})
                body = "".join(f'<a href="{p}/">{p}</a>\n' for p in links)
                self._send(200, f"<html><body>\n{body}</body></html>".encode())
            elif len(parts) == 3:
                names = [n for n in wheels if _wheel_project(n) == _normalise(parts[2])]
                if not names:
                    self._send(404, b"no such project")
                    return
                body = "".join(
                    f'<a href="{urllib.request.quote(n)}#sha256={sha[n]}" data-dist-info-metadata="true">{n}</a>\n'
                    for n in names
                )
                self._send(200, f"<html><body>\n{body}</body></html>".encode())
            elif len(parts) == 4:
                name = urllib.request.unquote(parts[3])
                if name.endswith(".metadata") and name.removesuffix(".metadata") in wheels:
                    self._send(200, meta[name.removesuffix(".metadata")], "application/octet-stream")
                elif name in wheels:
                    self._send(200, wheels[name].read_bytes(), "application/octet-stream")
                else:
                    self._send(404, b"no such file")
            else:
                self._send(404, b"not found")

        def _upstream(self, url: str, accept: str | None) -> tuple[int, bytes, str]:
            req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:  # https PyPI only
                    return resp.status, resp.read(), resp.headers.get("Content-Type", "text/html")
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read(), "text/plain"

        def _pypi(self, path: str) -> None:
            code, body, ctype = self._upstream(PYPI + path.removeprefix("/simple"), self.headers.get("Accept"))
            body = body.replace(PYPI_FILES.encode(), f"{index.url}/files/".encode())
            self._send(code, body, ctype)

        def _pypi_file(self, rest: str) -> None:
            code, body, ctype = self._upstream(PYPI_FILES + rest, None)
            self._send(code, body, ctype)

    return Handler


@contextmanager
def serve(
    wheel_dir: Path | None, *, user: str = "bob", password: str = "PTTOKEN-6c1f2e", port: int = 0
) -> Iterator[Index]:
    """Serve the index on loopback for the duration of the ``with`` block: on ``port`` if it is free, else on
    an ephemeral one. A fixed port keeps the index URL, and so uv's cache entry for its wheels, the same from
    one run to the next (uv caches by index URL: a new port would unpack the 180 MB torch wheel again)."""
    wheels = {p.name: p for p in sorted(wheel_dir.glob("*.whl"))} if wheel_dir else {}
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), http.server.BaseHTTPRequestHandler)
    except OSError:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    index = Index(url=f"http://127.0.0.1:{server.server_address[1]}", user=user, password=password)
    server.RequestHandlerClass = _handler(index, wheels, token)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield index
    finally:
        server.shutdown()
        server.server_close()
