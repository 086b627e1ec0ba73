"""The command line: ``app`` parses and dispatches (the one place errors become exit codes), one module per command.

The console script starts here and imports ``app`` only when no replayed answer holds (``_replay``: a query's
output kept by its inputs, so that ``envbuilder resolve`` costs little more than Python's own start-up).
"""

from __future__ import annotations

import sys

__all__ = ["entry"]


def entry() -> None:
    """Console-script entry point: the kept answer when one still holds, else the command (recorded if a query)."""
    from envbuilder.cli import _replay

    argv = sys.argv[1:]
    path = _replay.entry_path(argv)
    code = _replay.replay(path) if path else None
    if code is None:
        from envbuilder.cli.app import main

        if path is None:
            code = main(argv)
        else:
            with _replay.Recorder(path) as recorder:
                code = main(argv)
            recorder.keep(code)
    sys.exit(code)
