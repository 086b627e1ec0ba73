"""`envbuilder matrix check|audit|refresh`: validate the facts, and compare them with the wheels."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path
from typing import TYPE_CHECKING

from envbuilder.cli._common import load_matrix_for, print_json

if TYPE_CHECKING:
    from envbuilder.cli.matrix_audit import UpstreamOptions

__all__ = [
    "register",
    "register_audit",
    "register_refresh",
    "run_check",
]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("matrix", help="validate the matrix, or audit it against real wheels")
    msub = p.add_subparsers(dest="matrix_command", metavar="ACTION", parser_class=type(p))
    check = msub.add_parser("check", help="validate types, keys and cross-references of matrices/*.toml")
    check.add_argument("--json", action="store_true")
    check.add_argument(
        "--upstream", action="store_true", help="also compare every readable fact with the indexes' files (exit 1)"
    )
    check.add_argument("--all", action="store_true", help="with --upstream: list what could not be checked")
    _add_reading_options(check)
    check.set_defaults(handler=run_check)
    register_audit(msub)
    register_refresh(msub)
    p.set_defaults(handler=functools.partial(_usage, p))


def _usage(parser: argparse.ArgumentParser, _args: argparse.Namespace) -> int:
    """``envbuilder matrix`` alone: its help, and the usage exit code."""
    parser.print_help()
    return 2


def run_check(args: argparse.Namespace) -> int:
    matrix = load_matrix_for(args)  # raises MatrixError (exit 2) with file, key path and fix
    table = matrix.gpu_table()  # the product table is read lazily elsewhere; check reads it too
    rules = tuple(dict.fromkeys(matrix.chip_rules().values()))
    if args.upstream:
        from envbuilder.cli.matrix_audit import check_upstream

        return check_upstream(_dirs(args), _upstream_options(args), json=args.json, show_unchecked=args.all)
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
        "transformers quantizer rows": len(matrix.quantizers),
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
        *(f for p in matrix.profiles for f in p.formats),
        *matrix.quantizers,
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
    from envbuilder.model.matrix import matrix_dirs

    return list(matrix_dirs(getattr(args, "matrix_dir", None)))


def _upstream_options(args: argparse.Namespace) -> UpstreamOptions:
    """The configured sources (flags, ENVBUILDER_*, pip's configuration), as create/lock/sync read them."""
    from envbuilder.cli._sources import settings_from_args
    from envbuilder.cli.matrix_audit import UpstreamOptions
    from envbuilder.edge.sources import reachable
    from envbuilder.model.errors import SourceError

    recorded = Path(args.recorded) if getattr(args, "recorded", None) else None
    if recorded is not None and not (recorded / "pages" / "index.json").is_file():
        msg = f"--recorded {recorded}: no recorded index pages there (pages/index.json)"
        raise SourceError(msg, hint="record them online: `envbuilder matrix refresh --record DIR`")
    settings = settings_from_args(args)
    notes = list(settings.notes)
    pytorch = settings.pytorch_index
    if recorded is None and pytorch and not reachable(pytorch, settings):
        notes.append(f"the PyTorch index {pytorch} cannot be reached: builds only it serves are not checked")
        pytorch = None
    if recorded is None and settings.offline:
        msg = "--offline: reading the indexes needs the network"
        raise SourceError(msg, hint="give --recorded DIR to check against recorded files instead")
    record = Path(args.record) if getattr(args, "record", None) else None
    return UpstreamOptions(
        index_url=settings.index_url,
        pytorch_index=None if recorded else pytorch,
        ca_cert=settings.ca_certs[0] if settings.ca_certs else None,
        cache_root=settings.cache_dir,
        recorded=recorded,
        record=record,
        notes=tuple(notes),
        credentials=settings.credentials,
    )


def _run_audit(args: argparse.Namespace) -> int:
    from envbuilder.cli.matrix_audit import audit_package  # the reader and tomlkit: imported when used

    return audit_package(args.packages, _dirs(args), _upstream_options(args), update=args.update, json=args.json)


def _run_refresh(args: argparse.Namespace) -> int:
    if args.pci_ids is not None:
        from envbuilder.cli.matrix_gpus import refresh_pci_ids

        return refresh_pci_ids(_dirs(args), args.pci_ids or None, json=args.json)
    from envbuilder.cli.matrix_audit import refresh

    return refresh(_dirs(args), _upstream_options(args), json=args.json, update=args.update)


def _add_reading_options(p: argparse.ArgumentParser) -> None:
    from envbuilder.cli._sources import add_source_options

    p.add_argument(
        "--recorded",
        metavar="DIR",
        help="offline: read only the pages and facts recorded in DIR (tests/fixtures/upstream), never the network",
    )
    add_source_options(p)


def register_audit(matrix_subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `matrix audit [PACKAGE[==VERSION] ...] [--update] [--json]`."""
    p = matrix_subparsers.add_parser("audit", help="read one release's files on the index and compare with the matrix")
    p.add_argument(
        "packages",
        nargs="*",
        metavar="PACKAGE[==VERSION]",
        help="default: the newest bitsandbytes in the matrix",
    )
    p.add_argument("--update", action="store_true", help="write the observed facts back, with the evidence")
    p.add_argument("--json", action="store_true")
    _add_reading_options(p)
    p.set_defaults(handler=_run_audit)


def register_refresh(matrix_subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `matrix refresh [--update] [--record DIR] [--pci-ids [SOURCE]] [--json]`."""
    p = matrix_subparsers.add_parser(
        "refresh",
        help="read every tracked package's files on the index and propose rows for what is new or missing, "
        "or regenerate the GPU table (--pci-ids)",
    )
    p.add_argument("--update", action="store_true", help="write the observed facts and the proposed rows")
    p.add_argument("--record", metavar="DIR", help="also record every page and fact read under DIR (fixtures)")
    p.add_argument(
        "--pci-ids",
        nargs="?",
        const="",
        metavar="SOURCE",
        help="regenerate nvidia.ids from a pci.ids file or URL (default: this system's, else downloaded)",
    )
    p.add_argument("--json", action="store_true")
    _add_reading_options(p)
    p.set_defaults(handler=_run_refresh)
