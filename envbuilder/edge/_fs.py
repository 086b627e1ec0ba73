"""Files: written atomically (locks, manifests, scripts, caches, matrices), small JSON documents read back, and
envbuilder's own temporary directories (removed on the way out; those of a killed run removed by the next)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (another thread may create files)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(*, executable: bool = False) -> int:
    """The mode a file the user asked for gets: 0666 (0777 for a script) less the umask, as any editor gives."""
    return (0o777 if executable else 0o666) & ~_umask()


def write_text_atomic(path: Path, text: str, *, mode: int | None = None, newline: str | None = None) -> None:
    """Write beside the target, then rename: a reader never sees half a file.

    The file keeps the mode of the file it replaces; a new one gets ``mode``, by default what the umask allows
    (mkstemp's 0600 is right for a temporary file, not for a lock a team commits). ``newline`` is ``open``'s:
    None writes each ``\n`` as the platform's line end, ``""`` writes the text's own line ends, as they are
    (a script read with its CRLF line ends would become CR CR LF on Windows otherwise).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        keep = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        keep = None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as fh:
            fh.write(text)
        os.chmod(tmp, keep if keep is not None else (mode if mode is not None else new_file_mode()))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def store_private(path: Path, data: bytes, *, keep: int, dir_mode: int = 0o777) -> bool:
    """A cache entry: ``data`` written atomically to ``path``, readable by the user alone (0600), after the
    oldest entries of its kind (its suffix, in its directory) beyond ``keep - 1`` went, to leave room for it.
    A cache that cannot be written is no error: False, and nothing half-written stays."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(mode=dir_mode, parents=True, exist_ok=True)
        _prune(path.parent, path.suffix, keep - 1)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):  # never made, or its directory is not one (a file in the way)
            tmp.unlink()
        return False
    return True


def _prune(where: Path, suffix: str, left: int) -> None:
    """The newest ``left`` files ending in ``suffix`` stay; the others go."""
    found = []
    for old in where.glob(f"*{suffix}"):
        try:
            found.append((old.stat().st_mtime_ns, old))
        except OSError:
            continue  # removed meanwhile
    for _, old in sorted(found, reverse=True)[left:]:
        old.unlink(missing_ok=True)


def read_json_object(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# envbuilder-<kind>-<pid>-<random>: the pid tells a later run whether the owner is still alive.
_OWN_TEMP = re.compile(r"^envbuilder-(lock|smoke)-(\d+)-")


def tempdir_prefix(kind: str) -> str:
    """The name ``private_tempdir`` gives its directory, but for mkdtemp's random end."""
    return f"envbuilder-{kind}-{os.getpid()}-"


@contextlib.contextmanager
def private_tempdir(kind: str) -> Iterator[Path]:
    """A temporary directory ``$TMPDIR/envbuilder-<kind>-<pid>-*``, removed on the way out (Ctrl-C and SIGTERM
    unwind through here too); one that a SIGKILL left behind is removed by the next run (``sweep_temp``)."""
    path = Path(tempfile.mkdtemp(prefix=tempdir_prefix(kind)))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def sweep_temp() -> list[str]:
    """Remove the temporary directories of envbuilder runs that no longer exist; say what was removed."""
    root = Path(tempfile.gettempdir())
    removed = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    for entry in entries:
        match = _OWN_TEMP.match(entry.name)
        if not match or int(match.group(2)) == os.getpid() or _alive(int(match.group(2))):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.name)
    return removed


def check_can_write(path: Path, what: str, *, directory: bool = False) -> None:
    """Refuse, before any work, a place that cannot take what is about to be written there: a directory where a
    file is meant (or the reverse), a parent that is a file, a read-only or unwritable place."""
    from envbuilder.model.errors import FileProblem

    if path.exists() and path.is_dir() != directory:
        kind = "a directory" if path.is_dir() else "a file"
        hint = "name a file (not a directory)" if not directory else "name a directory (not a file)"
        raise FileProblem(f"{what} {path}: it is {kind}", hint=hint)
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        msg = f"{what} {path}: {parent} is a file, not a directory"
        raise FileProblem(msg, hint="choose a path whose parts are directories")
    probe = path if path.exists() else parent
    if not os.access(probe, os.W_OK):
        why = "read-only file system" if _read_only(probe) else "permission denied"
        raise FileProblem(f"{what} {path}: {probe} is not writable ({why})", hint="choose a writable place")


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


# What envbuilder writes carries one of these: a "Generated by envbuilder" header (Dockerfiles, scripts, CI
# files) or, in a lock, its [tool.envbuilder] table.
_OURS = ("Generated by envbuilder", "\n[tool.envbuilder]\n")
_MAX_SNIFF = 8 << 20


def written_by_envbuilder(path: Path) -> bool:
    """Does ``path`` hold envbuilder's own earlier output (or nothing at all)?"""
    try:
        with path.open("rb") as fh:
            data = fh.read(_MAX_SNIFF)
    except OSError:
        return False
    text = data.decode("utf-8", errors="replace")
    return not data or any(mark in text for mark in _OURS)


def refuse_overwrite(path: Path, what: str, *, force: bool) -> None:
    """Never replace a file envbuilder did not write (a user's lock, script or Dockerfile) unless ``--force``.

    envbuilder's own earlier output is replaced without asking: regenerating is the normal workflow
    (``lock --upgrade``, ``dockerfile`` after a pin change), and what it held can be regenerated.
    """
    from envbuilder.model.errors import FileProblem

    if force or not path.is_file() or written_by_envbuilder(path):
        return
    msg = f"{what} {path}: a file is there that envbuilder did not write"
    raise FileProblem(msg, hint="choose another path, or pass --force to replace it")
