"""Where envbuilder's configuration files are: the project's, found upward, and the user's.

- The project's: ``envbuilder.toml``, or ``pyproject.toml`` with a ``[tool.envbuilder]`` table (the same keys:
  ``[[tool.envbuilder.env]]``, ``[tool.envbuilder.sources]``), in the current directory or the nearest parent,
  as uv finds ``uv.toml``/``[tool.uv]`` (a ``pyproject.toml`` without the table is passed over, and
  ``envbuilder.toml`` beats ``pyproject.toml`` in one directory). The search stops at the repository's root
  (the first directory holding ``.git``) or the file system's root: a manifest above the repository is not
  this project's. uv walks every ancestor; envbuilder stops sooner because a lock is written beside its
  manifest, and a manifest found outside the checkout would put the team's locks there.
- The user's: ``$XDG_CONFIG_HOME/envbuilder/config.toml`` (``~/.config/envbuilder/config.toml``), holding only
  ``[sources]`` (environments belong to a project), as uv's user ``uv.toml`` holds no project.

Precedence, highest first: options; ``ENVBUILDER_*`` variables; the project's file; the user's file; pip's
configuration. Between the two files, a string or boolean from the project wins and lists are joined, the
project's first (uv's rule for merging its files). ``--no-config`` reads neither file (``--manifest`` still
names one explicitly).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "PROJECT_FILE",
    "PYPROJECT",
    "find_project",
    "load_user_sources",
    "merge_sources",
]

PROJECT_FILE = "envbuilder.toml"
PYPROJECT = "pyproject.toml"


def _has_tool_table(pyproject: Path) -> bool:
    """``[tool.envbuilder]`` is in the file (read cheaply first: most pyproject.toml files never name it)."""
    try:
        text = pyproject.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    if "envbuilder" not in text:
        return False
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    try:
        tool = tomllib.loads(text).get("tool", {})
    except tomllib.TOMLDecodeError:
        return True  # broken, and it names envbuilder: load_manifest reports where
    return isinstance(tool, dict) and "envbuilder" in tool


def find_project(start: Path) -> Path | None:
    """The project's configuration file for ``start`` (a directory), or None (the rule in the docstring)."""
    here = start.absolute()
    for directory in (here, *here.parents):
        candidate = directory / PROJECT_FILE
        if candidate.is_file():
            return candidate
        pyproject = directory / PYPROJECT
        if pyproject.is_file() and _has_tool_table(pyproject):
            return pyproject
        if (directory / ".git").exists():
            return None  # the repository's root: the search ends here
    return None


def load_user_sources(path: Path) -> dict[str, Any]:
    """The user's ``[sources]`` (validated as a manifest's are; relative paths from the file's directory)."""
    from envbuilder.edge.manifest import read_sources_file
    from envbuilder.model.errors import LockError

    sources, other = read_sources_file(path)
    if other:
        msg = f"{path}: unknown key {other[0]!r} in the user configuration"
        hint = "the user configuration holds [sources] only; environments ([[env]]) go in a project's envbuilder.toml"
        raise LockError(msg, hint=hint)
    return sources


def merge_sources(project: Mapping[str, Any], user: Mapping[str, Any]) -> dict[str, Any]:
    """The project's [sources] over the user's: scalars from the project, lists joined (project first)."""
    merged: dict[str, Any] = dict(user)
    for key, value in project.items():
        if isinstance(value, list) and isinstance(merged.get(key), list):
            merged[key] = list(dict.fromkeys([*value, *merged[key]]))
        else:
            merged[key] = value
    return merged
