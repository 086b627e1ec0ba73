"""`envbuilder matrix check|audit|refresh`: validate the facts, and compare them with the wheels."""

from __future__ import annotations

import argparse
import importlib

from envbuilder.cli._common import load_matrix_for, print_json


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("matrix", help="validate the matrix, or audit it against real wheels")
    msub = p.add_subparsers(dest="matrix_command", metavar="ACTION", parser_class=type(p))
    check = msub.add_parser("check", help="validate types, keys and cross-references of matrices/*.toml")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=run_check)
    try:
        matrix_audit = importlib.import_module("envbuilder.cli.matrix_audit")
    except ModuleNotFoundError:
        pass  # the audit commands are optional until their module lands
    else:
        matrix_audit.register_audit(msub)
        matrix_audit.register_refresh(msub)
    p.set_defaults(handler=lambda args: (p.print_help(), 2)[1])


def run_check(args: argparse.Namespace) -> int:
    matrix = load_matrix_for(args)  # raises MatrixError (exit 2) with file, key path and fix
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
    }
    facts = [
        *matrix.archs,
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
            }
        )
    else:
        print(f"matrix OK ({matrix.date}, digest {matrix.digest[:12]}): {len(facts)} facts, {unconfirmed} unconfirmed")
        for name, n in counts.items():
            print(f"  {n:4d} {name}")
    return 0
