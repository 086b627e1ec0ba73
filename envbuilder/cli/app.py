"""The command line: argument parsing and rendering only; the one place that maps errors to exit codes.

(``envbuilder.cli.entry``, the console script, tries a replayed answer first: ``_replay``.)

Each subcommand lives in its own module here and exposes ``register(subparsers)``, which adds its parser
and sets ``handler`` (a function ``(args) -> int``) as a default. Nothing below ``cli`` sees argv.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any, NoReturn

from envbuilder import __version__
from envbuilder.cli import _console
from envbuilder.cli._argv import command_word
from envbuilder.cli._console import ColorWhen
from envbuilder.model.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    EnvbuilderError,
    ExitCode,
    Terminated,
    UsageError,
    file_problem,
)

__all__ = [
    "COMMANDS",
    "COMMAND_MODULES",
    "ERROR_SCHEMA",
    "add_global_options",
    "build_parser",
    "main",
]

# Subcommand modules, in the order `--help` lists them. Each is imported only when the CLI starts.
COMMANDS: tuple[str, ...] = (
    "detect",
    "resolve",
    "create",
    "lock",
    "sync",
    "upgrade",
    "envs",
    "smoke",
    "doctor",
    "docker",
    "recipe",
    "matrix",
    "completion",
)


class _Parser(argparse.ArgumentParser):
    """argparse whose complaints are a ``UsageError`` (exit 2, one line and a TIP, text or JSON), never a traceback."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, hint=f"run `{self.prog} --help` for the options")


class _TopFormatter(argparse.RawDescriptionHelpFormatter):
    """The command list without argparse's lone ``COMMAND`` line above it."""

    def _format_action(self, action: argparse.Action) -> str:
        if isinstance(action, argparse._SubParsersAction):
            return "".join(super(_TopFormatter, self)._format_action(a) for a in action._get_subactions())
        return super()._format_action(action)


class _SubParser(_Parser):
    """A subcommand's parser: it takes the global options too (``envbuilder lock -v``), without overriding what
    was given before the command (their defaults here are SUPPRESS: only a given flag sets anything)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        add_global_options(self, top=False)


def add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """-q/-v/--color/--no-config: before the command, or after it."""
    from envbuilder.cli._console import COLOR_CHOICES

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    g = parser.add_argument_group("global options" + ("" if top else " (also before the command)"))
    g.add_argument(
        "-q", "--quiet", action="store_true", default=default(False), help="results, warnings and errors only"
    )
    g.add_argument("-v", "--verbose", action="store_true", default=default(False), help="debug logs and tracebacks too")
    g.add_argument(
        "--color",
        choices=COLOR_CHOICES,
        default=default("auto"),
        metavar="WHEN",
        help="auto (colour on a terminal; NO_COLOR and FORCE_COLOR honoured), always or never",
    )
    g.add_argument(
        "--no-config",
        action="store_true",
        default=default(False),
        help="read no configuration file (envbuilder.toml, [tool.envbuilder], the user config)",
    )


# Which module registers each subcommand: a command line names one, and only its module is imported (start-up,
# bench/RESULTS-resolve.md); `--help`, no command or an unknown one build the whole parser. A test checks that
# this table is exactly what the modules register.
COMMAND_MODULES: dict[str, str] = {
    "detect": "detect",
    "resolve": "resolve",
    "create": "create",
    "lock": "lock",
    "sync": "sync",
    "list": "envs",
    "remove": "envs",
    "run": "envs",
    "shell": "envs",
    "unguard": "envs",
    "guard": "envs",
    "upgrade": "upgrade",
    "smoke": "smoke",
    "doctor": "doctor",
    "dockerfile": "docker",
    "build": "docker",
    "ci": "docker",
    "recipe": "recipe",
    "matrix": "matrix",
    "completion": "completion",
}


def _command_module(argv: Sequence[str]) -> str | None:
    """The module of the subcommand ``argv`` names (None: no command, or one this table does not know)."""
    word = command_word(argv)
    return COMMAND_MODULES.get(word) if word else None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the subcommand it names is registered (its module alone imported)."""
    from envbuilder.cli import _help

    parser = _Parser(
        prog="envbuilder",
        usage="envbuilder [-h] [-V] [-q | -v] [--color WHEN] [--no-config] [--matrix-dir DIR] COMMAND ...",
        description=_help.DESCRIPTION,
        epilog=_help.EPILOG,
        formatter_class=_TopFormatter,
    )
    parser.add_argument("-V", "--version", action="store_true", help="print envbuilder's version and the matrix's date")
    add_global_options(parser, top=True)
    parser.add_argument(
        "--matrix-dir",
        action="append",
        default=None,
        metavar="DIR",
        help="lay the facts in DIR over the shipped matrix (repeatable; also ENVBUILDER_MATRIX_DIR)",
    )
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands", parser_class=_SubParser, prog="envbuilder"
    )
    only = _command_module(argv) if argv is not None else None
    for name in (only,) if only else COMMANDS:
        try:
            module = importlib.import_module(f"envbuilder.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"envbuilder.cli.{name}":
                raise
            continue  # a subcommand not written yet
        module.register(sub)
    for command, subparser in sub.choices.items():
        subparser.formatter_class = argparse.RawDescriptionHelpFormatter
        subparser.epilog = subparser.epilog or _help.epilog(command)
    return parser


def _print_version(args: argparse.Namespace) -> int:
    from envbuilder.cli._common import load_matrix_for

    matrix = load_matrix_for(args)
    print(f"envbuilder {__version__} (matrix {matrix.date})")
    return 0


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.version:
        return _print_version(args)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return EXIT_USAGE
    return int(handler(args))


class _RedactingFormatter(logging.Formatter):
    """Debug logs and tracebacks (--verbose) never show the userinfo of a URL."""

    def format(self, record: logging.LogRecord) -> str:
        from envbuilder.model.credentials import redact

        return redact(super().format(record))


def _configure_logging(verbose: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_RedactingFormatter("%(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, handlers=[handler])


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    # One orderly shutdown: later SIGINT/SIGTERM are ignored, so that a second Ctrl-C cannot cut short the
    # removal of an unfinished build or the stopping of a child (SIGKILL still ends everything).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)


@contextlib.contextmanager
def _signals_as_exceptions() -> Iterator[None]:
    """SIGINT and SIGTERM unwind the stack (``finally`` blocks clean up); the old handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


ERROR_SCHEMA = "envbuilder.error/1"


def _report(exc: EnvbuilderError, *, verbose: bool = False) -> int:
    """The one place an error becomes output and an exit code: ``envbuilder: what`` and ``TIP what to do`` on
    stderr, and under ``--json`` the same as a document on stdout (scripts read stdout only)."""
    if verbose:
        logging.exception("traceback")
    from envbuilder.model.credentials import redact

    message, hint = redact(exc.message), redact(exc.hint) if exc.hint else None
    shown = f"error: {message}" if isinstance(exc, UsageError) else message  # argparse's own form
    print(_console.error_lines(shown, hint), file=sys.stderr, flush=True)
    if _console.current().json:
        import json

        doc = {"schema": ERROR_SCHEMA, "error": message, "tip": hint, "exit_code": int(exc.exit_code)}
        print(json.dumps(doc, indent=2), flush=True)
    return int(exc.exit_code)


def _stopped(what: str, code: ExitCode) -> EnvbuilderError:
    """Ctrl-C or SIGTERM, reported like an error (one line; under --json a document) with its own code."""
    exc = EnvbuilderError(what)
    exc.exit_code = code
    return exc


def _json_requested(argv: Sequence[str]) -> bool:
    """``--json`` among the options (before a ``--``, after which the arguments are a child command's)."""
    return "--json" in argv[: argv.index("--")] if "--" in argv else "--json" in argv


def _color_given(argv: Sequence[str]) -> ColorWhen:
    """``--color`` as the command line gives it, read before parsing (a usage error is coloured too)."""
    when = ""
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg.startswith("--color="):
            when = arg.partition("=")[2]
        elif arg == "--color" and i + 1 < len(argv):
            when = argv[i + 1]
    return "always" if when == "always" else "never" if when == "never" else "auto"


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    early = _console.make_console(quiet=False, verbose=False, color=_color_given(raw), json=_json_requested(raw))
    token = _console.use(early)
    try:
        return _parse_and_run(raw)
    finally:
        _console.reset(token)


def _parse_and_run(raw: list[str]) -> int:
    try:
        if any("\x00" in a for a in raw):
            # A C program cannot pass one, but an in-process caller can, and every file call would raise on it.
            raise UsageError("an argument holds a NUL byte", hint="remove it")
        parser = build_parser(raw)
        args = parser.parse_args(raw)
        if args.quiet and args.verbose:
            raise UsageError("-q (quiet) and -v (verbose) contradict each other", hint="give one of them")
    except UsageError as exc:
        return _report(exc)
    except SystemExit as exc:  # argparse's --help: 0
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    _console.use(
        _console.make_console(
            quiet=args.quiet, verbose=args.verbose, color=args.color, json=bool(getattr(args, "json", False))
        )
    )
    _configure_logging(args.verbose)
    with _signals_as_exceptions():
        return _main(args, parser)


def _main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        return _dispatch(args, parser)
    except EnvbuilderError as exc:
        return _report(exc, verbose=args.verbose)
    except KeyboardInterrupt:
        return _report(_stopped("interrupted", EXIT_INTERRUPTED))
    except Terminated:
        return _report(_stopped("terminated", EXIT_TERMINATED))
    except BrokenPipeError:
        # The reader went away (`envbuilder resolve | head`): not an error of ours. Silence the flush at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        # The file system said no (read-only, full, a file where a directory belongs) somewhere no check above
        # foresaw: one message naming the path, exit 2, never a traceback.
        return _report(file_problem(exc), verbose=args.verbose)
