"""The native Windows recipe: a PowerShell script that prepares Windows for a plan or a lock (pure text).

The template is ``templates/windows.ps1``; every value is checked by ``render.values`` and written as a
single-quoted literal with every quote character doubled (``ps_quote``); an embedded lock goes into a
single-quoted here-string that no line of it can end.
"""

from __future__ import annotations

from collections.abc import Sequence

from envbuilder import __version__
from envbuilder.model.errors import LockError, TargetError
from envbuilder.model.lock import lock_file_name
from envbuilder.model.smoke import program_text
from envbuilder.render.recipe import (
    VC_REDIST_URL,
    RecipeSpec,
    bnb_version,
    fill,
    guard_args,
    guard_program,
    index_args,
    plan_line,
    smoke_args,
    smoke_expect,
    template,
    validate,
    windows_refusal,
)
from envbuilder.render.values import check_ps_herestring, ps_quote

__all__ = ["PS_DATA_ROOT", "render_windows_script"]


def _check_windows(spec: RecipeSpec) -> None:
    why = windows_refusal(spec.profile)
    if why:
        raise TargetError(
            why, hint=f"use WSL2 instead: `envbuilder recipe wsl2 --profile {spec.profile}` (same GPU, Linux wheels)"
        )
    if not spec.platform.startswith("windows-"):
        msg = f"recipe windows: the lock is for {spec.platform}, not Windows"
        raise LockError(msg, hint="lock for Windows with `envbuilder lock --os windows ...`, or use `recipe wsl2`")
    bnb = bnb_version(spec.pins)
    first = bnb_version((f"bitsandbytes=={spec.bnb_first}",)) if spec.bnb_first else None
    if bnb is not None and first is not None and bnb < first:
        have = ".".join(map(str, bnb))
        msg = f"recipe windows: bitsandbytes {have} has no Windows build (its wheels carry Linux .so files)"
        raise TargetError(
            msg, hint=f"use bitsandbytes >= {spec.bnb_first}, the first release with official Windows wheels"
        )


def _ps_list(values: Sequence[str]) -> str:
    return ", ".join(ps_quote(v) for v in values)


def _ps_install(spec: RecipeSpec) -> str:
    if spec.lock_text is not None:
        lock = spec.lock_text.rstrip("\n")
        check_ps_herestring(lock)
        return fill(
            template("windows-lock-install.ps1"), {"LOCK": lock, "LOCK_FILE": ps_quote(lock_file_name(spec.name))}
        )
    return fill(
        template("windows-pins-install.ps1"), {"PINS": _ps_list(spec.pins), "INDEX_ARGS": _ps_list(index_args(spec))}
    )


# envbuilder's home on Windows, as envbuilder itself decides it (edge/_roots.data_root), so that `envbuilder
# list/smoke` find the environment later. Only Windows sets LOCALAPPDATA.
PS_DATA_ROOT = """$EnvbuilderHome = if ($env:ENVBUILDER_HOME) { $env:ENVBUILDER_HOME } elseif ($env:XDG_DATA_HOME) {
    Join-Path $env:XDG_DATA_HOME 'envbuilder'
} elseif ($env:LOCALAPPDATA) {
    Join-Path $env:LOCALAPPDATA 'envbuilder'
} else {
    Join-Path $HOME '.local/share/envbuilder'
}"""


def _ps_env_dir(spec: RecipeSpec) -> str:
    if spec.env_dir is not None:
        return "$EnvDir = " + ps_quote(spec.env_dir)
    return PS_DATA_ROOT + "\n$EnvDir = Join-Path $EnvbuilderHome (Join-Path 'envs' " + ps_quote(spec.name) + ")"


def render_windows_script(spec: RecipeSpec) -> str:
    """The PowerShell script that prepares native Windows for a validated spec (pure; build it with ``recipe_spec``).

    Refuses (``TargetError``, exit 2) the gptq and awq profiles, whose kernels have no native Windows path,
    and bitsandbytes older than 0.43.0, which had no Windows build.
    """
    spec = validate(spec)
    _check_windows(spec)
    floor = spec.driver_floor or ""
    smoke, expect = program_text().rstrip("\n"), smoke_expect(spec).rstrip("\n")
    check_ps_herestring(smoke)
    check_ps_herestring(expect)
    guard = guard_program().rstrip("\n")
    check_ps_herestring(guard)
    values = {
        "VERSION": __version__,
        "NAME_COMMENT": spec.name,
        "PLAN_COMMENT": plan_line(spec),
        "NAME": ps_quote(spec.name),
        "PROFILE": ps_quote(spec.profile),
        "PYTHON": ps_quote(spec.python),
        "CUDA": ps_quote(spec.cuda or ""),
        "DRIVER_FLOOR": ps_quote(floor),
        "UV_VERSION": ps_quote(spec.uv_version),
        "UV_MIN_VERSION": ps_quote(spec.uv_min_version),
        "VC_REDIST_URL": ps_quote(VC_REDIST_URL),
        "ENV_DIR_LINE": _ps_env_dir(spec),
        "INSTALL": _ps_install(spec),
        "SMOKE": smoke,
        "EXPECT": expect,
        "SMOKE_ARGS": " ".join(ps_quote(a) for a in smoke_args(spec)),
        "GUARD": guard,
        "GUARD_ARGS": " ".join(ps_quote(a) for a in guard_args(spec)),
    }
    return fill(template("windows.ps1"), values)
