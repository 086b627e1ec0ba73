"""Load and validate the matrix (``matrices/*.toml``) into frozen dataclasses.

The schema is documented in ``matrices/SCHEMA.md``. Every row carries ``source`` and ``confidence``;
unknown keys are refused with a "did you mean"; every error names the file, the dotted key path and the fix.
Users can lay their own directories over the shipped one: a row with the same key replaces the shipped row,
a new row is added.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from envbuilder.errors import MatrixError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

SCHEMA_VERSIONS = range(1, 2)
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "matrices"
ENV_MATRIX_DIR = "ENVBUILDER_MATRIX_DIR"
FILES = (
    "meta",
    "gpus",
    "driver",
    "torch",
    "bitsandbytes",
    "companions",
    "quant",
    "profiles",
    "evidence",
)
Confidence = Literal["confirmed", "unconfirmed"]
PLATFORMS = ("linux-x86_64", "linux-aarch64", "windows-x86_64", "windows-arm64", "macos-arm64")
SEGMENTS = ("geforce", "workstation", "datacenter", "jetson")
PROFILES = ("bnb", "gptq", "awq", "cpu")
LOADERS = ("exact-or-cpu", "exact-or-error", "nearest-same-major")
CPU_BACKENDS = ("none", "nf4-only", "full")
T = TypeVar("T")
_TOML_TYPES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "float",
    bool: "boolean",
    list: "array",
    dict: "table",
}


# --------------------------------------------------------------------------- facts


@dataclass(frozen=True, slots=True, kw_only=True)
class Fact:
    """What every row carries: where it was read, how sure we are, and artifact evidence."""

    source: str
    confidence: Confidence
    verified: str | None = None
    note: str | None = None
    origin: str = ""  # "file.toml: table[i]", for messages

    @property
    def confirmed(self) -> bool:
        return self.confidence == "confirmed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Arch(Fact):
    cc: str
    name: str
    first_cuda: str
    last_cuda: str | None = None
    tegra: bool = False
    products: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def sm(self) -> str:
        return "sm_" + self.cc.replace(".", "")

    def segment_of(self, product: str) -> str | None:
        for segment, names in self.products.items():
            if product in names:
                return segment
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Toolkit(Fact):
    cuda: str
    linux: str
    windows: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MinorCompat(Fact):
    major: int
    linux: str
    windows: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CompatBase(Fact):
    major: int
    linux: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardCompat(Fact):
    segments: tuple[str, ...]
    platforms: tuple[str, ...]
    bases: tuple[CompatBase, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TorchRelease(Fact):
    version: str
    python: SpecifierSet
    pypi: Mapping[str, str]
    released: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TorchBuild(Fact):
    torch: SpecifierSet
    variant: str
    cuda: str | None
    platforms: tuple[str, ...]
    sass: tuple[str, ...]
    ptx: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BnbRelease(Fact):
    version: str
    python: SpecifierSet
    torch: SpecifierSet
    platforms: tuple[str, ...]
    cuda_libs: tuple[str, ...]
    loader: str
    cpu: str
    avoid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BnbLoader(Fact):
    name: str
    description: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BnbSass(Fact):
    bnb: SpecifierSet
    cuda: SpecifierSet
    platform: str
    sass: tuple[str, ...]
    ptx: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Companion(Fact):
    name: str
    version: str
    python: SpecifierSet
    torch: SpecifierSet | None = None
    requires: Mapping[str, SpecifierSet] = field(default_factory=dict)
    profiles: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantLib(Fact):
    name: str
    version: str
    status: str
    profile: str
    python: SpecifierSet
    torch: SpecifierSet | None = None
    requires: Mapping[str, SpecifierSet] = field(default_factory=dict)
    kernels: str = "none"
    min_cc: str | None = None
    platforms: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile(Fact):
    name: str
    description: str
    packages: tuple[str, ...]
    gpu: bool
    clashes: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    why: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence(Fact):
    date: str
    gpu: str
    cc: str
    driver: str
    os: str
    python: str
    torch: str
    bitsandbytes: str | None = None
    transformers: str | None = None
    quant: str | None = None  # "gptqmodel 7.6.0": the GPTQ/AWQ library the run exercised
    result: str = "pass"
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Matrix:
    """All facts, validated and cross-checked."""

    date: str
    digest: str
    files: tuple[str, ...]
    archs: tuple[Arch, ...]
    toolkits: tuple[Toolkit, ...]
    minor_compat: tuple[MinorCompat, ...]
    forward_compat: ForwardCompat | None
    pytorch_index: str
    torch_releases: tuple[TorchRelease, ...]
    torch_builds: tuple[TorchBuild, ...]
    bnb_releases: tuple[BnbRelease, ...]
    bnb_loaders: tuple[BnbLoader, ...]
    bnb_sass: tuple[BnbSass, ...]
    companions: tuple[Companion, ...]
    quant: tuple[QuantLib, ...]
    profiles: tuple[Profile, ...]
    evidence: tuple[Evidence, ...]

    def arch(self, cc: str) -> Arch | None:
        return next((a for a in self.archs if a.cc == cc), None)

    def profile(self, name: str) -> Profile | None:
        return next((p for p in self.profiles if p.name == name), None)

    def builds_of(self, release: TorchRelease) -> tuple[TorchBuild, ...]:
        """The variants a torch release ships (every build row whose range holds it)."""
        return tuple(b for b in self.torch_builds if b.torch.contains(release.version, prereleases=True))

    def bnb_release(self, version: str) -> BnbRelease | None:
        return next((r for r in self.bnb_releases if r.version == version), None)

    def torch_release(self, version: str) -> TorchRelease | None:
        base = version.split("+", 1)[0]
        return next((r for r in self.torch_releases if r.version == base), None)


# --------------------------------------------------------------------------- reading


class _Row:
    """A TOML table being read: typed getters that know their dotted path and track consumed keys."""

    def __init__(self, data: Mapping[str, Any], file: str, path: str, origin: str | None = None) -> None:
        self.data, self.file, self.path = data, file, path
        self.origin = origin or (f"{file}: {path}" if path else file)
        self.seen: set[str] = set()

    def _fail(self, key: str, problem: str, fix: str) -> MatrixError:
        msg = f"{self.file}: {problem} in '{self.path}.{key}'" if self.path else f"{self.file}: {problem} in '{key}'"
        return MatrixError(msg, hint=fix)

    def get(self, key: str, kind: type[T], *, required: bool = True, default: T | None = None) -> T:
        self.seen.add(key)
        if key not in self.data:
            if required:
                # A misspelt required key shows up as missing; name the misspelling, it is the real error.
                spelt = [k for k in self.data if k not in self.seen]
                typo = difflib.get_close_matches(key, spelt, n=1)
                if typo:
                    raise self._fail(typo[0], "unknown key", f"did you mean {key!r}?")
                raise self._fail(key, "missing key", f"add `{key} = ...` (see matrices/SCHEMA.md)")
            return default  # type: ignore[return-value]
        value = self.data[key]
        if kind is float and isinstance(value, int):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            msg = f"unexpected type {type(value).__name__} (expected {kind.__name__})"
            raise self._fail(key, msg, f"write `{key}` as a TOML {_TOML_TYPES.get(kind, kind.__name__)}")
        return value

    def opt_str(self, key: str) -> str | None:
        return self.get(key, str, required=False)

    def strs(self, key: str, *, required: bool = True) -> tuple[str, ...]:
        items = self.get(key, list, required=required, default=[])
        for i, item in enumerate(items):
            if not isinstance(item, str):
                raise self._fail(f"{key}[{i}]", f"unexpected type {type(item).__name__} (expected str)", "quote it")
        return tuple(items)

    def choice(self, key: str, allowed: Sequence[str], *, required: bool = True, default: str | None = None) -> str:
        value = self.get(key, str, required=required, default=default)
        if value is not None and value not in allowed:
            raise self._fail(key, f"unknown value {value!r}", f"use one of: {', '.join(allowed)}")
        return value

    def choices(self, key: str, allowed: Sequence[str], *, required: bool = True) -> tuple[str, ...]:
        values = self.strs(key, required=required)
        for i, value in enumerate(values):
            if value not in allowed:
                near = difflib.get_close_matches(value, allowed, n=1)
                tip = f"did you mean {near[0]!r}?" if near else f"use one of: {', '.join(allowed)}"
                raise self._fail(f"{key}[{i}]", f"unknown value {value!r}", tip)
        return values

    def version(self, key: str, *, required: bool = True) -> str | None:
        value = self.get(key, str, required=required)
        if value is not None:
            try:
                Version(value)
            except InvalidVersion:
                raise self._fail(key, f"not a version: {value!r}", 'write it like "2.11.0" or "12.8"') from None
        return value

    def versions(self, key: str) -> tuple[str, ...]:
        values = self.strs(key)
        for i, value in enumerate(values):
            try:
                Version(value)
            except InvalidVersion:
                raise self._fail(f"{key}[{i}]", f"not a version: {value!r}", 'write it like "8.9"') from None
        return values

    def spec(self, key: str, *, required: bool = True) -> SpecifierSet | None:
        value = self.get(key, str, required=required)
        return None if value is None else self._parse_spec(key, value)

    def _parse_spec(self, key: str, value: str) -> SpecifierSet:
        try:
            return SpecifierSet(value)
        except InvalidSpecifier:
            raise self._fail(key, f"not a version range: {value!r}", 'write it like ">=2.4,<3"') from None

    def spec_map(self, key: str) -> dict[str, SpecifierSet]:
        table = self.get(key, dict, required=False, default={})
        return {name: self._parse_spec(f"{key}.{name}", str(spec)) for name, spec in table.items()}

    def fact(self) -> dict[str, Any]:
        return {
            "source": self.get("source", str),
            "confidence": self.choice("confidence", ("confirmed", "unconfirmed")),
            "verified": self.opt_str("verified"),
            "note": self.opt_str("note"),
            "origin": self.origin,
        }

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            key = unknown[0]
            near = difflib.get_close_matches(key, sorted(self.seen), n=1)
            tip = f"did you mean {near[0]!r}?" if near else "remove it (see matrices/SCHEMA.md)"
            raise self._fail(key, "unknown key", tip)


def _rows(
    doc: Mapping[str, Any],
    file: str,
    table: str,
    *,
    required: bool = True,
    origins: Mapping[int, str] | None = None,
) -> list[_Row]:
    items = doc.get(table)
    if items is None:
        if required:
            msg = f"{file}: missing table '[[{table}]]'"
            raise MatrixError(msg, hint="see matrices/SCHEMA.md for what this file holds")
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        msg = f"{file}: '{table}' must be an array of tables"
        raise MatrixError(msg, hint=f"write each row as [[{table}]]")
    where = origins or {}
    return [_Row(item, file, f"{table}[{i}]", where.get(id(item))) for i, item in enumerate(items)]


def _read_all(rows: list[_Row], build: Callable[[_Row], T]) -> tuple[T, ...]:
    out = []
    for row in rows:
        out.append(build(row))
        row.done()
    return tuple(out)


def _arch(r: _Row) -> Arch:
    products_table = r.get("products", dict, required=False, default={})
    sub = _Row(products_table, r.file, f"{r.path}.products")
    products = {seg: sub.strs(seg, required=False) for seg in SEGMENTS if seg in products_table}
    sub.done()
    return Arch(
        cc=r.version("cc") or "",
        name=r.get("name", str),
        first_cuda=r.version("first-cuda") or "",
        last_cuda=r.version("last-cuda", required=False),
        tegra=r.get("tegra", bool, required=False, default=False),
        products=products,
        **r.fact(),
    )


def _toolkit(r: _Row) -> Toolkit:
    return Toolkit(
        cuda=r.version("cuda") or "",
        linux=r.version("linux") or "",
        windows=r.version("windows", required=False),
        **r.fact(),
    )


def _minor(r: _Row) -> MinorCompat:
    return MinorCompat(
        major=r.get("major", int),
        linux=r.version("linux") or "",
        windows=r.version("windows", required=False),
        **r.fact(),
    )


def _forward(doc: Mapping[str, Any], file: str) -> ForwardCompat | None:
    table = doc.get("forward-compat")
    if table is None:
        return None
    r = _Row(table, file, "forward-compat")
    bases_raw = r.get("base", list, required=False, default=[])
    bases = _read_all(
        [_Row(b, file, f"forward-compat.base[{i}]") for i, b in enumerate(bases_raw)],
        lambda b: CompatBase(major=b.get("major", int), linux=b.version("linux") or "", **b.fact()),
    )
    fc = ForwardCompat(
        segments=r.choices("segments", SEGMENTS),
        platforms=r.choices("platforms", PLATFORMS),
        bases=bases,
        **r.fact(),
    )
    r.done()
    return fc


def _torch_release(r: _Row) -> TorchRelease:
    pypi_table = r.get("pypi", dict)
    sub = _Row(pypi_table, r.file, f"{r.path}.pypi")
    for platform in pypi_table:
        if platform not in PLATFORMS:
            near = difflib.get_close_matches(platform, PLATFORMS, n=1)
            raise sub._fail(platform, "unknown platform", f"did you mean {near[0]!r}?" if near else "")
    pypi = {p: sub.get(p, str) for p in pypi_table}
    return TorchRelease(
        version=r.version("version") or "",
        python=r.spec("python") or SpecifierSet(),
        pypi=pypi,
        released=r.opt_str("released"),
        **r.fact(),
    )


def _torch_build(r: _Row) -> TorchBuild:
    variant = r.get("variant", str)
    return TorchBuild(
        torch=r.spec("torch") or SpecifierSet(),
        variant=variant,
        cuda=r.version("cuda", required=variant != "cpu"),
        platforms=r.choices("platforms", PLATFORMS),
        sass=r.versions("sass"),
        ptx=r.version("ptx", required=False),
        **r.fact(),
    )


def _bnb_release(r: _Row) -> BnbRelease:
    return BnbRelease(
        version=r.version("version") or "",
        python=r.spec("python") or SpecifierSet(),
        torch=r.spec("torch") or SpecifierSet(),
        platforms=r.choices("platforms", PLATFORMS),
        cuda_libs=r.versions("cuda-libs"),
        loader=r.choice("loader", LOADERS),
        cpu=r.choice("cpu", CPU_BACKENDS),
        avoid=r.opt_str("avoid"),
        **r.fact(),
    )


def _bnb_sass(r: _Row) -> BnbSass:
    return BnbSass(
        bnb=r.spec("bnb") or SpecifierSet(),
        cuda=r.spec("cuda") or SpecifierSet(),
        platform=r.choice("platform", PLATFORMS),
        sass=r.versions("sass"),
        ptx=r.version("ptx", required=False),
        **r.fact(),
    )


def _companion(r: _Row) -> Companion:
    return Companion(
        name=r.get("name", str),
        version=r.version("version") or "",
        python=r.spec("python") or SpecifierSet(),
        torch=r.spec("torch", required=False),
        requires=r.spec_map("requires"),
        profiles=r.choices("profiles", PROFILES, required=False),
        **r.fact(),
    )


def _quant(r: _Row) -> QuantLib:
    return QuantLib(
        name=r.get("name", str),
        version=r.version("version") or "",
        status=r.choice("status", ("active", "deprecated", "eol")),
        profile=r.choice("profile", PROFILES),
        python=r.spec("python") or SpecifierSet(),
        torch=r.spec("torch", required=False),
        requires=r.spec_map("requires"),
        kernels=r.choice("kernels", ("jit", "prebuilt", "none"), required=False, default="none"),
        min_cc=r.version("min-cc", required=False),
        platforms=r.choices("platforms", PLATFORMS, required=False),
        **r.fact(),
    )


def _profile(r: _Row) -> Profile:
    return Profile(
        name=r.choice("name", PROFILES),
        description=r.get("description", str),
        packages=r.strs("packages"),
        gpu=r.get("gpu", bool),
        clashes=r.choices("clashes", PROFILES, required=False),
        forbidden=r.strs("forbidden", required=False),
        why=r.get("why", str, required=False, default=""),
        **r.fact(),
    )


def _evidence(r: _Row) -> Evidence:
    return Evidence(
        date=r.get("date", str),
        gpu=r.get("gpu", str),
        cc=r.version("cc") or "",
        driver=r.get("driver", str),
        os=r.choice("os", ("linux", "wsl2", "windows")),
        python=r.get("python", str),
        torch=r.get("torch", str),
        bitsandbytes=r.opt_str("bitsandbytes"),
        transformers=r.opt_str("transformers"),
        quant=r.opt_str("quant"),
        result=r.choice("result", ("pass", "fail")),
        detail=r.get("detail", str, required=False, default=""),
        **r.fact(),
    )


# --------------------------------------------------------------------------- files and overlays


def matrix_dirs(extra: Iterable[str | Path] | None = None) -> tuple[Path, ...]:
    """The shipped directory, then ``$ENVBUILDER_MATRIX_DIR`` (os.pathsep-separated), then ``extra``."""
    dirs = [BUILTIN_DIR]
    env = os.environ.get(ENV_MATRIX_DIR, "")
    dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs += [Path(p) for p in extra or ()]
    return tuple(dirs)


def _load_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        msg = f"{path}: not valid TOML: {exc}"
        raise MatrixError(msg, hint="fix the syntax at that line") from None
    except UnicodeDecodeError as exc:
        msg = f"{path}: not UTF-8 text (byte {exc.start})"
        raise MatrixError(msg, hint="a matrix file is TOML: save it as UTF-8") from None
    except OSError as exc:
        msg = f"{path}: cannot read: {exc.strerror}"
        raise MatrixError(msg, hint="check the path and its permissions") from None
    version = doc.get("schema-version")
    if not isinstance(version, int) or version not in SCHEMA_VERSIONS:
        msg = f"{path}: schema-version {version!r} is not supported (this envbuilder reads 1)"
        raise MatrixError(msg, hint="add `schema-version = 1` at the top, or upgrade envbuilder")
    return dict(doc)


# Rows that share a key replace each other when a directory is laid over another.
_KEYS: dict[str, Callable[[Mapping[str, Any]], object]] = {
    "arch": lambda r: r.get("cc"),
    "toolkit": lambda r: r.get("cuda"),
    "minor-compat": lambda r: r.get("major"),
    "release": lambda r: r.get("version"),
    "build": lambda r: (r.get("torch"), r.get("variant"), tuple(r.get("platforms", ()))),
    "loader": lambda r: r.get("name"),
    "sass": lambda r: (r.get("bnb"), r.get("cuda"), r.get("platform")),
    "package": lambda r: (r.get("name"), r.get("version")),
    "library": lambda r: (r.get("name"), r.get("version")),
    "profile": lambda r: r.get("name"),
    "run": lambda r: tuple(sorted((k, str(v)) for k, v in r.items())),
}


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if key in _KEYS and isinstance(value, list) and isinstance(base.get(key), list):
            keyfn = _KEYS[key]
            replaced = {keyfn(row): row for row in value}
            kept = [row for row in base[key] if keyfn(row) not in replaced]
            merged[key] = kept + list(value)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = {**base[key], **value}
        else:
            merged[key] = value
    return merged


_Docs = tuple[dict[str, dict[str, Any]], list[Path], str, dict[int, str]]


def _documents(dirs: Sequence[Path]) -> _Docs:
    docs: dict[str, dict[str, Any]] = {}
    used: list[Path] = []
    origins: dict[int, str] = {}
    digest = hashlib.sha256()
    for i, directory in enumerate(dirs):
        if not directory.is_dir():
            msg = f"matrix directory {directory} does not exist"
            raise MatrixError(msg, hint=f"create it, or unset {ENV_MATRIX_DIR} / drop --matrix-dir")
        for name in FILES:
            path = directory / f"{name}.toml"
            if not path.is_file():
                if i == 0:
                    msg = f"{path}: missing from the shipped matrix"
                    raise MatrixError(msg, hint="reinstall envbuilder (matrices/ must sit beside envbuilder/)")
                continue
            digest.update(f"{i}:{name}\0".encode())
            digest.update(path.read_bytes())
            doc = _load_file(path)
            # Shipped rows are read once, after merging; an overlay's rows are read on their own first, so
            # that errors name the overlay's file and its own row numbers, not the merged ones.
            _check_document(name, doc, f"{name}.toml" if i == 0 else str(path), rows=i > 0, origins=origins)
            docs[name] = _merge(docs[name], doc) if name in docs else doc
            used.append(path)
        unknown = sorted(p.stem for p in directory.glob("*.toml") if p.stem not in FILES)
        if unknown:
            near = difflib.get_close_matches(unknown[0], FILES, n=1)
            msg = f"{directory / (unknown[0] + '.toml')}: not a matrix file"
            raise MatrixError(msg, hint=f"did you mean {near[0]}.toml?" if near else f"use: {', '.join(FILES)}")
    return docs, used, digest.hexdigest(), origins


def _check_document(name: str, doc: Mapping[str, Any], label: str, *, rows: bool, origins: dict[int, str]) -> None:
    """Top-level keys must be known (a misspelt [[table]] would be ignored); with ``rows``, read the rows."""
    tables = _TABLES.get(name, {})
    top = _Row(doc, label, "")
    top.seen.update(("schema-version", *tables, *_PLAIN_KEYS.get(name, ())))
    top.done()
    if not rows:
        return
    for table, build in tables.items():
        for row in _rows(doc, label, table, required=False):
            _read_all([row], build)
            origins[id(row.data)] = row.origin
    if name == "driver":
        _forward(doc, label)


def load_matrix(extra_dirs: Iterable[str | Path] | None = None) -> Matrix:
    """Read, overlay, validate and cross-check the matrix."""
    docs, used, digest, origins = _documents(matrix_dirs(extra_dirs))

    def rows(doc: Mapping[str, Any], file: str, table: str, *, required: bool = True) -> list[_Row]:
        return _rows(doc, file, table, required=required, origins=origins)

    meta, gpus, drv, torch, bnb = (docs[n] for n in ("meta", "gpus", "driver", "torch", "bitsandbytes"))
    date = _Row(meta, "meta.toml", "").get("date", str)
    indexes = _Row(torch, "torch.toml", "").get("indexes", dict)
    matrix = Matrix(
        date=date,
        digest=digest,
        files=tuple(str(p) for p in used),
        archs=_read_all(rows(gpus, "gpus.toml", "arch"), _arch),
        toolkits=_read_all(rows(drv, "driver.toml", "toolkit"), _toolkit),
        minor_compat=_read_all(rows(drv, "driver.toml", "minor-compat"), _minor),
        forward_compat=_forward(drv, "driver.toml"),
        pytorch_index=str(indexes.get("pytorch", "")).rstrip("/"),
        torch_releases=_read_all(rows(torch, "torch.toml", "release"), _torch_release),
        torch_builds=_read_all(rows(torch, "torch.toml", "build"), _torch_build),
        bnb_releases=_read_all(rows(bnb, "bitsandbytes.toml", "release"), _bnb_release),
        bnb_loaders=_read_all(rows(bnb, "bitsandbytes.toml", "loader"), _bnb_loader),
        bnb_sass=_read_all(rows(bnb, "bitsandbytes.toml", "sass"), _bnb_sass),
        companions=_read_all(rows(docs["companions"], "companions.toml", "package"), _companion),
        quant=_read_all(rows(docs["quant"], "quant.toml", "library"), _quant),
        profiles=_read_all(rows(docs["profiles"], "profiles.toml", "profile"), _profile),
        evidence=_read_all(rows(docs["evidence"], "evidence.toml", "run", required=False), _evidence),
    )
    _cross_check(matrix)
    return matrix


def _bnb_loader(r: _Row) -> BnbLoader:
    return BnbLoader(name=r.choice("name", LOADERS), description=r.get("description", str), **r.fact())


# What each file may hold at its top level: arrays of [[rows]] (with their readers) and plain keys/tables.
_TABLES: dict[str, dict[str, Callable[[_Row], object]]] = {
    "gpus": {"arch": _arch},
    "driver": {"toolkit": _toolkit, "minor-compat": _minor},
    "torch": {"release": _torch_release, "build": _torch_build},
    "bitsandbytes": {"release": _bnb_release, "loader": _bnb_loader, "sass": _bnb_sass},
    "companions": {"package": _companion},
    "quant": {"library": _quant},
    "profiles": {"profile": _profile},
    "evidence": {"run": _evidence},
}
_PLAIN_KEYS: dict[str, tuple[str, ...]] = {"meta": ("date",), "torch": ("indexes",), "driver": ("forward-compat",)}


# --------------------------------------------------------------------------- cross-references


def _cross_check(m: Matrix) -> None:
    """References between files must resolve; each failure names the row and the fix."""
    _check_pypi_variants(m)
    _check_named_refs(m)
    _check_archs(m)
    _check_evidence(m)


def _check_archs(m: Matrix) -> None:
    """An architecture's CUDA range must not be empty, and a product name must mean one architecture."""
    from packaging.version import Version

    owner: dict[str, Arch] = {}
    for arch in m.archs:
        if arch.last_cuda and Version(arch.first_cuda) > Version(arch.last_cuda):
            msg = f"{arch.origin}: first-cuda {arch.first_cuda} is after last-cuda {arch.last_cuda} ({arch.sm})"
            raise MatrixError(msg, hint="swap them, or correct the one that is wrong")
        for names in arch.products.values():
            for name in names:
                key = " ".join(name.lower().split())
                other = owner.setdefault(key, arch)
                if other.cc != arch.cc:
                    msg = f"{arch.origin}.products: {name!r} is listed under {other.sm} ({other.origin}) and {arch.sm}"
                    raise MatrixError(msg, hint="a product has one architecture: keep it under the right one")


def _check_pypi_variants(m: Matrix) -> None:
    for release in m.torch_releases:
        variants = {b.variant for b in m.builds_of(release)}
        for platform, variant in release.pypi.items():
            if variant not in variants:
                msg = (
                    f"{release.origin}.pypi: variant {variant!r} for {platform} has no [[build]] row "
                    f"covering torch {release.version}"
                )
                hint = f"add a [[build]] row for {variant} whose `torch` range holds {release.version}"
                raise MatrixError(msg, hint=hint)


def _check_named_refs(m: Matrix) -> None:
    loaders = {loader.name for loader in m.bnb_loaders}
    for rel in m.bnb_releases:
        if rel.loader not in loaders:
            msg = f"{rel.origin}.loader: {rel.loader!r} has no [[loader]] row"
            raise MatrixError(msg, hint=f"add [[loader]] name = {rel.loader!r} to bitsandbytes.toml")
    names = {p.name for p in m.profiles}
    for profile in m.profiles:
        for clash in profile.clashes:
            if clash not in names:
                msg = f"{profile.origin}.clashes: profile {clash!r} is not defined"
                raise MatrixError(msg, hint=f"add a [[profile]] named {clash!r} or drop it")
    for arch in m.archs:
        if not arch.products:
            msg = f"{arch.origin}.products: {arch.sm} has no product names"
            raise MatrixError(msg, hint="list at least one product so names like 'RTX 4090' resolve")


def _check_evidence(m: Matrix) -> None:
    for run in m.evidence:
        if m.torch_release(run.torch) is None:
            msg = f"{run.origin}.torch: torch {run.torch} is not a [[release]] in torch.toml"
            raise MatrixError(msg, hint="add the release, or correct the version")
        if run.bitsandbytes and m.bnb_release(run.bitsandbytes) is None:
            msg = f"{run.origin}.bitsandbytes: {run.bitsandbytes} is not a [[release]] in bitsandbytes.toml"
            raise MatrixError(msg, hint="add the release, or correct the version")
