"""Container images from locks: Dockerfiles, build contexts, tags, OCI labels (bake files and CI: ``ci``).

Pure: every function takes a ``Lock`` (or plain values) and returns text; nothing here touches the world
(``containers.py`` builds, ``jobs/image.py`` writes files). Every value that reaches generated text is
validated against a small character set first (``render.values``), so a name such as ``x; rm -rf /`` never
reaches a shell, a ``LABEL``, an HCL string or a YAML file (``DockerError``, exit 2).

Image layout (one Dockerfile per lock):

- ``venv``: the base image + uv (copied from uv's image) + an empty venv with the lock's Python;
- ``cuda-stack``: torch, triton and the nvidia-*/cuda-* wheels installed with ``--target`` into their own
  directory, so that changing any other pin (bitsandbytes, transformers) leaves this multi-GB layer cached;
- ``rest``: every other package of the lock, installed into the venv, with a ``.pth`` naming the stack;
- ``runtime``: the base image, a non-root user, the two directories, the build-time smoke step, labels.

Packages are installed from the lock as a hash-checked requirements file: any source (PyPI, a mirror, a
wheelhouse) may serve a file, the recorded sha256 decides. CA bundles and credentials enter only as build
secrets (``--secret id=ca`` / ``--secret id=netrc``), never as a layer or a build argument.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from envbuilder import __version__
from envbuilder.model.guard import CONSTRAINTS_FILE, constraints_text, guarded_pins
from envbuilder.model.images import PinTable
from envbuilder.model.lock import Lock, LockedPackage, check_env_name, lock_file_name
from envbuilder.model.smoke import Expect, SmokeTable, expect_for, program_text
from envbuilder.model.types import PROFILES
from envbuilder.render.values import (
    PYTHON,
    REGISTRY,
    REPO,
    SHA256_DIGEST,
    TAG,
    VARIANT,
    DockerError,
    check_image,
    check_url,
    safe,
)
from envbuilder.rules.bnb import lib_name

__all__ = [
    "APP_UID",
    "IMAGE_PLATFORMS",
    "PYPI_FILES",
    "UV_REPOSITORY",
    "Base",
    "DockerError",
    "Options",
    "build_args",
    "check_lock",
    "default_base",
    "extra_indexes",
    "guard_constraints",
    "hashed_lines",
    "image_tag",
    "image_tags",
    "labels_for",
    "pin_image",
    "render_context",
    "render_dockerfile",
    "render_dockerignore",
    "repository",
    "rest_packages",
    "smoke_expect",
    "stack_packages",
    "tag_base",
    "target_text",
    "uv_image",
    "wheelhouse_files",
]

# uv's own image (FROM scratch, the binary at /uv), tagged by release; --uv-image points at a mirror of it.
UV_REPOSITORY = "ghcr.io/astral-sh/uv"
VENV = "/opt/venv"
STACK_DIR = "/opt/envbuilder/cuda-stack"  # the CUDA stack layer (torch, triton, nvidia-*), on sys.path by a .pth
PYTHONS = "/opt/python"
SMOKE_DIR = "/opt/envbuilder/smoke"
APP_UID = 10001
PYPI_FILES = "https://files.pythonhosted.org/"

# The platforms images are built for, as the matrix and as the OCI spec name them.
IMAGE_PLATFORMS: Mapping[str, str] = {"linux-x86_64": "linux/amd64", "linux-aarch64": "linux/arm64"}
# The packages of the CUDA stack layer (STACK_DIR: rebuilt only when one of them changes).
_STACK_PACKAGE = re.compile(r"^(torch|triton|pytorch-triton.*|nvidia-.+|cuda-.+)$")


def check_lock(lock: Lock) -> Lock:
    """Refuse a lock whose values cannot be put into an image definition (exit 2)."""
    check_env_name(lock.tool.name)
    if lock.tool.platform not in IMAGE_PLATFORMS:
        msg = f"{lock.path}: images are Linux images; this lock is for {lock.tool.platform!r}"
        raise DockerError(msg, hint="lock for the image: envbuilder lock --os linux")
    for value, pattern, what in (
        (lock.tool.python, PYTHON, "python"),
        (lock.tool.variant, VARIANT, "variant"),
        (lock.tool.digest, SHA256_DIGEST, "lock digest"),
    ):
        if not pattern.match(value):
            msg = f"{lock.path}: {what} {value!r} cannot go into an image definition"
            raise DockerError(msg, hint="regenerate the lock with `envbuilder lock`")
    if lock.tool.profile not in PROFILES:
        msg = f"{lock.path}: unknown profile {lock.tool.profile!r}"
        raise DockerError(msg, hint="regenerate the lock with `envbuilder lock`")
    if lock.package("torch") is None:
        msg = f"{lock.path}: the lock has no torch"
        raise DockerError(msg, hint="regenerate the lock with `envbuilder lock`")
    for p in lock.packages:
        safe(p.requirement, "package")
    return lock


def uv_image(pins: PinTable) -> str:
    """uv's own image at the release the matrix pins (images.toml ``[uv]``): ``ghcr.io/astral-sh/uv:X.Y.Z``."""
    return f"{UV_REPOSITORY}:{pins.uv_version}"


# --------------------------------------------------------------------------- names and tags


def repository(lock: Lock, prefix: str | None = None) -> str:
    """The image repository: ``[prefix/]<env name in lower case>``; a prefix may start with a registry host."""
    name = check_env_name(lock.tool.name).lower()
    parts = [*(prefix.strip("/").split("/") if prefix else []), name]
    host = parts[0] if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost") else None
    path = parts[1:] if host else parts
    if (host and not REGISTRY.match(host)) or not all(REPO.match(p) for p in path):
        repo = "/".join(parts)
        msg = f"image repository {repo!r} is not valid (lower-case letters and digits, single '.', '_' or '-' between)"
        raise DockerError(msg, hint="rename the environment, or give --repository registry.example.com/team")
    return "/".join(parts)


def tag_base(lock: Lock) -> str:
    """``<profile>-<cuNNN|cpu>-py<N.N>``: what the image is, readable at a glance."""
    check_lock(lock)
    return f"{lock.tool.profile}-{lock.tool.variant}-py{lock.tool.python}"


def image_tag(lock: Lock, prefix: str | None = None) -> str:
    """``<name>:<profile>-<cuNNN|cpu>-py<N.N>-<lock hash>``: different locks never share a tag."""
    tag = f"{tag_base(lock)}-{lock.short_hash}"
    if not TAG.match(tag):  # pragma: no cover - every part is validated above
        msg = f"tag {tag!r} is not valid"
        raise DockerError(msg, hint="regenerate the lock")
    return f"{repository(lock, prefix)}:{tag}"


def image_tags(lock: Lock, prefix: str | None = None) -> tuple[str, str]:
    """The unique tag (with the lock hash) and the moving one (the newest build of that kind)."""
    return image_tag(lock, prefix), f"{repository(lock, prefix)}:{tag_base(lock)}"


# --------------------------------------------------------------------------- base images


@dataclass(frozen=True, slots=True, kw_only=True)
class Base:
    """The image both stages start from, and why it is enough."""

    image: str
    reason: tuple[str, ...]


def default_base(lock: Lock, pins: PinTable) -> Base:
    """The base per profile: Debian slim where torch's wheels bring CUDA, a CUDA devel image where nvcc runs
    (``pins``: ``matrices/images.toml``'s ``[[cuda-devel]]`` rows)."""
    check_lock(lock)
    if lock.tool.profile == "gptq":
        devel = pins.devel_image(lock.tool.cuda or "")
        if devel is None:
            msg = f"{lock.path}: no nvidia/cuda devel image is known for CUDA {lock.tool.cuda}"
            hint = "give one with --base-image (a CUDA devel image matching torch's CUDA), or add a [[cuda-devel]] row"
            raise DockerError(msg, hint=f"{hint} to matrices/images.toml")
        return Base(
            image=devel,
            reason=(
                f"gptqmodel compiles its kernels on first use (JIT), so nvcc and the CUDA {lock.tool.cuda} headers",
                "must be in the image and match torch's CUDA: an nvidia/cuda *devel* base. Its Python is",
                "not the one the lock needs, so uv installs a managed CPython into /opt/python.",
            ),
        )
    why = {
        "cpu": ("The CPU build of torch needs only glibc and Python: Debian slim with the lock's Python.",),
        "bnb": (
            "torch's CUDA wheels bring the CUDA runtime (the nvidia-* wheels) and bitsandbytes ships its",
            "native libraries prebuilt; the NVIDIA container toolkit mounts the host driver at run time",
            "(--gpus all). Nothing compiles against CUDA, so no CUDA base image: Debian slim suffices.",
        ),
        "awq": (
            "torch's CUDA wheels bring the CUDA runtime (the nvidia-* wheels) and llmcompressor is pure",
            "Python over torch; the NVIDIA container toolkit mounts the host driver at run time",
            "(--gpus all). Nothing compiles against CUDA, so no CUDA base image: Debian slim suffices.",
        ),
    }[lock.tool.profile]
    return Base(image=f"python:{lock.tool.python}-slim-bookworm", reason=why)


# --------------------------------------------------------------------------- requirements


def stack_packages(lock: Lock) -> tuple[LockedPackage, ...]:
    """torch and the CUDA stack it brings: the big, rarely changing layer."""
    return tuple(p for p in lock.packages if _STACK_PACKAGE.match(p.name))


def rest_packages(lock: Lock) -> tuple[LockedPackage, ...]:
    return tuple(p for p in lock.packages if not _STACK_PACKAGE.match(p.name))


def hashed_lines(packages: Sequence[LockedPackage]) -> str:
    """A hash-checked requirements file: any source may serve a file, the recorded sha256 decides."""
    lines = ["# Generated by envbuilder from the lock; every file is pinned by its sha256."]
    for p in packages:
        marker = f" ; {p.marker}" if p.marker else ""
        hashes = " \\\n    ".join(f"--hash=sha256:{f.sha256}" for f in p.files)
        lines.append(f"{p.requirement}{marker} \\\n    {hashes}")
    return "\n".join(lines) + "\n"


def extra_indexes(lock: Lock) -> tuple[str, ...]:
    """Indexes besides the default one that serve the locked files: the lock's own indexes (the plan's), and
    the variant index of every local-version build (``torch 2.13.0+cpu`` at ``.../whl/cpu/<file>``).

    A file of a lock made through a mirror is served by that mirror (the default index) under a path of its
    own, so its directory is no index: only the indexes the lock actually uses are listed (issue 11: a mirror
    lock put 82 directories into ``ARG UV_INDEX``).
    """
    found = list(lock.tool.indexes)
    for p in lock.packages:
        if "+" not in p.version:
            continue
        for f in p.files:
            if f.url.startswith(("http://", "https://")) and not f.url.startswith(PYPI_FILES):
                found.append(f.url.rsplit("/", 1)[0])
    seen: list[str] = []
    for url in (u.rstrip("/") for u in found):
        if url not in seen:
            seen.append(check_url(url, "index"))
    return tuple(seen)


def wheelhouse_files(lock: Lock, available: Sequence[str]) -> tuple[str, ...]:
    """Which of ``available`` (file names in --find-links directories) the lock installs."""
    wanted = {f.filename for p in lock.packages for f in p.files}
    return tuple(sorted(n for n in set(available) if n in wanted))


# --------------------------------------------------------------------------- the Dockerfile


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """What a user may change without editing the Dockerfile (each is also a build argument)."""

    base_image: str | None = None
    uv_image: str | None = None  # None: uv's own image at the matrix's release (``uv_image(pins)``)
    index_url: str | None = None
    # Digests of image references (matrices/images.toml, or read from the registry: --resolve-digests).
    pins: PinTable = field(default_factory=PinTable)


def pin_image(ref: str, pins: PinTable) -> str:
    """``ref@sha256:...`` where the digest of ``ref`` is known, else ``ref`` (a tag, which can move).

    The tag stays beside the digest (``name:tag@digest``): a reader sees what it is, the engine pulls the digest.
    """
    if "@" in ref:
        return ref
    digest = pins.digest(ref)
    return f"{ref}@{digest}" if digest else ref


def _label_block(lock: Lock, base: str) -> list[str]:
    labels = labels_for(lock, base)
    lines = ["LABEL \\"]
    items = list(labels.items())
    for i, (key, value) in enumerate(items):
        end = " \\" if i < len(items) - 1 else ""
        lines.append(f'      {key}="{value}"{end}')
    return lines


def target_text(lock: Lock) -> str:
    """The lock's target in one line: ``sm_86,sm_89 driver 550.54.14 linux x86_64`` or ``cpu linux x86_64``."""
    target = lock.tool.target
    gpus = ",".join(str(g.get("sm", "")) for g in target.get("gpus", []) if isinstance(g, Mapping))
    parts = [gpus or "cpu"]
    if target.get("driver"):
        parts.append(f"driver {target['driver']}")
    parts += [str(target.get("os", "linux")), str(target.get("machine", "x86_64"))]
    return safe(" ".join(parts), "target")


def labels_for(lock: Lock, base: str) -> dict[str, str]:
    """OCI labels: what the image is and where it came from (target, profile, matrix digest, lock hash)."""
    check_lock(lock)
    pins = " ".join(safe(p, "pin") for p in lock.tool.pins)
    digest = lock.tool.matrix_digest
    matrix = digest if digest.startswith("sha256:") else f"sha256:{digest}"
    return {
        "org.opencontainers.image.title": lock.tool.name,
        "org.opencontainers.image.description": safe(
            f"envbuilder environment {lock.tool.name}: {lock.tool.profile} profile, Python {lock.tool.python}, "
            + (f"CUDA {lock.tool.cuda} ({lock.tool.variant})" if lock.tool.cuda else "CPU"),
            "description",
        ),
        "org.opencontainers.image.version": f"{tag_base(lock)}-{lock.short_hash}",
        # OCI's annotations: the base's name (its tag) and, where it is pinned, the digest it was built from.
        "org.opencontainers.image.base.name": check_image(base, "base image").split("@", 1)[0],
        **({"org.opencontainers.image.base.digest": base.rsplit("@", 1)[1]} if "@sha256:" in base else {}),
        "io.envbuilder.target": target_text(lock),
        "io.envbuilder.profile": lock.tool.profile,
        "io.envbuilder.python": lock.tool.python,
        "io.envbuilder.cuda": lock.tool.cuda or "none",
        "io.envbuilder.pins": pins,
        "io.envbuilder.matrix-digest": safe(matrix, "matrix digest"),
        "io.envbuilder.lock-digest": lock.tool.digest,
        "io.envbuilder.version": __version__,
    }


def _header(lock: Lock, base: Base, base_image: str) -> list[str]:
    tool = lock.tool
    what = f"CUDA {tool.cuda} ({tool.variant})" if tool.cuda else "CPU"
    lock_file = lock_file_name(tool.name)
    # No `# syntax=` line: it would pull the Dockerfile frontend from Docker Hub, which an air-gapped build
    # cannot reach. BuildKit's built-in frontend (Docker 23+) and podman/buildah read RUN --mount and --chmod.
    lines = [
        f"# Generated by envbuilder {__version__} from {lock_file} ({tool.digest[:19]}...); regenerate, do not edit.",
        f"# Environment {tool.name}: {tool.profile} profile, Python {tool.python}, {what}; target {target_text(lock)}.",
        "#",
        f"# Base image {base_image}:",
        *(f"#   {r}" for r in base.reason),
        "#",
        "# Build with BuildKit (Docker 23+) or podman; a CA bundle and index credentials enter only as build secrets:",
        f"#   docker buildx build --secret id=ca,src=ca.pem --secret id=netrc,src=.netrc -t {image_tag(lock)} .",
        "# Mirrors: --build-arg BASE_IMAGE=... UV_IMAGE=... UV_DEFAULT_INDEX=https://mirror/simple UV_INDEX=...",
        "# Run the full smoke test on a GPU host (the image's default command):",
        f"#   docker run --rm --gpus all {image_tag(lock)}",
    ]
    return lines


def _install_run(requirements: str, target: str | None) -> list[str]:
    """One uv install step: cache mount, wheelhouse bind mount, CA and netrc as optional secrets."""
    where = f" --target {target}" if target else ""
    return [
        "RUN --mount=type=cache,target=/root/.cache/uv \\",
        "    --mount=type=bind,source=wheels,target=/wheels \\",
        "    --mount=type=secret,id=ca \\",
        "    --mount=type=secret,id=netrc \\",
        "    if [ -f /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \\",
        "    && if [ -f /run/secrets/netrc ]; then export NETRC=/run/secrets/netrc; fi \\",
        f"    && uv pip install --python {VENV}/bin/python{where} --no-deps --require-hashes \\",
        f"       --find-links /wheels --requirement {requirements}",
    ]


def render_dockerfile(lock: Lock, *, options: Options | None = None) -> str:
    """The Dockerfile for ``lock`` (pure; deterministic for a given lock and options)."""
    options = options or Options()
    check_lock(lock)
    base = default_base(lock, options.pins)
    base_image = check_image(pin_image(options.base_image or base.image, options.pins), "base image")
    uv_image_ref = check_image(pin_image(options.uv_image or uv_image(options.pins), options.pins), "uv image")
    indexes = " ".join(extra_indexes(lock))
    gpu = lock.tool.cuda is not None
    site = f"{VENV}/lib/python{lock.tool.python}/site-packages"
    lines = [
        *_header(lock, base, base_image),
        "",
        f"ARG BASE_IMAGE={base_image}",
        f"ARG UV_IMAGE={uv_image_ref}",
        "",
        "FROM ${UV_IMAGE} AS uv",
        "",
        "# --- builder: uv and an empty venv with the lock's Python ------------------------------------",
        "FROM ${BASE_IMAGE} AS venv",
        "# Mirrors come in as build arguments (never with credentials: build arguments are recorded in the",
        "# image's history; credentials go in a netrc passed as the build secret 'netrc').",
        "ARG UV_DEFAULT_INDEX",
        f'ARG UV_INDEX="{indexes}"' if indexes else "ARG UV_INDEX",
        "# Every file is pinned by hash, so looking at every index cannot substitute a different file.",
        "ENV UV_INDEX_STRATEGY=unsafe-best-match \\",
        "    UV_LINK_MODE=copy \\",
        "    UV_COMPILE_BYTECODE=1 \\",
        f"    UV_PYTHON_INSTALL_DIR={PYTHONS} \\",
        "    UV_PYTHON_PREFERENCE=system \\",
        "    UV_NO_PROGRESS=1",
        "COPY --from=uv /uv /usr/local/bin/uv",
        "RUN --mount=type=cache,target=/root/.cache/uv \\",
        "    --mount=type=secret,id=ca \\",
        "    if [ -f /run/secrets/ca ]; then export SSL_CERT_FILE=/run/secrets/ca; fi \\",
        f"    && mkdir -p {PYTHONS} && uv venv --python {lock.tool.python} {VENV}",
        "",
        "# --- builder: torch and its CUDA stack, in a directory of their own ---------------------------",
        "# Changing any other pin (bitsandbytes, transformers, ...) leaves this stage and its layer cached.",
        "FROM venv AS cuda-stack",
        "COPY requirements/cuda-stack.txt /opt/envbuilder/requirements/cuda-stack.txt",
        *_install_run("/opt/envbuilder/requirements/cuda-stack.txt", STACK_DIR),
        "",
        "# --- builder: every other package of the lock, into the venv ---------------------------------",
        "FROM venv AS rest",
        "COPY requirements/rest.txt /opt/envbuilder/requirements/rest.txt",
        *_install_run("/opt/envbuilder/requirements/rest.txt", None),
        f'RUN echo "{STACK_DIR}" > {site}/envbuilder-cuda-stack.pth',
        "",
        "# --- runtime: the base image, a non-root user and only what runs ------------------------------",
        "FROM ${BASE_IMAGE} AS runtime",
        f"RUN useradd --uid {APP_UID} --user-group --create-home --shell /usr/sbin/nologin app",
        f"ENV PATH={VENV}/bin:$PATH \\",
        f"    VIRTUAL_ENV={VENV} \\",
        "    PYTHONDONTWRITEBYTECODE=1 \\",
        "    PYTHONUNBUFFERED=1" + (" \\" if gpu else ""),
    ]
    if gpu:
        lines += [
            "    NVIDIA_VISIBLE_DEVICES=all \\",
            "    NVIDIA_DRIVER_CAPABILITIES=compute,utility",
        ]
    lines += [
        f"COPY --from=cuda-stack {STACK_DIR} {STACK_DIR}",
        f"COPY --from=rest {PYTHONS} {PYTHONS}",
        f"COPY --from=rest {VENV} {VENV}",
        "# The guard: the lock's stack layers bind uv and pip inside the image (to move one, rebuild from a new",
        "# lock: `envbuilder upgrade` or `envbuilder lock`, then `envbuilder build`).",
        f"COPY --chmod=0644 requirements/{CONSTRAINTS_FILE} {VENV}/{CONSTRAINTS_FILE}",
        f"ENV UV_CONSTRAINT={VENV}/{CONSTRAINTS_FILE} \\",
        f"    PIP_CONSTRAINT={VENV}/{CONSTRAINTS_FILE}",
        "# --chmod: the app user reads these whatever the mode of the files in the build context.",
        f"COPY --chmod=0644 {lock_file_name(lock.tool.name)} /opt/envbuilder/",
        f"COPY --chmod=0755 smoke/ {SMOKE_DIR}/",
        f"USER {APP_UID}:{APP_UID}",
        "WORKDIR /home/app",
        "# Build-time smoke (envbuilder's smoke program, light stages): every locked version installed and",
        "# nothing else, torch's CUDA build, bitsandbytes' native library for that CUDA, the imports that need",
        "# no GPU.",
        f'RUN ["{VENV}/bin/python", "{SMOKE_DIR}/check.py", "--light", "--text", '
        f'"--expect", "{SMOKE_DIR}/expect.json"]',
        "# The full smoke test, meant for `docker run --gpus all`: one JSON document on stdout.",
        f'CMD ["{VENV}/bin/python", "{SMOKE_DIR}/check.py", "--profile", "{lock.tool.profile}", "--expect", '
        f'"{SMOKE_DIR}/expect.json"]',
        *_label_block(lock, base_image),
    ]
    return "\n".join(lines) + "\n"


def render_dockerignore() -> str:
    """Send only what the Dockerfile uses: never a stray .env, key or venv from the context directory."""
    return "\n".join(
        [
            "# Generated by envbuilder: the build uses only these files.",
            "*",
            "!Dockerfile",
            "!pylock.*.toml",
            "!requirements/",
            "!smoke/",
            "!wheels/",
            "",
        ]
    )


# --------------------------------------------------------------------------- the image's smoke expectation


def smoke_expect(lock: Lock, table: SmokeTable) -> Expect:
    """What the smoke program checks in the image: exactly the lock's versions, torch's CUDA, the bitsandbytes
    library for that CUDA, and the modules of the lock's pins (``matrices/smoke.toml``)."""
    check_lock(lock)
    return expect_for(
        {p.name: p.version for p in lock.packages},
        lock.tool.pins,
        cuda=lock.tool.cuda,
        bnb_library=lib_name(lock.tool.cuda, lock.tool.platform),
        exact=True,
        table=table,
    )


# --------------------------------------------------------------------------- the build context


def render_context(lock: Lock, lock_text: str, *, table: SmokeTable, options: Options | None = None) -> dict[str, str]:
    """Every file of a build context, by relative path (the wheelhouse files are added by the edge).

    ``smoke/check.py`` is envbuilder's smoke program (the one ``envbuilder smoke`` runs) and
    ``smoke/expect.json`` what it checks in this image, with the bounds of ``table``.
    """
    return {
        "Dockerfile": render_dockerfile(lock, options=options),
        ".dockerignore": render_dockerignore(),
        lock_file_name(lock.tool.name): lock_text,
        "requirements/cuda-stack.txt": hashed_lines(stack_packages(lock)),
        "requirements/rest.txt": hashed_lines(rest_packages(lock)),
        f"requirements/{CONSTRAINTS_FILE}": guard_constraints(lock),
        "smoke/check.py": program_text(),
        "smoke/expect.json": smoke_expect(lock, table).to_json(),
        "wheels/.keep": (
            "Wheelhouse files named by the lock go here (envbuilder build copies them from --find-links).\n"
        ),
    }


def guard_constraints(lock: Lock) -> str:
    """The image's constraints file: the same guard as a venv's (``model.guard``)."""
    pins = guarded_pins({p.name: p.version for p in lock.packages})
    return constraints_text(lock.tool.name, pins, lock_file=lock_file_name(lock.tool.name))


def build_args(lock: Lock, options: Options, *, wheelhouse_serves_all: bool = False) -> dict[str, str]:
    """Build arguments for a build from ``options``: mirrors and base images, never credentials."""
    args: dict[str, str] = {}
    if options.base_image:
        args["BASE_IMAGE"] = check_image(pin_image(options.base_image, options.pins), "base image")
    if options.uv_image and options.uv_image != uv_image(options.pins):
        args["UV_IMAGE"] = check_image(pin_image(options.uv_image, options.pins), "uv image")
    if options.index_url:
        args["UV_DEFAULT_INDEX"] = check_url(options.index_url, "index URL")
    if wheelhouse_serves_all and extra_indexes(lock):
        # The wheelhouse holds every file the extra indexes would serve: do not contact them.
        args["UV_INDEX"] = ""
    return args
