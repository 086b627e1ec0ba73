"""`envbuilder matrix audit` and `envbuilder matrix refresh`: running and printing (arguments: cli/matrix.py).

The comparison, the proposals and the writes live in ``envbuilder/matrix_audit.py``.
"""

from __future__ import annotations

import json as jsonlib
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from envbuilder.errors import EXIT_CHECK_FAILED, EXIT_OK
from envbuilder.matrix_audit import (
    BNB,
    BNB_FILE,
    TRACKED,
    Audited,
    Comparison,
    append_rows,
    apply_edits,
    bnb_proposals,
    compare_bnb,
    fetch_and_audit,
    matrix_rows,
    max_version,
    newer_releases,
    newest_bnb,
    parse_spec,
    proposal,
    render_row,
    today_iso,
)


def _library_json(lib: Any) -> dict[str, Any]:
    return {
        "path": lib.path,
        "cuda": lib.cuda,
        "sass": list(lib.sass),
        "ptx": list(lib.ptx),
        "compressed": lib.compressed,
    }


def _audit_one(spec: str, dirs: Sequence[Path], today: str) -> tuple[Audited, Comparison]:
    from envbuilder import pypi

    name, version = parse_spec(spec)
    version = version or pypi.releases(name)[-1]
    audited = fetch_and_audit(name, version)
    if name != BNB:
        note = f"the matrix keeps no per-library SASS rows for {name}: the facts are listed, not compared"
        return audited, Comparison(notes=(note,))
    sass_rows = matrix_rows(dirs, BNB_FILE, "sass")
    release_rows = matrix_rows(dirs, BNB_FILE, "release")
    return audited, compare_bnb(audited.report, audited.url, sass_rows, release_rows, today=today)


def _print_audit(audited: Audited, comparison: Comparison) -> None:
    r = audited.report
    print(f"{r.name} {r.version}: {r.filename} (sha256 {r.sha256[:16]}...)")
    for lib in r.libraries:
        if lib.entries or lib.cuda:
            ptx = f"; PTX {' '.join(lib.ptx)}" if lib.ptx else "; no PTX"
            print(f"  {Path(lib.path).name}: CUDA {lib.cuda or '?'}: SASS {' '.join(lib.sass) or '-'}{ptx}")
    others = [Path(lib.path).name for lib in r.libraries if not lib.entries and not lib.cuda]
    if others:
        print(f"  no CUDA code: {', '.join(others)}")
    for note in comparison.notes:
        print(f"  note: {note}")
    for m in comparison.mismatches:
        claim, seen = _show(m.claimed), _show(m.observed)
        print(f"  MISMATCH {m.key}: the matrix says {claim}, the wheel has {seen} ({m.why})")
    if comparison.checked and not comparison.mismatches:
        print(f"  matrix agrees: {', '.join(comparison.checked)}")


def _show(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "[" + " ".join(map(str, value)) + "]"
    return str(value)


def audit_package(spec: str | Sequence[str], matrix_dirs: Sequence[Path], *, update: bool, json: bool) -> int:
    """Audit PACKAGE[==VERSION] (one spec, or several) against the matrix; exit 1 on a mismatch unless
    ``update`` wrote the observed facts back (then 0). With no spec, the newest bitsandbytes release in
    the matrix is audited."""
    specs = [spec] if isinstance(spec, str) else list(spec)
    dirs = [Path(d) for d in matrix_dirs]
    specs = specs or [f"{BNB}=={newest_bnb(dirs)}"]
    today = today_iso()
    results = [_audit_one(s, dirs, today) for s in specs]
    written = apply_edits([e for _, c in results for e in c.edits]) if update else []
    mismatched = any(c.mismatches for _, c in results)
    if json:
        _print_json({
            "schema": "envbuilder.matrix-audit/1",
            "ok": not mismatched,
            "updated": [str(p) for p in written],
            "wheels": [
                {
                    "name": a.report.name, "version": a.report.version, "filename": a.report.filename,
                    "url": a.url, "sha256": a.report.sha256,
                    "libraries": [_library_json(lib) for lib in a.report.libraries],
                    "checked": list(c.checked), "notes": list(c.notes),
                    "mismatches": [asdict(m) for m in c.mismatches],
                }
                for a, c in results
            ],
        })  # fmt: skip
    else:
        for audited, comparison in results:
            _print_audit(audited, comparison)
        for path in written:
            print(f"updated {path}")
    return EXIT_OK if update or not mismatched else EXIT_CHECK_FAILED


def _print_json(doc: object) -> None:
    jsonlib.dump(doc, sys.stdout, indent=2)
    sys.stdout.write("\n")


# --------------------------------------------------------------------------- refresh


def refresh(matrix_dirs: Sequence[Path], *, json: bool, update: bool = False) -> int:
    """Propose matrix rows for releases on PyPI newer than the matrix; write the bitsandbytes ones with
    ``update``. Exit 0 (proposals are news, not a failure)."""
    from envbuilder import pypi

    dirs = [Path(d) for d in matrix_dirs]
    today = today_iso()
    found: dict[str, Any] = {}
    to_write: list[tuple[Path, dict[str, Any]]] = []
    for package, (filename, table, row_name) in TRACKED.items():
        rows = matrix_rows(dirs, filename, table)
        known = max_version(rows, row_name)
        # A package the matrix does not know yet gets no proposals: its whole history is not news.
        newer = newer_releases(known, pypi.releases(package)) if known else []
        template = next((r.data for r in reversed(rows) if str(r.data.get("version")) == known), None)
        proposals: list[dict[str, Any]] = []
        for version in newer:
            info = pypi.release_info(package, version)
            source = f"PyPI JSON pypi.org/pypi/{package}/json ({today})"
            if package == BNB:
                bnb_rows = bnb_proposals(fetch_and_audit(package, version), info, template, today)
                proposals += bnb_rows
                target = rows[-1].file if rows else dirs[-1] / filename
                to_write += [(target, row) for row in bnb_rows]
            else:
                proposals.append({"table": table, **proposal(package, info, template, source)})
        found[package] = {"matrix": known, "newer": newer, "proposed": proposals}
    written = append_rows(to_write) if update else []
    if json:
        _print_json({"schema": "envbuilder.matrix-refresh/1", "packages": found, "updated": [str(p) for p in written]})
        return EXIT_OK
    for package, item in found.items():
        newer_text = ", ".join(item["newer"]) or "none"
        print(f"{package}: matrix has {item['matrix'] or 'nothing'}; newer on PyPI: {newer_text}")
        for row in item["proposed"]:
            print(render_row(row))
    for path in written:
        print(f"updated {path}")
    return EXIT_OK
