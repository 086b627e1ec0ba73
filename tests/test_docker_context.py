"""Engine detection behind docker contexts: the pure resolution (checked against the real docker CLI's own
`docker context show`), a real engine API (podman's service on a unix socket) reached through a context the real
CLI created, and a socket that accepts but never answers (the probe must give up within its timeout)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from envbuilder.edge import _run
from envbuilder.edge.containers import NoEngine, choose_engine, probe_docker_engine
from envbuilder.edge.docker_context import (
    DEFAULT_UNIX_HOST,
    Endpoint,
    context_id,
    find_endpoint,
    parse_context_meta,
    resolve_endpoint,
)

# meta.json exactly as `docker context create colima --description test --docker host=unix:///tmp/i16d-test.sock`
# (Docker 28.2.2) wrote it on this machine.
COLIMA_META = (
    '{"Name":"colima","Metadata":{"Description":"test"},"Endpoints":{"docker":'
    '{"Host":"unix:///tmp/i16d-test.sock","SkipTLSVerify":false}}}'
)
METAS = {"colima": COLIMA_META, "broken": '{"Name":"broken","Endpoints":{}}'}
CONFIG_COLIMA = '{\n\t"auths": {},\n\t"currentContext": "colima"\n}'


@pytest.mark.parametrize(
    ("env", "config", "expected"),
    [
        # nothing configured: the local socket
        ({}, None, Endpoint(DEFAULT_UNIX_HOST, "default", "the local socket")),
        ({}, '{"auths": {}}', Endpoint(DEFAULT_UNIX_HOST, "default", "the local socket")),
        # the current context of config.json (Docker Desktop's desktop-linux, colima, rootless all work this way)
        (
            {},
            CONFIG_COLIMA,
            Endpoint("unix:///tmp/i16d-test.sock", "colima", "context colima, the current context of config.json"),
        ),
        # DOCKER_CONTEXT beats config.json; DOCKER_HOST beats both (the CLI's resolveContextName)
        (
            {"DOCKER_CONTEXT": "colima"},
            '{"currentContext": "broken"}',
            Endpoint("unix:///tmp/i16d-test.sock", "colima", "context colima, from DOCKER_CONTEXT"),
        ),
        (
            {"DOCKER_HOST": "tcp://10.0.0.2:2375", "DOCKER_CONTEXT": "colima"},
            CONFIG_COLIMA,
            Endpoint("tcp://10.0.0.2:2375", "default", "DOCKER_HOST"),
        ),
        (
            {"DOCKER_CONTEXT": "default"},
            CONFIG_COLIMA,
            Endpoint(DEFAULT_UNIX_HOST, "default", "context default, from DOCKER_CONTEXT"),
        ),
        # a named context that does not exist is a problem to say, not a silent fall-back to the local socket
        (
            {"DOCKER_CONTEXT": "gone"},
            None,
            Endpoint(
                None,
                "gone",
                "context gone, from DOCKER_CONTEXT",
                problem=f"context 'gone' not found (no contexts/meta/{context_id('gone')})",
            ),
        ),
        (
            {},
            '{"currentContext": "broken"}',
            Endpoint(
                None,
                "broken",
                "context broken, the current context of config.json",
                problem="context 'broken': meta.json has no Endpoints.docker.Host",
            ),
        ),
        # a malformed config.json: the CLI warns and uses the default context; so do we, keeping the reason
        (
            {},
            "{bad",
            Endpoint(
                DEFAULT_UNIX_HOST,
                "default",
                "the local socket",
                problem="config.json is not valid JSON (Expecting property name enclosed in double quotes at line 1)",
            ),
        ),
    ],
)
def test_resolve_endpoint(env: dict[str, str], config: str | None, expected: Endpoint) -> None:
    assert resolve_endpoint(env, config, METAS.get) == expected


def test_context_id_is_the_cli_directory_name() -> None:
    # The directory `docker context create colima` made on this machine.
    assert context_id("colima") == "f24fd3749c1368328e2b149bec149cb6795619f244c5b584e844961215dadd16"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "not valid JSON"),
        ("[]", "no Endpoints.docker.Host"),
        ('{"Endpoints": {"docker": {"Host": ""}}}', "no Endpoints.docker.Host"),
    ],
)
def test_parse_context_meta_refuses(text: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        parse_context_meta(text)
    assert parse_context_meta(COLIMA_META) == ("unix:///tmp/i16d-test.sock", False)


# --- against the real docker CLI and a real Engine API ----------------------------------------------------


def _docker_cli_or_skip() -> str:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("the docker CLI is not installed: nothing to compare the context resolution with")
    return docker


def _clean_env(config: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG"}}
    return {**env, "DOCKER_CONFIG": str(config), **extra}


def _cli(config: Path, *args: str, **extra: str) -> _run.Result:
    return _run.run(["docker", *args], env=_clean_env(config, **extra), check=False, timeout=60)


@pytest.fixture
def podman_socket(tmp_path: Path) -> Iterator[Path]:
    """podman's Docker-compatible API service on a private unix socket, for the length of one test."""
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (apt-get install podman): no Engine API to detect")
    sock = tmp_path / "engine.sock"
    proc = subprocess.Popen(
        ["podman", "--storage-driver", "vfs", "system", "service", "--time=0", f"unix://{sock}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120  # podman waits for its storage lock while another build holds it
        while not sock.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if not sock.exists():
            err = proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else "no socket in 120 s"
            pytest.skip(f"podman system service cannot run here: {err.strip()[:300]}")
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()


@pytest.mark.podman
def test_resolution_agrees_with_docker_context_show(tmp_path: Path) -> None:
    _docker_cli_or_skip()
    config = tmp_path / "docker-config"
    for name in ("colima", "rootless"):
        created = _cli(config, "context", "create", name, "--docker", f"host=unix://{tmp_path}/{name}.sock")
        assert created.returncode == 0, created.stderr
    assert _cli(config, "context", "use", "colima").returncode == 0
    cases: list[dict[str, str]] = [
        {},
        {"DOCKER_CONTEXT": "rootless"},
        {"DOCKER_CONTEXT": "default"},
        {"DOCKER_HOST": "unix:///tmp/elsewhere.sock", "DOCKER_CONTEXT": "rootless"},
    ]
    for extra in cases:
        shown = _cli(config, "context", "show", **extra)
        assert shown.returncode == 0, shown.stderr
        endpoint = find_endpoint(_clean_env(config, **extra))
        assert endpoint.context == shown.stdout.strip(), extra
        inspect = _cli(config, "context", "inspect", "--format", "{{.Endpoints.docker.Host}}", endpoint.context)
        if endpoint.context != "default":  # the CLI's default context reports the local socket, not DOCKER_HOST
            assert endpoint.host == inspect.stdout.strip(), extra


@pytest.mark.podman
def test_engine_behind_a_context_is_found(tmp_path: Path, podman_socket: Path) -> None:
    _docker_cli_or_skip()
    config = tmp_path / "docker-config"
    assert _cli(config, "context", "create", "colima", "--docker", f"host=unix://{podman_socket}").returncode == 0
    assert _cli(config, "context", "use", "colima").returncode == 0
    # What the issue saw: `docker version` works through the context ...
    version = _cli(config, "version", "--format", "{{.Server.Version}}")
    assert version.returncode == 0 and version.stdout.strip(), version.stderr
    # ... and so does envbuilder now, through the SDK, at the same address (no /var/run/docker.sock here).
    t0 = time.monotonic()
    answer = probe_docker_engine(timeout=10, env=_clean_env(config))
    assert answer.ok, answer.describe()
    assert answer.endpoint == Endpoint(
        f"unix://{podman_socket}", "colima", "context colima, the current context of config.json"
    )
    assert answer.detail.startswith("Engine API 1.")
    assert time.monotonic() - t0 < 15
    # DOCKER_CONTEXT and DOCKER_HOST reach it as well; a missing context is named, not guessed.
    assert probe_docker_engine(timeout=10, env=_clean_env(config, DOCKER_CONTEXT="colima")).ok
    assert probe_docker_engine(timeout=10, env=_clean_env(config, DOCKER_HOST=f"unix://{podman_socket}")).ok
    missing = probe_docker_engine(timeout=10, env=_clean_env(config, DOCKER_CONTEXT="gone"))
    assert not missing.ok and missing.detail.startswith("context 'gone' not found")
    assert _cli(config, "version", DOCKER_CONTEXT="gone").returncode != 0  # the CLI refuses it too


@pytest.mark.podman
def test_no_buildx_behind_a_live_context_says_so(
    tmp_path: Path, podman_socket: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _docker_cli_or_skip()
    if _run.run(["docker", "buildx", "version"], check=False, timeout=60).returncode == 0:
        pytest.skip("docker buildx is installed here: the engine would be chosen, not refused")
    config = tmp_path / "docker-config"
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.setenv("DOCKER_CONTEXT", "colima")
    assert _cli(config, "context", "create", "colima", "--docker", f"host=unix://{podman_socket}").returncode == 0
    with pytest.raises(NoEngine) as info:
        choose_engine("docker")
    head = (
        "cannot build images: docker is not available\n"
        f"  docker: a Docker Engine answered at unix://{podman_socket} (context colima, from DOCKER_CONTEXT): "
    )
    tail = ", but `docker buildx` is missing (the buildx plugin)"
    message = info.value.message
    assert re.fullmatch(re.escape(head) + r"Engine API 1\.\d+" + re.escape(tail), message), message


@pytest.fixture
def silent_socket(tmp_path: Path) -> Iterator[Path]:
    """A unix socket that accepts connections and never answers (a wedged engine)."""
    path = tmp_path / "silent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


def test_a_silent_engine_costs_the_timeout_and_no_more(tmp_path: Path, silent_socket: Path) -> None:
    config = tmp_path / "docker-config"
    meta = config / "contexts" / "meta" / context_id("wedged")
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(
        json.dumps({"Name": "wedged", "Metadata": {}, "Endpoints": {"docker": {"Host": f"unix://{silent_socket}"}}})
    )
    (config / "config.json").write_text('{"currentContext": "wedged"}')
    t0 = time.monotonic()
    answer = probe_docker_engine(timeout=1, env=_clean_env(config))
    elapsed = time.monotonic() - t0
    assert not answer.ok
    assert answer.endpoint.context == "wedged"
    assert "timed out" in answer.detail.lower(), answer.detail
    assert elapsed < 5, elapsed  # the SDK import plus one 1 s timeout, not a hang


def test_a_missing_socket_is_not_asked(tmp_path: Path) -> None:
    answer = probe_docker_engine(timeout=1, env=_clean_env(tmp_path, DOCKER_HOST=f"unix://{tmp_path}/none.sock"))
    assert (answer.ok, answer.detail) == (False, f"no socket at {tmp_path}/none.sock")
