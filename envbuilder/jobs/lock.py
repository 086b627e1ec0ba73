"""The lock step: resolve a target and write its hashed PEP 751 lock; record it in the manifest (``--save``).

Typed in, typed out: a ``LockRequest`` (no argv) and a ``LockResult``. ``envbuilder lock`` and the image
commands (``dockerfile``/``build``/``ci`` without ``--lock``) call the same function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envbuilder.edge.settings import Settings
    from envbuilder.model.matrix import Matrix
    from envbuilder.model.plan import Plan
    from envbuilder.model.target import Target

__all__ = [
    "LockRequest",
    "LockResult",
    "check_output",
    "lock",
    "refuse_duplicate",
    "save_env",
]

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class LockRequest:
    """One environment to lock.

    ``output`` is the lock file; without it the lock goes into ``directory`` (default: the current one) under
    ``pylock.<name>.toml`` when ``name`` is given, else the plan's default PEP 751 name. ``upgrade`` compares
    with the lock already there; ``force`` replaces a lock file envbuilder did not write; ``output_option``
    is how the checks after planning name the output (``-o``; the check before any work says ``--output``).
    """

    target: Target
    name: str | None = None
    extra: tuple[str, ...] = ()
    output: Path | None = None
    directory: Path | None = None
    upgrade: bool = False
    force: bool = False
    output_option: str = "the lock"


@dataclass(frozen=True, slots=True)
class LockResult:
    """What was locked: the environment's name, the lock file, the plan, and (``upgrade``) what changed."""

    name: str
    path: Path
    plan: Plan
    packages: int
    digest: str
    changes: tuple[str, ...] | None


def check_output(path: Path, option: str) -> None:
    """A directory, or a name uv would refuse, is refused before any work."""
    from envbuilder.edge._fs import check_can_write
    from envbuilder.model.lock import check_lock_path

    check_can_write(path, option)
    check_lock_path(path, option)


def lock(
    request: LockRequest,
    matrix: Matrix,
    settings: Settings,
    *,
    progress: Say = _quiet,
    note: Say = _quiet,
) -> LockResult:
    """Resolve ``request.target`` and write its lock (raises ``NoPlanFound`` when no plan works)."""
    from envbuilder.edge._fs import check_can_write, refuse_overwrite
    from envbuilder.jobs import builder, plan
    from envbuilder.model.lock import (
        check_env_name,
        default_env_name,
        default_lock_file_name,
        diff_pins,
        lock_file_name,
        read_lock,
    )

    if request.output is not None:
        check_output(request.output, "--output")
    sources = plan.gather(settings, request.target, matrix)
    found = plan.plan(request.target, matrix, sources, what=request.target.describe())
    extra = builder.check_extra_packages(matrix.profile(found.profile), request.extra)
    name = check_env_name(request.name or default_env_name(found))
    out = request.output or (request.directory or Path.cwd()) / (
        lock_file_name(name) if request.name else default_lock_file_name(found)
    )
    check_can_write(out, request.output_option)
    refuse_overwrite(out, request.output_option, force=request.force)
    old = read_lock(out) if request.upgrade and out.exists() else None
    for text in sources.notes:
        note(text)
    made = builder.lock_plan(found, name=name, settings=settings, out=out, extra=extra, progress=progress)
    changes = tuple(diff_pins(old, made)) if old is not None else None
    return LockResult(name, out, found, len(made.packages), made.tool.digest, changes)


def save_env(path: Path, name: str, plan: Plan, extra: Sequence[str]) -> None:
    """Add the environment to the manifest at ``path`` (refused if the name is there), comments and layout kept."""
    from envbuilder.edge.manifest import EnvSpec, add_env

    refuse_duplicate(path, name)
    t = plan.target
    add_env(
        path,
        EnvSpec(
            name=name,
            profile=t.profile,
            gpus=tuple(g.sm for g in t.gpus),
            driver=t.driver,
            os=t.os,
            python=plan.python,
            machine=t.machine,
            packages=tuple(extra),
        ),
    )


def refuse_duplicate(path: Path, name: str) -> None:
    from envbuilder.edge.manifest import env_names
    from envbuilder.model.errors import LockError

    if name in env_names(path):
        msg = f"{path}: an environment named {name!r} is already there"
        raise LockError(msg, hint="choose another --name, or edit the manifest")
