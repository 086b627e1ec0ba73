"""Benchmark of `envbuilder resolve` (issues 2 and 12). Run by hand: python3 bench/bench_resolve.py [--runs N].

(a) whole process `envbuilder resolve --gpu sm_89 --driver 550.54.14` through the console script's code
    (``envbuilder.cli.entry``), median of N runs (goal <= 80 ms, issue 12: it was 136-184 ms), against
    `python -c pass` (interpreter start-up) and `uv pip compile` of the same pins (what a user would otherwise
    reach for) as ratios. Three ways, run in one rotation so that the machine's load weighs on all alike:
    the answer replayed (cli/_replay.py: what a second run with the same inputs does), the answer computed
    (the replay entry removed before each run; the compiled matrix warm, edge/matrix_cache.py), and the bare
    interpreter. Wall time and the child's CPU time (user + system: what a shared, loaded machine inflates
    least, as bench_gpu_names.py measures) are both reported. The runs use a fresh cache directory: the first
    one (reported apart) validates the matrix, writes its compiled copy and records the answer, as a user's
    first command does;
(b) in-process resolve with the matrix loaded once, median (goal < 20 ms), and the matrix load itself;
(c) `python -X importtime -c "import envbuilder.cli"`: nothing heavy (requests, tomlkit, docker) at start-up.
Prints a table and writes it to bench/RESULTS-resolve.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "RESULTS-resolve.md"
ARGS = ["resolve", "--gpu", "sm_89", "--driver", "550.54.14"]
# What the console script pip writes runs (`from envbuilder.cli import entry; sys.exit(entry())`).
SCRIPT = "import sys; sys.argv[0] = 'envbuilder'; from envbuilder.cli import entry; entry()"
HEAVY = ("requests", "tomlkit", "docker", "urllib3", "hypothesis")
# The pins envbuilder's plan for sm_89 + 550 names, as a user would hand them to uv (the torch pin is the
# PyPI build: the PyTorch index is out of reach here).
PINS = ["torch==2.14.1", "bitsandbytes==0.50.2", "transformers==5.24.0", "accelerate==1.15.0", "peft==0.21.2"]


CPU: dict[int, list[float]] = {}  # id(wall times list) -> the same runs' CPU times


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time_process(argv: Sequence[str], runs: int, root: Path = ROOT, cache: str | None = None) -> list[float]:
    times: list[float] = []
    cpu: list[float] = []
    env = {**os.environ, "PYTHONPATH": str(root), **({"ENVBUILDER_CACHE": cache} if cache else {})}
    for _ in range(runs):
        before = _children_cpu()
        start = time.perf_counter()
        subprocess.run(argv, cwd=root, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - start)
        cpu.append(_children_cpu() - before)
    CPU[id(times)] = cpu
    return times


Step = tuple[Sequence[str], Path, Callable[[], object] | None, str | None]  # argv, checkout, before it, cache


def _rotation(steps: Sequence[Step], runs: int) -> list[list[float]]:
    """Each step (argv, checkout, what to do before it, untimed, and its cache directory) timed in turn,
    ``runs`` rounds: the machine's load weighs on every step alike."""
    times: list[list[float]] = [[] for _ in steps]
    cpus: list[list[float]] = [[] for _ in steps]
    for _ in range(runs):
        for i, (argv, root, before, cache) in enumerate(steps):
            if before is not None:
                before()
            one = _time_process(argv, 1, root, cache)
            times[i] += one
            cpus[i] += CPU[id(one)]
    for t, c in zip(times, cpus, strict=True):
        CPU[id(t)] = c
    return times


def _time_call(fn: Callable[[], object], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def _uv_compile(runs: int) -> list[float] | None:
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.in"
        req.write_text("\n".join(PINS) + "\n")
        argv = ["uv", "pip", "compile", "--quiet", "--python-version", "3.12", str(req)]
        warm = subprocess.run(argv, capture_output=True, check=False, text=True)  # fills uv's cache
        if warm.returncode != 0:
            print(f"uv pip compile failed, left out: {warm.stderr.strip()[:200]}", file=sys.stderr)
            return None
        return _time_process(argv, runs)


def _importtime() -> tuple[float, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import envbuilder.cli"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    modules = [m.group(2).strip() for m in re.finditer(r"\|\s*(\d+) \|(.*)$", proc.stderr, re.MULTILINE)]
    total = sum(
        int(m.group(1)) for m in re.finditer(r"^import time:\s+\d+ \|\s*(\d+) \| \S", proc.stderr, re.MULTILINE)
    )
    heavy = sorted({m for m in modules if m.split(".")[0] in HEAVY})
    return total / 1e6, heavy


# One resolve process's phases, timed inside it (a fresh process, the compiled matrix warm): what the CLI pays.
PHASES = """
import time
t0 = time.perf_counter()
import envbuilder.cli.resolve, envbuilder.resolve, envbuilder.edge.matrix_cache, envbuilder.model.target
t1 = time.perf_counter()
from envbuilder.edge.matrix_cache import cached_matrix
matrix = cached_matrix()
t2 = time.perf_counter()
from envbuilder.model.target import build_target, parse_gpus
target = build_target(matrix, gpus=parse_gpus("sm_89", matrix), driver="550.54.14")
from envbuilder.resolve import resolve
envbuilder.cli.resolve.render(resolve(target, matrix))
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def _phases(runs: int) -> list[float]:
    """Minimum over ``runs`` fresh processes of: imports, reading the compiled matrix, the first resolve."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    best = [float("inf")] * 3
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", PHASES], cwd=ROOT, env=env, capture_output=True, text=True, check=True
        )
        best = [min(b, float(x)) for b, x in zip(best, out.stdout.split(), strict=True)]
    return best


def _import_groups(runs: int, forget: Callable[[], object]) -> dict[str, float]:
    """``-X importtime`` of the resolve command, each module's own time summed by who wrote it (minimum over
    ``runs``): envbuilder's modules (mostly creating their dataclasses), packaging's, the standard library's."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    best: dict[str, float] = {}
    for _ in range(runs):
        forget()  # the answer computed, not replayed
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "envbuilder", *ARGS],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        groups = dict.fromkeys(("envbuilder", "packaging", "standard library"), 0.0)
        after_site = False
        for m in re.finditer(r"^import time:\s+(\d+) \|\s+\d+ \| *(\S+)", proc.stderr, re.MULTILINE):
            name = m.group(2)
            if name == "site":
                after_site = True  # site and what it imports are `python -c pass`'s too
            elif after_site:
                top = name.split(".")[0]
                groups[top if top in groups else "standard library"] += int(m.group(1)) / 1e6
        best = {k: min(v, best.get(k, v)) for k, v in groups.items()}
    return best


def _processes(command: list[str], runs: int, baseline: Path | None) -> dict[str, Any]:
    """The whole-process figures: the first run, then replayed, computed, bare and ``-m`` in one rotation."""
    with tempfile.TemporaryDirectory() as cold_cache, tempfile.TemporaryDirectory() as no_replay:
        os.environ["ENVBUILDER_CACHE"] = cold_cache
        first = _time_process(command, 1)  # an empty cache: validates the matrix, compiles it, records the answer
        _time_process(command, 1, cache=no_replay)  # the computed runs' own cache: their compiled matrix, warm
        if baseline:
            _time_process(command, 1, baseline)  # its own compiled matrix (another key), kept beside ours

        def forget() -> None:  # the next computed run finds no answer to replay
            shutil.rmtree(Path(no_replay) / "replay", ignore_errors=True)

        as_module = [sys.executable, "-m", "envbuilder", *ARGS]
        steps: list[Step] = [
            (command, ROOT, None, None),
            (command, ROOT, forget, no_replay),
            ([sys.executable, "-c", "pass"], ROOT, None, None),
            (as_module, ROOT, None, None),
        ]
        if baseline:
            steps.append((as_module, baseline, None, None))
        _time_process(as_module, 1)  # `-m` has its own sys.path, so its own key: recorded here, untimed
        cli, computed, bare, module, *base_runs = _rotation(steps, runs)
        forget()
        os.environ["ENVBUILDER_CACHE"] = no_replay
        phases = _phases(7)
        groups = _import_groups(7, forget)
        del os.environ["ENVBUILDER_CACHE"]
    return {
        "first": first,
        "cli": cli,
        "computed": computed,
        "bare": bare,
        "module": module,
        "base": base_runs[0] if base_runs else [],
        "phases": phases,
        "groups": groups,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-uv", action="store_true", help="skip uv pip compile (needs PyPI)")
    parser.add_argument(
        "--baseline", type=Path, metavar="DIR", help="another checkout (e.g. `git worktree` of main) timed alike"
    )
    opts = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from envbuilder.model.matrix import load_matrix
    from envbuilder.model.target import build_target, parse_gpus
    from envbuilder.resolve import resolve

    # Bytecode as an installed envbuilder has it (pip compiles on install): with PYTHONDONTWRITEBYTECODE set,
    # as on these machines, every run would compile the sources again (0.3-0.4 s of CPU here).
    for tree in (ROOT, opts.baseline) if opts.baseline else (ROOT,):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "envbuilder")], check=True)
    command = [sys.executable, "-c", SCRIPT, *ARGS]
    load_before = os.getloadavg()[0]
    timed = _processes(command, opts.runs, opts.baseline)
    first, cli, computed = timed["first"], timed["cli"], timed["computed"]
    bare, module, base = timed["bare"], timed["module"], timed["base"]
    phases, groups = timed["phases"], timed["groups"]
    load_after = os.getloadavg()[0]
    uv = None if opts.no_uv else _uv_compile(max(3, opts.runs // 4))
    loads = _time_call(load_matrix, 10)
    matrix = load_matrix()
    target = build_target(matrix, gpus=parse_gpus("sm_89", matrix), driver="550.54.14")
    inproc = _time_call(lambda: resolve(target, matrix), max(opts.runs, 50))
    imp_total, heavy = _importtime()

    med = statistics.median
    rows = [
        (
            "`envbuilder resolve --gpu sm_89 --driver 550.54.14` (process)",
            med(cli),
            "<= 80 ms",
            med(cli) <= 0.08,
        ),
        ("`python -c pass` (interpreter start-up)", med(bare), "", None),
        ("resolve / bare start-up", med(cli) / med(bare), "", None),
        ("the resolve process, CPU time (user + system)", med(CPU[id(cli)]), "<= 80 ms", med(CPU[id(cli)]) <= 0.08),
        ("`python -c pass`, CPU time", med(CPU[id(bare)]), "", None),
        ("resolve / bare start-up, CPU time", med(CPU[id(cli)]) / med(CPU[id(bare)]), "", None),
        ("the same as `python -m envbuilder` (runpy's own imports)", med(module), "", None),
        ("the answer computed (no replay entry; the compiled matrix warm)", med(computed), "", None),
        ("computed / bare start-up", med(computed) / med(bare), "", None),
        ("computed / replayed", med(computed) / med(cli), "", None),
        ("the first run (empty cache: the matrix validated and compiled, the answer recorded)", first[0], "", None),
    ]
    if base:
        rows += [
            ("`python -m envbuilder` from the baseline checkout", med(base), "", None),
            ("this checkout / baseline, `-m`, wall", med(module) / med(base), "", None),
            ("this checkout / baseline, `-m`, CPU time", med(CPU[id(module)]) / med(CPU[id(base)]), "", None),
        ]
    rows += [
        ("where a computed answer goes (a fresh process, minimum of 7): importing the modules", phases[0], "", None),
        ("... reading the compiled matrix (key and unpickle)", phases[1], "", None),
        ("... the first resolve and its rendering", phases[2], "", None),
        *((f"... imports' own time, {k} (importtime self, minimum of 7)", v, "", None) for k, v in groups.items()),
    ]
    if uv is not None:
        rows += [
            ("`uv pip compile` of the same pins (warm cache)", med(uv), "", None),
            ("resolve / uv pip compile", med(cli) / med(uv), "", None),
        ]
    rows += [
        ("in-process resolve (matrix loaded once)", med(inproc), "< 20 ms", med(inproc) < 0.02),
        ("load + validate the matrix", med(loads), "", None),
        ("`import envbuilder.cli` (importtime, cumulative)", imp_total, "", None),
        (
            "heavy modules at start-up (" + ", ".join(HEAVY) + ")",
            ", ".join(heavy) or "none",
            "none",
            not heavy,
        ),
    ]
    lines = [
        "# `envbuilder resolve` benchmark",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}, load average {load_before:.1f} before the timed runs and "
        f"{load_after:.1f} after (a machine shared by several engineers); medians of {opts.runs} runs "
        f"(uv: {len(uv) if uv else 0}){f'; baseline checkout: {opts.baseline}' if base else ''}. "
        "Run `python3 bench/bench_resolve.py` to reproduce.",
        "",
        "| measure | value | goal | met |",
        "|---|---|---|---|",
    ]
    for name, value, goal, met in rows:
        shown = value if isinstance(value, str) else (f"{value:.3g}x" if "/" in name else f"{value * 1000:.1f} ms")
        lines.append(f"| {name} | {shown} | {goal} | {'' if met is None else ('yes' if met else 'NO')} |")
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.write_text(text)
    return 0 if all(met is not False for *_, met in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
