"""The WSL2 recipe: the pure renderer (validation, quoting, steps), shellcheck, and the script run for real.

The run tests execute the generated bash script against a fake WSL2 layout under ``ENVBUILDER_ROOT`` (a
``/proc/version`` and an ``nvidia-smi`` banner recorded on real machines, ``/dev/dxg``) in a temporary HOME,
with uv offline: they prove which step the script stops at, and with which message, and that a second run
skips what the first one finished.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from envbuilder.model.errors import LockError, TargetError
from envbuilder.model.images import load_pin_table
from envbuilder.model.matrix import Matrix
from envbuilder.model.smoke import load_smoke_table
from envbuilder.model.target import build_target, parse_gpus
from envbuilder.render import recipe, values
from envbuilder.render.wsl2 import render_wsl2_script
from envbuilder.resolve import Plan, resolve
from envbuilder.rules.cuda import driver_floors

FIXTURES = Path(__file__).parent / "fixtures"
PY = f"{sys.version_info.major}.{sys.version_info.minor}"

SMOKE_TABLE = load_smoke_table()
UV = load_pin_table().uv_release  # images.toml [uv]: the uv the script installs, the oldest it accepts
UV_VERSION = UV.version


def spec(**over: object) -> recipe.RecipeSpec:
    base: dict[str, object] = {
        "name": "bnb-cu126-py" + PY,
        "profile": "bnb",
        "python": PY,
        "cuda": "12.6",
        "variant": "cu126",
        "platform": "linux-x86_64",
        "driver_floor": "527.41",
        "pins": ("torch==2.14.1+cu126", "bitsandbytes==0.50.2", "transformers==5.24.0"),
        "indexes": ("https://download.pytorch.org/whl/cu126",),
        "uv_version": UV_VERSION,
        "uv_min_version": UV.min_version,
        "bnb_first": None,
    }
    base.update(over)
    made = recipe.RecipeSpec(**base)  # type: ignore[arg-type]
    return recipe.validate(dataclasses.replace(made, expect=recipe.recipe_expect(made, SMOKE_TABLE)))


def plan_for(matrix: Matrix, gpu: str, profile: str | None, os_name: str = "wsl2") -> Plan:
    gpus = parse_gpus(gpu, matrix) if gpu != "cpu" else ()
    target = build_target(
        matrix,
        gpus=gpus,
        driver=None,
        os=os_name,
        pythons=("3.12",),
        machine="x86_64",
        profile=profile,
        torch=None,
        bnb=None,
        forward_compat=False,
    )
    result = resolve(target, matrix)
    assert isinstance(result, Plan), result
    return result


# --------------------------------------------------------------------------- pure rendering


@pytest.mark.parametrize(
    ("gpu", "profile", "toolkit", "floor"),
    [
        ("sm_89", "bnb", "", "580"),  # cu132 from PyPI: Windows numbering, the R580 branch floor
        ("sm_89", "gptq", "cuda-toolkit-13-2", "580"),  # gptqmodel JIT-compiles: the WSL toolkit, never `cuda`
        ("cpu", None, "", ""),  # the cpu profile needs neither a driver nor a toolkit
    ],
)
def test_plan_to_script_carries_floor_and_toolkit(
    matrix: Matrix, gpu: str, profile: str | None, toolkit: str, floor: str
) -> None:
    plan = plan_for(matrix, gpu, profile)
    native, mvc = driver_floors(matrix, plan.cuda, "wsl2") if plan.cuda else (None, None)
    compiles = any(q.kernels == "jit" and plan.package(q.name) for q in matrix.quant)
    made = recipe.recipe_spec(
        plan, driver_floor=mvc or native, compiles=compiles, uv=UV, smoke=SMOKE_TABLE, bnb_first=None
    )
    text = render_wsl2_script(made)
    assert f"CUDA_TOOLKIT={shlex.quote(toolkit)}\n" in text
    assert f"DRIVER_FLOOR={shlex.quote(floor)}\n" in text
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -Eeuo pipefail" in text
    # Never a Linux driver or the meta packages that pull one in.
    installs = [line for line in text.splitlines() if "apt-get install" in line and not line.lstrip().startswith("#")]
    assert all("cuda-drivers" not in line and " cuda " not in line + " " for line in installs)


def test_lock_is_embedded_in_a_quoted_heredoc() -> None:
    lock = 'lock-version = "1.0"\n[[packages]]\nname = "x"\n# $(touch /tmp/pwned) `id` ${HOME}\n'
    text = render_wsl2_script(spec(lock_text=lock))
    tag = values.heredoc_tag(lock.rstrip("\n"), "ENVBUILDER_LOCK")
    assert f"<<'{tag}'\n{lock}{tag}\n" in text  # quoted delimiter: nothing inside is expanded
    assert "uv pip sync --python" in text
    assert "PINS=(" not in text


def test_lock_containing_its_terminator_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tag is derived from the text, so a collision cannot be built honestly: pin the digest instead.
    fixed = SimpleNamespace(sha256=lambda data: SimpleNamespace(hexdigest=lambda: "a" * 64))
    monkeypatch.setattr(values, "hashlib", fixed)
    with pytest.raises(LockError, match="contains the line 'ENVBUILDER_LOCK_AAAAAAAAAAAA'"):
        render_wsl2_script(spec(lock_text='lock-version = "1.0"\nENVBUILDER_LOCK_AAAAAAAAAAAA\nrm -rf /\n'))


@pytest.mark.parametrize("variant", ["cu126", "cu132", "cpu"])
def test_recipe_and_image_share_one_variant_rule(variant: str) -> None:
    # The recipe's own copy of the variant check was looser ([a-z0-9.]{1,16}) than the Dockerfile's: one rule
    # (render.values.VARIANT) now serves both. Every variant of the matrix passes; no other string does.
    assert spec(variant=variant).variant == variant
    with pytest.raises(TargetError, match=r"CUDA variant 'rocm6\.2' is not allowed"):
        spec(variant="rocm6.2")


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("name", "x; rm -rf /", LockError),
        ("name", "$(touch /tmp/pwned)", LockError),
        ("name", "'; Remove-Item", LockError),
        ("python", "3.12; id", TargetError),
        ("pins", ("torch==2.1 ; rm -rf /",), TargetError),
        ("pins", ("torch==$(id)",), TargetError),
        ("indexes", ("https://example.org/x y",), TargetError),
        ("indexes", ("http://plain.example.org/simple",), TargetError),
        ("indexes", ("http://127.0.0.1.example.org/simple",), TargetError),  # plain http only to this machine
        ("indexes", ("http://localhost@evil.example/x",), TargetError),
        ("indexes", ("https://e.org/$(id)",), TargetError),
        ("driver_floor", "580`id`", TargetError),
        ("cuda", "12.6;id", TargetError),
        ("env_dir", "/tmp/a\nrm -rf /", TargetError),
    ],
)
def test_injection_through_values_is_refused(field: str, value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        spec(**{field: value})


@pytest.mark.parametrize(
    "url", ["https://mirror.example/whl/cu126", "http://127.0.0.1:8765/whl/cpu", "http://localhost/whl/cpu"]
)
def test_https_and_loopback_mirrors_are_allowed(url: str) -> None:
    assert spec(indexes=(url,)).indexes == (url,)


@pytest.mark.parametrize(
    "env_dir", ["/tmp/$(touch /tmp/pwned)", "/tmp/x; rm -rf /", "/tmp/'; Remove-Item -Recurse C:\\; '"]
)
def test_paths_are_quoted_inert(env_dir: str) -> None:
    text = render_wsl2_script(spec(env_dir=env_dir))
    assert f"ENV_DIR={shlex.quote(env_dir)}\n" in text
    assert shlex.split(f"ENV_DIR={shlex.quote(env_dir)}") == [f"ENV_DIR={env_dir}"]


def test_windows_lock_is_refused_for_wsl2() -> None:
    with pytest.raises(LockError, match="WSL2 installs Linux wheels"):
        render_wsl2_script(spec(platform="windows-x86_64"))


def test_checklist_names_the_floor_and_the_uv_installer() -> None:
    lines = recipe.checklist(spec(), "wsl2", "setup.sh")
    assert lines[0].startswith("On Windows: NVIDIA driver >= 527.41 for Windows")
    assert "bash setup.sh" in lines[2]
    assert any("standalone installer" in line for line in lines)
    assert any("No CUDA toolkit" in line for line in lines)


def test_the_recipes_install_the_matrix_uv(tmp_path: Path) -> None:
    """Both scripts install images.toml's [uv] release and accept no uv older than its min-version; an overlay
    directory's [uv] replaces both."""
    from envbuilder.cli.app import main

    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "images.toml").write_text(
        'schema-version = 1\n[uv]\nversion = "0.99.1"\nmin-version = "0.11.2"\n'
        'source = "s"\nconfidence = "confirmed"\n',
        encoding="utf-8",
    )
    lines = {
        "wsl2": ("UV_VERSION={}\n", "UV_MIN_VERSION={}\n"),
        "windows": ("$UvVersion = '{}'\n", "$UvMinVersion = '{}'\n"),
    }
    for os_name, (line, min_line) in lines.items():
        for dirs, (version, oldest) in (
            ([], (UV_VERSION, UV.min_version)),
            (["--matrix-dir", str(overlay)], ("0.99.1", "0.11.2")),
        ):
            out = tmp_path / f"{os_name}-{version}"
            argv = [*dirs, "recipe", os_name, "--gpu", "sm_89", "--driver", "576.02", "-o", str(out)]
            assert main(argv) == 0
            text = out.read_text(encoding="utf-8")
            assert line.format(version) in text and min_line.format(oldest) in text


# --------------------------------------------------------------------------- shellcheck


@pytest.mark.parametrize(
    "over",
    [
        {},
        {"profile": "gptq", "compiles": True},
        {"lock_text": 'lock-version = "1.0"\n'},
        {"cuda": None, "variant": "cpu", "driver_floor": None, "profile": "cpu", "indexes": ()},
    ],
    ids=["bnb-pins", "gptq-toolkit", "bnb-lock", "cpu"],
)
def test_shellcheck_passes(tmp_path: Path, over: dict[str, object]) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install -y shellcheck)")
    script = tmp_path / "r.sh"
    script.write_text(render_wsl2_script(spec(**over)))
    proc = subprocess.run(
        [shellcheck, "-S", "style", "-s", "bash", str(script)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout


# --------------------------------------------------------------------------- the script, run


def _layout(root: Path, proc_version: str | None, smi_fixture: Path | None, *, linux_driver: bool = False) -> None:
    (root / "proc").mkdir(parents=True)
    (root / "dev").mkdir()
    if proc_version is not None:
        (root / "proc" / "version").write_text((FIXTURES / "wsl2" / proc_version).read_text())
        (root / "dev" / "dxg").write_text("")
    lib = root / "usr" / "lib" / "wsl" / "lib"
    lib.mkdir(parents=True)
    if smi_fixture is not None:
        smi = lib / "nvidia-smi"
        smi.write_text(f"#!/bin/sh\ncat {shlex.quote(str(smi_fixture))}\n")
        smi.chmod(0o755)
    if linux_driver:
        (root / "proc" / "driver" / "nvidia").mkdir(parents=True)


def _run(
    script_text: str, tmp: Path, root: Path, *, as_root_ok: bool = True, allow_root: str = "1"
) -> subprocess.CompletedProcess[str]:
    script = tmp / "setup.sh"
    script.write_text(script_text)
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    uv = shutil.which("uv")
    assert uv, "uv is a dependency of envbuilder"
    path = os.pathsep.join([str(Path(uv).parent), str(Path(sys.executable).parent), "/usr/bin", "/bin"])
    env = {
        "HOME": str(home),
        "PATH": path,
        "ENVBUILDER_ROOT": str(root),
        "LANG": "C.UTF-8",
        "UV_OFFLINE": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_CACHE_DIR": str(tmp / "uv-cache"),
        "UV_NO_CONFIG": "1",
    }
    if as_root_ok:
        env["ENVBUILDER_ALLOW_ROOT"] = allow_root
    return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=300, check=False)


def _stopped(proc: subprocess.CompletedProcess[str]) -> str:
    return next((line for line in proc.stderr.splitlines() if line.startswith("envbuilder-recipe:")), "")


@pytest.mark.parametrize(
    ("proc_version", "smi", "linux_driver", "floor", "stop"),
    [
        (None, None, False, "527.41", "step 2/9 (inside WSL2) failed: this is not WSL2"),
        ("proc-version-wsl1-4.4.0-18985.txt", None, False, "527.41", "step 2/9 (inside WSL2) failed: this is WSL 1"),
        (
            "proc-version-wsl2-5.4.91.txt",
            None,
            True,
            "527.41",
            "step 3/9 (no Linux NVIDIA driver inside WSL2) failed: a Linux NVIDIA kernel driver is loaded",
        ),
        (
            "proc-version-wsl2-5.4.91.txt",
            "wsl2/nvidia-smi-545.46-driver-546.80.txt",
            False,
            "580",
            "step 4/9 (Windows NVIDIA driver >= 580) failed: Windows driver 546.80 is older than 580",
        ),
    ],
    ids=["not-wsl", "wsl1", "linux-driver-inside", "driver-too-old"],
)
def test_script_stops_at_the_right_step(
    tmp_path: Path, proc_version: str | None, smi: str | None, linux_driver: bool, floor: str, stop: str
) -> None:
    root = tmp_path / "root"
    _layout(root, proc_version, FIXTURES / smi if smi else None, linux_driver=linux_driver)
    proc = _run(render_wsl2_script(spec(driver_floor=floor, cuda="13.0" if floor == "580" else "12.6")), tmp_path, root)
    assert proc.returncode == 1
    assert _stopped(proc).startswith("envbuilder-recipe: " + stop), proc.stderr
    assert any(line.startswith("TIP ") for line in proc.stderr.splitlines())


@pytest.mark.skipif(os.geteuid() != 0, reason="the root refusal needs a root user to refuse")
def test_script_refuses_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    _layout(root, "proc-version-wsl2-5.4.91.txt", FIXTURES / "h100-cu130" / "nvidia-smi.txt")
    proc = _run(render_wsl2_script(spec()), tmp_path, root, as_root_ok=False)
    assert _stopped(proc).startswith(
        "envbuilder-recipe: step 1/9 (not running as root) failed: this script runs as root"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="the root refusal needs root (CI runs as root)")
@pytest.mark.parametrize(
    ("value", "allowed"), [("yes", True), ("TRUE", True), ("on", True), ("0", False), ("no", False)]
)
def test_allow_root_reads_booleans_as_envbuilder_does(tmp_path: Path, value: str, allowed: bool) -> None:
    """ENVBUILDER_ALLOW_ROOT reads 1/true/yes/on (any case) like settings.env_flag (issue 16)."""
    root = tmp_path / "root"
    _layout(root, "proc-version-wsl2-5.4.91.txt", FIXTURES / "h100-cu130" / "nvidia-smi.txt")
    proc = _run(render_wsl2_script(spec()), tmp_path, root, allow_root=value)
    assert ("this script runs as root" in _stopped(proc)) is not allowed, proc.stderr[-2000:]


@pytest.mark.integration
def test_script_runs_to_the_install_step_and_is_idempotent(tmp_path: Path) -> None:
    """With the real H100 banner (driver 580.159.04) every check passes; uv is offline, so the install stops."""
    root = tmp_path / "root"
    _layout(root, "proc-version-wsl2-5.4.91.txt", FIXTURES / "h100-cu130" / "nvidia-smi.txt")
    marker = tmp_path / "pwned"
    env_dir = tmp_path / f"envs/$(touch {marker}); x"
    text = render_wsl2_script(spec(env_dir=str(env_dir)))
    first = _run(text, tmp_path, root)
    assert "driver 580.159.04 (Windows numbering) >= 527.41" in first.stdout, first.stdout + first.stderr
    assert "nothing in the bnb profile compiles CUDA code" in first.stdout
    assert _stopped(first).startswith(
        f"envbuilder-recipe: step 8/9 (environment bnb-cu126-py{PY} in {env_dir}) failed: uv pip install failed"
    )
    assert (env_dir / "bin" / "python").exists()  # the literal directory: the $(...) in its name stayed text
    assert not marker.exists()
    second = _run(text, tmp_path, root)
    assert f"exists (Python {PY}): kept" in second.stdout
    assert _stopped(second) == _stopped(first)
    assert not marker.exists()


BASE_IMAGE = "localhost/envbuilder-base:bookworm"


def _buildah(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    storage = os.environ.get("PODMAN_STORAGE", "--storage-driver vfs").split()
    return subprocess.run(["buildah", *storage, *args], capture_output=True, text=True, timeout=600, check=check)


@pytest.mark.podman
def test_script_in_a_debian_container_as_a_user(tmp_path: Path) -> None:
    """A fresh Debian minbase (mawk, no curl): checks pass on the fake WSL2 layout, then uv's step stops."""
    if not (shutil.which("buildah") and shutil.which("podman")):
        pytest.skip("buildah/podman are not installed (apt-get install -y podman buildah mmdebstrap)")
    storage = os.environ.get("PODMAN_STORAGE", "--storage-driver vfs").split()
    exists = subprocess.run(["podman", *storage, "image", "exists", BASE_IMAGE], check=False)
    if exists.returncode != 0:
        if not shutil.which("mmdebstrap"):
            pytest.skip(f"no {BASE_IMAGE} and no mmdebstrap to make it")
        subprocess.run(["sh", str(Path(__file__).parent / "podman_base.sh"), BASE_IMAGE], check=True, timeout=600)
    fake = tmp_path / "fake"
    _layout(fake, "proc-version-wsl2-5.4.91.txt", None)
    (fake / "smi.txt").write_text((FIXTURES / "h100-cu130" / "nvidia-smi.txt").read_text())
    smi = fake / "usr" / "lib" / "wsl" / "lib" / "nvidia-smi"
    smi.write_text("#!/bin/sh\ncat /fake/smi.txt\n")
    smi.chmod(0o755)
    script = tmp_path / "setup.sh"
    script.write_text(render_wsl2_script(spec(python="3.11", name="bnb-cu126-py3.11")))
    ctr = _buildah("from", "--pull=never", BASE_IMAGE).stdout.strip().splitlines()[-1]
    try:
        _buildah("copy", ctr, str(fake), "/fake")
        _buildah("copy", ctr, str(script), "/setup.sh")
        _buildah("run", "--isolation", "chroot", ctr, "--", "useradd", "-m", "dev")
        proc = _buildah(
            "run",
            "--isolation",
            "chroot",
            "--user",
            "dev",
            "--env",
            "ENVBUILDER_ROOT=/fake",
            "--env",
            "HOME=/home/dev",
            ctr,
            "--",
            "bash",
            "/setup.sh",
            check=False,
        )
    finally:
        _buildah("rm", ctr, check=False)
    assert "driver 580.159.04 (Windows numbering) >= 527.41" in proc.stdout, proc.stdout + proc.stderr
    assert "==> [6/9] uv >= 0.9.0" in proc.stdout
    assert _stopped(proc) in {
        "envbuilder-recipe: step 6/9 (uv >= 0.9.0) failed: neither curl nor wget is installed",
        "envbuilder-recipe: step 6/9 (uv >= 0.9.0) failed: could not download uv's installer",
    }, proc.stderr


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"XDG_DATA_HOME": "/xd"},
        {"ENVBUILDER_HOME": "/e", "XDG_DATA_HOME": "/xd"},
        {"ENVBUILDER_HOME": "", "XDG_DATA_HOME": ""},  # empty is unset, in the shell as in the rule
    ],
)
def test_the_shell_spelling_of_the_home_is_the_rule(environ: dict[str, str]) -> None:
    """SH_DATA_ROOT (the WSL2 recipe, the bash and zsh completions) run by bash gives edge/_roots.data_root."""
    import shutil
    import subprocess

    from envbuilder.edge._roots import data_root
    from envbuilder.render.wsl2 import SH_DATA_ROOT

    bash = shutil.which("bash")
    assert bash, "bash is on every machine this suite runs on"
    env = {"PATH": "/usr/bin:/bin", "HOME": "/h", **environ}
    argv = [bash, "-c", f'printf %s "{SH_DATA_ROOT}"']
    out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    assert out.stdout == data_root(environ, "/h", "posix")


def test_envbuilders_own_uv_floor_is_the_recipes() -> None:
    """pyproject.toml cannot read the matrix: its uv requirement is held equal to images.toml's min-version here."""
    import tomllib
    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text(encoding="utf-8"))
    (uv,) = (Requirement(d) for d in project["project"]["dependencies"] if Requirement(d).name == "uv")
    floors = [Version(s.version) for s in uv.specifier if s.operator == ">="]
    assert floors == [Version(UV.min_version)], f"pyproject says {uv}, images.toml [uv] min-version {UV.min_version}"
