"""`envbuilder smoke`: run the staged smoke test inside an environment; on failure, doctor's verdict."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from envbuilder.cli import _console
from envbuilder.cli._common import load_matrix_for, print_json
from envbuilder.model.errors import EXIT_CHECK_FAILED, EXIT_OK
from envbuilder.model.types import PROFILES

if TYPE_CHECKING:
    from envbuilder.doctor import Finding

__all__ = [
    "register",
    "run",
]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("smoke", help="prove an environment works: imports, GPU, kernels, 4-/8-bit, a tiny model")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--env", metavar="PATH", help="the virtual environment to test")
    where.add_argument("--python", metavar="EXE", help="the interpreter to test (default: this one)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (schema envbuilder.smoke/1)")
    p.add_argument("--quick", action="store_true", help="leave out the tiny-model stages")
    p.add_argument(
        "--profile",
        default="bnb",
        choices=PROFILES,
        help="which library stages to add (gptq/awq: the quantization library's kernel path)",
    )
    p.add_argument(
        "--formats",
        metavar="LIST",
        type=_formats,
        default=(),
        help="gptq/awq: only these checkpoint formats of the profile (comma list: gptq,awq,compressed-tensors)",
    )
    p.set_defaults(handler=run)


def _formats(text: str) -> tuple[str, ...]:
    from envbuilder.smoke.check import MAKERS

    got = tuple(f for f in text.split(",") if f)
    bad = [f for f in got if f not in MAKERS]
    if bad or not got:
        msg = f"unknown checkpoint format {bad[0]!r} (known: {', '.join(MAKERS)})" if bad else "no format named"
        raise argparse.ArgumentTypeError(msg)
    return got


_STATUS_STYLE: dict[str, _console.Style] = {"OK": "ok", "FAIL": "fail", "WARN": "warning", "SKIP": "bold"}


def run(args: argparse.Namespace) -> int:
    from envbuilder.doctor import Context, diagnose
    from envbuilder.doctor.evidence import from_smoke_document
    from envbuilder.smoke import env_python, run_smoke

    python = env_python(env=args.env, python=args.python)
    report = run_smoke(python, quick=args.quick, profile=args.profile, progress=_progress, formats=args.formats)
    findings: tuple[Finding, ...] = ()
    if not report.ok:
        evidence = from_smoke_document(report.document)
        findings = diagnose(Context(matrix=load_matrix_for(args), evidence=evidence, python=str(python)))
    if args.json:
        doc = report.to_json()
        doc["doctor"] = [f.to_json() for f in findings]
        print_json(doc)
    else:
        print(f"smoke test of {python}")
        for c in report.checks:  # report.summary()'s lines, the status coloured on a terminal
            status = _console.paint(f"{c.status:<4}", _STATUS_STYLE.get(c.status, "bold"))
            print(f"  {status} {c.name:<12} {c.detail}")
        verdict = _console.paint("PASSED", "ok") if report.ok else _console.paint("FAILED", "fail")
        print(f"{report.timing()}: {verdict}")
        if findings:
            from envbuilder.cli.doctor import render_findings

            print("doctor:")
            print(render_findings(findings))
    return EXIT_OK if report.ok else EXIT_CHECK_FAILED


def _progress(text: str) -> None:
    """The smoke program's progress lines, on stderr as they come (stdout keeps the result; a gptq/awq smoke can
    spend minutes compiling kernels at first use)."""
    sys.stderr.write(text)
    sys.stderr.flush()
