"""`envbuilder matrix check|audit|refresh`: validate the facts, and compare them with the wheels."""

from __future__ import annotations

import argparse
from pathlib import Path

from envbuilder.cli._common import load_matrix_for, print_json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("matrix", help="validate the matrix, or audit it against real wheels")
    msub = p.add_subparsers(dest="matrix_command", metavar="ACTION", parser_class=type(p))
    check = msub.add_parser("check", help="validate types, keys and cross-references of matrices/*.toml")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=run_check)
    register_audit(msub)
    register_refresh(msub)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def run_check(args: argparse.Namespace) -> int:
    matrix = load_matrix_for(args)  # raises MatrixError (exit 2) with file, key path and fix
    table = matrix.gpu_table()  # the product table is read lazily elsewhere; check reads it too
    rules = tuple(dict.fromkeys(matrix.chip_rules().values()))
    counts = {
        "architectures": len(matrix.archs),
        "driver rows": len(matrix.toolkits) + len(matrix.minor_compat),
        "torch releases": len(matrix.torch_releases),
        "torch builds": len(matrix.torch_builds),
        "bitsandbytes releases": len(matrix.bnb_releases),
        "bitsandbytes SASS rows": len(matrix.bnb_sass),
        "companions": len(matrix.companions),
        "GPTQ/AWQ libraries": len(matrix.quant),
        "profiles": len(matrix.profiles),
        "GPU evidence runs": len(matrix.evidence),
        "GPU products (PCI ids)": sum(1 for p in table.products if p.device),
        "GPU chip rules": len(rules),
    }
    facts = [
        *matrix.archs,
        *rules,
        *matrix.toolkits,
        *matrix.minor_compat,
        *matrix.torch_releases,
        *matrix.torch_builds,
        *matrix.bnb_releases,
        *matrix.bnb_sass,
        *matrix.companions,
        *matrix.quant,
        *matrix.profiles,
    ]
    unconfirmed = sum(not f.confirmed for f in facts)
    if args.json:
        print_json(
            {
                "schema": "envbuilder.matrix-check/1",
                "ok": True,
                "date": matrix.date,
                "digest": matrix.digest,
                "files": list(matrix.files),
                "counts": counts,
                "facts": len(facts),
                "unconfirmed": unconfirmed,
                "pci_ids": {"version": table.version, "date": table.date},
            }
        )
    else:
        print(f"matrix OK ({matrix.date}, digest {matrix.digest[:12]}): {len(facts)} facts, {unconfirmed} unconfirmed")
        for name, n in counts.items():
            print(f"  {n:4d} {name}")
        print(f"  GPU table: pci.ids {table.version} ({table.date})")
    return 0


def _dirs(args: argparse.Namespace) -> list[Path]:
    from envbuilder.matrix import matrix_dirs

    return list(matrix_dirs(getattr(args, "matrix_dir", None)))


def _run_audit(args: argparse.Namespace) -> int:
    from envbuilder.cli.matrix_audit import audit_package  # downloads and tomlkit: imported when used

    return audit_package(args.packages, _dirs(args), update=args.update, json=args.json)


def _run_refresh(args: argparse.Namespace) -> int:
    if args.pci_ids is not None:
        from envbuilder.cli.matrix_gpus import refresh_pci_ids

        return refresh_pci_ids(_dirs(args), args.pci_ids or None, json=args.json)
    from envbuilder.cli.matrix_audit import refresh

    return refresh(_dirs(args), json=args.json, update=args.update)


def register_audit(matrix_subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `matrix audit [PACKAGE[==VERSION] ...] [--update] [--json]`."""
    p = matrix_subparsers.add_parser("audit", help="compare the matrix with the SASS/PTX inside real wheels")
    p.add_argument(
        "packages",
        nargs="*",
        metavar="PACKAGE[==VERSION]",
        help="default: the newest bitsandbytes in the matrix",
    )
    p.add_argument("--update", action="store_true", help="write the observed facts back, with the evidence")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_run_audit)


def register_refresh(matrix_subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `matrix refresh [--update] [--pci-ids [SOURCE]] [--json]`."""
    p = matrix_subparsers.add_parser(
        "refresh", help="propose rows for releases newer than the matrix, or regenerate the GPU table (--pci-ids)"
    )
    p.add_argument(
        "--update", action="store_true", help="write the proposed bitsandbytes rows (audited) into the matrix"
    )
    p.add_argument(
        "--pci-ids",
        nargs="?",
        const="",
        metavar="SOURCE",
        help="regenerate nvidia.ids from a pci.ids file or URL (default: this system's, else downloaded)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=_run_refresh)
