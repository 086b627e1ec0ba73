"""The rule for envbuilder's root directories, as strings, with nothing but ``os``.

``edge/settings.py`` owns the roots and hands them out as paths; this is its rule, kept apart so that the
console script's replay (``cli/_replay.py``) can find the cache before anything heavier is imported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["cache_root", "data_root", "root"]


def root(override: str | None, xdg: str, default: str, environ: Mapping[str, str] | None, home: str | None) -> str:
    """``$override``, else ``$xdg/envbuilder``, else ``~/<default>/envbuilder`` (an empty variable is unset)."""
    env = os.environ if environ is None else environ
    if override and env.get(override):
        return env[override]
    base = env.get(xdg) or os.path.join(home or os.path.expanduser("~"), default)
    return os.path.join(base, "envbuilder")


def data_root(environ: Mapping[str, str] | None = None, home: str | None = None, os_name: str | None = None) -> str:
    """Where environments live: ``$ENVBUILDER_HOME``, else ``$XDG_DATA_HOME/envbuilder``, else on Windows
    ``%LOCALAPPDATA%\\envbuilder`` (the user's local, not roaming, application data, where uv keeps its cache),
    else ``~/.local/share/envbuilder``. ``os_name`` is an ``os.name`` value (default: this machine's). The scripts
    envbuilder writes spell the same rule (the recipes, the shell completions); PowerShell takes a set
    LOCALAPPDATA for Windows."""
    env = os.environ if environ is None else environ
    local = env.get("LOCALAPPDATA")
    windows = (os.name if os_name is None else os_name) == "nt"
    if windows and local and not env.get("ENVBUILDER_HOME") and not env.get("XDG_DATA_HOME"):
        import ntpath  # os.path itself on Windows; named so that the rule reads the same when tested elsewhere

        return ntpath.join(local, "envbuilder")
    return root("ENVBUILDER_HOME", "XDG_DATA_HOME", ".local/share", environ, home)


def cache_root(environ: Mapping[str, str] | None = None, home: str | None = None) -> str:
    """``$ENVBUILDER_CACHE``, else ``$XDG_CACHE_HOME/envbuilder`` (``~/.cache/envbuilder``)."""
    return root("ENVBUILDER_CACHE", "XDG_CACHE_HOME", ".cache", environ, home)
