"""Container engines at the edge: ``docker buildx`` or ``podman``, each a small backend chosen from a dict.

Builds go through the engines' command lines (the Docker SDK speaks to an engine and lacks BuildKit's cache
mounts and secrets). Podman runs rootless-friendly here: ``--isolation chroot --storage-driver vfs`` builds
real images on machines where overlayfs and user namespaces are not available.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from envbuilder import _run
from envbuilder.errors import CommandFailed, EnvbuilderError

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

    def available(self) -> bool:
        """Can this engine build images here (binary present and working)?"""
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


def docker_engine_answers(timeout: float = 5.0) -> bool:
    """Does a Docker Engine answer (DOCKER_HOST or the local socket)? Asked through the Docker SDK, which speaks
    the Engine API directly: a client binary without an engine (as on these machines) is told apart in
    milliseconds, with no `docker info` process. Builds still go through `docker buildx` (BuildKit features)."""
    if not os.environ.get("DOCKER_HOST") and not os.path.exists("/var/run/docker.sock") and sys.platform != "win32":
        return False  # no engine address at all: nothing to ask (and no half-open socket left behind)
    try:
        import docker
    except ImportError:  # the SDK is a dependency; without it, ask the CLI
        return _run.run(["docker", "info", "--format", "{{.ServerVersion}}"], check=False, timeout=30).returncode == 0
    try:
        client = docker.from_env(timeout=timeout)
    except Exception:  # DockerException and transport errors alike mean: no engine here
        return False
    try:
        return bool(client.ping())
    except Exception:  # idem
        return False
    finally:
        client.close()


@dataclass(frozen=True, slots=True)
class Docker:
    """``docker buildx build`` (BuildKit), loading the result into the local engine."""

    name: EngineName = "docker"
    binary: str = "docker"

    def available(self) -> bool:
        if _run.which(self.binary) is None or not docker_engine_answers():
            return False
        buildx = _run.run([self.binary, "buildx", "version"], check=False, timeout=30)
        return buildx.returncode == 0

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
        if _run.which(self.binary) is None:
            return False
        return _run.run([self.binary, *self.storage, "version"], check=False, timeout=60).returncode == 0

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
    for candidate in names:
        engine: Engine = ENGINES[candidate]()
        if engine.available():
            return engine
    wanted = f"{name} is not available" if name else "no container engine found (docker buildx or podman)"
    msg = f"cannot build images: {wanted}"
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
