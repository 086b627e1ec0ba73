"""Benchmark of the GPU product table (issue 19). Run by hand: python3 bench/bench_gpu_names.py [--runs N] [--base REF].

(a) whole process `envbuilder resolve --gpu sm_89 --driver 550.54.14` and `--gpu "RTX 4090"`, this tree against
    REF (default main: run it before landing, or give the commit the change sits on; before it the product
    names were a hand-typed list in gpus.toml), runs interleaved so that a busy machine slows both alike; the goal is
    that sm_89 is no slower: the 968-device table is read only when a GPU is named by product or PCI id;
(b) in-process: loading the matrix, building the product table on first use, one name lookup (the 187 real
    names of tests/fixtures/gpu-names/names.csv) and one PCI id lookup;
(c) the size of the tracked table against the PCI ID database it is cut from.
Prints a table and writes it to bench/RESULTS-gpu-names.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS-gpu-names.md"
NAMES = ROOT / "tests" / "fixtures" / "gpu-names" / "names.csv"
PCI_IDS = ROOT / "tests" / "fixtures" / "pci-ids" / "pci.ids"
CASES = {"sm_89": ["--gpu", "sm_89"], "RTX 4090": ["--gpu", "RTX 4090"]}


def _once(tree: Path, args: Sequence[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one whole process: on a shared machine the CPU time is the
    steadier of the two."""
    argv = [sys.executable, "-m", "envbuilder", "resolve", *args, "--driver", "550.54.14"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} in {tree} exited {done.returncode}: {done.stderr.decode()[-300:]}")
    return elapsed, (after.ru_utime - used.ru_utime) + (after.ru_stime - used.ru_stime)


def _processes(base: Path, runs: int) -> dict[tuple[str, str], list[tuple[float, float]]]:
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(runs):
        for case, args in CASES.items():
            for label, tree in (("before", base), ("after", ROOT)):
                times.setdefault((case, label), []).append(_once(tree, args))
    return times


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def _in_process(runs: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from envbuilder.model.matrix import load_matrix
    from envbuilder.model.target import gpu_from_pci_id, parse_gpu

    with NAMES.open(encoding="utf-8") as fh:
        names = [row["name"] for row in csv.DictReader(fh)]
    matrix = load_matrix()
    matrix.gpu_table()
    lookups = [_median_ms(lambda n=n: parse_gpu(n, matrix), 5) for n in names]  # type: ignore[misc]
    return {
        "load + validate the matrix (no product table)": _median_ms(load_matrix, runs),
        "build the product table on first use": _median_ms(lambda: load_matrix().gpu_table(), runs)
        - _median_ms(load_matrix, runs),
        f"one name lookup (median of the {len(names)} real names)": statistics.median(lookups),
        "one name lookup (slowest of them)": max(lookups),
        "one PCI id lookup (10de:28a1)": _median_ms(lambda: gpu_from_pci_id("10de", "28a1", matrix), runs),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--base", default="main", help="the git revision to compare with (main before landing)")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(base), args.base], check=True)
        try:
            times = _processes(base, args.runs)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    inproc = _in_process(args.runs)
    rows = []
    for case in CASES:
        for i, kind in enumerate(("wall", "CPU")):
            before = statistics.median(t[i] for t in times[(case, "before")]) * 1000
            after = statistics.median(t[i] for t in times[(case, "after")]) * 1000
            rows.append((f"`resolve --gpu {case!r}` whole process, {kind} time: {args.base} / this tree",
                         f"{before:.0f} ms / {after:.0f} ms: **{after / before:.2f}x**"))  # fmt: skip
    rows += [(what, f"{ms:.2f} ms") for what, ms in inproc.items()]
    table = (ROOT / "matrices" / "nvidia.ids").stat().st_size
    rows.append(("`matrices/nvidia.ids` vs the pci.ids excerpt it is cut from (whole NVIDIA vendor)",
                 f"{table / 1024:.1f} KiB vs {PCI_IDS.stat().st_size / 1024:.1f} KiB"))  # fmt: skip
    text = "\n".join(
        [
            "# GPU product table benchmark",
            "",
            f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"{time.strftime('%Y-%m-%d')}; whole-process times are medians of {args.runs} interleaved runs; load average "
            f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after (the machine is shared).",
            "Run `python3 bench/bench_gpu_names.py` to reproduce.",
            "",
            "| measure | value |",
            "|---|---|",
            *(f"| {what} | {value} |" for what, value in rows),
            "",
        ]
    )
    RESULTS.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
