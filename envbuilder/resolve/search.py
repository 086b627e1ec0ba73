"""The search: which combinations exist for one Python, and which rules reject the others.

For each torch release and CUDA build: the driver runs it (natively, by minor-version compatibility or with
cuda-compat), its SASS covers every GPU or PTX can be JIT-compiled, and a configured source serves it. For each
such build, one ``Option``: the bitsandbytes release whose library loads and covers every GPU (rules.bnb), the
GPTQ/AWQ library and companions that fit (companions.py), with the facts it rests on, the smoke tests that
prove it and the advisories against its pins. Every refusal is a ``Rejection`` with its reason."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from envbuilder.model.matrix import (
    Advisory,
    BnbRelease,
    Companion,
    Fact,
    GpuRun,
    Matrix,
    QuantLib,
    TorchBuild,
    TorchRelease,
)
from envbuilder.model.plan import Package, Rejection
from envbuilder.model.target import Target
from envbuilder.model.types import PYPI, WHEELHOUSE
from envbuilder.resolve.companions import Picking, rest_of_stack, with_quant
from envbuilder.resolve.sources import Sources, wheel_fits, wheelhouse_serves
from envbuilder.rules import bnb as rules_bnb
from envbuilder.rules import fit
from envbuilder.rules._version import minor as _minor
from envbuilder.rules._version import v as _v
from envbuilder.rules._version import within as _in
from envbuilder.rules.cuda import Verdict, check_arch, check_driver, driver_floors, forward_ok

__all__ = [
    "Option",
    "TorchCandidate",
    "advisories_of",
    "bnb_library",
    "options_for",
    "packages_of",
    "torch_candidates",
    "torch_version_for",
]

# --------------------------------------------------------------------------- torch builds


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


@dataclass(frozen=True, slots=True)
class TorchCandidate:
    """A torch build the driver, SASS/PTX and source rules let through, with the reasons and warnings they gave."""

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
    def local(self) -> str:
        """The release with its build's local tag: 2.14.1+cu126."""
        return f"{self.release.version}+{self.build.variant}"

    @property
    def label(self) -> str:
        return f"torch {self.local}"


def torch_version_for(release: TorchRelease, build: TorchBuild, index: str) -> str:
    """The version string to pin: PyPI's default build carries no local tag; index builds do (2.11.0+cu126)."""
    return release.version if index == PYPI else f"{release.version}+{build.variant}"


def _torch_source(
    matrix: Matrix, sources: Sources, target: Target, rel: TorchRelease, build: TorchBuild, python: str
) -> tuple[str, bool] | Rejection:
    """Where a torch build can come from and whether that source's listing shows it; or why none serves it.

    The PyTorch index (or its mirror) serves what its torch page lists, as a wheelhouse serves its files: a
    mirror holding only 2.13.0+cpu gets a 2.13.0+cpu plan, not a failed compile for 2.14.1+cpu.
    """
    if sources.pypi and rel.pypi.get(target.platform) == build.variant:
        return PYPI, True
    local = f"{rel.version}+{build.variant}"
    if wheelhouse_serves(sources, "torch", local, python, target.platform):
        return WHEELHOUSE, True
    if sources.pytorch_index:
        index = f"{sources.pytorch_index}/{build.variant}"
        listing = None if sources.pytorch_files is None else sources.pytorch_files.get(build.variant)
        if listing is None:  # not asked for (the matrix decides) or could not be read (ranked lower)
            return index, sources.pytorch_files is None
        if any(wheel_fits(f, "torch", local, python, target.platform) for f in listing):
            return index, True
        why = f"{index}/torch/ lists no wheel of it for Python {python} on {target.platform}"
        # One headline for every page, Python and platform: "31 candidate(s) fail on: the PyTorch index ...".
        return Rejection(
            "torch", local, why, "listing", f"the PyTorch index {sources.pytorch_index} lists no wheel of it"
        )
    why = "not served by the configured sources (the PyTorch index is not configured or unreachable"
    why += ", and PyPI's build of this release is " + (rel.pypi.get(target.platform) or "absent") + ")"
    return Rejection("torch", local, why, "source")


def torch_candidates(
    matrix: Matrix, target: Target, sources: Sources, python: str
) -> tuple[list[TorchCandidate], list[Rejection]]:
    gpu = bool(target.gpus)
    found: list[TorchCandidate] = []
    rejected: list[Rejection] = []
    spec_skipped = 0
    for rel in sorted(matrix.torch_releases, key=lambda r: _v(r.version), reverse=True):
        if not _in(target.torch_spec, rel.version):
            spec_skipped += 1
            continue
        if not _in(rel.python, python):
            why = f"no wheels for Python {python} (needs {rel.python})"
            rejected.append(Rejection("torch", rel.version, why, "python"))
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
            why = f"no {variant} build for {target.platform}"
            rejected.append(Rejection("torch", f"{rel.version}+{variant}", why, "platform"))
        for build in here:
            cand = _check_torch(matrix, target, sources, rel, build, python)
            if isinstance(cand, Rejection):
                rejected.append(cand)
            else:
                found.append(cand)
    if spec_skipped:
        why = f"{spec_skipped} release(s) outside --torch {target.torch_spec}"
        rejected.append(Rejection("torch", "", why, "pins"))
    return found, rejected


def _pypi_cpu_fallback(rel: TorchRelease, build: TorchBuild, target: Target, sources: Sources) -> bool:
    """For the cpu profile, PyPI's own (CUDA) build also runs on the CPU: a last resort, ranked below CPU builds."""
    return not target.gpus and sources.pypi and rel.pypi.get(target.platform) == build.variant


def _check_torch(
    matrix: Matrix, target: Target, sources: Sources, rel: TorchRelease, build: TorchBuild, python: str
) -> TorchCandidate | Rejection:
    local = f"{rel.version}+{build.variant}"
    if target.platform not in build.platforms:
        return Rejection("torch", local, f"no {build.variant} build for {target.platform}", "platform")
    drv = _driver(matrix, target, build)
    if not drv.ok:
        return Rejection("torch", local, drv.why, "driver")
    arch = check_arch(target.ccs, build.sass, build.ptx, f"torch {local}", native=drv.native)
    if not arch.ok:
        return Rejection("torch", local, arch.why, "arch")
    source = _torch_source(matrix, sources, target, rel, build, python)
    if isinstance(source, Rejection):
        return source
    index, listed = source
    reasons = tuple(r for r in (drv.why, arch.why) if r)
    warnings = tuple(w for w in (drv.warn, arch.warn) if w)
    if not listed:
        warnings += (f"{index}/torch/ could not be read: that it holds torch {local} is assumed",)
    if target.gpus and target.driver is None and build.cuda:
        native_min, mvc_min = driver_floors(matrix, build.cuda, target.os)
        warnings += (f"driver not given: CUDA {build.cuda} needs >= {mvc_min or native_min} ({native_min} natively)",)
    return TorchCandidate(rel, build, python, index, drv.native, reasons, warnings, bool(target.gpus), listed)


# --------------------------------------------------------------------------- one option per torch build


def _pick_bnb(
    matrix: Matrix, target: Target, sources: Sources, torch: TorchCandidate
) -> tuple[BnbRelease | None, str | None, str, list[Rejection], str]:
    """rules.bnb.pick for this torch build: (release, library cuda or "cpu", note, rejections, the first
    rejection that is not the matrix's advice against a release, for the headline)."""
    if target.gpus and torch.build.cuda is None:  # never a candidate with a GPU target; keep mypy sure
        cpu = Rejection("torch", torch.local, "a CPU build of torch cannot drive the GPU", "platform")
        return None, None, "", [cpu], ""

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
    rejected = [
        Rejection("bitsandbytes", r.release.version, r.why, "avoided" if r.avoided else "bitsandbytes")
        for r in got.refused
    ]
    first = next((f"bitsandbytes {r.release.version}: {r.why}" for r in got.refused if not r.avoided), "")
    return got.release, got.fit.lib, got.fit.note, rejected, first


@dataclass(frozen=True, slots=True)
class Option:
    """One stack that works on one torch build, with what the ranking reads: advisories, proof, the facts."""

    torch: TorchCandidate
    bnb: BnbRelease | None
    bnb_lib: str | None
    bnb_note: str
    quant: QuantLib | None
    companions: tuple[Companion, ...]
    proven: tuple[GpuRun, ...]
    facts: tuple[Fact, ...]
    rejected: tuple[Rejection, ...]
    advisories: tuple[Advisory, ...] = ()
    pinned: tuple[tuple[str, str], ...] = ()  # exact pins the quant library's requirements add (numpy, c-t)
    others: tuple[QuantLib, ...] = ()  # the profile's other GPTQ/AWQ libraries (gptqmodel beside llmcompressor)
    unread: tuple[str, ...] = ()  # formats the profile loads whose transformers quantizer was not read

    @property
    def confirmed(self) -> bool:
        return not self.unread and all(f.confirmed for f in self.facts)


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
    torch: TorchCandidate,
    bnb: BnbRelease | None,
    quant: QuantLib | None = None,
    companions: Sequence[Companion] = (),
    *,
    ignore_transformers: bool = False,
) -> tuple[GpuRun, ...]:
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


def _failed(matrix: Matrix, target: Target, torch: TorchCandidate, bnb: BnbRelease | None) -> GpuRun | None:
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


def options_for(
    matrix: Matrix, target: Target, sources: Sources, torch: TorchCandidate
) -> tuple[list[Option], list[Rejection]]:
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


def _option(
    matrix: Matrix, target: Target, sources: Sources, torch: TorchCandidate, prefer: Mapping[str, str] | None = None
) -> tuple[Option | None, list[Rejection]]:
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
            why = f"no bitsandbytes release works with it{detail}"
            return None, [*rejected, Rejection("torch", torch.local, why, "bitsandbytes")]
    env = fit.marker_environment(target.platform, torch.python)
    picking = Picking({"torch": torch.release.version}, [], env)
    if bnb is not None:
        picking.pins["bitsandbytes"] = bnb.version
    quant, pinned, rej = with_quant(matrix, target, torch, picking, names)
    rejected += rej
    if target.profile in {"gptq", "awq"} and quant is None:
        # Say why, as for bitsandbytes: "its kernels need sm_75 or newer" is the answer a Pascal user needs.
        detail = f" ({rej[0].candidate}: {rej[0].why})" if rej else ""
        why = f"no {target.profile} library works with it{detail}"
        return None, [*rejected, Rejection("torch", torch.local, why, "quant")]
    rest, rej = rest_of_stack(matrix, target, torch, picking, pinned, prefer)
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
        ran = f"failed a smoke test on {failed.gpu} on {failed.date}"
        return None, [
            *rejected,
            Rejection("torch", torch.local, f"{ran}: {failed.detail}", "failed", ran),
        ]
    proven = _proven(matrix, target, torch, bnb, quant, companions)
    advisories = advisories_of(matrix, picking.pins)
    return Option(
        torch, bnb, bnb_lib, note, quant, tuple(companions), proven, facts, tuple(rejected), advisories,
        tuple(sorted(pinned.items())), tuple(others), unread,
    ), []  # fmt: skip


def bnb_library(option: Option, target: Target) -> str | None:
    """The file name of the library the plan's bitsandbytes loads (None: no bitsandbytes)."""
    if option.bnb is None:
        return None
    return rules_bnb.lib_name(None if option.bnb_lib == rules_bnb.CPU else option.bnb_lib, target.platform)


def packages_of(option: Option, target: Target) -> tuple[Package, ...]:
    """The option's pins, torch first, each with its source."""
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
