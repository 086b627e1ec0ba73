"""The create step: plan a target, lock it, build the environment with uv, smoke-test it, move it into place.

``prepare`` decides everything before a byte is written (plan, name, paths, interpreter); ``commands`` are the
command lines ``create`` would run, built by the same functions that run them (``create --dry-run`` prints
them); ``create`` runs them. Typed in (``CreateRequest``), typed out (``Prepared``, ``CreateResult``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envbuilder.edge.settings import Settings
    from envbuilder.edge.venv import SmokeOutcome
    from envbuilder.model.matrix import Matrix
    from envbuilder.model.plan import Plan
    from envbuilder.model.target import Target

__all__ = ["Commands", "CreateRequest", "CreateResult", "Prepared", "commands", "create", "prepare"]

Say = Callable[[str], None]
# What stands for the random part of a temporary name in a dry run (uuid4().hex[:8], mkdtemp's end).
RANDOM_PART = "XXXXXXXX"


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """One environment to create.

    ``name``/``path``: the environment's name (under the envbuilder home) or its directory; ``lock_out``: the
    user's lock (default ``./pylock.<name>.toml`` with a name, else the plan's PEP 751 name); ``installed_only``:
    plan only for the Pythons installed here (no ``--python`` given); ``smoke``/``guard``: run the smoke test,
    bind the stack layers; ``force``: replace a directory or lock file envbuilder did not make.
    """

    target: Target
    name: str | None = None
    path: Path | None = None
    extra: tuple[str, ...] = ()
    lock_out: Path | None = None
    installed_only: bool = False
    smoke: bool = True
    guard: bool = True
    force: bool = False


@dataclass(frozen=True, slots=True)
class Prepared:
    """What ``create`` will make, decided before anything is written."""

    request: CreateRequest
    plan: Plan
    name: str
    dest: Path
    lock_path: Path
    interpreter: str
    extra: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CreateResult:
    """The environment made: its name, directory, lock, plan, and the smoke test's outcome (None: not run)."""

    plan: Plan
    name: str
    path: Path
    lock: Path
    smoke: SmokeOutcome | None


def prepare(
    request: CreateRequest, matrix: Matrix, settings: Settings, *, step: Say = _quiet, say: Say = _quiet
) -> Prepared:
    """Plan the target and decide name, paths and interpreter (raises ``NoPlanFound`` when no plan works)."""
    from envbuilder.edge.detect import find_pythons
    from envbuilder.jobs import builder, plan

    if request.lock_out is not None:  # a directory, or a name uv would refuse, is refused before any work
        from envbuilder.jobs.lock import check_output

        check_output(request.lock_out, "--lock-out")
    target = request.target
    if request.installed_only:
        # Only Pythons installed here can be used (uv cannot download them): plan for those.
        installed = {p.minor for p in find_pythons()}
        target = replace(target, pythons=tuple(p for p in target.pythons if p in installed) or target.pythons)
    step("checking package sources")
    for note in settings.notes:
        say(f"      {note}")
    sources = plan.gather(settings, target, matrix)
    for note in sources.notes[len(settings.notes) :]:
        say(f"      {note}")
    step(f"resolving for {target.describe()}")
    found = plan.plan(target, matrix, sources, what="this target")
    extra = builder.check_extra_packages(matrix.profile(found.profile), request.extra)
    name = _env_name(request, found, say)
    dest = request.path if request.path is not None else settings.env_path(name)
    lock_path = _lock_path(request, found, name)
    return Prepared(request, found, name, dest, lock_path, builder.interpreter_for(found.python), extra)


def _env_name(request: CreateRequest, plan: Plan, say: Say) -> str:
    """The name, else the last part of the path when it is a valid environment name, else the plan's default.

    A directory may be called anything ("my env", "café"); the environment's name goes into lock names, image
    tags and scripts, so it keeps to the safe alphabet and the path keeps its own spelling.
    """
    from envbuilder.model.errors import LockError
    from envbuilder.model.lock import check_env_name, default_env_name

    if request.name or request.path is None:
        return check_env_name(request.name or default_env_name(plan))
    last = request.path.name
    try:
        return check_env_name(last)
    except LockError:
        name = default_env_name(plan)
        say(f"      the environment at {request.path} is named {name} (its lock and tags cannot use {last!r})")
        return name


def _lock_path(request: CreateRequest, plan: Plan, name: str) -> Path:
    """The lock path given (checked on entry), else the lock named after the name or path, else the plan's."""
    from envbuilder.model.lock import default_lock_file_name, lock_file_name

    if request.lock_out is not None:
        return request.lock_out
    # a path whose last part cannot be a name (``it's my café env``) gets the plan's default lock name
    given = request.name or (name if request.path is not None and name == request.path.name else None)
    return Path.cwd() / (lock_file_name(given) if given else default_lock_file_name(plan))


@dataclass(frozen=True, slots=True)
class Commands:
    """What ``create`` would run: each command line, and the cached resolution it reuses instead of
    ``uv pip compile`` (None: uv resolves)."""

    argv: tuple[tuple[str, ...], ...]
    reused: Path | None


def commands(prepared: Prepared, settings: Settings, *, uv: str = "uv", say: Say = _quiet) -> Commands:
    """The command lines ``create`` runs for ``prepared``, built by the functions that run them. ``uv`` names
    the binary; the random part of a temporary name is ``XXXXXXXX``.
    Nothing is written."""
    from envbuilder.edge import uv as uv_edge
    from envbuilder.edge import venv
    from envbuilder.jobs import builder
    from envbuilder.model.types import WHEELHOUSE, is_index_url

    plan = prepared.plan
    dest = prepared.dest.absolute()
    tmp = venv.temporary_path(dest, RANDOM_PART)
    python = venv.python_of(tmp)
    lines: list[list[str]] = []
    reused = builder.reusable_resolution(plan, settings, prepared.extra)
    if reused is None:
        import tempfile

        from envbuilder.edge._fs import tempdir_prefix

        work = Path(tempfile.gettempdir()) / f"{tempdir_prefix('lock')}{RANDOM_PART}"  # as builder.plan_lock makes it
        lines.append(
            uv_edge.compile_argv(
                work / "requirements.in",
                work / "pylock.toml",
                python_version=plan.python,
                platform=plan.target.platform,
                settings=settings,
                indexes=builder.compile_indexes(plan),
                uv=uv,
            )
        )
    lines.append(uv_edge.venv_argv(tmp, prepared.interpreter, uv=uv))
    if venv.hash_checked(settings, local_files=any(p.index == WHEELHOUSE for p in plan.packages)):
        needs = any(is_index_url(p.index) for p in plan.packages)
        indexes = venv.hash_checked_indexes(settings, variant=plan.variant, needs_index=needs, progress=say)
        lines.append(uv_edge.sync_argv(python, venv.requirements_path(python), settings, indexes=indexes, uv=uv))
    else:  # uv installs a copy of the lock inside the temporary environment, named as the user's
        lines.append(uv_edge.sync_argv(python, tmp / prepared.lock_path.name, settings, uv=uv))
    if prepared.request.smoke:
        lines.append(["envbuilder", "smoke", "--env", str(tmp)])
    lines.append(["mv", str(tmp), str(dest)])
    return Commands(tuple(tuple(line) for line in lines), reused)


def create(
    prepared: Prepared,
    settings: Settings,
    *,
    step: Say = _quiet,
    say: Say = _quiet,
    notify: Say = _quiet,
) -> CreateResult:
    """Lock, build, prove and move the environment into place; the user's lock is written last."""
    from envbuilder.edge import venv
    from envbuilder.jobs import builder

    request, plan = prepared.request, prepared.plan
    _preflight(prepared)
    step(f"locking {prepared.name} -> {prepared.lock_path}")
    lock, text = builder.plan_lock(
        plan, name=prepared.name, settings=settings, out=prepared.lock_path, extra=prepared.extra, progress=say
    )
    step(f"building {prepared.dest}")
    smoke = functools.partial(builder.smoke_env, profile=plan.profile) if request.smoke else None
    # The user's lock is written last, with the swap (nothing failed before it): an interrupted or failed
    # build leaves the old one byte for byte.
    write_lock = functools.partial(builder.write_user_lock, prepared.lock_path, text, built=prepared.dest.absolute())
    outcome = venv.build(
        prepared.dest,
        interpreter=prepared.interpreter,
        lock=lock,
        settings=settings,
        smoke=smoke,
        metadata={"interpreter": prepared.interpreter, "lock_file": str(lock.path.absolute())},
        progress=lambda s: say(f"      {s}"),
        force=request.force,
        lock_text=text,
        notify=notify,
        then=write_lock,
        guard=request.guard,
    )
    step("done")
    return CreateResult(plan, prepared.name, prepared.dest, prepared.lock_path, outcome)


def _preflight(prepared: Prepared) -> None:
    """Refuse, before anything is built, a destination or lock path that cannot take the result."""
    from envbuilder.edge._fs import check_can_write, refuse_overwrite

    request = prepared.request
    lock_option = "--lock-out" if request.lock_out is not None else "the lock"
    check_can_write(prepared.dest, "--path" if request.path is not None else "the environment", directory=True)
    check_can_write(prepared.lock_path, lock_option)
    refuse_overwrite(prepared.lock_path, lock_option, force=request.force)
