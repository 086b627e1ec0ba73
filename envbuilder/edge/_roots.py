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


def _windows_local(env: Mapping[str, str], override: str, xdg: str, os_name: str | None, *parts: str) -> str | None:
    """``%LOCALAPPDATA%\\envbuilder[\\parts]`` on Windows when neither variable of the root is set, else None.
    LOCALAPPDATA is the user's local, not roaming, application data, where uv keeps its own."""
    local = env.get("LOCALAPPDATA")
    windows = (os.name if os_name is None else os_name) == "nt"
    if not (windows and local) or env.get(override) or env.get(xdg):
        return None
    import ntpath  # os.path itself on Windows; named so that the rule reads the same when tested elsewhere

    return ntpath.join(local, "envbuilder", *parts)


def data_root(environ: Mapping[str, str] | None = None, home: str | None = None, os_name: str | None = None) -> str:
    """Where environments live: ``$ENVBUILDER_HOME``, else ``$XDG_DATA_HOME/envbuilder``, else on Windows
    ``%LOCALAPPDATA%\\envbuilder``, else ``~/.local/share/envbuilder``. ``os_name`` is an ``os.name`` value
    (default: this machine's). The scripts envbuilder writes spell the same rule (the recipes, the shell
    completions); PowerShell takes a set LOCALAPPDATA for Windows."""
    env = os.environ if environ is None else environ
    local = _windows_local(env, "ENVBUILDER_HOME", "XDG_DATA_HOME", os_name)
    return local or root("ENVBUILDER_HOME", "XDG_DATA_HOME", ".local/share", environ, home)


def cache_root(environ: Mapping[str, str] | None = None, home: str | None = None, os_name: str | None = None) -> str:
    """``$ENVBUILDER_CACHE``, else ``$XDG_CACHE_HOME/envbuilder``, else on Windows
    ``%LOCALAPPDATA%\\envbuilder\\cache`` (uv's is ``%LOCALAPPDATA%\\uv\\cache``), else ``~/.cache/envbuilder``."""
    env = os.environ if environ is None else environ
    local = _windows_local(env, "ENVBUILDER_CACHE", "XDG_CACHE_HOME", os_name, "cache")
    return local or root("ENVBUILDER_CACHE", "XDG_CACHE_HOME", ".cache", environ, home)
