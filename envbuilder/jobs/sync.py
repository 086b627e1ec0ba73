"""The sync step: rebuild exactly the environment a lock describes (hashes verified), if it fits this host.

``host_facts`` probes the host once; ``pick_from_manifest`` finds the manifest's environment whose lock fits;
``check`` reads a lock and refuses one that does not fit (``force``: warn instead); ``sync`` builds it.
Typed in (``HostFacts``, ``SyncRequest``), typed out (``SyncResult``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envbuilder.edge.detect import Host
    from envbuilder.edge.settings import Settings
    from envbuilder.edge.venv import SmokeOutcome
    from envbuilder.jobs.builder import Fit
    from envbuilder.model.lock import Lock
    from envbuilder.model.matrix import Matrix
    from envbuilder.model.target import OsFlavour

__all__ = ["HostFacts", "SyncRequest", "SyncResult", "check", "host_facts", "os_flavour", "pick_from_manifest", "sync"]

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What a lock must fit here: the GPUs' compute capabilities, the driver, the OS flavour, the platform."""

    ccs: tuple[str, ...]
    driver: str | None
    os_name: str
    platform: str


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """Build the lock at ``lock_path`` as ``name`` (default: the lock's) or at ``path``; ``force`` builds a lock
    that does not fit this host (and replaces what envbuilder did not make); ``smoke``/``guard`` as in create."""

    lock_path: Path
    name: str | None = None
    path: Path | None = None
    force: bool = False
    smoke: bool = True
    guard: bool = True


@dataclass(frozen=True, slots=True)
class SyncResult:
    """The environment built: its name and directory, the lock it came from, the smoke test (None: not run)."""

    name: str
    path: Path
    lock_path: Path
    lock: Lock
    smoke: SmokeOutcome | None


def host_facts() -> HostFacts:
    """This host, probed once (NVML, nvidia-smi, the PCI bus; the OS flavour and platform)."""
    from envbuilder.edge.detect import probe_host
    from envbuilder.model.target import Target

    host = probe_host()
    os_name = os_flavour(host)
    platform = Target(os=os_name, machine=host.machine).platform
    return HostFacts(tuple(g.cc for g in host.gpus), host.driver, os_name, platform)


def os_flavour(host: Host) -> OsFlavour:
    """The OS flavour the matrix knows for a probed host (macOS plans as a Linux target)."""
    return "linux" if host.os == "macos" else host.os


def _fit(lock: Lock, matrix: Matrix, host: HostFacts) -> Fit:
    from envbuilder.jobs import builder

    return builder.lock_fits_host(
        lock, matrix, ccs=host.ccs, driver=host.driver, os_name=host.os_name, platform=host.platform
    )


def pick_from_manifest(manifest: Path | None, matrix: Matrix, host: HostFacts) -> Path:
    """The lock of the manifest's first environment that fits this host."""
    from envbuilder.edge.manifest import load_manifest
    from envbuilder.model.errors import CheckFailed, LockError
    from envbuilder.model.lock import manifest_lock_path, read_lock

    if manifest is None:
        msg = "no LOCK given, and no envbuilder.toml (or [tool.envbuilder] in pyproject.toml) here or above"
        raise LockError(msg, hint="name a lock (envbuilder sync pylock.NAME.toml), or --manifest FILE")
    loaded = load_manifest(manifest)
    tried = []
    for spec in loaded.envs:
        path = manifest_lock_path(loaded.path.parent, spec.name)
        if not path.exists():
            tried.append(f"{spec.name}: no {path.name} (run `envbuilder lock`)")
            continue
        try:
            fit = _fit(read_lock(path), matrix, host)
        except LockError as exc:
            tried.append(f"{spec.name}: {exc.message}")
            continue
        if fit.ok:
            return path
        tried.append(f"{spec.name}: " + "; ".join(fit.problems))
    msg = f"no environment of {loaded.path} fits this host: " + " | ".join(tried)
    raise CheckFailed(msg, hint="add an [[env]] for this host's GPU and driver, then `envbuilder lock`")


def check(lock_path: Path, matrix: Matrix, host: HostFacts, *, force: bool, warn: Say = _quiet) -> Lock:
    """The lock at ``lock_path``, refused unless it names its environment and fits this host (``force``: warn)."""
    from envbuilder.jobs import builder
    from envbuilder.model.lock import read_lock

    lock = read_lock(lock_path)
    builder.check_lock_name(lock)
    for warning in builder.require_fit(_fit(lock, matrix, host), lock, force=force):
        warn(warning)
    return lock


def sync(
    request: SyncRequest, lock: Lock, settings: Settings, *, progress: Say = _quiet, notify: Say = _quiet
) -> SyncResult:
    """Build the environment ``lock`` (read by ``check``) describes, prove it, move it into place."""
    from envbuilder.edge import venv
    from envbuilder.edge._fs import check_can_write
    from envbuilder.jobs import builder
    from envbuilder.model.lock import check_env_name

    name = check_env_name(request.name) if request.name else lock.tool.name  # a path may be spelt any way
    dest = request.path if request.path is not None else settings.env_path(name)
    check_can_write(dest, "--path" if request.path is not None else "the environment", directory=True)
    interpreter = builder.interpreter_for(lock.tool.python)
    smoke = functools.partial(builder.smoke_env, profile=lock.tool.profile) if request.smoke else None
    outcome = venv.build(
        dest,
        interpreter=interpreter,
        lock=lock,
        settings=settings,
        smoke=smoke,
        metadata={"interpreter": interpreter, "synced_from": str(request.lock_path.resolve())},
        progress=progress,
        force=request.force,
        notify=notify,
        guard=request.guard,
    )
    return SyncResult(name, dest, request.lock_path, lock, outcome)
