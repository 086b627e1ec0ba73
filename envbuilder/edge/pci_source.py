"""Where ``matrix refresh --pci-ids`` reads the PCI ID database from: a file, a URL, or this system's copy.

The edge for the pure ``pci_ids`` reader: a path or ``file:`` URL is read, an ``http(s)`` URL downloaded through
the same session as the index requests (``REQUESTS_CA_BUNDLE`` honoured). With no source, the system's copy
(Debian's ``pci.ids`` package, or hwdata) is read, and only where there is none is the database downloaded from
``$ENVBUILDER_PCI_IDS_URL`` or its project's site; ``ENVBUILDER_OFFLINE`` (1/true/yes/on) forbids that download.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlparse

from envbuilder.edge.settings import env_flag
from envbuilder.model.errors import SourceError

__all__ = [
    "DEFAULT_URL",
    "ENV_URL",
    "SYSTEM_PATHS",
    "read_pci_ids",
]

SYSTEM_PATHS = ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids")
ENV_URL = "ENVBUILDER_PCI_IDS_URL"
DEFAULT_URL = "https://pci-ids.ucw.cz/v2.2/pci.ids"  # the PCI ID project's own download (its header names the site)
_HINT = "install Debian's pci.ids package (apt-get install pci.ids) or hwdata, or give the file: --pci-ids PATH"


def read_pci_ids(source: str | None, *, system_paths: tuple[str, ...] = SYSTEM_PATHS) -> tuple[str, str]:
    """The text of a pci.ids database and where it came from (a path or a URL)."""
    if source is None:
        local = next((p for p in system_paths if Path(p).is_file()), None)
        if local is not None:
            return _read(Path(local)), local
        if env_flag("ENVBUILDER_OFFLINE"):
            msg = f"no pci.ids on this system ({', '.join(system_paths)}), and ENVBUILDER_OFFLINE forbids a download"
            raise SourceError(msg, hint=_HINT)
        source = os.environ.get(ENV_URL) or DEFAULT_URL
    scheme = urlparse(source).scheme
    if scheme in {"http", "https"}:
        from envbuilder.edge import pypi  # requests: imported when a download is needed

        return pypi.get_text(source, "the PCI ID database"), source
    if scheme == "file":
        return _read(Path(unquote(urlparse(source).path))), source
    return _read(Path(source)), source


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        msg = f"{path}: no such file"
        raise SourceError(msg, hint=_HINT) from None
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"{path}: cannot read it as a pci.ids text ({exc})"
        raise SourceError(msg, hint=_HINT) from None
