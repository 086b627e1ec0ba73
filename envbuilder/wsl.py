"""WSL2 and native Windows recipes: pure renderers of a bash script, a PowerShell script and a checklist.

Nothing here touches the world: a ``RecipeSpec`` (built from a ``Plan`` or a ``Lock`` and validated) goes in,
text comes out. Every value that reaches a script is first checked against a strict pattern and then quoted
for its shell (``shlex.quote`` for bash, single quotes with every quote character doubled for PowerShell),
so a name, path, version or URL can never become code. Embedded locks go into quoted here-documents whose
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

import hashlib
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from envbuilder import __version__
from envbuilder.errors import LockError, TargetError
from envbuilder.lock import Lock, check_env_name, default_env_name, lock_file_name
from envbuilder.resolve import PYPI, Plan

RecipeOs = Literal["wsl2", "windows"]

# uv's standalone installer, pinned: the scripts install this version when no uv is on PATH.
UV_VERSION = "0.13.9"
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

_PYTHON = re.compile(r"^3\.\d{1,2}$")
_CUDA = re.compile(r"^\d{1,2}\.\d{1,2}$")
_DRIVER = re.compile(r"^\d{3}(?:\.\d{1,3}){0,2}$")
_PIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,99})==[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63}$")
# https, or plain http to this machine only (a mirror served on loopback); no quotes, spaces or '$'.
_URL = re.compile(
    r"^(?:https://[A-Za-z0-9.-]+|http://(?:127\.0\.0\.1|localhost))(?::\d{1,5})?(?:/[A-Za-z0-9._~%/+-]*)?$"
)
_PROFILE = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_VARIANT = re.compile(r"^[a-z0-9.]{1,16}$")
# PowerShell treats the typographic single quotes as quote characters too: each must be doubled.
_PS_QUOTES = ("'", "\u2018", "\u2019", "\u201a", "\u201b")


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


# --------------------------------------------------------------------------- validation and quoting


def _bad(what: str, value: str, hint: str) -> TargetError:
    msg = f"recipe: {what} {value!r} is not allowed in a script"
    return TargetError(msg, hint=hint)


def _check(pattern: re.Pattern[str], value: str, what: str, hint: str) -> str:
    if not pattern.match(value):
        raise _bad(what, value, hint)
    return value


def check_env_dir(path: str) -> str:
    """A user-given environment directory: any text is quoted later, but control characters are refused."""
    if not path or not path.isprintable():
        raise _bad("environment directory", path, "give a path without newlines or control characters")
    return path


def ps_quote(value: str) -> str:
    """A PowerShell single-quoted literal: nothing inside is expanded; every quote character is doubled."""
    out = value
    for q in _PS_QUOTES:
        out = out.replace(q, q + q)
    return "'" + out + "'"


def _heredoc_tag(text: str, prefix: str) -> str:
    """A here-document terminator that does not occur as a line of ``text`` (content-derived, deterministic)."""
    tag = f"{prefix}_{hashlib.sha256(text.encode()).hexdigest()[:12].upper()}"
    if any(line.strip() == tag for line in text.splitlines()):
        msg = f"recipe: the embedded text contains the line {tag!r}"
        raise LockError(msg, hint="regenerate the lock with `envbuilder lock`")
    return tag


def _check_ps_herestring(text: str) -> None:
    # A single-quoted here-string ends at a line that starts with '@; nothing else inside it is special.
    if any(line.startswith(("'@", "\u2019@", "\u2018@")) for line in text.splitlines()):
        msg = "recipe: the lock contains a line starting with '@, which would end a PowerShell here-string"
        raise LockError(msg, hint="regenerate the lock with `envbuilder lock`")


def _bnb_version(pins: Sequence[str]) -> tuple[int, ...] | None:
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
            indexes=tuple(dict.fromkeys(p.index for p in source.packages if p.index not in {PYPI, "wheelhouse"})),
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
    _check(_PROFILE, spec.profile, "profile", "use bnb, gptq, awq or cpu")
    _check(_PYTHON, spec.python, "Python version", "use 3.N, e.g. 3.12")
    _check(_VARIANT, spec.variant, "CUDA variant", "use cu126-style variants or cpu")
    _check(re.compile(r"^[a-z]+-[a-z0-9_]+$"), spec.platform, "platform", "use linux-x86_64 or windows-x86_64")
    _check(re.compile(r"^\d+\.\d+\.\d+$"), spec.uv_version, "uv version", "use X.Y.Z")
    if spec.cuda is not None:
        _check(_CUDA, spec.cuda, "CUDA version", "use X.Y, e.g. 12.8")
    if spec.driver_floor is not None:
        _check(_DRIVER, spec.driver_floor, "driver floor", "use a driver version such as 560.94")
    for pin in spec.pins:
        _check(_PIN, pin, "requirement", "pins must be name==version")
    for url in spec.indexes:
        _check(_URL, url, "index URL", "use an https URL (or http on 127.0.0.1) without spaces or quotes")
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


def _check_windows(spec: RecipeSpec) -> None:
    why = windows_refusal(spec.profile)
    if why:
        raise TargetError(
            why, hint=f"use WSL2 instead: `envbuilder recipe wsl2 --profile {spec.profile}` (same GPU, Linux wheels)"
        )
    if not spec.platform.startswith("windows-"):
        msg = f"recipe windows: the lock is for {spec.platform}, not Windows"
        raise LockError(msg, hint="lock for Windows with `envbuilder lock --os windows ...`, or use `recipe wsl2`")
    bnb = _bnb_version(spec.pins)
    if bnb is not None and bnb < BNB_WINDOWS_MIN:
        msg = f"recipe windows: bitsandbytes {'.'.join(map(str, bnb))} has no Windows build (its wheels carry Linux .so files)"
        raise TargetError(msg, hint="use bitsandbytes >= 0.43.0, the first release with official Windows wheels")


def _check_wsl2(spec: RecipeSpec) -> None:
    if not spec.platform.startswith("linux-"):
        msg = f"recipe wsl2: the lock is for {spec.platform}; WSL2 installs Linux wheels"
        raise LockError(msg, hint="lock for WSL2 with `envbuilder lock --os wsl2 ...`")


# --------------------------------------------------------------------------- shared pieces


def _smoke_python(spec: RecipeSpec) -> str:
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


def _fill(template: str, values: dict[str, str]) -> str:
    """Replace each ``@@KEY@@`` in one pass: inserted text (a lock, a path) is never scanned again."""
    return re.sub(r"@@([A-Z_]+)@@", lambda m: values[m.group(1)], template)


def _plan_line(spec: RecipeSpec) -> str:
    cuda = f"CUDA {spec.cuda} ({spec.variant})" if spec.cuda else "CPU"
    return f"{spec.profile} profile, Python {spec.python}, {cuda}"


# --------------------------------------------------------------------------- WSL2 (bash)

_WSL2_TEMPLATE = r"""#!/usr/bin/env bash
# Generated by envbuilder @@VERSION@@ (`envbuilder recipe wsl2`): prepares a WSL2 Ubuntu for the environment
# @@NAME_COMMENT@@: @@PLAN_COMMENT@@.
# Run it inside WSL2 as your normal user (not root): bash this-file.sh
# Safe to run twice: every step checks before it installs. It stops at the first failing step and says
# what to do. It never installs a Linux NVIDIA driver: WSL2 uses the Windows driver.
# uv comes from its standalone installer (pinned version, into ~/.local/bin) unless uv is already on PATH.
set -Eeuo pipefail

ENV_NAME=@@NAME@@
PROFILE=@@PROFILE@@
PYTHON_VERSION=@@PYTHON@@
CUDA_VERSION=@@CUDA@@
DRIVER_FLOOR=@@DRIVER_FLOOR@@
CUDA_TOOLKIT=@@TOOLKIT@@
CUDA_KEYRING_URL=@@KEYRING_URL@@
UV_VERSION=@@UV_VERSION@@
UV_MIN_VERSION=@@UV_MIN_VERSION@@
@@ENV_DIR_LINE@@
# System paths are read under ENVBUILDER_ROOT (empty on a real machine; tests point it at a fake layout).
ROOT="${ENVBUILDER_ROOT:-}"
WSL_LIB="$ROOT/usr/lib/wsl/lib"

STEP=0
STEPS=9
CURRENT="start"

begin() {
  STEP=$((STEP + 1))
  CURRENT=$1
  printf '==> [%d/%d] %s\n' "$STEP" "$STEPS" "$1"
}

note() {
  printf '    %s\n' "$1"
}

fail() {
  trap - ERR
  printf 'envbuilder-recipe: step %d/%d (%s) failed: %s\n' "$STEP" "$STEPS" "$CURRENT" "$1" >&2
  if [ $# -gt 1 ]; then
    printf 'TIP %s\n' "$2" >&2
  fi
  exit 1
}

trap 'fail "a command failed (exit $?): $BASH_COMMAND" "fix the error above, then run this script again (finished steps are skipped)"' ERR

# version_ge A B: true when version A >= version B.
version_ge() {
  [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n 1)" = "$2" ]
}

pkg_installed() {
  local status
  # shellcheck disable=SC2016  # ${db:Status-Status} is dpkg-query's field syntax, not a shell expansion
  status=$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)
  [ "$status" = "installed" ]
}

download() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    fail "neither curl nor wget is installed" "sudo apt-get install -y curl, then run this script again"
  fi
}

TMP_DIR=$(mktemp -d)
cleanup() {
  rm -rf "$TMP_DIR"
}
trap cleanup EXIT

begin "not running as root"
if [ "$(id -u)" -eq 0 ] && [ "${ENVBUILDER_ALLOW_ROOT:-}" != "1" ]; then
  fail "this script runs as root" "run it as your normal WSL user: it uses sudo only to install the CUDA toolkit (set ENVBUILDER_ALLOW_ROOT=1 to override)"
fi
note "user $(id -un)"

begin "inside WSL2"
proc_version=$(cat "$ROOT/proc/version" 2>/dev/null || true)
case "$proc_version" in
  *microsoft-standard* | *WSL2* | *wsl2*) ;;
  *Microsoft*)
    fail "this is WSL 1, which has no GPU access" "in PowerShell: wsl --set-version <distro> 2, then run this script again" ;;
  *)
    fail "this is not WSL2 (/proc/version: ${proc_version:-unreadable})" "on plain Linux use \`envbuilder create\`; this script is for Ubuntu under WSL2" ;;
esac
if [ ! -e "$ROOT/dev/dxg" ]; then
  fail "/dev/dxg is missing: WSL2 exposes no GPU to this distro" "in PowerShell: wsl --update, then wsl --shutdown; install the NVIDIA driver for Windows"
fi
note "WSL2 kernel: ${proc_version%% (*}"

begin "no Linux NVIDIA driver inside WSL2"
if [ -e "$ROOT/proc/driver/nvidia" ]; then
  fail "a Linux NVIDIA kernel driver is loaded inside WSL2 (/proc/driver/nvidia exists); it breaks the Windows driver's CUDA" "remove it: sudo apt-get remove --purge 'nvidia-driver-*' 'nvidia-dkms-*' cuda-drivers; then wsl --shutdown in PowerShell"
fi
bad_packages=""
if command -v dpkg-query >/dev/null 2>&1; then
  # shellcheck disable=SC2016  # dpkg-query field syntax
  bad_packages=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' 'nvidia-driver-*' 'nvidia-dkms-*' 'cuda-drivers*' 2>/dev/null | awk '$2 == "installed" { printf "%s ", $1 }' || true)
fi
if [ -n "$bad_packages" ]; then
  fail "Linux driver packages are installed inside WSL2: $bad_packages" "remove them: sudo apt-get remove --purge $bad_packages; then wsl --shutdown in PowerShell and run this script again"
fi
note "none found (the Windows driver reaches WSL2 through $WSL_LIB)"

begin "Windows NVIDIA driver >= ${DRIVER_FLOOR:-any}"
if [ -z "$DRIVER_FLOOR" ]; then
  note "the $PROFILE profile needs no GPU: skipped"
else
  smi="$WSL_LIB/nvidia-smi"
  if [ ! -x "$smi" ]; then
    smi=$(command -v nvidia-smi || true)
  fi
  if [ -z "$smi" ]; then
    fail "nvidia-smi is neither in $WSL_LIB nor on PATH" "install the NVIDIA driver for Windows (never inside WSL2), then wsl --shutdown in PowerShell and reopen WSL"
  fi
  smi_out=$("$smi" 2>&1 || true)
  driver=$(awk 'match($0, /Driver Version: *[0-9][0-9.]*/) { s = substr($0, RSTART, RLENGTH); sub(/Driver Version: */, "", s); print s; exit }' <<<"$smi_out")
  if [ -z "$driver" ]; then
    fail "nvidia-smi did not report a driver version: $(head -n 2 <<<"$smi_out")" "update the NVIDIA driver for Windows, then wsl --shutdown in PowerShell"
  fi
  if ! version_ge "$driver" "$DRIVER_FLOOR"; then
    fail "Windows driver $driver is older than $DRIVER_FLOOR, the minimum for CUDA $CUDA_VERSION" "update the NVIDIA driver on Windows (not inside WSL2), then wsl --shutdown in PowerShell and run this script again"
  fi
  note "driver $driver (Windows numbering) >= $DRIVER_FLOOR"
fi

begin "CUDA toolkit (only when something compiles)"
if [ -z "$CUDA_TOOLKIT" ]; then
  note "nothing in the $PROFILE profile compiles CUDA code: no toolkit (torch wheels bundle the CUDA runtime)"
else
  missing=""
  for pkg in "$CUDA_TOOLKIT" build-essential ninja-build; do
    if ! pkg_installed "$pkg"; then
      missing="$missing $pkg"
    fi
  done
  if [ -z "$missing" ]; then
    note "$CUDA_TOOLKIT, build-essential and ninja-build are installed"
  else
    command -v sudo >/dev/null 2>&1 || fail "sudo is not available" "install sudo, or install$missing yourself"
    if ! pkg_installed cuda-keyring; then
      download "$CUDA_KEYRING_URL" "$TMP_DIR/cuda-keyring.deb" || fail "could not download $CUDA_KEYRING_URL" "check the network, then run this script again"
      sudo dpkg -i "$TMP_DIR/cuda-keyring.deb"
    fi
    sudo apt-get update
    # The WSL-Ubuntu repository's toolkit package: never `cuda` or `cuda-drivers`, which pull a Linux driver.
    # shellcheck disable=SC2086  # $missing is a list of package names
    sudo apt-get install -y --no-install-recommends $missing
  fi
  CUDA_HOME="/usr/local/cuda-$CUDA_VERSION"
  export CUDA_HOME
  PATH="$CUDA_HOME/bin:$PATH"
  command -v nvcc >/dev/null 2>&1 || fail "nvcc is not in $CUDA_HOME/bin after installing $CUDA_TOOLKIT" "check \`dpkg -L $CUDA_TOOLKIT\`"
  note "nvcc: $(nvcc --version | tail -n 1)"
fi

begin "uv >= $UV_MIN_VERSION"
PATH="$HOME/.local/bin:$PATH"
export PATH
if ! command -v uv >/dev/null 2>&1; then
  download "https://astral.sh/uv/$UV_VERSION/install.sh" "$TMP_DIR/uv-install.sh" || fail "could not download uv's installer" "install uv another way (pipx install uv), then run this script again"
  UV_NO_MODIFY_PATH=1 sh "$TMP_DIR/uv-install.sh"
fi
uv_version=$(uv --version | awk '{ print $2 }')
if ! version_ge "$uv_version" "$UV_MIN_VERSION"; then
  fail "uv $uv_version is older than $UV_MIN_VERSION (needed for pylock.toml)" "uv self update (or pipx upgrade uv), then run this script again"
fi
note "uv $uv_version ($(command -v uv))"

begin "Python $PYTHON_VERSION"
if ! uv python find "$PYTHON_VERSION" >/dev/null 2>&1; then
  uv python install "$PYTHON_VERSION"
fi
note "$(uv python find "$PYTHON_VERSION")"

begin "environment $ENV_NAME in $ENV_DIR"
if [ -x "$ENV_DIR/bin/python" ]; then
  have=$("$ENV_DIR/bin/python" -c 'import sys; print(*sys.version_info[:2], sep=chr(46))')
  if [ "$have" != "$PYTHON_VERSION" ]; then
    fail "$ENV_DIR exists with Python $have, not $PYTHON_VERSION" "remove it (rm -rf -- \"$ENV_DIR\") or choose another directory, then run this script again"
  fi
  note "exists (Python $have): kept, packages are synced below"
elif [ -e "$ENV_DIR" ]; then
  fail "$ENV_DIR exists but is not a Python environment" "remove it or choose another directory, then run this script again"
else
  mkdir -p "$(dirname "$ENV_DIR")"
  uv venv --python "$PYTHON_VERSION" "$ENV_DIR"
fi
@@INSTALL@@

begin "smoke test"
# The Windows driver's libcuda.so lives in $WSL_LIB; make sure the loader finds it.
LD_LIBRARY_PATH="$WSL_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH
if ! "$ENV_DIR/bin/python" - <<'ENVBUILDER_SMOKE'
@@SMOKE@@
ENVBUILDER_SMOKE
then
  fail "the smoke test failed (output above)" "run \`envbuilder doctor --env $ENV_DIR\` for the cause and the fix"
fi
printf '\ndone: activate with  source %s/bin/activate\n' "$ENV_DIR"
"""

_WSL2_LOCK_INSTALL = r"""LOCK_FILE="$ENV_DIR/"@@LOCK_FILE@@
cat > "$LOCK_FILE.tmp" <<'@@TAG@@'
@@LOCK@@
@@TAG@@
mv -f "$LOCK_FILE.tmp" "$LOCK_FILE"
note "installing exactly the lock's packages (hashes checked): $LOCK_FILE"
uv pip sync --python "$ENV_DIR/bin/python" "$LOCK_FILE" || fail "uv pip sync failed (output above)" "check the network or your index settings (UV_INDEX_URL, UV_EXTRA_INDEX_URL), then run this script again"
"""

_WSL2_PINS_INSTALL = r"""# No lock was given: these are the plan's exact pins, installed without hashes. For a reproducible, hash-checked
# build make a lock (`envbuilder lock --os wsl2 ...`) and pass it with `envbuilder recipe wsl2 --lock FILE`.
PINS=(@@PINS@@)
INDEX_ARGS=(@@INDEX_ARGS@@)
note "installing the plan's exact pins: ${PINS[*]}"
uv pip install --python "$ENV_DIR/bin/python" "${INDEX_ARGS[@]}" "${PINS[@]}" || fail "uv pip install failed (output above)" "check the network or your index settings (UV_INDEX_URL, UV_EXTRA_INDEX_URL), then run this script again"
"""


def _bash_env_dir(spec: RecipeSpec) -> str:
    if spec.env_dir is not None:
        return "ENV_DIR=" + shlex.quote(spec.env_dir)
    # envbuilder's own layout, so `envbuilder list/smoke` find the environment later.
    name = shlex.quote(spec.name)
    return 'ENV_DIR="${ENVBUILDER_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/envbuilder}/envs/"' + name


def _bash_install(spec: RecipeSpec) -> str:
    if spec.lock_text is not None:
        lock = spec.lock_text.rstrip("\n")
        tag = _heredoc_tag(lock, "ENVBUILDER_LOCK")
        values = {"TAG": tag, "LOCK": lock, "LOCK_FILE": shlex.quote(lock_file_name(spec.name))}
        return _fill(_WSL2_LOCK_INSTALL, values).rstrip("\n")
    index_args: list[str] = []
    if spec.indexes:
        # The PyTorch index serves the CUDA variant builds; PyPI stays the default index for everything else.
        index_args = ["--index-strategy", "unsafe-best-match"]
        for url in spec.indexes:
            index_args += ["--extra-index-url", url]
    values = {
        "PINS": " ".join(shlex.quote(p) for p in spec.pins),
        "INDEX_ARGS": " ".join(shlex.quote(a) for a in index_args),
    }
    return _fill(_WSL2_PINS_INSTALL, values).rstrip("\n")


def render_wsl2_script(source: Plan | Lock | RecipeSpec, **options: object) -> str:
    """The bash script that prepares a WSL2 Ubuntu for this plan or lock (pure; see ``recipe_spec``)."""
    spec = source if isinstance(source, RecipeSpec) else recipe_spec(source, **options)  # type: ignore[arg-type]
    spec = validate(spec)
    _check_wsl2(spec)
    q = shlex.quote
    values = {
        "VERSION": __version__,
        "NAME_COMMENT": spec.name,
        "PLAN_COMMENT": _plan_line(spec),
        "NAME": q(spec.name),
        "PROFILE": q(spec.profile),
        "PYTHON": q(spec.python),
        "CUDA": q(spec.cuda or ""),
        "DRIVER_FLOOR": q(spec.driver_floor or ""),
        "TOOLKIT": q(spec.toolkit_package or ""),
        "KEYRING_URL": q(CUDA_KEYRING_URL),
        "UV_VERSION": q(spec.uv_version),
        "UV_MIN_VERSION": q(UV_MIN_VERSION),
        "ENV_DIR_LINE": _bash_env_dir(spec),
        "INSTALL": _bash_install(spec),
        "SMOKE": _smoke_python(spec),
    }
    return _fill(_WSL2_TEMPLATE, values)


# --------------------------------------------------------------------------- native Windows (PowerShell)

_WINDOWS_TEMPLATE = r"""# Generated by envbuilder @@VERSION@@ (`envbuilder recipe windows`): prepares native Windows for the
# environment @@NAME_COMMENT@@: @@PLAN_COMMENT@@.
# Run it in a normal (not elevated) PowerShell:  powershell -ExecutionPolicy Bypass -File this-file.ps1
# Safe to run twice: every step checks before it installs. It stops at the first failing step and says what
# to do. GPTQ/AWQ kernels do not work natively on Windows: use `envbuilder recipe wsl2` for those profiles.
# uv comes from its standalone installer (pinned version, into ~\.local\bin) unless uv is already on PATH;
# Python comes from uv (`uv python install`).
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$EnvName = @@NAME@@
$ProfileName = @@PROFILE@@
$PythonVersion = @@PYTHON@@
$CudaVersion = @@CUDA@@
$DriverFloor = @@DRIVER_FLOOR@@
$UvVersion = @@UV_VERSION@@
$UvMinVersion = @@UV_MIN_VERSION@@
$VcRedistUrl = @@VC_REDIST_URL@@
@@ENV_DIR_LINE@@

$script:Step = 0
$script:Steps = 9
$script:Current = 'start'

function Enter-Step([string]$Title) {
    $script:Step += 1
    $script:Current = $Title
    Write-Host ('==> [{0}/{1}] {2}' -f $script:Step, $script:Steps, $Title)
}

function Write-Note([string]$Text) {
    Write-Host ('    ' + $Text)
}

function Stop-Recipe([string]$Message, [string]$Tip = '') {
    [Console]::Error.WriteLine(('envbuilder-recipe: step {0}/{1} ({2}) failed: {3}' -f $script:Step, $script:Steps, $script:Current, $Message))
    if ($Tip) { [Console]::Error.WriteLine('TIP ' + $Tip) }
    exit 1
}

function Assert-Exit([string]$What) {
    if ($LASTEXITCODE -ne 0) {
        Stop-Recipe ($What + ' failed (exit ' + $LASTEXITCODE + ', output above)') 'fix the error above, then run this script again (finished steps are skipped)'
    }
}

function ConvertTo-Version([string]$Text) {
    $parts = @($Text.Split('.') | Where-Object { $_ -ne '' })
    while ($parts.Count -lt 2) { $parts += '0' }
    return [version]($parts -join '.')
}

# Windows PowerShell 5.1 turns a native command's redirected stderr into errors; probe with 'Continue'.
function Test-Native([scriptblock]$Block) {
    $saved = $ErrorActionPreference
    $ErrorActionPreference = 'Continue'
    try { & $Block *> $null } finally { $ErrorActionPreference = $saved }
    return ($LASTEXITCODE -eq 0)
}

function Write-Utf8NoBom([string]$Path, [string]$Text) {
    [System.IO.File]::WriteAllText($Path, $Text, (New-Object System.Text.UTF8Encoding $false))
}

trap {
    Stop-Recipe ('an error stopped the script: ' + $_) 'fix the error above, then run this script again (finished steps are skipped)'
}

Enter-Step 'not elevated'
$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if ($principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator) -and $env:ENVBUILDER_ALLOW_ADMIN -ne '1') {
    Stop-Recipe 'this PowerShell is elevated (Administrator)' 'run it from a normal PowerShell: nothing here needs admin rights (set ENVBUILDER_ALLOW_ADMIN=1 to override)'
}
Write-Note ('user ' + $env:USERNAME)

Enter-Step '64-bit Windows on x64'
if ($env:PROCESSOR_ARCHITECTURE -ne 'AMD64') {
    Stop-Recipe ('this machine is ' + $env:PROCESSOR_ARCHITECTURE + ', not AMD64') 'the plan is for windows-x86_64; make one for this machine'
}
Write-Note 'AMD64'

Enter-Step 'Microsoft Visual C++ 2015-2022 runtime (x64)'
$vc = Get-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\VisualStudio\14.0\VC\Runtimes\x64' -Name Installed -ErrorAction SilentlyContinue
if ($null -eq $vc -or $vc.Installed -ne 1) {
    Stop-Recipe 'the Visual C++ 2015-2022 x64 redistributable is not installed: torch and bitsandbytes DLLs fail to load without it (WinError 126)' ('install it (winget install Microsoft.VCRedist.2015+.x64, or ' + $VcRedistUrl + '), then run this script again')
}
Write-Note 'installed (HKLM:\SOFTWARE\Microsoft\VisualStudio\14.0\VC\Runtimes\x64)'

Enter-Step 'long paths enabled'
$fs = Get-ItemProperty -Path 'HKLM:\SYSTEM\CurrentControlSet\Control\FileSystem' -Name LongPathsEnabled -ErrorAction SilentlyContinue
if ($null -eq $fs -or $fs.LongPathsEnabled -ne 1) {
    Stop-Recipe 'LongPathsEnabled is off: deep package paths (torch, transformers) fail to install past 260 characters' 'in an elevated PowerShell run: New-ItemProperty -Path HKLM:\SYSTEM\CurrentControlSet\Control\FileSystem -Name LongPathsEnabled -Value 1 -PropertyType DWORD -Force; then run this script again'
}
Write-Note 'LongPathsEnabled = 1'

Enter-Step ('NVIDIA driver >= ' + $(if ($DriverFloor) { $DriverFloor } else { 'any' }))
if (-not $DriverFloor) {
    Write-Note ('the ' + $ProfileName + ' profile needs no GPU: skipped')
} else {
    $smi = Get-Command nvidia-smi -ErrorAction SilentlyContinue
    if ($null -eq $smi) {
        Stop-Recipe 'nvidia-smi was not found' 'install the NVIDIA driver for Windows (it puts nvidia-smi in System32), then open a new PowerShell'
    }
    $driver = (& $smi.Source --query-gpu=driver_version --format=csv,noheader | Select-Object -First 1)
    Assert-Exit 'nvidia-smi'
    $driver = "$driver".Trim()
    if ((ConvertTo-Version $driver) -lt (ConvertTo-Version $DriverFloor)) {
        Stop-Recipe ('driver ' + $driver + ' is older than ' + $DriverFloor + ', the minimum for CUDA ' + $CudaVersion) 'update the NVIDIA driver (nvidia.com/drivers or the NVIDIA app), then run this script again'
    }
    Write-Note ('driver ' + $driver + ' >= ' + $DriverFloor)
}

Enter-Step ('uv >= ' + $UvMinVersion)
$localBin = Join-Path $HOME '.local\bin'
$env:Path = $localBin + ';' + $env:Path
if ($null -eq (Get-Command uv -ErrorAction SilentlyContinue)) {
    $installer = Join-Path $env:TEMP ('uv-install-' + $UvVersion + '.ps1')
    Invoke-WebRequest -UseBasicParsing -Uri ('https://astral.sh/uv/' + $UvVersion + '/install.ps1') -OutFile $installer
    $env:UV_NO_MODIFY_PATH = '1'
    & powershell -NoProfile -ExecutionPolicy Bypass -File $installer
    Assert-Exit 'the uv installer'
}
$uvVersion = ((& uv --version) -split ' ')[1]
Assert-Exit 'uv --version'
if ((ConvertTo-Version $uvVersion) -lt (ConvertTo-Version $UvMinVersion)) {
    Stop-Recipe ('uv ' + $uvVersion + ' is older than ' + $UvMinVersion + ' (needed for pylock.toml)') 'run: uv self update; then run this script again'
}
Write-Note ('uv ' + $uvVersion)

Enter-Step ('Python ' + $PythonVersion + ' (through uv)')
if (-not (Test-Native { & uv python find $PythonVersion })) {
    & uv python install $PythonVersion
    Assert-Exit 'uv python install'
}
Write-Note (& uv python find $PythonVersion)

Enter-Step ('environment ' + $EnvDir)
$python = Join-Path $EnvDir 'Scripts\python.exe'
if (Test-Path -LiteralPath $python) {
    # No double quotes in the code: Windows PowerShell 5.1 passes embedded quotes to native programs unescaped.
    $have = (& $python -c 'import sys; print(*sys.version_info[:2], sep=chr(46))')
    Assert-Exit 'the environment''s python'
    if ($have -ne $PythonVersion) {
        Stop-Recipe ($EnvDir + ' exists with Python ' + $have + ', not ' + $PythonVersion) 'remove it or choose another directory, then run this script again'
    }
    Write-Note ('exists (Python ' + $have + '): kept, packages are synced below')
} elseif (Test-Path -LiteralPath $EnvDir) {
    Stop-Recipe ($EnvDir + ' exists but is not a Python environment') 'remove it or choose another directory, then run this script again'
} else {
    & uv venv --python $PythonVersion $EnvDir
    Assert-Exit 'uv venv'
}
@@INSTALL@@
$forks = @(& uv pip list --python $python --format freeze | Where-Object { $_ -match '^bitsandbytes-windows' })
if ($forks.Count -gt 0) {
    Stop-Recipe ('an unofficial Windows fork is installed: ' + ($forks -join ', ')) ('run: uv pip uninstall --python "' + $python + '" bitsandbytes-windows; the official bitsandbytes has Windows wheels since 0.43.0')
}

Enter-Step 'smoke test'
$smoke = @'
@@SMOKE@@
'@
$smoke | & $python -
if ($LASTEXITCODE -ne 0) {
    Stop-Recipe 'the smoke test failed (output above)' ('run envbuilder doctor --env "' + $EnvDir + '" for the cause and the fix')
}
Write-Host ''
Write-Host ('done: activate with  & "' + (Join-Path $EnvDir 'Scripts\Activate.ps1') + '"')
"""

_WINDOWS_LOCK_INSTALL = r"""$lockFile = Join-Path $EnvDir @@LOCK_FILE@@
$lockText = @'
@@LOCK@@
'@
Write-Utf8NoBom $lockFile ($lockText + "`n")
Write-Note ('installing exactly the lock''s packages (hashes checked): ' + $lockFile)
& uv pip sync --python $python $lockFile
Assert-Exit 'uv pip sync'"""

_WINDOWS_PINS_INSTALL = r"""# No lock was given: these are the plan's exact pins, installed without hashes. For a reproducible, hash-checked
# build make a lock (`envbuilder lock --os windows ...`) and pass it with `envbuilder recipe windows --lock FILE`.
$pins = @(@@PINS@@)
$indexArgs = @(@@INDEX_ARGS@@)
Write-Note ('installing the plan''s exact pins: ' + ($pins -join ' '))
& uv pip install --python $python @indexArgs @pins
Assert-Exit 'uv pip install'"""


def _ps_list(values: Sequence[str]) -> str:
    return ", ".join(ps_quote(v) for v in values)


def _ps_install(spec: RecipeSpec) -> str:
    if spec.lock_text is not None:
        lock = spec.lock_text.rstrip("\n")
        _check_ps_herestring(lock)
        return _fill(_WINDOWS_LOCK_INSTALL, {"LOCK": lock, "LOCK_FILE": ps_quote(lock_file_name(spec.name))})
    index_args: list[str] = []
    if spec.indexes:
        index_args = ["--index-strategy", "unsafe-best-match"]
        for url in spec.indexes:
            index_args += ["--extra-index-url", url]
    return _fill(_WINDOWS_PINS_INSTALL, {"PINS": _ps_list(spec.pins), "INDEX_ARGS": _ps_list(index_args)})


def _ps_env_dir(spec: RecipeSpec) -> str:
    if spec.env_dir is not None:
        return "$EnvDir = " + ps_quote(spec.env_dir)
    return "$EnvDir = Join-Path $env:LOCALAPPDATA (Join-Path 'envbuilder\\envs' " + ps_quote(spec.name) + ")"


def render_windows_script(source: Plan | Lock | RecipeSpec, **options: object) -> str:
    """The PowerShell script that prepares native Windows for this plan or lock (pure; see ``recipe_spec``).

    Refuses (``TargetError``, exit 2) the gptq and awq profiles, whose kernels have no native Windows path,
    and bitsandbytes older than 0.43.0, which had no Windows build.
    """
    spec = source if isinstance(source, RecipeSpec) else recipe_spec(source, **options)  # type: ignore[arg-type]
    spec = validate(spec)
    _check_windows(spec)
    floor = spec.driver_floor or ""
    values = {
        "VERSION": __version__,
        "NAME_COMMENT": spec.name,
        "PLAN_COMMENT": _plan_line(spec),
        "NAME": ps_quote(spec.name),
        "PROFILE": ps_quote(spec.profile),
        "PYTHON": ps_quote(spec.python),
        "CUDA": ps_quote(spec.cuda or ""),
        "DRIVER_FLOOR": ps_quote(floor),
        "UV_VERSION": ps_quote(spec.uv_version),
        "UV_MIN_VERSION": ps_quote(UV_MIN_VERSION),
        "VC_REDIST_URL": ps_quote(VC_REDIST_URL),
        "ENV_DIR_LINE": _ps_env_dir(spec),
        "INSTALL": _ps_install(spec),
        "SMOKE": _smoke_python(spec),
    }
    return _fill(_WINDOWS_TEMPLATE, values)


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
            "Never install a Linux NVIDIA driver, `cuda` or `cuda-drivers` inside WSL2: the script stops if it finds one",
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
