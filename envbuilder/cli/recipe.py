"""`envbuilder recipe wsl2|windows`: a setup script for a WSL2 Ubuntu or a native Windows machine, and a checklist.

With ``-o FILE`` the script is written (atomically) and the checklist printed; without it the script goes to
stdout and the checklist to stderr, so ``envbuilder recipe wsl2 > setup.sh`` captures only the script.
``recipe windows`` refuses the gptq and awq profiles (exit 2): their kernels have no native Windows path, and a
refusal at generation time tells the user before anything is copied to Windows; the hint names the WSL2 recipe.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from envbuilder.cli._common import add_target_options, load_matrix_for, target_from_args
from envbuilder.model.errors import EXIT_OK, CheckFailed, TargetError

if TYPE_CHECKING:
    from envbuilder.model.matrix import Matrix
    from envbuilder.render.recipe import RecipeOs, RecipeSpec
    from envbuilder.resolve import Plan

__all__ = [
    "register",
    "run",
]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("recipe", help="write a setup script for WSL2 or native Windows")
    kinds = p.add_subparsers(dest="recipe_os", metavar="OS", required=True)
    for os_name, what in (
        ("wsl2", "a bash script for Ubuntu under WSL2"),
        ("windows", "a PowerShell script for native Windows"),
    ):
        k = kinds.add_parser(os_name, help=what)
        add_target_options(k)
        k.add_argument("--lock", metavar="FILE", help="build from this pylock.<env>.toml (embedded, hash-checked)")
        k.add_argument(
            "--name", metavar="N", help="environment name (default: the lock's, or <profile>-<cuda>-py<N.N>)"
        )
        k.add_argument("--env-dir", metavar="PATH", help="where the script creates the environment")
        k.add_argument("-o", "--output", metavar="FILE", help="write the script here (default: stdout)")
        k.add_argument("--force", action="store_true", help="with -o: replace a file envbuilder did not write")
        k.add_argument(
            "--json",
            action="store_true",
            help="print the result as JSON (schema envbuilder.recipe/1): the script (its path or text), the checklist",
        )
        k.set_defaults(handler=run, recipe_os=os_name)


def run(args: argparse.Namespace) -> int:
    from envbuilder.render import recipe
    from envbuilder.render.windows import render_windows_script
    from envbuilder.render.wsl2 import render_wsl2_script

    os_name: RecipeOs = args.recipe_os
    if args.os and args.os != os_name:
        msg = f"recipe {os_name}: --os {args.os} contradicts the recipe"
        raise TargetError(msg, hint=f"drop --os (it is {os_name} here), or use `envbuilder recipe {args.os}`")
    if args.output:  # before any work: a directory, a user's own file, a read-only place are refused
        from envbuilder.edge._fs import check_can_write, refuse_overwrite

        check_can_write(Path(args.output), "-o")
        refuse_overwrite(Path(args.output), "-o", force=args.force)
    matrix = load_matrix_for(args)
    spec = _spec_from_lock(args, matrix, os_name) if args.lock else _spec_from_plan(args, matrix, os_name)
    script = render_wsl2_script(spec) if os_name == "wsl2" else render_windows_script(spec)
    lines = recipe.checklist(spec, os_name, Path(args.output).name if args.output else None)
    if args.output:
        from envbuilder.edge._fs import new_file_mode, write_text_atomic

        path = Path(args.output)
        # the script's own LF line ends, also when written on Windows: bash in WSL2 refuses CRLF ($'\r')
        write_text_atomic(path, script, mode=new_file_mode(executable=os_name == "wsl2"), newline="")
        out = sys.stdout
        if not args.json:
            print(f"wrote {path}", file=out)
    elif not args.json:
        sys.stdout.write(script)
        out = sys.stderr
    if args.lock:
        from envbuilder.model.lock import legacy_name_note, lock_file_name

        note = legacy_name_note(Path(args.lock), f"the script writes it as {lock_file_name(spec.name)}")
        if note:
            from envbuilder.cli import _console

            _console.note(note.removeprefix("note: "))
    if args.json:
        from envbuilder.cli._common import print_json

        doc = {"schema": "envbuilder.recipe/1", "os": os_name, "name": spec.name, "path": args.output or None}
        print_json({**doc, "script": None if args.output else script, "checklist": lines})
        return EXIT_OK
    print("checklist:", file=out)
    for i, line in enumerate(lines, 1):
        print(f"  {i}. {line}", file=out)
    return EXIT_OK


def _floor(matrix: Matrix, cuda: str | None, os_name: str) -> str | None:
    """The lowest Windows driver that runs this CUDA build (minor-version compatibility, else native)."""
    if cuda is None:
        return None
    from envbuilder.rules.cuda import driver_floors

    native, mvc = driver_floors(matrix, cuda, os_name)
    return mvc or native


def _compiles(matrix: Matrix, names: set[str]) -> bool:
    """Something in the environment JIT-compiles CUDA kernels (gptqmodel): the WSL2 script adds the toolkit."""
    return any(q.kernels == "jit" and q.name in names for q in matrix.quant)


def _spec_from_plan(args: argparse.Namespace, matrix: Matrix, os_name: RecipeOs) -> RecipeSpec:
    from envbuilder.model.smoke import load_smoke_table
    from envbuilder.render import recipe
    from envbuilder.resolve import NoPlan, resolve

    if os_name == "windows" and args.profile in recipe.NOT_ON_WINDOWS:
        _refuse_windows(args.profile)
    forced = argparse.Namespace(**{**vars(args), "os": os_name})
    target = target_from_args(forced, matrix)
    if os_name == "windows":
        _refuse_windows(target.profile)
    result = resolve(target, matrix)
    if isinstance(result, NoPlan):
        msg = f"no plan for {target.describe()}: {result.reasons[0]}"
        hint = (
            "; ".join(result.nearest[:2])
            if result.nearest
            else "run `envbuilder resolve` with the same options for details"
        )
        raise CheckFailed(msg, hint=hint)
    plan: Plan = result
    return recipe.recipe_spec(
        plan,
        driver_floor=_floor(matrix, plan.cuda, os_name),
        compiles=_compiles(matrix, {p.name for p in plan.packages}),
        name=args.name,
        env_dir=args.env_dir,
        smoke=load_smoke_table(getattr(args, "matrix_dir", None)),
        bnb_first=_bnb_first(matrix, plan.target.platform),
    )


def _bnb_first(matrix: Matrix, platform: str) -> str | None:
    first = matrix.bnb_first_on(platform)
    return first.version if first else None


def _spec_from_lock(args: argparse.Namespace, matrix: Matrix, os_name: RecipeOs) -> RecipeSpec:
    from envbuilder.model.lock import read_lock_text
    from envbuilder.model.smoke import load_smoke_table
    from envbuilder.render import recipe

    lock, text = read_lock_text(Path(args.lock))
    if os_name == "windows":
        _refuse_windows(lock.tool.profile)
    return recipe.recipe_spec(
        lock,
        driver_floor=_floor(matrix, lock.tool.cuda, os_name),
        compiles=_compiles(matrix, {p.name for p in lock.packages} | {p.split("==")[0] for p in lock.tool.pins}),
        lock_text=text,
        name=args.name,
        env_dir=args.env_dir,
        smoke=load_smoke_table(getattr(args, "matrix_dir", None)),
        bnb_first=_bnb_first(matrix, lock.tool.platform),
    )


def _refuse_windows(profile: str | None) -> None:
    from envbuilder.render import recipe

    why = recipe.windows_refusal(profile or "")
    if why:
        raise TargetError(why, hint=f"use WSL2 instead: `envbuilder recipe wsl2 --profile {profile}`")
