"""Benchmark: `envbuilder doctor --log` on big logs (goal: a 10 MB log in under 1 s; memory bounded).

Run by hand: python bench/bench_doctor_log.py [--repeat N] [--out bench/RESULTS-doctor-log.md]

Inputs, built in a temporary directory from the 84 real logs of tests/fixtures/logs (each cites its source):
- ``corpus-10MB``: the corpus repeated to 10 MB (a log that repeats its lines, as training logs repeat warnings);
- ``unique-10MB``: the same lines, each prefixed with its line number (``cat -n``), so no line repeats: the worst
  case for the reduction, since every line is distinct and about 40 % of them hold a trigger word;
- ``corpus-200MB``: the corpus repeated to 200 MB (read as its first and last 8 MiB);
- ``/dev/zero``: an endless stream (stops at the 16 MiB cap).
For each: the whole command as a user runs it (a fresh process: start-up, reading, the rules), median of N,
its peak memory (ru_maxrss), and, in the same run, the rules applied in-process to the whole text as they were
before this change (every rule scanning all 10 MB) against the reduced text they read now.
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


def whole_command(log: Path | str) -> tuple[float, int, int]:
    """(seconds, peak RSS in KiB, exit code) of `python -m envbuilder doctor --log LOG` in a fresh process."""
    import os

    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "envbuilder", "doctor", "--log", str(log)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code not in (0, 1):
        raise SystemExit(f"doctor exited {code}: {err[-2000:]!r}")
    return seconds, usage.ru_maxrss, code


def rules_in_process(text: str, *, reduced: bool) -> tuple[float, int]:
    """Seconds for the rules over ``text``: reduced to its trigger lines (now) or whole (before)."""
    from envbuilder.doctor import Context, diagnose, logs
    from envbuilder.model.matrix import load_matrix

    matrix = load_matrix()
    saved = logs.BIG_LOG
    logs.BIG_LOG = saved if reduced else 1 << 62
    try:
        t = time.perf_counter()
        findings = diagnose(Context(matrix=matrix, log=text))
        return time.perf_counter() - t, len(findings)
    finally:
        logs.BIG_LOG = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the results table here (markdown)")
    args = parser.parse_args()
    import os

    rows = []
    load = os.getloadavg()[0]
    tiny = min((ROOT / "tests" / "fixtures" / "logs").glob("*.txt"), key=lambda p: p.stat().st_size)
    with tempfile.TemporaryDirectory(prefix="envbuilder-bench-log-") as tmp:
        inputs = build_inputs(Path(tmp))
        for name, log in [("one real log", tiny), *inputs.items(), ("/dev/zero", Path("/dev/zero"))]:
            runs = []
            for _ in range(args.repeat):  # interleaved with the one-line baseline, so both see the same load
                runs.append(whole_command(log))
                if name != "one real log":
                    rows[0].setdefault("more", []).append(whole_command(tiny)[0])
            secs = statistics.median(r[0] for r in runs)
            peak_mib = max(r[1] for r in runs) / 1024
            row = {"input": name, "command_s": secs, "peak_mib": peak_mib, "exit": runs[0][2]}
            if name.endswith("10MB"):
                text = log.read_text(encoding="utf-8")
                now = statistics.median(rules_in_process(text, reduced=True)[0] for _ in range(3))
                before = rules_in_process(text, reduced=False)[0]
                row |= {"rules_now_s": now, "rules_before_s": before}
            rows.append(row)
            print(row, file=sys.stderr)
    base = statistics.median([rows[0]["command_s"], *rows[0].get("more", [])])
    table = [
        f"Load average at the start: {load:.1f} on {os.cpu_count()} cores.",
        "",
        f"| input | whole command (median of {args.repeat}) | minus one small log's (start-up, matrix) | "
        "peak memory | rules now vs. before (in-process, same run) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        rules = "—"
        if "rules_now_s" in r:
            ratio = r["rules_before_s"] / r["rules_now_s"]
            rules = f"{r['rules_now_s']:.3f} s vs {r['rules_before_s']:.2f} s: **{ratio:.0f}x**"
        goal = ""
        if r["input"] == "corpus-10MB":
            goal = " (goal < 1 s: " + ("met" if r["command_s"] < GOAL_S else "not met") + ")"
        extra = "—" if r["input"] == "one real log" else f"{r['command_s'] - base:+.2f} s"
        size = f"{r['command_s']:.2f} s{goal}" if r["input"] != "one real log" else f"{base:.2f} s ({tiny.name})"
        table.append(f"| {r['input']} | {size} | {extra} | {r['peak_mib']:.0f} MiB | {rules} |")
    text = "\n".join(table) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
