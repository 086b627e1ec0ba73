"""`envbuilder create`: resolve, lock, build with uv, smoke-test, move into place."""

from __future__ import annotations

import argparse
import functools
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from envbuilder.cli._common import add_target_options, load_matrix_for, print_json, target_from_args
from envbuilder.cli._sources import add_source_options, settings_from_args

if TYPE_CHECKING:
    from envbuilder.edge.settings import Settings
    from envbuilder.edge.venv import SmokeOutcome
    from envbuilder.model.lock import Lock
    from envbuilder.resolve import Plan


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("create", help="build a known-good environment for a target, proven by a smoke test")
    add_target_options(p)
    add_source_options(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--name", metavar="N", help="environment name (default: <profile>-<cuda>-py<N.N>)")
    where.add_argument("--path", metavar="P", help="build the environment at this path instead")
    p.add_argument("--package", action="append", default=[], metavar="REQ", help="an extra package (repeatable)")
    p.add_argument(
        "--lock-out",
        metavar="FILE",
        help="where to write the lock, a PEP 751 name (default ./pylock.<profile>-<variant>-py<NN>-<platform>.toml, "
        "or ./pylock.<name>.toml with --name)",
    )
    p.add_argument("--dry-run", action="store_true", help="show the plan and the commands; touch nothing")
    p.add_argument("--no-smoke", action="store_true", help="skip the smoke test (the environment is then unproven)")
    p.add_argument(
        "--no-guard",
        action="store_true",
        help="leave uv and pip free to move the stack layers inside it (default: the lock's pins bind them)",
    )
    p.add_argument("--force", action="store_true", help="replace a directory or lock file envbuilder did not make")
    p.add_argument("--json", action="store_true", help="print the result as JSON (schema envbuilder.create/1)")
    p.set_defaults(handler=run)


class Steps:
    """Progress on stderr: numbered steps with elapsed time; quiet with --json."""

    def __init__(self, total: int, *, quiet: bool) -> None:
        self.total, self.n, self.quiet, self.t0 = total, 0, quiet, time.monotonic()

    def step(self, text: str) -> None:
        self.n += 1
        self.say(f"[{self.n}/{self.total}] {text}")

    def say(self, text: str) -> None:
        if not self.quiet:
            from envbuilder.cli import _console

            _console.progress(f"{text}  ({time.monotonic() - self.t0:.1f}s)")


def _notify(text: str) -> None:
    """What was repaired from a killed run: said even with -q (something changed on disk)."""
    from envbuilder.cli import _console

    _console.warn(text)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from envbuilder.cli.resolve import render
    from envbuilder.edge._fs import check_can_write
    from envbuilder.edge.detect import find_pythons
    from envbuilder.edge.sources import gather_sources
    from envbuilder.jobs import builder
    from envbuilder.model.errors import CheckFailed
    from envbuilder.model.lock import check_lock_path
    from envbuilder.resolve import NoPlan, index_variants, resolve

    if args.lock_out:  # a directory, or a name uv would refuse, is refused before any work
        check_can_write(Path(args.lock_out), "--lock-out")
        check_lock_path(Path(args.lock_out), "--lock-out")
    steps = Steps(5, quiet=args.json)
    settings = settings_from_args(args)
    matrix = load_matrix_for(args)
    target = target_from_args(args, matrix)
    if not args.python:
        # Only Pythons installed here can be used (uv cannot download them): plan for those.
        installed = {p.minor for p in find_pythons()}
        target = replace(target, pythons=tuple(p for p in target.pythons if p in installed) or target.pythons)
    steps.step("checking package sources")
    for note in settings.notes:
        steps.say(f"      {note}")
    sources = gather_sources(settings, index_variants(target, matrix))
    for note in sources.notes[len(settings.notes) :]:
        steps.say(f"      {note}")
    steps.step(f"resolving for {target.describe()}")
    plan = resolve(target, matrix, sources)
    if isinstance(plan, NoPlan):
        print(render(plan), file=sys.stderr)
        msg = "no known-good combination for this target"
        raise CheckFailed(msg, hint=plan.nearest[0] if plan.nearest else "see the reasons above")
    extra = builder.check_extra_packages(matrix.profile(plan.profile), args.package)
    name = _env_name(args, plan, steps)
    dest = Path(args.path) if args.path else settings.env_path(name)
    lock_path = _lock_path(args, plan, name)
    interpreter = builder.interpreter_for(plan.python)
    if args.dry_run:
        return _dry_run(args, plan, name, dest, lock_path, interpreter, extra)
    _preflight(args, dest, lock_path)
    steps.step(f"locking {name} -> {lock_path}")
    lock, text = builder.plan_lock(plan, name=name, settings=settings, out=lock_path, extra=extra, progress=steps.say)
    steps.step(f"building {dest}")
    smoke = None if args.no_smoke else functools.partial(builder.smoke_env, profile=plan.profile)
    # The user's lock is written last, with the swap (nothing failed before it): an interrupted or failed
    # build leaves the old one byte for byte.
    write_lock = functools.partial(builder.write_user_lock, lock_path, text, built=dest.absolute())
    guard, force = not args.no_guard, args.force
    outcome = _build(dest, interpreter, lock, text, settings, smoke, steps, force=force, then=write_lock, guard=guard)
    steps.step("done")
    return _report(args, plan, name, dest, lock_path, outcome)


def _lock_path(args: argparse.Namespace, plan: Plan, name: str) -> Path:
    """--lock-out (refused unless PEP 751 allows its name), else the lock named after --name/--path or the plan."""
    from envbuilder.model.lock import default_lock_file_name, lock_file_name

    if args.lock_out:
        return Path(args.lock_out)  # checked on entry
    # a --path whose last part cannot be a name (``it's my café env``) gets the plan's default lock name
    given = args.name or (name if args.path and name == Path(args.path).name else None)
    return Path.cwd() / (lock_file_name(given) if given else default_lock_file_name(plan))


def _env_name(args: argparse.Namespace, plan: Plan, steps: Steps) -> str:
    """--name, else the last part of --path when it is a valid environment name, else the plan's default name.

    A directory may be called anything ("my env", "café"); the environment's name goes into lock names, image
    tags and scripts, so it keeps to the safe alphabet and the path keeps its own spelling.
    """
    from envbuilder.model.errors import LockError
    from envbuilder.model.lock import check_env_name, default_env_name

    if args.name or not args.path:
        return check_env_name(args.name or default_env_name(plan))
    last = Path(args.path).name
    try:
        return check_env_name(last)
    except LockError:
        name = default_env_name(plan)
        steps.say(f"      the environment at {args.path} is named {name} (its lock and tags cannot use {last!r})")
        return name


def _preflight(args: argparse.Namespace, dest: Path, lock_path: Path) -> None:
    """Refuse, before anything is resolved or built, a destination or lock path that cannot take the result."""
    from envbuilder.edge._fs import check_can_write, refuse_overwrite

    check_can_write(dest, "--path" if args.path else "the environment", directory=True)
    check_can_write(lock_path, "--lock-out" if args.lock_out else "the lock")
    refuse_overwrite(lock_path, "--lock-out" if args.lock_out else "the lock", force=args.force)


def _build(
    dest: Path,
    interpreter: str,
    lock: Lock,
    text: str,
    settings: Settings,
    smoke: Callable[[Path], SmokeOutcome] | None,
    steps: Steps,
    *,
    force: bool,
    then: Callable[[SmokeOutcome | None], None],
    guard: bool = True,
) -> SmokeOutcome | None:
    from envbuilder.edge import venv

    return venv.build(
        dest,
        interpreter=interpreter,
        lock=lock,
        settings=settings,
        smoke=smoke,
        metadata={"interpreter": interpreter, "lock_file": str(lock.path.absolute())},
        progress=lambda s: steps.say(f"      {s}"),
        force=force,
        lock_text=text,
        notify=_notify,
        then=then,
        guard=guard,
    )


def _dry_run(args, plan, name, dest, lock_path, interpreter, extra) -> int:  # type: ignore[no-untyped-def]
    from envbuilder.cli.resolve import render
    from envbuilder.edge.uv import UV_PLATFORMS

    compile_cmd = [
        "uv",
        "pip",
        "compile",
        "requirements.in",
        "--format",
        "pylock.toml",
        "-o",
        str(lock_path),
        "--python-version",
        plan.python,
        "--python-platform",
        UV_PLATFORMS[plan.target.platform],
        "--generate-hashes",
    ]
    for idx in plan.extra_indexes:
        compile_cmd += ["--index", idx]
    commands = [
        shlex.join(compile_cmd),
        shlex.join(["uv", "venv", "--relocatable", "--python", interpreter, f"{dest.parent}/.{dest.name}.tmp-XXXX"]),
        shlex.join(
            ["uv", "pip", "sync", "--python", f"{dest.parent}/.{dest.name}.tmp-XXXX/bin/python", str(lock_path)]
        ),
        "envbuilder smoke --env <the temporary environment>",
        f"mv {shlex.quote(str(dest.parent))}/.{dest.name}.tmp-XXXX {shlex.quote(str(dest))}",
    ]
    if args.json:
        doc = plan.to_json() | {
            "schema": "envbuilder.create/1",
            "dry_run": True,
            "name": name,
            "path": str(dest),
            "lock": str(lock_path),
            "requirements": [p.requirement for p in plan.packages] + list(extra),
            "commands": commands,
        }
        print_json(doc)
        return 0
    print(render(plan))
    print(f"\nwould create {name} at {dest} (lock {lock_path}) with:")
    for c in commands:
        print(f"  $ {c}")
    return 0


def _report(args, plan, name, dest, lock_path, outcome) -> int:  # type: ignore[no-untyped-def]
    smoke = "not run (--no-smoke)" if outcome is None else ("passed" if outcome.ok else "FAILED")
    if args.json:
        print_json(
            plan.to_json()
            | {
                "schema": "envbuilder.create/1",
                "name": name,
                "path": str(dest),
                "lock": str(lock_path),
                "smoke": dict(outcome.record) if outcome else None,
            }
        )
        return 0
    pins = ", ".join(p.requirement for p in plan.packages[:2])
    print(f"created {name}: {pins} (Python {plan.python}, {'CUDA ' + plan.cuda if plan.cuda else 'CPU'})")
    print(f"  path:  {dest}")
    print(f"  lock:  {lock_path}")
    print(f"  smoke: {smoke}")
    if outcome is not None and outcome.summary:
        for line in outcome.summary.splitlines():
            print(f"         {line}")
    print(f"  use:   envbuilder run {name} -- python your_script.py    |    envbuilder shell {name}")
    return 0
