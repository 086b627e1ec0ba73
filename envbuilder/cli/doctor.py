"""`envbuilder doctor`: diagnose an environment or a pasted log; `--fix` carries out the fix after asking."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from envbuilder.cli import _console
from envbuilder.cli._common import load_matrix_for, print_json
from envbuilder.model.errors import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE, TargetError

if TYPE_CHECKING:
    from envbuilder.doctor import Evidence, Finding
    from envbuilder.doctor.verdict import Verdict
    from envbuilder.model.matrix import Matrix

__all__ = [
    "LOG_CAP",
    "register",
    "render_findings",
    "render_verdict",
    "run",
]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", help="explain a broken environment or an error log, with the exact fix")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--env", metavar="PATH", help="the virtual environment to examine")
    where.add_argument("--python", metavar="EXE", help="the interpreter to examine")
    p.add_argument("--log", metavar="FILE", help="a log or traceback to read ('-' for stdin)")
    p.add_argument("--json", action="store_true", help="print the findings as JSON (schema envbuilder.doctor/1)")
    p.add_argument("--fix", action="store_true", help="carry out the fixes (after showing them and asking)")
    p.add_argument("--yes", action="store_true", help="with --fix: do not ask (environments envbuilder built only)")
    p.set_defaults(handler=run)


# How much of a log doctor reads: up to 16 MiB of a file whole; beyond that its first and last 8 MiB (an error
# is near the end, the versions near the start); a stream (stdin, a pipe, /dev/zero) stops at 16 MiB.
LOG_CAP = 16 * 2**20


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _read_log(spec: str) -> str:
    """The log's text, in bounded memory; what was not read is said on stderr."""
    if spec == "-":
        buffer = getattr(sys.stdin, "buffer", None)
        data = buffer.read(LOG_CAP + 1) if buffer is not None else sys.stdin.read(LOG_CAP + 1).encode()
        return _stream_text(data, "stdin")
    try:
        with Path(spec).open("rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                return _stream_text(fh.read(LOG_CAP + 1), spec)
            if st.st_size <= LOG_CAP:
                return fh.read().decode("utf-8", errors="replace")
            half = LOG_CAP // 2
            head = fh.read(half)
            fh.seek(-half, os.SEEK_END)
            tail = fh.read(half)
    except OSError as exc:
        msg = f"--log {spec}: cannot read it ({exc.strerror})"
        raise TargetError(msg, hint="give a readable file, or '-' to read the log from stdin") from None
    skipped = st.st_size - len(head) - len(tail)
    _console.note(
        f"{spec} is {_mib(st.st_size)}: read its first and last {_mib(half)}, skipped {_mib(skipped)} between"
    )
    return (head + b"\n" + tail).decode("utf-8", errors="replace")


def _reduced(log: str) -> str:
    """A big log as the rules read it (its distinct trigger lines, bounded); a note when lines were left out.
    What it returns is at most BIG_LOG long, so ``doctor.prepared`` leaves it as it is."""
    from envbuilder.doctor import load_triggers
    from envbuilder.doctor.logs import BIG_LOG, TRIGGER_CAP, reduced_log

    if len(log) <= BIG_LOG:
        return log
    text, skipped = reduced_log(log, load_triggers())
    if skipped:
        _console.note(
            f"the log holds more than {TRIGGER_CAP // 1024} KiB of distinct lines that name the stack: read the first"
            f" and last {TRIGGER_CAP // 2048} KiB of them, skipped {skipped} lines between"
        )
    return text


def _stream_text(data: bytes, where: str) -> str:
    if len(data) > LOG_CAP:
        _console.note(f"stopped reading {where} at {_mib(LOG_CAP)}; pass the file itself to read its end too")
        data = data[:LOG_CAP]
    return data.decode("utf-8", errors="replace")


def run(args: argparse.Namespace) -> int:
    from envbuilder.doctor import Context, doctor_json, examine
    from envbuilder.doctor.loader import judge
    from envbuilder.doctor.verdict import verdict

    log = _reduced(_read_log(args.log)) if args.log else ""
    evidence, python, env_dir = None, None, None
    ours = False
    if args.env or args.python or not args.log:  # an environment: the probe and its modules (not for a log alone)
        from envbuilder.edge.settings import Settings
        from envbuilder.edge.venv import is_ours
        from envbuilder.smoke import collect_evidence, env_python

        python = env_python(env=args.env, python=args.python)
        evidence, _ = collect_evidence(python)
        env_dir = Path(args.env) if args.env else Path(evidence.python_exe or python).parent.parent
        # A file named envbuilder.json proves nothing: `--fix --yes` changes only environments envbuilder built.
        ours = is_ours(env_dir, Settings())
    matrix = load_matrix_for(args)
    if evidence is not None:
        evidence = judge(matrix, evidence)  # which library the installed release loads (the JSON shows it too)
    ctx = Context(matrix=matrix, evidence=evidence, log=log, python=str(python) if python else None, ours=ours)
    findings, facts, answer = examine(ctx)
    if env_dir is not None:
        with_drift = _with_drift(findings, env_dir, matrix, evidence)  # issue 15: the installed set against the lock
        if with_drift != findings:
            findings, answer = with_drift, verdict(with_drift, facts, ctx.text)
    source = "log" if not python else ("environment+log" if log else "environment")
    if args.json:
        print_json(doctor_json(findings, source=source, evidence=evidence or facts, verdict=answer))
    else:
        where = f"{env_dir} ({'built by envbuilder' if ours else 'not built by envbuilder'})" if env_dir else "the log"
        print(f"doctor: {where}")
        print(render_verdict(answer, alone=not findings))
        if findings:
            print(render_findings(findings))
    failed = not answer.ok
    if args.fix and any(f.severity == "FAIL" for f in findings):
        return _fix(findings, env_dir=env_dir, ours=ours, assume_yes=args.yes)
    return EXIT_CHECK_FAILED if failed else EXIT_OK


_SEVERITY_STYLE: dict[str, _console.Style] = {"FAIL": "fail", "WARN": "warning", "OK": "ok"}


def render_verdict(answer: Verdict, *, alone: bool = True) -> str:
    """The one answer first: what broke (its layer), or not recognised with what was read, or fine."""
    head = {
        "broken": f"broken: {answer.layer or 'the stack'}",
        "not-recognised": "not recognised (exit 1): an error in the stack that no rule explains",
        "outside": "the stack looks fine; the error is outside it",
        "healthy": "the stack looks fine",
    }[answer.kind]
    lines = [f"  verdict: {head}"]
    if answer.kind == "not-recognised":
        lines.append(f"    seen:  {answer.seen}")
        lines += [f"    read:  {fact}" for fact in answer.extracted] or ["    read:  no version, GPU or library named"]
        lines.append(f"    next:  {answer.fix}")
    elif alone and answer.seen:
        lines += [f"    seen:  {answer.seen}", f"    cause: {answer.cause}", f"    fix:   {answer.fix}"]
    return "\n".join(lines)


def render_findings(findings: Sequence[Finding]) -> str:
    """Each finding: severity and rule, the quoted line, the cause, the fix."""
    lines: list[str] = []
    for f in findings:
        layer = f" ({f.layer})" if f.layer else ""
        lines.append(f"  [{_console.paint(f.severity, _SEVERITY_STYLE.get(f.severity, 'bold'))}] {f.rule}{layer}")
        lines.append(f"    seen:  {f.seen}")
        lines.append(f"    cause: {f.cause}")
        lines.append(f"    fix:   {f.fix}")
    return "\n".join(lines)


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in {"y", "yes"}


def _fix(findings: Sequence[Finding], *, env_dir: Path | None, ours: bool, assume_yes: bool) -> int:
    """Run the fixes' commands: asked first; an environment envbuilder did not build is named as such and
    always asked about (``--yes`` does not cover it)."""
    from envbuilder.edge import _run
    from envbuilder.edge.uv import find_uv

    commands = list(dict.fromkeys(c for f in findings if f.severity == "FAIL" for c in f.commands))
    if not commands:
        print("no fix can be carried out automatically: follow the 'fix' lines above", file=sys.stderr)
        return EXIT_CHECK_FAILED
    print("the fix would run:")
    for c in commands:
        print("  " + " ".join(c))
    if env_dir is not None and not ours:
        print(f"{env_dir} was not built by envbuilder (no envbuilder.json): this changes it in place.")
        if not _ask("change it anyway?"):
            hint = "rebuild it with `envbuilder create`, or answer yes at a terminal"
            print(_console.error_lines("left unchanged", hint), file=sys.stderr)
            return EXIT_USAGE
    elif not assume_yes and not _ask("run it?"):
        print(_console.error_lines("left unchanged (--yes runs the fix without asking)", None), file=sys.stderr)
        return EXIT_USAGE
    uv = find_uv()
    for c in commands:
        argv = (uv, *c[1:]) if c[0] == "uv" else c
        if c[0] == "envbuilder":
            argv = (sys.executable, "-m", "envbuilder", *c[1:])
        _run.run(argv, timeout=900, capture=False)
    print("fixed; run `envbuilder smoke` to prove it")
    return EXIT_OK


def _with_drift(
    findings: Sequence[Finding], env: Path, matrix: Matrix, evidence: Evidence | None
) -> tuple[Finding, ...]:
    """``findings`` and the drift findings of an environment that keeps its lock (``doctor.drift``), FAIL first."""
    from envbuilder.doctor.drift import drift_findings
    from envbuilder.edge.guard import installed_versions
    from envbuilder.edge.settings import Settings
    from envbuilder.edge.venv import env_ref, locked_versions, sync_argv

    locked = locked_versions(env)
    if locked is None:
        return tuple(findings)
    settings = Settings()
    platform = evidence.platform if evidence is not None else "linux-x86_64"
    ref = " ".join(env_ref(env.absolute(), settings))
    drift = drift_findings(
        matrix, installed_versions(env), locked, env=ref, sync=sync_argv(env.absolute(), settings), platform=platform
    )
    order = {"FAIL": 0, "WARN": 1, "INFO": 2}
    return tuple(sorted((*drift, *findings), key=lambda f: order[f.severity]))
