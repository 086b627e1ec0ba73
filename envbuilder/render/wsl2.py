"""The WSL2 recipe: a bash script that prepares a WSL2 Ubuntu for a plan or a lock (pure text).

The template is ``templates/wsl2.sh``; every value is checked by ``render.values`` and quoted with
``shlex.quote``; an embedded lock goes into a quoted here-document whose terminator does not occur in it.
"""

from __future__ import annotations

import shlex

from envbuilder import __version__
from envbuilder.model.errors import LockError
from envbuilder.model.lock import lock_file_name
from envbuilder.model.smoke import program_text
from envbuilder.render.recipe import (
    CUDA_KEYRING_URL,
    RecipeSpec,
    fill,
    guard_args,
    guard_program,
    index_args,
    plan_line,
    smoke_args,
    smoke_expect,
    template,
    validate,
)
from envbuilder.render.values import heredoc_tag

__all__ = ["SH_DATA_ROOT", "render_wsl2_script"]


# envbuilder's home in POSIX shell (bash, zsh): edge/_roots.data_root off Windows, spelt once for the WSL2 recipe
# and the bash and zsh completions (tests/test_wsl.py runs it in bash against the rule).
SH_DATA_ROOT = "${ENVBUILDER_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/envbuilder}"


def _check_wsl2(spec: RecipeSpec) -> None:
    if not spec.platform.startswith("linux-"):
        msg = f"recipe wsl2: the lock is for {spec.platform}; WSL2 installs Linux wheels"
        raise LockError(msg, hint="lock for WSL2 with `envbuilder lock --os wsl2 ...`")


def _bash_env_dir(spec: RecipeSpec) -> str:
    if spec.env_dir is not None:
        return "ENV_DIR=" + shlex.quote(spec.env_dir)
    # envbuilder's own layout, so `envbuilder list/smoke` find the environment later.
    name = shlex.quote(spec.name)
    return f'ENV_DIR="{SH_DATA_ROOT}/envs/"' + name


def _bash_install(spec: RecipeSpec) -> str:
    if spec.lock_text is not None:
        lock = spec.lock_text.rstrip("\n")
        tag = heredoc_tag(lock, "ENVBUILDER_LOCK")
        values = {"TAG": tag, "LOCK": lock, "LOCK_FILE": shlex.quote(lock_file_name(spec.name))}
        return fill(template("wsl2-lock-install.sh"), values).rstrip("\n")
    values = {
        "PINS": " ".join(shlex.quote(p) for p in spec.pins),
        "INDEX_ARGS": " ".join(shlex.quote(a) for a in index_args(spec)),
    }
    return fill(template("wsl2-pins-install.sh"), values).rstrip("\n")


def render_wsl2_script(spec: RecipeSpec) -> str:
    """The bash script that prepares a WSL2 Ubuntu for a validated spec (pure; build it with ``recipe_spec``)."""
    spec = validate(spec)
    _check_wsl2(spec)
    q = shlex.quote
    smoke, expect = program_text().rstrip("\n"), smoke_expect(spec).rstrip("\n")
    guard = guard_program().rstrip("\n")
    values = {
        "VERSION": __version__,
        "NAME_COMMENT": spec.name,
        "PLAN_COMMENT": plan_line(spec),
        "NAME": q(spec.name),
        "PROFILE": q(spec.profile),
        "PYTHON": q(spec.python),
        "CUDA": q(spec.cuda or ""),
        "DRIVER_FLOOR": q(spec.driver_floor or ""),
        "TOOLKIT": q(spec.toolkit_package or ""),
        "KEYRING_URL": q(CUDA_KEYRING_URL),
        "UV_VERSION": q(spec.uv_version),
        "UV_MIN_VERSION": q(spec.uv_min_version),
        "ENV_DIR_LINE": _bash_env_dir(spec),
        "INSTALL": _bash_install(spec),
        "SMOKE": smoke,
        "SMOKE_TAG": heredoc_tag(smoke, "ENVBUILDER_SMOKE"),
        "EXPECT": expect,
        "EXPECT_TAG": heredoc_tag(expect, "ENVBUILDER_EXPECT"),
        "SMOKE_ARGS": " ".join(q(a) for a in smoke_args(spec)),
        "GUARD": guard,
        "GUARD_TAG": heredoc_tag(guard, "ENVBUILDER_GUARD"),
        "GUARD_ARGS": " ".join(q(a) for a in guard_args(spec)),
    }
    return fill(template("wsl2.sh"), values)
