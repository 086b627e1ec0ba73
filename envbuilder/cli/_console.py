"""What the CLI writes to a person: quiet or verbose, coloured on a terminal only, errors as text or JSON.

The global options (``-q``, ``-v``, ``--color``) set one ``Console`` for the run (a ContextVar set by
``cli.main``, so in-process callers and threads each see their own); the subcommands call ``progress``,
``note`` and ``warn`` instead of printing to stderr, and ``paint`` for a coloured word on stdout.

Colour, in uv's order: ``--color always|never`` decides; with ``--color auto`` (the default) a non-empty
``NO_COLOR`` turns it off (no-color.org), else a non-empty ``FORCE_COLOR`` (force-color.org) or ``CLICOLOR_FORCE``
turns it on (uv's ``resolve_color`` in crates/uv/src/settings.rs reads the same three), else
a stream has colour when it is a terminal and ``TERM`` is not ``dumb``. stdout and stderr are decided apart
(``envbuilder resolve > plan.txt`` keeps colour in the messages on the terminal, none in the file).
"""

from __future__ import annotations

import contextvars
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TextIO

ColorWhen = Literal["auto", "always", "never"]
COLOR_CHOICES: tuple[ColorWhen, ...] = ("auto", "always", "never")
Style = Literal["error", "warning", "tip", "ok", "fail", "bold"]

# SGR codes: red bold, yellow, cyan, green, red, bold.
_SGR: dict[Style, str] = {"error": "1;31", "warning": "33", "tip": "36", "ok": "32", "fail": "31", "bold": "1"}


def wants_color(stream: TextIO, when: ColorWhen, environ: Mapping[str, str]) -> bool:
    """Whether text written to ``stream`` gets ANSI colour (the rule in the module's docstring)."""
    if when != "auto":
        return when == "always"
    if environ.get("NO_COLOR"):
        return False
    if environ.get("FORCE_COLOR") or environ.get("CLICOLOR_FORCE"):
        return True
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):  # a closed or a fake stream
        return False
    return tty and environ.get("TERM") != "dumb"


@dataclass(frozen=True, slots=True)
class Console:
    """How this run talks: ``quiet`` drops progress and notes (warnings and errors stay), ``verbose`` adds
    debug logs and tracebacks, ``color_out``/``color_err`` say whether stdout/stderr get colour."""

    quiet: bool = False
    verbose: bool = False
    color_out: bool = False
    color_err: bool = False
    json: bool = False


_PLAIN = Console()
_CURRENT: contextvars.ContextVar[Console | None] = contextvars.ContextVar("envbuilder_console", default=None)


def make_console(
    *, quiet: bool, verbose: bool, color: ColorWhen, json: bool = False, environ: Mapping[str, str] | None = None
) -> Console:
    env = os.environ if environ is None else environ
    return Console(
        quiet=quiet,
        verbose=verbose,
        color_out=wants_color(sys.stdout, color, env),
        color_err=wants_color(sys.stderr, color, env),
        json=json,
    )


def use(console: Console) -> contextvars.Token[Console | None]:
    """Make ``console`` the run's console (``reset`` with the token it returns)."""
    return _CURRENT.set(console)


def reset(token: contextvars.Token[Console | None]) -> None:
    _CURRENT.reset(token)


def current() -> Console:
    """The run's console (plain, no colour, for code that runs outside ``cli.main``)."""
    return _CURRENT.get() or _PLAIN


def paint(text: str, style: Style, *, stream: Literal["stdout", "stderr"] = "stdout") -> str:
    """``text`` in ``style`` when that stream has colour, else ``text`` unchanged."""
    console = current()
    on = console.color_out if stream == "stdout" else console.color_err
    return f"\x1b[{_SGR[style]}m{text}\x1b[0m" if on else text


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def progress(text: str) -> None:
    """A step of a long command, on stderr; nothing with ``-q`` (and nothing under ``--json``: the caller's)."""
    if not current().quiet:
        _err(text)


def note(text: str) -> None:
    """Something the user may want to know (a source honoured, a name rewritten): ``note: ...``; not with -q."""
    if not current().quiet:
        _err(f"{paint('note:', 'bold', stream='stderr')} {text}")


def warn(text: str) -> None:
    """Something the user should act on: ``warning: ...``, shown even with ``-q``."""
    _err(f"{paint('warning:', 'warning', stream='stderr')} {text}")


def error_lines(message: str, hint: str | None) -> str:
    """An error as a person reads it: ``envbuilder: <what, where>`` and ``TIP <what to do>``."""
    head = f"{paint('envbuilder:', 'error', stream='stderr')} {message}"
    return head + (f"\n{paint('TIP', 'tip', stream='stderr')} {hint}" if hint else "")
