"""Package sources: pip's configuration read as pip reads it, reachability, wheelhouses."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from envbuilder.edge.settings import Settings
from envbuilder.edge.sources import (
    apply_pip_config,
    gather_sources,
    list_wheelhouse,
    parse_index_page,
    parse_pip_config,
    parse_pip_ini,
    pip_config_files,
    reachable,
    read_pip_config,
    read_torch_pages,
)


@pytest.mark.parametrize(
    ("texts", "env", "expected"),
    [
        # This machine's three files, in pip's order: the later file wins per key.
        (
            [
                "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n",
                "[global]\nconstraint = /c.txt\n",
                "[global]\nfind-links = /opt/wheels\nextra-index-url = file:///a file:///b\n",
            ],
            {},
            {
                "cert": ["/etc/ssl/certs/ca-certificates.crt"],
                "find-links": ["/opt/wheels"],
                "extra-index-url": ["file:///a", "file:///b"],
            },
        ),
        (
            ["[global]\nindex-url = https://one/simple\n", "[global]\nindex-url = https://two/simple\n"],
            {},
            {"index-url": ["https://two/simple"]},
        ),
        # [install] applies to `pip install`, which envbuilder stands in for.
        (["[global]\nfind-links = /g\n[install]\nfind-links = /i\n"], {}, {"find-links": ["/i"]}),
        # Environment variables win over files.
        (
            ["[global]\nindex-url = https://file/simple\n"],
            {"PIP_INDEX_URL": "https://env/simple"},
            {"index-url": ["https://env/simple"]},
        ),
        (["not an ini file ["], {"PIP_FIND_LINKS": "/x /y"}, {"find-links": ["/x", "/y"]}),
        ([], {}, {}),
    ],
)
def test_parse_pip_ini(texts: list[str], env: dict[str, str], expected: dict[str, list[str]]) -> None:
    assert parse_pip_ini(texts, env) == expected


def test_config_files_in_pips_order(tmp_path: Path) -> None:
    files = pip_config_files(
        {"XDG_CONFIG_DIRS": "/etc/xdg", "PIP_CONFIG_FILE": "/x/pip.conf"}, Path("/h"), Path("/venv")
    )
    assert files == [
        Path("/etc/xdg/pip/pip.conf"),
        Path("/etc/pip.conf"),
        Path("/h/.pip/pip.conf"),
        Path("/h/.config/pip/pip.conf"),
        Path("/venv/pip.conf"),
        Path("/x/pip.conf"),
    ]
    win = pip_config_files(
        {"APPDATA": "C:/U/AppData/Roaming", "PROGRAMDATA": "C:/PD"}, Path("C:/U"), Path("C:/Py"), windows=True
    )
    assert win[0] == Path("C:/PD/pip/pip.ini") and win[-1] == Path("C:/Py/pip.ini")


@pytest.mark.parametrize("ordinary", [False, True], ids=["this-machine", "no-pip-config"])
def test_reading_agrees_with_pip_config_list_here(ordinary: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same variables for both readers: this machine's, and an ordinary machine's (no pip configuration)."""
    if ordinary:
        for key in [k for k in os.environ if k.startswith("PIP_")]:
            monkeypatch.delenv(key)
        monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    out = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert read_pip_config() == parse_pip_config(out)
    if ordinary:
        assert read_pip_config() == {}


def test_apply_pip_config_names_what_it_uses(tmp_path: Path) -> None:
    cert = tmp_path / "ca.pem"
    cert.write_text("x")
    settings = apply_pip_config(
        Settings(),
        {
            "find-links": [str(tmp_path)],
            "cert": [str(cert)],
            "extra-index-url": ["file:///a"],
            "index-url": ["https://m/simple"],
        },
    )
    assert settings.find_links == (str(tmp_path),) and settings.ca_certs == (str(cert),)
    assert settings.index_url == "https://m/simple"
    assert settings.notes == (
        "using pip's index-url https://m/simple",
        f"using pip's find-links {tmp_path}",
        f"using pip's cert {cert}",
        "not using pip's extra-index-url (file:///a): pass --extra-index-url to add it",
    )


def test_wheelhouse_listing(tmp_path: Path) -> None:
    (tmp_path / "a-1.0-py3-none-any.whl").write_text("")
    (tmp_path / "notes.txt").write_text("")
    assert list_wheelhouse((str(tmp_path), str(tmp_path / "missing"))) == ("a-1.0-py3-none-any.whl",)


def test_unreachable_is_answered_in_seconds(tmp_path: Path) -> None:
    t0 = time.monotonic()
    assert reachable("http://127.0.0.1:9/simple", Settings(cache_dir=tmp_path)) is False
    assert reachable("http://127.0.0.1:9/simple", Settings(cache_dir=tmp_path)) is False  # from the cache
    assert time.monotonic() - t0 < 10


def test_offline_uses_no_network(tmp_path: Path) -> None:
    sources = gather_sources(Settings(offline=True, find_links=(str(tmp_path),)))
    assert sources.pypi is False and sources.pytorch_index is None
    assert any("offline" in n for n in sources.notes)


def test_reachability_answers_are_cached(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path)
    assert reachable("http://127.0.0.1:9/x", settings) is False
    assert "http://127.0.0.1:9/x" in (tmp_path / "reachable.json").read_text()


@pytest.mark.network
def test_pypi_is_reachable(tmp_path: Path) -> None:
    assert reachable("https://pypi.org/simple", Settings(cache_dir=tmp_path)) is True


# --------------------------------------------------------------------------- the PyTorch index's torch pages

PYTORCH_LINE = (Path(__file__).parent / "fixtures" / "pytorch-index" / "cpu-torch-line.html").read_text()


@pytest.mark.parametrize(
    ("html", "files"),
    [
        # A real line of https://download.pytorch.org/whl/cpu/torch/ (fixtures/pytorch-index/README.md).
        (PYTORCH_LINE, ("torch-2.8.0+cpu-cp313-cp313-manylinux_2_28_x86_64.whl",)),
        # Relative links, a query string, an sdist and a link that is not a file: only wheels count.
        (
            '<a href="../files/torch-2.13.0%2Bcpu-cp311-cp311-manylinux_2_28_x86_64.whl?x=1#sha256=ab">t</a>'
            '<a href="torch-2.13.0.tar.gz">s</a><a href="/whl/cpu/">up</a><a>no href</a>',
            ("torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl",),
        ),
        ("<html><body></body></html>", ()),
        ("<a href='x.whl'", ()),  # a truncated page lists what it holds up to the break
    ],
)
def test_parse_index_page(html: str, files: tuple[str, ...]) -> None:
    assert parse_index_page(html) == files


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def loopback_index(tmp_path: Path) -> Iterator[str]:
    """A PEP 503 tree in the PyTorch index's layout: ``whl/cpu/torch/`` lists the CPU wheel; no cu126 page."""
    page = tmp_path / "whl" / "cpu" / "torch"
    page.mkdir(parents=True)
    (page / "index.html").write_text(PYTORCH_LINE)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/whl"
    finally:
        server.shutdown()
        server.server_close()


def test_the_torch_pages_are_read_and_kept(loopback_index: str, tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path / "cache", pytorch_index=loopback_index)
    found = read_torch_pages(loopback_index, ("cpu", "cu126"), settings)
    # cpu is listed; cu126 answers 404, which means this mirror has no such builds (not "unknown").
    assert found == {"cpu": ("torch-2.8.0+cpu-cp313-cp313-manylinux_2_28_x86_64.whl",), "cu126": ()}
    sources = gather_sources(settings, ("cpu",))
    assert sources.pytorch_index == loopback_index and sources.pytorch_files == {"cpu": found["cpu"]}
    assert f"{loopback_index}/cpu/torch/" in (tmp_path / "cache" / "pytorch-pages.json").read_text()


def test_an_unreadable_page_is_unknown_not_empty(tmp_path: Path) -> None:
    settings = Settings(cache_dir=tmp_path, pytorch_index="http://127.0.0.1:9/whl", check_pytorch_index=True)
    assert read_torch_pages("http://127.0.0.1:9/whl", ("cpu",), settings) == {}
    assert read_torch_pages("file:///opt/whl", ("cpu",), settings) == {}  # only http(s) pages are read


# --------------------------------------------------------------------------- the Simple API, with retries


def _torch_json(names: list[str]) -> str:
    """A PEP 691 project page (api-version 1.1) listing ``names``, as PyPI writes one."""
    import json

    files = [{"filename": n, "url": f"/files/{n}", "hashes": {"sha256": "ab" * 32}} for n in names]
    return json.dumps({"meta": {"api-version": "1.1"}, "name": "torch", "files": files})


CU126 = "torch-2.8.0+cu126-cp313-cp313-manylinux_2_28_x86_64.whl"


def test_a_pep_691_index_is_read_as_json_and_a_pep_503_one_as_html(tmp_path: Path) -> None:
    """Content negotiation: JSON where the index serves it, its HTML otherwise (a mirror with PEP 503 only)."""
    from loopback import Served, serve

    served = Served(
        pages={"/whl/cpu/torch/": PYTORCH_LINE, "/whl/cu126/torch/": f'<a href="/x/{CU126}">t</a>'},
        json_pages={"/whl/cu126/torch/": _torch_json([CU126, "torch-2.8.0.tar.gz"])},
    )
    with serve(served) as base:
        settings = Settings(cache_dir=tmp_path, pytorch_index=f"{base}/whl")
        found = read_torch_pages(f"{base}/whl", ("cpu", "cu126"), settings)
    assert found == {"cpu": ("torch-2.8.0+cpu-cp313-cp313-manylinux_2_28_x86_64.whl",), "cu126": (CU126,)}
    # The JSON page was asked for (and served): the HTML one of cu126 was never needed.
    assert sorted(p for p, _, _ in served.log) == ["/whl/cpu/torch/", "/whl/cu126/torch/"]


def test_a_busy_index_is_asked_again_with_backoff(tmp_path: Path) -> None:
    """Three 503 answers, then the page: read (bounded retries with backoff), not 'unreadable'."""
    from loopback import Served, serve

    served = Served(json_pages={"/whl/cu126/torch/": _torch_json([CU126])}, fail_first=3)
    with serve(served) as base:
        started = time.monotonic()
        found = read_torch_pages(f"{base}/whl", ("cu126",), Settings(cache_dir=tmp_path))
        waited = time.monotonic() - started
    assert found == {"cu126": (CU126,)}
    assert len(served.log) == 4 and waited >= 1.0  # urllib3's backoff: 0 + 1 + 2 s between the four tries


def test_an_index_that_stays_busy_is_unreadable_after_bounded_tries(tmp_path: Path) -> None:
    from loopback import Served, serve

    served = Served(json_pages={"/whl/cu126/torch/": _torch_json([CU126])}, fail_first=100)
    with serve(served) as base:
        assert read_torch_pages(f"{base}/whl", ("cu126",), Settings(cache_dir=tmp_path)) == {}
    assert len(served.log) == 4  # the first try and three retries, then it gives up


def test_the_mirror_credentials_reach_the_page_and_nothing_else(tmp_path: Path) -> None:
    """A credentialed mirror's pages are read with its credentials (kept apart from the URL, as settings keep
    them); the cache names the URL without them."""
    from loopback import Served, serve

    from envbuilder.edge.settings import with_credentials_apart

    served = Served(json_pages={"/whl/cu126/torch/": _torch_json([CU126])}, credentials=("alice", "s3cret"))
    with serve(served) as base:
        index = base.replace("http://", "http://alice:s3cret@") + "/whl"
        settings = with_credentials_apart(Settings(cache_dir=tmp_path, pytorch_index=index))
        assert settings.pytorch_index == f"{base}/whl"
        found = read_torch_pages(settings.pytorch_index, ("cu126",), settings)
    assert found == {"cu126": (CU126,)} and served.log[-1][2]
    assert "s3cret" not in (tmp_path / "pytorch-pages.json").read_text()


def test_retry_after_is_honoured_but_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """429 with ``Retry-After: 3600``: the index is asked again after the capped wait, not after an hour."""
    from loopback import Served, serve

    from envbuilder.edge import pypi

    monkeypatch.setattr(pypi, "RETRY_AFTER_MAX", 1.5)
    served = Served(json_pages={"/whl/cu126/torch/": _torch_json([CU126])}, fail_first=1, fail_status=429)
    served.retry_after = "3600"
    with serve(served) as base:
        started = time.monotonic()
        found = read_torch_pages(f"{base}/whl", ("cu126",), Settings(cache_dir=tmp_path))
        waited = time.monotonic() - started
    assert found == {"cu126": (CU126,)} and len(served.log) == 2
    assert 1.4 <= waited < 10, waited


def _flaky_server(failures: list[str]) -> tuple[http.server.ThreadingHTTPServer, list[str]]:
    """A loopback server whose first answers fail as ``failures`` says ("503", "reset"), then 200."""
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # http.server's name
            seen.append(self.path)
            failure = failures[len(seen) - 1] if len(seen) <= len(failures) else None
            if failure == "reset":
                self.close_connection = True
                self.connection.close()  # no status line: the client sees the connection end
                return
            self.send_response(503 if failure == "503" else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.mark.parametrize(
    ("failures", "ok", "asked"),
    [
        (["503"], True, 2),  # a busy index answers the second time
        (["reset"], True, 2),  # a connection closed before the answer
        (["503", "503", "503", "503", "503"], False, 4),  # bounded: the first try and 3 retries
        ([], True, 1),
    ],
)
def test_the_reachability_probe_retries_a_transient_failure(
    failures: list[str], ok: bool, asked: int, tmp_path: Path
) -> None:
    server, seen = _flaky_server(failures)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/whl"
        t0 = time.monotonic()
        assert reachable(url, Settings(cache_dir=tmp_path)) is ok
        assert len(seen) == asked and seen[0] == "/whl/"
        assert time.monotonic() - t0 < 5.0  # the probe's one time-out bounds the retries too
    finally:
        server.shutdown()
        server.server_close()
