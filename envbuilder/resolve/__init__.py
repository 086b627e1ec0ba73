"""The resolver: (target, matrix, sources) -> Plan | NoPlan. Pure: no subprocess, network or files.

It enumerates torch builds, bitsandbytes releases and companions, applies hard constraints (driver runs the
CUDA build natively or by minor-version compatibility; SASS covers every GPU by the same-major rule, or PTX can
be JIT-compiled; the library bitsandbytes would actually load exists and covers every GPU; Python ranges;
platforms; companion minimums; what the sources can serve), then ranks what is left: proven on a real GPU,
confirmed facts, newer torch, fewer sources, newer bitsandbytes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from packaging.version import InvalidVersion

from envbuilder.model.matrix import (
    Advisory,
    BnbRelease,
    Companion,
    Evidence,
    Fact,
    Matrix,
    ProfileFormat,
    Quantizer,
    QuantLib,
    TorchBuild,
    TorchRelease,
)
from envbuilder.model.target import Target
from envbuilder.model.types import PYPI, WHEELHOUSE, is_index_url
from envbuilder.rules import bnb as rules_bnb
from envbuilder.rules import fit, formats
from envbuilder.rules._version import v as _v
from envbuilder.rules._version import within as _in
from envbuilder.rules.cuda import Verdict, check_arch, check_driver, driver_floors, forward_ok
from envbuilder.rules.fit import Need

__all__ = [
    "NoPlan",
    "Package",
    "Plan",
    "Rejection",
    "Sources",
    "advisories_of",
    "companion_needs",
    "index_variants",
    "nearest_alternatives",
    "resolve",
    "torch_version_for",
    "wheelhouse_serves",
]

# --------------------------------------------------------------------------- sources


@dataclass(frozen=True, slots=True, kw_only=True)
class Sources:
    """What the configured package sources can serve; gathered at the edge, read here.

    ``pytorch_index`` is the base of the PyTorch index or its mirror (variant index = base/variant), or None
    when it is not configured or unreachable. ``wheelhouse`` lists wheel file names found in --find-links dirs.
    ``pytorch_files`` is what the index's torch pages list, by variant (``cpu`` -> wheel file names of
    ``<base>/cpu/torch/``): a variant missing from it is a page that could not be read, whose builds are then the
    matrix's assumption and rank below listed ones; None means the pages were not asked for (the matrix decides).
    """

    pytorch_index: str | None  # required: the matrix's (Matrix.pytorch_index) or the user's mirror, or None
    pypi: bool = True
    wheelhouse: tuple[str, ...] = ()
    wheelhouse_dirs: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    pytorch_files: Mapping[str, tuple[str, ...]] | None = None

    def describe(self) -> str:
        parts = ["PyPI" if self.pypi else "no PyPI (offline)"]
        parts.append(f"PyTorch index {self.pytorch_index}" if self.pytorch_index else "no PyTorch index")
        if self.wheelhouse_dirs:
            parts.append(f"wheelhouse {', '.join(self.wheelhouse_dirs)} ({len(self.wheelhouse)} wheels)")
        return "; ".join(parts)


def _tag_fits(filename: str, name: str, version: str, python: str, platform: str) -> bool:
    """Does a wheel file serve ``name==version`` for CPython ``python`` on ``platform``?"""
    from packaging.utils import parse_wheel_filename  # brings packaging.tags: only when a wheelhouse is read

    try:
        wname, wversion, _, tags = parse_wheel_filename(filename)
    except (ValueError, InvalidVersion):
        return False
    if wname != name or str(wversion) != version:
        return False
    cp = "cp" + python.replace(".", "")
    system, machine = platform.split("-", 1)
    for tag in tags:
        py_ok = tag.interpreter in {cp, "py3"} or (tag.abi == "abi3" and tag.interpreter <= cp)
        plat = tag.platform
        plat_ok = plat == "any" or (
            machine in plat and (("linux" in plat) if system == "linux" else plat.startswith("win"))
        )
        if py_ok and plat_ok:
            return True
    return False


def wheelhouse_serves(sources: Sources, name: str, version: str, python: str, platform: str) -> bool:
    return any(_tag_fits(f, name, version, python, platform) for f in sources.wheelhouse)


def index_variants(target: Target, matrix: Matrix) -> tuple[str, ...]:
    """The torch variants a plan for ``target`` could take from the PyTorch index: the pages worth reading."""
    gpu = bool(target.gpus)
    found = [
        b.variant
        for rel in matrix.torch_releases
        if _in(target.torch_spec, rel.version)
        for b in matrix.builds_of(rel)
        if (b.variant != "cpu") == gpu and target.platform in b.platforms
    ]
    return tuple(sorted(set(found)))


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Package:
    """One exact pin and where it comes from: ``PYPI``, ``WHEELHOUSE`` (model.types) or an index URL."""

    name: str
    version: str
    index: str
    confirmed: bool = True

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "version": self.version, "index": self.index, "confirmed": self.confirmed}


@dataclass(frozen=True, slots=True)
class Rejection:
    candidate: str
    why: str

    def to_json(self) -> dict[str, str]:
        return {"candidate": self.candidate, "why": self.why}


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """The resolver's answer: exact pins, their sources, and every reason."""

    target: Target
    python: str
    cuda: str | None
    variant: str
    packages: tuple[Package, ...]
    reasons: tuple[str, ...]
    rejected: tuple[Rejection, ...]
    warnings: tuple[str, ...] = ()
    bnb_library: str | None = None
    proven: tuple[Evidence, ...] = ()
    confirmed: bool = True
    matrix_digest: str = ""
    extra_indexes: tuple[str, ...] = field(default=())
    formats: tuple[ProfileFormat, ...] = ()  # what the profile's environment loads and makes (profiles.toml)

    @property
    def profile(self) -> str:
        return self.target.profile

    def package(self, name: str) -> Package | None:
        return next((p for p in self.packages if p.name == name), None)

    def to_json(self) -> dict[str, object]:
        return {
            "schema": "envbuilder.plan/1",
            "ok": True,
            "profile": self.profile,
            "target": self.target.to_json(),
            "python": self.python,
            "cuda": self.cuda,
            "variant": self.variant,
            "packages": [p.to_json() for p in self.packages],
            "indexes": list(self.extra_indexes),
            "bnb_library": self.bnb_library,
            "confirmed": self.confirmed,
            "proven": [{"date": e.date, "gpu": e.gpu, "driver": e.driver, "source": e.source} for e in self.proven],
            "reasons": list(self.reasons),
            "warnings": list(self.warnings),
            "rejected": [r.to_json() for r in self.rejected],
            "formats": [formats.format_json(f) for f in self.formats],
            "matrix_digest": self.matrix_digest,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class NoPlan:
    """No combination can work: the constraints that ruled everything out, and the nearest alternatives."""

    target: Target
    reasons: tuple[str, ...]
    rejected: tuple[Rejection, ...]
    nearest: tuple[str, ...] = ()
    matrix_digest: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "schema": "envbuilder.plan/1",
            "ok": False,
            "profile": self.target.profile,
            "target": self.target.to_json(),
            "python": None,
            "cuda": None,
            "packages": [],
            "reasons": list(self.reasons),
            "rejected": [r.to_json() for r in self.rejected],
            "nearest": list(self.nearest),
            "matrix_digest": self.matrix_digest,
        }


# --------------------------------------------------------------------------- driver and arch rules


def _driver(matrix: Matrix, target: Target, build: TorchBuild) -> Verdict:
    """The driver rule (rules.cuda) for a torch build on the target, with cuda-compat where opted in."""
    forward = bool(
        target.forward_compat
        and target.driver
        and build.cuda
        and forward_ok(
            matrix,
            build.cuda,
            driver=target.driver,
            platform=target.platform,
            segments=[g.segment for g in target.gpus],
        )
    )
    return check_driver(matrix, build.cuda, driver=target.driver, os=target.os, ccs=target.ccs, forward=forward)


# --------------------------------------------------------------------------- candidates


@dataclass(frozen=True, slots=True)
class _TorchCandidate:
    release: TorchRelease
    build: TorchBuild
    python: str
    index: str
    native: bool
    reasons: tuple[str, ...]
    warnings: tuple[str, ...]
    target_has_gpu: bool = True
    listed: bool = True  # its source lists the file (False: an index page that could not be read)

    @property
    def label(self) -> str:
        return f"torch {self.release.version}+{self.build.variant}"


def torch_version_for(release: TorchRelease, build: TorchBuild, index: str) -> str:
    """The version string to pin: PyPI's default build carries no local tag; index builds do (2.11.0+cu126)."""
    return release.version if index == PYPI else f"{release.version}+{build.variant}"


def _torch_source(
    matrix: Matrix, sources: Sources, target: Target, rel: TorchRelease, build: TorchBuild, python: str
) -> tuple[str | None, str, bool]:
    """Where a torch build can come from, or (None, why not); and whether that source's listing shows it.

    The PyTorch index (or its mirror) serves what its torch page lists, as a wheelhouse serves its files: a
    mirror holding only 2.13.0+cpu gets a 2.13.0+cpu plan, not a failed compile for 2.14.1+cpu.
    """
    if sources.pypi and rel.pypi.get(target.platform) == build.variant:
        return PYPI, "", True
    local = f"{rel.version}+{build.variant}"
    if wheelhouse_serves(sources, "torch", local, python, target.platform):
        return WHEELHOUSE, "", True
    if sources.pytorch_index:
        index = f"{sources.pytorch_index}/{build.variant}"
        listing = None if sources.pytorch_files is None else sources.pytorch_files.get(build.variant)
        if listing is None:  # not asked for (the matrix decides) or could not be read (ranked lower)
            return index, "", sources.pytorch_files is None
        if any(_tag_fits(f, "torch", local, python, target.platform) for f in listing):
            return index, "", True
        return None, f"{index}/torch/ lists no wheel of it for Python {python} on {target.platform}", True
    why = "not served by the configured sources (the PyTorch index is not configured or unreachable"
    why += ", and PyPI's build of this release is " + (rel.pypi.get(target.platform) or "absent") + ")"
    return None, why, True


def _torch_candidates(
    matrix: Matrix, target: Target, sources: Sources, python: str
) -> tuple[list[_TorchCandidate], list[Rejection]]:
    gpu = bool(target.gpus)
    found: list[_TorchCandidate] = []
    rejected: list[Rejection] = []
    spec_skipped = 0
    for rel in sorted(matrix.torch_releases, key=lambda r: _v(r.version), reverse=True):
        if not _in(target.torch_spec, rel.version):
            spec_skipped += 1
            continue
        if not _in(rel.python, python):
            rejected.append(Rejection(f"torch {rel.version}", f"no wheels for Python {python} (needs {rel.python})"))
            continue
        builds = [
            b
            for b in matrix.torch_builds
            if _in(b.torch, rel.version)
            if (b.variant == "cpu") != gpu or _pypi_cpu_fallback(rel, b, target, sources)
        ]
        here = [b for b in builds if target.platform in b.platforms]
        for variant in dict.fromkeys(
            b.variant for b in builds if b not in here and not any(h.variant == b.variant for h in here)
        ):
            rejected.append(Rejection(f"torch {rel.version}+{variant}", f"no {variant} build for {target.platform}"))
        for build in here:
            label = f"torch {rel.version}+{build.variant}"
            cand, why = _check_torch(matrix, target, sources, rel, build, python)
            if cand is None:
                rejected.append(Rejection(label, why))
            else:
                found.append(cand)
    if spec_skipped:
        rejected.append(Rejection("torch", f"{spec_skipped} release(s) outside --torch {target.torch_spec}"))
    return found, rejected


def _pypi_cpu_fallback(rel: TorchRelease, build: TorchBuild, target: Target, sources: Sources) -> bool:
    """For the cpu profile, PyPI's own (CUDA) build also runs on the CPU: a last resort, ranked below CPU builds."""
    return not target.gpus and sources.pypi and rel.pypi.get(target.platform) == build.variant


def _check_torch(
    matrix: Matrix, target: Target, sources: Sources, rel: TorchRelease, build: TorchBuild, python: str
) -> tuple[_TorchCandidate | None, str]:
    if target.platform not in build.platforms:
        return None, f"no {build.variant} build for {target.platform}"
    drv = _driver(matrix, target, build)
    if not drv.ok:
        return None, drv.why
    arch = check_arch(target.ccs, build.sass, build.ptx, f"torch {rel.version}+{build.variant}", native=drv.native)
    if not arch.ok:
        return None, arch.why
    index, why, listed = _torch_source(matrix, sources, target, rel, build, python)
    if index is None:
        return None, why
    reasons = tuple(r for r in (drv.why, arch.why) if r)
    warnings = tuple(w for w in (drv.warn, arch.warn) if w)
    if not listed:
        warnings += (f"{index}/torch/ could not be read: that it holds torch {rel.version}+{build.variant} is assumed",)
    if target.gpus and target.driver is None and build.cuda:
        native_min, mvc_min = driver_floors(matrix, build.cuda, target.os)
        warnings += (f"driver not given: CUDA {build.cuda} needs >= {mvc_min or native_min} ({native_min} natively)",)
    return _TorchCandidate(rel, build, python, index, drv.native, reasons, warnings, bool(target.gpus), listed), ""


def _pick_bnb(
    matrix: Matrix, target: Target, sources: Sources, torch: _TorchCandidate
) -> tuple[BnbRelease | None, str | None, str, list[Rejection], str]:
    """rules.bnb.pick for this torch build: (release, library cuda or "cpu", note, rejections, the first
    rejection that is not the matrix's advice against a release, for the headline)."""
    if target.gpus and torch.build.cuda is None:  # never a candidate with a GPU target; keep mypy sure
        return None, None, "", [Rejection(torch.label, "a CPU build of torch cannot drive the GPU")], ""

    def served(rel: BnbRelease) -> bool:
        return sources.pypi or wheelhouse_serves(sources, "bitsandbytes", rel.version, torch.python, target.platform)

    got = rules_bnb.pick(
        matrix,
        spec=target.bnb_spec,
        torch=torch.release.version,
        torch_cuda=torch.build.cuda if target.gpus else None,
        python=torch.python,
        platform=target.platform,
        ccs=target.ccs,
        served=served,
        torch_label=torch.label,
    )
    rejected = [Rejection(f"bitsandbytes {r.release.version}", r.why) for r in got.refused]
    first = next((f"bitsandbytes {r.release.version}: {r.why}" for r in got.refused if not r.avoided), "")
    return got.release, got.fit.lib, got.fit.note, rejected, first


_NEEDS: dict[tuple[int, tuple[tuple[str, str], ...]], tuple[object, list[Need]]] = {}


def companion_needs(c: Companion | QuantLib, env: Mapping[str, str]) -> list[Need]:
    """What a pin requires of the others: its declared requirements (with the extras the profiles rely on) and
    the constraints the matrix adds (an import-time floor, a tested cap: the row's source says why)."""
    key = (id(c), tuple(sorted(env.items())))
    hit = _NEEDS.get(key)
    if hit is None or hit[0] is not c:
        hit = (c, _companion_needs(c, env))  # the row is kept with its answer, so its id cannot be reused
        _NEEDS[key] = hit
    return list(hit[1])


def _companion_needs(c: Companion | QuantLib, env: Mapping[str, str]) -> list[Need]:
    owner = f"{c.name} {c.version}"
    needs = fit.declared(owner, c.requires_dist or (), c.extras, env)
    extra = dict(c.requires)
    if c.torch is not None:
        extra["torch"] = c.torch
    return [*needs, *fit.added(owner, extra, "")]


@dataclass
class _Picking:
    """The pins chosen so far for one torch build and what they require of the rest."""

    pins: dict[str, str]
    needs: list[Need]
    env: Mapping[str, str]


def _pick_companions(
    matrix: Matrix,
    target: Target,
    torch: _TorchCandidate,
    names: Sequence[str],
    picking: _Picking,
    prefer: Mapping[str, str] | None = None,
) -> tuple[list[Companion], list[Rejection]]:
    """Newest first, each companion whose requirements hold against the pins so far, and theirs against it;
    ``prefer`` ({"transformers": "5.17"}) tries that minor first (a proven combination)."""
    chosen: list[Companion] = []
    rejected: list[Rejection] = []
    for name in names:
        # A release whose requirements were not read is unconfirmed: it ranks below every confirmed one.
        rows = sorted(
            (c for c in matrix.companions if c.name == name), key=lambda c: (c.confirmed, _v(c.version)), reverse=True
        )
        wanted = (prefer or {}).get(name)
        if wanted:
            rows = [c for c in rows if _minor(c.version) == wanted] + [c for c in rows if _minor(c.version) != wanted]
        pick = None
        for c in rows:
            why = _companion_misfit(c, target, torch, picking)
            if why:
                rejected.append(Rejection(f"{c.name} {c.version}", why))
                continue
            pick = c
            break
        if pick is None:
            rejected.append(Rejection(name, "no version in the matrix fits"))
            return [], rejected
        picking.pins[pick.name] = pick.version
        picking.needs += companion_needs(pick, picking.env)
        chosen.append(pick)
    return chosen, rejected


def _minor(version: str) -> str:
    v = _v(version)
    return f"{v.major}.{v.minor}"


def _companion_misfit(c: Companion, target: Target, torch: _TorchCandidate, picking: _Picking) -> str:
    if c.profiles and target.profile not in c.profiles:
        return f"not for the {target.profile} profile"
    if not _in(c.python, torch.python):
        return f"needs Python {c.python}"
    own = fit.first_unmet(companion_needs(c, picking.env), picking.pins)
    if own is not None:
        return own.text().removeprefix(f"{own.owner} ")
    theirs = fit.first_unmet(picking.needs, {c.name: c.version})
    if theirs is not None:
        return f"{theirs.text()}, not {c.version}"
    return ""


_STATUS_ORDER = {"active": 0, "deprecated": 1, "eol": 2}


def _quant_rows(matrix: Matrix, target: Target, name: str | None = None) -> list[QuantLib]:
    """The profile's own GPTQ/AWQ library rows (``name`` None), or every row of ``name``, less those the profile
    forbids (autoawq in awq: transformers 4.x only): active, newest first."""
    profile = matrix.profile(target.profile)
    forbidden = set(profile.forbidden) if profile else set()
    rows = (
        q
        for q in matrix.quant
        if (q.profile == target.profile if name is None else q.name == name) and q.name not in forbidden
    )
    return sorted(rows, key=lambda q: (_STATUS_ORDER.get(q.status, 3), *(-p for p in _v(q.version).release[:3])))


def _quant_misfit(q: QuantLib, target: Target, torch: _TorchCandidate, pins: Mapping[str, str]) -> str:
    env = fit.marker_environment(target.platform, torch.python)
    label = f"{q.name} {q.version}"
    unmet = fit.first_unmet(companion_needs(q, env), pins)
    if q.platforms and target.platform not in q.platforms:
        return f"no support for {target.platform}"
    if q.min_cc and any(_v(cc) < _v(q.min_cc) for cc in target.ccs):
        # Before the torch/Python checks: no other torch fixes it, so this is the reason to report.
        return f"its kernels need sm_{q.min_cc.replace('.', '')} or newer"
    if not _in(q.python, torch.python):
        return f"needs Python {q.python}"
    if unmet is not None:
        return unmet.text().removeprefix(f"{label} ")
    return ""


def _pick_quant(matrix: Matrix, target: Target, torch: _TorchCandidate) -> tuple[QuantLib | None, list[Rejection]]:
    rejected: list[Rejection] = []
    for q in _quant_rows(matrix, target):
        why = _quant_misfit(q, target, torch, {"torch": torch.release.version})
        if not why:
            return q, rejected
        rejected.append(Rejection(f"{q.name} {q.version}", why))
    return None, rejected


# --------------------------------------------------------------------------- assembling a plan


@dataclass(frozen=True, slots=True)
class _Option:
    torch: _TorchCandidate
    bnb: BnbRelease | None
    bnb_lib: str | None
    bnb_note: str
    quant: QuantLib | None
    companions: tuple[Companion, ...]
    proven: tuple[Evidence, ...]
    facts: tuple[Fact, ...]
    rejected: tuple[Rejection, ...]
    advisories: tuple[Advisory, ...] = ()
    pinned: tuple[tuple[str, str], ...] = ()  # exact pins the quant library's requirements add (numpy, c-t)
    others: tuple[QuantLib, ...] = ()  # the profile's other GPTQ/AWQ libraries (gptqmodel beside llmcompressor)
    unread: tuple[str, ...] = ()  # formats the profile loads whose transformers quantizer was not read

    @property
    def confirmed(self) -> bool:
        return not self.unread and all(f.confirmed for f in self.facts)

    def rank(self) -> tuple[object, ...]:
        """The one ranking order (README "Ranking"; DESIGN.md): among plans that work, prefer no known advisory,
        then proof on matching hardware, then confirmed facts, then the newest torch the GPU's kernels allow
        among the reachable sources, then fewer indexes, then native driver support over minor-version
        compatibility, then the newer bitsandbytes."""
        t = self.torch
        cuda = _v(t.build.cuda) if t.build.cuda else _v("0")
        bnb = _v(self.bnb.version) if self.bnb else _v("0")
        # A GPU target only ever gets GPU builds; for the cpu profile a real CPU build beats PyPI's CUDA build.
        right_kind = bool(self.torch.build.cuda) == bool(self.torch.target_has_gpu)
        return (
            right_kind,
            # Fewer known advisories: none beats one (a torch < 2.10) beats two (a torch < 2.6).
            -len(self.advisories),
            bool(self.proven),
            self.confirmed,
            # Confirmed too: a file the source's own listing shows beats one the matrix only assumes it holds.
            t.listed,
            _v(t.release.version),
            # Issue 2: a release whose own PyPI build is the CUDA variant needed needs no extra index.
            t.index == PYPI,
            t.native,
            bnb,
            cuda,
        )


def advisories_of(matrix: Matrix, pins: Mapping[str, str]) -> tuple[Advisory, ...]:
    """The known advisories against any pin (versions without their local tag: 2.5.1+cu118 is 2.5.1)."""
    return tuple(
        a
        for a in matrix.advisories
        if a.package in pins and a.affected.contains(pins[a.package].split("+", 1)[0], prereleases=True)
    )


def _proven(
    matrix: Matrix,
    target: Target,
    torch: _TorchCandidate,
    bnb: BnbRelease | None,
    quant: QuantLib | None = None,
    companions: Sequence[Companion] = (),
    *,
    ignore_transformers: bool = False,
) -> tuple[Evidence, ...]:
    """Passing smoke tests of this very stack on matching hardware: the same compute capability, CPU
    architecture, OS, Python minor, torch build (version and CUDA variant), bitsandbytes (or GPTQ/AWQ
    library) and transformers minor. A bitsandbytes run proves nothing about a gptq environment, and back."""
    label = f"{torch.release.version}+{torch.build.variant}"
    stack_bnb = bnb.version if bnb is not None else None
    stack_quant = f"{quant.name} {quant.version}" if quant is not None else None
    transformers = next((_minor(c.version) for c in companions if c.name == "transformers"), None)
    machine = target.platform.split("-", 1)[1]
    return tuple(
        e
        for e in matrix.evidence
        if e.result == "pass"
        and e.torch == label
        and e.os == target.os
        and e.machine == machine
        and e.python == torch.python
        and e.bitsandbytes == stack_bnb
        and e.quant == stack_quant
        and (ignore_transformers or (e.transformers is not None and _minor(e.transformers) == transformers))
        and target.ccs
        and all(cc == e.cc for cc in target.ccs)
    )


def _failed(matrix: Matrix, target: Target, torch: _TorchCandidate, bnb: BnbRelease | None) -> Evidence | None:
    """A real GPU run that failed with exactly this combination on one of the target's architectures."""
    label = f"{torch.release.version}+{torch.build.variant}"
    return next(
        (
            e
            for e in matrix.evidence
            if e.result == "fail"
            and e.torch == label
            and bnb is not None
            and e.bitsandbytes == bnb.version
            and e.cc in target.ccs
        ),
        None,
    )


def _options(
    matrix: Matrix, target: Target, sources: Sources, torch: _TorchCandidate
) -> tuple[list[_Option], list[Rejection]]:
    """The option for one torch build, and a second one with the companions a matching smoke test ran
    (its transformers minor) when that is not what the newest-first pick chose."""
    option, rejected = _option(matrix, target, sources, torch)
    if option is None or option.proven:
        return ([option] if option else []), rejected
    runs = _proven(matrix, target, torch, option.bnb, option.quant, ignore_transformers=True)
    minors = dict.fromkeys(_minor(e.transformers) for e in runs if e.transformers)
    out = [option]
    for minor in minors:
        alt, _ = _option(matrix, target, sources, torch, prefer={"transformers": minor})
        if alt is not None and alt.proven:
            out.append(alt)
    return out, rejected


def _with_quant(
    matrix: Matrix, target: Target, torch: _TorchCandidate, picking: _Picking, names: Sequence[str]
) -> tuple[QuantLib | None, dict[str, str], list[Rejection]]:
    """The GPTQ/AWQ library of a gptq/awq profile, added to the pins with what it pins exactly (numpy, ...)."""
    if target.profile not in {"gptq", "awq"}:
        return None, {}, []
    quant, rejected = _pick_quant(matrix, target, torch)
    if quant is None:
        return None, {}, rejected
    quant_needs = companion_needs(quant, picking.env)
    pinned = {k: v for k, v in fit.exact_pins(quant_needs).items() if k not in {"torch", *names}}
    picking.pins.update({quant.name: quant.version, **pinned})
    picking.needs += quant_needs
    return quant, pinned, rejected


def _with_other_quants(
    matrix: Matrix,
    target: Target,
    torch: _TorchCandidate,
    picking: _Picking,
    names: Sequence[str],
    companion_names: Sequence[str],
    prefer: Mapping[str, str] | None,
) -> tuple[list[QuantLib] | None, list[Companion], list[Rejection]]:
    """The profile's other GPTQ/AWQ libraries (those in ``packages`` whose rows belong to another profile:
    gptqmodel in the awq profile, which loads quant_method awq), then the companions.

    Each such library takes its newest release whose requirements hold against the pins so far and for which
    the companions still fit (gptqmodel 7.7.0's transformers >= 5.20.2 cannot join llmcompressor's <= 5.17.0),
    so its version follows from the first library's caps. None: no release of one of them fits."""
    own = {q.name for q in matrix.quant if q.profile == target.profile}
    wanted = [n for n in names if n not in own and any(q.name == n for q in matrix.quant)]
    if not wanted:
        companions, picked = _pick_companions(matrix, target, torch, companion_names, picking, prefer)
        return [], companions, picked
    rejected: list[Rejection] = []
    name, rest = wanted[0], wanted[1:]
    for q in _quant_rows(matrix, target, name):
        why = _quant_misfit(q, target, torch, picking.pins) or _their_misfit(picking, q)
        if why:
            rejected.append(Rejection(f"{q.name} {q.version}", why))
            continue
        trial = _Picking({**picking.pins, q.name: q.version}, [*picking.needs], picking.env)
        needs = companion_needs(q, picking.env)
        trial.pins.update({k: v for k, v in fit.exact_pins(needs).items() if k not in {"torch", *names}})
        trial.needs += needs
        sub = _with_other_quants(matrix, target, torch, trial, rest, companion_names, prefer) if rest else None
        others, companions, rej = sub or ([], *_pick_companions(matrix, target, torch, companion_names, trial, prefer))
        if others is not None and len(companions) == len(companion_names):
            picking.pins.clear()
            picking.pins.update(trial.pins)
            picking.needs[:] = trial.needs
            return [q, *others], companions, rejected
        first = next((r for r in rej if r.candidate != name), None)
        rejected.append(
            Rejection(
                f"{q.name} {q.version}",
                f"no companion versions fit beside it ({first.candidate}: {first.why})"
                if first
                else "no companion versions fit beside it",
            )
        )
    detail = next((f" ({r.candidate}: {r.why})" for r in rejected), "")
    rejected.append(
        Rejection(torch.label, f"no {name} release fits beside the {target.profile} profile's pins{detail}")
    )
    return None, [], rejected


def _their_misfit(picking: _Picking, q: QuantLib) -> str:
    theirs = fit.first_unmet(picking.needs, {q.name: q.version})
    return f"{theirs.text()}, not {q.version}" if theirs is not None else ""


def _loaders(
    matrix: Matrix, target: Target, pins: Mapping[str, str]
) -> tuple[tuple[Quantizer, ...], tuple[str, ...], str]:
    """What transformers' quantizer demands for each format the profile says it loads, checked like any other
    requirement: (the quantizer rows that hold, the formats whose quantizer was not read for this transformers,
    why the pins cannot load one: "" when they can)."""
    profile = matrix.profile(target.profile)
    transformers = pins.get("transformers")
    if profile is None or transformers is None:
        return (), (), ""
    rows: list[Quantizer] = []
    unread: list[str] = []
    for fmt in formats.summary(profile).loads:
        row = formats.quantizer_for(matrix, fmt, transformers)
        if row is None:
            unread.append(fmt)
            continue
        unmet = formats.loader_unmet(row, pins)
        if unmet:
            label = formats.FORMAT_LABELS.get(fmt, fmt)
            return (
                (),
                (),
                (
                    f"the {profile.name} profile loads {label} checkpoints, but transformers {transformers}'s "
                    f"{fmt} quantizer needs what the pins lack: {'; '.join(unmet)} ({row.origin})"
                ),
            )
        rows.append(row)
    return tuple(rows), tuple(unread), ""


def _rest(
    matrix: Matrix,
    target: Target,
    torch: _TorchCandidate,
    picking: _Picking,
    pinned: dict[str, str],
    prefer: Mapping[str, str] | None,
) -> tuple[
    tuple[list[QuantLib], list[Companion], list[Companion], tuple[Quantizer, ...], tuple[str, ...]] | None,
    list[Rejection],
]:
    """After torch, bitsandbytes and the profile's own GPTQ/AWQ library: its other libraries, the companions,
    what those pin exactly, and the loaders of each format the profile loads; None with the reason otherwise."""
    profile = matrix.profile(target.profile)
    names = profile.packages if profile else ()
    env = picking.env
    companion_names = [
        n for n in names if n not in {"torch", "bitsandbytes"} and any(c.name == n for c in matrix.companions)
    ]
    others, companions, rejected = _with_other_quants(matrix, target, torch, picking, names, companion_names, prefer)
    if others is None:
        return None, rejected
    if len(companions) != len(companion_names):
        detail = next((f" ({r.candidate}: {r.why})" for r in rejected if r.candidate != "transformers"), "")
        return None, [*rejected, Rejection(torch.label, f"no companion versions fit it{detail}")]
    for q in others:
        pinned.update({k: v for k, v in fit.exact_pins(companion_needs(q, env)).items() if k not in {"torch", *names}})
    # Packages the quantization library pins exactly (compressed-tensors) have requirements of their own.
    exact = [c for c in matrix.companions if pinned.get(c.name) == c.version]
    unmet = fit.first_unmet([n for c in exact for n in companion_needs(c, env)], picking.pins)
    if unmet is not None:
        return None, [*rejected, Rejection(torch.label, f"no companion versions fit it ({unmet.text()})")]
    loaders, unread, why = _loaders(matrix, target, picking.pins)
    if why:
        return None, [*rejected, Rejection(torch.label, why)]
    return (others, companions, exact, loaders, unread), rejected


def _option(
    matrix: Matrix, target: Target, sources: Sources, torch: _TorchCandidate, prefer: Mapping[str, str] | None = None
) -> tuple[_Option | None, list[Rejection]]:
    profile = matrix.profile(target.profile)
    names = profile.packages if profile else ()
    bnb = bnb_lib = None
    note = ""
    rejected: list[Rejection] = []
    if "bitsandbytes" in names:
        bnb, bnb_lib, note, rej, first = _pick_bnb(matrix, target, sources, torch)
        rejected += rej
        if bnb is None:
            detail = f" ({first})" if first else ""
            return None, [*rejected, Rejection(torch.label, f"no bitsandbytes release works with it{detail}")]
    env = fit.marker_environment(target.platform, torch.python)
    picking = _Picking({"torch": torch.release.version}, [], env)
    if bnb is not None:
        picking.pins["bitsandbytes"] = bnb.version
    quant, pinned, rej = _with_quant(matrix, target, torch, picking, names)
    rejected += rej
    if target.profile in {"gptq", "awq"} and quant is None:
        # Say why, as for bitsandbytes: "its kernels need sm_75 or newer" is the answer a Pascal user needs.
        detail = f" ({rej[0].candidate}: {rej[0].why})" if rej else ""
        return None, [*rejected, Rejection(torch.label, f"no {target.profile} library works with it{detail}")]
    rest, rej = _rest(matrix, target, torch, picking, pinned, prefer)
    rejected += rej
    if rest is None:
        return None, rejected  # its last rejection is the torch build's verdict
    others, companions, exact, loaders, unread = rest
    facts: tuple[Fact, ...] = (torch.release, torch.build, *companions, *exact, *loaders)
    if bnb is not None:
        facts += (bnb,)
        gpu_lib = bnb_lib if bnb_lib != rules_bnb.CPU else None
        row = rules_bnb.sass_row(matrix, bnb, gpu_lib, target.platform) if gpu_lib else None
        facts += (row,) if row else ()
    if quant is not None:
        facts += (quant, *others)
    failed = _failed(matrix, target, torch, bnb)
    if failed is not None:
        return None, [
            *rejected,
            Rejection(torch.label, f"failed a smoke test on {failed.gpu} on {failed.date}: {failed.detail}"),
        ]
    proven = _proven(matrix, target, torch, bnb, quant, companions)
    advisories = advisories_of(matrix, picking.pins)
    return _Option(
        torch, bnb, bnb_lib, note, quant, tuple(companions), proven, facts, tuple(rejected), advisories,
        tuple(sorted(pinned.items())), tuple(others), unread,
    ), []  # fmt: skip


def _bnb_library(option: _Option, target: Target) -> str | None:
    """The file name of the library the plan's bitsandbytes loads (None: no bitsandbytes)."""
    if option.bnb is None:
        return None
    return rules_bnb.lib_name(None if option.bnb_lib == rules_bnb.CPU else option.bnb_lib, target.platform)


def _packages(option: _Option, target: Target) -> tuple[Package, ...]:
    t = option.torch
    index = t.index
    pkgs = [
        Package("torch", torch_version_for(t.release, t.build, index), index, t.release.confirmed and t.build.confirmed)
    ]
    if option.bnb is not None:
        pkgs.append(Package("bitsandbytes", option.bnb.version, PYPI, option.bnb.confirmed))
    if option.quant is not None:
        q = option.quant
        pkgs.append(Package(q.name, q.version, PYPI, q.confirmed))
        pkgs += [Package(o.name, o.version, PYPI, o.confirmed) for o in option.others]
        pkgs += [Package(name, version, PYPI, q.confirmed) for name, version in option.pinned]
    pkgs += [Package(c.name, c.version, PYPI, c.confirmed) for c in option.companions]
    return tuple(pkgs)


def _explain(option: _Option, target: Target, python: str) -> tuple[str, ...]:
    t = option.torch
    src = "PyPI (its default build there)" if t.index == PYPI else t.index
    reasons = [f"target: {target.describe()}", f"Python {python}: {t.label} ships wheels for it ({t.release.python})"]
    reasons.append(f"{t.label} from {src}" + (": " + "; ".join(t.reasons) if t.reasons else ""))
    if option.bnb is not None:
        reasons.append(f"bitsandbytes {option.bnb.version} {option.bnb_note}; its loader rule is {option.bnb.loader}")
    if option.quant is not None:
        q = option.quant
        reasons.append(f"{q.name} {q.version} ({q.status}; kernels: {q.kernels}) for the {target.profile} profile")
        for o in option.others:
            reasons.append(f"{o.name} {o.version} ({o.status}; kernels: {o.kernels}) beside it: the newest whose "
                           f"requirements and the companions' hold together")  # fmt: skip
    env = fit.marker_environment(target.platform, python)
    pins = {p.name: p.version.split("+", 1)[0] for p in _packages(option, target)}
    for c in option.companions:
        held = [n for n in companion_needs(c, env) if n.name in pins and n.name != c.name and n.spec]
        shown = ", ".join(n.text().removeprefix(f"{n.owner} needs ") for n in held)
        reasons.append(f"{c.name} {c.version}" + (f" (needs {shown}: all hold)" if shown else ""))
    reasons += _loader_reasons(option)
    if option.proven:
        e = option.proven[0]
        reasons.append(f"proven by a smoke test on {e.gpu} (driver {e.driver}) on {e.date}: {e.source}")
    if not option.confirmed:
        weak = [_weak(f) for f in option.facts if not f.confirmed]
        weak += [f"quantizers.toml has no {m} row for this transformers" for m in option.unread]
        reasons.append("rests on unconfirmed facts: " + ", ".join(weak))
    return tuple(reasons)


def _loader_reasons(option: _Option) -> list[str]:
    """What transformers' quantizers demand for the formats the profile loads, and that the pins meet it."""
    held = [f for f in option.facts if isinstance(f, Quantizer)]
    out = []
    for q in held:
        needs = [f"{n}{s}" for n, s in q.requires.items()]
        needs += ["one of " + " / ".join(f"{n}{s}" for n, s in q.one_of.items())] if q.one_of else []
        label = formats.FORMAT_LABELS.get(q.method, q.method)
        out.append(f"loads {label}: transformers' {q.method} quantizer needs {', '.join(needs)}: all hold")
    out += [
        f"loads {formats.FORMAT_LABELS.get(m, m)}: transformers' quantizer for it was not read" for m in option.unread
    ]
    return out


def _weak(fact: Fact) -> str:
    if isinstance(fact, (Companion, QuantLib)) and fact.requires_dist is None:
        return f"{fact.origin} ({fact.name} {fact.version}: its requirements were not read)"
    return fact.origin


def _warnings(option: _Option, target: Target, torch_note: str | None) -> tuple[str, ...]:
    warns = list(option.torch.warnings)
    if torch_note:
        warns.insert(0, torch_note)
    for q in (option.quant, *option.others) if option.quant is not None else ():
        if q.kernels == "jit":
            warns.append(
                f"{q.name} compiles its CUDA kernels on first use: "
                f"it needs nvcc for CUDA {option.torch.build.cuda} and ninja"
            )
    if option.quant is not None and option.quant.status != "active":
        warns.append(f"{option.quant.name} is {option.quant.status}: {option.quant.note or option.quant.source}")
    if target.profile == "cpu" and option.torch.index == PYPI and target.platform.startswith("linux"):
        warns.append(
            "PyPI's Linux torch is a CUDA build (~3 GB) that also runs on the CPU; "
            "a wheelhouse or the PyTorch CPU index serves a smaller one"
        )
    return tuple(warns)


def _torch_note(
    best: _Option, matrix: Matrix, target: Target, python: str, rejected: Sequence[Rejection]
) -> str | None:
    """One line when the plan must use a torch with a known advisory, or one older than the newest release
    the matrix knows (that --torch allows): which, and why nothing newer or fixed works here."""
    chosen = best.torch.release.version
    allowed = [r.version for r in matrix.torch_releases if _in(target.torch_spec, r.version) and _in(r.python, python)]
    newest = max(allowed, key=_v, default=chosen)
    advisory = next((a for a in best.advisories if a.package == "torch"), None)
    if advisory is None and _v(newest) <= _v(chosen):
        return None
    if advisory is not None:
        fixed = advisory.fixed or "a later release"
        why = _why_not(rejected, lambda v: _v(v) >= _v(fixed), top=1) or "nothing fixed fits the other pins"
        return (
            f"torch {chosen} is affected by {advisory.id} ({advisory.summary}; fixed in {fixed}); "
            f"no fixed torch works here: {why}"
        )
    why = _why_not(rejected, lambda v: _v(v) > _v(chosen), top=1) or "newer builds rank lower"
    return f"torch {chosen}, not the newest ({newest}): {why}"


def _why_not(rejected: Sequence[Rejection], wanted: object, *, top: int = 2) -> str:
    """The reasons newer torch candidates were refused, most frequent first."""
    counts: dict[str, int] = {}
    for r in rejected:
        parts = r.candidate.split()
        if len(parts) == 2 and parts[0] == "torch" and callable(wanted) and wanted(parts[1].split("+", 1)[0]):
            key = _headline(r.why)
            counts[key] = counts.get(key, 0) + 1

    # What a user can change comes first: a source (the PyTorch index), then the driver, then the rest.
    def order(kv: tuple[str, int]) -> tuple[int, int]:
        why = kv[0]
        return (0 if "not served" in why else 1 if why.startswith("driver") else 2, -kv[1])

    return "; ".join(why for why, _ in sorted(counts.items(), key=order)[:top])


def resolve(target: Target, matrix: Matrix, sources: Sources | None = None) -> Plan | NoPlan:
    """The best plan for the target, or why none exists (with the nearest workable alternatives).

    Among the plans that work, one order decides (README "Ranking"), each step explained when it decides:
    1. no known security advisory against a pin (matrices/advisories.toml);
    2. proven by a smoke test on matching hardware (same compute capability, CPU architecture, OS, Python
       minor, torch build, bitsandbytes or GPTQ/AWQ library, transformers minor);
    3. resting on confirmed facts only (a companion whose requirements were not read is unconfirmed);
    4. the newest torch the GPU's kernels allow among the reachable sources;
    5. fewer indexes (a release whose own PyPI build is the CUDA variant needed);
    6. native driver support over minor-version compatibility;
    7. the newer bitsandbytes.
    A plan that must use an old or vulnerable torch says why in one warning line.
    """
    sources = sources or Sources(pytorch_index=matrix.pytorch_index)
    result = _resolve(target, matrix, sources)
    if isinstance(result, NoPlan):
        return replace(result, nearest=nearest_alternatives(target, matrix, sources))
    return result


def _resolve(target: Target, matrix: Matrix, sources: Sources) -> Plan | NoPlan:
    rejected: list[Rejection] = []
    fallback: tuple[str, list[_Option]] | None = None
    for python in target.pythons:
        torches, rej = _torch_candidates(matrix, target, sources, python)
        rejected += rej
        options: list[_Option] = []
        for cand in torches:
            found, rej2 = _options(matrix, target, sources, cand)
            if not found:
                rejected += rej2[-1:]  # the torch build's verdict; its bnb rejections are noise here
            options += found
        if any(o.rank()[0] for o in options):
            return _plan(target, matrix, python, options, rejected)
        if options:
            # Only PyPI's CUDA torch for the cpu profile: a later Python with a real CPU build comes first.
            fallback = fallback or (python, options)
            rejected.append(Rejection(f"Python {python}", "only PyPI's CUDA build of torch serves the cpu profile"))
            continue
        rejected.append(Rejection(f"Python {python}", "no combination works with it"))
    if fallback is not None:
        return _plan(target, matrix, fallback[0], fallback[1], rejected)
    return NoPlan(
        target=target, reasons=_no_plan_reasons(target, rejected), rejected=tuple(rejected), matrix_digest=matrix.digest
    )


def _plan(target: Target, matrix: Matrix, python: str, options: list[_Option], rejected: list[Rejection]) -> Plan:
    options.sort(key=_Option.rank, reverse=True)
    best = options[0]
    lower = [o for o in options[1:] if o.torch.label != best.torch.label or o.companions != best.companions]
    ranked_lower = [Rejection(o.torch.label, "works, but ranked lower: " + _why_lower(best, o)) for o in lower[:5]]
    all_rejected = [*rejected, *best.rejected, *ranked_lower]
    pkgs = _packages(best, target)
    extra = tuple(dict.fromkeys(p.index for p in pkgs if is_index_url(p.index)))
    return Plan(
        target=target,
        python=python,
        cuda=best.torch.build.cuda,
        variant=best.torch.build.variant,
        packages=pkgs,
        reasons=_explain(best, target, python),
        rejected=tuple(all_rejected),
        warnings=_warnings(best, target, _torch_note(best, matrix, target, python, all_rejected)),
        bnb_library=_bnb_library(best, target),
        proven=best.proven,
        confirmed=best.confirmed,
        matrix_digest=matrix.digest,
        extra_indexes=extra,
        formats=formats.ordered(profile.formats) if (profile := matrix.profile(target.profile)) else (),
    )


def _why_lower(best: _Option, other: _Option) -> str:
    """The first step of the ranking order that tells the two apart (keys in ``_Option.rank`` order)."""
    b, o = best.torch, other.torch
    steps: tuple[tuple[bool, str], ...] = (
        (
            len(best.advisories) != len(other.advisories),
            ", ".join(a.id for a in other.advisories if a not in best.advisories) + " affects it",
        ),
        (bool(best.proven) != bool(other.proven), "the chosen one is proven on matching hardware"),
        (best.confirmed != other.confirmed, "it rests on unconfirmed facts"),
        (b.listed != o.listed, "its index page could not be read, so that the index holds it is unconfirmed"),
        (b.release.version != o.release.version, f"torch {b.release.version} is newer"),
        ((b.index == PYPI) != (o.index == PYPI), "the chosen build comes from PyPI, with no extra index"),
        (b.native != o.native, "the chosen build runs natively on the driver"),
    )
    return next((why for differs, why in steps if differs), "a newer bitsandbytes or CUDA fits the chosen one")


def _headline(why: str) -> str:
    """A reason up to its first colon outside parentheses: the detail in "(bitsandbytes 0.47.0: ...)" stays."""
    depth = 0
    for i, ch in enumerate(why):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == ":" and depth == 0:
            return why[:i]
    return why


def _no_plan_reasons(target: Target, rejected: list[Rejection]) -> tuple[str, ...]:
    counts: dict[str, int] = {}
    for r in rejected:
        key = _headline(r.why) if r.candidate.startswith("torch") else ""
        if key:
            counts[key] = counts.get(key, 0) + 1
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    reasons = [f"no combination of torch, bitsandbytes and companions works for {target.describe()}"]
    reasons += [f"{n} candidate(s) fail on: {why}" for why, n in top]
    return tuple(reasons)


def nearest_alternatives(target: Target, matrix: Matrix, sources: Sources) -> tuple[str, ...]:
    """Relax one constraint at a time and say what would work then."""
    tries: list[tuple[_Relaxed, Target, Sources]] = []
    if target.driver:
        tries.append(("driver", replace(target, driver=None), sources))
    if target.torch_spec is not None or target.bnb_spec is not None:
        tries.append(("pins", replace(target, torch_spec=None, bnb_spec=None), sources))
    tries.append(("python", replace(target, pythons=("3.13", "3.12", "3.11", "3.10", "3.9")), sources))
    if sources.pytorch_index is None:
        tries.append(("sources", target, replace(sources, pytorch_index=matrix.pytorch_index)))
    out: list[str] = []
    for what, t, s in tries:
        plan = _resolve(t, matrix, s)
        if isinstance(plan, Plan):
            out.append(_alternative_text(what, plan, matrix))
    return tuple(dict.fromkeys(out))


_Relaxed = Literal["driver", "pins", "python", "sources"]  # the constraint nearest_alternatives lifts


def _alternative_text(what: _Relaxed, plan: Plan, matrix: Matrix) -> str:
    pins = ", ".join(p.requirement for p in plan.packages if p.name in {"torch", "bitsandbytes"})
    if what == "driver" and plan.cuda:
        native_min, mvc_min = driver_floors(matrix, plan.cuda, plan.target.os)
        return f"with a driver >= {mvc_min or native_min}: {pins} (CUDA {plan.cuda})"
    if what == "pins":
        return f"without the --torch/--bnb pins: {pins}"
    if what == "python":
        return f"with Python {plan.python}: {pins}"
    return f"with the PyTorch index (or a mirror) reachable: {pins}"
