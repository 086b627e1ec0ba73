"""The target model: what an environment is for, and the parsing of --gpu/--driver/--os/--python/...

Pure: takes strings and the matrix, returns a ``Target`` or raises ``TargetError`` (exit 2) with a hint.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from envbuilder.errors import TargetError
from envbuilder.matrix import Arch, Matrix

OsFlavour = Literal["linux", "wsl2", "windows"]
OS_FLAVOURS: tuple[OsFlavour, ...] = ("linux", "wsl2", "windows")
MACHINES = ("x86_64", "aarch64", "arm64")
# Preference when the target's Python is not given: widely supported first.
DEFAULT_PYTHONS = ("3.12", "3.11", "3.13", "3.10")

# re.ASCII: \d would also match other scripts' digits ("５５０"), which packaging's Version then refuses.
_SM = re.compile(r"^(?:sm_?|compute_?)?(\d{1,2})(\d)[af]?$", re.IGNORECASE | re.ASCII)
_DOTTED = re.compile(r"^(\d{1,2})\.(\d)$", re.ASCII)
_DRIVER = re.compile(r"^\d{3}(?:\.\d{1,3}){0,2}$", re.ASCII)
_PYTHON = re.compile(r"^3\.(\d{1,2})(?:\.\d{1,3})?$", re.ASCII)

# Names that are not NVIDIA CUDA GPUs: refused with the reason, never guessed.
_UNSUPPORTED: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"\b(rocm|amd|radeon|instinct|mi\d{2,3}x?|gfx\d+)\b", re.IGNORECASE),
        "ROCm/AMD GPUs are not supported: envbuilder's matrix covers NVIDIA CUDA builds only",
    ),
    (
        re.compile(r"\b(mps|apple|metal|m[1-5]( pro| max| ultra)?|macos|darwin)\b", re.IGNORECASE),
        "macOS/Apple silicon is not supported: there is no CUDA there (bitsandbytes' MPS backend is experimental)",
    ),
    (
        re.compile(r"\b(jetson|jetpack|tegra|l4t|orin|xavier|thor)\b", re.IGNORECASE),
        "Jetson (aarch64 + JetPack) is not supported: PyPI's aarch64 wheels are SBSA builds that fail on L4T; "
        "use NVIDIA's Jetson wheels or build on the device",
    ),
)


@dataclass(frozen=True, slots=True)
class Gpu:
    """One GPU of the target: its compute capability, and the product and segment when known."""

    cc: str
    product: str | None = None
    segment: str | None = None

    @property
    def sm(self) -> str:
        return "sm_" + self.cc.replace(".", "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """What the environment is for. ``gpus == ()`` means the CPU profile."""

    gpus: tuple[Gpu, ...] = ()
    driver: str | None = None
    os: OsFlavour = "linux"
    pythons: tuple[str, ...] = DEFAULT_PYTHONS
    machine: str = "x86_64"
    profile: str = "cpu"
    torch_spec: SpecifierSet | None = None
    bnb_spec: SpecifierSet | None = None
    forward_compat: bool = False

    @property
    def platform(self) -> str:
        """The wheel platform: WSL2 runs Linux wheels."""
        system = "windows" if self.os == "windows" else "linux"
        machine = {"amd64": "x86_64", "arm64": "aarch64" if system == "linux" else "arm64"}.get(
            self.machine.lower(), self.machine.lower()
        )
        return f"{system}-{machine}"

    @property
    def ccs(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(g.cc for g in self.gpus))

    def describe(self) -> str:
        gpus = ",".join(g.sm for g in self.gpus) or "cpu"
        driver = f" driver {self.driver}" if self.driver else ""
        python = self.pythons[0] if len(self.pythons) == 1 else "any"
        return f"{gpus}{driver} {self.os}/{self.machine} python {python} profile {self.profile}"

    def to_json(self) -> dict[str, object]:
        return {
            "gpus": [{"cc": g.cc, "sm": g.sm, "product": g.product} for g in self.gpus],
            "driver": self.driver,
            "os": self.os,
            "machine": self.machine,
            "platform": self.platform,
            "pythons": list(self.pythons),
            "profile": self.profile,
            "torch_spec": str(self.torch_spec) if self.torch_spec is not None else None,
            "bnb_spec": str(self.bnb_spec) if self.bnb_spec is not None else None,
            "forward_compat": self.forward_compat,
        }


# --------------------------------------------------------------------------- GPU names


def _norm_tokens(name: str) -> tuple[str, ...]:
    """Lower-case tokens, vendor words dropped: 'NVIDIA GeForce RTX 4090' -> ('rtx', '4090')."""
    text = re.sub(r"[^a-z0-9.]+", " ", name.lower().replace("-", " "))
    return tuple(t for t in text.split() if t not in {"nvidia", "geforce", "tesla"})


def _cc_from_code(text: str) -> str | None:
    match = _SM.match(text) or _DOTTED.match(text)
    return f"{int(match.group(1))}.{match.group(2)}" if match else None


def _products(matrix: Matrix) -> list[tuple[tuple[str, ...], str, Arch, str]]:
    rows: list[tuple[tuple[str, ...], str, Arch, str]] = []
    for arch in matrix.archs:
        for segment, names in arch.products.items():
            rows.extend((_norm_tokens(n), n, arch, segment) for n in names)
    return rows


def _is_subsequence(short: tuple[str, ...], long: tuple[str, ...]) -> bool:
    it = iter(long)
    return all(tok in it for tok in short)


def match_product(name: str, matrix: Matrix) -> list[tuple[str, Arch, str]]:
    """Products a name may mean: exact, then the longest product contained in the name, then names containing it."""
    query = _norm_tokens(name)
    if not query:
        return []
    rows = _products(matrix)
    exact = [(n, a, s) for toks, n, a, s in rows if toks == query]
    if exact:
        return exact
    inside = [(len(toks), n, a, s) for toks, n, a, s in rows if toks and _is_subsequence(toks, query)]
    if inside:
        longest = max(length for length, *_ in inside)
        return [(n, a, s) for length, n, a, s in inside if length == longest]
    return [(n, a, s) for toks, n, a, s in rows if _is_subsequence(query, toks)]


def _unsupported(text: str) -> None:
    for pattern, reason in _UNSUPPORTED:
        if pattern.search(text):
            msg = f"--gpu {text!r}: {reason}"
            raise TargetError(msg, hint="name an NVIDIA GPU (sm_89, 8.9, 'RTX 4090'), or use --gpu cpu")


def parse_gpu(text: str, matrix: Matrix) -> Gpu:
    """One GPU from ``sm_89``, ``8.9``, ``sm89`` or a product name; ambiguity and unknowns are refused."""
    text = text.strip()
    cc = _cc_from_code(text)
    if cc is not None:
        arch = matrix.arch(cc)
        if arch is None:
            known = ", ".join(a.sm for a in matrix.archs)
            msg = f"--gpu {text!r}: compute capability {cc} is not in the matrix"
            raise TargetError(msg, hint=f"known architectures: {known}")
        _refuse_tegra(text, arch)
        return Gpu(cc=arch.cc)
    candidates = match_product(text, matrix)
    if not any(_norm_tokens(n) == _norm_tokens(text) for n, _, _ in candidates):
        _unsupported(text)  # only when no product is named exactly so ("Tesla M4" is not Apple's M4)
    archs = {a.cc: a for _, a, _ in candidates}
    if not candidates:
        msg = f"--gpu {text!r}: no GPU of that name in the matrix"
        raise TargetError(
            msg, hint="give the compute capability instead (nvidia-smi --query-gpu=compute_cap --format=csv)"
        )
    if len(archs) > 1:
        listed = "; ".join(f"{n} ({a.sm}, {a.name})" for n, a, _ in sorted(candidates, key=lambda c: c[1].cc))
        msg = f"--gpu {text!r} is ambiguous: {listed}"
        raise TargetError(msg, hint="give the full product name or the compute capability (e.g. sm_89)")
    product, arch, segment = candidates[0]
    _refuse_tegra(text, arch)
    return Gpu(cc=arch.cc, product=product, segment=segment)


def _refuse_tegra(text: str, arch: Arch) -> None:
    if arch.tegra:
        msg = f"--gpu {text!r}: {arch.sm} ({arch.name}) is a Jetson/Tegra SoC, which is not supported"
        raise TargetError(msg, hint="Jetson needs NVIDIA's JetPack wheels or a build on the device")


def parse_gpus(text: str, matrix: Matrix) -> tuple[Gpu, ...]:
    """A comma list of GPUs; ``cpu`` (alone) means none."""
    parts = [p for p in (s.strip() for s in text.split(",")) if p]
    if not parts:
        msg = "--gpu is empty"
        raise TargetError(msg, hint="name a GPU (sm_89, 8.9, 'RTX 4090'), 'auto' or 'cpu'")
    if [p.lower() for p in parts] == ["cpu"]:
        return ()
    if any(p.lower() in {"cpu", "auto"} for p in parts):
        msg = f"--gpu {text!r}: 'cpu' and 'auto' stand alone, not in a list"
        raise TargetError(msg, hint="use --gpu cpu, --gpu auto, or a list of GPUs such as sm_75,sm_89")
    return tuple(parse_gpu(p, matrix) for p in parts)


# --------------------------------------------------------------------------- the other options


def parse_driver(text: str) -> str:
    text = text.strip()
    if not _DRIVER.match(text):
        msg = f"--driver {text!r} is not an NVIDIA driver version"
        raise TargetError(msg, hint="write it as nvidia-smi prints it, e.g. 550.54.14 (Linux) or 576.02 (Windows)")
    return text


def parse_python(text: str) -> str:
    match = _PYTHON.match(text.strip())
    if not match:
        msg = f"--python {text!r} is not a CPython version"
        raise TargetError(msg, hint="write it as 3.N, e.g. --python 3.11")
    return f"3.{int(match.group(1))}"


def parse_os(text: str) -> OsFlavour:
    value = text.strip().lower()
    if value in {"macos", "darwin", "mac"}:
        msg = "--os macos is not supported: there is no CUDA on macOS"
        raise TargetError(msg, hint="use --os linux, wsl2 or windows")
    for flavour in OS_FLAVOURS:
        if value == flavour:
            return flavour
    msg = f"--os {text!r} is not one of: {', '.join(OS_FLAVOURS)}"
    raise TargetError(msg, hint="use --os linux, --os wsl2 or --os windows")


def parse_profile(text: str, matrix: Matrix) -> str:
    value = text.strip().lower()
    names = [p.name for p in matrix.profiles]
    if value not in names:
        msg = f"--profile {text!r} is not one of: {', '.join(names)}"
        raise TargetError(msg, hint="bnb (bitsandbytes/QLoRA), gptq, awq or cpu")
    return value


def parse_spec(text: str, option: str) -> SpecifierSet:
    value = text.strip()
    if value and value[0].isdigit():
        value = f"=={value}"  # a bare version means exactly that version
    try:
        spec = SpecifierSet(value)
        for s in spec:
            Version(s.version.replace("*", "0"))
    except (InvalidSpecifier, ValueError):
        msg = f"{option} {text!r} is not a version or a version range"
        raise TargetError(msg, hint=f"write it like {option} 2.10.0 or {option} '>=2.8,<2.12'") from None
    return spec


def parse_machine(text: str) -> str:
    value = text.strip().lower()
    if value in {"amd64", "x64"}:
        value = "x86_64"
    if value not in MACHINES:
        msg = f"--machine {text!r} is not one of: {', '.join(MACHINES)}"
        raise TargetError(msg, hint="use x86_64 or aarch64")
    return value


def build_target(
    matrix: Matrix,
    *,
    gpus: Sequence[Gpu],
    driver: str | None = None,
    os: str = "linux",
    pythons: Sequence[str] = DEFAULT_PYTHONS,
    machine: str = "x86_64",
    profile: str | None = None,
    torch: str | None = None,
    bnb: str | None = None,
    forward_compat: bool = False,
) -> Target:
    """A validated Target; the profile defaults to ``bnb`` with GPUs and ``cpu`` without."""
    chosen = parse_profile(profile, matrix) if profile else ("bnb" if gpus else "cpu")
    spec = matrix.profile(chosen)
    if spec is not None and spec.gpu and not gpus:
        msg = f"--profile {chosen} needs an NVIDIA GPU, and the target has none"
        raise TargetError(msg, hint="name the GPU with --gpu (e.g. --gpu sm_89), or use --profile cpu")
    if chosen == "cpu" and gpus:
        gpus = ()
    return Target(
        gpus=tuple(gpus),
        driver=parse_driver(driver) if driver else None,
        os=parse_os(os),
        pythons=tuple(parse_python(p) for p in pythons) or DEFAULT_PYTHONS,
        machine=parse_machine(machine),
        profile=chosen,
        torch_spec=parse_spec(torch, "--torch") if torch else None,
        bnb_spec=parse_spec(bnb, "--bnb") if bnb else None,
        forward_compat=forward_compat,
    )
