"""Settings passed down explicitly (no module globals): where environments live, and the package sources.

Also the one place that decides where envbuilder keeps things: every root directory (environments, cache, the
user's configuration) from its ``ENVBUILDER_*`` variable, else its XDG base directory, else the XDG default
under the home directory; and the cache's layout (``CacheEntry``). Nothing else reads those variables.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from envbuilder.edge import _roots

if TYPE_CHECKING:  # credentials (base64, a regex) are imported by the one function that splits URLs
    from collections.abc import Mapping

    from envbuilder.model.credentials import Credential

__all__ = [
    "CacheEntry",
    "Settings",
    "UvOutput",
    "cache_path",
    "cache_root",
    "config_home",
    "data_home",
    "env_flag",
    "user_config_path",
    "with_credentials_apart",
]

# How uv's install output reaches the user: kept for the error message only, relayed as plain lines (a CI log),
# or relayed from a pseudo-terminal so that uv draws its own progress bars (a terminal); "-plain" without colour.
UvOutput = Literal["capture", "lines", "terminal", "terminal-plain"]


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def env_flag(name: str) -> bool:
    """A boolean environment variable: 1/true/yes/on or 0/false/no/off (any case; unset or empty is false)."""
    value = os.environ.get(name, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    from envbuilder.model.errors import EnvbuilderError

    msg = f"{name}={value[:40]!r} is not a boolean"
    raise EnvbuilderError(msg, hint=f"set {name} to 1, true, yes or on (or 0, false, no, off), or unset it")


# --------------------------------------------------------------------------- where envbuilder keeps things


def _root(override: str | None, xdg: str, default: str, environ: Mapping[str, str] | None, home: Path | None) -> Path:
    """``$override``, else ``$xdg/envbuilder``, else ``~/<default>/envbuilder`` (the rule: ``_roots.root``)."""
    return Path(_roots.root(override, xdg, default, environ, str(home) if home is not None else None))


def data_home(environ: Mapping[str, str] | None = None, home: Path | None = None, os_name: str | None = None) -> Path:
    """Where environments live: ``$ENVBUILDER_HOME``, else ``$XDG_DATA_HOME/envbuilder``, else on Windows
    ``%LOCALAPPDATA%\\envbuilder``, else ``~/.local/share/envbuilder`` (the rule: ``_roots.data_root``)."""
    return Path(_roots.data_root(environ, str(home) if home is not None else None, os_name))


def cache_root(environ: Mapping[str, str] | None = None, home: Path | None = None, os_name: str | None = None) -> Path:
    """``$ENVBUILDER_CACHE``, else ``$XDG_CACHE_HOME/envbuilder``, else ``%LOCALAPPDATA%\\envbuilder\\cache`` on
    Windows, else ``~/.cache/envbuilder`` (the rule: ``_roots.cache_root``)."""
    return Path(_roots.cache_root(environ, str(home) if home is not None else None, os_name))


def config_home(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """The user's configuration directory: ``$XDG_CONFIG_HOME/envbuilder`` (``~/.config/envbuilder``)."""
    return _root(None, "XDG_CONFIG_HOME", ".config", environ, home)


def user_config_path(environ: Mapping[str, str] | None = None, home: Path | None = None) -> Path:
    """``config.toml`` in ``config_home()``: the user's ``[sources]``."""
    return config_home(environ, home) / "config.toml"


# The cache's layout: every entry under the cache directory, by the one module that keeps it.
#   resolutions     builder: uv's resolutions by the digest of their input (PEP 751 files)
#   reachable.json  sources: index reachability answers (a few minutes)
#   pythons.json    detect: the interpreters found and their versions
#   matrix          edge/matrix_cache: compiled matrices by the digest of their files
#   upstream        upstream: facts read from wheels and pages, by sha256
#   replay          cli/_replay: a query command's answer by the digest of its inputs (found via _roots alone)
CacheEntry = Literal["resolutions", "reachable.json", "pythons.json", "matrix", "upstream", "replay"]


def cache_path(entry: CacheEntry, cache_dir: Path | None = None) -> Path:
    """``entry`` under ``cache_dir`` (a command's ``Settings.cache_dir``), else under ``cache_root()``."""
    return (cache_dir if cache_dir is not None else cache_root()) / entry


def _default_home() -> Path:
    return data_home()


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Where things go and where packages come from.

    ``index_url`` replaces PyPI (a mirror); ``pytorch_index`` is the PyTorch index or its mirror (variant
    indexes are ``<pytorch_index>/<variant>``; None: none; the CLI's default is the matrix's, ``Matrix.pytorch_index``,
    filled in by ``cli._sources.settings_from_args``); ``find_links`` are wheelhouse directories; ``ca_certs`` are
    extra CA bundles for corporate proxies; ``offline`` forbids the network altogether. The URLs carry no
    userinfo: ``credentials`` holds it (``with_credentials_apart``), and only uv and the probe read it.
    """

    home: Path = field(default_factory=_default_home)
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    pytorch_index: str | None = None
    find_links: tuple[str, ...] = ()
    ca_certs: tuple[str, ...] = ()
    offline: bool = False
    notes: tuple[str, ...] = ()
    check_pytorch_index: bool = True
    cache_dir: Path = field(default_factory=cache_root)
    refresh: bool = False  # re-resolve even where a resolution of the same input is cached
    uv_output: UvOutput = "capture"
    credentials: tuple[Credential, ...] = field(default=(), repr=False)

    @property
    def envs_dir(self) -> Path:
        return self.home / "envs"

    def env_path(self, name: str) -> Path:
        return self.envs_dir / name


def with_credentials_apart(settings: Settings) -> Settings:
    """The same settings with every index URL's userinfo moved into ``credentials`` (issue 11: no secret in a
    lock, cache, log or the console starts here)."""
    from envbuilder.model.credentials import split_userinfo

    found = list(settings.credentials)

    def clean(url: str) -> str:
        bare, credential = split_userinfo(url)
        if credential is not None and credential not in found:
            found.append(credential)
        return bare

    return replace(
        settings,
        index_url=clean(settings.index_url) if settings.index_url else None,
        extra_index_urls=tuple(clean(u) for u in settings.extra_index_urls),
        pytorch_index=clean(settings.pytorch_index).rstrip("/") if settings.pytorch_index else None,
        credentials=tuple(found),
    )
