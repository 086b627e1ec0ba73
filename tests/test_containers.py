"""containers.py: the engines' command lines, engine choice, and a REAL podman build of the cpu image.

The real build (marked podman) makes a Debian bookworm base image locally (tests/podman_base.sh: mmdebstrap +
podman import; no registry is reachable here), an image holding uv's binary (FROM scratch, like uv's own
image), then runs `envbuilder build` on dockerfiles/cpu's lock: the wheelhouse from pip's configuration
serves torch+cpu, PyPI the rest, pip's CA bundle enters as the build secret 'ca', and the Dockerfile's
build-time smoke step must pass. Images are removed afterwards (vfs layers are full copies).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from envbuilder.cli.app import main
from envbuilder.edge import _run, containers
from envbuilder.edge.containers import BuildRequest, Docker, NoEngine, Podman, choose_engine
from envbuilder.model.images import load_pin_table
from envbuilder.model.lock import read_lock
from envbuilder.render.dockerfile import image_tags

ROOT = Path(__file__).resolve().parent.parent
CPU_LOCK = ROOT / "dockerfiles" / "cpu" / "pylock.cpu.toml"
BASE = "localhost/envbuilder-test-base:bookworm"
UV_LOCAL = f"localhost/envbuilder-test-uv:{load_pin_table().uv_version}"
STORAGE = ("--storage-driver", "vfs")


def _request(**kw: object) -> BuildRequest:
    defaults: dict[str, object] = {
        "context": Path("/ctx"),
        "tags": ("cpu:cpu-cpu-py3.11-abc", "cpu:cpu-cpu-py3.11"),
        "build_args": {"UV_INDEX": "", "BASE_IMAGE": "mirror.example/python:3.11"},
        "secrets": {"ca": Path("/etc/ca.pem")},
    }
    defaults.update(kw)
    return BuildRequest(**defaults)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("engine", "no_cache", "expected"),
    [
        (Docker(), False, ["docker", "buildx", "build", "--progress", "plain", "--load"]),
        (
            Podman(),
            False,
            ["podman", "--storage-driver", "vfs", "build", "--isolation", "chroot", "--layers"],
        ),
        # --no-cache keeps no intermediate images either (vfs copies every layer in full).
        (
            Podman(),
            True,
            ["podman", "--storage-driver", "vfs", "build", "--isolation", "chroot", "--layers=false"],
        ),
    ],
)
def test_build_argv(engine: Docker | Podman, no_cache: bool, expected: list[str]) -> None:
    argv = engine.build_argv(_request(no_cache=no_cache))
    tail = [
        "--tag",
        "cpu:cpu-cpu-py3.11-abc",
        "--tag",
        "cpu:cpu-cpu-py3.11",
        "--build-arg",
        "BASE_IMAGE=mirror.example/python:3.11",
        "--build-arg",
        "UV_INDEX=",
        "--secret",
        "id=ca,src=/etc/ca.pem",
        *(["--no-cache"] if no_cache else []),
        "/ctx",
    ]
    assert argv == expected + tail


def test_engines_are_keyed_by_name() -> None:
    assert set(containers.ENGINES) == {"docker", "podman"}
    assert all(containers.ENGINES[n]().name == n for n in containers.ENGINES)


@pytest.mark.podman
def test_no_engine_is_one_clear_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    if Docker().available():
        pytest.skip("docker buildx works on this machine: the no-engine path cannot be shown with docker")
    # The message says where docker was looked for (DOCKER_HOST, a context or the local socket) and why it failed.
    with pytest.raises(NoEngine, match=r"^cannot build images: docker is not available\n  docker: \S"):
        choose_engine("docker")
    code = main(["build", "--lock", str(CPU_LOCK), "--no-pip-config", "--engine", "docker"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("envbuilder: cannot build images: docker is not available\n  docker: ")
    assert "\nTIP install Docker with the buildx plugin" in err
    assert "Traceback" not in err


def _podman_or_skip() -> Podman:
    engine = Podman()
    if not engine.available():
        pytest.skip("podman is not installed or cannot run here (apt-get install podman): no engine to build with")
    return engine


def _image_exists(ref: str) -> bool:
    return _run.run(["podman", *STORAGE, "image", "exists", ref], check=False, timeout=60).returncode == 0


def _ensure_base_images(tmp_path: Path) -> None:
    if not _image_exists(BASE):
        if shutil.which("mmdebstrap") is None:
            pytest.skip("mmdebstrap is not installed (apt-get install mmdebstrap): no way to make a base image here")
        _run.run(["sh", str(ROOT / "tests" / "podman_base.sh"), BASE], timeout=900)
    if not _image_exists(UV_LOCAL):
        from envbuilder.edge.uv import find_uv

        ctx = tmp_path / "uv-image"
        ctx.mkdir()
        shutil.copy2(find_uv(), ctx / "uv")
        (ctx / "Dockerfile").write_text("FROM scratch\nCOPY uv /uv\n", encoding="utf-8")
        _run.run(
            [
                "podman",
                *STORAGE,
                "build",
                "--isolation",
                "chroot",
                "--layers=false",
                "-t",
                UV_LOCAL,
                str(ctx),
            ],
            timeout=600,
        )


def _pip_cert() -> str | None:
    from envbuilder.edge.sources import read_pip_config

    certs = [c for c in read_pip_config().get("cert", []) if Path(c).is_file()]
    return certs[0] if certs else None


@pytest.mark.podman
@pytest.mark.network
def test_real_podman_build_of_the_cpu_image(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    engine = _podman_or_skip()
    _ensure_base_images(tmp_path)
    lock = read_lock(CPU_LOCK)
    # A repository of this run's own: two runs at once (engineers, CI) building one fixed tag collide in the
    # shared store ("image is in use by a container").
    repository = f"localhost/envbuilder-test-{os.getpid()}"
    tags = image_tags(lock, repository)
    # Index credentials enter only as the build secret 'netrc' (issue 11: no secret in an image layer).
    token = f"NETRC-TOKEN-{os.getpid()}-{time.time_ns()}"
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine mirror.invalid login ebuser password {token}\n")
    try:
        code = main(
            [
                "build",
                "--engine",
                "podman",
                "--lock",
                str(CPU_LOCK),
                "--netrc",
                str(netrc),
                "--no-cache",
                "--base-image",
                BASE,
                "--uv-image",
                UV_LOCAL,
                "--repository",
                repository,
            ]
        )
        out, err = capfd.readouterr()
        assert code == 0, err[-3000:]
        # The Dockerfile's build-time smoke step ran inside the image and passed.
        assert f"ok   versions: {len(lock.packages)} packages, exactly the lock's versions" in out + err
        assert "ok   torch: torch 2.13.0+cpu (CPU build)" in out + err
        assert "would load libbitsandbytes_cpu.so (dlopen OK)" in out + err
        assert "ok   imports: imported torch, bitsandbytes, transformers, accelerate, peft" in out + err
        inspect = _run.run(
            [
                "podman",
                *STORAGE,
                "image",
                "inspect",
                "--format",
                '{{index .Labels "io.envbuilder.lock-digest"}} {{.Config.User}}',
                tags[0],
            ],
            timeout=120,
        )
        assert inspect.stdout.split() == [lock.tool.digest, "10001:10001"]
        # The guard (issue 15): both installers inside the image are bound to the lock's stack layers.
        env = _run.run(
            ["podman", *STORAGE, "image", "inspect", "--format", "{{json .Config.Env}}", tags[0]], timeout=120
        ).stdout
        assert "UV_CONSTRAINT=/opt/venv/envbuilder-constraints.txt" in env
        assert "PIP_CONSTRAINT=/opt/venv/envbuilder-constraints.txt" in env
        # The CA bundle was a build secret: neither its path nor its content is in the image's history.
        history = _run.run(
            ["podman", *STORAGE, "history", "--no-trunc", "--format", "{{.CreatedBy}}", tags[0]], timeout=120
        ).stdout
        cert = _pip_cert()
        assert "BEGIN CERTIFICATE" not in history and token not in history and str(netrc) not in history
        if cert:
            assert cert not in history
        # ... nor anywhere in the image's file system.
        root = _run.run(["podman", *STORAGE, "image", "mount", tags[0]], timeout=120).stdout.strip()
        try:
            found = _run.run(["grep", "-rlF", "--binary-files=text", token, root], check=False, timeout=600)
            assert found.returncode == 1 and not found.stdout, found.stdout[:2000]
        finally:
            _run.run(["podman", *STORAGE, "image", "unmount", tags[0]], check=False, timeout=120)
        size = engine.image_size(tags[0])
        assert 300e6 < size < 3e9, size
    finally:
        engine.remove_images(list(tags))
        assert not _image_exists(tags[0])


def test_no_docker_engine_is_told_apart_from_the_client_quickly() -> None:
    import os
    import time

    from envbuilder.edge.containers import docker_engine_answers

    if os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists():
        pytest.skip("a Docker Engine socket exists here: this test is for machines with the client only")
    t0 = time.monotonic()
    assert docker_engine_answers(timeout=2) is False
    assert time.monotonic() - t0 < 5
