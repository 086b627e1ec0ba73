"""Check the matrix against the wheels themselves: the logic behind `envbuilder matrix audit` and `refresh`.

audit: download a release's linux-x86_64 wheel (cached, sha256-checked), read the SASS/PTX targets of each
native library (``envbuilder.audit``), and compare them with what ``bitsandbytes.toml`` claims: each
mismatch with its file and key. ``--update`` writes the observed facts back with tomlkit (comments and
layout kept) with the evidence: date, wheel URL, sha256.

refresh: list PyPI releases newer than the matrix (torch, bitsandbytes, transformers, gptqmodel), audit the
bitsandbytes ones, and propose rows marked ``confidence = "unconfirmed"`` until a GPU smoke test confirms
them. Only ``--update`` writes (and only the bitsandbytes rows, which the audit backs).

The comparison (``compare_bnb``) and the rendering of rows are pure; fetching (PyPI, wheels) and writing
(tomlkit, atomically) are the edges; ``envbuilder/cli/matrix_audit.py`` prints and parses arguments.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from envbuilder._fs import write_text_atomic
from envbuilder.errors import MatrixError, TargetError

PLATFORM = "linux-x86_64"
BNB = "bitsandbytes"
BNB_FILE = "bitsandbytes.toml"
# Which matrix file and table hold each package's releases, and how a row names its version.
TRACKED: dict[str, tuple[str, str, str | None]] = {
    "torch": ("torch.toml", "release", None),
    "bitsandbytes": ("bitsandbytes.toml", "release", None),
    "transformers": ("companions.toml", "package", "transformers"),
    "gptqmodel": ("quant.toml", "library", "gptqmodel"),
}
UNVERIFIED_NOTE = "proposed by `envbuilder matrix refresh`; unverified until a smoke test on a GPU confirms it"


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class Row:
    """A row of a matrix table, and where it lives (for messages and for writing back)."""

    file: Path
    table: str
    index: int
    data: Mapping[str, Any]

    @property
    def key(self) -> str:
        return f"{self.file.name}: {self.table}[{self.index}]"


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A claim of the matrix that the wheel contradicts (or a library no row describes)."""

    file: str
    key: str  # "bitsandbytes.toml: sass[7].sass"
    claimed: object
    observed: object
    why: str


@dataclass(frozen=True, slots=True)
class Edit:
    """A change to write: set ``values`` on row ``index`` (dropping keys whose value is None), or insert a
    new row after it (``insert=True``)."""

    file: Path
    table: str
    index: int
    values: Mapping[str, Any]
    insert: bool = False


@dataclass(frozen=True, slots=True)
class Comparison:
    """The outcome of comparing one wheel with the matrix."""

    mismatches: tuple[Mismatch, ...] = ()
    edits: tuple[Edit, ...] = ()
    checked: tuple[str, ...] = ()  # keys of the rows the wheel confirmed or contradicted
    notes: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- reading the matrix


def _toml_load(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            doc: dict[str, Any] = tomllib.load(fh)
            return doc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        msg = f"{path}: cannot read ({exc})"
        raise MatrixError(msg, hint="run `envbuilder matrix check` to see what is wrong") from None


def matrix_rows(dirs: Sequence[Path], filename: str, table: str) -> list[Row]:
    """The rows of ``table`` across the matrix directories, overlaid as the loader does: a later directory's
    row replaces an earlier one with the same key, and other rows are added."""
    from envbuilder.matrix import _KEYS  # the loader's overlay keys, so both agree

    keyfn = _KEYS.get(table)
    rows: list[Row] = []
    for directory in dirs:
        path = Path(directory) / filename
        if not path.is_file():
            continue
        items = _toml_load(path).get(table) or []
        new = [Row(path, table, i, item) for i, item in enumerate(items) if isinstance(item, dict)]
        if keyfn is not None:
            replaced = {repr(keyfn(r.data)) for r in new}
            rows = [r for r in rows if repr(keyfn(r.data)) not in replaced]
        rows += new
    return rows


def _spec_contains(spec: object, version: str) -> bool:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        return SpecifierSet(str(spec or "")).contains(version, prereleases=True)
    except InvalidSpecifier:
        return False


# --------------------------------------------------------------------------- comparing (pure)


def _evidence(url: str, sha256: str, today: str) -> str:
    return f"{today} audit of {url} sha256:{sha256}"


def _observed_ptx(ptx: Sequence[str]) -> str | None:
    return ptx[-1] if ptx else None  # the schema records one PTX target: the highest


def merge_evidence(old: object, new: str) -> str:
    """``verified`` keeps other evidence (a GPU run) and replaces only an earlier audit's."""
    kept = [p for p in str(old or "").split("; ") if p and " audit of " not in p]
    return "; ".join([*kept, new])


def _sass_edits(row: Row, version: str, sass: list[str], ptx: str | None, evidence: str) -> list[Edit]:
    """Write what the wheel shows into ``row``; if the row covers other releases too, carve this one out."""
    verified = merge_evidence(row.data.get("verified"), evidence)
    claimed = (list(row.data.get("sass") or []), row.data.get("ptx"))
    if claimed == (sass, ptx):
        return [Edit(row.file, row.table, row.index, {"verified": verified})]
    source = f"{_wheel_name(evidence)} read by `envbuilder matrix audit`"
    facts = {"sass": sass, "ptx": ptx, "source": source, "confidence": "confirmed"}
    if str(row.data.get("bnb", "")).replace(" ", "") == f"=={version}":
        return [Edit(row.file, row.table, row.index, {**facts, "verified": verified})]
    new = {k: v for k, v in row.data.items() if k not in {"verified", "note"}}
    new.update(facts, bnb=f"=={version}", verified=evidence)
    new["note"] = f"split from {row.key} by `envbuilder matrix audit`: this release's wheel differs"
    return [
        Edit(row.file, row.table, row.index, {"bnb": f"{row.data.get('bnb')},!={version}"}),
        Edit(row.file, row.table, row.index, new, insert=True),
    ]


def _wheel_name(evidence: str) -> str:
    return evidence.split(" audit of ", 1)[-1].split(" ", 1)[0].rsplit("/", 1)[-1]


def compare_bnb(
    report: Any, url: str, sass_rows: Sequence[Row], release_rows: Sequence[Row], *, today: str
) -> Comparison:
    """Compare a bitsandbytes ``WheelReport`` (linux-x86_64) with the ``[[sass]]``/``[[release]]`` rows."""
    version = report.version
    evidence = _evidence(url, report.sha256, today)
    libs = [lib for lib in report.libraries if lib.cuda]
    mismatches: list[Mismatch] = []
    edits: list[Edit] = []
    checked: list[str] = []
    by_row: dict[int, list[Any]] = {}
    rows = [r for r in sass_rows if r.data.get("platform") == PLATFORM and _spec_contains(r.data.get("bnb"), version)]
    for lib in libs:
        covering = [i for i, r in enumerate(rows) if _spec_contains(r.data.get("cuda"), lib.cuda)]
        name = Path(lib.path).name
        if len(covering) == 1:
            by_row.setdefault(covering[0], []).append(lib)
            continue
        where = f"{rows[0].file.name}: sass" if rows else f"{BNB_FILE}: sass"
        why = (
            f"no [[sass]] row covers bitsandbytes {version}, CUDA {lib.cuda}, {PLATFORM} ({name})"
            if not covering
            else f"rows {', '.join(rows[i].key for i in covering)} all cover {name}: they overlap"
        )
        mismatches.append(Mismatch(where.split(": ", 1)[0], where, None, list(lib.sass), why))
    for i, covered in sorted(by_row.items()):
        row = rows[i]
        checked.append(row.key)
        views = {(tuple(lib.sass), _observed_ptx(lib.ptx)) for lib in covered}
        names = ", ".join(Path(lib.path).name for lib in covered)
        if len(views) > 1:
            why = f"the libraries this row covers differ ({names}): split the row by CUDA version"
            mismatches.append(Mismatch(row.file.name, f"{row.key}.sass", row.data.get("sass"), sorted(views), why))
            continue
        sass, ptx = next(iter(views))
        if list(row.data.get("sass") or []) != list(sass):
            mismatches.append(Mismatch(row.file.name, f"{row.key}.sass", row.data.get("sass"), list(sass), names))
        if row.data.get("ptx") != ptx:
            mismatches.append(Mismatch(row.file.name, f"{row.key}.ptx", row.data.get("ptx"), ptx, names))
        edits += _sass_edits(row, version, list(sass), ptx, evidence)
    mismatches += _compare_release(version, libs, release_rows, evidence=evidence, edits=edits, checked=checked)
    return Comparison(tuple(mismatches), tuple(edits), tuple(checked))


def _compare_release(
    version: str,
    libs: Sequence[Any],
    release_rows: Sequence[Row],
    *,
    evidence: str,
    edits: list[Edit],
    checked: list[str],
) -> list[Mismatch]:
    from envbuilder.audit import arch_key

    observed = sorted({lib.cuda for lib in libs}, key=arch_key)
    found = [r for r in release_rows if str(r.data.get("version")) == version]
    if not found:
        why = f"bitsandbytes {version} has no [[release]] row (`envbuilder matrix refresh` proposes one)"
        return [Mismatch(BNB_FILE, f"{BNB_FILE}: release", None, version, why)]
    row = found[-1]  # an overlay's row replaces the shipped one
    checked.append(row.key)
    claimed = list(row.data.get("cuda-libs") or [])
    verified = merge_evidence(row.data.get("verified"), evidence)
    if claimed == observed:
        edits.append(Edit(row.file, row.table, row.index, {"verified": verified}))
        return []
    edits.append(Edit(row.file, row.table, row.index, {"cuda-libs": observed, "verified": verified}))
    why = f"libbitsandbytes_cuda*.so in the {PLATFORM} wheel"
    return [Mismatch(row.file.name, f"{row.key}.cuda-libs", claimed, observed, why)]


# --------------------------------------------------------------------------- writing (tomlkit)


def apply_edits(edits: Iterable[Edit]) -> list[Path]:
    """Write the edits into their files, keeping comments and layout; return the files changed."""
    import tomlkit  # only --update needs it

    by_file: dict[Path, list[Edit]] = {}
    for edit in edits:
        by_file.setdefault(edit.file, []).append(edit)
    for path, file_edits in by_file.items():
        doc = tomlkit.parse(path.read_text(encoding="utf-8"))
        # Insert from the bottom up so that the indices of rows still to edit do not move.
        for edit in sorted(file_edits, key=lambda e: (e.index, e.insert), reverse=True):
            table = doc[edit.table]
            if edit.insert:
                new = tomlkit.table()
                for k, v in edit.values.items():
                    if v is not None:
                        new[k] = v
                new.add(tomlkit.nl())  # a blank line before the next row, as the file is laid out
                table.insert(edit.index + 1, new)
                continue
            row = table[edit.index]
            for k, v in edit.values.items():
                if v is None:
                    row.pop(k, None)
                else:
                    row[k] = v
        write_text_atomic(path, tomlkit.dumps(doc))
    return list(by_file)


# --------------------------------------------------------------------------- fetching and auditing (edges)


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME==VERSION`` (PEP 503 normalised name)."""
    from packaging.utils import canonicalize_name

    name, sep, version = spec.strip().partition("==")
    if not name.strip() or (sep and not version.strip()) or any(c in name.strip() for c in "<>=!~ ;[@"):
        msg = f"{spec!r}: expected PACKAGE or PACKAGE==VERSION"
        raise TargetError(msg, hint="e.g. `envbuilder matrix audit bitsandbytes==0.50.2`")
    return canonicalize_name(name.strip()), (version.strip() or None)


def pick_wheel(files: Sequence[Any], platform: str = PLATFORM) -> Any | None:
    """The wheel for ``platform`` (manylinux x86_64), preferring this Python's tag, then ``py3-none``."""
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    arch = platform.split("-", 1)[1]
    here = f"cp{sys.version_info.major}{sys.version_info.minor}"
    best: tuple[int, Any] | None = None
    for file in files:
        try:
            _, _, _, tags = parse_wheel_filename(file.filename)
        except InvalidWheelFilename:
            continue
        plats = {t.platform for t in tags}
        if not any(p.endswith(arch) and (p.startswith("manylinux") or p.startswith("linux")) for p in plats):
            continue
        rank = 2 if any(t.interpreter == here for t in tags) else 1 if any(t.abi == "none" for t in tags) else 0
        if best is None or rank > best[0]:
            best = (rank, file)
    return best[1] if best else None


def _progress(filename: str) -> Any:
    marks: set[int] = set()

    def report(done: int, total: int) -> None:
        tenth = done * 10 // total if total else 0
        if tenth not in marks and sys.stderr.isatty():
            marks.add(tenth)
            print(f"\r  {filename}: {done / 1e6:.1f}/{total / 1e6:.1f} MB", end="", file=sys.stderr)

    return report


@dataclass(frozen=True, slots=True)
class Audited:
    """A wheel audited: where it came from and what it holds."""

    url: str
    report: Any  # envbuilder.audit.WheelReport


def fetch_and_audit(name: str, version: str) -> Audited:
    """Download (or reuse) the linux-x86_64 wheel of ``name==version`` and read its native libraries."""
    from envbuilder import pypi
    from envbuilder.audit import audit_wheel
    from envbuilder.errors import SourceError

    wheel = pick_wheel(pypi.release_files(name, version))
    if wheel is None:
        msg = f"{name} {version} has no {PLATFORM} wheel on PyPI"
        raise SourceError(msg, hint="audit reads Linux x86_64 wheels; pick a release that ships one")
    cached = (pypi.default_cache_dir() / wheel.filename).exists()
    if not cached:
        print(f"downloading {wheel.filename} ({wheel.size / 1e6:.1f} MB)", file=sys.stderr)
    path = pypi.download(wheel, progress=_progress(wheel.filename))
    if not cached and sys.stderr.isatty():
        print(file=sys.stderr)
    return Audited(wheel.url, audit_wheel(path, sha256=wheel.sha256))


def newest_bnb(dirs: Sequence[Path]) -> str:
    from packaging.version import Version

    versions = [str(r.data.get("version")) for r in matrix_rows(dirs, BNB_FILE, "release")]
    if not versions:
        msg = f"{BNB_FILE}: no [[release]] rows to audit"
        raise MatrixError(msg, hint="name a release: `envbuilder matrix audit bitsandbytes==X.Y.Z`")
    return max(versions, key=Version)


def today_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).date().isoformat()


# --------------------------------------------------------------------------- audit command


def max_version(rows: Sequence[Row], name: str | None) -> str | None:
    from packaging.version import InvalidVersion, Version

    best: Version | None = None
    for row in rows:
        if name is not None and row.data.get("name") != name:
            continue
        try:
            v = Version(str(row.data.get("version")))
        except InvalidVersion:
            continue
        best = v if best is None or v > best else best
    return str(best) if best else None


def newer_releases(known: str | None, available: Sequence[str]) -> list[str]:
    """The releases in ``available`` newer than ``known`` (all of them when the matrix has none)."""
    from packaging.version import Version

    return [v for v in available if known is None or Version(v) > Version(known)]


def _torch_variant(requires: Sequence[str]) -> str | None:
    """The CUDA variant a torch release on PyPI is built for, read from its nvidia-* runtime pin."""
    from packaging.requirements import InvalidRequirement, Requirement

    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if req.name.startswith("nvidia-cuda-runtime"):
            for spec in req.specifier:
                parts = spec.version.split(".")
                if spec.operator == "==" and len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                    return f"cu{parts[0]}{parts[1]}"
    return None


def _requirement_of(requires: Sequence[str], name: str) -> str | None:
    from packaging.requirements import InvalidRequirement, Requirement

    for text in requires:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        if req.name == name and req.marker is None:
            return str(req.specifier)
    return None


def proposal(name: str, info: Any, template: Mapping[str, Any] | None, source: str) -> dict[str, Any]:
    """A row for ``name`` from PyPI's facts; fields PyPI cannot give are copied from the newest row."""
    row: dict[str, Any] = {}
    if name == "torch":
        variant = _torch_variant(info.requires_dist)
        row = {"version": info.version, "python": info.requires_python or ">=3.10"}
        if variant:
            row["pypi"] = {
                "linux-x86_64": variant,
                "linux-aarch64": variant,
                "windows-x86_64": "cpu",
                "macos-arm64": "cpu",
            }
        uploaded = next((f.upload_time for f in info.files if f.upload_time), None)
        if uploaded:
            row["released"] = str(uploaded)[:10]
    else:
        keep = {"name", "status", "profile", "kernels", "min-cc", "platforms", "profiles", "loader", "cpu"}
        row = {k: v for k, v in (template or {}).items() if k in keep}
        row.update(version=info.version, python=info.requires_python or (template or {}).get("python", ">=3.10"))
        torch_req = _requirement_of(info.requires_dist, "torch")
        if torch_req:
            row["torch"] = torch_req
    row.update(source=source, confidence="unconfirmed", note=UNVERIFIED_NOTE)
    return row


def bnb_proposals(audited: Audited, info: Any, template: Mapping[str, Any] | None, today: str) -> list[dict[str, Any]]:
    """A [[release]] row and one [[sass]] row per distinct native library of a new bitsandbytes release."""
    from envbuilder.audit import arch_key

    r = audited.report
    evidence = _evidence(audited.url, r.sha256, today)
    release = proposal(BNB, info, template, f"PyPI JSON ({today}); {evidence}")
    release["cuda-libs"] = sorted({lib.cuda for lib in r.libraries if lib.cuda}, key=arch_key)
    release["platforms"] = sorted(_platforms(info.files))
    rows = [{"table": "release", **release}]
    for lib in sorted((lib for lib in r.libraries if lib.cuda), key=lambda x: arch_key(x.cuda)):
        sass = {
            "bnb": f"=={r.version}",
            "cuda": f"=={lib.cuda}",
            "platform": PLATFORM,
            "sass": list(lib.sass),
        }
        if lib.ptx:
            sass["ptx"] = lib.ptx[-1]
        sass.update(
            source=evidence.split(" ", 1)[1],
            confidence="unconfirmed",
            verified=evidence,
            note=UNVERIFIED_NOTE,
        )
        rows.append({"table": "sass", **sass})
    return rows


def _platforms(files: Iterable[Any]) -> set[str]:
    out: set[str] = set()
    for f in files:
        n = f.filename
        if not n.endswith(".whl"):
            continue
        osname = "linux" if "linux" in n else "windows" if "win" in n else "macos" if "macosx" in n else None
        arch = (
            "x86_64"
            if ("x86_64" in n or "amd64" in n)
            else "aarch64"
            if "aarch64" in n
            else "arm64"
            if "arm64" in n
            else None
        )
        if osname and arch:
            out.add(f"{osname}-{'arm64' if osname != 'linux' and arch == 'aarch64' else arch}")
    return out


def render_row(row: Mapping[str, Any]) -> str:
    """A proposed row as TOML text (``[[table]]`` then its keys), indented for the report."""
    import tomlkit

    body = {k: v for k, v in row.items() if k != "table"}
    text = tomlkit.dumps({row["table"]: [body]}).strip()
    return "\n".join("    " + line for line in text.splitlines())


def append_rows(rows: Sequence[tuple[Path, dict[str, Any]]]) -> list[Path]:
    import tomlkit

    by_file: dict[Path, list[dict[str, Any]]] = {}
    for path, row in rows:
        by_file.setdefault(path, []).append(row)
    for path, items in by_file.items():
        doc = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else tomlkit.document()
        for item in items:
            table = item["table"]
            if table not in doc:
                doc[table] = tomlkit.aot()
            doc[table].append({k: v for k, v in item.items() if k != "table"})
        write_text_atomic(path, tomlkit.dumps(doc))
    return list(by_file)
