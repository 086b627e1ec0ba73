"""Locks: a plan frozen with hashes as a PEP 751 ``pylock.<env>.toml`` (written by uv, read by uv).

envbuilder adds a ``[tool.envbuilder]`` table (target, profile, the plan's reasons, a digest of the matrix, the
smoke evidence) and a digest over everything that decides what gets installed, so an edited lock is refused.
Files that came from a local wheelhouse are recorded under their canonical URL (the PyTorch index for its
variant builds), so a teammate's mirror or wheelhouse can serve the same file by name and hash.
This module is pure apart from ``read_lock``.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from envbuilder import __version__
from envbuilder.errors import LockError
from envbuilder.resolve import PYPI, Plan

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOOL_SCHEMA = 1
_SHA = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_env_name(name: str) -> str:
    """Environment names reach paths, tags and scripts: letters, digits, '.', '_' and '-' only."""
    if not _NAME.match(name) or name in {".", ".."}:
        msg = f"environment name {name!r} is not allowed"
        raise LockError(msg, hint="use letters, digits, '.', '_' and '-' (at most 64), starting with a letter or digit")
    return name


def default_env_name(plan: Plan) -> str:
    """``<profile>-<variant>-py<N.N>``, e.g. ``bnb-cu128-py3.11`` or ``cpu-py3.11``."""
    if plan.profile == "cpu":
        return f"cpu-py{plan.python}"
    return f"{plan.profile}-{plan.variant}-py{plan.python}"


def requirements_text(plan: Plan, extra: Sequence[str] = ()) -> str:
    """The input uv resolves: the plan's exact pins, then the user's extra packages."""
    lines = [p.requirement for p in plan.packages]
    lines += list(extra)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the lock model


@dataclass(frozen=True, slots=True)
class LockedFile:
    url: str
    sha256: str
    filename: str


@dataclass(frozen=True, slots=True)
class LockedPackage:
    name: str
    version: str
    marker: str | None
    files: tuple[LockedFile, ...]

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Lock:
    path: Path
    name: str
    profile: str
    python: str
    cuda: str | None
    variant: str
    platform: str
    target: Mapping[str, Any]
    pins: tuple[str, ...]
    indexes: tuple[str, ...]
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    matrix_digest: str
    digest: str
    smoke: Mapping[str, Any]
    extra: tuple[str, ...]
    packages: tuple[LockedPackage, ...] = field(default=())

    def package(self, name: str) -> LockedPackage | None:
        return next((p for p in self.packages if p.name == name), None)

    @property
    def short_hash(self) -> str:
        return self.digest.removeprefix("sha256:")[:12]


def _filename(url: str) -> str:
    return urllib.parse.unquote(url.rsplit("/", 1)[-1].split("#", 1)[0])


def _canonical(url: str, name: str, version: str, pytorch_index: str | None) -> str:
    """A wheelhouse file's canonical URL: the PyTorch index for its variant builds, else as found."""
    if not url.startswith("file://") or "+" not in version or not pytorch_index:
        return url
    variant = version.split("+", 1)[1]
    return f"{pytorch_index.rstrip('/')}/{variant}/{urllib.parse.quote(_filename(url))}"


def _package_files(pkg: Mapping[str, Any]) -> list[dict[str, Any]]:
    files = list(pkg.get("wheels", []))
    if "sdist" in pkg:
        files.append(pkg["sdist"])
    return files


def content_digest(doc: Mapping[str, Any]) -> str:
    """sha256 over what decides the install: every package, file URL and hash, and the envbuilder table."""
    packages = [
        {
            "name": p.get("name"),
            "version": p.get("version"),
            "marker": p.get("marker"),
            "files": sorted((f.get("url"), (f.get("hashes") or {}).get("sha256")) for f in _package_files(p)),
        }
        for p in doc.get("packages", [])
    ]
    tool = dict(doc.get("tool", {}).get("envbuilder", {}))
    tool.pop("lock-digest", None)
    tool.pop("smoke", None)  # smoke evidence is added after the build; it does not change what is installed
    blob = json.dumps(
        {"packages": packages, "tool": tool, "requires-python": doc.get("requires-python")}, sort_keys=True, default=str
    )
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()


def _clean(value: Any) -> Any:
    """TOML has no null: drop None values (recursively)."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value if v is not None]
    return value


def tool_table(plan: Plan, *, name: str, extra: Sequence[str], wheelhouse: Mapping[str, str]) -> dict[str, Any]:
    target = plan.target.to_json()
    return {
        "schema": TOOL_SCHEMA,
        "envbuilder": __version__,
        "name": name,
        "profile": plan.profile,
        "python": plan.python,
        "cuda": plan.cuda or "",
        "variant": plan.variant,
        "platform": plan.target.platform,
        "target": _clean({k: v for k, v in target.items() if k != "pythons"}),
        "pins": [p.requirement for p in plan.packages],
        "indexes": [p.index for p in plan.packages if p.index not in {PYPI, "wheelhouse"}],
        "extra": list(extra),
        "matrix-digest": plan.matrix_digest,
        "reasons": list(plan.reasons),
        "warnings": list(plan.warnings),
        "wheelhouse-files": dict(wheelhouse),
    }


def finalize(
    uv_lock_text: str,
    plan: Plan,
    *,
    name: str,
    extra: Sequence[str] = (),
    pytorch_index: str | None = None,
    smoke: Mapping[str, Any] | None = None,
) -> str:
    """uv's pylock + canonical URLs + ``[tool.envbuilder]`` + the digest, as TOML text.

    uv's text is kept as uv wrote it (only wheelhouse URLs are replaced, by exact string); the envbuilder
    table is appended, so the whole lock is parsed once (tomllib) rather than round-tripped through tomlkit.
    """
    import tomlkit

    doc = tomllib.loads(uv_lock_text)
    if "tool" in doc:
        msg = "uv's lock already has a [tool] table; envbuilder cannot add its own"
        raise LockError(msg, hint="report this: uv's pylock output changed")
    text = uv_lock_text
    wheelhouse: dict[str, str] = {}
    for pkg in doc.get("packages", []):
        for f in _package_files(pkg):
            url = str(f.get("url", ""))
            canonical = _canonical(url, str(pkg["name"]), str(pkg["version"]), pytorch_index)
            if url.startswith("file://"):
                wheelhouse[_filename(url)] = url
            if canonical != url:
                text = text.replace(f'url = "{url}"', f'url = "{canonical}"')
                f["url"] = canonical
    table = tool_table(plan, name=name, extra=extra, wheelhouse=wheelhouse)
    doc["tool"] = {"envbuilder": table}
    table["lock-digest"] = content_digest(doc)
    if smoke:
        table["smoke"] = dict(smoke)
    return text.rstrip("\n") + "\n\n" + tomlkit.dumps({"tool": {"envbuilder": table}})


def with_smoke(lock_text: str, smoke: Mapping[str, Any]) -> str:
    """Record smoke evidence in an existing lock (outside the digest)."""
    import tomlkit

    doc = tomlkit.parse(lock_text)
    doc["tool"]["envbuilder"]["smoke"] = dict(smoke)
    return tomlkit.dumps(doc)


def parse_lock(text: str, path: Path) -> Lock:
    """Read and verify a lock; a malformed or edited one is refused (exit 2)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: not a valid lock ({exc})"
        raise LockError(msg, hint="regenerate it with `envbuilder lock`") from None
    tool = doc.get("tool", {}).get("envbuilder")
    if doc.get("lock-version") != "1.0" or not isinstance(tool, dict):
        msg = f"{path}: not an envbuilder PEP 751 lock (no lock-version 1.0 or no [tool.envbuilder])"
        raise LockError(msg, hint="create it with `envbuilder lock` or `envbuilder create`")
    if tool.get("schema") != TOOL_SCHEMA:
        msg = f"{path}: [tool.envbuilder] schema {tool.get('schema')!r} is not supported"
        raise LockError(msg, hint="upgrade envbuilder, or regenerate the lock")
    expected = tool.get("lock-digest")
    actual = content_digest(doc)
    if expected != actual:
        msg = (
            f"{path}: the lock was modified after envbuilder wrote it "
            f"(digest {actual[:19]}... != recorded {str(expected)[:19]}...)"
        )
        raise LockError(msg, hint="regenerate it with `envbuilder lock`, or restore it from version control")
    packages = tuple(_locked_package(p, path) for p in doc.get("packages", []))
    return Lock(
        path=path,
        name=str(tool.get("name", "")),
        profile=str(tool.get("profile", "")),
        python=str(tool.get("python", "")),
        cuda=tool.get("cuda") or None,
        variant=str(tool.get("variant", "")),
        platform=str(tool.get("platform", "")),
        target=tool.get("target", {}),
        pins=tuple(tool.get("pins", [])),
        indexes=tuple(tool.get("indexes", [])),
        reasons=tuple(tool.get("reasons", [])),
        warnings=tuple(tool.get("warnings", [])),
        matrix_digest=str(tool.get("matrix-digest", "")),
        digest=str(expected),
        smoke=tool.get("smoke", {}),
        extra=tuple(tool.get("extra", [])),
        packages=packages,
    )


def _locked_package(p: Mapping[str, Any], path: Path) -> LockedPackage:
    files = []
    for f in _package_files(p):
        sha = (f.get("hashes") or {}).get("sha256", "")
        if not _SHA.match(str(sha)):
            msg = f"{path}: package {p.get('name')} has a file without a valid sha256 hash"
            raise LockError(msg, hint="regenerate the lock with `envbuilder lock` (it records hashes)")
        files.append(LockedFile(str(f["url"]), str(sha), _filename(str(f["url"]))))
    return LockedPackage(str(p["name"]), str(p["version"]), p.get("marker"), tuple(files))


def read_lock(path: Path) -> Lock:
    return read_lock_text(path)[0]


def read_lock_text(path: Path, *, hint: str = "check the path") -> tuple[Lock, str]:
    """The verified lock and its text as written (for those that embed or copy it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"{path}: cannot read the lock ({exc.strerror})"
        raise LockError(msg, hint=hint) from None
    return parse_lock(text, path), text


def hashed_requirements(lock: Lock) -> str:
    """The lock as a hash-checked requirements file: any source may serve the files, the hashes decide."""
    lines = []
    for p in lock.packages:
        marker = f" ; {p.marker}" if p.marker else ""
        hashes = " ".join(f"--hash=sha256:{f.sha256}" for f in p.files)
        lines.append(f"{p.requirement}{marker} {hashes}")
    return "\n".join(lines) + "\n"


def diff_pins(old: Lock, new: Lock) -> list[str]:
    """Package-by-package changes between two locks: added, removed, changed."""
    before = {p.name: p.version for p in old.packages}
    after = {p.name: p.version for p in new.packages}
    lines = []
    for name in sorted(before.keys() | after.keys()):
        a, b = before.get(name), after.get(name)
        if a == b:
            continue
        if a is None:
            lines.append(f"+ {name} {b}")
        elif b is None:
            lines.append(f"- {name} {a}")
        else:
            lines.append(f"~ {name} {a} -> {b}")
    return lines
