"""The recipe step: a WSL2 or Windows setup script and its checklist, from a plan or a lock.

Typed in (``RecipeRequest``, a ``Target`` or a lock path), typed out (``Recipe``: the spec, the script and the
checklist); ``write`` puts the script in place. The renderers (``render/``) stay pure; this module reads the
matrix's smoke table and uv release (images.toml) and the lock, and writes the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from envbuilder.model.matrix import Matrix
    from envbuilder.model.target import Target
    from envbuilder.render.recipe import RecipeOs, RecipeSpec

__all__ = ["Recipe", "RecipeRequest", "from_lock", "from_plan", "refuse_windows", "render", "write"]


@dataclass(frozen=True, slots=True)
class RecipeRequest:
    """Which recipe: the OS, the environment's name and directory there, and the matrix overlays (smoke table,
    uv release)."""

    os: RecipeOs
    name: str | None = None
    env_dir: str | None = None
    matrix_dirs: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Recipe:
    """The recipe made: its spec, the script's text and the checklist's lines."""

    spec: RecipeSpec
    script: str
    checklist: tuple[str, ...]


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


def _bnb_first(matrix: Matrix, platform: str) -> str | None:
    first = matrix.bnb_first_on(platform)
    return first.version if first else None


def refuse_windows(profile: str | None) -> None:
    """gptq and awq have no native Windows path: refused (exit 2) with the WSL2 recipe as the hint."""
    from envbuilder.model.errors import TargetError
    from envbuilder.render import recipe

    why = recipe.windows_refusal(profile or "")
    if why:
        raise TargetError(why, hint=f"use WSL2 instead: `envbuilder recipe wsl2 --profile {profile}`")


def from_plan(request: RecipeRequest, target: Target, matrix: Matrix) -> RecipeSpec:
    """The recipe spec of the resolver's plan for ``target`` (the matrix's view: no sources are probed)."""
    from envbuilder.model.errors import CheckFailed
    from envbuilder.model.images import load_pin_table
    from envbuilder.model.plan import NoPlan
    from envbuilder.model.smoke import load_smoke_table
    from envbuilder.render import recipe
    from envbuilder.resolve import resolve

    if request.os == "windows":
        refuse_windows(target.profile)
    plan = resolve(target, matrix)
    if isinstance(plan, NoPlan):
        msg = f"no plan for {target.describe()}: {plan.reasons[0]}"
        hint = (
            "; ".join(plan.nearest[:2])
            if plan.nearest
            else "run `envbuilder resolve` with the same options for details"
        )
        raise CheckFailed(msg, hint=hint)
    return recipe.recipe_spec(
        plan,
        driver_floor=_floor(matrix, plan.cuda, request.os),
        compiles=_compiles(matrix, {p.name for p in plan.packages}),
        name=request.name,
        env_dir=request.env_dir,
        uv=load_pin_table(request.matrix_dirs).uv_release,
        smoke=load_smoke_table(request.matrix_dirs),
        bnb_first=_bnb_first(matrix, plan.target.platform),
    )


def from_lock(request: RecipeRequest, lock_path: Path, matrix: Matrix) -> RecipeSpec:
    """The recipe spec of a lock (its text goes into the script as it is)."""
    from envbuilder.model.images import load_pin_table
    from envbuilder.model.lock import read_lock_text
    from envbuilder.model.smoke import load_smoke_table
    from envbuilder.render import recipe

    lock, text = read_lock_text(lock_path)
    if request.os == "windows":
        refuse_windows(lock.tool.profile)
    return recipe.recipe_spec(
        lock,
        driver_floor=_floor(matrix, lock.tool.cuda, request.os),
        compiles=_compiles(matrix, {p.name for p in lock.packages} | {p.split("==")[0] for p in lock.tool.pins}),
        lock_text=text,
        name=request.name,
        env_dir=request.env_dir,
        uv=load_pin_table(request.matrix_dirs).uv_release,
        smoke=load_smoke_table(request.matrix_dirs),
        bnb_first=_bnb_first(matrix, lock.tool.platform),
    )


def render(spec: RecipeSpec, os_name: RecipeOs, *, output: Path | None = None) -> Recipe:
    """The script and the checklist (which names the script's file when it is written to ``output``)."""
    from envbuilder.render import recipe
    from envbuilder.render.windows import render_windows_script
    from envbuilder.render.wsl2 import render_wsl2_script

    script = render_wsl2_script(spec) if os_name == "wsl2" else render_windows_script(spec)
    lines = recipe.checklist(spec, os_name, output.name if output is not None else None)
    return Recipe(spec, script, tuple(lines))


def write(made: Recipe, os_name: RecipeOs, path: Path) -> None:
    """Write the script atomically, with its own LF line ends also on Windows (bash in WSL2 refuses CRLF)."""
    from envbuilder.edge._fs import new_file_mode, write_text_atomic

    write_text_atomic(path, made.script, mode=new_file_mode(executable=os_name == "wsl2"), newline="")
