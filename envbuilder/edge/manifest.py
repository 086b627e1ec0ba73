"""The team manifest, ``envbuilder.toml``: the environments a team wants, and its package sources.

```toml
[sources]                      # optional; flags and ENVBUILDER_* variables override it
index-url = "https://mirror.example/simple"
pytorch-index = "https://mirror.example/pytorch"
find-links = ["wheels/"]
ca-certs = ["corp-ca.pem"]

[[env]]
name = "train"
profile = "bnb"
gpu = ["sm_89", "sm_90"]       # one plan that serves all of them
driver = "550.54.14"
os = "linux"
python = "3.11"
packages = ["datasets==3.2.0"] # extra packages, checked against the profile's forbidden list
```
The same tables may live in ``pyproject.toml`` under ``[tool.envbuilder]`` (``[[tool.envbuilder.env]]``);
``envbuilder.edge.config`` finds either upward from the current directory. Relative paths in ``[sources]``
(``find-links``, ``ca-certs``) are read from the manifest's directory, so a run from a subdirectory finds them.
Edited with tomlkit, so comments and layout survive.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envbuilder.model.errors import LockError
from envbuilder.model.lock import check_env_name, lock_file_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "MANIFEST",
    "EnvSpec",
    "Manifest",
    "add_env",
    "env_names",
    "load_manifest",
    "read_project_sources",
    "read_sources_file",
]

MANIFEST = "envbuilder.toml"
_ENV_KEYS = {"name", "profile", "gpu", "driver", "os", "python", "machine", "packages", "torch", "bnb"}


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvSpec:
    name: str
    profile: str | None = None
    gpus: tuple[str, ...] = ()
    driver: str | None = None
    os: str = "linux"
    python: str | None = None
    machine: str = "x86_64"
    packages: tuple[str, ...] = ()
    torch: str | None = None
    bnb: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Manifest:
    path: Path
    envs: tuple[EnvSpec, ...]
    sources: dict[str, Any]

    def env(self, name: str) -> EnvSpec | None:
        return next((e for e in self.envs if e.name == name), None)


def _fail(path: Path, where: str, problem: str, hint: str) -> LockError:
    return LockError(f"{path}: {problem} in '{where}'", hint=hint)


def _strs(value: object, path: Path, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise _fail(path, where, "expected a string or a list of strings", 'write it like ["sm_89"]')


def _env(row: dict[str, Any], path: Path, i: int, prefix: str = "") -> EnvSpec:
    import difflib

    where = f"{prefix}env[{i}]"
    unknown = sorted(set(row) - _ENV_KEYS)
    if unknown:
        near = difflib.get_close_matches(unknown[0], sorted(_ENV_KEYS), n=1)
        raise _fail(
            path,
            f"{where}.{unknown[0]}",
            "unknown key",
            f"did you mean {near[0]!r}?" if near else f"keys: {', '.join(sorted(_ENV_KEYS))}",
        )
    for key in ("name", "profile", "driver", "os", "python", "machine", "torch", "bnb"):
        if key in row and not isinstance(row[key], str):
            raise _fail(
                path, f"{where}.{key}", f"expected a string, got {type(row[key]).__name__}", f'write {key} = "..."'
            )
    if "name" not in row:
        raise _fail(path, where, "missing key 'name'", 'add name = "train"')
    try:
        name = check_env_name(row["name"])
    except LockError as exc:
        raise _fail(path, f"{where}.name", exc.message, exc.hint or "") from None
    return EnvSpec(
        name=name,
        profile=row.get("profile"),
        gpus=_strs(row.get("gpu", []), path, f"{where}.gpu"),
        driver=row.get("driver"),
        os=row.get("os", "linux"),
        python=row.get("python"),
        machine=row.get("machine", "x86_64"),
        packages=_strs(row.get("packages", []), path, f"{where}.packages"),
        torch=row.get("torch"),
        bnb=row.get("bnb"),
    )


def _refuse_shared_lock_files(path: Path, names: list[str]) -> None:
    """Two environments whose names differ only where a lock file name cannot (``a.b``, ``a-b``) would share
    one ``pylock.a-b.toml``: refused rather than one lock silently overwriting the other."""
    owner: dict[str, str] = {}
    for name in names:
        file = lock_file_name(name)
        if file in owner:
            problem = f"environments {owner[file]!r} and {name!r} would share the lock file {file}"
            raise _fail(path, "env", problem, "rename one of them")
        owner[file] = name


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return dict(tomllib.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        msg = f"{path}: cannot read the manifest ({exc.strerror})"
        raise LockError(msg, hint=f"create {MANIFEST}, or name one with --manifest") from None
    except UnicodeDecodeError as exc:
        msg = f"{path}: not UTF-8 text (byte {exc.start})"
        raise LockError(msg, hint="a manifest is a TOML file: save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: not valid TOML ({exc})"
        raise LockError(msg, hint="fix the syntax at that line") from None


def _prefix(path: Path) -> str:
    """Where a manifest's tables are: the top of envbuilder.toml, or [tool.envbuilder] in pyproject.toml."""
    return "tool.envbuilder." if path.name == "pyproject.toml" else ""


def _tables(path: Path) -> dict[str, Any]:
    doc = _read_toml(path)
    if not _prefix(path):
        return doc
    tool = doc.get("tool", {})
    table = tool.get("envbuilder") if isinstance(tool, dict) else None
    if not isinstance(table, dict):
        msg = f"{path}: no [tool.envbuilder] table"
        raise LockError(msg, hint='add [[tool.envbuilder.env]] name = "train" profile = "bnb", or use envbuilder.toml')
    return table


def load_manifest(path: Path) -> Manifest:
    doc = _tables(path)
    prefix = _prefix(path)
    rows = doc.get("env", [])
    if not isinstance(rows, list) or not rows:
        msg = f"{path}: no [[{prefix}env]] tables"
        raise LockError(msg, hint=f'add one: [[{prefix}env]] name = "train" profile = "bnb" gpu = ["sm_89"]')
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            problem = f"expected a table, got {type(row).__name__}"
            raise _fail(path, f"{prefix}env[{i}]", problem, f'write [[{prefix}env]] name = "train"')
    envs = tuple(_env(r, path, i, prefix) for i, r in enumerate(rows))
    seen: set[str] = set()
    for e in envs:
        if e.name in seen:
            raise _fail(path, "env", f"environment {e.name!r} is defined twice", "give each [[env]] its own name")
        seen.add(e.name)
    _refuse_shared_lock_files(path, [e.name for e in envs])
    return Manifest(path=path, envs=envs, sources=_sources(doc.get("sources", {}), path, prefix))


def read_project_sources(path: Path) -> dict[str, Any]:
    """A project file's [sources] alone (it may hold no [[env]] yet: a team's mirror, set for every command)."""
    return _sources(_tables(path).get("sources", {}), path, _prefix(path))


def read_sources_file(path: Path) -> tuple[dict[str, Any], list[str]]:
    """A file's ``[sources]`` (the user's configuration), and any other top-level keys it holds."""
    doc = _read_toml(path)
    return _sources(doc.get("sources", {}), path), sorted(set(doc) - {"sources"})


# [sources] keys and the type each must have: a string, a list of strings (a lone string is one item), a boolean.
_SOURCE_TYPES = {
    "index-url": "str",
    "pytorch-index": "str",
    "extra-index-url": "list",
    "find-links": "list",
    "ca-certs": "list",
    "offline": "bool",
}


_LOCAL_PATHS = ("find-links", "ca-certs")  # read from the manifest's directory when relative


def _sources(table: object, path: Path, prefix: str = "") -> dict[str, Any]:
    """[sources], each value of the type its key needs (``offline = "false"`` was read as true)."""
    if not isinstance(table, dict):
        hint = f"write it as [{prefix}sources]"
        raise _fail(path, f"{prefix}sources", f"expected a table, got {type(table).__name__}", hint)
    unknown = sorted(set(table) - set(_SOURCE_TYPES))
    if unknown:
        hint = f"keys: {', '.join(sorted(_SOURCE_TYPES))}"
        raise _fail(path, f"{prefix}sources.{unknown[0]}", "unknown key", hint)
    out: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{prefix}sources.{key}"
        kind = _SOURCE_TYPES[key]
        if kind == "bool":
            if not isinstance(value, bool):
                raise _fail(path, where, f"expected true or false, got {value!r}", f"write {key} = true (no quotes)")
            out[key] = value
        elif kind == "str":
            if not isinstance(value, str) or not value.strip():
                problem = f"expected a URL string, got {type(value).__name__}"
                raise _fail(path, where, problem, f'write {key} = "https://..."')
            out[key] = value
        else:
            out[key] = list(_strs(value, path, where))
        for item in out[key] if isinstance(out[key], list) else [out[key]]:
            if isinstance(item, str) and any(ord(c) < 32 or ord(c) == 127 for c in item):
                raise _fail(path, where, "a value holds a control character", "write it on one line, as plain text")
    return _from_manifest_dir(out, path)


def _from_manifest_dir(sources: dict[str, Any], path: Path) -> dict[str, Any]:
    """Relative wheelhouses and CA bundles as paths from the manifest's directory (a run from a subdirectory)."""
    for key in _LOCAL_PATHS:
        if key in sources:
            sources[key] = [p if os.path.isabs(p) else os.path.join(path.parent, p) for p in sources[key]]
    return sources


def env_names(path: Path) -> set[str]:
    """Names already in a manifest that may not be complete yet (a header, no [[env]] so far)."""
    if not path.exists():
        return set()
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return set()
    if _prefix(path):
        tool = doc.get("tool", {})
        doc = tool.get("envbuilder", {}) if isinstance(tool, dict) else {}
    rows = doc.get("env", []) if isinstance(doc, dict) else []
    if not isinstance(rows, list):
        return set()
    return {str(r["name"]) for r in rows if isinstance(r, dict) and isinstance(r.get("name"), str)}


def add_env(path: Path, spec: EnvSpec) -> None:
    """Append an [[env]] with tomlkit, keeping the file's comments and layout."""
    import tomlkit

    from envbuilder.edge._fs import write_text_atomic

    doc = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
    home: Any = doc
    if _prefix(path):  # [[tool.envbuilder.env]] in a pyproject.toml
        home = doc.setdefault("tool", tomlkit.table(is_super_table=True))
        home = home.setdefault("envbuilder", tomlkit.table(is_super_table=True))
    envs = home.setdefault("env", tomlkit.aot())
    table = tomlkit.table()
    table["name"] = spec.name
    for key in ("profile", "driver", "python"):
        value = getattr(spec, key)
        if value:
            table[key] = value
    if spec.gpus:
        table["gpu"] = list(spec.gpus)
    table["os"] = spec.os
    if spec.packages:
        table["packages"] = list(spec.packages)
    envs.append(table)
    write_text_atomic(path, tomlkit.dumps(doc))
