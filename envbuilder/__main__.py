"""python -m envbuilder."""

from envbuilder.cli import entry

entry()
