"""WSL2 and native Windows recipes: the validated spec both scripts are rendered from, and the checklist.

Nothing here touches the world (``wsl2`` renders the bash script, ``windows`` the PowerShell one): a
``RecipeSpec`` (built from a ``Plan`` or a ``Lock`` and validated) goes in, text comes out. Every value that
reaches a script is first checked against a strict pattern (``render.values``) and then quoted for its shell
(``shlex.quote`` for bash, single quotes with every quote character doubled for PowerShell), so a name, path,
version or URL can never become code. Embedded locks go into quoted here-documents whose
terminator is checked not to occur in the text.

Facts these scripts encode (sources: research compat-cuda-torch.md A, compat-bnb-gptq.md A1/B10):
- WSL2 runs the *Windows* NVIDIA driver; the Linux side sees it through ``/usr/lib/wsl/lib`` (libcuda.so,
  nvidia-smi). A Linux driver (``nvidia-driver-*``, ``cuda-drivers``, the ``cuda`` meta package) installed
  inside WSL2 shadows that stub and breaks CUDA, so the script never installs one and stops if it finds one.
- torch wheels bundle their CUDA runtime: a CUDA toolkit is needed only when something compiles (gptqmodel
  JIT-builds its kernels), and then from NVIDIA's ``wsl-ubuntu`` repository as ``cuda-toolkit-X-Y`` only.
- bitsandbytes ships official Windows x86-64 wheels from 0.43.0; earlier ``py3-none-any`` wheels carried only
  Linux ``.so`` files, and the ``bitsandbytes-windows`` forks are not the official package.
- GPTQ/AWQ kernels (gptqmodel JIT, llmcompressor, autoawq) have no native Windows path here: WSL2 instead.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from envbuilder.model.errors import LockError
from envbuilder.model.images import UvRelease
from envbuilder.model.lock import Lock, check_env_name, default_env_name
from envbuilder.model.plan import Plan
from envbuilder.model.smoke import Expect, SmokeTable, expect_for
from envbuilder.model.types import is_index_url
from envbuilder.render.values import (
    CUDA,
    DRIVER,
    PIN,
    PLATFORM,
    PROFILE,
    PYTHON,
    RECIPE_URL,
    UV_VERSION_PATTERN,
    VARIANT,
    check_env_dir,
    recipe_check,
)
from envbuilder.rules.bnb import lib_name

__all__ = [
    "CUDA_KEYRING_URL",
    "NOT_ON_WINDOWS",
    "VC_REDIST_URL",
    "RecipeOs",
    "RecipeSpec",
    "bnb_version",
    "checklist",
    "fill",
    "guard_args",
    "guard_program",
    "index_args",
    "plan_line",
    "recipe_expect",
    "recipe_spec",
    "smoke_args",
    "smoke_expect",
    "template",
    "validate",
    "windows_refusal",
]

RecipeOs = Literal["wsl2", "windows"]

# NVIDIA's keyring package for its WSL-Ubuntu CUDA repository (the toolkit without any driver).
CUDA_KEYRING_URL = (
    "https://developer.download.nvidia.com/compute/cuda/repos/wsl-ubuntu/x86_64/cuda-keyring_1.1-1_all.deb"
)
VC_REDIST_URL = "https://aka.ms/vs/17/release/vc_redist.x64.exe"
# Profiles whose kernels have no native Windows path (gptqmodel JIT, llmcompressor/autoawq): WSL2 instead.
NOT_ON_WINDOWS = frozenset({"gptq", "awq"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipeSpec:
    """Everything a recipe script needs, validated: build with ``recipe_spec`` rather than by hand."""

    name: str
    profile: str
    python: str
    cuda: str | None
    variant: str
    platform: str
    driver_floor: str | None
    pins: tuple[str, ...]
    # The first bitsandbytes release with a native build for ``platform`` (bitsandbytes.toml [[first]]; None:
    # the matrix records none): an older pin is refused, its wheel carries another system's libraries.
    bnb_first: str | None
    indexes: tuple[str, ...] = ()
    lock_text: str | None = None
    compiles: bool = False
    env_dir: str | None = None
    # The uv release the script installs when uv is missing, and the oldest it accepts on PATH (images.toml
    # [uv], read by the caller).
    uv_version: str
    uv_min_version: str
    # What the smoke program checks after the install (versions, torch's CUDA, imports, bounds).
    expect: Expect | None = None

    @property
    def toolkit_package(self) -> str | None:
        """``cuda-toolkit-12-8`` for CUDA 12.8 when something compiles, else None."""
        if not self.compiles or self.cuda is None:
            return None
        return "cuda-toolkit-" + self.cuda.replace(".", "-")

    @property
    def gpu(self) -> bool:
        return self.cuda is not None


def bnb_version(pins: Sequence[str]) -> tuple[int, ...] | None:
    for pin in pins:
        name, _, version = pin.partition("==")
        if name.lower() == "bitsandbytes":
            return tuple(int(p) for p in re.findall(r"\d+", version.split("+", 1)[0])[:3])
    return None


def recipe_spec(
    source: Plan | Lock,
    *,
    driver_floor: str | None,
    compiles: bool = False,
    lock_text: str | None = None,
    name: str | None = None,
    env_dir: str | None = None,
    uv: UvRelease,
    smoke: SmokeTable,
    bnb_first: str | None,
) -> RecipeSpec:
    """A validated ``RecipeSpec`` from a plan or a lock (raises ``TargetError``/``LockError``, exit 2)."""
    if isinstance(source, Plan):
        spec = RecipeSpec(
            name=name or default_env_name(source),
            profile=source.profile,
            python=source.python,
            cuda=source.cuda,
            variant=source.variant,
            platform=source.target.platform,
            driver_floor=driver_floor if source.cuda else None,
            pins=tuple(p.requirement for p in source.packages),
            bnb_first=bnb_first,
            indexes=tuple(dict.fromkeys(p.index for p in source.packages if is_index_url(p.index))),
            lock_text=None,
            compiles=compiles,
            env_dir=env_dir,
            uv_version=uv.version,
            uv_min_version=uv.min_version,
        )
    else:
        spec = RecipeSpec(
            name=name or source.tool.name,
            profile=source.tool.profile,
            python=source.tool.python,
            cuda=source.tool.cuda,
            variant=source.tool.variant,
            platform=source.tool.platform,
            driver_floor=driver_floor if source.tool.cuda else None,
            pins=source.tool.pins,
            bnb_first=bnb_first,
            indexes=source.tool.indexes,
            lock_text=lock_text,
            compiles=compiles,
            env_dir=env_dir,
            uv_version=uv.version,
            uv_min_version=uv.min_version,
        )
    # A lock names every package (those under a marker may not apply here); a plan only its pins.
    packages = {p.name: p.version for p in source.packages if not p.marker} if isinstance(source, Lock) else None
    return validate(dataclasses.replace(spec, expect=recipe_expect(spec, smoke, packages)))


def recipe_expect(spec: RecipeSpec, table: SmokeTable, packages: Mapping[str, str] | None = None) -> Expect:
    """Pure: what the smoke program checks after the recipe's install: ``packages`` (default: the pins) at their
    versions, torch's CUDA, bitsandbytes' library for it, the pins' modules."""
    return expect_for(
        dict(packages) if packages is not None else dict(p.split("==", 1) for p in spec.pins),
        spec.pins,
        cuda=spec.cuda,
        bnb_library=lib_name(spec.cuda, spec.platform),
        exact=False,
        table=table,
    )


def validate(spec: RecipeSpec) -> RecipeSpec:
    """Check every field that reaches a script; return the spec unchanged or raise (exit 2)."""
    check_env_name(spec.name)
    recipe_check(PROFILE, spec.profile, "profile", "use bnb, gptq, awq or cpu")
    recipe_check(PYTHON, spec.python, "Python version", "use 3.N, e.g. 3.12")
    recipe_check(VARIANT, spec.variant, "CUDA variant", "use cu126-style variants or cpu")
    recipe_check(PLATFORM, spec.platform, "platform", "use linux-x86_64 or windows-x86_64")
    recipe_check(UV_VERSION_PATTERN, spec.uv_version, "uv version", "use X.Y.Z")
    recipe_check(UV_VERSION_PATTERN, spec.uv_min_version, "uv min-version", "use X.Y.Z")
    if spec.cuda is not None:
        recipe_check(CUDA, spec.cuda, "CUDA version", "use X.Y, e.g. 12.8")
    if spec.driver_floor is not None:
        recipe_check(DRIVER, spec.driver_floor, "driver floor", "use a driver version such as 560.94")
    for pin in spec.pins:
        recipe_check(PIN, pin, "requirement", "pins must be name==version")
    for url in spec.indexes:
        recipe_check(RECIPE_URL, url, "index URL", "use an https URL (or http on 127.0.0.1) without spaces or quotes")
    if spec.env_dir is not None:
        check_env_dir(spec.env_dir)
    if spec.lock_text is not None and "\x00" in spec.lock_text:
        msg = "recipe: the lock contains a NUL byte"
        raise LockError(msg, hint="regenerate the lock with `envbuilder lock`")
    return spec


def windows_refusal(profile: str) -> str | None:
    """Why a profile cannot work on native Windows (None when it can)."""
    if profile == "gptq":
        return (
            "the gptq profile cannot work on native Windows: gptqmodel JIT-compiles CUDA kernels with nvcc and "
            "ninja and ships no Windows wheels (on Windows it falls back to its slow Torch kernel only)"
        )
    if profile == "awq":
        return (
            "the awq profile cannot work on native Windows: llmcompressor and autoawq publish Linux builds only "
            "and their kernels (Triton, autoawq-kernels) have no Windows path"
        )
    return None


# --------------------------------------------------------------------------- shared pieces


def smoke_args(spec: RecipeSpec) -> list[str]:
    """The smoke program's arguments after the install (a recipe for a GPU plan fails without a GPU)."""
    return ["--quick", "--text", "--profile", spec.profile, *(["--require-gpu"] if spec.gpu else [])]


def smoke_expect(spec: RecipeSpec) -> str:
    """The expectation file's text; a spec built by hand without one gets none (refused: exit 2)."""
    if spec.expect is None:
        msg = f"recipe: the spec of {spec.name} carries no smoke expectation"
        raise LockError(msg, hint="build the spec with recipe_spec(..., smoke=load_smoke_table())")
    return spec.expect.to_json()


def index_args(spec: RecipeSpec) -> list[str]:
    """uv's index options for a pins-only install: the PyTorch index serves the CUDA variant builds, PyPI stays
    the default index for everything else."""
    args: list[str] = []
    if spec.indexes:
        args = ["--index-strategy", "unsafe-best-match"]
        for url in spec.indexes:
            args += ["--extra-index-url", url]
    return args


# The recipes run model/guard.py itself (stdlib only) inside the new environment with this main: the guard of a
# recipe is the guard of `envbuilder create`, the same text from the same functions.
_GUARD_MAIN = """

if __name__ == "__main__":  # recipes: python guard.py ENV_DIR NAME LOCK_FILE PIN...
    import os
    import sys

    env, name, lock_file, *pins = sys.argv[1:]
    bindir = "Scripts" if os.name == "nt" else "bin"
    scripts = {}
    for script in activation_blocks():
        path = os.path.join(env, bindir, script)
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                scripts[script] = fh.read().decode("utf-8")
    final = os.path.abspath(env)
    files = guard_files(
        final=final, scripts=scripts, name=name, pins=pins, lock_file=lock_file, bindir=bindir, sep=os.sep
    )
    if files is None:
        print(f"no guard: {final} holds whitespace, which UV_CONSTRAINT and PIP_CONSTRAINT cannot carry")
        sys.exit(0)
    for rel, text in files.items():
        with open(os.path.join(env, rel), "wb") as fh:
            fh.write(text.encode("utf-8"))
    print(f"guard: {len(pins)} stack layers bind uv and pip inside {final} ({CONSTRAINTS_FILE})")
"""


def guard_program() -> str:
    """The program a recipe runs in the environment it built to put the guard in (``model.guard`` + a main)."""
    source = resources.files("envbuilder.model").joinpath("guard.py").read_text(encoding="utf-8")
    return source.rstrip("\n") + "\n" + _GUARD_MAIN


def guard_args(spec: RecipeSpec) -> list[str]:
    """The guard program's arguments after ENV_DIR: the name, the lock's file name, the stack layers' pins."""
    from envbuilder.model.guard import guarded_pins
    from envbuilder.model.lock import lock_file_name

    pins = guarded_pins(dict(p.split("==", 1) for p in spec.pins))
    return [spec.name, lock_file_name(spec.name), *pins]


def fill(template: str, values: dict[str, str]) -> str:
    """Replace each ``@@KEY@@`` in one pass: inserted text (a lock, a path) is never scanned again."""
    return re.sub(r"@@([A-Z_]+)@@", lambda m: values[m.group(1)], template)


def plan_line(spec: RecipeSpec) -> str:
    cuda = f"CUDA {spec.cuda} ({spec.variant})" if spec.cuda else "CPU"
    return f"{spec.profile} profile, Python {spec.python}, {cuda}"


def template(name: str) -> str:
    """A script template shipped in ``render/templates`` (package data), exactly as written."""
    return resources.files("envbuilder.render").joinpath("templates").joinpath(name).read_text(encoding="utf-8")


# --------------------------------------------------------------------------- checklist


def checklist(spec: RecipeSpec, os: RecipeOs, script: str | None = None) -> list[str]:
    """What the user does around the script, in order: short lines for the terminal."""
    run = script or ("the script")
    source = (
        "the embedded lock (exact files, hashes checked)"
        if spec.lock_text is not None
        else "the plan's exact pins (no hashes: pass --lock FILE for a hash-checked build)"
    )
    floor = spec.driver_floor
    if os == "wsl2":
        lines = [
            f"On Windows: NVIDIA driver {'>= ' + floor if floor else '(any; this profile needs no GPU)'} for Windows; "
            "nothing NVIDIA is installed inside WSL2",
            "In PowerShell: wsl --update, then wsl --shutdown (WSL2 kernel with /dev/dxg)",
            f"Inside WSL2 (Ubuntu), as your normal user: bash {run}",
            "Never install a Linux NVIDIA driver, `cuda` or `cuda-drivers` inside WSL2: "
            "the script stops if it finds one",
            f"uv {spec.uv_version} is installed with its standalone installer into ~/.local/bin unless uv is on PATH",
        ]
        if spec.toolkit_package:
            lines.append(
                f"{spec.toolkit_package} (+ build-essential, ninja-build) comes from NVIDIA's wsl-ubuntu repository "
                f"with sudo: the {spec.profile} profile compiles CUDA kernels"
            )
        else:
            lines.append("No CUDA toolkit is installed: torch wheels bundle the CUDA runtime")
    else:
        lines = [
            f"NVIDIA driver {'>= ' + floor if floor else '(any; this profile needs no GPU)'}",
            f"Visual C++ 2015-2022 x64 redistributable ({VC_REDIST_URL})",
            "Long paths on (LongPathsEnabled = 1; one elevated command, printed by the script if needed)",
            f"In a normal PowerShell: powershell -ExecutionPolicy Bypass -File {run}",
            f"uv {spec.uv_version} from its standalone installer unless uv is on PATH; Python {spec.python} through uv",
            "gptq and awq profiles do not work natively on Windows: use `envbuilder recipe wsl2` for them",
        ]
    lines.append(f"Packages: {source}; then a smoke test inside the environment")
    return lines
