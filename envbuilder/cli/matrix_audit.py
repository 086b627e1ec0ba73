"""`envbuilder matrix audit`, `matrix refresh` and `matrix check --upstream`: running and printing.

Arguments live in cli/matrix.py; the reading is ``envbuilder.jobs.matrix_audit.read_upstream`` (reader + pure
comparison), the writing ``apply_edits`` / ``append_rows``.
"""

from __future__ import annotations

import json as jsonlib
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from envbuilder.jobs.matrix_audit import UpstreamRun, append_rows, apply_edits, parse_spec, read_upstream, render_row
from envbuilder.model.errors import EXIT_CHECK_FAILED, EXIT_OK

__all__ = [
    "UpstreamOptions",
    "audit_package",
    "check_upstream",
    "refresh",
]


@dataclass(frozen=True, slots=True)
class UpstreamOptions:
    """Where to read from: the configured indexes (online) or a recording (offline)."""

    index_url: str | None
    pytorch_index: str | None
    ca_cert: str | None
    cache_root: Path
    recorded: Path | None = None
    record: Path | None = None
    notes: tuple[str, ...] = ()
    credentials: tuple[Any, ...] = field(default=(), repr=False)  # envbuilder.model.credentials.Credential


def _read(dirs: Sequence[Path], opts: UpstreamOptions, only: tuple[str, str] | None = None) -> UpstreamRun:
    return read_upstream(
        dirs,
        index_url=opts.index_url,
        pytorch_index=opts.pytorch_index,
        ca_cert=opts.ca_cert,
        cache_root=opts.cache_root,
        recorded=opts.recorded,
        record=opts.record,
        only=only,
        credentials=opts.credentials,
    )


def _show(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "[" + " ".join(map(str, value)) + "]"
    return str(value)


def _print_json(doc: object) -> None:
    jsonlib.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _summary(run: UpstreamRun, opts: UpstreamOptions) -> str:
    where = f"recorded {opts.recorded}" if opts.recorded else f"{run.bytes_in / 1e6:.1f} MB in {run.requests} requests"
    r = run.report
    return (
        f"{r.checked} rows checked, {len(r.mismatches)} disagreement(s), {len(r.unchecked)} not checkable "
        f"({where}, {run.seconds:.1f} s)"
    )


def _mismatch_lines(run: UpstreamRun) -> list[str]:
    return [
        f"{m.key}: the matrix says {_show(m.claimed)}, the files say {_show(m.observed)} ({m.why})"
        for m in run.report.mismatches
    ]


def _json_doc(schema: str, run: UpstreamRun, opts: UpstreamOptions, written: Sequence[Path]) -> dict[str, Any]:
    r = run.report
    return {
        "schema": schema,
        "ok": not r.mismatches,
        "source": {"recorded": str(opts.recorded)} if opts.recorded else {"index": run.observed.index},
        "checked": r.checked,
        "mismatches": [asdict(m) for m in r.mismatches],
        "unchecked": list(r.unchecked),
        "news": list(r.news),
        "proposed": [{"file": str(path), **row} for path, row in r.proposals],
        "updated": [str(p) for p in written],
        "bytes_in": run.bytes_in,
        "notes": list(opts.notes),
    }


# --------------------------------------------------------------------------- check --upstream


def check_upstream(dirs: Sequence[Path], opts: UpstreamOptions, *, json: bool, show_unchecked: bool = False) -> int:
    """Compare every readable fact with the indexes' files; exit 1 on any disagreement."""
    run = _read(dirs, opts)
    if json:
        _print_json(_json_doc("envbuilder.matrix-upstream/1", run, opts, []))
    else:
        for note in opts.notes:
            print(f"note: {note}")
        for line in _mismatch_lines(run):
            print(line)
        for line in run.report.news:
            print(f"news: {line}")
        if show_unchecked:
            for line in run.report.unchecked:
                print(f"not checked: {line}")
        print(_summary(run, opts) + ("" if show_unchecked or not run.report.unchecked else "; --all lists them"))
    return EXIT_CHECK_FAILED if run.report.mismatches else EXIT_OK


# --------------------------------------------------------------------------- refresh


def refresh(dirs: Sequence[Path], opts: UpstreamOptions, *, json: bool, update: bool = False) -> int:
    """Read the indexes, propose rows for what is new or missing, and with ``update`` write every observed fact
    and proposed row (tomlkit, comments kept). Exit 0: news is not a failure; `check --upstream` is the gate."""
    run = _read(dirs, opts)
    if opts.record is not None:
        from envbuilder.edge._fs import write_text_atomic
        from envbuilder.edge.upstream import recording_readme

        write_text_atomic(opts.record / "README.md", recording_readme(opts.record))
    written: list[Path] = []
    if update:
        written = sorted({*apply_edits(run.report.edits), *append_rows(run.report.proposals)})
    if json:
        _print_json(_json_doc("envbuilder.matrix-refresh/2", run, opts, written))
        return EXIT_OK
    for note in opts.notes:
        print(f"note: {note}")
    for line in run.report.news:
        print(line)
    for line in _mismatch_lines(run):
        print(line)
    for path, row in run.report.proposals:
        print(f"proposed for {path.name}:")
        print(render_row(row))
    print(_summary(run, opts))
    for path in written:
        print(f"updated {path}")
    return EXIT_OK


# --------------------------------------------------------------------------- audit


def _facts_lines(run: UpstreamRun) -> list[str]:
    lines = []
    for releases in run.observed.releases.values():
        for rel in releases.values():
            for obs in rel.read:
                facts = obs.facts
                if facts is None:
                    lines.append(f"{obs.file.filename}: not read")
                    continue
                lines.append(f"{obs.evidence} (metadata: {facts.metadata_via or 'not read'})")
                version = facts.members.get("torch/version.py")
                if version:
                    from envbuilder.edge.reader import parse_version_py

                    v = parse_version_py(version)
                    lines.append(f"  torch/version.py: {v.get('__version__')} (CUDA {v.get('cuda') or 'none'})")
                for name, lib in sorted(facts.libraries.items()):
                    if lib is None:
                        lines.append(f"  {Path(name).name}: no loaded GPU image")
                        continue
                    ptx = f"; PTX {' '.join(lib.ptx)}" if lib.ptx else "; no PTX"
                    lines.append(f"  {Path(name).name}: SASS {' '.join(lib.sass) or '-'}{ptx} ({lib.section})")
    return lines


def audit_package(
    spec: str | Sequence[str], dirs: Sequence[Path], opts: UpstreamOptions, *, update: bool, json: bool
) -> int:
    """Read PACKAGE==VERSION (one or several) from the index and compare with the rows about it; exit 1 on a
    disagreement unless ``update`` wrote the observed facts back. With no spec, the newest bitsandbytes."""
    from envbuilder.jobs.matrix_audit import matrix_rows

    specs = [spec] if isinstance(spec, str) else list(spec)
    if not specs:
        versions = [str(r.data.get("version")) for r in matrix_rows(dirs, "bitsandbytes.toml", "release")]
        from packaging.version import Version

        specs = [f"bitsandbytes=={max(versions, key=Version)}"] if versions else []
    runs = []
    for s in specs:
        name, version = parse_spec(s)
        if version is None:
            version = _newest_in_matrix(dirs, name)
        runs.append(_read(dirs, opts, only=(name, version)))
    written = sorted({p for run in runs for p in apply_edits(run.report.edits)}) if update else []
    mismatched = any(run.report.mismatches for run in runs)
    if json:
        docs = [_json_doc("envbuilder.matrix-audit/2", run, opts, written) for run in runs]
        _print_json(
            {
                "schema": "envbuilder.matrix-audit/2",
                "ok": not mismatched,
                "releases": docs,
                "updated": [str(p) for p in written],
            }
        )
    else:
        for run in runs:
            for line in [*_facts_lines(run), *_mismatch_lines(run)]:
                print(line)
            if not run.report.mismatches:
                print(f"matrix agrees ({run.report.checked} rows checked)")
        for path in written:
            print(f"updated {path}")
    return EXIT_OK if update or not mismatched else EXIT_CHECK_FAILED


def _newest_in_matrix(dirs: Sequence[Path], name: str) -> str:
    from packaging.version import Version

    from envbuilder.jobs.matrix_audit import matrix_tables, wanted_for
    from envbuilder.model.errors import TargetError

    versions = wanted_for(matrix_tables(dirs), name)
    if not versions:
        msg = f"{name}: the matrix has no release of it"
        raise TargetError(msg, hint=f"name one: `envbuilder matrix audit {name}==X.Y.Z`")
    return max(versions, key=Version)
