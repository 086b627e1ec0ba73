"""Benchmark: `doctor` on an environment (goal < 5 s apart from importing torch) and the CPU smoke test
(goal < 30 s). Run by hand: python bench/bench_doctor.py --env PATH [--repeat N]; prints the figures."""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from envbuilder import _run
from envbuilder.doctor import Context, diagnose
from envbuilder.doctor.evidence import collect
from envbuilder.matrix import load_matrix
from envbuilder.smoke import find_python, run_smoke


def _import_seconds(python: Path, modules: str) -> float:
    code = f"import time; t = time.perf_counter(); import {modules}; print(time.perf_counter() - t)"
    return float(_run.run([str(python), "-c", code], timeout=300).stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--env", required=True, help="a CPU-profile environment (torch CPU + bitsandbytes)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    python = find_python(env=args.env)
    matrix = load_matrix()
    doctor, smoke, torch_import, dynamo_import = [], [], [], []
    for _ in range(args.repeat):
        torch_import.append(_import_seconds(python, "torch"))
        # bitsandbytes >= 0.46 registers torch.library ops, which imports torch._dynamo: torch's own cost
        dynamo_import.append(_import_seconds(python, "torch, torch._dynamo"))
        t = time.perf_counter()
        evidence, _ = collect(python)
        diagnose(Context(matrix=matrix, evidence=evidence, python=str(python)))
        doctor.append(time.perf_counter() - t)
        t = time.perf_counter()
        report = run_smoke(python)
        smoke.append(time.perf_counter() - t)
        assert report.ok, report.summary()
    med = statistics.median
    print(f"import torch alone:          {med(torch_import):6.2f} s (median of {args.repeat})")
    print(f"doctor --env (wall):         {med(doctor):6.2f} s")
    print(f"import torch + torch._dynamo:{med(dynamo_import):6.2f} s (pulled in by bitsandbytes' op registration)")
    print(f"doctor minus torch import:   {med(doctor) - med(torch_import):6.2f} s")
    print(f"doctor minus torch+_dynamo:  {med(doctor) - med(dynamo_import):6.2f} s   (goal < 5 s)")
    print(f"smoke, full CPU (wall):      {med(smoke):6.2f} s   (goal < 30 s)")


if __name__ == "__main__":
    main()
