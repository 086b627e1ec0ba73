"""`envbuilder resolve`: the plan for a target, with every reason and rejection."""

from __future__ import annotations

import argparse

from envbuilder.cli import _console
from envbuilder.cli._common import add_target_options, load_matrix_for, print_json, target_from_args
from envbuilder.cli._sources import add_source_options, settings_from_args
from envbuilder.model.errors import EXIT_CHECK_FAILED, EXIT_OK

__all__ = [
    "register",
    "render",
    "run",
]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("resolve", help="pick a known-good combination for a target and explain it")
    add_target_options(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON (schema envbuilder.plan/1)")
    p.add_argument("--all", action="store_true", help="list every rejected candidate, not just the first ones")
    p.add_argument(
        "--check-sources",
        action="store_true",
        help="probe this machine's package sources (pip config, PyTorch index, wheelhouses) "
        "instead of assuming PyPI and the PyTorch index",
    )
    add_source_options(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from envbuilder.model.plan import Plan
    from envbuilder.resolve import index_variants, resolve

    matrix = load_matrix_for(args)
    target = target_from_args(args, matrix)
    sources = None
    if args.check_sources or args.find_links or args.offline or args.pytorch_index:
        from envbuilder.edge.sources import gather_sources

        sources = gather_sources(settings_from_args(args), index_variants(target, matrix))
        if not args.json:
            for note in sources.notes:
                _console.note(note)
    result = resolve(target, matrix, sources)
    if args.json:
        print_json(result.to_json())
    else:
        print(render(result, show_all=args.all))
    return EXIT_OK if isinstance(result, Plan) else EXIT_CHECK_FAILED


def render(result: object, *, show_all: bool = False) -> str:
    """A short, readable plan: pins with their index, then why, then what was rejected."""
    from envbuilder.model.plan import NoPlan, Plan

    lines: list[str] = []
    if isinstance(result, Plan):
        cuda = f"CUDA {result.cuda}" if result.cuda else "CPU"
        proven = "  [proven on a real GPU]" if result.proven else ""
        lines.append(f"plan: {result.profile} profile, Python {result.python}, {cuda} ({result.variant}){proven}")
        width = max(len(p.requirement) for p in result.packages)
        for p in result.packages:
            mark = "" if p.confirmed else "  (unconfirmed)"
            lines.append(f"  {p.requirement:<{width}}  from {p.index}{mark}")
        if result.bnb_library:
            lines.append(f"  bitsandbytes will load {result.bnb_library}")
        if result.formats:
            from envbuilder.rules.formats import formats_line

            lines.append(f"checkpoints: {formats_line(result.formats)}")
        lines.append("why:")
        lines += [f"  - {r}" for r in result.reasons]
        if result.warnings:
            lines.append("warnings:")
            lines += [f"  ! {w}" for w in result.warnings]
    elif isinstance(result, NoPlan):
        lines.append("no plan: " + result.reasons[0])
        lines += [f"  - {r}" for r in result.reasons[1:]]
        if result.nearest:
            lines.append("nearest workable alternatives:")
            lines += [f"  * {n}" for n in result.nearest]
    rejected = getattr(result, "rejected", ())
    if rejected:
        shown = rejected if show_all else rejected[:12]
        lines.append(f"rejected ({len(rejected)}):")
        lines += [f"  x {r.candidate}: {r.why}" for r in shown]
        if len(shown) < len(rejected):
            lines.append(f"  ... {len(rejected) - len(shown)} more (--all lists them)")
    return "\n".join(lines)
