"""Replayed answers: a query's output kept by its inputs, and printed again without doing the work.

``envbuilder resolve`` is a pure function of its command line, the environment and a few files (the matrix and
envbuilder's own modules). Importing what computes it costs several times Python's own start-up
(bench/RESULTS-resolve.md), while those inputs rarely change between two runs. So the console script records
a run of a command in ``REPLAYED``, and a later run with the same inputs writes the same text to the same
streams and exits with the same code, having imported nothing but this module:

- the key, a digest (so that no value is stored): the arguments, the working directory, every environment
  variable but the shell's bookkeeping ones, which of stdin/stdout/stderr are terminals (and their size), the
  streams' encodings, the interpreter, its flags and its ``sys.path``;
- the entry: every file the recorded run opened and every directory it listed (an audit hook, PEP 578, sees
  them), and every imported module's file, each with its stat signature (size, mtime, ctime, inode, device,
  or absent); then the output. Any signature that differs and the command runs again (and is recorded anew).

A run is kept only when nothing else can have mattered: it exited 0 or 1; it started no process, opened no
socket, loaded no library, wrote nothing but derived files (bytecode, the compiled matrix), never touched
stdin or a stream's bytes; and it imported no module that asks the host or the network (only the pure
layers, the CLI and the edges in ``_QUIET_EDGES``). Entries are private to the user (0600 in a 0700
directory) and read only when they still are; the newest ``KEEP`` stay.
"""

from __future__ import annotations

import marshal
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO, cast

from envbuilder.cli._argv import command_word
from envbuilder.edge._roots import cache_root

try:  # hashlib's import loads OpenSSL (7 ms here): blake2b has its own built-in module
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - an interpreter built without it
    from hashlib import blake2b

__all__ = ["KEEP", "REPLAYED", "Recorder", "entry_path", "replay"]

REPLAYED = frozenset({"resolve"})
KEEP = 64  # entries kept: one per distinct command line and environment
_FORMAT = b"envbuilder-replay/1"
_ENTRY = "replay"  # the cache entry (edge/settings.py CacheEntry)
_DERIVED = ("matrix",)  # cache entries computed from files a run depends on anyway (edge/matrix_cache.py)
# Variables a shell sets by itself, which change between two identical commands and which envbuilder never reads.
_SHELL_ONLY = frozenset({"_", "OLDPWD", "PWD", "SHLVL"})
_PURE = ("envbuilder.model", "envbuilder.rules", "envbuilder.resolve", "envbuilder.render", "envbuilder.cli")
_QUIET_EDGES = frozenset({"envbuilder", "envbuilder.edge", "envbuilder.edge._roots", "envbuilder.edge.settings"})
# The matrix cache reads the matrix files (seen by the hook) and writes its entry through _fs (so does the replay).
_QUIET_EDGES |= {"envbuilder.edge.matrix_cache", "envbuilder.edge._fs"}
# Audit events after which the output may depend on more than the key and the files: the run is not kept.
_WORLD = (
    "subprocess.",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "socket.",
    "ctypes.",
    "urllib.",
    "http.",
    "ftplib.",
    "smtplib.",
    "webbrowser.",
)
# Audit events that change files: allowed for derived files only (the compiled matrix, bytecode).
_CHANGES = frozenset(
    {
        "os.chmod",
        "os.chown",
        "os.link",
        "os.mkdir",
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.symlink",
        "os.truncate",
        "os.utime",
        "shutil.chown",
        "shutil.copyfile",
        "shutil.copymode",
        "shutil.copystat",
        "shutil.copytree",
        "shutil.move",
        "shutil.rmtree",
    }
)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

Signature = tuple[int, int, int, int, int] | None
PathArg = int | str | bytes | os.PathLike[str] | os.PathLike[bytes]  # what an audited call names a file by
Chunk = tuple[int, str]  # (1 or 2: the stream, the text written to it)


def _signature(path: str) -> Signature:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _key(argv: Sequence[str]) -> str:
    h = blake2b(_FORMAT, digest_size=20)

    def part(*texts: str) -> None:
        for text in texts:
            h.update(text.encode("utf-8", "surrogatepass") + b"\0")

    xoptions = repr(sorted(getattr(sys, "_xoptions", {}).items()))  # -X options (CPython)
    part(sys.executable, sys.version, repr(sys.flags), xoptions, os.getcwd(), *sys.path, "\1", *argv, "\1")
    for name in sorted(os.environ):
        if name not in _SHELL_ONLY:
            part(name, os.environ[name])
    for fd, stream in ((0, sys.stdin), (1, sys.stdout), (2, sys.stderr)):
        terminal = os.isatty(fd)
        part(str(terminal), str(getattr(stream, "encoding", None)), str(getattr(stream, "errors", None)))
        if terminal:
            part(repr(tuple(os.get_terminal_size(fd))))
    return h.hexdigest()


def entry_path(argv: Sequence[str]) -> str | None:
    """Where the answer for ``argv`` is kept; None for a command that is never replayed (or no usable key)."""
    if command_word(argv) not in REPLAYED or os.name != "posix":
        return None  # posix: an entry's owner and mode are checked, and Windows has neither
    try:
        return os.path.join(cache_root(), _ENTRY, _key(argv) + ".marshal")
    except (OSError, ValueError):
        return None  # a working directory that is gone, a terminal that cannot say its size


def _read_private(path: str) -> bytes | None:
    """The file's bytes when it is this user's and nobody else may write it (else None: not ours to trust)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read()
    finally:
        os.close(fd)


def _write(chunks: Sequence[Chunk]) -> None:
    streams = {1: sys.stdout, 2: sys.stderr}
    for fd, text in chunks:
        streams[fd].write(text)
        streams[fd].flush()  # as the recorded run's streams met on a terminal


def replay(path: str) -> int | None:
    """Write the answer kept at ``path`` and return its exit code; None when there is none that still holds."""
    try:
        data = _read_private(path)
        deps, code, chunks = marshal.loads(data) if data else (None, 0, ())  # noqa: S302 - our own file, checked
    except (OSError, EOFError, ValueError, TypeError):
        return None  # no entry (the usual first run), or a damaged one: the command runs and is recorded again
    if not isinstance(deps, tuple) or any(_signature(dep) != _as_signature(sig) for dep, sig in deps):
        return None
    try:
        _write(chunks)
    except BrokenPipeError:  # the reader went away (`envbuilder resolve | head`): as the CLI does, exit 0
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return int(code)


def _as_signature(sig: Any) -> Signature:
    """marshal gives back the tuple it was given; anything else never matches a signature."""
    return sig if isinstance(sig, tuple) else None


class _Tee:
    """A text stream that also keeps what is written to it, in order across stdout and stderr."""

    def __init__(self, stream: TextIO, fd: int, recorder: Recorder) -> None:
        self._stream, self._fd, self._recorder = stream, fd, recorder

    def write(self, text: str) -> int:
        try:
            written = self._stream.write(text)
        except BaseException:
            self._recorder.spoil("a write failed")
            raise
        self._recorder.wrote(self._fd, text)
        return written

    def __getattr__(self, name: str) -> Any:
        if name == "buffer":
            self._recorder.spoil("the stream's bytes were written")  # they would bypass the recording
        return getattr(self._stream, name)


class _Untouchable:
    """stdin during a recorded run: using it at all means the answer may depend on what was typed or piped."""

    def __init__(self, stream: TextIO, recorder: Recorder) -> None:
        self._stream, self._recorder = stream, recorder

    def __getattr__(self, name: str) -> Any:
        self._recorder.spoil("stdin was used")
        return getattr(self._stream, name)


class Recorder:
    """Watches one run (audit hook, streams) and keeps its answer when nothing but the key and files decided it."""

    def __init__(self, path: str) -> None:
        self.path = path
        cache = os.path.realpath(os.path.dirname(os.path.dirname(path)))
        self.derived = tuple(os.path.join(cache, entry, "") for entry in _DERIVED)
        self.spoiled: str | None = None
        self.active = False
        self.deps: dict[str, Signature] = {}
        self.chunks: list[Chunk] = []
        self._saved: tuple[Any, Any, Any] = (sys.stdin, sys.stdout, sys.stderr)

    # ---- what the run does
    def spoil(self, why: str) -> None:
        if self.active and self.spoiled is None:
            self.spoiled = why

    def wrote(self, fd: int, text: str) -> None:
        if self.chunks and self.chunks[-1][0] == fd:
            self.chunks[-1] = (fd, self.chunks[-1][1] + text)
        elif text:
            self.chunks.append((fd, text))

    def _derived(self, path: PathArg) -> bool:
        """A file whose content follows from files that are dependencies anyway: compiled bytecode, the compiled
        matrix. Writing one changes no answer; reading one adds nothing to watch."""
        if isinstance(path, int):
            return True  # an open descriptor: its opening was seen
        text = os.path.realpath(os.fsdecode(path))
        inside = os.path.join(text, "").startswith(self.derived)  # the entry's directory itself included
        return inside or os.path.basename(os.path.dirname(text)) == "__pycache__"

    def _above_derived(self, path: PathArg) -> bool:
        if isinstance(path, int):
            return False
        here = os.path.join(os.path.realpath(os.fsdecode(path)), "")
        return any(d.startswith(here) for d in self.derived)

    def _depend(self, path: PathArg) -> None:
        if not isinstance(path, int) and not self._derived(path):
            text = os.path.abspath(os.fsdecode(path))
            self.deps.setdefault(text, _signature(text))  # stat before the read: a later change is a change

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.active and self.spoiled is None:
            try:
                self._see(event, args)
            except Exception as exc:  # an audit hook that raises breaks the call it watches: never
                self.spoil(f"{event}: {exc!r}")

    def _see(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            path, mode, flags = args
            writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & _WRITE_FLAGS)
            if writes and not self._derived(path):
                self.spoil(f"it wrote {path!r}")
            elif not writes:
                self._depend(path)
        elif event in ("os.listdir", "os.scandir"):
            self._depend(args[0] if args and args[0] is not None else ".")
        elif event == "os.mkdir" and self._above_derived(args[0]):
            pass  # the cache's own directory, made on the way to the compiled matrix's
        elif event in _CHANGES:
            if not all(self._derived(a) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))):
                self.spoil(event)
        elif event.startswith(_WORLD):
            self.spoil(event)

    # ---- around the run
    def __enter__(self) -> Recorder:
        sys.addaudithook(self.hook)  # a hook cannot be removed: it goes quiet when the run ends
        # Stand-ins that pass every other attribute through to the stream (``__getattr__``), hence the casts.
        sys.stdin = cast(TextIO, _Untouchable(sys.stdin, self))
        sys.stdout = cast(TextIO, _Tee(sys.stdout, 1, self))
        sys.stderr = cast(TextIO, _Tee(sys.stderr, 2, self))
        self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.active = False
        sys.stdin, sys.stdout, sys.stderr = self._saved

    def keep(self, code: int) -> bool:
        """Write the entry when the run qualifies (False: it did not, or the cache cannot be written)."""
        if self.spoiled is not None or code not in (0, 1) or not self._quiet_imports():
            return False
        for module in list(sys.modules.values()):
            where = getattr(module, "__file__", None)
            if isinstance(where, str):
                self.deps.setdefault(os.path.abspath(where), _signature(where))
        data = marshal.dumps((tuple(self.deps.items()), code, tuple(self.chunks)))
        return _store(self.path, data)

    def _quiet_imports(self) -> bool:
        for name in list(sys.modules):
            if name.startswith("envbuilder") and name not in _QUIET_EDGES and not name.startswith(_PURE):
                self.spoiled = f"{name} was imported"
                return False
        return True


def _store(path: str, data: bytes) -> bool:
    """A private entry in a private directory; the oldest beyond ``KEEP`` go. A cache that cannot be written is
    no error (the answer was printed; the next run computes it again)."""
    from pathlib import Path

    from envbuilder.edge._fs import store_private

    return store_private(Path(path), data, keep=KEEP, dir_mode=0o700)
