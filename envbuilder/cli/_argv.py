"""Which command a command line names, read before anything is parsed (the parser and the replay both ask)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["GLOBAL_WITH_VALUE", "command_word"]

# The global options that take a value as the next argument: that value is not the command.
GLOBAL_WITH_VALUE = ("--matrix-dir", "--color")


def command_word(argv: Sequence[str]) -> str | None:
    """The first argument that is neither an option nor a global option's value (None: no command, or ``--``)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in GLOBAL_WITH_VALUE:
            skip = True
        elif arg == "--":
            return None
        elif not arg.startswith("-"):
            return arg
    return None
