"""Which Docker Engine the docker CLI would talk to: ``DOCKER_HOST``, ``DOCKER_CONTEXT``, or the current context.

Docker Desktop on Linux, rootless Docker and colima each put their engine behind a *context* (an endpoint stored
under ``~/.docker/contexts``) rather than at ``/var/run/docker.sock``; ``docker version`` works there because the
CLI resolves the context. This module resolves it the same way (docker/cli ``resolveContextName``):

1. ``DOCKER_HOST`` set: the ``default`` context, at that address;
2. else ``DOCKER_CONTEXT``;
3. else ``currentContext`` of ``$DOCKER_CONFIG/config.json`` (``~/.docker/config.json``);
4. else ``default``: the local socket (the named pipe on Windows).

A named context's endpoint is ``Endpoints.docker.Host`` of ``contexts/meta/<sha256 of the name>/meta.json``; its
TLS files, if any, lie in ``contexts/tls/<sha256>/docker/``. The resolution is pure (text in, endpoint out); only
``find_endpoint`` reads files. A context that is named but missing is a problem to report, as the CLI does
("context not found"), never a silent fall-back to the local socket.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DEFAULT_CONTEXT",
    "DEFAULT_NPIPE_HOST",
    "DEFAULT_UNIX_HOST",
    "Endpoint",
    "config_dir",
    "context_id",
    "context_name",
    "current_context",
    "find_endpoint",
    "parse_context_meta",
    "resolve_endpoint",
    "unix_socket_path",
]

DEFAULT_CONTEXT = "default"
DEFAULT_UNIX_HOST = "unix:///var/run/docker.sock"
DEFAULT_NPIPE_HOST = "npipe:////./pipe/docker_engine"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The engine address the docker CLI would use, and how it was chosen.

    ``host`` is None when it cannot be known (``problem`` says why: a named context that does not exist, a
    malformed meta.json). ``via`` reads as a phrase: "DOCKER_HOST", "context colima, from DOCKER_CONTEXT".
    """

    host: str | None
    context: str
    via: str
    skip_tls_verify: bool = False
    tls_dir: str | None = None  # contexts/tls/<id>/docker, when the context stores TLS files
    problem: str | None = None

    def describe(self) -> str:
        """The address and how it was chosen: "unix:///run/user/1000/docker.sock (context rootless, ...)"."""
        return f"{self.host or 'no address'} ({self.via})"


def config_dir(env: Mapping[str, str], home: str) -> str:
    """``$DOCKER_CONFIG``, else ``~/.docker`` (as the CLI and the SDK read it)."""
    return env.get("DOCKER_CONFIG") or os.path.join(home, ".docker")


def context_id(name: str) -> str:
    """The directory name of a context: the sha256 of its name (docker/cli ``store.contextdirOf``)."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


def current_context(config_text: str | None) -> tuple[str | None, str | None]:
    """(``currentContext`` or None, problem) from the text of config.json (None: no file)."""
    if not config_text or not config_text.strip():
        return None, None
    try:
        doc = json.loads(config_text)
    except json.JSONDecodeError as exc:
        return None, f"config.json is not valid JSON ({exc.msg} at line {exc.lineno})"
    if not isinstance(doc, dict):
        return None, "config.json is not a JSON object"
    name = doc.get("currentContext")
    return (name, None) if isinstance(name, str) and name else (None, None)


def context_name(env: Mapping[str, str], config_text: str | None) -> tuple[str, str, str | None]:
    """(context name, why, problem) in the CLI's order: DOCKER_HOST, DOCKER_CONTEXT, currentContext, default."""
    if env.get("DOCKER_HOST"):
        return DEFAULT_CONTEXT, "DOCKER_HOST", None
    if env.get("DOCKER_CONTEXT"):
        return env["DOCKER_CONTEXT"], "from DOCKER_CONTEXT", None
    name, problem = current_context(config_text)
    if name:
        return name, "the current context of config.json", None
    return DEFAULT_CONTEXT, "the local socket", problem


def parse_context_meta(text: str) -> tuple[str, bool]:
    """(``Endpoints.docker.Host``, ``SkipTLSVerify``) from a context's meta.json; ValueError if it has none."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        msg = f"not valid JSON ({exc.msg} at line {exc.lineno})"
        raise ValueError(msg) from None
    endpoints = doc.get("Endpoints") if isinstance(doc, dict) else None
    docker = endpoints.get("docker") if isinstance(endpoints, dict) else None
    if not isinstance(docker, dict) or not isinstance(docker.get("Host"), str) or not docker["Host"]:
        msg = "no Endpoints.docker.Host"
        raise ValueError(msg)
    return docker["Host"], bool(docker.get("SkipTLSVerify", False))


def resolve_endpoint(
    env: Mapping[str, str],
    config_text: str | None,
    read_meta: Callable[[str], str | None],
    *,
    default_host: str = DEFAULT_UNIX_HOST,
) -> Endpoint:
    """The endpoint for ``env`` and config.json's text; ``read_meta(name)`` gives a context's meta.json or None.

    Pure apart from what ``read_meta`` does (a dict's ``get`` in tests).
    """
    name, why, problem = context_name(env, config_text)
    if name == DEFAULT_CONTEXT:
        via = why if why in {"DOCKER_HOST", "the local socket"} else f"context default, {why}"
        return Endpoint(env.get("DOCKER_HOST") or default_host, name, via, problem=problem)
    via = f"context {name}, {why}"
    meta = read_meta(name)
    if meta is None:
        return Endpoint(None, name, via, problem=f"context {name!r} not found (no contexts/meta/{context_id(name)})")
    try:
        host, skip = parse_context_meta(meta)
    except ValueError as exc:
        return Endpoint(None, name, via, problem=f"context {name!r}: meta.json has {exc}")
    return Endpoint(host, name, via, skip_tls_verify=skip)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError:
        return None


def find_endpoint(env: Mapping[str, str] | None = None) -> Endpoint:
    """The endpoint for this process's environment, reading config.json and the context store."""
    env = os.environ if env is None else env
    base = config_dir(env, str(Path.home()))
    contexts = os.path.join(base, "contexts")

    def read_meta(name: str) -> str | None:
        return _read(os.path.join(contexts, "meta", context_id(name), "meta.json"))

    default = DEFAULT_NPIPE_HOST if sys.platform == "win32" else DEFAULT_UNIX_HOST
    endpoint = resolve_endpoint(env, _read(os.path.join(base, "config.json")), read_meta, default_host=default)
    if endpoint.host is None or endpoint.context == DEFAULT_CONTEXT:
        return endpoint
    tls = os.path.join(contexts, "tls", context_id(endpoint.context), "docker")
    if os.path.isdir(tls):
        return Endpoint(
            endpoint.host, endpoint.context, endpoint.via, skip_tls_verify=endpoint.skip_tls_verify, tls_dir=tls
        )
    return endpoint


def unix_socket_path(host: str) -> str | None:
    """The socket path of a ``unix://`` address, else None."""
    return host[len("unix://") :] if host.startswith("unix://") else None
