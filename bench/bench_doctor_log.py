"""Benchmark: `envbuilder doctor --log` on big logs (goal: a 10 MB log in under 1 s; memory bounded).

Run by hand: python bench/bench_doctor_log.py [--repeat N] [--out bench/RESULTS-doctor-log.md]

Inputs, built in a temporary directory from the real logs of tests/fixtures/logs (each cites its source):
- ``corpus-10MB``: the corpus repeated to 10 MB (a log that repeats its lines, as training logs repeat warnings);
- ``unique-10MB``: the same lines, each prefixed with its line number (``cat -n``), so no line repeats: the worst
  case for the reduction, since every line is distinct and about 40 % of them hold a trigger word;
- ``corpus-200MB``: the corpus repeated to 200 MB (read as its first and last 8 MiB);
- ``/dev/zero``: an endless stream (stops at the 16 MiB cap).
For each: the whole command as a user runs it (a fresh process: start-up, reading, the rules), median of N, wall
and CPU seconds (user + system: the figure a loaded machine distorts least), its peak memory (ru_maxrss), and, in
the same rotation, the alternative a user has: ``grep -ciF -f TRIGGERS`` of the doctor's own trigger words over the
same file (it counts the lines that hold one, so it reads the whole file: with its output on /dev/null GNU grep
stops at the first match; it names no cause). The child runs as an installed copy does: bytecode compiled
(pip compiles it at install) and its own matrix cache (ENVBUILDER_CACHE in the temporary directory, warmed by a
first run), so other checkouts sharing this machine's cache do not make it read the matrix again.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOAL_S = 1.0


def build_inputs(tmp: Path) -> dict[str, Path]:
    logs = sorted((ROOT / "tests" / "fixtures" / "logs").glob("*.txt"))
    corpus = "".join(p.read_text(encoding="utf-8", errors="replace") for p in logs)
    lines = corpus.splitlines()

    def repeat(size: int) -> str:
        return (corpus * (size // len(corpus.encode()) + 1))[:size]

    out = {"corpus-10MB": tmp / "corpus-10MB.log", "unique-10MB": tmp / "unique-10MB.log"}
    out["corpus-10MB"].write_text(repeat(10_000_000), encoding="utf-8")
    numbered, size, i = [], 0, 0
    while size < 10_000_000:
        line = f"{i + 1:6d}\t{lines[i % len(lines)]}\n"
        numbered.append(line)
        size += len(line.encode())
        i += 1
    out["unique-10MB"].write_text("".join(numbered), encoding="utf-8")
    big = tmp / "corpus-200MB.log"
    chunk = repeat(10_000_000)
    with big.open("w", encoding="utf-8") as fh:
        for _ in range(20):
            fh.write(chunk)
    out["corpus-200MB"] = big
    print(f"{len(logs)} real logs, {len(lines)} lines, {len(corpus.encode())} bytes", file=sys.stderr)
    return out


def whole_command(log: Path | str, env: dict[str, str]) -> tuple[float, float, int, int]:
    """(wall seconds, CPU seconds, peak RSS in KiB, exit code) of `python -m envbuilder doctor --log LOG`."""
    return _timed([sys.executable, "-m", "envbuilder", "doctor", "--log", str(log)], env, ok=(0, 1))


def grep_command(log: Path | str, triggers: Path, env: dict[str, str]) -> tuple[float, float, int, int]:
    """The same for `grep -ciF -f TRIGGERS LOG` (exit 0: lines found, 1: none)."""
    return _timed(["grep", "-ciF", "-f", str(triggers), str(log)], env, ok=(0, 1))


def _timed(argv: list[str], env: dict[str, str], *, ok: tuple[int, ...]) -> tuple[float, float, int, int]:
    import os

    # stdout to a file, not /dev/null: GNU grep stops at the first match when its output is discarded
    with tempfile.TemporaryFile() as out:
        t = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.PIPE, env=env)
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code not in ok:
        raise SystemExit(f"{argv[0]} exited {code}: {err[-2000:]!r}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the results table here (markdown)")
    args = parser.parse_args()
    import os

    from envbuilder.doctor import load_triggers

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "envbuilder")], check=True)
    rows: list[dict[str, float | str | int]] = []
    base_runs: list[float] = []
    load = os.getloadavg()
    tiny = min((ROOT / "tests" / "fixtures" / "logs").glob("*.txt"), key=lambda p: p.stat().st_size)
    with tempfile.TemporaryDirectory(prefix="envbuilder-bench-log-") as tmp:
        env = {**os.environ, "ENVBUILDER_CACHE": str(Path(tmp) / "cache")}
        triggers = Path(tmp) / "triggers.txt"
        triggers.write_text("\n".join(load_triggers()) + "\n", encoding="utf-8")
        inputs = build_inputs(Path(tmp))
        whole_command(tiny, env)  # warms the matrix cache, as any earlier run of a user's would
        for name, log in [("one real log", tiny), *inputs.items(), ("/dev/zero", Path("/dev/zero"))]:
            runs, greps = [], []
            for _ in range(args.repeat):  # interleaved with grep and the one-line baseline: the same load for all
                runs.append(whole_command(log, env))
                if name != "/dev/zero":
                    greps.append(grep_command(log, triggers, env))
                if name != "one real log":
                    base_runs.append(whole_command(tiny, env)[0])
            row: dict[str, float | str | int] = {
                "input": name,
                "wall": statistics.median(r[0] for r in runs),
                "cpu": statistics.median(r[1] for r in runs),
                "peak_mib": max(r[2] for r in runs) / 1024,
                "exit": runs[0][3],
                "grep": statistics.median(g[0] for g in greps) if greps else 0.0,
            }
            rows.append(row)
            print(row, file=sys.stderr)
    end_load = os.getloadavg()
    base = statistics.median([float(rows[0]["wall"]), *base_runs])
    table = [
        f"Load average (1, 5, 15 min): {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the start, "
        f"{end_load[0]:.1f} {end_load[1]:.1f} {end_load[2]:.1f} at the end, on {os.cpu_count()} cores.",
        "",
        f"| input | whole command, wall (median of {args.repeat}) | CPU | minus one small log's wall | "
        "grep -ciF of the trigger words, wall | doctor / grep | peak memory |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        wall, cpu, grep = float(r["wall"]), float(r["cpu"]), float(r["grep"])
        goal = ""
        if str(r["input"]).endswith("10MB"):
            goal = " (goal < 1 s: " + ("met" if wall < GOAL_S else "not met") + ")"
        shown = f"{base:.2f} s ({tiny.name})" if r["input"] == "one real log" else f"{wall:.2f} s{goal}"
        extra = "—" if r["input"] == "one real log" else f"{wall - base:+.2f} s"
        vs = f"{grep:.3f} s" if grep else "— (endless)"
        ratio = f"{wall / grep:.0f}x" if grep else "—"
        table.append(f"| {r['input']} | {shown} | {cpu:.2f} s | {extra} | {vs} | {ratio} | {r['peak_mib']:.0f} MiB |")
    text = "\n".join(table) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
