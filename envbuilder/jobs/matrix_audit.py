"""The matrix as files: its rows where they are written, and writing facts back (audit, refresh, check --upstream).

``matrix_rows`` reads the rows of a table across the matrix directories (overlaid as the loader does);
``apply_edits`` and ``append_rows`` write observed facts and proposed rows with tomlkit, keeping comments and
layout, atomically. ``read_upstream`` is the edge that runs the reader (``envbuilder.edge.upstream``) and the pure
comparison (``envbuilder.jobs.matrix_check``) over the whole matrix, or over one release (``matrix audit``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from envbuilder.edge._fs import write_text_atomic
from envbuilder.model.errors import MatrixError, TargetError

if TYPE_CHECKING:  # imported where the audit runs: the network and the comparison are not needed to load this
    from envbuilder.edge.upstream import Observed
    from envbuilder.jobs.matrix_check import Report

__all__ = [
    "TABLES",
    "Edit",
    "Mismatch",
    "Row",
    "UpstreamRun",
    "append_rows",
    "apply_edits",
    "matrix_rows",
    "matrix_tables",
    "parse_spec",
    "read_upstream",
    "render_row",
    "restrict",
    "wanted_for",
]

# The tables the reader checks: (file, table).
TABLES = (
    ("torch.toml", "release"),
    ("torch.toml", "build"),
    ("bitsandbytes.toml", "release"),
    ("bitsandbytes.toml", "sass"),
    ("companions.toml", "package"),
    ("quant.toml", "library"),
)


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
    from envbuilder.model.matrix import _KEYS  # the loader's overlay keys, so both agree

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


# --------------------------------------------------------------------------- writing (tomlkit)


def _toml_value(value: Any) -> Any:
    """A dict inside a row is written inline (``pypi = { ... }``), as the matrix files lay it out."""
    import tomlkit

    if isinstance(value, Mapping):
        table = tomlkit.inline_table()
        table.update({k: _toml_value(v) for k, v in value.items()})
        return table
    return value


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
                        new[k] = _toml_value(v)
                new.add(tomlkit.nl())  # a blank line before the next row, as the file is laid out
                table.insert(edit.index + 1, new)
                continue
            row = table[edit.index]
            for k, v in edit.values.items():
                if v is None:
                    row.pop(k, None)
                else:
                    row[k] = _toml_value(v)
        write_text_atomic(path, tomlkit.dumps(doc))
    return list(by_file)


# --------------------------------------------------------------------------- specs, dates, rendering


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME==VERSION`` (PEP 503 normalised name)."""
    from packaging.utils import canonicalize_name

    name, sep, version = spec.strip().partition("==")
    if not name.strip() or (sep and not version.strip()) or any(c in name.strip() for c in "<>=!~ ;[@"):
        msg = f"{spec!r}: expected PACKAGE or PACKAGE==VERSION"
        raise TargetError(msg, hint="e.g. `envbuilder matrix audit bitsandbytes==0.50.2`")
    return canonicalize_name(name.strip()), (version.strip() or None)


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
            row = tomlkit.table()
            for k, v in item.items():
                if k != "table" and v is not None:
                    row[k] = _toml_value(v)
            row.add(tomlkit.nl())  # a blank line before the next row, as the files are laid out
            doc[table].append(row)
        write_text_atomic(path, tomlkit.dumps(doc))
    return list(by_file)


# --------------------------------------------------------------------------- reading the indexes (the edge)


@dataclass(frozen=True, slots=True)
class UpstreamRun:
    """One read of the indexes and its comparison with the matrix."""

    report: Report
    observed: Observed
    bytes_in: int
    requests: int
    seconds: float


def matrix_tables(dirs: Sequence[Path]) -> dict[tuple[str, str], list[Row]]:
    return {key: matrix_rows(dirs, *key) for key in TABLES}


def restrict(
    tables: Mapping[tuple[str, str], Sequence[Row]], name: str, version: str
) -> dict[tuple[str, str], list[Row]]:
    """Only the rows about one release: its [[release]]/[[package]] row and the build/sass rows covering it."""
    out: dict[tuple[str, str], list[Row]] = {key: [] for key in TABLES}
    if name == "torch":
        out[("torch.toml", "release")] = [
            r for r in tables[("torch.toml", "release")] if r.data.get("version") == version
        ]
        out[("torch.toml", "build")] = [
            r for r in tables[("torch.toml", "build")] if _spec_contains(r.data.get("torch"), version)
        ]
    elif name == "bitsandbytes":
        out[("bitsandbytes.toml", "release")] = [
            r for r in tables[("bitsandbytes.toml", "release")] if r.data.get("version") == version
        ]
        out[("bitsandbytes.toml", "sass")] = [
            r for r in tables[("bitsandbytes.toml", "sass")] if _spec_contains(r.data.get("bnb"), version)
        ]
    else:
        for key in (("companions.toml", "package"), ("quant.toml", "library")):
            out[key] = [r for r in tables[key] if (r.data.get("name"), r.data.get("version")) == (name, version)]
    return out


def read_upstream(
    dirs: Sequence[Path],
    *,
    index_url: str | None,
    pytorch_index: str | None,
    ca_cert: str | None,
    cache_root: Path,
    recorded: Path | None = None,
    record: Path | None = None,
    only: tuple[str, str] | None = None,
    credentials: tuple[Any, ...] = (),
) -> UpstreamRun:
    """Read the indexes for the matrix (or one release of it) and compare; nothing is written here."""
    import time

    from envbuilder.edge.upstream import gather, open_upstream, today_iso
    from envbuilder.jobs.matrix_check import compare, pytorch_builds, wanted_versions

    started = time.monotonic()
    tables = matrix_tables(dirs)
    if only is not None:
        tables = restrict(tables, *only)
    wanted = wanted_versions(tables) if only is None else {only[0]: [only[1]]}
    upstream, http = open_upstream(
        index_url=index_url, pytorch_index=pytorch_index, ca_cert=ca_cert, cache_root=cache_root,
        recorded=recorded, record=record, credentials=credentials,
    )  # fmt: skip
    with http:
        builds = pytorch_builds(tables) if pytorch_index else []
        observed = gather(upstream, wanted, pytorch_builds=builds, newer=only is None)
    report = compare(tables, observed, today=today_iso(), matrix_dir=Path(dirs[-1]))
    return UpstreamRun(report, observed, http.bytes_in, http.requests_made, time.monotonic() - started)


def wanted_for(tables: Mapping[tuple[str, str], Sequence[Row]], name: str) -> list[str]:
    """The versions of ``name`` the matrix names."""
    from envbuilder.jobs.matrix_check import wanted_versions

    return wanted_versions(tables).get(name, [])
