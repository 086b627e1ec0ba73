"""Build environments with uv, atomically.

An environment is built in a temporary directory beside its destination (``.NAME.tmp-*``), proven by the smoke
test there, and only then renamed into place (uv's ``--relocatable`` venvs survive the move). On a failure,
Ctrl-C or SIGTERM the temporary directory is removed and an existing environment of that name is untouched. A
per-name lock file (``flock``) keeps two concurrent builds of one name from corrupting each other.

The final swap is two renames: NAME -> ``.NAME.old-*``, then ``.NAME.tmp-*`` -> NAME. SIGINT and SIGTERM wait
until both are done; a SIGKILL (or a power cut) between them leaves NAME empty, and the next run that takes
the name's lock restores ``.NAME.old-*`` (the user's lock still describes it: locks are written after the swap)
and removes every stale ``.NAME.tmp-*``, saying so.
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuilder import __version__
from envbuilder.edge import uv
from envbuilder.edge._fs import private_tempdir, read_json_object, sweep_temp, write_text_atomic
from envbuilder.edge._run import deferred_signals
from envbuilder.edge.settings import Settings
from envbuilder.model.errors import CheckFailed, EnvbuilderError, FileProblem, LockError
from envbuilder.model.guard import CONSTRAINTS_FILE
from envbuilder.model.lock import Lock, hashed_requirements, legacy_name_note, suggest_lock_file_name, with_smoke

if TYPE_CHECKING:
    from envbuilder.doctor.drift import Change
    from envbuilder.edge.guard import GuardResult

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "MARKER",
    "STATE_FILE",
    "EnvSummary",
    "Progress",
    "SmokeOutcome",
    "bin_dir",
    "build",
    "disk_usage",
    "env_drift",
    "env_ref",
    "fault_point",
    "find_env",
    "glob_escape",
    "guard_pins",
    "hash_checked",
    "hash_checked_indexes",
    "install_lock",
    "is_ours",
    "list_envs",
    "locked_versions",
    "name_lock",
    "new_env_id",
    "python_of",
    "read_marker",
    "record_path_env",
    "recover",
    "refuse_foreign",
    "remove_env",
    "requirements_path",
    "set_guard",
    "sync_argv",
    "temporary_path",
]

MARKER = "envbuilder.json"
Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class SmokeOutcome:
    """What the smoke test said about a freshly built environment."""

    ok: bool
    summary: str
    record: Mapping[str, Any]


def bin_dir(env: Path) -> Path:
    """Where a virtual environment keeps its scripts: ``Scripts`` on Windows (and in an environment laid out that
    way, seen from elsewhere), else ``bin``. The one rule; the guard's stdlib copy runs inside recipes."""
    return env / ("Scripts" if sys.platform == "win32" or (env / "Scripts").is_dir() else "bin")


def python_of(env: Path) -> Path:
    scripts = bin_dir(env)
    return scripts / ("python.exe" if scripts.name == "Scripts" else "python")


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


def refuse_foreign(dest: Path, settings: Settings, *, force: bool) -> None:
    """Never replace a directory envbuilder did not make (nothing a user had is lost).

    A file named envbuilder.json is not proof: the directory must be one of the home's environments or a
    --path environment recorded when envbuilder built it (``is_ours``).
    """
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        msg = f"{dest} exists and is not a directory"
        raise FileProblem(msg, hint="choose another --name/--path (an environment is a directory)")
    if dest.is_dir() and any(dest.iterdir()) and not force and not is_ours(dest, settings):
        msg = f"{dest} exists and was not made by envbuilder"
        raise EnvbuilderError(msg, hint="choose another --name/--path, or pass --force to replace it")


def fault_point(name: str) -> None:
    """The fault suite's hook (tests/test_faults.py): with ENVBUILDER_FAULT_PAUSE=<name>, say so and wait here,
    so that a signal lands at exactly this point. Unset everywhere else, where it costs one lookup."""
    if os.environ.get("ENVBUILDER_FAULT_PAUSE") == name:
        print(f"fault point: {name}", file=sys.stderr, flush=True)
        time.sleep(120)


def _swap_into_place(tmp: Path, dest: Path) -> None:
    """Rename the new environment into place; the old one (if any) is removed only after the swap."""
    old = None
    with deferred_signals():  # both renames, or neither: Ctrl-C and SIGTERM wait for the second
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(dest, old)
            fault_point("swap-mid")  # only SIGKILL gets through here; recover() repairs what it leaves
        try:
            os.replace(tmp, dest)
        except OSError:
            if old is not None:
                os.replace(old, dest)
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _leftovers(dest: Path, kind: str) -> list[Path]:
    try:
        return sorted(dest.parent.glob(f".{glob_escape(dest.name)}.{kind}-*"))
    except OSError:
        return []


def glob_escape(name: str) -> str:
    """A name as a glob pattern that matches only itself ('[' and friends are legal in a --path)."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def recover(dest: Path) -> list[str]:
    """Repair what a killed run left beside ``dest`` (the caller holds the name's lock); say what was done.

    NAME missing and ``.NAME.old-*`` present: the run died between the two renames of its swap, so the newest
    old environment goes back. A ``.NAME.old-*`` beside a present NAME, every ``.NAME.tmp-*`` and
    ``.NAME.removing-*`` are unfinished work of a run that no longer holds the lock: removed.
    """
    notes: list[str] = []
    olds = sorted(_leftovers(dest, "old"), key=lambda p: p.stat().st_mtime if p.exists() else 0.0)
    if olds and not dest.exists() and not dest.is_symlink() and read_marker(olds[-1]) is not None:
        os.replace(olds.pop(), dest)
        notes.append(f"restored {dest} (a run was killed between the two renames of its final swap)")
    for path in olds:
        shutil.rmtree(path, ignore_errors=True)
        notes.append(f"removed {path.name}, an old environment a killed run had already replaced")
    for kind, what in (("tmp", "an unfinished build"), ("removing", "an unfinished removal")):
        for path in _leftovers(dest, kind):
            shutil.rmtree(path, ignore_errors=True)
            notes.append(f"removed {path.name}, {what} left by a killed run")
    swept = sweep_temp()
    if swept:
        notes.append(f"removed {len(swept)} temporary director{'y' if len(swept) == 1 else 'ies'} left by killed runs")
    return notes


def install_lock(python: Path, lock: Lock, settings: Settings, *, progress: Progress) -> None:
    """Install exactly the lock. With a wheelhouse or mirror, any source may serve the files: hashes decide."""
    local_files = any(f.url.startswith("file://") for p in lock.packages for f in p.files)
    if hash_checked(settings, local_files=local_files):
        _install_hash_checked(python, lock, settings, progress)
    else:
        _install_pylock(python, lock, settings, progress)


def hash_checked(settings: Settings, *, local_files: bool) -> bool:
    """Does the lock install as hash-checked requirements (a wheelhouse, mirror or local files), not as a pylock?"""
    return bool(settings.find_links or settings.index_url or settings.offline or local_files)


def requirements_path(python: Path) -> Path:
    """Where the hash-checked requirements of an environment's lock are written while it installs."""
    return python.parent.parent / "envbuilder-requirements.txt"


def hash_checked_indexes(settings: Settings, *, variant: str, needs_index: bool, progress: Progress) -> list[str]:
    """The PyTorch index of the lock's variant when the lock needs one and it can be reached, else none."""
    from envbuilder.edge.sources import reachable

    if not (needs_index and settings.pytorch_index):
        return []
    # uv stops at an index it cannot reach even when a wheelhouse holds the file: an air-gapped
    # teammate's wheelhouse must be enough.
    if not settings.offline and reachable(settings.pytorch_index, settings):
        return [f"{settings.pytorch_index}/{variant}"]
    progress(f"the PyTorch index {settings.pytorch_index} is out of reach: its files come from the wheelhouse")
    return []


def _install_hash_checked(python: Path, lock: Lock, settings: Settings, progress: Progress) -> None:
    """The lock as hash-checked requirements, served by the configured sources (mirror, wheelhouse, index)."""
    req = requirements_path(python)
    req.write_text(hashed_requirements(lock), encoding="utf-8")
    progress(f"installing {len(lock.packages)} packages (hash-checked, from the configured sources)")
    indexes = hash_checked_indexes(
        settings, variant=lock.tool.variant, needs_index=bool(lock.tool.indexes), progress=progress
    )
    try:
        uv.sync(python, req, settings, indexes=indexes)
    finally:
        req.unlink(missing_ok=True)


def _install_pylock(python: Path, lock: Lock, settings: Settings, progress: Progress) -> None:
    """uv's own PEP 751 install: the lock's URLs as they stand, hashes verified."""
    progress(f"installing {len(lock.packages)} packages from {lock.path.name} (hashes verified)")
    valid = suggest_lock_file_name(lock.path.name)
    note = legacy_name_note(lock.path, f"installing a copy named {valid}")
    if note is None:
        uv.sync(python, lock.path, settings)
        return
    # A lock shared under a pre-PEP 751 name (pylock.cpu-py3.11.toml) still installs: uv gets a valid copy.
    progress(note)
    with private_tempdir("lock") as tmp:
        copy = tmp / valid
        shutil.copyfile(lock.path, copy)
        uv.sync(python, copy, settings)


def temporary_path(dest: Path, token: str) -> Path:
    """Where ``dest`` is built before the swap: ``.NAME.tmp-<token>`` beside it."""
    return dest.parent / f".{dest.name}.tmp-{token}"


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
    lock_text: str | None = None,
    notify: Progress | None = None,
    then: Callable[[SmokeOutcome | None], None] | None = None,
    guard: bool = True,
) -> SmokeOutcome | None:
    """Build ``dest`` from ``lock`` with ``interpreter``; prove it; move it into place. Atomic.

    ``lock_text`` is the lock when it exists only in memory (``create`` writes the user's file only after the
    swap): it is installed from a copy inside the temporary environment. ``then`` runs right after the swap,
    in the same uninterruptible step (``create`` writes the user's lock there). ``notify`` hears what was
    recovered from a killed run (default: ``progress``). ``guard``: the lock's stack layers bind uv and pip
    inside the environment (``edge.guard``), put in after the smoke test, so the test sees the lock alone.
    """
    dest = dest.absolute()
    with name_lock(dest):
        for note in recover(dest):
            (notify or progress)(note)
        refuse_foreign(dest, settings, force=force)
        tmp = temporary_path(dest, uuid.uuid4().hex[:8])
        try:
            started = time.monotonic()
            progress(f"creating the environment with {interpreter} (uv venv)")
            uv.venv(tmp, interpreter, settings)
            text = lock_text if lock_text is not None else lock.path.read_text(encoding="utf-8")
            staged = replace(lock, path=tmp / lock.path.name)  # the lock uv installs, named as the user's
            staged.path.write_text(text, encoding="utf-8")
            install_lock(python_of(tmp), staged, settings, progress=progress)
            staged.path.unlink()
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
            env_id = new_env_id()
            guarded = _guard(tmp, dest, lock, progress) if guard else None
            extra = {"guard": guarded.to_json() if guarded else None}
            _write_marker(tmp, lock, text, {**metadata, **extra, "id": env_id}, outcome, time.monotonic() - started)
            fault_point("swap")
            # The swap and what must follow it (the --path record, the user's lock) happen as one step: a
            # SIGINT/SIGTERM arriving here is answered once all of them are done, never in between.
            with deferred_signals():
                _swap_into_place(tmp, dest)
                if not _in_home(dest, settings):
                    record_path_env(dest, env_id, settings)
                if then is not None:
                    then(outcome)
            return outcome
        finally:
            with deferred_signals():  # a second Ctrl-C must not leave half a .tmp- behind
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)


def _guard(tmp: Path, dest: Path, lock: Lock, progress: Progress) -> GuardResult | None:
    from envbuilder.edge import guard

    packages = {p.name: p.version for p in lock.packages}
    result = guard.apply(tmp, name=lock.tool.name, packages=packages, lock_file=lock.path.name, final=dest)
    if result is None:
        progress(f"no guard: {dest} holds whitespace, which UV_CONSTRAINT and PIP_CONSTRAINT cannot carry")
        return None
    for note in result.notes:
        progress(f"guard: {note}")
    progress(f"guard: {len(result.pins)} stack layers bind uv and pip inside it (envbuilder unguard removes it)")
    return result


def _write_marker(
    env: Path, lock: Lock, text: str, metadata: Mapping[str, Any], outcome: SmokeOutcome | None, seconds: float
) -> None:
    marker = {
        "schema": "envbuilder.env/1",
        "envbuilder": __version__,
        "name": lock.tool.name,
        "profile": lock.tool.profile,
        "python": lock.tool.python,
        "cuda": lock.tool.cuda,
        "variant": lock.tool.variant,
        "target": dict(lock.tool.target),
        "lock_digest": lock.tool.digest,
        "pins": list(lock.tool.pins),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "build_seconds": round(seconds, 1),
        "smoke": dict(outcome.record) if outcome else {"result": "not-run"},
        **dict(metadata),
    }
    write_text_atomic(env / MARKER, json.dumps(marker, indent=2, sort_keys=True) + "\n")
    write_text_atomic(env / "pylock.toml", with_smoke(text, outcome.record) if outcome else text)


@dataclass(frozen=True, slots=True)
class EnvSummary:
    """One row of `list`. ``proven``: the smoke test passed and no stack layer moved since (``drift``)."""

    name: str
    path: Path
    profile: str
    target: str
    python: str
    smoke: str
    size_bytes: int
    guard: tuple[str, ...] | None = None  # the pins that bind uv and pip inside it; None: no guard
    drift: tuple[Change, ...] = ()

    @property
    def proven(self) -> bool:
        return self.smoke == "pass" and not any(c.layer for c in self.drift)

    @property
    def state(self) -> str:
        """The SMOKE column: the smoke result, unless a stack layer moved since (then it proves nothing)."""
        moved = [c for c in self.drift if c.layer]
        if moved and self.smoke == "pass":
            return f"stale: {moved[0].name} {moved[0].installed or 'removed'}" + (" +" if len(moved) > 1 else "")
        return self.smoke

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "path": str(self.path),
            "profile": self.profile,
            "target": self.target,
            "python": self.python,
            "smoke": self.smoke,
            "proven": self.proven,
            "guard": None if self.guard is None else {"file": CONSTRAINTS_FILE, "pins": list(self.guard)},
            "drift": [c.to_json() for c in self.drift],
            "size_bytes": self.size_bytes,
        }


def locked_versions(env: Path) -> dict[str, str] | None:
    """{name: version} of the lock kept inside the environment (``pylock.toml``); None when it is unreadable."""
    try:
        doc = tomllib.loads((env / "pylock.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    packages = doc.get("packages")
    if not isinstance(packages, list):
        return None
    return {str(p.get("name")): str(p.get("version")) for p in packages if isinstance(p, dict)}


def env_drift(env: Path) -> tuple[Change, ...]:
    """What moved in ``env`` since it was built: its installed set against the lock it keeps."""
    from envbuilder.doctor.drift import changes
    from envbuilder.edge.guard import installed_versions

    locked = locked_versions(env)
    return () if locked is None else changes(installed_versions(env), locked)


def guard_pins(env: Path) -> tuple[str, ...] | None:
    from envbuilder.edge.guard import is_guarded

    if not is_guarded(env):
        return None
    lines = (env / CONSTRAINTS_FILE).read_text(encoding="utf-8", errors="replace").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.startswith("#"))


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


def _table(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _summary(env: Path, marker: Mapping[str, Any], name: str) -> EnvSummary:
    """One row of `list`; a marker is read like any file from outside (wrong types give blanks, not errors)."""
    target_doc = _table(marker.get("target"))
    gpus_doc = target_doc.get("gpus")
    gpus = ",".join(str(_table(g).get("sm", "")) for g in gpus_doc) if isinstance(gpus_doc, list) else ""
    driver = target_doc.get("driver")
    target = (gpus or "cpu") + (f" driver {driver}" if driver else "")
    smoke = str(_table(marker.get("smoke")).get("result", "not-run"))
    profile, python = str(marker.get("profile")), str(marker.get("python"))
    return EnvSummary(
        name, env, profile, target, python, smoke, disk_usage(env), guard=guard_pins(env), drift=env_drift(env)
    )


def list_envs(settings: Settings) -> list[EnvSummary]:
    """The home's environments by name, then the --path environments recorded when envbuilder built them."""
    out: list[EnvSummary] = []
    if settings.envs_dir.is_dir():
        for env in sorted(settings.envs_dir.iterdir()):
            marker = read_marker(env) if env.is_dir() and not env.name.startswith(".") else None
            if marker is not None:
                out.append(_summary(env, marker, env.name))
    for recorded in sorted(_recorded_paths(settings)):
        env = Path(recorded)
        marker = read_marker(env)
        if marker is not None and is_ours(env, settings):
            out.append(_summary(env, marker, str(marker.get("name") or env.name)))
    return out


# --------------------------------------------------------------------------- which environments are envbuilder's
# A --path environment lives anywhere, so a marker file alone cannot tell it from a user's directory that holds a
# file of that name (issue 11: `remove /tmp/v` deleted it). A build records the path and a random id, which it also
# writes into the marker, in the home's state; remove/run/shell/--force-less rebuilds accept only a match.

STATE_FILE = "paths.json"


def new_env_id() -> str:
    return uuid.uuid4().hex


def _state_path(settings: Settings) -> Path:
    return settings.home / "state" / STATE_FILE


def _in_home(env: Path, settings: Settings) -> bool:
    return env.absolute().parent == settings.envs_dir.absolute()


def _recorded_paths(settings: Settings) -> dict[str, str]:
    """{resolved path: id} from the record; anything malformed in it is ignored (it only ever grants less)."""
    doc = read_json_object(_state_path(settings)) or {}
    envs = doc.get("envs")
    if not isinstance(envs, dict):
        return {}
    return {k: v for k, v in envs.items() if isinstance(k, str) and isinstance(v, str) and v}


@contextlib.contextmanager
def _state_locked(settings: Settings) -> Iterator[None]:
    """Two builds recording at once must not lose each other's entry."""
    path = _state_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (path.parent / f".{STATE_FILE}.lock").open("a+") as fh:
        if sys.platform != "win32":
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield


def _write_record(settings: Settings, envs: Mapping[str, str]) -> None:
    doc = {"schema": "envbuilder.paths/1", "envs": dict(sorted(envs.items()))}
    write_text_atomic(_state_path(settings), json.dumps(doc, indent=2) + "\n")


def record_path_env(env: Path, env_id: str, settings: Settings) -> None:
    with _state_locked(settings):
        envs = _recorded_paths(settings)
        envs[str(env.resolve())] = env_id
        _write_record(settings, envs)


def _forget_path_env(env: Path, settings: Settings) -> None:
    with _state_locked(settings):
        envs = _recorded_paths(settings)
        if envs.pop(str(env), None) is not None:
            _write_record(settings, envs)


def is_ours(env: Path, settings: Settings) -> bool:
    """Built by envbuilder: a marker, and either a home environment or a recorded --path one with that id."""
    marker = read_marker(env)
    if marker is None:
        return False
    if _in_home(env, settings) and not env.is_symlink():
        return True
    env_id = marker.get("id")
    return isinstance(env_id, str) and bool(env_id) and _recorded_paths(settings).get(str(env.resolve())) == env_id


def _say(text: str) -> None:
    print(f"envbuilder: {text}", file=sys.stderr, flush=True)


def _repair(env: Path, notify: Progress) -> None:
    """A run killed mid-swap left the name empty: restore it now (unless a live build holds the name)."""
    if not env.exists() and _leftovers(env, "old"):
        with contextlib.suppress(EnvbuilderError), name_lock(env):
            for note in recover(env):
                notify(note)


def find_env(name: str | None, settings: Settings, *, path: str | None = None, notify: Progress = _say) -> Path:
    """The environment a command names: a home environment by NAME, or a recorded --path one."""
    if path is not None:
        _repair(Path(path).absolute(), notify)
        return _find_path_env(Path(path), settings)
    from envbuilder.model.lock import check_env_name

    if not name:
        msg = "no environment named: give its NAME, or --path DIR for one built with --path"
        raise LockError(msg, hint="see `envbuilder list`")
    known = ", ".join(e.name for e in list_envs(settings)) or "none yet"
    try:
        check_env_name(name)
    except LockError:
        msg = f"{name!r} is not the name of an environment"
        hint = f"name one in {settings.envs_dir} (known: {known}); for one built with --path, give --path DIR"
        raise LockError(msg, hint=hint) from None
    env = settings.env_path(name)
    _repair(env, notify)
    if not is_ours(env, settings):
        msg = f"no environment named {name!r} in {settings.envs_dir}"
        raise LockError(msg, hint=f"known: {known}; create one with `envbuilder create`")
    return env


def _find_path_env(path: Path, settings: Settings) -> Path:
    env = path.absolute()
    if not is_ours(env, settings):
        what = "does not exist" if not env.exists() else "was not built by envbuilder"
        msg = f"{path} {what} (it is not among the --path environments recorded in {_state_path(settings)})"
        raise LockError(
            msg, hint="envbuilder acts only on environments it built: see `envbuilder list`, or pass --home"
        )
    return env


def env_ref(env: Path, settings: Settings) -> list[str]:
    """How a command names ``env``: NAME (with --home when it is not the default one), or --path DIR."""
    from envbuilder.edge.settings import Settings as _Settings

    if not _in_home(env, settings):
        return ["--path", str(env)]
    home = [] if settings.home == _Settings().home else ["--home", str(settings.home)]
    return [env.name, *home]


def sync_argv(env: Path, settings: Settings) -> tuple[str, ...]:
    """The command that rebuilds ``env`` from the lock it keeps (``pylock.toml``), back to what was proven."""
    ref = env_ref(env, settings)
    where = ref if ref[0] == "--path" else ["--name", *ref]
    return ("envbuilder", "sync", str(env / "pylock.toml"), *where)


def set_guard(name: str | None, settings: Settings, *, path: str | None = None, on: bool) -> Path:
    """Put the guard into an environment envbuilder built, or take it out; the marker says which (``list``)."""
    from envbuilder.edge import guard

    env = find_env(name, settings, path=path)
    real = env if _in_home(env, settings) else env.resolve()
    with name_lock(real):
        marker = read_marker(real) or {}
        if on:
            locked = locked_versions(real)
            if locked is None:
                msg = f"{real / 'pylock.toml'} cannot be read: the guard takes its pins from it"
                raise LockError(msg, hint="rebuild the environment from its lock: envbuilder sync LOCK")
            lock_file = Path(str(marker.get("lock_file") or marker.get("synced_from") or "pylock.toml")).name
            name_ = str(marker.get("name") or real.name)
            result = guard.apply(real, name=name_, packages=locked, lock_file=lock_file, final=real)
            if result is None:
                msg = f"{real} holds whitespace, which UV_CONSTRAINT and PIP_CONSTRAINT cannot carry"
                raise EnvbuilderError(msg, hint="rebuild it at a path without spaces (envbuilder sync --path DIR)")
            marker["guard"] = result.to_json()
        else:
            guard.remove(real)
            marker["guard"] = None
        write_text_atomic(real / MARKER, json.dumps(marker, indent=2, sort_keys=True) + "\n")
    return env


def remove_env(name: str | None, settings: Settings, *, path: str | None = None) -> Path:
    env = find_env(name, settings, path=path)
    real = env if _in_home(env, settings) else env.resolve()
    with name_lock(real):
        trash = real.parent / f".{real.name}.removing-{uuid.uuid4().hex[:8]}"
        os.replace(real, trash)  # atomic: the name disappears at once; deleting takes time
        shutil.rmtree(trash, ignore_errors=True)
    if not _in_home(env, settings):
        _forget_path_env(real, settings)
    return env
