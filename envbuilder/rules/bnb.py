"""bitsandbytes' loader and fit rule (pure): which library a release loads for a torch build, and whether a
release fits a torch build, Python, platform, the sources and every GPU.

The loader eras are data (``[[release]].loader`` in ``matrices/bitsandbytes.toml``); the rule that reads them
is here, once. The resolver picks with ``pick``; the doctor recommends with the same ``pick``, so it never names
a release the resolver would reject (tests/test_rules_bnb.py); the doctor's loader judge applies
``library_cuda`` to the files a release actually ships; ``smoke/check.py`` runs inside the target interpreter
with no envbuilder installed and keeps a stdlib-only, loader-neutral copy (``choose_library``) that the same
test proves equal to this rule on a table of cases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from packaging.specifiers import SpecifierSet

from envbuilder.model.matrix import BnbRelease, BnbSass, Matrix
from envbuilder.rules._version import major, v, within
from envbuilder.rules.cuda import check_arch

__all__ = ["CPU", "Fit", "Pick", "Refusal", "covers", "fit", "lib_name", "library_cuda", "pick", "sass_row"]

CPU = "cpu"  # Fit.lib for the CPU backend (no GPU in use)


def library_cuda(release: BnbRelease, torch_cuda: str) -> str | None:
    """The CUDA version of the library bitsandbytes loads for a torch build, by that release's loader rule.

    exact-or-cpu (0.43.1-0.45.x): exact match, else a silent CPU fallback (no GPU library);
    exact-or-error (0.46-0.49): exact match, else an error at the first native call;
    nearest-same-major (0.50+): exact, else the highest packaged <= torch's CUDA of the same major,
    else the lowest higher one of the same major; never across majors.
    """
    libs = release.cuda_libs
    if torch_cuda in libs:
        return torch_cuda
    if release.loader != "nearest-same-major":
        return None
    same = [c for c in libs if major(c) == major(torch_cuda)]
    lower = [c for c in same if v(c) <= v(torch_cuda)]
    if lower:
        return max(lower, key=v)
    return min(same, key=v, default=None)


def sass_row(matrix: Matrix, release: BnbRelease, lib_cuda: str, platform: str) -> BnbSass | None:
    """The matrix's SASS/PTX facts for the library ``release`` ships for ``lib_cuda`` on ``platform``."""
    return next(
        (
            s
            for s in matrix.bnb_sass
            if s.platform == platform and within(s.bnb, release.version) and within(s.cuda, lib_cuda)
        ),
        None,
    )


def lib_name(cuda: str | None, platform: str) -> str:
    """The file name: ``libbitsandbytes_cuda126.so``, ``libbitsandbytes_cpu.dll`` (``cuda`` None)."""
    ext = "dll" if platform.startswith("windows") else "so"
    if cuda is None:
        return f"libbitsandbytes_cpu.{ext}"
    return f"libbitsandbytes_cuda{cuda.replace('.', '')}.{ext}"


def covers(matrix: Matrix, release: BnbRelease, lib_cuda: str, platform: str, ccs: Sequence[str]) -> bool:
    """Does the library ``release`` loads for ``lib_cuda`` carry SASS (or PTX) for every GPU? (No GPU known: yes.)"""
    return not _library_misfit(matrix, release, lib_cuda, platform, ccs)[0]


def _library_misfit(
    matrix: Matrix, release: BnbRelease, lib_cuda: str, platform: str, ccs: Sequence[str]
) -> tuple[str, str]:
    """(why its library does not cover every GPU or "", the coverage note)."""
    name = lib_name(lib_cuda, platform)
    row = sass_row(matrix, release, lib_cuda, platform)
    if row is None:
        return (f"no SASS facts for its {name} on {platform}", "") if ccs else ("", f"loads {name}")
    arch = check_arch(ccs, row.sass, row.ptx, f"bitsandbytes {release.version}", native=True)
    if not arch.ok:
        return f"{name}: {arch.why}", ""
    return "", f"loads {name}" + (f" ({arch.why})" if arch.why else "")


def _not_installable(
    release: BnbRelease,
    *,
    torch: str | None,
    python: str | None,
    platform: str,
    served: Callable[[BnbRelease], bool] | None,
) -> str:
    """Why ``release`` cannot be installed beside that torch here ("" when it can)."""
    if python is not None and not within(release.python, python):
        return f"needs Python {release.python}"
    if torch is not None and not within(release.torch, torch):
        return f"needs torch {release.torch}, not {torch}"
    if platform not in release.platforms:
        return f"no wheel for {platform}"
    if served is not None and not served(release):
        return "not in the wheelhouse, and PyPI is off (offline)"
    return ""


@dataclass(frozen=True, slots=True)
class Fit:
    """One release against one environment: the library it loads (a CUDA version, or ``CPU``), or why not."""

    lib: str | None
    why: str = ""
    note: str = ""


def fit(
    matrix: Matrix,
    release: BnbRelease,
    *,
    torch: str | None,
    torch_cuda: str | None,
    python: str | None,
    platform: str,
    ccs: Sequence[str],
    served: Callable[[BnbRelease], bool] | None = None,
    torch_label: str = "",
) -> Fit:
    """Can ``release`` be installed beside torch ``torch`` (a release, no local tag) and work?

    ``torch_cuda`` is the CUDA of the torch build in use on a GPU; None means the CPU backend (a CPU build, or
    no GPU). ``python`` or ``torch`` None: not known (a pasted log), so not checked. ``served``: can the
    configured sources serve it (None: PyPI can). ``ccs`` empty with a ``torch_cuda``: the GPUs are unknown.
    """
    why = _not_installable(release, torch=torch, python=python, platform=platform, served=served)
    if why:
        return Fit(None, why)
    if torch_cuda is None:
        if release.cpu != "full":
            why = f"its CPU backend is {release.cpu!r} (4-bit fp4 and 8-bit on CPU need >= 0.47's full backend)"
            return Fit(None, why)
        return Fit(CPU, note="CPU backend")
    lib_cuda = library_cuda(release, torch_cuda)
    if lib_cuda is None:
        wanted = lib_name(torch_cuda, platform)
        silent = release.loader == "exact-or-cpu"
        effect = "falls back to the CPU silently" if silent else "fails at the first native call"
        label = torch_label or (f"torch {torch}" if torch else f"a CUDA {torch_cuda} torch build")
        return Fit(None, f"{label} makes it load {wanted}, which it does not ship: it {effect}")
    why, note = _library_misfit(matrix, release, lib_cuda, platform, ccs)
    return Fit(None, why) if why else Fit(lib_cuda, note=note)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A release ``pick`` passed over, and why; ``avoided`` marks the matrix's own advice against it."""

    release: BnbRelease
    why: str
    avoided: bool = False


@dataclass(frozen=True, slots=True)
class Pick:
    """The newest release that fits (None: none does), the library it loads, and those passed over first."""

    release: BnbRelease | None
    fit: Fit
    refused: tuple[Refusal, ...]


def pick(
    matrix: Matrix,
    *,
    spec: SpecifierSet | None = None,
    torch: str | None,
    torch_cuda: str | None,
    python: str | None,
    platform: str,
    ccs: Sequence[str],
    served: Callable[[BnbRelease], bool] | None = None,
    torch_label: str = "",
) -> Pick:
    """Newest first, the first release within ``spec`` that ``fit`` accepts. A release the matrix advises
    against (``avoid``) is passed over unless ``spec`` pins it exactly."""
    refused: list[Refusal] = []
    pinned_exact = spec is not None and any(s.operator in {"==", "==="} for s in spec)
    for rel in sorted(matrix.bnb_releases, key=lambda r: v(r.version), reverse=True):
        if not within(spec, rel.version):
            continue
        if rel.avoid and not pinned_exact:
            refused.append(Refusal(rel, f"avoided: {rel.avoid}", avoided=True))
            continue
        found = fit(
            matrix,
            rel,
            torch=torch,
            torch_cuda=torch_cuda,
            python=python,
            platform=platform,
            ccs=ccs,
            served=served,
            torch_label=torch_label,
        )
        if found.lib is not None:
            return Pick(rel, found, tuple(refused))
        refused.append(Refusal(rel, found.why))
    return Pick(None, Fit(None), tuple(refused))
