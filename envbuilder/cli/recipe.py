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
from envbuilder.model.errors import EXIT_OK, TargetError

if TYPE_CHECKING:
    from envbuilder.render.recipe import RecipeOs, RecipeSpec

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


def _spec(args: argparse.Namespace, os_name: RecipeOs) -> RecipeSpec:
    """The recipe job's spec, from --lock or from the plan for the target options."""
    from envbuilder.jobs import recipe as job

    matrix = load_matrix_for(args)
    overlays = getattr(args, "matrix_dir", None)
    request = job.RecipeRequest(
        os=os_name, name=args.name, env_dir=args.env_dir, matrix_dirs=tuple(overlays) if overlays else None
    )
    if args.lock:
        return job.from_lock(request, Path(args.lock), matrix)
    from envbuilder.render.recipe import NOT_ON_WINDOWS

    if os_name == "windows" and args.profile in NOT_ON_WINDOWS:
        job.refuse_windows(args.profile)  # before the target is built: its options may not suit Windows
    target = target_from_args(args, matrix, os_name=os_name)
    return job.from_plan(request, target, matrix)


def run(args: argparse.Namespace) -> int:
    from envbuilder.jobs import recipe as job

    os_name: RecipeOs = args.recipe_os
    if args.os and args.os != os_name:
        msg = f"recipe {os_name}: --os {args.os} contradicts the recipe"
        raise TargetError(msg, hint=f"drop --os (it is {os_name} here), or use `envbuilder recipe {args.os}`")
    if args.output:  # before any work: a directory, a user's own file, a read-only place are refused
        from envbuilder.edge._fs import check_can_write, refuse_overwrite

        check_can_write(Path(args.output), "-o")
        refuse_overwrite(Path(args.output), "-o", force=args.force)
    spec = _spec(args, os_name)
    made = job.render(spec, os_name, output=Path(args.output) if args.output else None)
    script, lines = made.script, list(made.checklist)
    if args.output:
        path = Path(args.output)
        job.write(made, os_name, path)
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
