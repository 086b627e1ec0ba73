"""The rule for envbuilder's root directories, as strings, with nothing but ``os``.

``edge/settings.py`` owns the roots and hands them out as paths; this is its rule, kept apart so that the
console script's replay (``cli/_replay.py``) can find the cache before anything heavier is imported.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["cache_root", "root"]


def root(override: str | None, xdg: str, default: str, environ: Mapping[str, str] | None, home: str | None) -> str:
    """``$override``, else ``$xdg/envbuilder``, else ``~/<default>/envbuilder`` (an empty variable is unset)."""
    env = os.environ if environ is None else environ
    if override and env.get(override):
        return env[override]
    base = env.get(xdg) or os.path.join(home or os.path.expanduser("~"), default)
    return os.path.join(base, "envbuilder")


def cache_root(environ: Mapping[str, str] | None = None, home: str | None = None) -> str:
    """``$ENVBUILDER_CACHE``, else ``$XDG_CACHE_HOME/envbuilder`` (``~/.cache/envbuilder``)."""
    return root("ENVBUILDER_CACHE", "XDG_CACHE_HOME", ".cache", environ, home)
