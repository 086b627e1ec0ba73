"""The one error hierarchy, and the exit codes it maps to (mapped in ``cli.main`` only).

Exit codes, everywhere (DESIGN.md): 0 done; 1 the thing checked failed (no plan can work, a smoke stage
failed, doctor found a problem); 2 the input or a precondition the user must fix; 130 interrupted.
"""

from __future__ import annotations

from typing import NewType

ExitCode = NewType("ExitCode", int)
EXIT_OK = ExitCode(0)
EXIT_CHECK_FAILED = ExitCode(1)
EXIT_USAGE = ExitCode(2)
EXIT_INTERRUPTED = ExitCode(130)


class EnvbuilderError(Exception):
    """Base class: a message for a person (what, where) and a hint (what to do)."""

    exit_code: ExitCode = EXIT_USAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


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
