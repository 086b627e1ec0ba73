"""The only module that starts processes: argv lists, timeouts, one failure type."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from envbuilder.credentials import redact
from envbuilder.errors import CommandFailed

log = logging.getLogger("envbuilder.run")


@dataclass(frozen=True, slots=True)
class Result:
    """What a finished command left: its exit code and its output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def which(tool: str) -> str | None:
    """Where ``tool`` is on PATH, or None."""
    return shutil.which(tool)


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float | None = None,
    check: bool = True,
    capture: bool = True,
    stdin: str | None = None,
) -> Result:
    """Run ``argv``; raise ``CommandFailed`` if it cannot start, times out, or (with ``check``) fails.

    ``capture=False`` streams the command's output to ours (progress for long steps).
    """
    args = tuple(os.fspath(a) for a in argv)
    log.debug("run: %s", redact(shlex.join(args)))  # argv carries no credentials; redact is the backstop
    try:
        proc = subprocess.run(
            args,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            timeout=timeout,
            capture_output=capture,
            text=True,
            encoding="utf-8",
            errors="replace",  # a tool's output is outside input: bytes that are not UTF-8 must not crash us
            input=stdin,
            check=False,
        )
    except FileNotFoundError:
        msg = f"{args[0]}: command not found"
        raise CommandFailed(msg, hint=f"install {Path(args[0]).name} or put it on PATH") from None
    except subprocess.TimeoutExpired:
        msg = f"{shlex.join(args[:3])} ...: no answer within {timeout:g} s"
        raise CommandFailed(msg, hint="check the network or the tool, then try again") from None
    result = Result(args, proc.returncode, proc.stdout or "", proc.stderr or "")
    if check and proc.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-12:]
        msg = f"{shlex.join(args[:4])} ... exited {proc.returncode}" + (":\n  " + "\n  ".join(tail) if tail else "")
        msg = redact(msg)
        raise CommandFailed(msg, returncode=proc.returncode, output=result.stdout + result.stderr)
    return result
