"""``--resolve-digests``: image digests read from a real registry on loopback (Debian's docker-registry, the
CNCF distribution registry), into which podman pushed a tiny image; podman's own record of the digest it
pushed is what the resolver must find."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from envbuilder.cli.app import main
from envbuilder.edge import _run
from envbuilder.edge.registry import ImageRef, manifest_url, parse_ref, resolve_digests
from envbuilder.model.errors import SourceError

ROOT = Path(__file__).resolve().parent.parent
CPU = ROOT / "dockerfiles" / "cpu" / "pylock.cpu.toml"
STORAGE = ("--storage-driver", "vfs")


@pytest.mark.parametrize(
    ("ref", "parsed", "url"),
    [
        (
            "python:3.11-slim-bookworm",
            ImageRef("registry-1.docker.io", "library/python", "3.11-slim-bookworm"),
            "https://registry-1.docker.io/v2/library/python/manifests/3.11-slim-bookworm",
        ),
        (
            "nvidia/cuda:12.8.1-devel-ubuntu24.04",
            ImageRef("registry-1.docker.io", "nvidia/cuda", "12.8.1-devel-ubuntu24.04"),
            None,
        ),
        ("docker.io/library/debian", ImageRef("registry-1.docker.io", "library/debian", "latest"), None),
        (
            "ghcr.io/astral-sh/uv:0.13.9",
            ImageRef("ghcr.io", "astral-sh/uv", "0.13.9"),
            "https://ghcr.io/v2/astral-sh/uv/manifests/0.13.9",
        ),
        (
            "localhost:5000/team/python:3.11",
            ImageRef("localhost:5000", "team/python", "3.11"),
            "http://localhost:5000/v2/team/python/manifests/3.11",
        ),
        ("127.0.0.1:5000/x:1", ImageRef("127.0.0.1:5000", "x", "1"), "http://127.0.0.1:5000/v2/x/manifests/1"),
        ("registry.example.com:5000/x", ImageRef("registry.example.com:5000", "x", "latest"), None),
    ],
)
def test_references_are_read_as_docker_reads_them(ref: str, parsed: ImageRef, url: str | None) -> None:
    assert parse_ref(ref) == parsed
    if url:
        assert manifest_url(parsed) == url


def test_a_pinned_reference_is_not_resolved_again() -> None:
    with pytest.raises(SourceError, match="pinned by digest already"):
        parse_ref("python:3.11@sha256:" + "0" * 64)
    assert resolve_digests(["python:3.11@sha256:" + "0" * 64]) == {}


# --------------------------------------------------------------------------- a registry on loopback


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"docker-registry exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:  # loopback http
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"docker-registry did not answer {url} within 30 s")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("Debian's docker-registry is not installed (apt-get install docker-registry; .ci/run does)")
    root = tmp_path_factory.mktemp("registry")
    port = _free_port()
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/v2/", proc)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def pushed(registry: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(reference, digest podman says it pushed) of a one-file image pushed into ``registry``."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install podman): nothing to push the image with")
    work = tmp_path_factory.mktemp("image")
    (work / "hello.txt").write_text("envbuilder registry test\n", encoding="utf-8")
    with tarfile.open(work / "rootfs.tar", "w") as tar:
        tar.add(work / "hello.txt", arcname="hello.txt")
    local = f"localhost/envbuilder-registry-test:{os.getpid()}"
    ref = f"{registry}/envbuilder/tiny:1.0"
    podman = ["podman", *STORAGE]
    _run.run([*podman, "import", str(work / "rootfs.tar"), local], timeout=300)
    try:
        digest_file = work / "digest"
        _run.run(
            [*podman, "push", "--tls-verify=false", "--digestfile", str(digest_file), local, f"docker://{ref}"],
            timeout=300,
        )
    finally:
        _run.run([*podman, "rmi", "--force", local], check=False, timeout=120)
    return ref, digest_file.read_text(encoding="utf-8").strip()


@pytest.mark.podman
def test_the_digest_is_the_one_podman_pushed(pushed: tuple[str, str]) -> None:
    ref, digest = pushed
    assert digest.startswith("sha256:")
    assert resolve_digests([ref]) == {ref: digest}


@pytest.mark.podman
def test_dockerfile_resolve_digests_pins_the_base(
    pushed: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, digest = pushed
    out = tmp_path / "ctx"
    argv = ["dockerfile", "--lock", str(CPU), "--base-image", ref, "--uv-image", ref, "--resolve-digests"]
    argv += ["-o", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    text = (out / "Dockerfile").read_text(encoding="utf-8")
    assert f"ARG BASE_IMAGE={ref}@{digest}\n" in text
    assert f"ARG UV_IMAGE={ref}@{digest}\n" in text
    assert f'org.opencontainers.image.base.digest="{digest}"' in text
    assert f"resolved {ref} to {digest}" in capsys.readouterr().err


@pytest.mark.podman
def test_ci_resolve_digests_pins_every_context(pushed: tuple[str, str], tmp_path: Path) -> None:
    ref, digest = pushed
    manifest = tmp_path / "envbuilder.toml"
    manifest.write_text('[[env]]\nname = "cpu"\nprofile = "cpu"\n', encoding="utf-8")
    shutil.copy(CPU, tmp_path / CPU.name)
    argv = ["ci", "--manifest", str(manifest), "--base-image", ref, "--uv-image", ref, "--resolve-digests"]
    assert main(argv) == 0
    assert f"ARG BASE_IMAGE={ref}@{digest}\n" in (tmp_path / "docker" / "cpu" / "Dockerfile").read_text()


def test_an_unknown_tag_is_one_clear_error(registry: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = f"{registry}/envbuilder/none:9"
    argv = ["dockerfile", "--lock", str(CPU), "--base-image", ref, "--resolve-digests", "-o", str(tmp_path / "ctx")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{ref}: {registry} has no envbuilder/none:9 (HTTP 404)" in err and "Traceback" not in err
    assert f"{ref}: {ref}" not in err and "drop --resolve-digests" not in err  # the registry's own answer, once
    assert not (tmp_path / "ctx").exists()


def test_a_registry_that_is_down_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = f"127.0.0.1:{_free_port()}/envbuilder/tiny:1.0"
    argv = ["dockerfile", "--lock", str(CPU), "--base-image", ref, "--resolve-digests", "-o", str(tmp_path / "ctx")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"envbuilder: {ref}: cannot reach http://127.0.0.1:" in err and "drop --resolve-digests" in err


@pytest.mark.podman
def test_build_resolve_digests_passes_the_pinned_images(
    pushed: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    ref, digest = pushed
    argv = ["build", "--lock", str(CPU), "--engine", "podman", "--base-image", ref, "--uv-image", ref]
    assert main([*argv, "--resolve-digests", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"--build-arg BASE_IMAGE={ref}@{digest}" in out and f"--build-arg UV_IMAGE={ref}@{digest}" in out


@pytest.mark.podman
def test_podman_builds_from_the_tag_and_digest_form(pushed: tuple[str, str], tmp_path: Path) -> None:
    """``FROM name:tag@sha256:...`` (what the Dockerfiles write) is pulled by its digest: podman, the real
    consumer, builds from it, and refuses the same tag with a digest that is not the tag's."""
    ref, digest = pushed
    (tmp_path / "Dockerfile").write_text("ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY Dockerfile /built-from\n")
    tag = f"localhost/envbuilder-registry-test-built:{os.getpid()}"
    podman = ["podman", *STORAGE]
    build = [*podman, "build", "--isolation", "chroot", "--tls-verify=false", "--layers=false", "-t", tag]
    try:
        _run.run([*build, "--build-arg", f"BASE_IMAGE={ref}@{digest}", str(tmp_path)], timeout=600)
        wrong = _run.run(
            [*build, "--build-arg", f"BASE_IMAGE={ref}@sha256:{'0' * 64}", str(tmp_path)], check=False, timeout=600
        )
        assert wrong.returncode != 0
    finally:  # the image built and the base podman pulled for it
        _run.run([*podman, "rmi", "--force", tag, f"{ref}@{digest}"], check=False, timeout=120)
