"""Locks: a plan frozen with hashes as a PEP 751 ``pylock.<env>.toml`` (written by uv, read by uv).

envbuilder adds a ``[tool.envbuilder]`` table (target, profile, the plan's reasons, a digest of the matrix, the
smoke evidence) and a digest over everything that decides what gets installed, so an edited lock is refused.
Files that came from a local wheelhouse are recorded under their canonical URL (the PyTorch index for its
variant builds), so a teammate's mirror or wheelhouse can serve the same file by name and hash.
This module is pure apart from ``read_lock``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import sys
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuilder import __version__
from envbuilder.model.errors import LockError
from envbuilder.model.plan import Plan
from envbuilder.model.types import is_index_url

if TYPE_CHECKING:
    from packaging.pylock import Package, PackageSdist, PackageWheel, Pylock

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "TOOL_SCHEMA",
    "Lock",
    "LockTool",
    "LockedFile",
    "LockedPackage",
    "check_env_name",
    "check_file_url",
    "check_index_url",
    "check_lock_path",
    "check_pylock",
    "content_digest",
    "default_env_name",
    "default_lock_file_name",
    "diff_pins",
    "finalize",
    "hashed_requirements",
    "is_valid_lock_file_name",
    "legacy_name_note",
    "lock_file_name",
    "manifest_lock_path",
    "parse_lock",
    "read_lock",
    "read_lock_text",
    "requirements_text",
    "suggest_lock_file_name",
    "tool_table",
    "with_file_names",
    "with_smoke",
]

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


# --------------------------------------------------------------------------- lock file names (PEP 751)


def is_valid_lock_file_name(filename: str) -> bool:
    """PEP 751's rule, checked by ``packaging.pylock`` itself: ``pylock.toml`` or ``pylock.<name>.toml``, where
    ``<name>`` is non-empty and has no dots. uv refuses any other name, and pip reads it as a requirements file."""
    from packaging.pylock import is_valid_pylock_path  # 16 ms: imported only where a name is made or checked

    return is_valid_pylock_path(Path(filename))


def lock_file_name(name: str) -> str:
    """The one function that makes a lock's file name: ``pylock.<name>.toml``, valid under PEP 751.

    An environment name may keep its dots; the file name may not: a dot between digits goes (``py3.11`` ->
    ``py311``, as wheel tags write ``cp311``), any other dot, and anything else a file name should not carry,
    becomes ``-``. So ``cpu-py3.11`` -> ``pylock.cpu-py311.toml`` and ``team.lock`` -> ``pylock.team-lock.toml``.
    """
    part = re.sub(r"(?<=\d)\.(?=\d)", "", name)
    part = re.sub(r"[^A-Za-z0-9_-]+", "-", part).strip("-")
    filename = f"pylock.{part}.toml"
    if not part or not is_valid_lock_file_name(filename):
        msg = f"{name!r} cannot name a lock file"
        raise LockError(msg, hint="use letters, digits, '_' and '-' (e.g. --name train)")
    return filename


def default_lock_file_name(plan: Plan) -> str:
    """The default lock file of a plan: profile, CUDA variant, Python and platform, so no two targets share one.

    ``pylock.bnb-cu128-py311-linux-x86_64.toml``, ``pylock.cpu-py311-windows-x86_64.toml``; the OS flavour is
    the target's (WSL2 plans use the Windows driver's floors, so ``wsl2-x86_64`` is a file of its own).
    """
    target = plan.target
    parts = [plan.profile] + ([plan.variant] if plan.variant != plan.profile else [])
    parts += [f"py{plan.python}", f"{target.os}-{target.platform.split('-', 1)[1]}"]
    return lock_file_name("-".join(parts))


def suggest_lock_file_name(filename: str) -> str:
    """A valid name for a file that lacks one: ``team.lock.toml`` -> ``pylock.team-lock.toml``."""
    if is_valid_lock_file_name(filename):
        return filename
    stem = filename.removeprefix("pylock.").removesuffix(".toml")
    return lock_file_name(stem) if re.search(r"[A-Za-z0-9]", stem) else "pylock.toml"


def check_lock_path(path: Path, option: str) -> Path:
    """A lock path the user gave for envbuilder to write: refused (exit 2) unless PEP 751 allows its name."""
    if is_valid_lock_file_name(path.name):
        return path
    msg = (
        f"{option} {path}: {path.name!r} is not a PEP 751 lock name (pylock.toml or pylock.<name>.toml, "
        "<name> without dots); uv and pip refuse it"
    )
    raise LockError(msg, hint=f"use {option} {path.with_name(suggest_lock_file_name(path.name))}")


def legacy_name_note(path: Path, done: str) -> str | None:
    """One line for a lock shared under a name PEP 751 forbids (``pylock.cpu-py3.11.toml``), else None.

    ``done`` says what is done instead (``installing a copy named pylock.cpu-py311.toml``).
    """
    if is_valid_lock_file_name(path.name):
        return None
    return (
        f"note: {path.name} is not a valid PEP 751 name (uv refuses it): {done}; "
        f"rename the file to {suggest_lock_file_name(path.name)} to share it"
    )


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
class LockTool:
    """``[tool.envbuilder]``: what envbuilder records beside the PEP 751 part; ``from_dict`` checks each field."""

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

    @classmethod
    def from_dict(cls, table: Mapping[str, Any], where: str) -> LockTool:
        """The table as outside input: a value of the wrong type or form names its key (exit 2)."""
        t = _ToolReader(table, f"{where}: [tool.envbuilder]")
        return cls(
            name=t.env_name(),
            profile=t.token("profile", _TOKEN),
            python=t.token("python", _PYTHON),
            cuda=t.token("cuda", _CUDA) or None,
            variant=t.token("variant", _TOKEN),
            platform=t.token("platform", _TOKEN),
            target=t.table("target"),
            pins=tuple(_check_pin(v, f"{t.where}.pins") for v in t.strings("pins")),
            indexes=tuple(check_index_url(v, f"{t.where}.indexes") for v in t.strings("indexes")),
            reasons=t.strings("reasons"),
            warnings=t.strings("warnings"),
            matrix_digest=t.token("matrix-digest", _DIGEST),
            digest=t.token("lock-digest", _DIGEST),
            smoke=t.table("smoke"),
            extra=tuple(_check_requirement(v, f"{t.where}.extra") for v in t.strings("extra")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Lock:
    """A verified lock: PEP 751's part as ``packaging.pylock`` validated it, and envbuilder's table."""

    path: Path
    tool: LockTool
    pylock: Pylock
    packages: tuple[LockedPackage, ...]  # the pylock's packages as envbuilder installs them (exact, hashed)

    def package(self, name: str) -> LockedPackage | None:
        return next((p for p in self.packages if p.name == name), None)

    @property
    def short_hash(self) -> str:
        return self.tool.digest.removeprefix("sha256:")[:12]


def _filename(url: str) -> str:
    return urllib.parse.unquote(url.rsplit("/", 1)[-1].split("#", 1)[0])


def _canonical(url: str, name: str, version: str, pytorch_index: str | None) -> str:
    """A wheelhouse file's canonical URL: the PyTorch index for its variant builds, else as found."""
    if not url.startswith("file://") or "+" not in version or not pytorch_index:
        return url
    variant = version.split("+", 1)[1]
    return f"{pytorch_index.rstrip('/')}/{variant}/{urllib.parse.quote(_filename(url))}"


def _package_files(pkg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A package's file tables (wheels, then the sdist); anything that is not a table is left out."""
    wheels = pkg.get("wheels", [])
    files = [f for f in wheels if isinstance(f, dict)] if isinstance(wheels, list) else []
    if isinstance(pkg.get("sdist"), dict):
        files.append(pkg["sdist"])
    return files


def _table(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def content_digest(doc: Mapping[str, Any]) -> str:
    """sha256 over what decides the install: every package, file URL and hash, and the envbuilder table.

    An unkeyed checksum: it catches accidents (an edit, a merge, a truncated copy), not an attacker, who can
    recompute it (README: what the lock digest promises). It reads any document without failing, so that a
    malformed lock is reported by the validation, not by a crash here.
    """
    found = doc.get("packages")
    packages = [
        {
            "name": p.get("name"),
            "version": p.get("version"),
            "marker": p.get("marker"),
            "files": sorted((str(f.get("url")), str(_table(f.get("hashes")).get("sha256"))) for f in _package_files(p)),
        }
        for p in (found if isinstance(found, list) else [])
        if isinstance(p, dict)
    ]
    tool = dict(_table(_table(doc.get("tool")).get("envbuilder")))
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
        "indexes": [p.index for p in plan.packages if is_index_url(p.index)],
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
    text = with_file_names(text, doc)
    table = tool_table(plan, name=name, extra=extra, wheelhouse=wheelhouse)
    doc["tool"] = {"envbuilder": table}
    table["lock-digest"] = content_digest(doc)
    if smoke:
        table["smoke"] = dict(smoke)
    return text.rstrip("\n") + "\n\n" + tomlkit.dumps({"tool": {"envbuilder": table}})


def _encoded_files(doc: Mapping[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """Each file table whose URL spells its name percent-encoded (``torch-2.13.0%2Bcpu-...``), with the name."""
    packages = doc.get("packages")
    for pkg in packages if isinstance(packages, list) else []:
        for f in _package_files(pkg) if isinstance(pkg, dict) else []:
            url = f.get("url")
            if isinstance(url, str) and "name" not in f and "path" not in f and "%" in url.rsplit("/", 1)[-1]:
                yield f, _filename(url)


def with_file_names(text: str, doc: Mapping[str, Any]) -> str:
    """Give each percent-encoded file URL its ``name`` (PEP 751 allows it; uv reads it).

    The PyTorch index serves ``torch-2.13.0%2Bcpu-...whl``; packaging before 26.4 takes that segment as the
    file name and refuses the lock ("Invalid wheel filename"), so the name is written out for every reader.
    """
    for f, filename in _encoded_files(doc):
        url = f["url"]
        text = text.replace(f'{{ url = "{url}"', f'{{ name = "{filename}", url = "{url}"')
    return text


def with_smoke(lock_text: str, smoke: Mapping[str, Any]) -> str:
    """Record smoke evidence in an existing lock (outside the digest)."""
    import tomlkit

    doc = tomlkit.parse(lock_text)
    doc["tool"]["envbuilder"]["smoke"] = dict(smoke)
    return tomlkit.dumps(doc)


def parse_lock(text: str, path: Path) -> Lock:
    """Read and verify a lock; a malformed, edited or unsafe one is refused (exit 2).

    Every field is checked as outside input: the PEP 751 part by ``packaging.pylock`` (its reference reader),
    then what envbuilder carries into generated files (URLs, markers, names, the [tool.envbuilder] table) against
    what may appear there, so that no value of a lock can add a line to a requirements file, Dockerfile or script.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: not a valid lock ({exc})"
        raise LockError(msg, hint="regenerate it with `envbuilder lock`") from None
    tool = _table(doc.get("tool")).get("envbuilder")
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
    pylock, packages = check_pylock(doc, str(path))
    return Lock(path=path, tool=LockTool.from_dict(tool, str(path)), pylock=pylock, packages=packages)


# --------------------------------------------------------------------------- validation: a lock is outside input

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# What a file URL may hold when it goes into a requirements file, a Dockerfile or a script: no whitespace, quotes,
# backslashes, shell or template metacharacters. Percent-escapes stand for anything else.
_FILE_URL = re.compile(r"^(?:https?|file)://[A-Za-z0-9._~%+/:@!,=()\[\]-]+$")
_INDEX_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(?::\d+)?(?:/[A-Za-z0-9._~%+/-]*)?$")
_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")
_PYTHON = re.compile(r"^3\.\d{1,2}$")
_CUDA = re.compile(r"^(?:\d{1,2}\.\d{1,2})?$")
_DIGEST = re.compile(r"^(?:sha256:)?[0-9a-f]{0,64}$")


def _bad(where: str, problem: str) -> LockError:
    return LockError(f"{where}: {problem}", hint="regenerate the lock with `envbuilder lock`")


def _has_userinfo(url: str) -> bool:
    netloc = url.split("://", 1)[-1].split("/", 1)[0]
    return "@" in netloc


def check_file_url(url: object, where: str) -> str:
    """A file URL a lock may record: http(s) or file, no credentials, nothing a generated file could misread."""
    if not isinstance(url, str) or not _FILE_URL.match(url):
        raise _bad(where, f"the URL {_shown(url)} is not a plain http(s) or file URL")
    if _has_userinfo(url):
        raise _bad(where, "a URL carries credentials (user:password@); locks record URLs without them")
    return url


def check_index_url(url: object, where: str) -> str:
    if not isinstance(url, str) or not _INDEX_URL.match(url):
        raise _bad(where, f"the index {_shown(url)} is not a plain http(s) URL without credentials")
    return url


def _shown(value: object) -> str:
    from envbuilder.model.credentials import redact

    text = redact(repr(value))
    return text if len(text) <= 120 else text[:117] + "..."


_PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,99})==(?P<version>[A-Za-z0-9.+!_-]{1,64})$")


def _check_pin(pin: str, where: str) -> str:
    from packaging.version import InvalidVersion, Version

    match = _PIN.match(pin)
    try:
        ok = match is not None and Version(match["version"]) is not None
    except InvalidVersion:
        ok = False
    if not ok:
        raise _bad(where, f"{_shown(pin)} is not an exact pin (name==version)")
    return pin


def _check_requirement(text: str, where: str) -> str:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        Requirement(text)
    except InvalidRequirement:
        raise _bad(where, f"{_shown(text)} is not a requirement") from None
    if _CONTROL.search(text):
        raise _bad(where, f"{_shown(text)} holds a control character")
    return text


def check_pylock(doc: Mapping[str, Any], where: str) -> tuple[Pylock, tuple[LockedPackage, ...]]:
    """The PEP 751 part of a lock as packaging's reference reader validates it, then what envbuilder embeds
    elsewhere (exact versions, hashed files, URLs and markers that cannot add a line to a generated file)."""
    pylock = _validated(doc, where)
    raw = doc["packages"]  # validated: a list of tables, in the model's order
    pairs = enumerate(zip(pylock.packages, raw, strict=True))
    return pylock, tuple(_locked_package(p, r, f"{where}: packages[{i}]") for i, (p, r) in pairs)


def _validated(doc: Mapping[str, Any], where: str) -> Pylock:
    from packaging.pylock import Pylock, PylockUnsupportedVersionError, PylockValidationError

    named: Mapping[str, Any] = doc
    if next(_encoded_files(doc), None) is not None:
        # PEP 751: a name the URL spells need not be written out; packaging before 26.4 does not decode a
        # percent-encoded one, so a lock uv wrote would be refused for the reader's old packaging. Only such
        # a lock is copied (the caller's document stays as read, for its digest).
        named = copy.deepcopy(dict(doc))
        for f, filename in _encoded_files(named):
            f["name"] = filename
    try:
        return Pylock.from_dict(named)
    except PylockUnsupportedVersionError as exc:
        raise _bad(where, f"not a lock this packaging reads ({_shown(str(exc))})") from None
    except PylockValidationError as exc:
        at = f"{where}: {exc.context}" if exc.context else where
        raise _bad(at, f"not a valid PEP 751 lock ({_shown(exc.message)})") from None


def _locked_package(pkg: Package, raw: Mapping[str, Any], where: str) -> LockedPackage:
    """One package of the validated model as envbuilder installs it; ``raw`` is its table as written, whose
    marker text is kept as uv spelt it (packaging re-quotes a marker, which would change generated files)."""
    if pkg.version is None:
        raise _bad(where, f"package {pkg.name} has no version (envbuilder installs exact versions)")
    marker = raw.get("marker") if pkg.marker is not None else None
    if marker is not None and (not isinstance(marker, str) or _CONTROL.search(marker)):
        raise _bad(where, f"the marker {_shown(marker)} holds a control character")
    archives: list[PackageWheel | PackageSdist] = [*(pkg.wheels or ()), *([pkg.sdist] if pkg.sdist else [])]
    if not archives:
        raise _bad(where, f"package {pkg.name} has no wheel or sdist")
    files = []
    for f in archives:
        url = check_file_url(f.url, where)
        sha = f.hashes.get("sha256", "")
        if not isinstance(sha, str) or not _SHA.match(sha):
            raise _bad(where, f"package {pkg.name} has a file without a valid sha256 hash")
        files.append(LockedFile(url, sha, f.name or _filename(url)))
    return LockedPackage(pkg.name, str(pkg.version), marker, tuple(files))


class _ToolReader:
    """Typed reads of [tool.envbuilder], each failure naming the key."""

    def __init__(self, tool: Mapping[str, Any], where: str) -> None:
        self.tool, self.where = tool, where

    def _fail(self, key: str, expected: str) -> LockError:
        return _bad(f"{self.where}.{key}", f"expected {expected}, got {_shown(self.tool.get(key))}")

    def token(self, key: str, pattern: re.Pattern[str]) -> str:
        value = self.tool.get(key, "")
        if not isinstance(value, str) or not pattern.match(value):
            raise self._fail(key, "a short plain value")
        return value

    def env_name(self) -> str:
        name = self.tool.get("name", "")
        try:
            return check_env_name(name) if isinstance(name, str) else check_env_name(repr(name))
        except LockError as exc:
            raise LockError(f"{self.where}.name: {exc.message}", hint=exc.hint) from None

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.tool.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and not _CONTROL.search(v) for v in value):
            raise self._fail(key, "a list of one-line strings")
        return tuple(value)

    def table(self, key: str) -> Mapping[str, Any]:
        value = self.tool.get(key, {})
        if not isinstance(value, dict):
            raise self._fail(key, "a table")
        return value


def read_lock(path: Path) -> Lock:
    return read_lock_text(path)[0]


def manifest_lock_path(directory: Path, name: str) -> Path:
    """Where the lock of a manifest's environment is: its PEP 751 name, or the dotted name an earlier
    envbuilder gave it (``pylock.cpu-py3.11.toml``) when only that one is there, so a team's committed locks
    still sync (their install then says so, through ``legacy_name_note``)."""
    path = directory / lock_file_name(name)
    legacy = directory / f"pylock.{name}.toml"
    return legacy if not path.exists() and legacy != path and legacy.is_file() else path


def read_lock_text(path: Path, *, hint: str = "check the path") -> tuple[Lock, str]:
    """The verified lock and its text as written (for those that embed or copy it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        msg = f"{path}: cannot read the lock ({exc.strerror})"
        raise LockError(msg, hint=hint) from None
    except UnicodeDecodeError:
        msg = f"{path}: not a lock (not UTF-8 text)"
        raise LockError(msg, hint="give a pylock.<env>.toml that `envbuilder lock` wrote") from None
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
