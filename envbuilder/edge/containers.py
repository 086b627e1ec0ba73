"""Container engines at the edge: ``docker buildx`` or ``podman``, each a small backend chosen from a dict.

Builds go through the engines' command lines (the Docker SDK speaks to an engine and lacks BuildKit's cache
mounts and secrets). Podman runs rootless-friendly here: ``--isolation chroot --storage-driver vfs`` builds
real images on machines where overlayfs and user namespaces are not available.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from envbuilder.edge import _run
from envbuilder.model.errors import CommandFailed, EnvbuilderError

if TYPE_CHECKING:
    from envbuilder.edge.docker_context import Endpoint

__all__ = [
    "ENGINES",
    "ENGINE_ORDER",
    "BuildRequest",
    "Docker",
    "Engine",
    "EngineAnswer",
    "EngineName",
    "NoEngine",
    "Podman",
    "build",
    "choose_engine",
    "docker_engine_answers",
    "probe_docker_engine",
]

EngineName = Literal["docker", "podman"]
ENGINE_ORDER: tuple[EngineName, ...] = ("docker", "podman")


class NoEngine(EnvbuilderError):
    """No container engine that can build images is available (exit 2)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildRequest:
    """One image build: context, tags, build arguments and secrets (id -> file; never a layer)."""

    context: Path
    tags: tuple[str, ...]
    build_args: Mapping[str, str] = field(default_factory=dict)
    secrets: Mapping[str, Path] = field(default_factory=dict)
    no_cache: bool = False
    stream: bool = True
    timeout: float = 7200


class Engine(Protocol):
    """What envbuilder needs from a container engine."""

    @property
    def name(self) -> EngineName:
        """The engine's name (the key in ENGINES)."""
        ...

    def unavailable(self) -> str | None:
        """None when this engine can build images here (binary present and working), else why not."""
        ...

    def build_argv(self, request: BuildRequest) -> list[str]:
        """The command that builds ``request`` (pure, for --dry-run and tests)."""
        ...

    def build(self, request: BuildRequest) -> None:
        """Build and tag; the Dockerfile's build-time smoke step runs as part of the build."""
        ...


def _common_args(request: BuildRequest) -> list[str]:
    args: list[str] = []
    for tag in request.tags:
        args += ["--tag", tag]
    for key, value in sorted(request.build_args.items()):
        args += ["--build-arg", f"{key}={value}"]
    for sid, path in sorted(request.secrets.items()):
        args += ["--secret", f"id={sid},src={path}"]
    if request.no_cache:
        args.append("--no-cache")
    return args


@dataclass(frozen=True, slots=True)
class EngineAnswer:
    """Whether a Docker Engine answered at the endpoint the docker CLI would use, and what it said."""

    ok: bool
    endpoint: Endpoint
    detail: str  # "Engine API 1.50", or why not: "no socket at /var/run/docker.sock"

    def describe(self) -> str:
        what = "a Docker Engine answered" if self.ok else "no Docker Engine"
        return f"{what} at {self.endpoint.describe()}: {self.detail}"


def probe_docker_engine(timeout: float = 3.0, env: Mapping[str, str] | None = None) -> EngineAnswer:
    """Ask the Docker Engine at the CLI's endpoint (DOCKER_HOST, DOCKER_CONTEXT, the current context, the local
    socket) whether it answers. Through the Docker SDK, which speaks the Engine API directly (``/version``,
    ``/_ping``): a client binary without an engine is told apart in milliseconds, with no `docker info` process,
    and a socket that accepts but never answers costs ``timeout`` at most. Builds still go through
    `docker buildx` (BuildKit features), which resolves the same context itself."""
    from envbuilder.edge.docker_context import find_endpoint, unix_socket_path

    env = os.environ if env is None else env
    endpoint = find_endpoint(env)
    if endpoint.host is None:
        return EngineAnswer(False, endpoint, endpoint.problem or "no address")
    socket_path = unix_socket_path(endpoint.host)
    if socket_path is not None and not os.path.exists(socket_path):
        # Nothing to ask (and no half-open socket left behind).
        return EngineAnswer(False, endpoint, f"no socket at {socket_path}")
    if endpoint.host.startswith("ssh://"):
        return _ask_cli(endpoint, timeout, env)  # the CLI speaks ssh itself; the SDK would need paramiko
    return _ask_sdk(endpoint, timeout, env)


def _ask_sdk(endpoint: Endpoint, timeout: float, env: Mapping[str, str]) -> EngineAnswer:
    try:
        import docker
    except ImportError:  # the SDK is a dependency; without it, ask the CLI
        return _ask_cli(endpoint, timeout, env)
    try:
        if endpoint.via == "DOCKER_HOST":  # DOCKER_TLS_VERIFY and DOCKER_CERT_PATH go with it
            client = docker.from_env(timeout=timeout, environment=dict(env), version="auto")
        else:
            client = docker.DockerClient(
                base_url=endpoint.host, tls=_context_tls(endpoint), timeout=timeout, version="auto"
            )
    except Exception as exc:  # DockerException and transport errors alike mean: no engine here
        return EngineAnswer(False, endpoint, _first_line(exc))
    try:
        # The client's start asked /version for the API version (version="auto"); /_ping confirms it serves.
        client.ping()
        return EngineAnswer(True, endpoint, f"Engine API {client.api.api_version}")
    except Exception as exc:  # idem
        return EngineAnswer(False, endpoint, _first_line(exc))
    finally:
        client.close()


def docker_engine_answers(timeout: float = 3.0) -> bool:
    """Does a Docker Engine answer where the docker CLI would look? (``probe_docker_engine``)."""
    return probe_docker_engine(timeout).ok


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def _context_tls(endpoint: Endpoint) -> object:
    """The SDK's TLS settings from a context's ``tls/<id>/docker`` files (None without them)."""
    if endpoint.tls_dir is None:
        return None
    from docker.tls import TLSConfig

    files = {n: os.path.join(endpoint.tls_dir, f"{n}.pem") for n in ("ca", "cert", "key")}
    have = {n: p for n, p in files.items() if os.path.isfile(p)}
    cert = (have["cert"], have["key"]) if "cert" in have and "key" in have else None
    return TLSConfig(client_cert=cert, ca_cert=have.get("ca"), verify=not endpoint.skip_tls_verify and "ca" in have)


def _ask_cli(endpoint: Endpoint, timeout: float, env: Mapping[str, str]) -> EngineAnswer:
    try:
        result = _run.run(
            ["docker", "version", "--format", "{{.Server.Version}}"], env=env, check=False, timeout=max(timeout, 10)
        )
    except CommandFailed as exc:
        return EngineAnswer(False, endpoint, exc.message)
    if result.returncode == 0 and result.stdout.strip():
        return EngineAnswer(True, endpoint, f"Docker Engine {result.stdout.strip()} (asked through `docker version`)")
    lines = (result.stderr or result.stdout).strip().splitlines()
    return EngineAnswer(False, endpoint, lines[-1] if lines else f"docker version exited {result.returncode}")


@dataclass(frozen=True, slots=True)
class Docker:
    """``docker buildx build`` (BuildKit), loading the result into the local engine."""

    name: EngineName = "docker"
    binary: str = "docker"

    def available(self) -> bool:
        return self.unavailable() is None

    def unavailable(self) -> str | None:
        if _run.which(self.binary) is None:
            return f"{self.binary} is not on PATH"
        answer = probe_docker_engine()
        if not answer.ok:
            return answer.describe()
        if _run.run([self.binary, "buildx", "version"], check=False, timeout=30).returncode != 0:
            return f"{answer.describe()}, but `{self.binary} buildx` is missing (the buildx plugin)"
        return None

    def build_argv(self, request: BuildRequest) -> list[str]:
        return [
            self.binary,
            "buildx",
            "build",
            "--progress",
            "plain",
            "--load",
            *_common_args(request),
            str(request.context),
        ]

    def build(self, request: BuildRequest) -> None:
        _run.run(self.build_argv(request), capture=not request.stream, timeout=request.timeout)


@dataclass(frozen=True, slots=True)
class Podman:
    """``podman build`` with chroot isolation and vfs storage (works without overlayfs or a daemon)."""

    name: EngineName = "podman"
    binary: str = "podman"
    storage: tuple[str, ...] = ("--storage-driver", "vfs")

    def available(self) -> bool:
        return self.unavailable() is None

    def unavailable(self) -> str | None:
        if _run.which(self.binary) is None:
            return f"{self.binary} is not on PATH"
        result = _run.run([self.binary, *self.storage, "version"], check=False, timeout=60)
        if result.returncode != 0:
            lines = (result.stderr or result.stdout).strip().splitlines()
            return f"`{self.binary} version` exited {result.returncode}" + (f": {lines[-1]}" if lines else "")
        return None

    def build_argv(self, request: BuildRequest) -> list[str]:
        # --no-cache also keeps no intermediate images: with vfs every layer is a full copy on disk.
        layers = "--layers=false" if request.no_cache else "--layers"
        return [
            self.binary,
            *self.storage,
            "build",
            "--isolation",
            "chroot",
            layers,
            *_common_args(request),
            str(request.context),
        ]

    def build(self, request: BuildRequest) -> None:
        _run.run(self.build_argv(request), capture=not request.stream, timeout=request.timeout)

    def remove_images(self, refs: Sequence[str]) -> None:
        """Remove images (tests and benchmarks clean up after themselves: vfs layers are full copies)."""
        if refs:
            _run.run([self.binary, *self.storage, "rmi", "--force", *refs], check=False, timeout=600)

    def image_size(self, ref: str) -> int:
        """The image's size in bytes, as the engine reports it."""
        out = _run.run([self.binary, *self.storage, "image", "inspect", "--format", "{{.Size}}", ref], timeout=120)
        return int(out.stdout.strip())


ENGINES: Mapping[EngineName, type[Docker] | type[Podman]] = {"docker": Docker, "podman": Podman}


def choose_engine(name: EngineName | None = None) -> Engine:
    """The engine asked for, or the first available one (docker buildx, then podman); else NoEngine."""
    names = (name,) if name else ENGINE_ORDER
    why: list[str] = []
    for candidate in names:
        engine: Engine = ENGINES[candidate]()
        reason = engine.unavailable()
        if reason is None:
            return engine
        why.append(f"{candidate}: {reason}")
    wanted = f"{name} is not available" if name else "no container engine found (docker buildx or podman)"
    msg = f"cannot build images: {wanted}\n  " + "\n  ".join(why)
    hint = (
        "install Docker with the buildx plugin and a running engine, or podman "
        "(apt-get install podman); `envbuilder dockerfile` writes the Dockerfile without building"
    )
    raise NoEngine(msg, hint=hint)


def build(engine: Engine, request: BuildRequest) -> None:
    """Build with ``engine``; a failed build (the smoke step included) is one clear error."""
    try:
        engine.build(request)
    except CommandFailed as exc:
        what = request.tags[0] if request.tags else request.context
        msg = f"{engine.name} build of {what} failed (exit {exc.returncode})"
        raise CommandFailed(
            msg,
            hint="read the build output above: a FAIL line comes from the build-time smoke step",
            returncode=exc.returncode,
            output=exc.output,
        ) from None
