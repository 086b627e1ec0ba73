"""Benchmark of `envbuilder create` (issue 3, item 11). Run by hand: python3 bench/bench_create.py [--runs N].

Everything in one run, warm caches (one untimed warm-up of each command first), medians, the rounds
interleaved so that load from other processes falls on every command alike:

(1) `envbuilder create --gpu cpu --python 3.11 --no-smoke` (the smoke test excluded, as the issue says)
    against plain uv installing the lock's full pinned set (`uv venv` + `uv pip install -r pins.txt`; goal:
    at most 1.2x), plus `envbuilder sync` of the existing lock against the same plain uv, and, for context,
    plain uv given only the plan's top pins (uv resolves them) and `uv pip compile` + `uv pip sync` (plain uv
    making a lock too);
(2) against `python3.11 -m venv` + `pip install -r pins.txt` (pip's own cache warm, its config honoured:
    goal: envbuilder at least 5x faster);
(3) disk: 5 environments made by envbuilder (sharing uv's cache, which hard-links) against one, each inode
    counted once (goal: at most 1.3x), with apparent sizes for context.
The environments live beside uv's cache (hard links need one filesystem) and are all removed at the end.
Prints a table and writes it to bench/RESULTS-create.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # measure this checkout's envbuilder, installed or not

from envbuilder.edge.sources import read_pip_config  # noqa: E402
from envbuilder.edge.uv import find_uv  # noqa: E402
from envbuilder.edge.venv import disk_usage  # noqa: E402
from envbuilder.jobs.builder import interpreter_for  # noqa: E402  (needs the sys.path line above)
from envbuilder.model.lock import read_lock  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS-create.md"
PYTHON = "3.11"
# pip's configured find-links (what envbuilder itself honours); the plain-uv commands need it spelled out.
WHEELHOUSE = next(iter(read_pip_config().get("find-links", [])), "")
STEP = re.compile(r"^\[(\d)/\d\] .*\((\d+\.\d)s\)$", re.MULTILINE)
# What happens between create's progress marks [n-1] and [n] (envbuilder/cli/create.py); mark 0 is the
# start of `run`; the time outside it (interpreter start-up, imports, parsing, the report) is the remainder.
STEP_NAMES = (
    "pip config read (`python -m pip config list`) + matrix load + target",
    "PyTorch index reachability probe + wheelhouse listing",
    "resolve + interpreter lookup (`find_pythons`)",
    "`uv pip compile` (hashed PEP 751 lock) + finalize",
    "`uv venv` + `uv pip sync` (hash-checked) + marker",
    "process start-up, imports, report",
)


@dataclass(slots=True)
class Bench:
    """Where the benchmark works and the tools it drives (the same uv binary envbuilder finds)."""

    work: Path
    uv: str
    interpreter: str
    envbuilder: list[str]
    times: dict[str, list[float]] = field(default_factory=dict)
    steps: dict[str, list[float]] = field(default_factory=dict)
    commands: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.work / "home"

    def env(self, name: str) -> Path:
        return self.home / "envs" / name


def sh(argv: Sequence[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run argv; a failure stops the benchmark with the command's output (figures from a failed run lie)."""
    proc = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(argv)}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc


def timed(bench: Bench, key: str, commands: Iterable[Sequence[str]], *, record: bool = True) -> str:
    """Run the commands one after another; record their total wall time under ``key``; return stderr."""
    start = time.perf_counter()
    err = "".join(sh(c, cwd=bench.work).stderr for c in commands)
    if record:
        bench.times.setdefault(key, []).append(time.perf_counter() - start)
    return err


def remove(*paths: Path) -> None:
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)


# --------------------------------------------------------------------------- the commands compared


def eb_create(bench: Bench, name: str) -> list[list[str]]:
    return [
        [
            *bench.envbuilder,
            "create",
            "--gpu",
            "cpu",
            "--python",
            PYTHON,
            "--name",
            name,
            "--no-smoke",
            "--home",
            str(bench.home),
            "--lock-out",
            str(bench.work / f"pylock.{name}.toml"),
        ]
    ]


def eb_sync(bench: Bench, name: str) -> list[list[str]]:
    return [
        [
            *bench.envbuilder,
            "sync",
            str(bench.work / "pylock.lock.toml"),
            "--name",
            name,
            "--no-smoke",
            "--home",
            str(bench.home),
        ]
    ]


def uv_install(bench: Bench, dest: Path, pins: str) -> list[list[str]]:
    return [
        [bench.uv, "venv", "-q", "-p", bench.interpreter, str(dest)],
        [
            bench.uv,
            "pip",
            "install",
            "-q",
            "--python",
            str(dest / "bin/python"),
            "-r",
            pins,
            "--find-links",
            WHEELHOUSE,
        ],
    ]


def uv_compile_sync(bench: Bench, dest: Path) -> list[list[str]]:
    """Plain uv doing what create does: resolve the top pins to a hashed lock, then install exactly that."""
    lock = str(bench.work / "uvlock" / "pylock.toml")
    return [
        [
            bench.uv,
            "pip",
            "compile",
            "-q",
            "top.txt",
            "--format",
            "pylock.toml",
            "-o",
            lock,
            "--python-version",
            PYTHON,
            "--generate-hashes",
            "--find-links",
            WHEELHOUSE,
        ],
        [bench.uv, "venv", "-q", "-p", bench.interpreter, str(dest)],
        [
            bench.uv,
            "pip",
            "sync",
            "-q",
            "--python",
            str(dest / "bin/python"),
            lock,
            "--find-links",
            WHEELHOUSE,
        ],
    ]


def pip_install(bench: Bench, dest: Path) -> list[list[str]]:
    return [
        [bench.interpreter, "-m", "venv", str(dest)],
        [str(dest / "bin/pip"), "install", "-q", "-r", "pins.txt"],
    ]


def show(commands: Sequence[Sequence[str]], bench: Bench) -> str:
    """The commands as a user would type them (paths shortened)."""
    text = " && ".join(" ".join(c) for c in commands)
    return (
        text.replace(str(bench.work) + "/", "")
        .replace(bench.uv, "uv")
        .replace(" ".join(bench.envbuilder), "envbuilder")
    )


# --------------------------------------------------------------------------- setup and rounds


def write_pins(bench: Bench, lock: Path) -> None:
    """pins.txt: the lock's full `name==version ; marker` set; top.txt: the plan's own pins (the top 5)."""
    parsed = read_lock(lock)
    lines = [p.requirement + (f" ; {p.marker}" if p.marker else "") for p in parsed.packages]
    (bench.work / "pins.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (bench.work / "top.txt").write_text("\n".join(parsed.pins) + "\n", encoding="utf-8")
    (bench.work / "uvlock").mkdir(exist_ok=True)


def record_steps(bench: Bench, stderr: str, total: float) -> None:
    """create's own progress lines carry elapsed times: turn them into per-step durations."""
    marks = [0.0] + [float(m[2]) for m in STEP.finditer(stderr)]
    if len(marks) != len(STEP_NAMES):
        return  # the progress format changed: leave the breakdown out rather than mislabel it
    for name, t0, t1 in zip(STEP_NAMES, marks, marks[1:], strict=False):
        bench.steps.setdefault(name, []).append(t1 - t0)
    bench.steps.setdefault(STEP_NAMES[-1], []).append(total - marks[-1])


def warm_up(bench: Bench, with_pip: bool) -> None:
    print("warm-up (untimed): envbuilder create and sync, plain uv" + (", pip" if with_pip else ""), flush=True)
    timed(bench, "", eb_create(bench, "warm"), record=False)
    (bench.work / "pylock.warm.toml").rename(bench.work / "pylock.lock.toml")
    write_pins(bench, bench.work / "pylock.lock.toml")
    remove(bench.env("warm"))
    timed(bench, "", eb_sync(bench, "warm"), record=False)
    remove(bench.env("warm"))
    for cmds in (uv_install(bench, bench.work / "d", "pins.txt"), uv_compile_sync(bench, bench.work / "d")):
        timed(bench, "", cmds, record=False)
        remove(bench.work / "d")
    if with_pip:
        timed(bench, "", pip_install(bench, bench.work / "p"), record=False)
        remove(bench.work / "p")


def fast_round(bench: Bench, i: int) -> None:
    """One timing of each uv-based command, every environment removed (untimed) right after."""
    d = bench.work / "d"
    cases: list[tuple[str, list[list[str]], Path]] = [
        ("envbuilder create", eb_create(bench, f"c{i}"), bench.env(f"c{i}")),
        ("plain uv, full pins", uv_install(bench, d, "pins.txt"), d),
        ("envbuilder sync", eb_sync(bench, f"s{i}"), bench.env(f"s{i}")),
        ("plain uv, top pins", uv_install(bench, d, "top.txt"), d),
        ("uv compile + sync", uv_compile_sync(bench, d), d),
    ]
    for key, cmds, dest in cases:
        bench.commands[key] = show(cmds, bench)
        err = timed(bench, key, cmds)
        if key == "envbuilder create":
            record_steps(bench, err, bench.times[key][-1])
        remove(dest)
        (bench.work / f"pylock.c{i}.toml").unlink(missing_ok=True)


def compile_argv(bench: Bench, req: str, *extra: str) -> list[str]:
    """`uv pip compile` with the flags envbuilder.edge.uv.compile_lock passes for this profile."""
    out = str(bench.work / "uvlock" / "pylock.toml")
    return [bench.uv, "pip", "compile", req, "--format", "pylock.toml", "--output-file", out,
            "--python-version", PYTHON, "--python-platform", "x86_64-manylinux_2_28", "--generate-hashes",
            "--quiet", "--no-header", "--find-links", WHEELHOUSE, *extra]  # fmt: skip


def compile_round(bench: Bench) -> None:
    """Why create's lock step costs what it does: uv's revalidation with PyPI and hashing the wheelhouse."""
    no_torch = bench.work / "top-no-torch.txt"
    top = (bench.work / "top.txt").read_text(encoding="utf-8").splitlines()
    no_torch.write_text("\n".join(t for t in top if not t.startswith("torch==")) + "\n", encoding="utf-8")
    cases = {
        "uv pip compile, as create runs it": compile_argv(bench, "top.txt"),
        "... --offline (no revalidation with PyPI)": compile_argv(bench, "top.txt", "--offline"),
        "... --offline, torch pin left out (no hashing of the wheelhouse wheel)": compile_argv(
            bench, no_torch.name, "--offline"
        ),
    }
    for key, argv in cases.items():
        timed(bench, key, [argv])
    start = time.perf_counter()
    for whl in Path(WHEELHOUSE).glob("torch-*.whl"):
        digest = hashlib.sha256()
        with whl.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    bench.times.setdefault("sha256 of the wheelhouse torch wheel (hashlib)", []).append(time.perf_counter() - start)


def pip_round(bench: Bench) -> None:
    p = bench.work / "p"
    cmds = pip_install(bench, p)
    bench.commands["venv + pip"] = show(cmds, bench)
    timed(bench, "venv + pip", cmds)
    remove(p)


# --------------------------------------------------------------------------- disk


def walk_usage(paths: Iterable[Path]) -> tuple[int, int, int]:
    """Bytes on disk (each inode once), apparent bytes (every name) and bytes of multiply-linked inodes."""
    seen: set[tuple[int, int]] = set()
    disk = apparent = linked = 0
    for path in paths:
        for root, _dirs, files in os.walk(path):
            for f in files:
                st = os.lstat(os.path.join(root, f))
                apparent += st.st_size
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
                disk += st.st_blocks * 512
                linked += st.st_blocks * 512 if st.st_nlink > 1 else 0
    return disk, apparent, linked


def disk_case(bench: Bench, n: int = 5) -> dict[str, float]:
    """Create n environments with envbuilder; measure one and all n together; remove them."""
    envs = [bench.env(f"disk{i}") for i in range(n)]
    try:
        for i in range(n):
            timed(bench, "", eb_create(bench, f"disk{i}"), record=False)
        one, one_apparent, one_linked = walk_usage(envs[:1])
        all_, all_apparent, _ = walk_usage(envs)
        return {
            "one": one,
            "all": all_,
            "one_apparent": one_apparent,
            "all_apparent": all_apparent,
            "one_linked": one_linked,
            "api_one": disk_usage(envs[0]),
            "n": n,
        }
    finally:
        remove(*envs)
        for i in range(n):
            (bench.work / f"pylock.disk{i}.toml").unlink(missing_ok=True)


def pip_env_usage(bench: Bench) -> int:
    """One pip-built environment's bytes on disk (pip copies every file), for context."""
    p = bench.work / "p"
    try:
        timed(bench, "", pip_install(bench, p), record=False)
        return walk_usage([p])[0]
    finally:
        remove(p)


# --------------------------------------------------------------------------- report


def _met(ok: bool) -> str:
    return "yes" if ok else "NO"


def _med(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def _spread(xs: Sequence[float]) -> str:
    return f"{_med(xs):.2f} s (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})"


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def time_rows(bench: Bench) -> list[tuple[str, str, str, str]]:
    """(measure, value, goal, met) rows for the timings and their ratios."""
    t = {k: _med(v) for k, v in bench.times.items()}
    rows = [(f"`{k}`", _spread(v), "", "") for k, v in bench.times.items()]
    create, sync, uv = t["envbuilder create"], t["envbuilder sync"], t["plain uv, full pins"]
    rows += [
        (
            "create / plain uv (full pins)",
            f"{create / uv:.2f}x",
            "<= 1.2x",
            _met(create / uv <= 1.2),
        ),
        ("sync of the lock / plain uv (full pins)", f"{sync / uv:.2f}x", "", ""),
        ("create / plain uv (top pins, uv resolves)", f"{create / t['plain uv, top pins']:.2f}x", "", ""),
        (
            "create / uv compile + sync (plain uv making a hashed lock too)",
            f"{create / t['uv compile + sync']:.2f}x",
            "",
            "",
        ),
    ]
    if "venv + pip" in t:
        speed = t["venv + pip"] / create
        rows.append(("venv + pip / create (speed-up)", f"{speed:.1f}x", ">= 5x", _met(speed >= 5)))
        rows.append(("venv + pip / sync (speed-up)", f"{t['venv + pip'] / sync:.1f}x", "", ""))
    return rows


def disk_rows(disk: dict[str, float], pip_bytes: int | None) -> list[tuple[str, str, str, str]]:
    n, ratio = int(disk["n"]), disk["all"] / disk["one"]
    rows = [
        ("one envbuilder environment, on disk (inodes once)", _gb(disk["one"]), "", ""),
        ("  of which files hard-linked with uv's cache", _gb(disk["one_linked"]), "", ""),
        (f"{n} envbuilder environments together, on disk (inodes once)", _gb(disk["all"]), "", ""),
        (f"{n} environments / one", f"{ratio:.2f}x", "<= 1.3x", _met(ratio <= 1.3)),
        ("one environment, apparent size (`du -s --apparent-size`)", _gb(disk["one_apparent"]), "", ""),
        (f"{n} environments, apparent size (every name counted)", _gb(disk["all_apparent"]), "", ""),
        ("`envbuilder.edge.venv.disk_usage` of one (what `envbuilder list` shows)", _gb(disk["api_one"]), "", ""),
    ]
    if pip_bytes is not None:
        rows.append(("one pip environment, on disk (pip copies: n take n times this)", _gb(pip_bytes), "", ""))
    return rows


def reading(bench: Bench) -> list[str]:
    """What the figures mean, from this run's own medians (so the text cannot drift from the table)."""
    t = {k: _med(v) for k, v in bench.times.items()}
    step = {k: _med(v) for k, v in bench.steps.items()}
    lock, install = step.get(STEP_NAMES[3], 0.0), step.get(STEP_NAMES[4], 0.0)
    own = sum(step.values()) - lock - install
    compile_ = t["uv pip compile, as create runs it"]
    online = compile_ - t["... --offline (no revalidation with PyPI)"]
    return [
        "Reading the figures: `create` resolves the plan's pins to a hashed PEP 751 lock (`uv pip compile`, "
        f"{lock:.2f} s here) before it installs ({install:.2f} s); plain `uv pip install` of the lock's "
        "exact pins skips that resolution, so create / plain uv measures the lock step more than envbuilder. "
        f"uv's compile alone takes {compile_:.2f} s, of which about {online:.2f} s is uv revalidating its "
        "cached PyPI pages online (the `--offline` row); hashing the 190 MB wheelhouse wheel is no "
        "measurable part of it (the row without the torch pin). The rest of the lock step "
        f"({lock - compile_:.2f} s) is envbuilder rewriting uv's lock with tomlkit (`lock.finalize`) "
        f"and noise. envbuilder's other work (pip config, probe, resolve, start-up) is {own:.2f} s. "
        "`sync` of an existing lock does no resolution, and plain uv doing create's whole job "
        "(`uv pip compile` + `uv pip sync`) is the like-for-like comparison of create.",
    ]


def render(bench: Bench, rows: list[tuple[str, str, str, str]], header: list[str]) -> str:
    lines = [*header, "", "| measure | value | goal | met |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    if bench.steps:
        lines += [
            "",
            "Where `envbuilder create` spends its time (medians, from its own progress lines):",
            "",
            "| step | median |",
            "|---|---|",
        ]
        lines += [f"| {name} | {_med(v):.2f} s |" for name, v in bench.steps.items()]
    lines += ["", *reading(bench)]
    lines += [
        "",
        "Commands (run in the work directory; `pins.txt` is the lock's full `name==version` set, "
        "`top.txt` the plan's own pins):",
        "",
    ]
    lines += [f"- {k}: `{v}`" for k, v in bench.commands.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main


def machine_header(bench: Bench, opts: argparse.Namespace, same_fs: bool, loads: tuple[str, str]) -> list[str]:
    """Date, machine, tool versions, load and method: what a reader needs to judge the figures."""
    uv_version = sh([bench.uv, "--version"]).stdout.strip()
    pip_version = sh([bench.interpreter, "-m", "pip", "--version"]).stdout.split(" from ")[0]
    linked = "yes" if same_fs else "NO (hard links impossible)"
    return [
        "# `envbuilder create` benchmark",
        "",
        f"Date {time.strftime('%Y-%m-%d %H:%M')}; {platform.machine()}, nproc {os.cpu_count()}, "
        f"{uv_version}, {pip_version} (the one `python{PYTHON} -m venv` seeds), envbuilder under Python "
        f"{platform.python_version()}; load average {loads[0]} at the start, {loads[1]} at the end "
        "(the machine is shared with other work).",
        f"Medians of {opts.runs} interleaved rounds (pip: {opts.pip_runs}) after one untimed warm-up of each "
        "command (uv's cache warm; pip 23.0.1 wrote no cache here, ~/.cache/pip stays empty, so each pip run "
        "fetches its PyPI files again, at LAN speed, and reads the rest from the file:// indexes of its "
        "config). Profile `--gpu cpu --python 3.11`: torch 2.13.0+cpu (from the "
        f"wheelhouse {WHEELHOUSE} that pip's config names), bitsandbytes 0.50.2, transformers, accelerate, "
        "peft and their dependencies.",
        f"Environments under {bench.work.parent}; uv's cache on the same filesystem: {linked}. "
        "Run `python3 bench/bench_create.py` to reproduce.",
    ]


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def make_bench(work: Path) -> Bench:
    script = Path(sys.executable).parent / "envbuilder"  # the console script itself, not a pyenv shim
    cli = [str(script)] if script.is_file() else [sys.executable, "-m", "envbuilder"]
    return Bench(work=work, uv=find_uv(), interpreter=interpreter_for(PYTHON), envbuilder=cli)


def same_filesystem(work: Path, uv: str) -> bool:
    cache = Path(sh([uv, "cache", "dir"]).stdout.strip())
    return work.stat().st_dev == cache.stat().st_dev


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed rounds of the uv-based commands")
    parser.add_argument("--pip-runs", type=int, default=3, help="timed runs of venv + pip (0: leave pip out)")
    parser.add_argument("--envs", type=int, default=5, help="environments for the disk measure")
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path.home(),
        help="where to make the work directory: on the filesystem of uv's cache (default: home)",
    )
    opts = parser.parse_args(argv)
    start_load = load_average()
    # A fresh directory of our own: only it is ever deleted.
    work = Path(tempfile.mkdtemp(prefix=".envbuilder-bench-", dir=opts.dir)).resolve()
    try:
        bench = make_bench(work)
        same_fs = same_filesystem(bench.work, bench.uv)
        warm_up(bench, with_pip=opts.pip_runs > 0)
        for i in range(opts.runs):
            print(f"round {i + 1}/{opts.runs}", flush=True)
            fast_round(bench, i)
        for i in range(3):
            print(f"compile breakdown {i + 1}/3", flush=True)
            compile_round(bench)
        for i in range(opts.pip_runs):
            print(f"pip {i + 1}/{opts.pip_runs}", flush=True)
            pip_round(bench)
        print(f"disk: {opts.envs} environments", flush=True)
        disk = disk_case(bench, opts.envs)
        pip_bytes = pip_env_usage(bench) if opts.pip_runs > 0 else None
        rows = time_rows(bench) + disk_rows(disk, pip_bytes)
        text = render(bench, rows, machine_header(bench, opts, same_fs, (start_load, load_average())))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(text)
    RESULTS.write_text(text, encoding="utf-8")
    return 0 if all(met != "NO" for *_, met in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
