"""The fault suite: SIGINT, SIGTERM and SIGKILL at each stage of a real `create` and `sync`.

Each case starts ``python -m envbuilder create|sync ...`` as a real process in a session of its own, waits until
the build is at the stage (venv, install, smoke, swap), sends the signal, and checks what a user would find:

- SIGINT / SIGTERM: exit 130 / 143 and one line; no process of the run left; no ``.NAME.tmp-*``/``.old-*``, no
  ``envbuilder-*`` in the run's own ``$TMPDIR``; the environment of the same name intact (every file's size
  and mtime as before) and runnable (its Python imports torch); the user's lock byte for byte as before.
- SIGKILL (which no process can answer): no process of the run outlives it (parent-death signalling), the
  user's lock is unchanged, and the next run recovers what was left (``.old-`` restored, stale ``.tmp-`` and
  temporary directories removed) and says so.

How a stage is reached: uv is replaced (``$UV``) by a wrapper that, at the chosen subcommand (``venv``, or
``pip sync`` for the install), writes its pid to a file and sleeps before it becomes the real uv, so the
signal lands while that child runs; the smoke stage is hit while the real smoke child runs (seen in /proc);
the swap, which starts no process, is reached through envbuilder's ``ENVBUILDER_FAULT_PAUSE`` hook (before
the swap, and between its two renames). CPU profile, the wheelhouse from pip's configuration; one environment
is built once and every case runs against it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.network]

if not sys.platform.startswith("linux"):
    pytest.skip("the fault suite reads /proc to find every process of a run (Linux only)", allow_module_level=True)


def _wheelhouse_has_cpu_torch() -> bool:
    from envbuilder.edge.sources import read_pip_config

    links = read_pip_config().get("find-links", [])
    return any(Path(d).is_dir() and any(Path(d).glob("torch-*+cpu-cp311-*.whl")) for d in links)


if not _wheelhouse_has_cpu_torch():
    pytest.skip(
        "no CPU torch wheel for Python 3.11 in pip's find-links here: the CPU profile cannot be built without the "
        "PyTorch index",
        allow_module_level=True,
    )

CPU = ["--gpu", "cpu", "--python", "3.11"]
NAME = "victim"
STAGES = ("venv", "install", "smoke", "swap")
EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
LAST_LINE = {signal.SIGINT: "envbuilder: interrupted", signal.SIGTERM: "envbuilder: terminated"}

UV_WRAPPER = """#!{python}
# The fault suite's uv. At the stage named by FAULT_UV_STAGE it says so (its pid in FAULT_UV_MARK) and sleeps:
# for `venv` after the real uv made the environment (so the unfinished .tmp- exists), for `pip sync` (install)
# and `pip compile` (lock) before the real uv starts (then it becomes uv). Anywhere else it is uv (exec: one
# process, as uv itself would be).
import os, subprocess, sys, time
real, argv = {real!r}, sys.argv[1:]
stage_of = {{("pip", "sync"): "install", ("pip", "compile"): "lock"}}
here = stage_of.get(tuple(argv[:2]), argv[0] if argv else "")

def hold():
    with open(os.environ["FAULT_UV_MARK"], "w") as fh:
        fh.write(str(os.getpid()))
    time.sleep(120)

if here == os.environ.get("FAULT_UV_STAGE") == "venv":
    done = subprocess.run([real, *argv]).returncode
    hold()
    sys.exit(done)
if here == os.environ.get("FAULT_UV_STAGE"):
    hold()
os.execv(real, [real, *argv])
"""


@dataclass
class World:
    home: Path
    work: Path
    lock: Path
    uv: Path
    results: list[str] = field(default_factory=list)
    build_tmp: list[str] = field(default_factory=list)  # what the first build left in its $TMPDIR

    @property
    def envs(self) -> Path:
        return self.home / "envs"

    @property
    def env(self) -> Path:
        return self.envs / NAME


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One real CPU environment (smoke-tested) and its lock; a uv wrapper that can hold a stage."""
    from envbuilder.edge.uv import find_uv

    root = tmp_path_factory.mktemp("faults")
    home, work = root / "home", root / "work"
    work.mkdir()
    wrapper = root / "uv"
    wrapper.write_text(UV_WRAPPER.format(python=sys.executable, real=find_uv()), encoding="utf-8")
    wrapper.chmod(0o755)
    w = World(home=home, work=work, lock=work / f"pylock.{NAME}.toml", uv=wrapper)
    tmp = root / "tmp-build"
    tmp.mkdir()
    proc = _start(w, ["create", *CPU, "--name", NAME, "--lock-out", str(w.lock)], tmp)
    proc.wait(timeout=600)
    assert proc.returncode == 0, _stderr(tmp)
    w.build_tmp = sorted(p.name for p in tmp.iterdir())
    yield w
    _report(w)


def _report(w: World) -> None:
    """The figures the README's reliability section quotes (printed with -s; also in the junit output)."""
    print("\nfault suite:", *w.results, sep="\n  ")


def _command(kind: str, w: World, *extra: str) -> list[str]:
    """The run under test. Cases before or after the smoke stage skip it (--no-smoke): it is not what they test
    and it takes 10-60 s here."""
    if kind == "create":
        return ["create", *CPU, "--name", NAME, "--lock-out", str(w.lock), *extra]
    return ["sync", str(w.lock), "--name", NAME, *extra]


def _start(w: World, argv: list[str], tmp: Path, **env_extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ENVBUILDER_", "FAULT_"))}
    env.update(ENVBUILDER_HOME=str(w.home), TMPDIR=str(tmp), UV=str(w.uv), **env_extra)
    with (tmp.parent / f"{tmp.name}.stderr").open("w") as log:  # the child keeps its own copy of the file
        return subprocess.Popen(
            [sys.executable, "-m", "envbuilder", *argv],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # its own session: every process of the run is found by session id
            cwd=w.work,
        )


def _stderr(tmp: Path) -> str:
    return (tmp.parent / f"{tmp.name}.stderr").read_text(encoding="utf-8", errors="replace")


def _session(sid: int) -> list[tuple[int, str]]:
    """Live (non-zombie) processes of session ``sid``: pid and command line."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            out.append((int(d), cmd))
    return out


def _wait_for(what: str, cond, proc: subprocess.Popen[str], tmp: Path, timeout: float = 240.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        if proc.poll() is not None:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}:\n{_stderr(tmp)}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"never reached {what}:\n{_stderr(tmp)}")


def _reach(stage: str, proc: subprocess.Popen[str], tmp: Path, mark: Path) -> None:
    """Return once the run is at ``stage`` (for venv/install/smoke: while that stage's child runs)."""
    if stage in ("lock", "venv", "install"):
        _wait_for(f"the {stage} stage", mark.exists, proc, tmp)
        _wait_for("the uv child", lambda: mark.read_text().strip(), proc, tmp)
    elif stage == "smoke":
        _wait_for("the smoke child", lambda: [p for p in _session(proc.pid) if "check.py" in p[1]], proc, tmp)
        time.sleep(1.0)  # well inside the smoke test (it runs for ~10 s here)
    else:
        _wait_for(f"the fault point {stage}", lambda: f"fault point: {stage}" in _stderr(tmp), proc, tmp)


def _fingerprint(env: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for root, _dirs, files in os.walk(env):
        for f in files:
            p = os.path.join(root, f)
            st = os.lstat(p)
            out[os.path.relpath(p, env)] = (st.st_size, st.st_mtime_ns)
    return out


def _leftovers(w: World) -> list[str]:
    return sorted(p.name for p in w.envs.iterdir() if p.name.startswith(f".{NAME}.") and p.name != f".{NAME}.lock")


def _no_process_left(sid: int) -> list[tuple[int, str]]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _session(sid):
        time.sleep(0.05)
    return _session(sid)


def _case_dirs(tmp_path: Path) -> tuple[Path, Path]:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    return tmp, tmp_path / "uv-mark"


def _skip_smoke(stage: str) -> list[str]:
    return [] if stage == "smoke" else ["--no-smoke"]


def _stage_env(stage: str, mark: Path) -> dict[str, str]:
    if stage in ("lock", "venv", "install"):
        return {"FAULT_UV_STAGE": stage, "FAULT_UV_MARK": str(mark)}
    if stage in ("swap", "swap-mid"):
        return {"ENVBUILDER_FAULT_PAUSE": stage}
    return {}


def test_a_build_with_its_smoke_test_leaves_no_temporary_directory(world: World) -> None:
    """Issue 11 item 11: every smoke run left $TMPDIR/envbuilder-smoke-* (the tiny Llama's checkpoint)."""
    assert world.build_tmp == []


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("kind", ["create", "sync"])
def test_signal_at_each_stage_leaves_everything_as_it_was(
    world: World, tmp_path: Path, kind: str, sig: signal.Signals, stage: str
) -> None:
    tmp, mark = _case_dirs(tmp_path)
    lock_before, env_before = world.lock.read_bytes(), _fingerprint(world.env)
    proc = _start(world, _command(kind, world, *_skip_smoke(stage)), tmp, **_stage_env(stage, mark))
    _reach(stage, proc, tmp, mark)
    said = len(_stderr(tmp))
    os.killpg(proc.pid, sig)  # as a terminal's Ctrl-C (or a CI runner's cancel) reaches the process group
    proc.wait(timeout=90)
    err = _stderr(tmp)
    problems = []
    if proc.returncode != EXIT[sig]:
        problems.append(f"exit {proc.returncode}, not {EXIT[sig]}")
    if err[said:].strip().splitlines() != [LAST_LINE[sig]]:
        problems.append(f"said {err[said:]!r}, not the one line {LAST_LINE[sig]!r}")
    if left := _no_process_left(proc.pid):
        problems.append(f"processes left running: {left}")
    if _leftovers(world) or list(tmp.iterdir()):
        problems.append(f"left behind: {_leftovers(world)} {[p.name for p in tmp.iterdir()]}")
    if world.lock.read_bytes() != lock_before:
        problems.append("the user's lock changed")
    if _fingerprint(world.env) != env_before:
        problems.append("the existing environment changed")
    # Every file as it was (the fingerprint) and its interpreter starts; test_the_environment_still_imports_torch
    # imports torch once at the end (12 s on this loaded machine: too dear for every case).
    runs = subprocess.run([world.env / "bin" / "python", "-c", "import sys"], capture_output=True, check=False)
    if runs.returncode != 0:
        problems.append(f"the existing environment does not run: {runs.stderr[-500:]!r}")
    world.results.append(f"{kind} {sig.name} at {stage}: {'clean' if not problems else '; '.join(problems)}")
    assert not problems, err


KILL_STAGES = ("venv", "install", "smoke", "swap-mid")


@pytest.mark.parametrize("stage", KILL_STAGES)
@pytest.mark.parametrize("kind", ["create", "sync"])
def test_sigkill_at_each_stage_is_recovered_by_the_next_run(
    world: World, tmp_path: Path, kind: str, stage: str
) -> None:
    tmp, mark = _case_dirs(tmp_path)
    lock_before = world.lock.read_bytes()
    proc = _start(world, _command(kind, world, *_skip_smoke(stage)), tmp, **_stage_env(stage, mark))
    _reach(stage, proc, tmp, mark)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    problems = []
    if left := _no_process_left(proc.pid):
        problems.append(f"processes outlived the kill: {left}")
    if world.lock.read_bytes() != lock_before:
        problems.append("the user's lock changed")
    left_behind = _leftovers(world)
    if not any(".tmp-" in n for n in left_behind):
        problems.append(f"expected an unfinished .tmp- after SIGKILL, found {left_behind}")
    if stage == "swap-mid" and (world.env.exists() or not any(".old-" in n for n in left_behind)):
        problems.append(f"expected the name empty and a .old- after a kill mid-swap, found {left_behind}")
    # The next run: the same command without the smoke test (the environment was proven by the first build).
    again_tmp = tmp_path / "tmp-again"
    os.rename(tmp, again_tmp)  # what the killed run left in $TMPDIR, for the next run to find
    nxt = _start(world, _command(kind, world, "--no-smoke"), again_tmp)
    nxt.wait(timeout=300)
    said = _stderr(again_tmp)
    if nxt.returncode != 0:
        problems.append(f"the next run failed (exit {nxt.returncode})")
    if stage == "swap-mid" and f"restored {world.env}" not in said:  # a warning line (cli/_console.py)
        problems.append("the next run did not say it restored the environment")
    if "an unfinished build left by a killed run" not in said:
        problems.append("the next run did not say it removed the stale .tmp-")
    if _leftovers(world) or [p for p in again_tmp.iterdir() if p.name.startswith("envbuilder-")]:
        problems.append(f"left after the next run: {_leftovers(world)} {list(again_tmp.iterdir())}")
    if not (world.env / "envbuilder.json").is_file():
        problems.append("no environment after the next run")
    world.results.append(f"{kind} SIGKILL at {stage}: {'recovered' if not problems else '; '.join(problems)}")
    assert not problems, said


def test_sigkill_mid_swap_then_run_restores_the_environment(world: World, tmp_path: Path) -> None:
    """`envbuilder run NAME` (not only a rebuild) finds the name empty after a kill mid-swap and restores it."""
    tmp, mark = _case_dirs(tmp_path)
    env_before = _fingerprint(world.env)
    proc = _start(world, _command("sync", world, "--no-smoke"), tmp, **_stage_env("swap-mid", mark))
    _reach("swap-mid", proc, tmp, mark)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not world.env.exists()
    again = tmp_path / "tmp-again"
    os.rename(tmp, again)
    nxt = _start(world, ["run", NAME, "--", "python", "-c", "import torch"], again)
    nxt.wait(timeout=120)
    said = _stderr(again)
    assert nxt.returncode == 0, said
    assert f"envbuilder: restored {world.env}" in said and "an unfinished build left by a killed run" in said
    assert _fingerprint(world.env) == env_before and not _leftovers(world)
    world.results.append("sync SIGKILL mid-swap, then run: recovered")


def test_the_environment_still_imports_torch(world: World) -> None:
    """After every case above: the environment of the same name still runs its stack."""
    out = subprocess.run(
        [world.env / "bin" / "python", "-c", "import bitsandbytes, torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0 and out.stdout.strip() == "2.13.0+cpu", out.stderr[-2000:]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_a_signal_while_locking_leaves_no_lock_directory(world: World, tmp_path: Path, sig: signal.Signals) -> None:
    """While `uv pip compile` runs (--refresh: no cached resolution), $TMPDIR holds envbuilder-lock-<pid>-*:
    SIGTERM removes it on the way out; after SIGKILL the next run removes it and says so."""
    tmp, mark = _case_dirs(tmp_path)
    lock_before = world.lock.read_bytes()
    proc = _start(world, _command("create", world, "--refresh", "--no-smoke"), tmp, **_stage_env("lock", mark))
    _reach("lock", proc, tmp, mark)
    assert [p.name for p in tmp.iterdir() if p.name.startswith(f"envbuilder-lock-{proc.pid}-")]
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    assert not _no_process_left(proc.pid)
    assert world.lock.read_bytes() == lock_before
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and _stderr(tmp).strip().splitlines()[-1] == LAST_LINE[sig]
        assert list(tmp.iterdir()) == []
        world.results.append("create SIGTERM while locking: clean")
        return
    assert list(tmp.iterdir()), "SIGKILL cannot clean up: the lock directory is expected to be left"
    again = tmp_path / "tmp-again"
    os.rename(tmp, again)
    nxt = _start(world, ["sync", str(world.lock), "--name", NAME, "--no-smoke"], again)
    nxt.wait(timeout=300)
    said = _stderr(again)
    assert nxt.returncode == 0, said
    assert "removed 1 temporary directory left by killed runs" in said
    assert not [p for p in again.iterdir() if p.name.startswith("envbuilder-")]
    world.results.append("create SIGKILL while locking: recovered")
