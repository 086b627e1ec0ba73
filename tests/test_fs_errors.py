"""Filesystem faults and the files envbuilder writes: one message and exit 2, never a traceback; nothing a user
had is lost or half-written; no user file silently overwritten; modes as a user expects.

Read-only and full file systems are real: a tmpfs mounted read-only, or 8 MiB large, inside a private mount
namespace (``unshare --user --map-root-user --mount``), with ``python -m envbuilder`` run inside it.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from envbuilder.cli.app import main
from envbuilder.model.errors import file_problem

REPO = Path(__file__).resolve().parent.parent
CPU = ["--gpu", "cpu", "--python", "3.11"]
SHIPPED_LOCK = REPO / "dockerfiles" / "cpu" / "pylock.cpu.toml"  # a real lock envbuilder wrote


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out + err


def _one_message(code: int, text: str, *needles: str) -> None:
    assert code == 2, text
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if ln.startswith("envbuilder: ")]
    assert len(lines) == 1, text
    for n in needles:
        assert n in text, text


# --------------------------------------------------------------------------- paths that are the wrong kind


def test_recipe_output_that_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _main(["recipe", "wsl2", "--gpu", "sm_89", "--driver", "550.54.14", "-o", str(tmp_path)], capsys)
    _one_message(code, text, f"-o {tmp_path}: it is a directory")
    assert list(tmp_path.iterdir()) == []


def _manifest_with_lock(tmp_path: Path) -> Path:
    (tmp_path / "envbuilder.toml").write_text('[[env]]\nname = "cpu"\nprofile = "cpu"\n', encoding="utf-8")
    shutil.copyfile(SHIPPED_LOCK, tmp_path / "pylock.cpu.toml")
    return tmp_path / "envbuilder.toml"


def test_ci_output_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = _manifest_with_lock(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    code, text = _main(["ci", "--manifest", str(manifest), "-o", str(afile)], capsys)
    _one_message(code, text, f"-o {afile}: it is a file")
    assert afile.read_text() == "mine\n"


def test_dockerfile_output_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    code, text = _main(["dockerfile", "--lock", str(SHIPPED_LOCK), "-o", str(afile)], capsys)
    _one_message(code, text, f"-o {afile}: it is a file")
    assert afile.read_text() == "mine\n"


def test_run_a_file_that_is_no_program(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = tmp_path / "home" / "envs" / "x"
    (env / "bin").mkdir(parents=True)
    (env / "envbuilder.json").write_text('{"schema": "envbuilder.env/1", "name": "x"}')
    (env / "pyvenv.cfg").write_text("home = /usr/bin\n")
    code, text = _main(["run", "--home", str(tmp_path / "home"), "x", "--", "/etc/passwd"], capsys)
    _one_message(code, text, "/etc/passwd: cannot run it (permission denied")


def test_doctor_python_that_is_no_program(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _main(["doctor", "--python", "/etc/passwd"], capsys)
    _one_message(code, text, "--python /etc/passwd")


@pytest.mark.parametrize(
    ("exc", "message", "hint"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/d/x"), "/d/x: no space left on device", "free some space"),
        (OSError(errno.EROFS, "Read-only file system", "/ro"), "/ro: read-only file system", "read-only"),
        (OSError(errno.EISDIR, "Is a directory", "/a", None, "/b"), "/a -> /b: is a directory", "name a file"),
        (OSError(errno.EIO, "Input/output error"), "input/output error", "check the path"),
    ],
)
def test_file_problem_names_the_path_and_what_to_do(exc: OSError, message: str, hint: str) -> None:
    problem = file_problem(exc)
    assert problem.message == message and hint in (problem.hint or "") and problem.exit_code == 2


def test_an_os_error_no_check_foresaw_is_one_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The safety net in cli.main: an OSError from anywhere becomes one message naming the path, exit 2."""
    from envbuilder.cli import envs

    def full(_args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", "/data/envs/x")

    monkeypatch.setattr(envs, "run_list", full)
    code, text = _main(["list"], capsys)
    _one_message(code, text, "envbuilder: /data/envs/x: no space left on device", "TIP free some space")


# --------------------------------------------------------------------------- create: checked before any work


@pytest.mark.integration
@pytest.mark.network
@pytest.mark.parametrize(
    ("how", "needle"),
    [
        ("path-is-a-file", "--path {afile}: it is a file"),
        ("home-is-a-file", "/etc/passwd is a file, not a directory"),
        ("lock-out-is-a-directory", "--lock-out {work}: it is a directory"),
    ],
)
def test_create_refuses_a_wrong_destination_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], how: str, needle: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    afile = tmp_path / "afile"
    afile.write_text("mine\n")
    args = {
        "path-is-a-file": ["--path", str(afile)],
        "home-is-a-file": ["--home", "/etc/passwd"],
        "lock-out-is-a-directory": ["--home", str(tmp_path / "h"), "--lock-out", str(tmp_path)],
    }[how]
    t0 = time.monotonic()
    code, text = _main(["create", *CPU, "--no-smoke", *args], capsys)
    _one_message(code, text, needle.format(afile=afile, work=tmp_path))
    assert time.monotonic() - t0 < 30  # refused up front, not after a build
    assert afile.read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]  # no lock, no half-made directory


@pytest.mark.integration
@pytest.mark.network
def test_refused_destination_leaves_the_users_lock_byte_identical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 11 item 4: the lock was written before the build, so a refused --path still rewrote it."""
    lock = tmp_path / "pylock.mine.toml"
    shutil.copyfile(SHIPPED_LOCK, lock)
    before = lock.read_bytes()
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine\n")
    code, text = _main(["create", *CPU, "--no-smoke", "--path", str(foreign), "--lock-out", str(lock)], capsys)
    _one_message(code, text, "was not made by envbuilder")
    assert lock.read_bytes() == before
    assert (foreign / "todo.txt").read_text() == "mine\n"


@pytest.mark.integration
@pytest.mark.network
def test_create_with_an_unwritable_cache_builds_with_a_note(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cache that cannot be written degrades to no cache (it only saves time; a CI runner's home can be
    read-only): the lock is made, with one note saying the resolution will not be reused."""
    afile = tmp_path / "cache-is-a-file"
    afile.write_text("")
    monkeypatch.setenv("ENVBUILDER_CACHE", str(afile))
    out = tmp_path / "pylock.c.toml"
    code, text = _main(["lock", *CPU, "--name", "c", "-o", str(out)], capsys)
    assert code == 0, text
    assert "note: cannot write the cache" in text and "Traceback" not in text
    assert out.is_file()


# --------------------------------------------------------------------------- read-only and full file systems


def _namespace_ok() -> str | None:
    if not shutil.which("unshare"):
        return "no unshare(1) here"
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True, text=True, check=False
    )
    return None if probe.returncode == 0 else f"user+mount namespaces are not allowed here ({probe.stderr.strip()})"


def _in_namespace(
    mounts: list[tuple[Path, str]], argv: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m envbuilder ARGV`` in a private mount namespace with tmpfs mounts (dir, options)."""
    script = "set -e\n"
    for where, opts in mounts:
        script += f"mount -t tmpfs -o {opts} tmpfs '{where}'\n"
    script += 'exec "$@"\n'
    return subprocess.run(
        [
            "unshare",
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            script,
            "sh",
            sys.executable,
            "-m",
            "envbuilder",
            *argv,
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )


@pytest.mark.integration
@pytest.mark.network
@pytest.mark.parametrize("fs", ["read-only", "full"])
def test_create_on_a_read_only_or_full_disk(tmp_path: Path, fs: str) -> None:
    """--path on a read-only or a full file system: one message, exit 2, the user's lock byte-identical, no
    temporary directory left."""
    why = _namespace_ok()
    if why:
        pytest.skip(f"cannot mount a real read-only/full file system: {why}")
    disk = tmp_path / "disk"
    disk.mkdir()
    lock = tmp_path / "pylock.mine.toml"
    shutil.copyfile(SHIPPED_LOCK, lock)
    before = lock.read_bytes()
    opts = "ro,size=8m" if fs == "read-only" else "size=8m"
    env = dict(os.environ, ENVBUILDER_HOME=str(tmp_path / "home"))
    r = _in_namespace(
        [(disk, opts)], ["create", *CPU, "--no-smoke", "--path", f"{disk}/env", "--lock-out", str(lock)], env
    )
    text = r.stdout + r.stderr
    _one_message(r.returncode, text, "read-only file system" if fs == "read-only" else "no space left on device")
    assert lock.read_bytes() == before


@pytest.mark.integration
@pytest.mark.network
def test_full_disk_at_the_lock_write_keeps_the_old_lock(tmp_path: Path) -> None:
    """The last write (the user's lock) fails on a full disk: the old lock stays byte for byte, the message says
    where the same lock is (inside the environment), exit 2."""
    why = _namespace_ok()
    if why:
        pytest.skip(f"cannot mount a real full file system: {why}")
    locks = tmp_path / "locks"
    locks.mkdir()
    script_env = dict(os.environ, ENVBUILDER_HOME=str(tmp_path / "home"))
    # Inside the namespace: a 64 KiB tmpfs holding the user's lock, then filled up to the last byte.
    fill = (
        f"cp '{SHIPPED_LOCK}' '{locks}/pylock.mine.toml' && "
        f"(dd if=/dev/zero of='{locks}/filler' bs=4k 2>/dev/null || true) && "
        f"sha256sum '{locks}/pylock.mine.toml' > '{tmp_path}/before' && "
    )
    cmd = (
        f"mount -t tmpfs -o size=64k tmpfs '{locks}' && {fill}"
        f"'{sys.executable}' -m envbuilder create {' '.join(CPU)} --no-smoke --name full "
        f"--lock-out '{locks}/pylock.mine.toml'; rc=$?; "
        f"sha256sum '{locks}/pylock.mine.toml' > '{tmp_path}/after'; exit $rc"
    )
    r = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", cmd],
        capture_output=True,
        text=True,
        env=script_env,
        check=False,
        timeout=600,
    )
    text = r.stdout + r.stderr
    _one_message(r.returncode, text, "was built, but its lock could not be written", "no space left on device")
    assert (tmp_path / "before").read_text() == (tmp_path / "after").read_text()
    assert (tmp_path / "home" / "envs" / "full" / "pylock.toml").is_file()


# --------------------------------------------------------------------------- what is written, and its mode


def test_generated_files_get_the_umask_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11 item 12: every generated file was 0600 (mkstemp's mode)."""
    old = os.umask(0o022)
    try:
        assert main(["recipe", "wsl2", "--gpu", "sm_89", "--driver", "550.54.14", "-o", str(tmp_path / "s.sh")]) == 0
        assert main(["recipe", "windows", "--gpu", "sm_89", "--driver", "576.02", "-o", str(tmp_path / "s.ps1")]) == 0
        assert main(["dockerfile", "--lock", str(SHIPPED_LOCK), "-o", str(tmp_path / "ctx")]) == 0
        os.umask(0o027)
        assert main(["dockerfile", "--lock", str(SHIPPED_LOCK), "-o", str(tmp_path / "ctx2")]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "s.sh") == 0o755
    assert mode(tmp_path / "s.ps1") == 0o644
    assert mode(tmp_path / "ctx" / "Dockerfile") == 0o644
    assert mode(tmp_path / "ctx2" / "Dockerfile") == 0o640


def test_lock_save_keeps_the_manifest_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from envbuilder.edge.manifest import EnvSpec, add_env

    manifest = tmp_path / "envbuilder.toml"
    manifest.write_text("# ours\n")
    manifest.chmod(0o664)
    add_env(manifest, EnvSpec(name="a", profile="cpu"))
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o664
    assert manifest.read_text().startswith("# ours\n")


@pytest.mark.parametrize("command", ["recipe", "dockerfile"])
def test_outputs_never_overwrite_a_users_file(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    """A file envbuilder did not write is refused (exit 2, naming --force); its own earlier output is replaced."""
    if command == "recipe":
        target = tmp_path / "setup.sh"
        argv = ["recipe", "wsl2", "--gpu", "sm_89", "--driver", "550.54.14", "-o", str(target)]
        mine = target
    else:
        target = tmp_path / "ctx"
        target.mkdir()
        argv = ["dockerfile", "--lock", str(SHIPPED_LOCK), "-o", str(target)]
        mine = target / "Dockerfile"
    mine.write_text("FROM scratch\n# my own work\n")
    code, text = _main(argv, capsys)
    _one_message(code, text, "envbuilder did not write", "--force")
    assert mine.read_text() == "FROM scratch\n# my own work\n"
    assert _main([*argv, "--force"], capsys)[0] == 0
    assert "Generated by envbuilder" in mine.read_text()
    assert _main(argv, capsys)[0] == 0  # its own output: regenerated without --force


@pytest.mark.integration
@pytest.mark.network
def test_lock_output_never_overwrites_a_users_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "pylock.mine.toml"
    target.write_text('lock-version = "1.0"\n# written by hand\n')
    code, text = _main(["lock", *CPU, "--name", "mine", "-o", str(target)], capsys)
    _one_message(code, text, "envbuilder did not write", "--force")
    assert target.read_text().endswith("# written by hand\n")
    assert _main(["lock", *CPU, "--name", "mine", "-o", str(target), "--force"], capsys)[0] == 0
    assert _main(["lock", *CPU, "--name", "mine", "-o", str(target)], capsys)[0] == 0  # its own: replaced


def test_run_passes_on_128_plus_the_signal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11 item 12: a child killed by a signal made `run` exit 247 (-9 & 0xff); a shell says 128+N."""
    env = tmp_path / "home" / "envs" / "x"
    (env / "bin").mkdir(parents=True)
    (env / "envbuilder.json").write_text('{"schema": "envbuilder.env/1", "name": "x"}')
    (env / "pyvenv.cfg").write_text("home = /usr/bin\n")
    code = main(["run", "--home", str(tmp_path / "home"), "x", "--", "sh", "-c", "kill -9 $$"])
    assert code == 128 + 9
    code = main(["run", "--home", str(tmp_path / "home"), "x", "--", "sh", "-c", "exit 7"])
    assert code == 7


@pytest.mark.integration
@pytest.mark.network
def test_a_path_spelt_any_way_can_be_built(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 11 item 12: a --path whose last part has a space, a quote or a non-ASCII letter was refused as an
    "environment name". The directory keeps its spelling; the lock and tags take the plan's default name."""
    monkeypatch.chdir(tmp_path)
    dest = tmp_path / "it's my café env"
    code, text = _main(["create", *CPU, "--no-smoke", "--home", str(tmp_path / "h"), "--path", str(dest)], capsys)
    assert code == 0, text
    assert "environment name" not in text and "Traceback" not in text
    assert f"the environment at {dest} is named cpu-py3.11" in text
    lock = tmp_path / "pylock.cpu-py311-linux-x86_64.toml"  # the plan's default lock name
    assert (dest / "envbuilder.json").is_file() and lock.is_file()
    ran = subprocess.run(
        [dest / "bin" / "python", "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0 and ran.stdout.strip() == str(dest), ran.stderr
    code, text = _main(["sync", str(lock), "--no-smoke", "--home", str(tmp_path / "h"), "--path", str(dest)], capsys)
    assert code == 0, text
