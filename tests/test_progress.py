"""uv's progress reaches the user (issue 16): relayed from a pseudo-terminal on a terminal, as plain lines in a
log, never with a secret in it; and the CLI picks the mode from -q/--json and what stderr is."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from envbuilder.edge import _run
from envbuilder.model.errors import CommandFailed

SECRET = "PTTOKEN-9c3e51"
# A child that writes like uv: plain lines, a URL with userinfo, a secret split across two writes with a pause
# between them (the reader's quiet flush must not let its first half out alone), and a bar redrawn after \r.
CHILD = rf"""
import sys, time
out = sys.stdout
out.write("Resolved 2 packages\n"); out.flush()
out.write("GET https://ebuser:{SECRET}@mirror.example/simple/torch/ failed\n"); out.flush()
out.write("token {SECRET[:7]}"); out.flush(); time.sleep(0.5)
out.write("{SECRET[7:]} echoed\n"); out.flush()
for i in range(3):
    out.write(f"\rDownloading torch {{i}}/3"); out.flush(); time.sleep(0.05)
out.write("\nInstalled 2 packages\n"); out.flush()
print("tty" if sys.stdout.isatty() and sys.stderr.isatty() else "pipe", file=sys.stderr)
"""


def _relayed(tty: bool, child: str = CHILD, **kw: object) -> tuple[list[str], _run.Result]:
    pieces: list[str] = []
    relay = _run.Relay(pieces.append, tty=tty, mask=(SECRET,), indent="" if tty else "  ")
    result = _run.run([sys.executable, "-c", child], relay=relay, timeout=60, **kw)  # type: ignore[arg-type]
    return pieces, result


@pytest.mark.parametrize("tty", [False, True])
def test_relay_redacts_and_keeps(tty: bool) -> None:
    pieces, result = _relayed(tty)
    shown = "".join(pieces)
    assert SECRET not in shown and SECRET[:7] not in shown and SECRET not in result.stderr
    assert "https://***@mirror.example/simple/torch/" in shown
    assert "token *** echoed" in shown.replace("\r\n", "\n")
    assert "Installed 2 packages" in result.stderr  # kept for an error message too
    assert ("tty" if tty else "pipe") in shown  # a pseudo-terminal on a terminal, a pipe in a log
    assert shown.count("Downloading torch") == 3 and "\r" in shown  # each redraw passed on
    if not tty:
        assert shown.startswith("  Resolved 2 packages\n  GET ")  # plain lines, set apart from envbuilder's own


def test_relay_the_bar_is_shown_while_the_child_runs() -> None:
    """A redraw that ends with no newline is passed on after a quiet moment, not held until the child exits."""
    seen: list[tuple[float, str]] = []
    import time

    t0 = time.monotonic()
    relay = _run.Relay(lambda s: seen.append((time.monotonic() - t0, s)))
    child = "import sys, time; sys.stdout.write('\\rDownloading 1/2'); sys.stdout.flush(); time.sleep(1.5)"
    _run.run([sys.executable, "-c", child], relay=relay, timeout=60)
    first = next(t for t, s in seen if "Downloading 1/2" in s)
    assert first < 1.2  # the child still had 1.5 s to go


def test_relay_failure_names_the_tail_redacted() -> None:
    child = f"print('error: https://u:{SECRET}@h/x unreachable'); raise SystemExit(3)"
    with pytest.raises(CommandFailed) as info:
        _relayed(False, child)
    assert info.value.returncode == 3 and SECRET not in info.value.message + info.value.output
    assert "error: https://***@h/x unreachable" in info.value.message


def test_relay_timeout_stops_the_child() -> None:
    with pytest.raises(CommandFailed) as info:
        _run.run(
            [sys.executable, "-c", "import time; print('working', flush=True); time.sleep(60)"],
            relay=_run.Relay(lambda s: None),
            timeout=1,
        )
    assert "no answer within 1 s" in info.value.message


# --------------------------------------------------------------------------- the mode, as the CLI picks it


@pytest.mark.parametrize(
    ("argv", "tty", "mode"),
    [
        (["sync", "x"], False, "lines"),  # a CI log
        (["sync", "x"], True, "terminal"),
        (["sync", "x", "--color", "never"], True, "terminal-plain"),
        (["-q", "sync", "x"], True, "capture"),
        (["sync", "x", "--json"], True, "capture"),  # stdout is the document; stderr stays quiet
    ],
)
def test_cli_picks_uv_output(argv: list[str], tty: bool, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from envbuilder.cli import _console
    from envbuilder.cli._sources import uv_output
    from envbuilder.cli.app import build_parser

    class Stream:
        def isatty(self) -> bool:
            return tty

        def write(self, text: str) -> int:
            return len(text)

    monkeypatch.setattr(sys, "stderr", Stream())
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    args = build_parser().parse_args(argv)
    token = _console.use(_console.make_console(quiet=args.quiet, verbose=False, color=args.color, json=args.json))
    try:
        assert uv_output() == mode
    finally:
        _console.reset(token)


# --------------------------------------------------------------------------- real uv


@pytest.mark.integration
@pytest.mark.network
@pytest.mark.parametrize("mode", ["terminal", "lines"])
def test_real_uv_sync_is_shown(mode: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``uv pip sync`` of one small package from PyPI, through envbuilder's uv backend: on a terminal uv's own
    output arrives through the pseudo-terminal (coloured: uv saw a terminal), in a log as indented plain lines."""
    from dataclasses import replace

    from envbuilder.edge import uv
    from envbuilder.edge.settings import Settings

    settings = replace(Settings(home=tmp_path / "home", cache_dir=tmp_path / "cache"), uv_output=mode)  # type: ignore[arg-type]
    uv.venv(tmp_path / "venv", sys.executable, settings)
    req = tmp_path / "requirements.txt"
    req.write_text("iniconfig==2.0.0\n", encoding="utf-8")
    capsys.readouterr()
    uv.sync(tmp_path / "venv" / "bin" / "python", req, settings, indexes=[])
    err = capsys.readouterr().err
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err)
    assert re.search(r"Installed 1 package", plain), err
    assert "+ iniconfig==2.0.0" in plain
    if mode == "terminal":
        assert "\x1b[" in err  # uv coloured its words: it wrote to a terminal
    else:
        assert "\x1b[" not in err and "\n  Installed 1 package" in "\n" + plain


SIGNAL_PROBE = r"""
import signal, sys
from envbuilder.edge import _run
from envbuilder.model.errors import Terminated

def on_term(signum, frame):
    raise Terminated(signum)

signal.signal(signal.SIGTERM, on_term)
child = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
try:
    _run.run([sys.executable, "-c", child], relay=_run.Relay(lambda t: (sys.stdout.write(t), sys.stdout.flush())))
except Terminated:
    print("terminated", flush=True)
"""


def test_sigterm_while_relaying_stops_the_child() -> None:
    """SIGTERM to envbuilder while a relayed child runs: the child's group is stopped, nothing is left."""
    import os
    import signal
    import subprocess
    import time

    with subprocess.Popen([sys.executable, "-c", SIGNAL_PROBE], stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rest = proc.stdout.read()
        proc.wait(timeout=30)
    assert "terminated" in rest and time.monotonic() - t0 < _run.GRACE_S + 5
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)
