"""The guard in a venv: the constraints file, the venv's pip.conf and the activation scripts (text from
``envbuilder.model.guard``), put in and taken out; and what is installed, read from the venv's dist-info."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envbuilder.edge._fs import write_text_atomic
from envbuilder.edge.venv import bin_dir
from envbuilder.model.guard import (
    BEGIN,
    CONSTRAINTS_FILE,
    PIP_CONF,
    activation_blocks,
    guard_files,
    guarded_pins,
    strip_blocks,
)

__all__ = ["GuardResult", "apply", "env_variables", "installed_versions", "is_guarded", "remove"]


@dataclass(frozen=True, slots=True)
class GuardResult:
    """What ``apply`` did: the pins now binding, the scripts it edited, and why it did less (``notes``)."""

    pins: tuple[str, ...]
    scripts: tuple[str, ...]
    notes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"file": CONSTRAINTS_FILE, "pins": list(self.pins), "scripts": list(self.scripts)}


def apply(env: Path, *, name: str, packages: Mapping[str, str], lock_file: str, final: Path) -> GuardResult | None:
    """Put the guard into ``env`` (built where it is, to live at ``final``); None when the path cannot carry it.

    ``final`` goes into pip.conf (pip reads no path relative to its configuration); the activation scripts find
    the file through VIRTUAL_ENV, so they survive the move into place.
    """
    bindir = bin_dir(env)
    scripts = {s: _read(bindir / s) for s in activation_blocks() if (bindir / s).is_file()}
    pins = guarded_pins(packages)
    files = guard_files(
        final=str(final), scripts=scripts, name=name, pins=pins, lock_file=lock_file, bindir=bindir.name, sep=os.sep
    )
    if files is None:
        return None
    for rel, text in files.items():
        path = env / rel
        mode = path.stat().st_mode & 0o7777 if path.exists() else None
        write_text_atomic(path, text, mode=mode, newline="")  # the scripts' own line ends (the .bat ones are CRLF)
    edited = tuple(s for s in scripts if f"{bindir.name}/{s}" in files)
    notes = tuple(
        f"{s}: its deactivate function is not where uv writes it; left as it was" for s in scripts if s not in edited
    )
    return GuardResult(pins, edited, notes)


def remove(env: Path) -> tuple[str, ...]:
    """Take the guard out of ``env``: the file, envbuilder's pip.conf block, the scripts' blocks. What it removed."""
    removed: list[str] = []
    with contextlib.suppress(FileNotFoundError):
        (env / CONSTRAINTS_FILE).unlink()
        removed.append(CONSTRAINTS_FILE)
    conf = env / PIP_CONF
    if conf.is_file():
        text = conf.read_text(encoding="utf-8")
        rest = strip_blocks(text)
        if rest != text:
            if rest.strip():
                write_text_atomic(conf, rest)
            else:
                conf.unlink()
            removed.append(PIP_CONF)
    for script in activation_blocks():
        path = bin_dir(env) / script
        if path.is_file():
            text = _read(path)
            if BEGIN.split("#", 1)[1] in text:
                write_text_atomic(path, strip_blocks(text), mode=path.stat().st_mode & 0o7777, newline="")
                removed.append(script)
    return tuple(removed)


def _read(path: Path) -> str:
    """A script's text with its line ends as they are (the .bat scripts are CRLF)."""
    return path.read_bytes().decode("utf-8")


def is_guarded(env: Path) -> bool:
    return (env / CONSTRAINTS_FILE).is_file()


def env_variables(env: Path) -> dict[str, str]:
    """What `envbuilder run`/`shell` add to the environment's variables: the two the activation scripts set."""
    if not is_guarded(env):
        return {}
    path = str(env / CONSTRAINTS_FILE)
    return {"UV_CONSTRAINT": path, "PIP_CONSTRAINT": path}


def _site_packages(env: Path) -> list[Path]:
    if (env / "Lib" / "site-packages").is_dir():
        return [env / "Lib" / "site-packages"]
    return sorted((env / "lib").glob("python*/site-packages"))


def installed_versions(env: Path) -> dict[str, str]:
    """{canonical name: version} of every distribution installed in ``env``, from its ``*.dist-info`` names.

    The directory name is what installers write (PEP 427/491: ``{name}-{version}.dist-info``, name with '_');
    reading it costs no interpreter start, so `list` can check every environment at once.
    """
    found: dict[str, str] = {}
    for site in _site_packages(env):
        try:
            entries = os.listdir(site)
        except OSError:
            continue
        for entry in entries:
            if entry.endswith(".dist-info") and "-" in entry:
                name, _, version = entry.removesuffix(".dist-info").partition("-")
                found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found
