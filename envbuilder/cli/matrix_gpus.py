"""`envbuilder matrix refresh --pci-ids [SOURCE]`: regenerate matrices/nvidia.ids from the PCI ID database."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from envbuilder.cli._common import print_json
from envbuilder.model.errors import EXIT_OK, MatrixError, SourceError

__all__ = [
    "SCHEMA",
    "refresh_pci_ids",
]

SCHEMA = "envbuilder.matrix-refresh-pci/1"
_SHOWN = 10  # devices listed per kind of change in the text report


def refresh_pci_ids(matrix_dirs: Sequence[Path], source: str | None, *, json: bool) -> int:
    """Write ``nvidia.ids`` (in the last matrix directory: an overlay if one is given) from a pci.ids text.

    A database older than the table's is refused, so that a stale system copy never drops newer GPUs.
    """
    from envbuilder.edge import _fs
    from envbuilder.edge.pci_source import read_pci_ids
    from envbuilder.model import gpu_table, pci_ids
    from envbuilder.model.matrix import IDS_FILE, load_matrix

    text, where = read_pci_ids(source)
    try:
        new = pci_ids.parse(text)
    except pci_ids.PciIdsError as exc:
        msg = f"{where}: {exc.message}"
        raise SourceError(msg, hint="give a pci.ids file (Debian's pci.ids package, or hwdata)") from None
    matrix = load_matrix(matrix_dirs[1:])
    target = Path(matrix_dirs[-1]) / IDS_FILE
    current = matrix.gpu_table()
    if gpu_table.version_key(new.version) < gpu_table.version_key(current.version):
        msg = f"{where}: pci.ids {new.version} is older than the GPU table's {current.version}: nothing written"
        raise MatrixError(msg, hint="give a newer pci.ids (Debian testing's pci.ids package, or hwdata)")
    before = [(p.device, p.label) for p in current.products if p.device]
    change = gpu_table.compare_ids(pci_ids.PciIds(current.version, current.date, new.vendor, "", tuple(before)), new)
    rules = {chip: rule.cc for chip, rule in matrix.chip_rules().items()}
    gpus = pci_ids.PciIds(new.version, new.date, new.vendor, new.vendor_name, tuple(gpu_table.gpu_devices(new)))
    table = gpu_table.build_table(gpus, rules, {})
    rendered = gpu_table.render_ids(new)
    updated = not target.is_file() or rendered != target.read_text(encoding="utf-8")
    if updated:
        _fs.write_text_atomic(target, rendered)
    doc = _report(new, where, target, table, change, updated=updated)
    if json:
        print_json(doc)
    else:
        print("\n".join(_lines(doc)))
    return EXIT_OK


def _report(db: Any, where: str, target: Path, table: Any, change: Any, *, updated: bool) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "version": db.version,
        "date": db.date,
        "source": where,
        "path": str(target),
        "devices": sum(1 for p in table.products if p.device),
        "database_devices": len(db.devices),
        "added": [{"device": d, "name": n} for d, n in change.added],
        "removed": [{"device": d, "name": n} for d, n in change.removed],
        "renamed": [{"device": d, "old": o, "new": n} for d, o, n in change.renamed],
        "unknown_chips": {chip: list(devices) for chip, devices in sorted(table.unknown_chips.items())},
        "updated": updated,
    }


def _lines(doc: dict[str, Any]) -> list[str]:
    lines = [
        f"{doc['path']}: pci.ids {doc['version']} ({doc['date']}) from {doc['source']}",
        f"  {doc['devices']} NVIDIA GPUs of the database's {doc['database_devices']} NVIDIA devices: "
        f"{len(doc['added'])} new, {len(doc['removed'])} gone, {len(doc['renamed'])} renamed",
    ]
    for key, sign in (("added", "+"), ("removed", "-")):
        lines += [f"  {sign} 10de:{e['device']}  {e['name']}" for e in doc[key][:_SHOWN]]
        if len(doc[key]) > _SHOWN:
            lines.append(f"  {sign} ... {len(doc[key]) - _SHOWN} more (--json lists them all)")
    lines += [f"  ~ 10de:{e['device']}  {e['old']} -> {e['new']}" for e in doc["renamed"][:_SHOWN]]
    if doc["unknown_chips"]:
        chips = ", ".join(f"{chip} ({len(devices)})" for chip, devices in doc["unknown_chips"].items())
        lines.append(f"  dies no chip rule knows (compute capability unknown until gpu-chips.toml names them): {chips}")
    lines.append(f"updated {doc['path']}" if doc["updated"] else f"{doc['path']} is unchanged")
    return lines
