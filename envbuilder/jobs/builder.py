"""The main job, step by step: plan -> lock -> environment -> smoke. Used by the CLI and the benchmarks."""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from envbuilder.edge import uv
from envbuilder.edge._fs import private_tempdir, write_text_atomic
from envbuilder.edge.settings import Settings, cache_path
from envbuilder.edge.venv import SmokeOutcome
from envbuilder.model.errors import CheckFailed, CommandFailed, LockError, TargetError
from envbuilder.model.lock import Lock, finalize, parse_lock, requirements_text, with_smoke
from envbuilder.model.matrix import Matrix, Profile, TorchBuild
from envbuilder.model.plan import Plan

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "RESOLUTION_TTL_S",
    "Fit",
    "Progress",
    "check_extra_packages",
    "check_lock_name",
    "compile_indexes",
    "interpreter_for",
    "lock_fits_host",
    "lock_plan",
    "origins",
    "plan_lock",
    "require_fit",
    "resolution_cache",
    "resolution_problem",
    "reusable_resolution",
    "smoke_env",
    "write_user_lock",
]

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def check_extra_packages(profile: Profile | None, extra: Sequence[str]) -> tuple[str, ...]:
    """Profiles that clash never share an environment: refuse their packages, with the reason."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    forbidden = {canonicalize_name(n) for n in (profile.forbidden if profile else ())}
    for text in extra:
        try:
            name = canonicalize_name(Requirement(text).name)
        except InvalidRequirement:
            msg = f"extra package {text!r} is not a valid requirement"
            raise TargetError(msg, hint="write it like datasets==3.2.0 or 'trl>=0.12'") from None
        if name in forbidden and profile is not None:
            msg = f"{text!r} cannot go into a {profile.name} environment: {profile.why}"
            raise TargetError(msg, hint=f"create a separate environment for it (e.g. --profile {_profile_for(name)})")
    return tuple(extra)


def _profile_for(package: str) -> str:
    return "awq" if "awq" in package or "llmcompressor" in package else "gptq"


def lock_plan(
    plan: Plan,
    *,
    name: str,
    settings: Settings,
    out: Path,
    extra: Sequence[str] = (),
    progress: Progress = _quiet,
) -> Lock:
    """Resolve the plan's pins (plus extras) to a hashed PEP 751 lock at ``out`` (metadata only)."""
    lock, text = plan_lock(plan, name=name, settings=settings, out=out, extra=extra, progress=progress)
    write_text_atomic(out, text)
    return lock


def plan_lock(
    plan: Plan,
    *,
    name: str,
    settings: Settings,
    out: Path,
    extra: Sequence[str] = (),
    progress: Progress = _quiet,
) -> tuple[Lock, str]:
    """The lock ``lock_plan`` would write to ``out``, and its text; nothing is written (``create`` writes the
    user's lock only once the environment it describes is built, proven and in place)."""
    requirements = requirements_text(plan, extra)
    raw = _resolution(requirements, plan, settings, compile_indexes(plan), progress)
    text = finalize(raw, plan, name=name, extra=extra, pytorch_index=settings.pytorch_index)
    return parse_lock(text, out), text


# A resolution of exactly the same input (pins, Python, platform, sources, uv and its UV_* settings) is reused
# for a day: the pins are exact, so only the unpinned transitive dependencies could move, and a repeated create
# of one target (CI, a team) should not pay uv's index revalidation each time. --refresh (and lock --upgrade)
# re-resolve.
RESOLUTION_TTL_S = 24 * 3600


def compile_indexes(plan: Plan) -> list[str]:
    """The indexes ``uv pip compile`` is given: those the plan's pins come from (the PyTorch index, a mirror)."""
    return [p.index for p in plan.packages if p.index.startswith(("http://", "https://", "file://"))]


def resolution_cache(requirements: str, plan: Plan, settings: Settings, indexes: Sequence[str]) -> Path:
    """Where the resolution of exactly this input is cached (a PEP 751 name, like every lock)."""
    import hashlib
    import json

    uv_vars = uv.resolution_vars(uv.base_env(settings, indexes))  # UV_EXCLUDE_NEWER and the like move the unpinned
    sources = uv.source_args(settings, indexes)
    key_doc = [requirements, plan.python, plan.target.platform, sources, uv.find_uv(), uv_vars]
    key = hashlib.sha256(json.dumps(key_doc).encode()).hexdigest()[:32]
    return cache_path("resolutions", settings.cache_dir) / f"pylock.{key}.toml"


def reusable_resolution(plan: Plan, settings: Settings, extra: Sequence[str] = ()) -> Path | None:
    """The cached resolution ``plan_lock`` would reuse instead of running ``uv pip compile``, or None (read only)."""
    import time

    requirements = requirements_text(plan, extra)
    indexes = compile_indexes(plan)
    cached = resolution_cache(requirements, plan, settings, indexes)
    if settings.refresh or not cached.is_file() or time.time() - cached.stat().st_mtime >= RESOLUTION_TTL_S:
        return None
    text = _read_text(cached)
    if text is None or resolution_problem(text, plan=plan, settings=settings, indexes=indexes) is not None:
        return None
    return cached


def _resolution(requirements: str, plan: Plan, settings: Settings, indexes: Sequence[str], progress: Progress) -> str:
    """uv's pylock for ``requirements``: a cached one of the same input if it is still sound, else uv's.

    The cache is outside input like a lock a user hands over: one that is unreadable, empty, malformed, misses a
    pin or names a file outside the configured sources is discarded and resolved again (it never becomes a lock,
    never blames the user's lock, and never stays in the way for the rest of its 24 hours).
    """
    import time

    cached = resolution_cache(requirements, plan, settings, indexes)
    what = f"{len(plan.packages)} pins for {plan.target.platform}, Python {plan.python}"
    check = functools.partial(resolution_problem, plan=plan, settings=settings, indexes=indexes)
    if not settings.refresh and cached.is_file() and time.time() - cached.stat().st_mtime < RESOLUTION_TTL_S:
        age = (time.time() - cached.stat().st_mtime) / 60
        text = _read_text(cached)
        problem = check(text) if text is not None else "it is not UTF-8 text"
        if problem is None and text is not None:
            progress(f"locking {what}: reusing the resolution made {age:.0f} min ago (--refresh re-resolves)")
            return text
        progress(f"discarding the cached resolution {cached.name}: {problem}")
        with contextlib.suppress(OSError):
            cached.unlink()
    progress(f"locking {what} (uv pip compile)")
    with private_tempdir("lock") as tmp:
        req = tmp / "requirements.in"
        req.write_text(requirements, encoding="utf-8")
        raw = tmp / "pylock.toml"
        uv.compile_lock(
            req,
            raw,
            python_version=plan.python,
            platform=plan.target.platform,
            settings=settings,
            indexes=indexes,
            origins=origins(plan, requirements, settings),
        )
        text = _read_text(raw) or ""
    problem = check(text)
    if problem is not None:
        msg = f"uv pip compile wrote a lock envbuilder cannot use: {problem}"
        raise CommandFailed(msg, hint="report this with `uv --version`; try --refresh, or another uv")
    try:
        write_text_atomic(cached, text)
    except OSError as exc:
        # The cache only saves time: a read-only or full one must not stop a build (a CI runner's home can
        # be read-only). Say so once, so that a user who expected reuse knows why there is none.
        progress(
            f"note: cannot write the cache {settings.cache_dir} ({exc.strerror or exc}): this resolution will not "
            "be reused (set ENVBUILDER_CACHE to a writable directory)"
        )
    return text


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def resolution_problem(text: str, *, plan: Plan, settings: Settings, indexes: Sequence[str]) -> str | None:
    """Why uv's (or the cache's) pylock text cannot become a lock of ``plan``, or None.

    Checked like user input: a PEP 751 document (packaging's reader and envbuilder's field rules), every pin of
    the plan at its exact version, and every file served by a configured source (PyPI's file host, an index's
    host, a wheelhouse directory), so a poisoned cache cannot point a download elsewhere.
    """
    from packaging.utils import canonicalize_name

    from envbuilder.model.lock import check_pylock

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return f"not valid TOML ({exc})"
    if "tool" in doc:
        return "it carries a [tool] table, which uv does not write"
    try:
        _, packages = check_pylock(doc, "the resolution")
    except LockError as exc:
        return exc.message
    locked = {(canonicalize_name(p.name), p.version) for p in packages}
    for pin in plan.packages:
        if (canonicalize_name(pin.name), pin.version) not in locked:
            return f"it does not hold {pin.requirement}"
    allowed = _allowed_sources(settings, indexes)
    for p in packages:
        for f in p.files:
            if not f.url.startswith(allowed):
                host = f.url.split("://", 1)[-1].split("/", 1)[0]
                return f"{p.name} comes from {host}, which is not a configured source"
    return None


def _allowed_sources(settings: Settings, indexes: Sequence[str]) -> tuple[str, ...]:
    import urllib.parse

    hosts = ["https://files.pythonhosted.org/", "https://pypi.org/"]
    for url in [*indexes, settings.index_url or "", *settings.extra_index_urls, settings.pytorch_index or ""]:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme in {"http", "https"} and parts.netloc:
            hosts.append(f"{parts.scheme}://{parts.netloc}/")
        elif parts.scheme == "file":
            hosts.append(url.rstrip("/") + "/")
    hosts += [Path(d).absolute().as_uri().rstrip("/") + "/" for d in settings.find_links]
    return tuple(hosts)


def origins(plan: Plan, requirements: str, settings: Settings) -> dict[str, str]:
    """Where the plan takes each package from, in words, for the TIP of a failed resolution."""
    from packaging.requirements import InvalidRequirement, Requirement

    from envbuilder.model.types import PYPI, WHEELHOUSE

    default = f"the index {settings.index_url}" if settings.index_url else "PyPI"
    wheelhouse = "the wheelhouse " + (", ".join(settings.find_links) or "(none configured)")
    found = {p.name: {PYPI: default, WHEELHOUSE: wheelhouse}.get(p.index, p.index) for p in plan.packages}
    for line in requirements.splitlines():
        try:
            found.setdefault(Requirement(line).name, default)  # the user's extra packages
        except InvalidRequirement:
            continue
    return found


def interpreter_for(python: str, *, required: bool = True) -> str:
    """An installed CPython of that minor version (uv cannot download Pythons here)."""
    from envbuilder.edge.detect import find_pythons

    pythons = find_pythons()
    found = next((p for p in pythons if p.minor == python), None)
    if found is None and required:
        have = ", ".join(sorted({p.minor for p in pythons})) or "none"
        msg = f"Python {python} is not installed on this machine (installed: {have})"
        raise TargetError(
            msg, hint=f"install Python {python}, or choose one with --python (uv cannot download Pythons here)"
        )
    return found.path if found else ""


def smoke_env(python: Path, *, quick: bool = False, profile: str = "bnb") -> SmokeOutcome:
    """Run the smoke test inside the environment's own interpreter."""
    from envbuilder import smoke

    report = smoke.run_smoke(python, quick=quick, profile=profile)
    return SmokeOutcome(ok=report.ok, summary=report.summary(), record=report.record())


def write_user_lock(path: Path, text: str, outcome: SmokeOutcome | None, *, built: Path) -> None:
    """The user's lock, written last: after the environment it describes was built, proven and swapped in.

    Until then the old file stays byte for byte (an interrupted or failed build describes nothing). If this
    last write fails (a disk that filled up just now), the environment is in place and holds the same lock.
    """
    from envbuilder.model.errors import file_problem

    try:
        write_text_atomic(path, with_smoke(text, outcome.record) if outcome else text)
    except OSError as exc:
        problem = file_problem(exc, what=f"{built} was built, but its lock could not be written")
        problem.hint = f"{problem.hint}; the same lock is in {built / 'pylock.toml'}: copy it to {path}"
        raise problem from None


@dataclass(frozen=True, slots=True)
class Fit:
    ok: bool
    problems: tuple[str, ...]


def lock_fits_host(
    lock: Lock, matrix: Matrix, *, ccs: Sequence[str], driver: str | None, os_name: str, platform: str
) -> Fit:
    """Would this lock work here? Same platform, a GPU where it needs one, and the resolver's own driver and
    SASS rules (rules.cuda: the GPUs' first driver, native or minor-version compatibility) for its torch build."""
    from envbuilder.rules.cuda import check_arch, check_driver

    problems: list[str] = []
    if lock.tool.platform and lock.tool.platform != platform:
        problems.append(f"the lock is for {lock.tool.platform}, this host is {platform}")
    gpu_lock = bool(lock.tool.cuda) and lock.tool.profile != "cpu"  # a cpu-profile lock may hold PyPI's CUDA torch
    if gpu_lock and not ccs:
        problems.append(f"the lock needs an NVIDIA GPU (CUDA {lock.tool.cuda}); none was found here")
    torch = lock.package("torch")
    build = _torch_build(matrix, lock, platform)
    if torch is not None and build is not None and ccs:
        arch = check_arch(ccs, build.sass, build.ptx, f"torch {torch.version}", native=True)
        if not arch.ok:
            problems.append(f"torch {torch.version}: {arch.why}")
    if gpu_lock:
        drv = check_driver(matrix, lock.tool.cuda, driver=driver, os=os_name, ccs=ccs)
        if not drv.ok:
            problems.append(f"{drv.why} (the lock's CUDA is {lock.tool.cuda})")
    return Fit(not problems, tuple(problems))


def _torch_build(matrix: Matrix, lock: Lock, platform: str) -> TorchBuild | None:
    """The matrix's facts for the lock's torch build on ``platform`` (None: a release the matrix does not know)."""
    torch = lock.package("torch")
    release = matrix.torch_release(torch.version) if torch else None
    if release is None:
        return None
    builds = matrix.builds_of(release)
    return next((b for b in builds if b.variant == lock.tool.variant and platform in b.platforms), None)


def require_fit(fit: Fit, lock: Lock, *, force: bool) -> list[str]:
    if fit.ok:
        return []
    if force:
        return [f"--force: {p}" for p in fit.problems]
    msg = f"{lock.path.name} does not fit this host: " + "; ".join(fit.problems)
    raise CheckFailed(msg, hint="use a lock made for this host (`envbuilder lock`), or pass --force to build it anyway")


def check_lock_name(lock: Lock) -> None:
    if not lock.tool.name:
        msg = f"{lock.path}: the lock names no environment"
        raise LockError(msg, hint="regenerate it with `envbuilder lock`")
