"""Load and validate the matrix (``matrices/*.toml``) into frozen dataclasses.

The schema is documented in ``matrices/SCHEMA.md``. Every row carries ``source`` and ``confidence``;
unknown keys are refused with a "did you mean"; every error names the file, the dotted key path and the fix.
Users can lay their own directories over the shipped one: a row with the same key replaces the shipped row,
a new row is added.

The GPU product table (``nvidia.ids``, the PCI ID database's NVIDIA GPUs, and the chip rules of
``gpu-chips.toml``) is read only when a GPU is named by product or PCI id (``Matrix.gpu_table()``): planning for
``sm_89`` never pays for two thousand devices.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast, overload

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from envbuilder.model.errors import MatrixError
from envbuilder.model.types import (
    CONFIDENCES,
    CPU_BACKENDS,
    LOADERS,
    PLATFORMS,
    PROFILES,
    QUANT_KERNELS,
    QUANT_STATUSES,
    SEGMENTS,
    Confidence,
    CpuBackend,
    Loader,
    ProfileName,
    QuantKernels,
    QuantStatus,
    Segment,
)

if TYPE_CHECKING:
    from envbuilder.model.gpu_table import GpuTable
    from envbuilder.model.pci_ids import PciIds

__all__ = [
    "BUILTIN_DIR",
    "ENV_MATRIX_DIR",
    "FILES",
    "FORMAT_CPU",
    "GPU_FILES",
    "IDS_FILE",
    "IMAGE_FILES",
    "QUANT_METHODS",
    "SCHEMA_VERSIONS",
    "SMOKE_FILES",
    "Advisory",
    "Arch",
    "BnbFeature",
    "BnbFirst",
    "BnbLimit",
    "BnbLoader",
    "BnbRelease",
    "BnbSass",
    "ChipRule",
    "Companion",
    "CompatBase",
    "CpuPath",
    "ExtensionModule",
    "Fact",
    "FormatCpu",
    "ForwardCompat",
    "GpuRun",
    "L",
    "Matrix",
    "MinorCompat",
    "Profile",
    "ProfileFormat",
    "QuantLib",
    "QuantMethod",
    "Quantizer",
    "T",
    "Toolkit",
    "TorchBuild",
    "TorchRelease",
    "WheelRef",
    "format_json",
    "load_matrix",
    "matrix_dirs",
]

SCHEMA_VERSIONS = range(1, 2)
# Installed from a wheel, the matrix is the package data envbuilder/matrices/; in a checkout (or an editable
# install) it is the top-level matrices/ beside envbuilder/.
_PACKAGE = Path(__file__).resolve().parent.parent  # envbuilder/ (this file is envbuilder/model/matrix.py)
BUILTIN_DIR = _PACKAGE / "matrices" if (_PACKAGE / "matrices" / "meta.toml").is_file() else _PACKAGE.parent / "matrices"
ENV_MATRIX_DIR = "ENVBUILDER_MATRIX_DIR"
FILES = (
    "meta",
    "gpus",
    "driver",
    "torch",
    "bitsandbytes",
    "companions",
    "quant",
    "quantizers",
    "profiles",
    "evidence",
    "advisories",
)
GPU_FILES = ("gpu-chips",)  # read with the product table, on first use (Matrix.gpu_table)
IDS_FILE = "nvidia.ids"  # generated: `envbuilder matrix refresh --pci-ids`
SMOKE_FILES = ("smoke",)  # the smoke program's bounds and import names, read by envbuilder.model.smoke
IMAGE_FILES = ("images",)  # image digests and action commits of generated files, read by envbuilder.model.images
# quant_method keys of transformers' AUTO_QUANTIZER_MAPPING (quantizers/auto.py) that the matrix records
QUANT_METHODS = ("gptq", "awq", "compressed-tensors", "bitsandbytes_4bit", "bitsandbytes_8bit")
QuantMethod = Literal["gptq", "awq", "compressed-tensors", "bitsandbytes_4bit", "bitsandbytes_8bit"]
# "yes": transformers checks no device (the kernel library decides); "conditional": only under the row's note
CpuPath = Literal["yes", "no", "conditional"]
# a profile's CPU path for a format: run here ("proven"), impossible ("no"), or not yet run ("unproven")
FORMAT_CPU = ("proven", "no", "unproven")
FormatCpu = Literal["proven", "no", "unproven"]
T = TypeVar("T")
L = TypeVar("L", bound=str)  # a member of a closed set (model.types)
_TOML_TYPES: dict[type, str] = {
    str: "string",
    int: "integer",
    float: "float",
    bool: "boolean",
    list: "array",
    dict: "table",
}


def _close_matches(word: str, possibilities: Iterable[str], n: int) -> list[str]:
    """difflib's "did you mean", imported only when a key or value is wrong (start-up, bench/RESULTS-resolve.md)."""
    import difflib

    return difflib.get_close_matches(word, possibilities, n=n)


# One object per distinct range or requirement text (the rows repeat a few dozen ranges hundreds of times): the
# compiled matrix stores and rebuilds each once, and the resolver's range checks, kept by the range's identity
# (rules._version.within), are answered once per range. Nothing changes them after parsing.
@cache
def _specifier_set(text: str) -> SpecifierSet:
    return SpecifierSet(text)


@cache
def _requirement(text: str) -> Requirement:
    return Requirement(text)


_ANY = SpecifierSet()


def _sha256() -> Any:
    import hashlib  # OpenSSL's loader: only a cache miss reads and digests the files

    return hashlib.sha256()


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
    products: Mapping[Segment, tuple[str, ...]] = field(default_factory=dict)  # only names the PCI database lacks

    @property
    def sm(self) -> str:
        return "sm_" + self.cc.replace(".", "")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChipRule(Fact):
    """Dies (``AD107``) whose every device has compute capability ``cc``; ``arch`` names an architecture that
    gpus.toml does not hold (Fermi, the first Kepler dies)."""

    chips: tuple[str, ...]
    cc: str
    arch: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Toolkit(Fact):
    cuda: str
    linux: str | None  # None: the toolkit exists but its minimum driver could not be read (no native claim)
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
    loader: Loader
    cpu: CpuBackend
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
class BnbLimit(Fact):
    """What releases in ``bnb`` need of ``package`` (a system library such as glibc, or a Python package) beyond
    their wheel's metadata; ``cuda`` (empty: every library) and ``platform`` (None: every one) narrow it."""

    bnb: SpecifierSet
    package: str
    needs: SpecifierSet
    cuda: tuple[str, ...] = ()
    platform: str | None = None

    def applies(self, bnb: str, *, cuda: str | None = None, platform: str | None = None) -> bool:
        """Does this limit hold for release ``bnb`` with the library of ``cuda`` on ``platform``?"""
        if not self.bnb.contains(bnb, prereleases=True):
            return False
        if self.cuda and cuda not in self.cuda:
            return False
        return self.platform is None or platform == self.platform


@dataclass(frozen=True, slots=True, kw_only=True)
class BnbFirst(Fact):
    """The first bitsandbytes release with a native build for ``platform``."""

    platform: str
    version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BnbFeature(Fact):
    """The first bitsandbytes release with a feature (``linear4bit``: bnb.nn.Linear4bit, 4-bit quantization)."""

    name: str
    since: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtensionModule(Fact):
    """A compiled extension module and the PyPI package whose wheels ship it (``exllama_kernels``: auto-gptq)."""

    module: str
    package: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Companion(Fact):
    """A pinned release of a pure-Python companion. ``requires_dist`` is what its metadata declares (None: not
    read, so the row is unconfirmed); ``torch``/``requires`` are constraints it enforces beyond that (an
    import-time floor, a tested cap), each with the row's source."""

    name: str
    version: str
    python: SpecifierSet
    torch: SpecifierSet | None = None
    requires: Mapping[str, SpecifierSet] = field(default_factory=dict)
    profiles: tuple[str, ...] = ()
    requires_dist: tuple[Requirement, ...] | None = None
    extras: tuple[str, ...] = ()  # the extras the profiles rely on ("torch" for transformers)

    @property
    def confirmed(self) -> bool:
        return self.confidence == "confirmed" and self.requires_dist is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantLib(Fact):
    name: str
    version: str
    status: QuantStatus
    profile: ProfileName
    python: SpecifierSet
    torch: SpecifierSet | None = None
    requires: Mapping[str, SpecifierSet] = field(default_factory=dict)
    kernels: QuantKernels = "none"
    min_cc: str | None = None
    platforms: tuple[str, ...] = ()
    requires_dist: tuple[Requirement, ...] | None = None
    extras: tuple[str, ...] = ()

    @property
    def confirmed(self) -> bool:
        return self.confidence == "confirmed" and self.requires_dist is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Advisory(Fact):
    """A published security advisory against releases of a package the matrix pins."""

    id: str
    package: str
    affected: SpecifierSet
    fixed: str | None
    summary: str


@dataclass(frozen=True, slots=True, kw_only=True)
class WheelRef:
    """A wheel a fact was read from: its PyPI file name and sha256."""

    file: str
    sha256: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Quantizer(Fact):
    """What transformers' quantizer for one quant_method demands before it loads a checkpoint."""

    method: QuantMethod
    transformers: SpecifierSet
    requires: Mapping[str, SpecifierSet] = field(default_factory=dict)
    one_of: Mapping[str, SpecifierSet] = field(default_factory=dict)  # at least one of these installed
    cpu: CpuPath = "conditional"
    errors: tuple[str, ...] = ()  # the messages it raises, verbatim, in the order it checks (what a doctor matches)
    paths: tuple[str, ...] = ()  # files in the wheel the requirements were read from
    wheels: tuple[WheelRef, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileFormat(Fact):
    """Whether a profile's environment loads / makes checkpoints of one format, and through what."""

    format: QuantMethod
    load: bool
    make: bool
    cpu: FormatCpu = "unproven"
    via: str = ""


def format_json(f: ProfileFormat) -> dict[str, object]:
    """``--json``: one format row of a profile (a plan's, a profile's list)."""
    return {"format": f.format, "load": f.load, "make": f.make, "cpu": f.cpu, "via": f.via, "source": f.source}


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile(Fact):
    name: ProfileName
    description: str
    packages: tuple[str, ...]
    gpu: bool
    clashes: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    why: str = ""
    formats: tuple[ProfileFormat, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuRun(Fact):
    """A smoke test run on a real GPU (evidence.toml ``[[run]]``): the stack it ran there and how it ended.

    (The doctor's ``Evidence`` is what is known about one environment or log.)
    """

    date: str
    gpu: str
    cc: str
    driver: str
    os: str
    machine: str  # the CPU architecture it ran on: "x86_64" | "aarch64"
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
    bnb_limits: tuple[BnbLimit, ...] = ()
    bnb_first: tuple[BnbFirst, ...] = ()
    bnb_features: tuple[BnbFeature, ...] = ()
    extensions: tuple[ExtensionModule, ...] = ()
    companions: tuple[Companion, ...]
    quant: tuple[QuantLib, ...]
    profiles: tuple[Profile, ...]
    evidence: tuple[GpuRun, ...]
    advisories: tuple[Advisory, ...] = ()
    quantizers: tuple[Quantizer, ...] = ()
    gpu_files: tuple[Path, ...] = ()  # gpu-chips.toml, shipped first then overlays: read by gpu_table()
    ids_files: tuple[Path, ...] = ()  # nvidia.ids likewise
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def gpu_table(self) -> GpuTable:
        """The product table (every NVIDIA GPU of the PCI database with its compute capability), read once."""
        if "table" not in self._cache:
            self._cache.update(_gpu_facts(self))
        table: GpuTable = self._cache["table"]
        return table

    def chip_rules(self) -> dict[str, ChipRule]:
        """Die -> its rule (a later directory's rule for a die replacing an earlier one's)."""
        self.gpu_table()
        rules: dict[str, ChipRule] = self._cache["rules"]
        return rules

    def cc_name(self, cc: str) -> str | None:
        """The architecture's name for a compute capability: gpus.toml's, else a chip rule's (Fermi...)."""
        arch = self.arch(cc)
        if arch is not None:
            return arch.name
        return next((r.arch for r in self.chip_rules().values() if r.cc == cc and r.arch), None)

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

    def bnb_limit(
        self, package: str, bnb: str, *, cuda: str | None = None, platform: str | None = None
    ) -> BnbLimit | None:
        """The matrix's limit on ``package`` for bitsandbytes ``bnb`` (with that library, on that platform)."""
        return next(
            (x for x in self.bnb_limits if x.package == package and x.applies(bnb, cuda=cuda, platform=platform)),
            None,
        )

    def bnb_first_on(self, platform: str) -> BnbFirst | None:
        """The first bitsandbytes release with a native build for ``platform`` (None: not recorded)."""
        return next((f for f in self.bnb_first if f.platform == platform), None)

    def bnb_feature_since(self, name: str) -> str | None:
        """The first bitsandbytes release with feature ``name`` (None: not recorded)."""
        return next((f.since for f in self.bnb_features if f.name == name), None)

    def extension_owner(self, module: str) -> str | None:
        """The package that ships compiled extension ``module`` (None: the matrix does not know it)."""
        return next((e.package for e in self.extensions if e.module == module), None)

    def companion_requires(self, name: str, version: str, package: str) -> SpecifierSet | None:
        """What companion ``name`` at ``version`` requires of ``package`` beyond its metadata (transformers 5's
        bitsandbytes floor): the nearest row at or below ``version`` that says (a later release keeps the
        constraint until a row says otherwise), else the lowest of the same major; None: no row says."""
        target = Version(version)
        rows = sorted((c for c in self.companions if c.name == name and package in c.requires), key=_version_of)
        lower = [c for c in rows if Version(c.version) <= target]
        same = [c for c in rows if Version(c.version).major == target.major]
        row = lower[-1] if lower else (same[0] if same else None)
        return row.requires[package] if row else None


def _version_of(c: Companion) -> Version:
    return Version(c.version)


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

    @overload
    def get(self, key: str, kind: type[T], *, required: Literal[True] = True) -> T: ...
    @overload
    def get(self, key: str, kind: type[T], *, required: bool = True, default: T) -> T: ...
    @overload
    def get(self, key: str, kind: type[T], *, required: bool) -> T | None: ...
    def get(self, key: str, kind: type[T], *, required: bool = True, default: T | None = None) -> T | None:
        """``key``'s value, of type ``kind``; absent: an error if ``required``, else ``default`` (None if none)."""
        self.seen.add(key)
        if key not in self.data:
            if required:
                # A misspelt required key shows up as missing; name the misspelling, it is the real error.
                spelt = [k for k in self.data if k not in self.seen]
                typo = _close_matches(key, spelt, n=1)
                if typo:
                    raise self._fail(typo[0], "unknown key", f"did you mean {key!r}?")
                raise self._fail(key, "missing key", f"add `{key} = ...` (see matrices/SCHEMA.md)")
            return default
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

    def choice(self, key: str, allowed: Sequence[L], *, required: bool = True, default: L | None = None) -> L:
        value = self.get(key, str, required=required, default=default)
        if value is not None and value not in allowed:
            raise self._fail(key, f"unknown value {value!r}", f"use one of: {', '.join(allowed)}")
        return cast("L", value)

    def choices(self, key: str, allowed: Sequence[str], *, required: bool = True) -> tuple[str, ...]:
        values = self.strs(key, required=required)
        for i, value in enumerate(values):
            if value not in allowed:
                near = _close_matches(value, allowed, n=1)
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
            return _specifier_set(value)
        except InvalidSpecifier:
            raise self._fail(key, f"not a version range: {value!r}", 'write it like ">=2.4,<3"') from None

    def requirements(self, key: str) -> tuple[Requirement, ...] | None:
        """A list of PEP 508 requirement strings (Requires-Dist lines), or None when the key is absent."""
        if key not in self.data:
            self.seen.add(key)
            return None
        out = []
        for i, text in enumerate(self.strs(key)):
            try:
                out.append(_requirement(text))
            except InvalidRequirement as exc:
                raise self._fail(
                    f"{key}[{i}]", f"not a requirement: {text!r} ({exc})", 'write it like "torch>=2.6"'
                ) from None
        return tuple(out)

    def spec_map(self, key: str) -> dict[str, SpecifierSet]:
        table = self.get(key, dict, required=False, default={})
        return {name: self._parse_spec(f"{key}.{name}", str(spec)) for name, spec in table.items()}

    def fact(self) -> dict[str, Any]:
        return {
            "source": self.get("source", str),
            "confidence": self.choice("confidence", CONFIDENCES),
            "verified": self.opt_str("verified"),
            "note": self.opt_str("note"),
            "origin": self.origin,
        }

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.seen)
        if unknown:
            key = unknown[0]
            near = _close_matches(key, sorted(self.seen), n=1)
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
        linux=r.version("linux", required=False),
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
            near = _close_matches(platform, PLATFORMS, n=1)
            raise sub._fail(platform, "unknown platform", f"did you mean {near[0]!r}?" if near else "")
    pypi = {p: sub.get(p, str) for p in pypi_table}
    return TorchRelease(
        version=r.version("version") or "",
        python=r.spec("python") or _ANY,
        pypi=pypi,
        released=r.opt_str("released"),
        **r.fact(),
    )


def _torch_build(r: _Row) -> TorchBuild:
    variant = r.get("variant", str)
    return TorchBuild(
        torch=r.spec("torch") or _ANY,
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
        python=r.spec("python") or _ANY,
        torch=r.spec("torch") or _ANY,
        platforms=r.choices("platforms", PLATFORMS),
        cuda_libs=r.versions("cuda-libs"),
        loader=r.choice("loader", LOADERS),
        cpu=r.choice("cpu", CPU_BACKENDS),
        avoid=r.opt_str("avoid"),
        **r.fact(),
    )


def _bnb_sass(r: _Row) -> BnbSass:
    return BnbSass(
        bnb=r.spec("bnb") or _ANY,
        cuda=r.spec("cuda") or _ANY,
        platform=r.choice("platform", PLATFORMS),
        sass=r.versions("sass"),
        ptx=r.version("ptx", required=False),
        **r.fact(),
    )


def _bnb_limit(r: _Row) -> BnbLimit:
    return BnbLimit(
        bnb=r.spec("bnb") or _ANY,
        package=r.get("package", str),
        needs=r.spec("needs") or _ANY,
        cuda=r.versions("cuda") if "cuda" in r.data else (),
        platform=r.choice("platform", PLATFORMS) if "platform" in r.data else None,
        **r.fact(),
    )


def _bnb_first(r: _Row) -> BnbFirst:
    return BnbFirst(platform=r.choice("platform", PLATFORMS), version=r.version("version") or "", **r.fact())


def _bnb_feature(r: _Row) -> BnbFeature:
    return BnbFeature(name=r.get("name", str), since=r.version("since") or "", **r.fact())


def _extension(r: _Row) -> ExtensionModule:
    return ExtensionModule(module=r.get("module", str), package=r.get("package", str), **r.fact())


def _companion(r: _Row) -> Companion:
    return Companion(
        name=r.get("name", str),
        version=r.version("version") or "",
        python=r.spec("python") or _ANY,
        torch=r.spec("torch", required=False),
        requires=r.spec_map("requires"),
        profiles=r.choices("profiles", PROFILES, required=False),
        requires_dist=r.requirements("requires-dist"),
        extras=r.strs("extras", required=False),
        **r.fact(),
    )


def _quant(r: _Row) -> QuantLib:
    return QuantLib(
        name=r.get("name", str),
        version=r.version("version") or "",
        status=r.choice("status", QUANT_STATUSES),
        profile=r.choice("profile", PROFILES),
        python=r.spec("python") or _ANY,
        torch=r.spec("torch", required=False),
        requires=r.spec_map("requires"),
        kernels=r.choice("kernels", QUANT_KERNELS, required=False, default="none"),
        min_cc=r.version("min-cc", required=False),
        platforms=r.choices("platforms", PLATFORMS, required=False),
        requires_dist=r.requirements("requires-dist"),
        extras=r.strs("extras", required=False),
        **r.fact(),
    )


def _advisory(r: _Row) -> Advisory:
    return Advisory(
        id=r.get("id", str),
        package=r.get("package", str),
        affected=r.spec("affected") or _ANY,
        fixed=r.version("fixed", required=False),
        summary=r.get("summary", str),
        **r.fact(),
    )


def _wheel_ref(r: _Row, i: int, item: object, spec: SpecifierSet) -> WheelRef:
    """One `wheels` entry: a transformers wheel inside the row's range, with a sha256 digest."""
    where = f"{r.path}.wheels[{i}]"
    if not isinstance(item, dict):
        raise r._fail(f"wheels[{i}]", "not a table", 'write { file = "transformers-...whl", sha256 = "..." }')
    sub = _Row(item, r.file, where)
    wheel = WheelRef(file=sub.get("file", str), sha256=sub.get("sha256", str))
    sub.done()
    parts = wheel.file.split("-")
    if len(parts) < 3 or parts[0] != "transformers" or not spec.contains(parts[1], prereleases=True):
        msg = f"{r.file}: {wheel.file!r} is not a transformers wheel inside {str(spec)!r} in '{where}.file'"
        raise MatrixError(msg, hint="name the wheel whose source was read: transformers-5.24.0-py3-none-any.whl")
    if len(wheel.sha256) != 64 or any(c not in "0123456789abcdef" for c in wheel.sha256):
        raise sub._fail("sha256", "not a sha256 hex digest", "write the 64 lowercase hex digits of `sha256sum`")
    return wheel


def _quantizer(r: _Row) -> Quantizer:
    spec = r.spec("transformers") or _ANY
    wheels = tuple(_wheel_ref(r, i, item, spec) for i, item in enumerate(r.get("wheels", list)))
    return Quantizer(
        method=cast("QuantMethod", r.choice("method", QUANT_METHODS)),
        transformers=spec,
        requires=r.spec_map("requires"),
        one_of=r.spec_map("one-of"),
        cpu=cast("CpuPath", r.choice("cpu", ("yes", "no", "conditional"))),
        errors=r.strs("errors", required=False),
        paths=r.strs("paths"),
        wheels=wheels,
        **r.fact(),
    )


def _profile_format(r: _Row) -> ProfileFormat:
    return ProfileFormat(
        format=cast("QuantMethod", r.choice("format", QUANT_METHODS)),
        load=r.get("load", bool),
        make=r.get("make", bool),
        cpu=cast("FormatCpu", r.choice("cpu", FORMAT_CPU, required=False, default="unproven")),
        via=r.get("via", str, required=False, default=""),
        **r.fact(),
    )


def _profile(r: _Row) -> Profile:
    items = r.get("formats", list, required=False, default=[])
    formats = _read_all([_Row(f, r.file, f"{r.path}.formats[{i}]") for i, f in enumerate(items)], _profile_format)
    return Profile(
        formats=formats,
        name=r.choice("name", PROFILES),
        description=r.get("description", str),
        packages=r.strs("packages"),
        gpu=r.get("gpu", bool),
        clashes=r.choices("clashes", PROFILES, required=False),
        forbidden=r.strs("forbidden", required=False),
        why=r.get("why", str, required=False, default=""),
        **r.fact(),
    )


def _evidence(r: _Row) -> GpuRun:
    return GpuRun(
        date=r.get("date", str),
        gpu=r.get("gpu", str),
        cc=r.version("cc") or "",
        driver=r.get("driver", str),
        os=r.choice("os", ("linux", "wsl2", "windows")),
        machine=r.choice("machine", ("x86_64", "aarch64")),
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
    # Imported here: a command that finds the compiled matrix (edge/matrix_cache.py) parses no TOML.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib
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
    "limit": lambda r: (r.get("bnb"), r.get("package"), r.get("platform"), tuple(r.get("cuda", ()))),
    "first": lambda r: r.get("platform"),
    "feature": lambda r: r.get("name"),
    "extension": lambda r: r.get("module"),
    "package": lambda r: (r.get("name"), r.get("version")),
    "library": lambda r: (r.get("name"), r.get("version")),
    "quantizer": lambda r: (r.get("method"), r.get("transformers")),
    "profile": lambda r: r.get("name"),
    "run": lambda r: tuple(sorted((k, str(v)) for k, v in r.items())),
    "advisory": lambda r: (r.get("id"), r.get("package")),
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


@dataclass(slots=True)
class _Docs:
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    used: list[Path] = field(default_factory=list)
    origins: dict[int, str] = field(default_factory=dict)
    gpu_files: list[Path] = field(default_factory=list)
    ids_files: list[Path] = field(default_factory=list)
    digest: Any = field(default_factory=_sha256)


def _documents(dirs: Sequence[Path]) -> _Docs:
    found = _Docs()
    for i, directory in enumerate(dirs):
        if not directory.is_dir():
            msg = f"matrix directory {directory} does not exist"
            raise MatrixError(msg, hint=f"create it, or unset {ENV_MATRIX_DIR} / drop --matrix-dir")
        for name in FILES:
            path = directory / f"{name}.toml"
            if not _present(path, shipped=i == 0):
                continue
            found.digest.update(f"{i}:{name}\0".encode())
            found.digest.update(path.read_bytes())
            doc = _load_file(path)
            # Shipped rows are read once, after merging; an overlay's rows are read on their own first, so
            # that errors name the overlay's file and its own row numbers, not the merged ones.
            label = f"{name}.toml" if i == 0 else str(path)
            _check_document(name, doc, label, rows=i > 0, origins=found.origins)
            found.docs[name] = _merge(found.docs[name], doc) if name in found.docs else doc
            found.used.append(path)
        # The GPU product files count in the digest, but are parsed only when a product name is looked up.
        for path, into in [*((directory / f"{n}.toml", found.gpu_files) for n in GPU_FILES),
                           (directory / IDS_FILE, found.ids_files)]:  # fmt: skip
            if _present(path, shipped=i == 0):
                found.digest.update(f"{i}:{path.name}\0".encode())
                found.digest.update(path.read_bytes())
                into.append(path)
                found.used.append(path)
        _refuse_unknown_files(directory)
    return found


def _present(path: Path, *, shipped: bool) -> bool:
    if path.is_file():
        return True
    if shipped:
        msg = f"{path}: missing from the shipped matrix"
        raise MatrixError(msg, hint="reinstall envbuilder (matrices/ must sit beside envbuilder/)")
    return False


def _refuse_unknown_files(directory: Path) -> None:
    known = (*FILES, *GPU_FILES, *SMOKE_FILES, *IMAGE_FILES)
    unknown = sorted(p.stem for p in directory.glob("*.toml") if p.stem not in known)
    if unknown:
        near = _close_matches(unknown[0], known, n=1)
        msg = f"{directory / (unknown[0] + '.toml')}: not a matrix file"
        raise MatrixError(msg, hint=f"did you mean {near[0]}.toml?" if near else f"use: {', '.join(known)}")


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
    found = _documents(matrix_dirs(extra_dirs))
    docs = found.docs

    def rows(doc: Mapping[str, Any], file: str, table: str, *, required: bool = True) -> list[_Row]:
        return _rows(doc, file, table, required=required, origins=found.origins)

    meta, gpus, drv, torch, bnb = (docs[n] for n in ("meta", "gpus", "driver", "torch", "bitsandbytes"))
    date = _Row(meta, "meta.toml", "").get("date", str)
    matrix = Matrix(
        date=date,
        digest=found.digest.hexdigest(),
        files=tuple(str(p) for p in found.used),
        archs=_read_all(rows(gpus, "gpus.toml", "arch"), _arch),
        toolkits=_read_all(rows(drv, "driver.toml", "toolkit"), _toolkit),
        minor_compat=_read_all(rows(drv, "driver.toml", "minor-compat"), _minor),
        forward_compat=_forward(drv, "driver.toml"),
        pytorch_index=_pytorch_index(torch),
        torch_releases=_read_all(rows(torch, "torch.toml", "release"), _torch_release),
        torch_builds=_read_all(rows(torch, "torch.toml", "build"), _torch_build),
        bnb_releases=_read_all(rows(bnb, "bitsandbytes.toml", "release"), _bnb_release),
        bnb_loaders=_read_all(rows(bnb, "bitsandbytes.toml", "loader"), _bnb_loader),
        bnb_sass=_read_all(rows(bnb, "bitsandbytes.toml", "sass"), _bnb_sass),
        bnb_limits=_read_all(rows(bnb, "bitsandbytes.toml", "limit", required=False), _bnb_limit),
        bnb_first=_read_all(rows(bnb, "bitsandbytes.toml", "first", required=False), _bnb_first),
        bnb_features=_read_all(rows(bnb, "bitsandbytes.toml", "feature", required=False), _bnb_feature),
        extensions=_read_all(rows(docs["quant"], "quant.toml", "extension", required=False), _extension),
        companions=_read_all(rows(docs["companions"], "companions.toml", "package"), _companion),
        quant=_read_all(rows(docs["quant"], "quant.toml", "library"), _quant),
        profiles=_read_all(rows(docs["profiles"], "profiles.toml", "profile"), _profile),
        evidence=_read_all(rows(docs["evidence"], "evidence.toml", "run", required=False), _evidence),
        gpu_files=tuple(found.gpu_files),
        ids_files=tuple(found.ids_files),
        advisories=_read_all(rows(docs["advisories"], "advisories.toml", "advisory", required=False), _advisory),
        quantizers=_read_all(rows(docs["quantizers"], "quantizers.toml", "quantizer", required=False), _quantizer),
    )
    _cross_check(matrix)
    return matrix


def _pytorch_index(torch: Mapping[str, Any]) -> str:
    """torch.toml's ``indexes.pytorch``: the PyTorch index (variant index ``<it>/<variant>``), the default of
    ``--pytorch-index`` and of a plan's sources; the one place its URL is written."""
    r = _Row(_Row(torch, "torch.toml", "").get("indexes", dict), "torch.toml", "indexes")
    url = r.get("pytorch", str)
    if not r.get("source", str).strip():  # a fact carries its source
        raise r._fail("source", "empty", "say where the index URL is documented")
    if not url.startswith(("https://", "http://")) or any(c.isspace() for c in url):
        raise r._fail("pytorch", f"not an index URL: {url!r}", 'write it like "https://download.pytorch.org/whl"')
    return url.rstrip("/")


def _bnb_loader(r: _Row) -> BnbLoader:
    return BnbLoader(name=r.choice("name", LOADERS), description=r.get("description", str), **r.fact())


# What each file may hold at its top level: arrays of [[rows]] (with their readers) and plain keys/tables.
_TABLES: dict[str, dict[str, Callable[[_Row], object]]] = {
    "gpus": {"arch": _arch},
    "driver": {"toolkit": _toolkit, "minor-compat": _minor},
    "torch": {"release": _torch_release, "build": _torch_build},
    "bitsandbytes": {
        "release": _bnb_release,
        "loader": _bnb_loader,
        "sass": _bnb_sass,
        "limit": _bnb_limit,
        "first": _bnb_first,
        "feature": _bnb_feature,
    },
    "companions": {"package": _companion},
    "quant": {"library": _quant, "extension": _extension},
    "quantizers": {"quantizer": _quantizer},
    "profiles": {"profile": _profile},
    "evidence": {"run": _evidence},
    "advisories": {"advisory": _advisory},
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


def _check_evidence(m: Matrix) -> None:
    for run in m.evidence:
        if m.torch_release(run.torch) is None:
            msg = f"{run.origin}.torch: torch {run.torch} is not a [[release]] in torch.toml"
            raise MatrixError(msg, hint="add the release, or correct the version")
        if run.bitsandbytes and m.bnb_release(run.bitsandbytes) is None:
            msg = f"{run.origin}.bitsandbytes: {run.bitsandbytes} is not a [[release]] in bitsandbytes.toml"
            raise MatrixError(msg, hint="add the release, or correct the version")


# --------------------------------------------------------------------------- the GPU product table (read lazily)


def _gpu_facts(m: Matrix) -> dict[str, Any]:
    """The chip rules, the segment patterns and the PCI devices, laid over each other, as a ``GpuTable``."""
    from envbuilder.model import gpu_table  # the table's code loads with the table

    rules: dict[str, ChipRule] = {}
    patterns: dict[str, re.Pattern[str]] = {}
    for path in m.gpu_files:
        label = path.name if path.parent == BUILTIN_DIR else str(path)
        doc = _load_file(path)
        top = _Row(doc, label, "")
        top.seen.update(("schema-version", "chip", "segments"))
        top.done()
        for rule in _read_all(_rows(doc, label, "chip", required=path.parent == BUILTIN_DIR), _chip):
            rules.update(dict.fromkeys(rule.chips, rule))  # a later directory's rule replaces a chip's
        patterns.update(_segments(doc, label))
    for rule in rules.values():
        if rule.arch is None and m.arch(rule.cc) is None:
            msg = f"{rule.origin}.cc: compute capability {rule.cc} is not in gpus.toml"
            raise MatrixError(msg, hint='add `arch = "<architecture name>"` to the row, or the [[arch]] to gpus.toml')
    hand = [
        gpu_table.HandProduct(name, arch.cc, segment, arch.origin)
        for arch in m.archs
        for segment, names in arch.products.items()
        for name in names
    ]
    db = _pci_devices(m.ids_files)
    table = gpu_table.build_table(db, {chip: r.cc for chip, r in rules.items()}, patterns, hand)
    _check_hand_products(m, table)
    return {"table": table, "rules": rules}


def _check_hand_products(m: Matrix, table: GpuTable) -> None:
    """A product named by hand must not be a PCI device of another architecture ('RTX 4090' under sm_86)."""
    from envbuilder.model.gpu_table import match_name

    for arch in m.archs:
        for name in (n for names in arch.products.values() for n in names):
            found = match_name(table, name)
            clash = next((p for p in found.products if p.device and p.cc != arch.cc), None) if found.exact else None
            if clash is not None and clash.cc is not None:
                sm = "sm_" + clash.cc.replace(".", "")
                msg = (
                    f"{arch.origin}.products: {name!r} is listed under {arch.sm}, but the PCI ID database's "
                    f"{clash.label} ({clash.pci_id}) is {sm}"
                )
                raise MatrixError(msg, hint="a product has one architecture: drop the name (the database has it)")


def _chip(r: _Row) -> ChipRule:
    from envbuilder.model.gpu_table import GPU_CHIP

    chips = r.strs("chips")
    for i, chip in enumerate(chips):
        if not GPU_CHIP.match(chip):
            raise r._fail(f"chips[{i}]", f"not a chip name: {chip!r}", 'write the die as pci.ids does, e.g. "AD107"')
    if len(set(chips)) != len(chips):
        raise r._fail("chips", "a chip listed twice", "list each die once")
    return ChipRule(chips=chips, cc=r.version("cc") or "", arch=r.opt_str("arch"), **r.fact())


def _segments(doc: Mapping[str, Any], label: str) -> dict[str, re.Pattern[str]]:
    from envbuilder.model.gpu_table import SEGMENT_ORDER

    table = doc.get("segments")
    if table is None:
        return {}
    r = _Row(table, label, "segments") if isinstance(table, dict) else None
    if r is None:
        msg = f"{label}: 'segments' must be a table"
        raise MatrixError(msg, hint="write it as [segments] with one pattern per segment")
    r.fact()
    out: dict[str, re.Pattern[str]] = {}
    for segment in SEGMENT_ORDER:
        text = r.opt_str(segment)
        if text is None:
            continue
        try:
            out[segment] = re.compile(text)
        except re.error as exc:
            raise r._fail(segment, f"not a regular expression ({exc})", "fix the pattern (Python re syntax)") from None
    r.done()
    return out


def _pci_devices(paths: Sequence[Path]) -> PciIds:
    """The NVIDIA devices of every nvidia.ids, a later directory's device replacing an earlier one's."""
    from envbuilder.model import pci_ids

    devices: dict[str, str] = {}
    parsed: list[PciIds] = []
    for path in paths:
        label = path.name if path.parent == BUILTIN_DIR else str(path)
        try:
            parsed.append(pci_ids.parse(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            msg = f"{label}: cannot read: {exc}"
            raise MatrixError(msg, hint="regenerate it: envbuilder matrix refresh --pci-ids") from None
        except pci_ids.PciIdsError as exc:
            msg = f"{label}: {exc.message}"
            raise MatrixError(msg, hint="regenerate it: envbuilder matrix refresh --pci-ids") from None
        devices.update(parsed[-1].devices)
    if not parsed:  # pragma: no cover - the shipped file is required by _documents
        msg = f"no {IDS_FILE} in the matrix"
        raise MatrixError(msg, hint="reinstall envbuilder")
    db = parsed[-1]  # the newest layer names the database version
    return pci_ids.PciIds(db.version, db.date, db.vendor, db.vendor_name, tuple(devices.items()))
