"""The command line: argument parsing and rendering only; the one place that maps errors to exit codes.

Each subcommand lives in its own module here and exposes ``register(subparsers)``, which adds its parser
and sets ``handler`` (a function ``(args) -> int``) as a default. Nothing below ``cli`` sees argv.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from envbuilder import __version__
from envbuilder.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, EnvbuilderError

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


def build_parser() -> argparse.ArgumentParser:
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
    for name in COMMANDS:
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2); return it for in-process callers
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    _configure_logging(args.verbose)
    try:
        return _dispatch(args, parser)
    except EnvbuilderError as exc:
        from envbuilder.credentials import redact

        if args.verbose:
            logging.exception("traceback")
        print(f"envbuilder: {redact(exc.message)}", file=sys.stderr)
        if exc.hint:
            print(f"TIP {redact(exc.hint)}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("envbuilder: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`envbuilder resolve | head`): not an error of ours. Silence the flush at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
