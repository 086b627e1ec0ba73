"""The uv backend: found once, version-checked once, driven through ``_run.run`` with argv lists."""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from envbuilder.edge import _run
from envbuilder.edge.settings import Settings
from envbuilder.model.credentials import credential_for
from envbuilder.model.errors import CommandFailed, FileProblem, SourceError

__all__ = [
    "MIN_UV",
    "UV_PLATFORMS",
    "base_env",
    "compile_argv",
    "compile_lock",
    "find_uv",
    "resolution_vars",
    "source_args",
    "sync",
    "sync_argv",
    "uv_cause",
    "venv",
    "venv_argv",
]

MIN_UV = (0, 9, 0)
# uv's --python-platform names for the wheel platforms of the matrix.
UV_PLATFORMS = {
    "linux-x86_64": "x86_64-manylinux_2_28",
    "linux-aarch64": "aarch64-manylinux_2_28",
    "windows-x86_64": "x86_64-pc-windows-msvc",
    "windows-arm64": "aarch64-pc-windows-msvc",
    "macos-arm64": "aarch64-apple-darwin",
}
_NETWORK_HINTS = (
    "failed to fetch",
    "error sending request",
    "dns error",
    "connection refused",
    "timed out",
    "tcp connect",
)


@functools.lru_cache(maxsize=1)
def find_uv() -> str:
    """``$UV``, then the ``uv`` package's binary, then PATH; its version checked once."""
    candidates = [os.environ.get("UV")]
    try:
        from uv import find_uv_bin

        candidates.append(find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    candidates.append(_run.which("uv"))
    for path in filter(None, candidates):
        if Path(path).is_file():
            _check_version(path)
            return path
    msg = "uv not found"
    raise CommandFailed(msg, hint="pip install uv (envbuilder depends on it), or set UV=/path/to/uv")


def _check_version(path: str) -> None:
    out = _run.run([path, "--version"], timeout=30).stdout
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", out)
    if not match or tuple(int(x) for x in match.groups()) < MIN_UV:
        msg = f"{path}: uv {out.strip()} is older than {'.'.join(map(str, MIN_UV))}"
        raise CommandFailed(msg, hint="pip install -U uv")


def base_env(settings: Settings, indexes: Sequence[str] | None = ()) -> dict[str, str]:
    """The environment uv runs in: CA bundles, offline, no stray UV_* index settings, and the credentials of
    the indexes ``_index_flags`` names (uv's own mechanism: nothing secret is in its argv). UV_CONSTRAINT goes
    too: run from inside a guarded environment (activated), its guard must not bind the lock envbuilder installs
    or the resolution `upgrade` makes."""
    stray = ("UV_INDEX", "UV_EXTRA_INDEX", "UV_FIND_LINKS", "UV_CONSTRAINT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(stray)}
    if settings.ca_certs:
        env["SSL_CERT_FILE"] = settings.ca_certs[0]
        # uv's own roots plus SSL_CERT_FILE, not the system store: a user's UV_NATIVE_TLS/UV_SYSTEM_CERTS is
        # dropped rather than set to 0 (uv 0.13 warns on every run that UV_NATIVE_TLS is deprecated, and that
        # warning now reaches the terminal with uv's progress).
        env.pop("UV_NATIVE_TLS", None)
        env.pop("UV_SYSTEM_CERTS", None)
    if settings.offline:
        env["UV_OFFLINE"] = "1"
    if not settings.uv_output.startswith("terminal"):  # bars only where a person watches (sync on a terminal)
        env.setdefault("UV_NO_PROGRESS", "1")
    if settings.uv_output == "terminal-plain":
        env["NO_COLOR"] = "1"
    env.update(_index_flags(settings, indexes)[1])
    return env


# uv's variables that cannot change what it resolves: its output, its cache's place, and credentials (which
# must not reach a cache key either). Every other UV_* variable (UV_EXCLUDE_NEWER, UV_PRERELEASE,
# UV_RESOLUTION, UV_INDEX_STRATEGY, UV_DEFAULT_INDEX, ...) is part of the input: a variable uv adds later
# is counted too, which costs at most a cache miss.
_OUTPUT_ONLY = ("UV_NO_PROGRESS", "UV_CACHE_DIR", "UV_NO_CACHE", "UV_LINK_MODE", "UV_CONCURRENT_")
_SECRET_PARTS = ("USERNAME", "PASSWORD", "TOKEN", "KEYRING")


def resolution_vars(env: Mapping[str, str]) -> list[tuple[str, str]]:
    """The UV_* variables of ``env`` (``base_env``'s) that a cached resolution must have been made under."""
    return sorted(
        (k, v)
        for k, v in env.items()
        if k.startswith("UV_") and not k.startswith(_OUTPUT_ONLY) and not any(p in k for p in _SECRET_PARTS)
    )


class _Named:
    """Names the indexes a credential covers and collects the variables that carry their userinfo."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.env: dict[str, str] = {}

    def __call__(self, url: str) -> str:
        credential = credential_for(url, self.settings.credentials)
        if credential is None:
            return url
        name = f"envbuilder-{len(self.env) // 2 + 1}"
        key = name.upper().replace("-", "_")
        self.env[f"UV_INDEX_{key}_USERNAME"] = credential.username
        self.env[f"UV_INDEX_{key}_PASSWORD"] = credential.password
        return f"{name}={url}"


def _index_flags(settings: Settings, indexes: Sequence[str] | None) -> tuple[list[str], dict[str, str]]:
    """Index and wheelhouse flags, and the environment that carries their credentials.

    Plan indexes come first (they serve their variant builds), then the mirror. An index that a credential
    covers is named (``--index envbuilder-1=URL``) and its userinfo goes in ``UV_INDEX_ENVBUILDER_1_USERNAME``
    and ``_PASSWORD``. ``indexes=None`` (installing a pylock as it stands) passes only credentialed prefixes,
    so uv can authenticate downloads of the lock's URLs.
    """
    named = _Named(settings)
    args: list[str] = []
    if indexes is None:
        for credential in settings.credentials:
            args += ["--index", named(credential.prefix)]
    else:
        for url in indexes:
            args += ["--index", named(url)]
        if settings.index_url:
            args += ["--default-index", named(settings.index_url)]
        for url in settings.extra_index_urls:
            args += ["--index", named(url)]
        if settings.extra_index_urls:
            args += ["--index-strategy", "unsafe-best-match"]
        for d in settings.find_links:
            args += ["--find-links", d]
    if settings.offline:
        args.append("--offline")
    return args, named.env


def source_args(settings: Settings, indexes: Sequence[str] | None = ()) -> list[str]:
    """The index and wheelhouse flags for uv (credential-free: see ``_index_flags``)."""
    return _index_flags(settings, indexes)[0]


# uv's own markers in front of an explanation: "error:", "  cause:" (uv >= 0.9), "Caused by:" and "╰─▶" (older).
_UV_MARKER = re.compile(r"^(?:\s*(?:error:|cause:|caused by:|╰─▶|[│├└]))+\s*", re.IGNORECASE)


def uv_cause(output: str) -> str:
    """uv's own explanation of a failure, in one line: its "because" sentence when it has one (a resolution),
    the hash that did not match, else its error, the URL it could not fetch and the root cause."""
    raw = output.splitlines()
    first = next((i for i, ln in enumerate(raw) if ln.lstrip().lower().startswith("error:")), 0)
    lines = [_UV_MARKER.sub("", ln).strip() for ln in raw[first:]]
    lines = [ln for ln in lines if ln and not ln.lower().startswith(("warning:", "hint:", "help:"))]
    because = [ln for ln in lines if "because" in ln.lower()]
    if because:
        return " ".join(because)
    mismatch = next((ln for ln in lines if "hash mismatch" in ln.lower()), None)
    if mismatch is not None:
        digests = [ln for ln in lines if re.fullmatch(r"[a-z0-9]+:[0-9a-f]{32,}", ln)]
        return mismatch + (f" (expected {digests[0]}, got {digests[1]})" if len(digests) == 2 else "")
    fetch = next((ln for ln in lines if "://" in ln), None)
    picked = [ln for ln in (*lines[:1], fetch, *lines[-1:]) if ln]
    return "; ".join(dict.fromkeys(picked)) or "uv gave no reason"


def _named_source(cause: str, origins: Mapping[str, str]) -> tuple[str, str] | None:
    """The first package the cause names, with the source the plan takes it from."""
    text = cause.lower()
    found = []
    for name, source in origins.items():
        match = re.search(rf"(?<![\w.-]){re.escape(name.lower())}(?![\w-])", text)
        if match:
            found.append((match.start(), name, source))
    return (min(found)[1], min(found)[2]) if found else None


_DISK_ERRORS = {
    "no space left on device": "free some space on that disk (or build elsewhere: --path, --home), then run it again",
    "read-only file system": "choose a writable place (--path, --home)",
    "disk quota exceeded": "free some space within your quota, then run it again",
}


def _classify(
    exc: CommandFailed, what: str, origins: Mapping[str, str] | None = None
) -> CommandFailed | SourceError | FileProblem:
    text = exc.output.lower()
    for problem, hint in _DISK_ERRORS.items():
        if problem in text:
            line = next((ln.strip() for ln in exc.output.splitlines() if problem in ln.lower()), "")
            msg = f"{what}: {problem} ({line[-300:]})"
            return FileProblem(msg, hint=f"{hint}; nothing you had was changed")
    cause = uv_cause(exc.output)
    if any(h in text for h in _NETWORK_HINTS):
        msg = f"{what}: a package source could not be reached: {cause}"
        return SourceError(
            msg, hint="check the network, or use --index-url / --find-links / --offline with a wheelhouse"
        )
    if "hash mismatch" in text:
        msg = f"{what}: a file does not match the lock's hash: {cause}"
        hint = (
            "a wheelhouse or mirror holds another file under that name: replace it with the file the lock names "
            "(the lock records its sha256), or remove it"
        )
        return SourceError(msg, hint=hint)
    if "no solution found" in text or ("because" in text and "unsatisfiable" in text):
        msg = f"{what}: the sources cannot serve the plan's pins: {cause}"
        named = _named_source(cause, origins or {})
        hint = "add a wheelhouse (--find-links) or mirror that has these files"
        if named is not None:
            hint = (
                f"{named[0]} comes from {named[1]}, which does not serve the file the plan needs: add it there, "
                "or give a wheelhouse (--find-links DIR) or mirror that has it"
            )
        return SourceError(msg, hint=hint)
    return exc


def venv_argv(path: Path, python: str, *, uv: str) -> list[str]:
    """``uv venv``'s command line (``venv`` runs it; ``create --dry-run`` prints it)."""
    return [uv, "venv", "--quiet", "--relocatable", "--python", python, str(path)]


def venv(path: Path, python: str, settings: Settings) -> None:
    """A relocatable venv (safe to build in a temporary place and move into place)."""
    try:
        _run.run(venv_argv(path, python, uv=find_uv()), env=base_env(settings), timeout=120)
    except CommandFailed as exc:
        raise _classify(exc, "uv venv") from None


def compile_lock(
    requirements: Path,
    out: Path,
    *,
    python_version: str,
    platform: str,
    settings: Settings,
    indexes: Sequence[str] = (),
    origins: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> None:
    """Resolve exact pins into a PEP 751 lock with hashes (metadata only: nothing large is downloaded).

    ``origins`` names, for each package, the source the plan takes it from: a failure's TIP names it.
    """
    argv = compile_argv(
        requirements, out, python_version=python_version, platform=platform, settings=settings, indexes=indexes
    )
    try:
        _run.run(argv, env=base_env(settings, indexes), timeout=timeout)
    except CommandFailed as exc:
        raise _classify(exc, "uv pip compile", origins) from None


def compile_argv(
    requirements: Path,
    out: Path,
    *,
    python_version: str,
    platform: str,
    settings: Settings,
    indexes: Sequence[str] = (),
    uv: str | None = None,
) -> list[str]:
    """``uv pip compile``'s command line (``compile_lock`` runs it; ``create --dry-run`` prints it)."""
    return [
        uv or find_uv(),
        "pip",
        "compile",
        str(requirements),
        "--format",
        "pylock.toml",
        "--output-file",
        str(out),
        "--python-version",
        python_version,
        "--python-platform",
        UV_PLATFORMS[platform],
        "--generate-hashes",
        "--quiet",
        "--no-header",
        *source_args(settings, indexes),
    ]


def sync(
    python: Path,
    lock: Path,
    settings: Settings,
    *,
    indexes: Sequence[str] | None = None,
    stream: bool = False,
    timeout: float = 1800,
) -> None:
    """Install exactly what ``lock`` says, hashes verified by uv.

    ``lock`` is a pylock (its URLs are used as they stand) or, with ``indexes``, a hash-checked requirements
    file that the configured sources (the plan's indexes, mirror, wheelhouse) serve.
    """
    argv = sync_argv(python, lock, settings, indexes=indexes)
    try:
        _run.run(argv, env=base_env(settings, indexes), timeout=timeout, capture=not stream, relay=_relay(settings))
    except CommandFailed as exc:
        raise _classify(exc, "uv pip sync") from None


def sync_argv(
    python: Path, lock: Path, settings: Settings, *, indexes: Sequence[str] | None = None, uv: str | None = None
) -> list[str]:
    """``uv pip sync``'s command line (``sync`` runs it; ``create --dry-run`` prints it)."""
    return [uv or find_uv(), "pip", "sync", "--python", str(python), str(lock), *source_args(settings, indexes)]


def _write_stderr(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


def _relay(settings: Settings) -> _run.Relay | None:
    """How ``uv pip sync`` (gigabytes, minutes) is shown: its own bars on a terminal, its lines in a log, or
    nothing (``-q``, ``--json``: kept for the error message). Every password it was given is masked."""
    if settings.uv_output == "capture":
        return None
    mask = tuple(c.password for c in settings.credentials if c.password)
    if settings.uv_output == "lines":
        return _run.Relay(_write_stderr, tty=False, mask=mask, indent="  ")
    return _run.Relay(_write_stderr, tty=True, mask=mask)
