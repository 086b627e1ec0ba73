"""The target model: what an environment is for, and the parsing of --gpu/--driver/--os/--python/...

Pure: takes strings and the matrix, returns a ``Target`` or raises ``TargetError`` (exit 2) with a hint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import Version

from envbuilder.model.driver import driver_version
from envbuilder.model.errors import TargetError
from envbuilder.model.matrix import Arch, Matrix
from envbuilder.model.types import ProfileName

if TYPE_CHECKING:
    from envbuilder.model.gpu_table import Product

__all__ = [
    "DEFAULT_PYTHONS",
    "MACHINES",
    "OS_FLAVOURS",
    "Gpu",
    "OsFlavour",
    "Target",
    "build_target",
    "cc_of_name",
    "gpu_from_pci_id",
    "identify_name",
    "parse_driver",
    "parse_gpu",
    "parse_gpus",
    "parse_machine",
    "parse_os",
    "parse_profile",
    "parse_python",
    "parse_spec",
]

OsFlavour = Literal["linux", "wsl2", "windows"]
OS_FLAVOURS: tuple[OsFlavour, ...] = ("linux", "wsl2", "windows")
MACHINES = ("x86_64", "aarch64", "arm64")
# Preference when the target's Python is not given: widely supported first.
DEFAULT_PYTHONS = ("3.12", "3.11", "3.13", "3.10")

# Patterns as text, compiled on first use by re's own cache (start-up: bench/RESULTS-resolve.md); the flags are
# inline. (?a), ASCII: \d would also match other scripts' digits ("５５０"), which packaging's Version then refuses.
_SM = r"(?ai)^(?:sm_?|compute_?)?(\d{1,2})(\d)[af]?$"
_DOTTED = r"(?a)^(\d{1,2})\.(\d)$"
_PYTHON = r"(?a)^3\.(\d{1,2})(?:\.\d{1,3})?$"

# Names that are not NVIDIA CUDA GPUs: refused with the reason, never guessed.
_UNSUPPORTED: tuple[tuple[str, str], ...] = (
    (
        r"(?i)\b(rocm|amd|radeon|instinct|mi\d{2,3}x?|gfx\d+)\b",
        "ROCm/AMD GPUs are not supported: envbuilder's matrix covers NVIDIA CUDA builds only",
    ),
    (
        r"(?i)\b(mps|apple|metal|m[1-5]( pro| max| ultra)?|macos|darwin)\b",
        "macOS/Apple silicon is not supported: there is no CUDA there (bitsandbytes' MPS backend is experimental)",
    ),
    (
        r"(?i)\b(jetson|jetpack|tegra|l4t|orin|xavier|thor)\b",
        "Jetson (aarch64 + JetPack) is not supported: PyPI's aarch64 wheels are SBSA builds that fail on L4T; "
        "use NVIDIA's Jetson wheels or build on the device",
    ),
)


@dataclass(frozen=True, slots=True)
class Gpu:
    """One GPU of the target: its compute capability, and the product and segment when known.

    A GPU the probe found on this host, as its driver names it, is ``edge.detect.HostGpu``.
    """

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
    profile: ProfileName = "cpu"
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

# A PCI id ("10de:28a1", "0x10DE:0x28A1"), alone or inside a pasted `lspci -nn` line ("... [10de:28a1] (rev a1)").
_PCI_ID = r"(?ai)\b(?:0x)?([0-9a-f]{4}):(?:0x)?([0-9a-f]{4})\b"
_TIP_CC = "give the compute capability instead (nvidia-smi --query-gpu=compute_cap --format=csv)"
_SHOWN = 3  # candidates named per architecture in an "ambiguous" message


def _cc_from_code(text: str) -> str | None:
    match = re.match(_SM, text) or re.match(_DOTTED, text)
    return f"{int(match.group(1))}.{match.group(2)}" if match else None


def _unsupported(text: str) -> None:
    for pattern, reason in _UNSUPPORTED:
        if re.search(pattern, text):
            msg = f"--gpu {text!r}: {reason}"
            raise TargetError(msg, hint="name an NVIDIA GPU (sm_89, 8.9, 'RTX 4090'), or use --gpu cpu")


def parse_gpu(text: str, matrix: Matrix) -> Gpu:
    """One GPU from ``sm_89``, ``8.9``, ``sm89``, a PCI id (``10de:28a1``) or a product name as nvidia-smi, the
    PCI database or a person writes it; ambiguous names and unknown ones are refused, naming the candidates."""
    text = text.strip()
    cc = _cc_from_code(text)
    if cc is not None:
        arch = matrix.arch(cc)
        if arch is None:
            msg = f"--gpu {text!r}: compute capability {cc} is not in the matrix"
            raise TargetError(msg, hint=_known(matrix))
        _refuse_tegra(text, arch)
        return Gpu(cc=arch.cc)
    pci = re.search(_PCI_ID, text)
    if pci:
        return gpu_from_pci_id(pci.group(1), pci.group(2), matrix, text=text)
    from envbuilder.model.gpu_table import best_named, match_name

    found = match_name(matrix.gpu_table(), text)
    if not found.exact:
        _unsupported(text)  # only when no product is named exactly so ("Tesla M4" is not Apple's M4)
    if not found.products:
        msg = f"--gpu {text!r}: no GPU of that name in the matrix"
        raise TargetError(msg, hint=_TIP_CC)
    by_cc = _by_cc(found.products, matrix)
    if len(by_cc) > 1:
        msg = f"--gpu {text!r} is ambiguous: {_candidates(by_cc, matrix)}"
        raise TargetError(msg, hint="give the full product name, its PCI id or the compute capability (e.g. sm_89)")
    (products,) = by_cc.values()
    return _gpu_of(text, best_named(products, text), products, matrix)


def gpu_from_pci_id(vendor: str | int, device: str | int, matrix: Matrix, *, text: str | None = None) -> Gpu:
    """The GPU a PCI vendor and device id names (``"10de", "28a1"``; ints or ``0x`` strings too), from the PCI
    ID database and the chip rules; refused with the reason when it is not an NVIDIA GPU the matrix knows."""
    ven, dev = (_hex4(v) for v in (vendor, device))
    shown = text or f"{ven}:{dev}"
    if ven != "10de":
        msg = f"--gpu {shown!r}: PCI vendor {ven} is not NVIDIA (10de)"
        raise TargetError(msg, hint="name an NVIDIA GPU (sm_89, 8.9, 'RTX 4090', 10de:2684), or use --gpu cpu")
    table = matrix.gpu_table()
    product = table.by_device.get(dev)
    if product is None:
        msg = f"--gpu {shown!r}: 10de:{dev} is not a GPU of the PCI ID database {table.version or ''}".rstrip()
        hint = f"refresh the GPU table (envbuilder matrix refresh --pci-ids), or {_TIP_CC.split(' ', 1)[1]}"
        raise TargetError(msg, hint=hint)
    return _gpu_of(shown, product, (product,), matrix)


def _hex4(value: str | int) -> str:
    text = f"{value:04x}" if isinstance(value, int) else str(value).strip().lower().removeprefix("0x")
    if not re.fullmatch(r"[0-9a-f]{4}", text, re.ASCII):
        msg = f"--gpu: {value!r} is not a 4-digit PCI id"
        raise TargetError(msg, hint="write it as lspci -nn prints it, e.g. 10de:28a1")
    return text


def _by_cc(products: Sequence[Product], matrix: Matrix) -> dict[str | None, list[Product]]:
    """The candidates by compute capability; an unknown one (a die no rule knows) is a group of its own.

    Where a name covers one architecture of the matrix and otherwise only dies no CUDA toolkit of the matrix
    targets (the database lists a Kepler "GeForce GT 1030" beside NVIDIA's Pascal one), it means the one that
    can be planned for: no plan could serve the others, so nothing that would have worked is lost.
    """
    groups: dict[str | None, list[Product]] = {}
    for product in products:
        groups.setdefault(product.cc, []).append(product)
    served = {cc: group for cc, group in groups.items() if cc is None or matrix.arch(cc) is not None}
    return served if len(served) == 1 and None not in served else groups


def _candidates(by_cc: Mapping[str | None, Sequence[Product]], matrix: Matrix) -> str:
    parts = []
    for cc in sorted(by_cc, key=lambda c: Version(c) if c else Version("0")):
        names = list(dict.fromkeys(p.name for p in by_cc[cc]))
        more = f" (+{len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
        what = f"sm_{cc.replace('.', '')} ({matrix.cc_name(cc) or 'unknown'})" if cc else "compute capability unknown"
        parts.append(f"{what}: {', '.join(names[:_SHOWN])}{more}")
    return "; ".join(parts)


def _gpu_of(text: str, product: Product, same: Sequence[Product], matrix: Matrix) -> Gpu:
    """The Gpu for a product (``same``: every candidate of its compute capability, for the segment)."""
    where = _where(product)
    if product.cc is None:
        msg = f"--gpu {text!r}: {where} is a chip no chip rule knows, so its compute capability is unknown"
        raise TargetError(msg, hint=f"{_TIP_CC}, or add the chip to matrices/gpu-chips.toml")
    arch = matrix.arch(product.cc)
    if arch is None:
        name = matrix.cc_name(product.cc)
        msg = (
            f"--gpu {text!r}: {where} has compute capability {product.cc}"
            f"{f' ({name})' if name else ''}, which is not in the matrix"
        )
        raise TargetError(msg, hint=_known(matrix))
    _refuse_tegra(text, arch)
    segments = {p.segment for p in same}
    return Gpu(cc=arch.cc, product=product.name, segment=segments.pop() if len(segments) == 1 else None)


def _where(product: Product) -> str:
    """'GeForce GTX 680 (GK104, 10de:1180)'; a database entry without a marketing name is its chip alone."""
    if product.chip is None:
        return product.name
    if product.name == product.label:
        return f"{product.chip} ({product.pci_id})"
    return f"{product.name} ({product.chip}, {product.pci_id})"


def _known(matrix: Matrix) -> str:
    return "known architectures: " + ", ".join(a.sm for a in matrix.archs)


def _refuse_tegra(text: str, arch: Arch) -> None:
    if arch.tegra:
        msg = f"--gpu {text!r}: {arch.sm} ({arch.name}) is a Jetson/Tegra SoC, which is not supported"
        raise TargetError(msg, hint="Jetson needs NVIDIA's JetPack wheels or a build on the device")


def identify_name(name: str, matrix: Matrix) -> tuple[Product, ...]:
    """For a detected GPU: the products its name may be, by the same rule as ``parse_gpu`` (one compute
    capability where only one can be planned for); empty if none. Never raises."""
    from envbuilder.model.gpu_table import match_name

    groups = _by_cc(match_name(matrix.gpu_table(), name).products, matrix)
    return tuple(p for group in groups.values() for p in group)


def cc_of_name(name: str, matrix: Matrix) -> str:
    """The one compute capability a product name means (a driver's name of a GPU no tool reported), or ""."""
    ccs = {p.cc for p in identify_name(name, matrix)}
    return ccs.pop() or "" if len(ccs) == 1 else ""


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
    version = driver_version(text)
    if version is None:
        msg = f"--driver {text.strip()!r} is not an NVIDIA driver version"
        raise TargetError(msg, hint="write it as nvidia-smi prints it, e.g. 550.54.14 (Linux) or 576.02 (Windows)")
    return version


def parse_python(text: str) -> str:
    match = re.match(_PYTHON, text.strip())
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


def parse_profile(text: str, matrix: Matrix) -> ProfileName:
    value = text.strip().lower()
    found = next((p.name for p in matrix.profiles if p.name == value), None)
    if found is None:
        msg = f"--profile {text!r} is not one of: {', '.join(p.name for p in matrix.profiles)}"
        raise TargetError(msg, hint="bnb (bitsandbytes/QLoRA), gptq, awq or cpu")
    return found


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
