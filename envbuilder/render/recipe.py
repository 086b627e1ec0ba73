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

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Literal

from envbuilder.errors import LockError
from envbuilder.lock import Lock, check_env_name, default_env_name
from envbuilder.model.types import is_index_url
from envbuilder.render import UV_VERSION
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
from envbuilder.resolve import Plan

__all__ = [
    "BNB_WINDOWS_MIN",
    "CUDA_KEYRING_URL",
    "NOT_ON_WINDOWS",
    "UV_MIN_VERSION",
    "UV_VERSION",
    "VC_REDIST_URL",
    "RecipeOs",
    "RecipeSpec",
    "bnb_version",
    "checklist",
    "fill",
    "plan_line",
    "recipe_spec",
    "smoke_python",
    "template",
    "validate",
    "windows_refusal",
]

RecipeOs = Literal["wsl2", "windows"]

# pylock.toml support in `uv pip sync` (and `uv python install` on Windows) need at least this uv.
UV_MIN_VERSION = "0.9.0"
# NVIDIA's keyring package for its WSL-Ubuntu CUDA repository (the toolkit without any driver).
CUDA_KEYRING_URL = (
    "https://developer.download.nvidia.com/compute/cuda/repos/wsl-ubuntu/x86_64/cuda-keyring_1.1-1_all.deb"
)
VC_REDIST_URL = "https://aka.ms/vs/17/release/vc_redist.x64.exe"
# First bitsandbytes release with official Windows wheels (compat-bnb-gptq.md A1).
BNB_WINDOWS_MIN = (0, 43, 0)
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
    indexes: tuple[str, ...] = ()
    lock_text: str | None = None
    compiles: bool = False
    env_dir: str | None = None
    uv_version: str = UV_VERSION

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
    uv_version: str = UV_VERSION,
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
            indexes=tuple(dict.fromkeys(p.index for p in source.packages if is_index_url(p.index))),
            lock_text=None,
            compiles=compiles,
            env_dir=env_dir,
            uv_version=uv_version,
        )
    else:
        spec = RecipeSpec(
            name=name or source.name,
            profile=source.profile,
            python=source.python,
            cuda=source.cuda,
            variant=source.variant,
            platform=source.platform,
            driver_floor=driver_floor if source.cuda else None,
            pins=source.pins,
            indexes=source.indexes,
            lock_text=lock_text,
            compiles=compiles,
            env_dir=env_dir,
            uv_version=uv_version,
        )
    return validate(spec)


def validate(spec: RecipeSpec) -> RecipeSpec:
    """Check every field that reaches a script; return the spec unchanged or raise (exit 2)."""
    check_env_name(spec.name)
    recipe_check(PROFILE, spec.profile, "profile", "use bnb, gptq, awq or cpu")
    recipe_check(PYTHON, spec.python, "Python version", "use 3.N, e.g. 3.12")
    recipe_check(VARIANT, spec.variant, "CUDA variant", "use cu126-style variants or cpu")
    recipe_check(PLATFORM, spec.platform, "platform", "use linux-x86_64 or windows-x86_64")
    recipe_check(UV_VERSION_PATTERN, spec.uv_version, "uv version", "use X.Y.Z")
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


def smoke_python(spec: RecipeSpec) -> str:
    """A short check run inside the new environment (static text: no user value reaches it)."""
    if spec.profile in {"gptq", "awq"}:
        module = "gptqmodel" if spec.profile == "gptq" else "llmcompressor"
        return "\n".join(
            [
                "import sys",
                "import torch",
                'print("torch", torch.__version__, "CUDA", torch.version.cuda)',
                "if not torch.cuda.is_available():",
                '    sys.exit("torch sees no CUDA device: check nvidia-smi and the NVIDIA driver")',
                f"import {module}",
                f'print("{module}", getattr({module}, "__version__", "?"), "imports")',
                'print("smoke: ok")',
            ]
        )
    device = "cuda" if spec.gpu else "cpu"
    lines = [
        "import sys",
        "import torch",
        'print("torch", torch.__version__, "CUDA", torch.version.cuda)',
    ]
    if spec.gpu:
        lines += [
            "if not torch.cuda.is_available():",
            '    sys.exit("torch sees no CUDA device: check nvidia-smi and the NVIDIA driver")',
            'print("GPU", torch.cuda.get_device_name(0), "sm_%d%d" % torch.cuda.get_device_capability(0))',
        ]
    lines += [
        "import bitsandbytes as bnb",
        "import bitsandbytes.functional as F",
        f'x = torch.randn(64, 64, device="{device}", dtype=torch.float16)',
        'for qt in ("nf4", "fp4"):',
        "    q, state = F.quantize_4bit(x, quant_type=qt)",
        "    err = (F.dequantize_4bit(q, state) - x).abs().mean().item()",
        "    if not err < 0.25:",
        '        sys.exit("bitsandbytes %s round trip: mean error %.3f is too large" % (qt, err))',
        '    print("bitsandbytes", bnb.__version__, qt, "round trip mean error %.4f" % err)',
        'print("smoke: ok")',
    ]
    return "\n".join(lines)


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
