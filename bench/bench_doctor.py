"""Benchmark: `envbuilder doctor --env` (goal: < 5 s apart from import torch) and the CPU smoke test (< 30 s).

Run by hand: python bench/bench_doctor.py --env PATH [--repeat N] [--no-smoke]   (or --python EXE)
Each repetition times, back to back, the environment's bare ``import torch`` (inside its interpreter,
start-up excluded) and the whole doctor command as a user runs it (``python -m envbuilder doctor --env
PATH --json``: our start-up, the matrix, the light probe in the environment, the rules). Reported: medians,
and the median of the per-repetition differences doctor - import torch (the goal's figure). Start-ups are
left inside the difference on purpose, so the figure errs on the slow side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from envbuilder.edge import _run
from envbuilder.smoke import env_python, run_smoke

GOAL_DOCTOR = 5.0
GOAL_SMOKE = 30.0


def import_seconds(python: Path, modules: str) -> float:
    """Seconds ``import <modules>`` takes inside ``python`` (its interpreter start-up excluded)."""
    code = f"import time; t = time.perf_counter(); import {modules}; print(time.perf_counter() - t)"
    return float(_run.run([str(python), "-c", code], timeout=300).stdout.strip().splitlines()[-1])


def doctor_seconds(where: list[str]) -> tuple[float, dict[str, Any]]:
    """Wall seconds of ``envbuilder doctor <where> --json`` in a fresh process, and its document."""
    t = time.perf_counter()
    argv = [sys.executable, "-m", "envbuilder", "doctor", *where, "--json"]
    result = _run.run(argv, check=False, timeout=300)
    seconds = time.perf_counter() - t
    if result.returncode not in (0, 1):
        msg = f"doctor exited {result.returncode}: {result.stderr[-2000:]}"
        raise SystemExit(msg)
    return seconds, json.loads(result.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--env", help="a CPU-profile environment (torch CPU + bitsandbytes)")
    where.add_argument("--python", help="an interpreter, not an environment (e.g. a GPU host's python3)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-smoke", action="store_true", help="time the doctor only")
    args = parser.parse_args()
    python = env_python(env=args.env, python=args.python)
    target = ["--env", args.env] if args.env else ["--python", str(python)]
    torch_s, doctor_s, diffs, smoke_s = [], [], [], []
    doc: dict[str, Any] = {}
    for _ in range(args.repeat):
        t_torch = import_seconds(python, "torch")
        t_doctor, doc = doctor_seconds(target)
        torch_s.append(t_torch)
        doctor_s.append(t_doctor)
        diffs.append(t_doctor - t_torch)
    dynamo = import_seconds(python, "torch, torch._dynamo")
    if not args.no_smoke:
        for _ in range(max(1, args.repeat // 2)):
            t = time.perf_counter()
            report = run_smoke(python)
            smoke_s.append(time.perf_counter() - t)
            assert report.ok, report.summary()
    med = statistics.median
    findings = [f["rule"] for f in doc.get("findings", [])]
    print(f"environment: {python}  (repeat {args.repeat}; last doctor findings: {findings or 'none'})")
    print(f"bare `import torch`:              {med(torch_s):6.2f} s  (min {min(torch_s):.2f}, max {max(torch_s):.2f})")
    print(
        f"doctor --json, whole command:     {med(doctor_s):6.2f} s  (min {min(doctor_s):.2f}, max {max(doctor_s):.2f})"
    )
    print(f"doctor - import torch (per run):  {med(diffs):6.2f} s  (max {max(diffs):.2f})   goal < {GOAL_DOCTOR:.0f} s")
    print(f"for scale, `import torch, torch._dynamo` (what importing bitsandbytes costs): {dynamo:.2f} s")
    if smoke_s:
        print(
            f"smoke, full CPU run (wall):       {med(smoke_s):6.2f} s  (of {len(smoke_s)})   goal < {GOAL_SMOKE:.0f} s"
        )


if __name__ == "__main__":
    main()
