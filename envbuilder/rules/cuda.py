"""NVIDIA's driver and architecture rules (pure), read against the matrix's toolkit, minor-version and arch facts.

Called by the resolver (every torch build and bitsandbytes library), ``sync``'s host check (does a lock fit this
machine), the doctor and the CLI's driver lines: one home, so a lock that ``sync`` accepts is one the resolver
would have planned.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from envbuilder.model.matrix import Matrix
from envbuilder.rules._version import major, v

__all__ = [
    "Verdict",
    "check_arch",
    "check_driver",
    "driver_cuda",
    "driver_floors",
    "forward_ok",
    "gpu_driver_floor",
    "ptx_covers",
    "sass_covers",
]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A rule's answer: ``why`` explains a refusal (or, when ok, how it fits); ``warn`` is for the user."""

    ok: bool
    why: str = ""
    warn: str = ""
    native: bool = True  # False: the driver runs the build only by minor-version or forward compatibility


def _windows_numbering(os: str) -> bool:
    return os in {"windows", "wsl2"}  # WSL2 runs the Windows driver


def driver_floors(matrix: Matrix, cuda: str, os: str) -> tuple[str | None, str | None]:
    """(native minimum, minor-version-compatibility floor) for a CUDA build on an OS flavour.

    WSL2 runs the Windows driver, so Windows numbering applies there.
    """
    windows = _windows_numbering(os)
    native = next((t for t in matrix.toolkits if t.cuda == cuda), None)
    mvc = next((m for m in matrix.minor_compat if m.major == major(cuda)), None)
    native_min = (native.windows if windows else native.linux) if native else None
    mvc_min = (mvc.windows if windows else mvc.linux) if mvc else None
    if windows and mvc is not None and mvc_min is None:
        # NVIDIA publishes no Windows floor for CUDA 13.x (the toolkit stopped bundling the Windows driver);
        # Windows and Linux drivers share branch numbers, so the Linux branch (e.g. R580) is the floor.
        mvc_min = mvc.linux.split(".", 1)[0]
    return native_min, mvc_min


def driver_cuda(matrix: Matrix, driver: str, os: str) -> tuple[str | None, str | None]:
    """(highest CUDA run natively, highest CUDA major.x reachable by minor-version compatibility)."""
    floors = {t.cuda: driver_floors(matrix, t.cuda, os) for t in matrix.toolkits}
    native = [cuda for cuda, (native_min, _) in floors.items() if native_min and v(driver) >= v(native_min)]
    best_native = max(native, key=v, default=None)
    # The minor-version floor of a major is the same for each of its toolkits; driver_floors applies the
    # Windows/WSL2 numbering (and its R580 stand-in for CUDA 13) once, for both answers.
    mvc = [major(cuda) for cuda, (_, mvc_min) in floors.items() if mvc_min and v(driver) >= v(mvc_min)]
    best_mvc = f"{max(mvc)}.x" if mvc else None
    return best_native, best_mvc


def sass_covers(sass: Iterable[str], cc: str) -> str | None:
    """The SASS target that runs on ``cc``: same major, minor <= the GPU's (NVIDIA's binary compatibility rule)."""
    gpu = v(cc)
    fits = [s for s in sass if v(s).major == gpu.major and v(s).minor <= gpu.minor]
    return max(fits, key=v, default=None)


def ptx_covers(ptx: str | None, cc: str) -> bool:
    """PTX can be JIT-compiled for any GPU at or above its target."""
    return ptx is not None and v(ptx) <= v(cc)


def gpu_driver_floor(matrix: Matrix, ccs: Sequence[str], os: str) -> tuple[str, str, str] | None:
    """The first driver that can drive every GPU at all: (driver, sm, CUDA), or None when unknown.

    A driver older than a GPU does not know it, whatever CUDA build runs on top (minor-version and forward
    compatibility included); the first driver for a GPU is the minimum driver of its first CUDA toolkit.
    """
    windows = _windows_numbering(os)
    floor: tuple[str, str, str] | None = None
    for cc in ccs:
        arch = matrix.arch(cc)
        toolkit = next((t for t in matrix.toolkits if arch and t.cuda == arch.first_cuda), None)
        minimum = (toolkit.windows if windows else toolkit.linux) if toolkit else None
        if arch and toolkit and minimum and (floor is None or v(minimum) > v(floor[0])):
            floor = (minimum, arch.sm, toolkit.cuda)
    return floor


def forward_ok(matrix: Matrix, cuda: str, *, driver: str, platform: str, segments: Sequence[str | None]) -> bool:
    """Can cuda-compat (forward compatibility) run ``cuda`` on this driver, platform and these GPU segments?"""
    fc = matrix.forward_compat
    if fc is None or platform not in fc.platforms:
        return False
    if not segments or any(s not in fc.segments for s in segments):
        return False
    base = next((b for b in fc.bases if b.major == major(cuda)), None)
    return base is not None and v(driver) >= v(base.linux)


def check_driver(
    matrix: Matrix, cuda: str | None, *, driver: str | None, os: str, ccs: Sequence[str], forward: bool = False
) -> Verdict:
    """Does ``driver`` drive every GPU and run a CUDA ``cuda`` build: natively, by minor-version compatibility,
    or (``forward``: opted in and allowed, see ``forward_ok``) through cuda-compat? Unknown driver: yes."""
    if cuda is None or driver is None:
        return Verdict(True)
    floor = gpu_driver_floor(matrix, ccs, os)
    if floor is not None and v(driver) < v(floor[0]):
        minimum, sm, first = floor
        return Verdict(False, f"driver {driver} predates {sm} (its first driver is {minimum}, with CUDA {first})")
    native_min, mvc_min = driver_floors(matrix, cuda, os)
    if native_min and v(driver) >= v(native_min):
        return Verdict(True, f"driver {driver} >= {native_min}, the minimum for CUDA {cuda}")
    if mvc_min and v(driver) >= v(mvc_min):
        why = f"driver {driver} runs CUDA {cuda} by minor-version compatibility (>= {mvc_min})"
        return Verdict(True, why, native=False)
    if forward:
        return Verdict(
            True,
            f"driver {driver} runs CUDA {cuda} through cuda-compat (forward compatibility, opted in)",
            warn=f"install cuda-compat for CUDA {cuda} and put its lib directory on LD_LIBRARY_PATH",
            native=False,
        )
    lowest = mvc_min or native_min or "?"
    why = f"driver {driver} < {lowest}, the minimum for CUDA {major(cuda)}.x builds"
    if native_min and mvc_min and native_min != mvc_min:
        why = f"driver {driver} < {mvc_min}, the minor-version-compatibility floor for CUDA {major(cuda)}.x"
    return Verdict(False, why)


def check_arch(ccs: Sequence[str], sass: Sequence[str], ptx: str | None, what: str, *, native: bool) -> Verdict:
    """Every GPU covered by SASS, or by PTX (a warning; refused where the driver runs the build only by MVC)."""
    notes, warns = [], []
    for cc in ccs:
        sm = "sm_" + cc.replace(".", "")
        hit = sass_covers(sass, cc)
        if hit:
            notes.append(f"{sm} runs its sm_{hit.replace('.', '')} SASS" if hit != cc else f"{sm} SASS present")
        elif ptx_covers(ptx, cc) and native:
            warns.append(f"{what}: {sm} only through PTX {ptx} JIT (slow first start)")
        elif ptx_covers(ptx, cc):
            return Verdict(False, f"{sm} only through PTX JIT, which minor-version compatibility does not allow")
        else:
            lowest = min(sass, key=v, default=None)
            has = f"lowest is sm_{lowest.replace('.', '')}" if lowest else "no SASS"
            same_major = [s for s in sass if v(s).major == v(cc).major]
            if same_major and lowest != min(same_major, key=v):
                has = f"its sm_{v(cc).major}x SASS is newer than the GPU"
            return Verdict(False, f"no SASS for {sm} ({has}" + (f", PTX {ptx} is newer)" if ptx else ")"))
    return Verdict(True, "; ".join(notes), "; ".join(warns))
