"""Settings passed down explicitly (no module globals): where environments live, and the package sources."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # credentials (base64, a regex) are imported by the one function that splits URLs
    from envbuilder.credentials import Credential

DEFAULT_PYTORCH_INDEX = "https://download.pytorch.org/whl"
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
    from envbuilder.errors import EnvbuilderError

    msg = f"{name}={value[:40]!r} is not a boolean"
    raise EnvbuilderError(msg, hint=f"set {name} to 1, true, yes or on (or 0, false, no, off), or unset it")


def cache_root() -> Path:
    """``$ENVBUILDER_CACHE``, else ``$XDG_CACHE_HOME/envbuilder`` (``~/.cache/envbuilder``)."""
    env = os.environ.get("ENVBUILDER_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "envbuilder"


def _default_home() -> Path:
    env = os.environ.get("ENVBUILDER_HOME")
    if env:
        return Path(env)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "envbuilder"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Where things go and where packages come from.

    ``index_url`` replaces PyPI (a mirror); ``pytorch_index`` is the PyTorch index or its mirror (variant
    indexes are ``<pytorch_index>/<variant>``); ``find_links`` are wheelhouse directories; ``ca_certs`` are
    extra CA bundles for corporate proxies; ``offline`` forbids the network altogether. The URLs carry no
    userinfo: ``credentials`` holds it (``with_credentials_apart``), and only uv and the probe read it.
    """

    home: Path = field(default_factory=_default_home)
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    pytorch_index: str | None = DEFAULT_PYTORCH_INDEX
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
    from envbuilder.credentials import split_userinfo

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
