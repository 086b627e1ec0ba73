"""The command line: argument parsing and rendering only; the one place that maps errors to exit codes.

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

from envbuilder import __version__
from envbuilder.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    EXIT_USAGE,
    EnvbuilderError,
    Terminated,
    file_problem,
)

# Subcommand modules, in the order `--help` lists them. Each is imported only when the CLI starts.
COMMANDS: tuple[str, ...] = (
    "detect",
    "resolve",
    "create",
    "lock",
    "sync",
    "envs",
    "smoke",
    "doctor",
    "docker",
    "recipe",
    "matrix",
)


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (what, where, what to do), never a traceback."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"envbuilder: error: {message}\nTIP run `{self.prog} --help` for the options\n")


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
    "smoke": "smoke",
    "doctor": "doctor",
    "dockerfile": "docker",
    "build": "docker",
    "ci": "docker",
    "recipe": "recipe",
    "matrix": "matrix",
}
_GLOBAL_WITH_VALUE = ("--matrix-dir",)


def _command_module(argv: Sequence[str]) -> str | None:
    """The module of the subcommand ``argv`` names (None: no command, or one this table does not know)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in _GLOBAL_WITH_VALUE:
            skip = True
        elif arg == "--":
            return None
        elif not arg.startswith("-"):
            return COMMAND_MODULES.get(arg)
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the subcommand it names is registered (its module alone imported)."""
    parser = _Parser(prog="envbuilder", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="store_true", help="print the tool's version and the matrix's date")
    parser.add_argument("--verbose", "-v", action="store_true", help="show debug logs and tracebacks")
    parser.add_argument(
        "--matrix-dir",
        action="append",
        default=None,
        metavar="DIR",
        help="lay the facts in DIR over the shipped matrix (repeatable; also ENVBUILDER_MATRIX_DIR)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    only = _command_module(argv) if argv is not None else None
    for name in (only,) if only else COMMANDS:
        try:
            module = importlib.import_module(f"envbuilder.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"envbuilder.cli.{name}":
                raise
            continue  # a subcommand not written yet
        module.register(sub)
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
        from envbuilder.credentials import redact

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


def _report(exc: EnvbuilderError, *, verbose: bool) -> int:
    if verbose:
        logging.exception("traceback")
    from envbuilder.credentials import redact

    print(f"envbuilder: {redact(exc.message)}", file=sys.stderr)
    if exc.hint:
        print(f"TIP {redact(exc.hint)}", file=sys.stderr)
    return int(exc.exit_code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(sys.argv[1:] if argv is None else argv)
    if argv is not None and any("\x00" in a for a in argv):
        # A C program cannot pass one, but an in-process caller can, and every file call would raise on it.
        print("envbuilder: error: an argument holds a NUL byte\nTIP remove it", file=sys.stderr)
        return EXIT_USAGE
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2); return it for in-process callers
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    _configure_logging(args.verbose)
    with _signals_as_exceptions():
        return _main(args, parser)


def _main(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        return _dispatch(args, parser)
    except EnvbuilderError as exc:
        return _report(exc, verbose=args.verbose)
    except KeyboardInterrupt:
        print("envbuilder: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Terminated:
        print("envbuilder: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except BrokenPipeError:
        # The reader went away (`envbuilder resolve | head`): not an error of ours. Silence the flush at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except OSError as exc:
        # The file system said no (read-only, full, a file where a directory belongs) somewhere no check above
        # foresaw: one message naming the path, exit 2, never a traceback.
        return _report(file_problem(exc), verbose=args.verbose)


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
