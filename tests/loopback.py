"""A small HTTP server on 127.0.0.1 for the reader's tests: a PEP 503 index with byte ranges.

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
