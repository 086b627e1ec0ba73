"""_run, the one process helper: process groups, parent-death signalling, forwarded signals, exit statuses.

Real processes (sh, sleep, a Python parent that is SIGKILLed); the fault suite (test_faults.py) does the same
through whole `create`/`sync` runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envbuilder.edge import _run
from envbuilder.model.errors import CommandFailed

pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups and signals are POSIX")


def test_a_background_child_has_its_own_process_group_and_no_stdin() -> None:
    out = _run.run(["sh", "-c", "ps -o pgid= -p $$; echo $$; cat"], timeout=30).stdout.split()
    pgid, pid = int(out[0]), int(out[1])
    assert pgid == pid != os.getpgid(0)  # Ctrl-C at a terminal reaches envbuilder, which decides


def test_a_foreground_child_shares_our_process_group() -> None:
    out = _run.run(["sh", "-c", "ps -o pgid= -p $$"], timeout=30, foreground=True).stdout
    assert int(out) == os.getpgid(0)


def test_a_child_started_while_signals_are_deferred_can_still_be_signalled() -> None:
    """The signal mask of deferred_signals() is inherited across fork and exec unless the child resets it."""
    with _run.deferred_signals():
        t0 = time.monotonic()
        result = _run.run(["sh", "-c", "kill -TERM $$; sleep 20"], check=False, timeout=60)
    assert result.returncode == -signal.SIGTERM and time.monotonic() - t0 < 10
    assert result.exit_status == 128 + signal.SIGTERM


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_sigkill_of_the_parent_takes_its_child_along(tmp_path: Path) -> None:
    """What no handler can answer: the kernel sends the child SIGKILL when envbuilder dies."""
    pidfile = tmp_path / "child.pid"
    code = (
        f"from envbuilder.edge import _run; _run.run(['sh', '-c', 'echo $$ > {pidfile}; exec sleep 60'], check=False)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pidfile.read_text())
    parent.kill()
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child), "the child outlived its SIGKILLed parent"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_signalled_failure_is_named() -> None:
    with pytest.raises(CommandFailed, match=r"was ended by signal 9 \(SIGKILL\)"):
        _run.run(["sh", "-c", "kill -9 $$"], timeout=30)


def test_a_file_that_is_not_a_program_is_one_failure(tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("not a program\n")
    with pytest.raises(CommandFailed, match="cannot run it \\(permission denied"):
        _run.run([str(data)])
    with pytest.raises(CommandFailed, match="command not found"):
        _run.run([str(tmp_path / "missing")])


def test_relay_stderr_shows_stderr_as_it_comes_and_keeps_stdout_apart() -> None:
    """The smoke test's shape: a JSON document on stdout, progress lines on stderr shown while it runs."""
    seen: list[tuple[float, str]] = []
    code = 'import sys, time; print("{}"); print("a", file=sys.stderr, flush=True); time.sleep(1); print("b", file=sys.stderr)'  # noqa: E501
    t0 = time.monotonic()
    relay = _run.Relay(sink=lambda t: seen.append((time.monotonic() - t0, t)))
    result = _run.run([sys.executable, "-c", code], timeout=30, relay_stderr=relay)
    assert result.stdout == "{}\n" and result.stderr == "a\nb\n"
    assert [t for _, t in seen] == ["a\n", "b\n"] and seen[0][0] < seen[1][0] - 0.5  # "a" came before the sleep ended


def test_relay_stderr_still_stops_a_child_at_its_timeout() -> None:
    seen: list[str] = []
    t0 = time.monotonic()
    with pytest.raises(CommandFailed, match="no answer within 1 s"):
        _run.run(["sh", "-c", "echo started >&2; sleep 30"], timeout=1, relay_stderr=_run.Relay(sink=seen.append))
    assert seen == ["started\n"] and time.monotonic() - t0 < 10
