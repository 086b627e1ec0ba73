"""The smoke test's edge: run ``check.py`` inside an environment's interpreter and read its JSON document.

``check.py`` uses only the standard library and the environment's packages, so it also runs by hand on
any host (``python check.py --json``). Here we locate the interpreter, run it through ``_run.run`` with a
timeout, turn the document into ``Check`` values, and add what only envbuilder can judge: whether the
bitsandbytes library that was loaded carries SASS for each GPU (read from the file with ``envbuilder.model.audit``).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from envbuilder.edge import _run
from envbuilder.edge._fs import private_tempdir
from envbuilder.model.errors import CommandFailed, TargetError
from envbuilder.model.smoke import SMOKE_SCHEMA, Check, check_from_json

if TYPE_CHECKING:
    from envbuilder.doctor import Evidence
    from envbuilder.model.types import Status

__all__ = [
    "FULL_TIMEOUT",
    "LIGHT_TIMEOUT",
    "SCRIPT",
    "SmokeReport",
    "bnb_sass_check",
    "collect_evidence",
    "env_python",
    "judge_sass",
    "parse_document",
    "run_check_script",
    "run_smoke",
]

FULL_TIMEOUT = 900.0
LIGHT_TIMEOUT = 180.0
SCRIPT = Path(__file__).resolve().parent / "check.py"


def env_python(*, env: str | Path | None = None, python: str | Path | None = None) -> Path:
    """The interpreter to test: ``--env PATH`` (a virtual environment) or ``--python EXE``; default: ours."""
    if env is not None:
        from envbuilder.edge.venv import python_of

        root = Path(env).expanduser()
        exe = python_of(root)
        if not (root / "pyvenv.cfg").is_file() or not exe.exists():
            msg = f"--env {env}: not a virtual environment (no pyvenv.cfg or {exe.relative_to(root)})"
            raise TargetError(msg, hint="pass the environment's directory, or an interpreter with --python")
        return exe
    if python is not None:
        exe = Path(python).expanduser()
        found = exe if exe.is_file() else (Path(p) if (p := _run.which(str(python))) else None)
        if found is None:
            msg = f"--python {python}: no such interpreter"
            raise TargetError(msg, hint="give the path of the environment's python executable")
        if not os.access(found, os.X_OK):
            msg = f"--python {python}: not an executable program"
            raise TargetError(msg, hint="give the path of the environment's python executable (e.g. .venv/bin/python)")
        return found
    return Path(sys.executable)


def parse_document(stdout: str) -> dict[str, Any]:
    """The JSON document from the script's stdout (its last line), schema checked."""
    lines = [ln for ln in stdout.strip().splitlines() if ln.startswith("{")]
    if not lines:
        msg = "the smoke script printed no JSON document"
        raise ValueError(msg)
    doc = json.loads(lines[-1])
    if not isinstance(doc, dict) or doc.get("schema") != SMOKE_SCHEMA:
        msg = f"unexpected smoke document schema {doc.get('schema') if isinstance(doc, dict) else None!r}"
        raise ValueError(msg)
    return doc


def run_check_script(
    python: Path, args: Sequence[str], *, timeout: float, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run check.py with ``python``; its document, or a document with one FAIL stage saying why there is none.

    ``progress`` gets the script's stderr as it comes (``--progress``: a line as each stage starts and ends)."""
    # The script gets a temporary directory of its own (removed here even when the script is killed), so no
    # envbuilder-smoke-* outlives the run; one a SIGKILL of envbuilder left behind goes with the next build.
    with private_tempdir("smoke") as tmp:
        env = {**os.environ, "TMPDIR": str(tmp), "TEMP": str(tmp), "TMP": str(tmp)}
        try:
            argv = [str(python), "-X", "utf8", str(SCRIPT), "--json", *args]
            relay = None
            if progress is not None:
                argv.append("--progress")
                relay = _run.Relay(sink=progress)
            result = _run.run(argv, check=False, timeout=timeout, env=env, relay_stderr=relay)
        except CommandFailed as exc:
            return _harness_failure(exc.message, "")
    try:
        return parse_document(result.stdout)
    except ValueError as exc:
        return _harness_failure(f"{exc} (exit {result.returncode})", result.stderr)


def _harness_failure(why: str, stderr: str) -> dict[str, Any]:
    stage = {
        "name": "harness",
        "status": "FAIL",
        "detail": why,
        "hint": "run the script by hand to see more",
        "seconds": 0.0,
        "evidence": {"stderr": stderr[-4000:]},
    }
    return {"schema": SMOKE_SCHEMA, "mode": "?", "ok": False, "stages": [stage]}


@dataclass(frozen=True, slots=True, kw_only=True)
class SmokeReport:
    """The checks of one smoke run, and the raw document they came from."""

    python: str
    checks: tuple[Check, ...]
    document: Mapping[str, Any]

    @property
    def ok(self) -> bool:
        return not any(c.status == "FAIL" for c in self.checks)

    def summary(self) -> str:
        """One line per stage: status, name, detail."""
        return "\n".join(f"  {c.status:<4} {c.name:<12} {c.detail}" for c in self.checks)

    def record(self) -> dict[str, Any]:
        """What a lock or marker keeps: the verdict and each stage's status and detail (no raw evidence)."""
        return {
            "result": "pass" if self.ok else "fail",
            "schema": SMOKE_SCHEMA,
            "mode": self.document.get("mode"),
            "stages": [{"name": c.name, "status": c.status, "detail": c.detail} for c in self.checks],
        }

    def timing(self) -> str:
        """Imports apart from the stages' own work: ``imports 12.5 s (torch 4.0, ...); stages 1.3 s; total ...``."""
        from envbuilder.smoke.check import timing_line

        return timing_line(dict(self.document))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SMOKE_SCHEMA,
            "python": self.python,
            "ok": self.ok,
            "mode": self.document.get("mode"),
            "stages": [c.to_json() for c in self.checks],
            "imports": dict(self.document.get("imports") or {}),
            "seconds": dict(self.document.get("seconds") or {}),
        } | ({"jit": self.document["jit"]} if "jit" in self.document else {})


def run_smoke(
    python: Path,
    *,
    quick: bool = False,
    profile: str = "bnb",
    timeout: float = FULL_TIMEOUT,
    bounds: Mapping[str, Mapping[str, float]] | None = None,
    progress: Callable[[str], None] | None = None,
    formats: Sequence[str] = (),
) -> SmokeReport:
    """Run every stage inside ``python``'s environment and judge the bitsandbytes library's SASS.

    ``bounds`` default to matrices/smoke.toml (with any ENVBUILDER_MATRIX_DIR overlay); ``progress`` gets a
    line as each stage starts and ends; ``formats``: only these checkpoint formats of a gptq/awq profile."""
    from envbuilder.model.smoke import load_smoke_table

    given = bounds if bounds is not None else load_smoke_table().bounds_json()
    args = ["--profile", profile, "--bounds", json.dumps(given, sort_keys=True)] + (["--quick"] if quick else [])
    args += ["--formats", ",".join(formats)] if formats else []
    doc = run_check_script(python, args, timeout=timeout, progress=progress)
    checks = [check_from_json(s) for s in doc.get("stages", [])]
    if profile in ("bnb", "cpu"):  # gptq/awq environments hold no bitsandbytes
        at = next((i + 1 for i, c in enumerate(checks) if c.name == "bnb_import"), len(checks))
        checks.insert(at, bnb_sass_check(checks))
    return SmokeReport(python=str(python), checks=tuple(checks), document=doc)


def bnb_sass_check(checks: Sequence[Check]) -> Check:
    """Does the loaded bitsandbytes library carry SASS (or PTX) for every GPU? Read from the file itself."""
    by = {c.name: c for c in checks}
    bnb, cuda = by.get("bnb_import"), by.get("cuda")
    devices = list(cuda.evidence.get("devices", [])) if cuda else []
    if bnb is None or bnb.status != "OK":
        return Check(name="bnb_sass", status="SKIP", detail="skipped: stage 'bnb_import' did not pass")
    if not devices:
        return Check(name="bnb_sass", status="SKIP", detail="no GPU: nothing to check the library's SASS against")
    path = str((bnb.evidence.get("library") or {}).get("path") or "")
    if not path:
        return Check(name="bnb_sass", status="SKIP", detail="the loaded library's path is unknown")
    try:
        from envbuilder.model.audit import read_library

        report = read_library(Path(path).read_bytes(), path)
    except (OSError, TypeError, ImportError) as exc:
        return Check(name="bnb_sass", status="SKIP", detail=f"cannot read the loaded library: {exc}")
    return judge_sass(report.sass, report.ptx, devices, Path(path).name)


def judge_sass(sass: Sequence[str], ptx: Sequence[str], devices: Sequence[Mapping[str, Any]], lib: str) -> Check:
    """Pure: SASS X.y runs on X.z (z >= y); PTX X.y JIT-compiles on any cc >= X.y (slow first start: WARN)."""
    from envbuilder.rules.cuda import ptx_covers, sass_covers

    plain = [s.rstrip("af") for s in sass]  # arch-specific (9.0a) and family (12.0f) targets as their base
    status: Status = "OK"
    notes: list[str] = []
    for d in devices:
        cc, sm = str(d["cc"]), "sm_" + str(d["cc"]).replace(".", "")
        hit = sass_covers(plain, cc)
        if hit:
            notes.append(f"cuda:{d['index']} {sm} runs SASS {hit}")
        elif any(ptx_covers(p.rstrip("af"), cc) for p in ptx):
            status = "WARN" if status == "OK" else status
            notes.append(f"cuda:{d['index']} {sm} only through PTX (JIT)")
        else:
            status = "FAIL"
            notes.append(f"cuda:{d['index']} {sm}: {lib} has no SASS for it (has {', '.join(sass) or 'none'})")
    return Check(
        name="bnb_sass",
        status=status,
        detail="; ".join(notes),
        evidence={"library": lib, "sass": list(sass), "ptx": list(ptx)},
    )


def collect_evidence(python: Path, *, extra: Sequence[str] = ()) -> tuple[Evidence, dict[str, Any]]:
    """Run the light probe inside ``python``'s environment; (the doctor's evidence, the raw document)."""
    from envbuilder.doctor.evidence import from_smoke_document

    doc = run_check_script(python, ["--light", *extra], timeout=LIGHT_TIMEOUT)
    return from_smoke_document(doc), doc
