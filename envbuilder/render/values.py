"""Every value that reaches a generated file is checked here first: one module of patterns and checks.

A Dockerfile, a bake file, a workflow, a bash or a PowerShell script embeds names, versions, URLs, digests
and paths. Each goes through one of these checks (a strict character set, or a quote for its shell), so a
value such as ``x; rm -rf /`` never becomes code. Renderers import their checks from here and write none.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse

from envbuilder.model.errors import EnvbuilderError, LockError, TargetError
from envbuilder.model.images import UV_VERSION_PATTERN

__all__ = [
    "BAKE_TARGET",
    "CONTEXT_PATH",
    "CUDA",
    "DRIVER",
    "HTTP_URL",
    "IMAGE",
    "PIN",
    "PLATFORM",
    "PROFILE",
    "PS_QUOTES",
    "PYTHON",
    "RECIPE_URL",
    "REGISTRY",
    "REPO",
    "SHA256_DIGEST",
    "TAG",
    "UV_VERSION_PATTERN",
    "VARIANT",
    "DockerError",
    "check_env_dir",
    "check_image",
    "check_ps_herestring",
    "check_url",
    "heredoc_tag",
    "ps_quote",
    "recipe_check",
    "safe",
]

# Characters allowed inside a double-quoted Dockerfile/HCL/YAML string.
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._:/+=,@<>~*()-]*$")
PYTHON = re.compile(r"^3\.\d{1,2}$")
CUDA = re.compile(r"^\d{1,2}\.\d{1,2}$")
DRIVER = re.compile(r"^\d{3}(?:\.\d{1,3}){0,2}$")
VARIANT = re.compile(r"^(cpu|cu\d{3})$")
PROFILE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
PLATFORM = re.compile(r"^[a-z]+-[a-z0-9_]+$")
PIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,99})==[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63}$")
SHA256_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# Images may name a plain-http mirror (a registry-side proxy); recipes run on users' machines: https, or plain
# http to this machine only (a mirror served on loopback). Neither allows quotes, spaces or '$'.
HTTP_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(?::\d+)?(?:/[A-Za-z0-9._~%+/-]*)?$")
RECIPE_URL = re.compile(
    r"^(?:https://[A-Za-z0-9.-]+|http://(?:127\.0\.0\.1|localhost))(?::\d{1,5})?(?:/[A-Za-z0-9._~%/+-]*)?$"
)
# Container image references, repositories, registries, tags, bake targets, build contexts.
IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")
REPO = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
REGISTRY = re.compile(r"^[A-Za-z0-9.-]+(?::\d+)?$")
TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
BAKE_TARGET = re.compile(r"^[A-Za-z0-9_-]+$")
CONTEXT_PATH = re.compile(r"^[A-Za-z0-9._/-]+$")
# PowerShell treats the typographic single quotes as quote characters too: each must be doubled.
PS_QUOTES = ("'", "\u2018", "\u2019", "\u201a", "\u201b")


class DockerError(EnvbuilderError):
    """A value cannot go into a Dockerfile, tag, bake file or workflow, or no image fits the lock."""


# --------------------------------------------------------------------------- images and CI files


def safe(value: str, what: str) -> str:
    """``value`` if it may appear inside a double-quoted Dockerfile/HCL/YAML string, else DockerError.

    No quotes, backslashes, ``$`` (variable expansion in LABEL/ARG/HCL), backticks, ``;``, ``&``, ``|``,
    newlines or other control characters.
    """
    if not _SAFE.match(value) or len(value) > 512:
        msg = f"{what} {value!r} cannot go into a generated file (only letters, digits and ' ._:/+=,@<>~*()-')"
        raise DockerError(msg, hint="fix the value in the manifest or lock, then regenerate")
    return value


def check_url(url: str, what: str) -> str:
    """An http(s) URL without credentials: build arguments are recorded in the image's history."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.username or parsed.password:
        msg = f"{what} {parsed.scheme}://***@{parsed.hostname}/... carries credentials"
        raise DockerError(msg, hint="put credentials in a netrc file and pass it with --netrc (a build secret)")
    if not HTTP_URL.match(url):
        msg = f"{what} {url!r} is not a plain http(s) URL"
        raise DockerError(msg, hint="use https://host[:port]/path with no quotes, spaces or '$'")
    return url


def check_image(ref: str, what: str = "image") -> str:
    """A container image reference (registry/name:tag or @sha256 digest), nothing that a shell could read."""
    if not IMAGE.match(ref) or ".." in ref:
        msg = f"{what} {ref!r} is not a valid image reference"
        raise DockerError(msg, hint="write it like registry.example.com/python:3.11-slim-bookworm")
    return ref


# --------------------------------------------------------------------------- recipe scripts


def _bad(what: str, value: str, hint: str) -> TargetError:
    msg = f"recipe: {what} {value!r} is not allowed in a script"
    return TargetError(msg, hint=hint)


def recipe_check(pattern: re.Pattern[str], value: str, what: str, hint: str) -> str:
    """``value`` if it matches ``pattern``, else a TargetError naming it (exit 2)."""
    if not pattern.match(value):
        raise _bad(what, value, hint)
    return value


def check_env_dir(path: str) -> str:
    """A user-given environment directory: any text is quoted later, but control characters are refused."""
    if not path or not path.isprintable():
        raise _bad("environment directory", path, "give a path without newlines or control characters")
    return path


def ps_quote(value: str) -> str:
    """A PowerShell single-quoted literal: nothing inside is expanded; every quote character is doubled."""
    out = value
    for q in PS_QUOTES:
        out = out.replace(q, q + q)
    return "'" + out + "'"


def heredoc_tag(text: str, prefix: str) -> str:
    """A here-document terminator that does not occur as a line of ``text`` (content-derived, deterministic)."""
    tag = f"{prefix}_{hashlib.sha256(text.encode()).hexdigest()[:12].upper()}"
    if any(line.strip() == tag for line in text.splitlines()):
        msg = f"recipe: the embedded text contains the line {tag!r}"
        raise LockError(msg, hint="regenerate the lock with `envbuilder lock`")
    return tag


def check_ps_herestring(text: str) -> None:
    """Refuse text that would end a PowerShell single-quoted here-string early (a line starting with '@)."""
    if any(line.startswith(("'@", "\u2019@", "\u2018@")) for line in text.splitlines()):
        msg = "recipe: the lock contains a line starting with '@, which would end a PowerShell here-string"
        raise LockError(msg, hint="regenerate the lock with `envbuilder lock`")
