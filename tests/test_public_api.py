"""Every public module says what it exports (issue 12, item 4: ``__all__`` on public modules).

A module is public unless a part of its dotted name starts with ``_``; a package's ``__init__`` that defines
nothing is a marker and needs no list. Each listed name must exist, and every public function or class the
module defines must be listed, so a new one is a decision (export it, or name it ``_private``).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import envbuilder

ROOT = Path(envbuilder.__file__).parent


def _public_modules() -> list[str]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if any(p.startswith("_") and p != "__init__" for p in parts):
            continue
        out.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def _defined(tree: ast.Module) -> list[str]:
    return [
        n.name
        for n in tree.body
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not n.name.startswith("_")
    ]


@pytest.mark.parametrize("name", _public_modules())
def test_public_module_declares_all(name: str) -> None:
    module = importlib.import_module(name)
    tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
    defined = _defined(tree)
    if not defined and not hasattr(module, "__all__"):
        assert Path(module.__file__ or "").name == "__init__.py", f"{name} defines nothing public"
        return
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, list), f"{name} has no __all__"
    assert [n for n in exported if not hasattr(module, n)] == [], f"{name}.__all__ names what it lacks"
    assert [n for n in defined if n not in exported] == [], f"{name} defines public names not in __all__"
    assert len(set(exported)) == len(exported), f"{name}.__all__ repeats a name"


def test_the_walk_finds_the_layers() -> None:
    names = _public_modules()
    assert len(names) > 50
    for layer in ("model", "rules", "resolve", "edge", "jobs", "render", "doctor", "cli"):
        assert any(n == f"envbuilder.{layer}" or n.startswith(f"envbuilder.{layer}.") for n in names), layer
