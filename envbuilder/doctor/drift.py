"""Drift (issue 15): what is installed in an environment against the lock it was built and proven from.

Pure: ``{name: version}`` installed and ``{name: version}`` locked in, findings out. A changed stack layer
(``model.guard.is_layer``: torch, its CUDA runtime wheels, bitsandbytes, transformers, accelerate, peft, the
GPTQ/AWQ libraries, triton) is a FAIL: the smoke test proved a different set, and the layers above it may load
the wrong native code. Any other change is a WARN. The fix is ``envbuilder sync`` (back to the lock) or
``envbuilder upgrade`` (move the stack as a whole, proven again).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from envbuilder.doctor import Finding, finding
from envbuilder.model.guard import is_layer
from envbuilder.model.matrix import Matrix
from envbuilder.rules.bnb import lib_name, library_cuda

__all__ = ["Change", "changes", "drift_findings", "torch_cuda"]

ChangeKind = Literal["changed", "removed", "added"]


@dataclass(frozen=True, slots=True)
class Change:
    name: str
    kind: ChangeKind
    locked: str | None
    installed: str | None

    @property
    def layer(self) -> bool:
        return is_layer(self.name)

    def describe(self) -> str:
        if self.kind == "changed":
            return f"{self.name} {self.installed} replaced the locked {self.locked}"
        if self.kind == "removed":
            return f"{self.name} (locked {self.locked}) is no longer installed"
        return f"{self.name} {self.installed} was added (not in the lock)"

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "locked": self.locked,
            "installed": self.installed,
            "layer": self.layer,
        }


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def changes(installed: Mapping[str, str], locked: Mapping[str, str]) -> tuple[Change, ...]:
    """Every difference, stack layers first, each group by name. Packages added beside the lock are reported
    only when they are stack layers (adding an unrelated package is what the guard allows)."""
    have = {_canonical(k): v for k, v in installed.items()}
    want = {_canonical(k): v for k, v in locked.items()}
    found = []
    for name in sorted(have.keys() | want.keys()):
        a, b = want.get(name), have.get(name)
        if a == b:
            continue
        if a is None:
            if is_layer(name):
                found.append(Change(name, "added", None, b))
        elif b is None:
            found.append(Change(name, "removed", a, None))
        else:
            found.append(Change(name, "changed", a, b))
    return tuple(sorted(found, key=lambda c: (not c.layer, c.name)))


def torch_cuda(matrix: Matrix, version: str, platform: str) -> tuple[bool, str | None]:
    """(known, CUDA version) of a torch build: its local label (``+cu130``, ``+cpu``), else the variant PyPI
    serves for that release on ``platform`` (the matrix's ``pypi`` table). Unknown: (False, None)."""
    base, _, label = version.partition("+")
    variant = label or None
    if variant is None:
        release = matrix.torch_release(base)
        variant = release.pypi.get(platform) if release else None
    if variant is None:
        return False, None
    if variant == "cpu":
        return True, None
    build = next((b for b in matrix.torch_builds if b.variant == variant), None)
    if build is not None:
        return True, build.cuda
    m = re.fullmatch(r"cu(\d+)(\d)", variant)
    return (True, f"{m.group(1)}.{m.group(2)}") if m else (False, None)


def _consequence(matrix: Matrix, installed: Mapping[str, str], platform: str) -> str:
    """What the installed torch means for bitsandbytes: the library its loader now picks (one rule: rules.bnb)."""
    have = {_canonical(k): v for k, v in installed.items()}
    torch, bnb = have.get("torch"), have.get("bitsandbytes")
    if torch is None or bnb is None:
        return ""
    known, cuda = torch_cuda(matrix, torch, platform)
    release = matrix.bnb_release(bnb)
    if not known or release is None:
        return ""
    if cuda is None:
        return f": bitsandbytes will load {lib_name(None, platform)}"
    lib = library_cuda(release, cuda)
    if lib is None:
        return f": bitsandbytes {bnb} has no library for CUDA {cuda} (the first 4-bit/8-bit call fails)"
    return f": bitsandbytes will load {lib_name(lib, platform)}"


def drift_findings(
    matrix: Matrix,
    installed: Mapping[str, str],
    locked: Mapping[str, str],
    *,
    env: str,
    sync: Sequence[str],
    platform: str = "linux-x86_64",
) -> tuple[Finding, ...]:
    """The findings for an environment named ``env`` (``NAME`` or ``--path DIR``); ``sync`` is the argv that
    rebuilds it from its lock."""
    sync_text = shlex.join(sync)
    found = changes(installed, locked)
    layers = [c for c in found if c.layer]
    others = [c for c in found if not c.layer]
    upgrade = f"envbuilder upgrade {env} --torch SPEC | --bnb SPEC | --latest"
    out: list[Finding] = []
    if layers:
        torch_moved = any(c.name == "torch" for c in layers)
        lead = layers[0].describe() + (_consequence(matrix, installed, platform) if torch_moved else "")
        rest = "; ".join(c.describe() for c in layers[1:])
        out.append(
            finding(
                "stack-drift",
                "FAIL",
                lead + (f"; {rest}" if rest else ""),
                f"{len(layers)} stack layer{'s' if len(layers) > 1 else ''} moved since the smoke test proved this "
                "environment (an install inside it, without the guard or around it): the layers above may load "
                "the wrong native code or refuse the new versions, and the error shows only when a model loads",
                f"back to the lock: `{sync_text}`; or move the stack as a whole, proven again: `{upgrade}`",
                (tuple(sync),),
            )
        )
    if others:
        shown = "; ".join(c.describe() for c in others[:5]) + (
            f"; ... {len(others) - 5} more" if len(others) > 5 else ""
        )
        out.append(
            finding(
                "package-drift",
                "WARN",
                shown,
                f"{len(others)} package{'s' if len(others) > 1 else ''} outside the stack layers differ from the lock",
                f"if something breaks, go back to the lock: `{sync_text}`",
            )
        )
    return tuple(out)
