"""The only module that starts processes: argv lists, timeouts, one failure type, and no child left behind.

A background child (uv, the smoke test, podman) starts in its own process group with its stdin closed, and on
Linux with parent-death signalling (``PR_SET_PDEATHSIG``, set through ctypes between fork and exec):

- Ctrl-C or SIGTERM to envbuilder is forwarded to the child's whole group (so uv's own children go too); a
  group that has not stopped after ``GRACE_S`` is killed;
- SIGKILL of envbuilder, which nothing can answer, still ends the child: the kernel sends it SIGKILL.

Its own group also means a terminal's Ctrl-C reaches envbuilder alone, which then decides the order of things
(stop the child, then remove the unfinished build). A foreground child (``envbuilder run``/``shell``) keeps the
terminal: it stays in envbuilder's group, where Ctrl-C reaches it directly; envbuilder ignores Ctrl-C while it
waits, forwards SIGTERM, and passes the child's exit status on (128+N when a signal N ended it).

A long child whose progress the user should see (uv installing gigabytes) is *relayed*: its output is read as it
comes, redacted (URL userinfo and every secret the caller names), written to envbuilder's stderr and kept for
the error message. With ``tty=True`` the child writes to a pseudo-terminal of the terminal's size, so it draws its
own progress bars, which pass through; without, it sees a pipe and prints plain lines (a CI log).
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envbuilder.model.credentials import redact
from envbuilder.model.errors import CommandFailed, Terminated

log = logging.getLogger("envbuilder.run")

GRACE_S = 5.0  # how long a child's group may take to stop after a forwarded signal before it is killed
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True, slots=True)
class Result:
    """What a finished command left: its exit code and its output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def exit_status(self) -> int:
        """The status a shell reports: the exit code, or 128+N when signal N ended the command."""
        return 128 - self.returncode if self.returncode < 0 else self.returncode


def which(tool: str) -> str | None:
    """Where ``tool`` is on PATH, or None."""
    return shutil.which(tool)


def _child_setup(*, own_group: bool) -> Callable[[], None] | None:
    """What the child runs between fork and exec: no blocked signals, its own process group, SIGKILL when its
    parent dies."""
    prctl = None
    if sys.platform.startswith("linux"):
        import ctypes  # only here: start-up of commands that start no process stays free of it

        try:
            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            prctl = None
    if not own_group and prctl is None:
        return None
    parent = os.getpid()

    def setup() -> None:
        if hasattr(signal, "pthread_sigmask"):  # forked inside deferred_signals(): the child must not inherit it
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
        if own_group:
            os.setpgid(0, 0)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent:  # the parent died before prctl took effect: nobody would reap us
                os._exit(137)

    return setup


def _signal_group(proc: subprocess.Popen[Any], sig: int, *, own_group: bool) -> None:
    try:
        if own_group:
            os.killpg(proc.pid, sig)
        elif proc.poll() is None:
            proc.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def _stop(proc: subprocess.Popen[Any], sig: int, *, own_group: bool) -> None:
    """Forward ``sig`` to the child's group, kill what is left after GRACE_S, and reap the child."""
    with deferred_signals():  # a second Ctrl-C must not cut this short and leave the child running
        _signal_group(proc, sig, own_group=own_group)
        try:
            proc.wait(GRACE_S)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL, own_group=own_group)
            proc.wait()
        if own_group:  # the leader is gone; grandchildren in its group are not
            _signal_group(proc, signal.SIGKILL, own_group=True)


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back (main thread, POSIX) until the block ends: a step that must not be cut
    in half (the two renames of a swap, the removal of an unfinished build) finishes first."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextmanager
def _foreground_wait() -> Iterator[None]:
    """While a foreground child runs, Ctrl-C is the child's to answer (the terminal sent it to both of us)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _start_failure(args: tuple[str, ...], exc: OSError) -> CommandFailed:
    if isinstance(exc, FileNotFoundError) and exc.filename in (None, args[0]):
        return CommandFailed(f"{args[0]}: command not found", hint=f"install {Path(args[0]).name} or put it on PATH")
    if isinstance(exc, PermissionError):
        msg = f"{args[0]}: cannot run it (permission denied: not an executable program)"
        return CommandFailed(msg, hint="name an executable file, or make it one with chmod +x")
    return CommandFailed(f"{args[0]}: cannot run it ({exc.strerror or exc})", hint="check the path and the file")


@dataclass(frozen=True, slots=True)
class Relay:
    """How a relayed child's output reaches the user: ``sink`` takes each redacted piece; ``tty`` gives the
    child a pseudo-terminal (its own progress bars); ``mask`` are secrets written as ``***`` wherever they
    appear; ``indent`` starts every line (plain lines in a log, set apart from envbuilder's own)."""

    sink: Callable[[str], None]
    tty: bool = False
    mask: tuple[str, ...] = ()
    indent: str = ""


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    check: bool = True,
    capture: bool = True,
    stdin: str | None = None,
    foreground: bool = False,
    relay: Relay | None = None,
    relay_stderr: Relay | None = None,
) -> Result:
    """Run ``argv``; raise ``CommandFailed`` if it cannot start, times out, or (with ``check``) fails.

    ``capture=False`` streams the command's output to ours (progress for long steps). ``foreground=True`` is
    for a command the user drives (``run``, ``shell``): it shares the terminal and envbuilder's process group.
    ``relay`` shows the output as it comes, redacted, and keeps it too (its text is the Result's ``stderr``).
    ``relay_stderr`` does that with stderr alone while stdout is captured (a child whose stdout is a document
    and whose stderr is its progress: the smoke test).
    """
    args = tuple(os.fspath(a) for a in argv)
    log.debug("run: %s", redact(shlex.join(args)))  # argv carries no credentials; redact is the backstop
    own_group = not foreground and os.name == "posix"
    if relay is not None:
        return _run_relayed(args, relay, env=env, cwd=cwd, timeout=timeout, check=check, own_group=own_group)
    err_read, err_write = os.pipe() if relay_stderr is not None else (-1, -1)
    try:
        proc = subprocess.Popen(
            args,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdout=subprocess.PIPE if capture or relay_stderr else None,
            stderr=err_write if relay_stderr else (subprocess.PIPE if capture else None),
            stdin=subprocess.PIPE if stdin is not None else (None if foreground else subprocess.DEVNULL),
            text=True,
            encoding="utf-8",
            errors="replace",  # a tool's output is outside input: bytes that are not UTF-8 must not crash us
            # setup() makes three system calls (sigprocmask, setpgid, prctl) and takes no lock: safe after fork
            # even with threads (envbuilder starts processes from its main thread anyway)
            preexec_fn=_child_setup(own_group=own_group) if os.name == "posix" else None,  # noqa: PLW1509
        )
    except ValueError:  # an argument or variable holding a NUL byte (from a file envbuilder read)
        _close(err_read)
        msg = f"{redact(shlex.join(args[:3]))} ...: an argument or environment value holds a NUL byte"
        raise CommandFailed(msg, hint="remove the NUL byte from the value in the manifest or option") from None
    except OSError as exc:
        _close(err_read)
        raise _start_failure(args, exc) from None
    finally:
        _close(err_write)  # the child holds its own copy: the reader sees the end when the child's side closes
    reader = _Reader(err_read, relay_stderr) if relay_stderr is not None else None
    out, err = _collect(proc, args, reader, stdin=stdin, timeout=timeout, own_group=own_group, foreground=foreground)
    result = Result(args, proc.returncode, out or "", err or "")
    if check and proc.returncode != 0:
        raise _failed(result)
    return result


def _collect(
    proc: subprocess.Popen[str],
    args: tuple[str, ...],
    reader: _Reader | None,
    *,
    stdin: str | None,
    timeout: float | None,
    own_group: bool,
    foreground: bool,
) -> tuple[str | None, str | None]:
    """``_communicate``, with ``reader`` (stderr relayed) running beside it; its text is the stderr."""
    if reader is not None:
        reader.start()
    try:
        out, err = _communicate(proc, args, stdin=stdin, timeout=timeout, own_group=own_group, foreground=foreground)
    except BaseException:
        for stream in (proc.stdout, proc.stderr):  # the child is stopped: nothing more is read from its pipes
            if stream is not None:
                stream.close()
        raise
    finally:
        if reader is not None:
            reader.join(GRACE_S)
    return out, (reader.text() if reader is not None else err)


def _close(fd: int) -> None:
    if fd >= 0:
        os.close(fd)


def _failed(result: Result) -> CommandFailed:
    tail = (result.stderr or result.stdout).strip().splitlines()[-12:]
    code = result.returncode
    how = f"was ended by signal {-code} ({_signame(-code)})" if code < 0 else f"exited {code}"
    msg = redact(f"{shlex.join(result.argv[:4])} ... {how}" + (":\n  " + "\n  ".join(tail) if tail else ""))
    return CommandFailed(msg, returncode=code, output=result.stdout + result.stderr)


def _pty_pair() -> tuple[int, int]:
    """A pseudo-terminal as large as ours (a child sizes its progress bars by it)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    size = shutil.get_terminal_size()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size.lines, size.columns, 0, 0))
    return master, slave


def _run_relayed(
    args: tuple[str, ...],
    relay: Relay,
    *,
    env: Mapping[str, str] | None,
    cwd: Path | None,
    timeout: float | None,
    check: bool,
    own_group: bool,
) -> Result:
    """Run with the child's stdout and stderr merged into a pipe (or a pseudo-terminal), relayed as they come."""
    master, slave = _pty_pair() if relay.tty and os.name == "posix" else os.pipe()
    try:
        proc = subprocess.Popen(
            args,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdout=slave,
            stderr=slave,
            stdin=subprocess.DEVNULL,
            preexec_fn=_child_setup(own_group=own_group) if os.name == "posix" else None,  # noqa: PLW1509
        )
    except ValueError:
        os.close(master)
        msg = f"{redact(shlex.join(args[:3]))} ...: an argument or environment value holds a NUL byte"
        raise CommandFailed(msg, hint="remove the NUL byte from the value in the manifest or option") from None
    except OSError as exc:
        os.close(master)
        raise _start_failure(args, exc) from None
    finally:
        os.close(slave)  # the child holds its own copy: the reader sees the end when the child's side closes
    reader = _Reader(master, relay)
    reader.start()
    try:
        _wait(proc, args, timeout=timeout, own_group=own_group, on_signal=reader.mute)
    finally:
        reader.join(GRACE_S)
    result = Result(args, proc.returncode, "", reader.text())
    if check and proc.returncode != 0:
        raise _failed(result)
    return result


def _wait(
    proc: subprocess.Popen[bytes],
    args: tuple[str, ...],
    *,
    timeout: float | None,
    own_group: bool,
    on_signal: Callable[[], None],
) -> None:
    """``proc.wait`` with the signal handling of ``_communicate``: the child's group never outlives us.

    ``on_signal`` runs before a signal is forwarded: what the child says as it dies (a Ctrl-C traceback) is
    not shown, so an interruption stays the one line envbuilder prints.
    """
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _stop(proc, signal.SIGTERM, own_group=own_group)
        msg = f"{shlex.join(args[:3])} ...: no answer within {timeout:g} s"
        raise CommandFailed(msg, hint="check the network or the tool, then try again") from None
    except Terminated:
        on_signal()
        _stop(proc, signal.SIGTERM, own_group=own_group)
        raise
    except KeyboardInterrupt:
        on_signal()
        _stop(proc, signal.SIGINT, own_group=own_group)
        raise
    except BaseException:
        _stop(proc, signal.SIGKILL, own_group=own_group)
        raise


class _Reader(threading.Thread):
    """Reads a relayed child's output, redacts it and hands it on, a line (or a redrawn bar) at a time.

    Text is passed on up to its last newline or carriage return (a progress bar redraws after ``\\r``); the
    rest waits for more, or is passed on after a quiet 0.2 s unless it may be the start of a URL, whose userinfo
    could still be coming (redaction needs the whole ``scheme://user:pass@``).
    """

    def __init__(self, fd: int, relay: Relay) -> None:
        super().__init__(daemon=True)
        import codecs

        self.fd, self.relay = fd, relay
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.kept: list[str] = []
        self.pending = ""
        self.at_line_start = True
        self.muted = False

    def mute(self) -> None:
        """Keep what comes from now on, show none of it."""
        self.muted = True

    def run(self) -> None:
        import select

        try:
            while True:
                ready, _, _ = select.select([self.fd], [], [], 0.2)
                if not ready:
                    self._flush(quiet=True)
                    continue
                try:
                    data = os.read(self.fd, 65536)
                except OSError:  # EIO: a pseudo-terminal whose child side closed
                    data = b""
                if not data:
                    break
                self._feed(self.decoder.decode(data))
        finally:
            self._feed(self.decoder.decode(b"", final=True))
            self._flush(quiet=True, final=True)
            os.close(self.fd)

    def _feed(self, text: str) -> None:
        self.pending += text
        cut = max(self.pending.rfind("\n"), self.pending.rfind("\r"))
        if cut >= 0:
            self._emit(self.pending[: cut + 1])
            self.pending = self.pending[cut + 1 :]

    def _flush(self, *, quiet: bool, final: bool = False) -> None:
        if self.pending and quiet and (final or not self._may_continue_a_secret()):
            self._emit(self.pending)
            self.pending = ""

    def _may_continue_a_secret(self) -> bool:
        """The text held may be the first part of a URL's userinfo or of a masked secret."""
        tail = self.pending
        return "://" in tail or any(tail.endswith(s[:k]) for s in self.relay.mask for k in range(1, len(s)))

    def _emit(self, text: str) -> None:
        clean = redact(text)
        for secret in self.relay.mask:
            clean = clean.replace(secret, "***")
        self.kept.append(clean)
        if not self.muted:
            self.relay.sink(self._indented(clean) if self.relay.indent else clean)

    def _indented(self, text: str) -> str:
        out = []
        for part in text.splitlines(keepends=True):
            if self.at_line_start:
                out.append(self.relay.indent)
            out.append(part)
            self.at_line_start = part.endswith("\n")
        return "".join(out)

    def text(self) -> str:
        return "".join(self.kept)


def _communicate(
    proc: subprocess.Popen[str],
    args: tuple[str, ...],
    *,
    stdin: str | None,
    timeout: float | None,
    own_group: bool,
    foreground: bool,
) -> tuple[str | None, str | None]:
    try:
        if foreground:
            with _foreground_wait():
                return proc.communicate(stdin, timeout=timeout)
        return proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc, signal.SIGTERM, own_group=own_group)
        msg = f"{shlex.join(args[:3])} ...: no answer within {timeout:g} s"
        raise CommandFailed(msg, hint="check the network or the tool, then try again") from None
    except Terminated:
        _stop(proc, signal.SIGTERM, own_group=own_group)
        if foreground:  # the child answered the SIGTERM we forwarded: its status is the command's
            return None, None
        raise
    except KeyboardInterrupt:
        _stop(proc, signal.SIGINT, own_group=own_group)
        raise
    except BaseException:
        _stop(proc, signal.SIGKILL, own_group=own_group)
        raise


def _signame(n: int) -> str:
    try:
        return signal.Signals(n).name
    except ValueError:
        return f"signal {n}"
