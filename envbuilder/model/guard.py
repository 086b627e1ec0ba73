"""The guard (issue 15): the lock's stack layers bind uv and pip inside an environment envbuilder built.

Pure: which packages are stack layers, the constraints file, the blocks the activation scripts and the venv's
pip.conf carry, and how to take them out again. The edge (``envbuilder.edge.guard``) writes these into a venv;
the Dockerfile and the recipes render the same text.

How it binds (documented behaviour of each installer):
- uv reads ``UV_CONSTRAINT`` (``uv pip install --constraints``), pip reads ``PIP_CONSTRAINT`` (``pip install
  --constraint``): the activation scripts and ``envbuilder run``/``shell`` set both to the file.
- pip also reads ``$VIRTUAL_ENV/pip.conf`` (its "site" configuration, ``sys.prefix/pip.conf``) whenever it runs
  with the environment's interpreter, activated or not; ``PIP_CONFIG_FILE=/dev/null`` switches that file off, so
  the variables carry the guard on their own too.
A constraint is an exact pin (``torch==2.13.0+cpu``): an install that would move a layer has no solution and
stops before anything changes; a package that leaves the layers alone installs as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "BEGIN",
    "CONSTRAINTS_FILE",
    "END",
    "PIP_CONF",
    "VARIABLES",
    "activation_blocks",
    "constraints_text",
    "guard_files",
    "guarded_pins",
    "is_layer",
    "pip_conf_text",
    "strip_blocks",
    "with_blocks",
]

CONSTRAINTS_FILE = "envbuilder-constraints.txt"
PIP_CONF = "pip.conf"
VARIABLES = ("UV_CONSTRAINT", "PIP_CONSTRAINT")
BEGIN = "# >>> envbuilder guard >>>"
END = "# <<< envbuilder guard <<<"

# The stack layers: every package a profile of matrices/profiles.toml names (its packages and the GPTQ/AWQ
# libraries it forbids; tests/test_guard.py checks that the shipped matrix names no other), what those libraries
# pin exactly (compressed-tensors), and torch's runtime: triton and the CUDA runtime wheels (nvidia-*, cuda-*)
# that torch's METADATA requires.
_LAYERS = frozenset(
    {
        "torch",
        "bitsandbytes",
        "transformers",
        "accelerate",
        "peft",
        "gptqmodel",
        "auto-gptq",
        "autoawq",
        "autoawq-kernels",
        "llmcompressor",
        "compressed-tensors",
        "optimum",
        "triton",
        "pytorch-triton",
        "triton-windows",
    }
)
_LAYER_PREFIXES = ("nvidia-", "cuda-")


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def is_layer(name: str) -> bool:
    """Is this package a stack layer (one whose change breaks the layers above it)?"""
    n = _canonical(name)
    return n in _LAYERS or n.startswith(_LAYER_PREFIXES)


def guarded_pins(packages: Mapping[str, str]) -> tuple[str, ...]:
    """``name==version`` for every stack layer of ``{name: version}`` (a lock's packages), sorted."""
    return tuple(
        f"{_canonical(n)}=={v}" for n, v in sorted(packages.items(), key=lambda kv: _canonical(kv[0])) if is_layer(n)
    )


def constraints_text(name: str, pins: Sequence[str], *, lock_file: str) -> str:
    """The constraints file: a header that says what it is and how to move a layer, then the pins."""
    header = [
        f"# envbuilder guard for the environment {name}: the stack layers of {lock_file}.",
        "# uv (UV_CONSTRAINT) and pip (PIP_CONSTRAINT, this environment's pip.conf) read this file inside the",
        "# environment, so an install that would move one of these packages fails before it changes anything.",
        f"# To move a layer: envbuilder upgrade {name} --torch SPEC | --bnb SPEC | --latest",
        "#   (re-resolves the stack, builds beside this environment, runs the smoke test, swaps, rewrites the lock).",
        f"# To go back to the lock: envbuilder sync.  To drop the guard: envbuilder unguard {name}",
    ]
    return "\n".join([*header, *pins]) + "\n"


def pip_conf_text(constraints: str) -> str:
    """The environment's own pip.conf (pip's site configuration): ``constraint`` names the absolute file."""
    return "\n".join([BEGIN, "[install]", f"constraint = {constraints}", END]) + "\n"


# --------------------------------------------------------------------------- activation scripts
# Each script gets two blocks: one at the top of its ``deactivate`` function (restore what the variables were
# before activation) and one at the end (remember them, then point both at the environment's file, found
# through VIRTUAL_ENV, which uv's relocatable scripts compute at activation time).

_SH_DEACTIVATE = [
    '    if [ -n "${_ENVBUILDER_GUARD:-}" ] ; then',
    *(
        line
        for var in VARIABLES
        for line in (
            f'        if [ -n "${{_ENVBUILDER_OLD_{var}+_}}" ] ; then',
            f'            {var}="$_ENVBUILDER_OLD_{var}" ; export {var} ; unset _ENVBUILDER_OLD_{var}',
            f"        else unset {var} ; fi",
        )
    ),
    "        unset _ENVBUILDER_GUARD",
    "    fi",
]
_SH_ACTIVATE = [
    *(f'if [ -n "${{{var}+_}}" ] ; then _ENVBUILDER_OLD_{var}="${var}" ; fi' for var in VARIABLES),
    "_ENVBUILDER_GUARD=1",
    f'UV_CONSTRAINT="$VIRTUAL_ENV/{CONSTRAINTS_FILE}"',
    f'PIP_CONSTRAINT="$VIRTUAL_ENV/{CONSTRAINTS_FILE}"',
    "export UV_CONSTRAINT PIP_CONSTRAINT",
]
_FISH_DEACTIVATE = [
    "    if set -q _ENVBUILDER_GUARD",
    *(
        line
        for var in VARIABLES
        for line in (
            f"        if set -q _ENVBUILDER_OLD_{var}",
            f"            set -gx {var} $_ENVBUILDER_OLD_{var}; set -e _ENVBUILDER_OLD_{var}",
            f"        else; set -e {var}; end",
        )
    ),
    "        set -e _ENVBUILDER_GUARD",
    "    end",
]
_FISH_ACTIVATE = [
    *(f"if set -q {var}; set -gx _ENVBUILDER_OLD_{var} ${var}; end" for var in VARIABLES),
    "set -gx _ENVBUILDER_GUARD 1",
    f'set -gx UV_CONSTRAINT "$VIRTUAL_ENV/{CONSTRAINTS_FILE}"',
    f'set -gx PIP_CONSTRAINT "$VIRTUAL_ENV/{CONSTRAINTS_FILE}"',
]
_PS_DEACTIVATE = [
    "    if (Test-Path variable:global:_ENVBUILDER_GUARD) {",
    *(
        line
        for var in VARIABLES
        for line in (
            f"        if (Test-Path variable:global:_ENVBUILDER_OLD_{var}) {{",
            f"            $env:{var} = $global:_ENVBUILDER_OLD_{var}",
            f'            Remove-Variable "_ENVBUILDER_OLD_{var}" -Scope global',
            f"        }} else {{ Remove-Item env:{var} -ErrorAction SilentlyContinue }}",
        )
    ),
    '        Remove-Variable "_ENVBUILDER_GUARD" -Scope global',
    "    }",
]
_PS_ACTIVATE = [
    *(
        f"if (Test-Path env:{var}) {{ New-Variable -Scope global -Force "
        f"-Name _ENVBUILDER_OLD_{var} -Value $env:{var} }}"
        for var in VARIABLES
    ),
    "New-Variable -Scope global -Force -Name _ENVBUILDER_GUARD -Value 1",
    f'$env:UV_CONSTRAINT = Join-Path $env:VIRTUAL_ENV "{CONSTRAINTS_FILE}"',
    f'$env:PIP_CONSTRAINT = Join-Path $env:VIRTUAL_ENV "{CONSTRAINTS_FILE}"',
]
_BAT_ACTIVATE = [
    f'@set "UV_CONSTRAINT=%VIRTUAL_ENV%\\{CONSTRAINTS_FILE}"',
    f'@set "PIP_CONSTRAINT=%VIRTUAL_ENV%\\{CONSTRAINTS_FILE}"',
]
_BAT_DEACTIVATE = ["@set UV_CONSTRAINT=", "@set PIP_CONSTRAINT="]

# script file name -> (the line that opens its deactivate function, or None; the deactivate block; the
# activation block). Windows' deactivate.bat is a script of its own: its block goes at its end.
_SCRIPTS: Mapping[str, tuple[re.Pattern[str] | None, list[str], list[str]]] = {
    "activate": (re.compile(r"^deactivate \(\) \{\s*$"), _SH_DEACTIVATE, _SH_ACTIVATE),
    "activate.fish": (re.compile(r"^function deactivate\b.*$"), _FISH_DEACTIVATE, _FISH_ACTIVATE),
    "activate.ps1": (re.compile(r"^function global:deactivate\b.*\{\s*$", re.IGNORECASE), _PS_DEACTIVATE, _PS_ACTIVATE),
    "activate.bat": (None, [], _BAT_ACTIVATE),
    "deactivate.bat": (None, [], _BAT_DEACTIVATE),
}


def activation_blocks() -> tuple[str, ...]:
    """The activation scripts the guard edits (by file name, as uv and virtualenv write them)."""
    return tuple(_SCRIPTS)


def _block(lines: Iterable[str], leader: str) -> list[str]:
    begin, end = (BEGIN, END) if leader == "#" else (BEGIN.replace("#", leader, 1), END.replace("#", leader, 1))
    return [begin, *lines, end]


def with_blocks(script: str, text: str) -> str | None:
    """``text`` (the activation script named ``script``) with the guard's blocks in it; None when the script
    is not one the guard knows or its deactivate function is not where uv's and virtualenv's scripts have it."""
    if script not in _SCRIPTS:
        return None
    opener, deactivate, activate = _SCRIPTS[script]
    leader = "@REM" if script.endswith(".bat") else "#"
    cr = "\r" if "\r\n" in text else ""  # uv writes the .bat scripts with CRLF: keep each script's line ends
    lines = strip_blocks(text).split("\n")
    if opener is not None:
        at = next((i for i, line in enumerate(lines) if opener.match(line)), None)
        if at is None:
            return None
        lines[at + 1 : at + 1] = [line + cr for line in _block(deactivate, leader)]
    tail = lines.pop() if lines and lines[-1] == "" else None
    lines += [line + cr for line in _block(activate, leader)]
    return "\n".join(lines) + ("\n" if tail is not None else "")


def strip_blocks(text: str) -> str:
    """``text`` without any guard block: exactly the script as it was before ``with_blocks``."""
    out: list[str] = []
    inside = False
    for line in text.split("\n"):
        bare = line.strip().removeprefix("@REM").lstrip("#").strip()
        if bare == BEGIN.lstrip("#").strip():
            inside = True
            continue
        if inside and bare == END.lstrip("#").strip():
            inside = False
            continue
        if not inside:
            out.append(line)
    return "\n".join(out)


def guard_files(
    *,
    final: str,
    scripts: Mapping[str, str],
    name: str,
    pins: Sequence[str],
    lock_file: str,
    bindir: str = "bin",
    sep: str = "/",
) -> dict[str, str] | None:
    """Every file the guard writes into an environment that lives at ``final``, by path relative to it, given
    the text of its activation scripts (by file name). None when ``final`` holds whitespace: UV_CONSTRAINT,
    PIP_CONSTRAINT and pip.conf's ``constraint`` are split on whitespace by their readers. A script whose
    deactivate function is not where uv and virtualenv write it is left out (and so left as it was)."""
    if re.search(r"\s", final):
        return None
    files = {
        CONSTRAINTS_FILE: constraints_text(name, pins, lock_file=lock_file),
        PIP_CONF: pip_conf_text(final.rstrip(sep) + sep + CONSTRAINTS_FILE),
    }
    for script, text in scripts.items():
        new = with_blocks(script, text)
        if new is not None:
            files[f"{bindir}/{script}"] = new
    return files
