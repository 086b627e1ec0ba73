"""Build environments with uv, atomically.

An environment is built in a temporary directory beside its destination, proven by the smoke test there, and
only then renamed into place (uv's ``--relocatable`` venvs survive the move). On a failure or Ctrl-C the
temporary directory is removed and an existing environment of that name is untouched. A per-name lock file
(``flock``) keeps two concurrent builds of one name from corrupting each other.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envbuilder import __version__, uv
from envbuilder._fs import read_json_object, write_text_atomic
from envbuilder.errors import CheckFailed, EnvbuilderError, LockError
from envbuilder.lock import Lock, hashed_requirements
from envbuilder.settings import Settings

MARKER = "envbuilder.json"
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class SmokeOutcome:
    """What the smoke test said about a freshly built environment."""

    ok: bool
    summary: str
    record: Mapping[str, Any]


def python_of(env: Path) -> Path:
    return env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def read_marker(env: Path) -> dict[str, Any] | None:
    return read_json_object(env / MARKER)


@contextlib.contextmanager
def name_lock(dest: Path) -> Iterator[None]:
    """Hold an exclusive lock for ``dest`` while building it; a second build of that name is refused."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    path = dest.parent / f".{dest.name}.lock"
    fh = path.open("a+")
    try:
        if sys.platform != "win32":
            import fcntl

            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                msg = f"another envbuilder is building {dest} right now"
                raise EnvbuilderError(msg, hint="wait for it to finish, or choose another --name") from None
        yield
    finally:
        fh.close()


def _refuse_foreign(dest: Path, *, force: bool) -> None:
    """Never replace a directory envbuilder did not make (nothing a user had is lost)."""
    if dest.exists() and read_marker(dest) is None and any(dest.iterdir()) and not force:
        msg = f"{dest} exists and was not made by envbuilder"
        raise EnvbuilderError(msg, hint="choose another --name/--path, or pass --force to replace it")


def _swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename the new environment into place; the old one (if any) is removed only after the swap."""
    old = None
    if dest.exists():
        old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(dest, old)
    try:
        os.replace(tmp, dest)
    except OSError:
        if old is not None:
            os.replace(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def install_lock(python: Path, lock: Lock, settings: Settings, *, progress: Progress) -> None:
    """Install exactly the lock. With a wheelhouse or mirror, any source may serve the files: hashes decide."""
    local_files = any(f.url.startswith("file://") for p in lock.packages for f in p.files)
    if settings.find_links or settings.index_url or settings.offline or local_files:
        req = python.parent.parent / "envbuilder-requirements.txt"
        req.write_text(hashed_requirements(lock), encoding="utf-8")
        progress(f"installing {len(lock.packages)} packages (hash-checked, from the configured sources)")
        indexes = [f"{settings.pytorch_index}/{lock.variant}"] if lock.indexes and settings.pytorch_index else []
        try:
            uv.sync(python, req, settings, indexes=indexes)
        finally:
            req.unlink(missing_ok=True)
        return
    progress(f"installing {len(lock.packages)} packages from {lock.path.name} (hashes verified)")
    uv.sync(python, lock.path, settings)


def build(
    dest: Path,
    *,
    interpreter: str,
    lock: Lock,
    settings: Settings,
    smoke: Callable[[Path], SmokeOutcome] | None,
    metadata: Mapping[str, Any],
    progress: Progress,
    force: bool = False,
) -> SmokeOutcome | None:
    """Build ``dest`` from ``lock`` with ``interpreter``; prove it; move it into place. Atomic."""
    dest = dest.absolute()
    with name_lock(dest):
        _refuse_foreign(dest, force=force)
        tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            started = time.monotonic()
            progress(f"creating the environment with {interpreter} (uv venv)")
            uv.venv(tmp, interpreter, settings)
            install_lock(python_of(tmp), lock, settings, progress=progress)
            outcome = None
            if smoke is not None:
                progress("running the smoke test inside the environment")
                outcome = smoke(python_of(tmp))
                if not outcome.ok:
                    msg = f"smoke test failed; {dest} was not created (an existing one is untouched)\n{outcome.summary}"
                    raise CheckFailed(
                        msg,
                        hint="run `envbuilder doctor --log -` with the output above, or see the reasons in the lock",
                    )
            _write_marker(tmp, lock, metadata, outcome, time.monotonic() - started)
            _swap_into_place(tmp, dest)
            return outcome
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _write_marker(
    env: Path, lock: Lock, metadata: Mapping[str, Any], outcome: SmokeOutcome | None, seconds: float
) -> None:
    marker = {
        "schema": "envbuilder.env/1",
        "envbuilder": __version__,
        "name": lock.name,
        "profile": lock.profile,
        "python": lock.python,
        "cuda": lock.cuda,
        "variant": lock.variant,
        "target": dict(lock.target),
        "lock_digest": lock.digest,
        "pins": list(lock.pins),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(seconds, 1),
        "smoke": dict(outcome.record) if outcome else {"result": "not-run"},
        **dict(metadata),
    }
    write_text_atomic(env / MARKER, json.dumps(marker, indent=2, sort_keys=True) + "\n")
    shutil.copyfile(lock.path, env / "pylock.toml")


@dataclass(frozen=True, slots=True)
class EnvSummary:
    name: str
    path: Path
    profile: str
    target: str
    python: str
    smoke: str
    size_bytes: int

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "path": str(self.path),
            "profile": self.profile,
            "target": self.target,
            "python": self.python,
            "smoke": self.smoke,
            "size_bytes": self.size_bytes,
        }


def disk_usage(path: Path) -> int:
    """Bytes on disk, counting hard-linked files once (uv links from its cache)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
    return total


def list_envs(settings: Settings) -> list[EnvSummary]:
    out: list[EnvSummary] = []
    if not settings.envs_dir.is_dir():
        return out
    for env in sorted(settings.envs_dir.iterdir()):
        marker = read_marker(env) if env.is_dir() and not env.name.startswith(".") else None
        if marker is None:
            continue
        gpus = ",".join(g.get("sm", "") for g in marker.get("target", {}).get("gpus", [])) or "cpu"
        driver = marker.get("target", {}).get("driver")
        target = gpus + (f" driver {driver}" if driver else "")
        smoke = str(marker.get("smoke", {}).get("result", "not-run"))
        out.append(
            EnvSummary(
                env.name, env, str(marker.get("profile")), target, str(marker.get("python")), smoke, disk_usage(env)
            )
        )
    return out


def find_env(name: str, settings: Settings) -> Path:
    path = settings.env_path(name)
    if read_marker(path) is None:
        known = ", ".join(e.name for e in list_envs(settings)) or "none yet"
        msg = f"no environment named {name!r} in {settings.envs_dir}"
        raise LockError(msg, hint=f"known: {known}; create one with `envbuilder create`")
    return path


def remove_env(name: str, settings: Settings) -> Path:
    path = find_env(name, settings)
    with name_lock(path):
        trash = path.parent / f".{path.name}.removing-{uuid.uuid4().hex[:8]}"
        os.replace(path, trash)  # atomic: the name disappears at once; deleting takes time
        shutil.rmtree(trash, ignore_errors=True)
    return path
