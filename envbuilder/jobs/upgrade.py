"""The upgrade step: move an environment's stack as a whole, proven again (issue 15).

``prepare`` re-resolves the whole stack for the environment's own target (from the lock it keeps) with the new
constraint and locks it in memory: the change, package by package, is known before anything is written.
``upgrade`` then builds the new environment beside the old one, runs the smoke test, swaps it in atomically and
rewrites the lock: the create path's machinery (``builder.plan_lock``, ``venv.build``,
``builder.write_user_lock``). Any failure leaves the old environment and its lock as they were (the build
happens in ``.NAME.tmp-*``; the lock is written after the swap). Typed in (``UpgradeRequest``), typed out
(``Prepared``, ``UpgradeResult``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuilder.model.errors import TargetError

if TYPE_CHECKING:
    from envbuilder.edge.settings import Settings
    from envbuilder.model.lock import Lock
    from envbuilder.model.matrix import Matrix
    from envbuilder.model.plan import NoPlan, Plan
    from envbuilder.model.target import Target
    from envbuilder.resolve import Sources

__all__ = ["Prepared", "UpgradeRequest", "UpgradeResult", "prepare", "upgrade"]

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """What moves in which environment.

    ``name`` (an environment of the envbuilder home) or ``path`` (one built with ``--path``), not both;
    ``torch``/``bnb``: the specifiers to move to, ``latest``: the newest stack that works (at least one of the
    three); ``dry_run``: show the change, build and write nothing; ``lock_out``: where the new lock goes
    (default: the lock the environment was built from); ``smoke``: prove the new environment before the swap.
    A request that says nothing to move, or names the environment twice, is refused when it is made.
    """

    name: str | None = None
    path: Path | None = None
    torch: str | None = None
    bnb: str | None = None
    latest: bool = False
    dry_run: bool = False
    lock_out: Path | None = None
    smoke: bool = True

    def __post_init__(self) -> None:
        if not (self.torch or self.bnb or self.latest):
            msg = "upgrade: say what moves: --torch SPEC, --bnb SPEC or --latest"
            raise TargetError(msg, hint="e.g. envbuilder upgrade NAME --torch 2.14.1 --dry-run")
        if self.path is not None and self.name is not None:
            msg = f"give NAME ({self.name}) or --path ({self.path}), not both"
            raise TargetError(
                msg, hint="NAME for an environment of envbuilder's home, --path for one built with --path"
            )


@dataclass(frozen=True, slots=True)
class Prepared:
    """The upgrade decided, nothing written: the environment and its marker, the lock it keeps (``old``), the
    new plan, where the new lock goes, and the new lock with its text and the pins that move (``new`` is None,
    ``changes`` empty, when the environment is already there)."""

    request: UpgradeRequest
    env: Path
    marker: dict[str, Any]
    old: Lock
    plan: Plan
    lock_path: Path
    new: Lock | None
    text: str
    changes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UpgradeResult:
    """What happened: the environment's name and directory, its lock, the plan, the pins that moved, and
    whether the new environment was swapped in (False: already there, or a dry run)."""

    name: str
    path: Path
    lock: Path
    plan: Plan
    changes: tuple[str, ...]
    upgraded: bool
    dry_run: bool


def prepare(request: UpgradeRequest, matrix: Matrix, settings: Settings, *, progress: Say = _quiet) -> Prepared:
    """Re-resolve the environment's target with the new constraint and lock it in memory (raises
    ``NoPlanFound``, whose hint is the nearest upgrade that works, when no plan serves what was asked)."""
    from envbuilder.edge import venv
    from envbuilder.jobs import builder
    from envbuilder.jobs import plan as plan_job
    from envbuilder.model.lock import diff_pins, read_lock
    from envbuilder.model.plan import NoPlan
    from envbuilder.resolve import resolve

    where = str(request.path) if request.path is not None else None
    env = venv.find_env(None if where else request.name, settings, path=where)
    marker = venv.read_marker(env) or {}
    old = read_lock(env / "pylock.toml")
    target = _target(old, matrix, request)
    progress(f"resolving {old.tool.name} again for {target.describe()}")
    sources = plan_job.gather(settings, target, matrix)
    found = resolve(target, matrix, sources)
    if isinstance(found, NoPlan):
        msg = f"no plan serves {_asked(request)} for {old.tool.name} ({target.describe()}); nothing was changed"
        raise plan_job.NoPlanFound(msg, found, hint=_nearest(found, matrix, sources, request))
    lock_path = _lock_out(request, marker, old)
    unchanged = Prepared(request, env, marker, old, found, lock_path, None, "", ())
    before = {p.name: p.version for p in old.packages}
    if all(before.get(p.name) == p.version for p in found.packages) and not request.latest:
        return unchanged
    new, text = builder.plan_lock(
        found, name=old.tool.name, settings=settings, out=lock_path, extra=old.tool.extra, progress=progress
    )
    changes = tuple(diff_pins(old, new))
    if not changes:
        return unchanged
    return Prepared(request, env, marker, old, found, lock_path, new, text, changes)


def _asked(request: UpgradeRequest) -> str:
    parts = [f"torch {request.torch}" if request.torch else "", f"bitsandbytes {request.bnb}" if request.bnb else ""]
    return " and ".join(p for p in parts if p) or "the latest stack"


def _target(old: Lock, matrix: Matrix, request: UpgradeRequest) -> Target:
    """The environment's own target, as its lock records it, with the new constraint.

    --bnb alone keeps torch where it is (only what was asked moves); --torch re-resolves bitsandbytes and the
    companions for the new torch; --latest lifts every constraint.
    """
    from envbuilder.model.target import Gpu, build_target

    doc = old.tool.target
    gpus = [Gpu(cc=str(g["cc"]), product=g.get("product")) for g in doc.get("gpus", []) if isinstance(g, dict)]
    torch = request.torch
    locked_torch = old.package("torch")
    if torch is None and request.bnb and not request.latest and locked_torch is not None:
        # the release: its build (cpu, cu128) follows from the target, as it did when the environment was made
        torch = "==" + locked_torch.version.split("+", 1)[0]
    return build_target(
        matrix,
        gpus=gpus,
        driver=doc.get("driver"),
        os=str(doc.get("os") or "linux"),
        pythons=(old.tool.python,),
        machine=str(doc.get("machine") or "x86_64"),
        profile=old.tool.profile,
        torch=torch,
        bnb=request.bnb,
        forward_compat=bool(doc.get("forward_compat")),
    )


def _nearest(plan: NoPlan, matrix: Matrix, sources: Sources, request: UpgradeRequest) -> str:
    """The nearest upgrade that works: the resolver's own nearest alternatives, else the best plan for the
    target with the constraint lifted, spelt as the command that asks for it."""
    from dataclasses import replace

    from envbuilder.model.plan import Plan
    from envbuilder.resolve import resolve

    if plan.nearest:
        return "nearest that works: " + "; ".join(plan.nearest[:3])
    free = resolve(replace(plan.target, torch_spec=None, bnb_spec=None), matrix, sources)
    if not isinstance(free, Plan):
        return "no stack works for this target with the sources configured (see the reasons above)"
    torch, bnb = free.package("torch"), free.package("bitsandbytes")
    ref = request.name if request.path is None else f"--path {request.path}"
    flags = " ".join(
        f for f in (f"--torch {torch.version}" if torch else "", f"--bnb {bnb.version}" if bnb else "") if f
    )
    return f"nearest that works: envbuilder upgrade {ref} {flags}"


def _lock_out(request: UpgradeRequest, marker: dict[str, Any], old: Lock) -> Path:
    """--lock-out, else the lock the environment was created or synced from (when it is not the copy inside
    the environment), else ./pylock.<name>.toml."""
    from envbuilder.model.lock import check_lock_path, lock_file_name

    if request.lock_out:
        return check_lock_path(request.lock_out, "--lock-out")
    for key in ("lock_file", "synced_from"):
        value = marker.get(key)
        if isinstance(value, str) and value and Path(value).name != "pylock.toml":
            return Path(value)
    return Path.cwd() / lock_file_name(old.tool.name)


def upgrade(prepared: Prepared, settings: Settings, *, progress: Say = _quiet, notify: Say = _quiet) -> UpgradeResult:
    """Build beside, smoke, swap, then write the lock (``venv.build``); nothing when the environment is already
    there or the request is a dry run. On failure the error says that nothing changed."""
    request = prepared.request
    done = prepared.new is not None and not request.dry_run
    if done and prepared.new is not None:
        _build(prepared, prepared.new, settings, progress, notify)
    return UpgradeResult(
        prepared.old.tool.name,
        prepared.env,
        prepared.lock_path,
        prepared.plan,
        prepared.changes,
        upgraded=done,
        dry_run=request.dry_run,
    )


def _build(prepared: Prepared, new: Lock, settings: Settings, progress: Say, notify: Say) -> None:
    from envbuilder.edge import venv
    from envbuilder.jobs import builder
    from envbuilder.model.errors import EnvbuilderError

    plan, env, lock_path, marker = prepared.plan, prepared.env, prepared.lock_path, prepared.marker
    interpreter = builder.interpreter_for(plan.python)
    smoke = functools.partial(builder.smoke_env, profile=plan.profile) if prepared.request.smoke else None
    write_lock = functools.partial(builder.write_user_lock, lock_path, prepared.text, built=env)
    metadata = {
        "interpreter": interpreter,
        "lock_file": str(lock_path.absolute()),
        "upgraded_from": str(marker.get("lock_digest") or ""),
    }
    try:
        venv.build(
            env,
            interpreter=interpreter,
            lock=new,
            settings=settings,
            smoke=smoke,
            metadata=metadata,
            progress=lambda s: progress(f"  {s}"),
            lock_text=prepared.text,
            notify=notify,
            then=write_lock,
            guard=marker.get("guard") is not None or "guard" not in marker,
        )
    except EnvbuilderError as exc:
        done = f"{env} and {lock_path.name} are as they were"
        exc.message = f"upgrade of {new.tool.name} failed, so {done}: {exc.message}"
        raise
