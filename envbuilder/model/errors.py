"""The one error hierarchy, and the exit codes it maps to (mapped in ``cli.main`` only).

Exit codes, everywhere (DESIGN.md): 0 done; 1 the thing checked failed (no plan can work, a smoke stage
failed, doctor found a problem); 2 the input or a precondition the user must fix; 130 interrupted (SIGINT);
143 terminated (SIGTERM).
"""

from __future__ import annotations

import errno
from typing import NewType

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "CheckFailed",
    "CommandFailed",
    "EnvbuilderError",
    "ExitCode",
    "FileProblem",
    "LockError",
    "MatrixError",
    "SourceError",
    "TargetError",
    "Terminated",
    "UsageError",
    "file_problem",
]

ExitCode = NewType("ExitCode", int)
EXIT_OK = ExitCode(0)
EXIT_CHECK_FAILED = ExitCode(1)
EXIT_USAGE = ExitCode(2)
EXIT_INTERRUPTED = ExitCode(130)
EXIT_TERMINATED = ExitCode(143)


class EnvbuilderError(Exception):
    """Base class: a message for a person (what, where) and a hint (what to do)."""

    exit_code: ExitCode = EXIT_USAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(EnvbuilderError):
    """The command line cannot be parsed (argparse's own complaint: an unknown option, a missing value)."""


class MatrixError(EnvbuilderError):
    """The matrix data is malformed: file, dotted key path, and the fix."""


class TargetError(EnvbuilderError):
    """A target option (GPU, driver, OS, Python, profile, spec) cannot be understood."""


class CommandFailed(EnvbuilderError):
    """An external command failed, or could not be found."""

    def __init__(
        self, message: str, *, hint: str | None = None, returncode: int | None = None, output: str = ""
    ) -> None:
        super().__init__(message, hint=hint)
        self.returncode = returncode
        self.output = output


class LockError(EnvbuilderError):
    """A lock or manifest is malformed, tampered with, or does not fit this host."""


class SourceError(EnvbuilderError):
    """A package source (index, mirror, wheelhouse) cannot serve what is needed, or cannot be reached."""


class CheckFailed(EnvbuilderError):
    """The thing checked failed: no plan can work, a smoke stage failed, doctor found a problem."""

    exit_code = EXIT_CHECK_FAILED


class FileProblem(EnvbuilderError):
    """A path cannot be used: missing, a file where a directory belongs (or the reverse), read-only, full."""


class Terminated(BaseException):
    """SIGTERM arrived (CI cancel, ``timeout``, ``docker stop``). Like KeyboardInterrupt, not an ``Exception``, so
    that no ``except Exception`` swallows it; ``finally`` blocks still remove what was unfinished."""


_FILE_HINTS = {
    errno.EACCES: "check its permissions, or choose another place",
    errno.EPERM: "check its permissions, or choose another place",
    errno.EROFS: "that file system is read-only: choose a writable place",
    errno.ENOSPC: "free some space (or choose another disk), then run it again; nothing you had was changed",
    errno.EDQUOT: "your disk quota is used up: free some space, then run it again; nothing you had was changed",
    errno.ENOTDIR: "a part of that path is a file, not a directory: choose another path",
    errno.EISDIR: "that is a directory: name a file",
    errno.ENOENT: "check the path",
    errno.ENAMETOOLONG: "choose a shorter path",
}


def file_problem(exc: OSError, *, what: str | None = None) -> FileProblem:
    """One message for an error of the file system: the path, what went wrong, what to do (exit 2)."""
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    reason = (exc.strerror or str(exc)).lower()
    lead = f"{what}: " if what else ""
    message = f"{lead}{where}: {reason}" if where else f"{lead}{reason}"
    return FileProblem(message, hint=_FILE_HINTS.get(exc.errno or 0, "check the path and its permissions"))
