"""Image digests from a container registry (the OCI distribution API): ``--resolve-digests`` of dockerfile/ci.

``resolve_digests`` asks the registry of each reference for the manifest its tag names (an index where the
image has several platforms) and returns ``sha256:`` of the bytes served: the digest ``FROM ref@digest`` pulls.
A registry that wants a token (Docker Hub, GHCR: ``401`` with ``WWW-Authenticate: Bearer realm=...``) gets an
anonymous one for pulling. Loopback registries (``localhost``, ``127.0.0.1``, ``[::1]``) are spoken to over
plain HTTP, as docker and podman do by default; every other over HTTPS. Requests go through ``pypi.Http``: the
same session, CA bundle, retries (connection errors, 429, 5xx: bounded, with backoff) and errors.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlencode

from envbuilder.edge.pypi import Http
from envbuilder.model.errors import SourceError

__all__ = ["MANIFEST_TYPES", "ImageRef", "manifest_url", "parse_ref", "resolve_digest", "resolve_digests"]

# The index types first: a multi-platform image's digest is its index's.
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
DOCKER_HUB = "registry-1.docker.io"
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
_MANIFEST_LIMIT = 4 << 20  # an index of every platform is a few kB
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True, slots=True)
class ImageRef:
    """``registry/repository:tag``, with Docker Hub's defaults filled in (``python`` -> ``library/python``)."""

    registry: str
    repository: str
    tag: str


def parse_ref(ref: str) -> ImageRef:
    """Pure: the parts of ``name[:tag]`` the way docker reads them (a first part with '.' or ':' is a host)."""
    if "@" in ref:
        msg = f"image {ref!r} is pinned by digest already"
        raise SourceError(msg, hint="give a tag to resolve, or leave the digest as it is")
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = DOCKER_HUB, ref
    name, _, tag = path.rpartition(":") if ":" in path.rsplit("/", 1)[-1] else (path, "", "latest")
    if registry in {DOCKER_HUB, "docker.io", "index.docker.io"}:
        registry = DOCKER_HUB
        if "/" not in name:
            name = f"library/{name}"
    return ImageRef(registry, name, tag or "latest")


def manifest_url(ref: ImageRef) -> str:
    scheme = "http" if ref.registry.rsplit(":", 1)[0] in _LOOPBACK or ref.registry in _LOOPBACK else "https"
    return f"{scheme}://{ref.registry}/v2/{ref.repository}/manifests/{ref.tag}"


def _token(http: Http, challenge: str, ref: ImageRef) -> str:
    """An anonymous pull token from the realm a ``WWW-Authenticate: Bearer`` challenge names."""
    params = dict(_CHALLENGE.findall(challenge))
    realm = params.pop("realm", "")
    if not realm.startswith(("https://", "http://")):
        msg = f"{ref.registry} wants credentials this command cannot give (WWW-Authenticate: {challenge[:80]})"
        raise SourceError(msg, hint="pin the image by digest yourself (--base-image name@sha256:...)")
    params.setdefault("scope", f"repository:{ref.repository}:pull")
    status, _, body = http.answer(f"{realm}?{urlencode(params)}", {}, limit=_MANIFEST_LIMIT)
    try:
        doc = json.loads(body) if status == 200 else {}
    except ValueError:
        doc = {}
    token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        msg = f"{ref.registry}: no anonymous pull token for {ref.repository} (HTTP {status})"
        hint = "the image may be private: pin it by digest yourself (--base-image name@sha256:...)"
        raise SourceError(msg, hint=hint)
    return token


def _manifest(http: Http, ref: ImageRef) -> tuple[int, dict[str, str], bytes]:
    """The registry's answer for the manifest, with an anonymous pull token where it asks for one."""
    url = manifest_url(ref)
    headers = {"Accept": ", ".join(MANIFEST_TYPES)}
    status, answered, body = http.answer(url, headers, limit=_MANIFEST_LIMIT)
    challenge = answered.get("www-authenticate", "")
    if status == 401 and challenge.lower().startswith("bearer "):
        headers["Authorization"] = f"Bearer {_token(http, challenge[7:], ref)}"
        status, answered, body = http.answer(url, headers, limit=_MANIFEST_LIMIT)
    return status, answered, body


def resolve_digest(http: Http, image: str) -> str:
    """The digest of what ``image`` (``name:tag``) names now on its registry."""
    try:
        ref = parse_ref(image)
        status, answered, body = _manifest(http, ref)
    except SourceError as exc:
        # A network failure names a URL, a refused token the registry: say which image it was for, and the way
        # round it. The registry's own answers below name the image already.
        msg = f"{image}: {exc.message}"
        hint = f"{exc.hint}; or name a reachable mirror (--base-image/--uv-image), or drop --resolve-digests"
        raise SourceError(msg, hint=hint) from None
    if status == 404:
        msg = f"{image}: {ref.registry} has no {ref.repository}:{ref.tag} (HTTP 404)"
        raise SourceError(msg, hint="check the image name and tag, or the --base-image/--uv-image given")
    if status != 200:
        msg = f"{image}: {ref.registry} answered HTTP {status} for its manifest"
        raise SourceError(msg, hint="check the registry and its credentials, or pin the image by digest yourself")
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    claimed = answered.get("docker-content-digest")
    if claimed and _DIGEST.match(claimed) and claimed != digest:
        msg = f"{image}: {ref.registry} says its manifest is {claimed}, but the bytes it sent are {digest}"
        raise SourceError(msg, hint="a proxy in between rewrites the manifest: resolve against the registry itself")
    return digest


def resolve_digests(images: Iterable[str], *, ca_cert: str | None = None) -> dict[str, str]:
    """``{image: digest}`` for each tag reference in ``images`` (references already pinned are left out)."""
    wanted = sorted({i for i in images if "@" not in i})
    found: dict[str, str] = {}
    with Http(ca_cert=ca_cert) as http:
        for image in wanted:
            found[image] = resolve_digest(http, image)
    return found
