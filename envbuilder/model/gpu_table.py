"""Every NVIDIA GPU by name: the product table built from the PCI ID database, and the name matcher.

Pure: the caller hands in the database's NVIDIA devices (``pci_ids.PciIds``), the chip rules (chip -> compute
capability, from ``matrices/gpu-chips.toml``), the segment patterns and the products the matrix names by hand
(Jetson modules, which are not PCI devices); this module builds a ``GpuTable`` and matches names against it.

A device's chip is the first word of its database name (``AD107M [GeForce RTX 4050 Max-Q / Mobile]``): the
die (``AD107``) plus a variant suffix (``M`` mobile, ``GL`` professional, ``GLM``, ``BM``), which never changes
the compute capability. Names are compared as sets of tokens after dropping what nvidia-smi, the database and
users add or leave out freely (vendor words, memory sizes and kinds, form factors, "Laptop GPU" = "Mobile" =
"Max-Q"), so ``NVIDIA GeForce RTX 4050 Laptop GPU``, ``GeForce RTX 4050 Max-Q / Mobile`` and ``4050 laptop`` meet.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from envbuilder.model.pci_ids import PciIds, render

__all__ = [
    "CHIP_SUFFIXES",
    "GPU_CHIP",
    "NOT_A_GPU",
    "SEGMENT_ORDER",
    "GpuTable",
    "HandProduct",
    "IdsChange",
    "NameMatch",
    "Product",
    "alternatives",
    "best_named",
    "build_table",
    "chip_of",
    "chip_rule",
    "compare_ids",
    "gpu_devices",
    "is_gpu",
    "match_name",
    "render_ids",
    "segment_of",
    "tokens",
    "version_key",
]

# Fermi and later dies (older GPUs have no CUDA build any current toolkit targets, and nvidia-smi names them
# only on legacy drivers). Functions on the same boards (HDMI audio, USB-C, NVSwitch, bridges) are not GPUs.
GPU_CHIP = re.compile(r"^(?:GF|GK|GM|GP|GV|TU|GA|AD|GH|GB|GR)\d{2,3}[A-Z]*$")
NOT_A_GPU = re.compile(r"\b(?:audio|usb|ucsi|nvswitch|bridge|host|root|sata|smbus|ethernet)\b", re.IGNORECASE)
# Variant suffixes of a die in the database's chip names, longest first: GK110BGL -> GK110B, GA107BM -> GA107.
CHIP_SUFFIXES = ("GLM", "GLN", "GLT", "GL", "BM", "M")
SEGMENT_ORDER = ("jetson", "datacenter", "geforce", "workstation")  # first pattern that matches wins

_NOISE = frozenset(  # vendor words and words nvidia-smi or the database add or leave out freely
    (
        *("nvidia", "geforce", "tesla", "grid", "vgpu", "gpu", "graphics", "design", "with", "generation"),
        *("edition", "engineering", "sample", "oem", "lite", "hash", "rate", "lhr", "pcie", "pci", "sxm"),
        *("dgxs", "fhhl"),
    )
)
# Memory sizes and kinds, form factors: "80gb", "144g", "hbm3e", "gddr6x", "sxm5", "nvl16".
_NOISE_TOKEN = re.compile(r"^(?:\d+(?:gb|g|mb)|hbm\d*e?|gddr\d+x?|sxm\d*|nvl\d*)$")
_SYNONYMS = {"laptop": "mobile", "maxq": "mobile"}
_VARIANT_WORDS = frozenset({"mobile", "refresh"})
_RAW_EDITS = (
    (re.compile(r"-\d{1,3}[qabc]\b"), " "),  # vGPU profiles: "NVIDIA A40-48Q"
    (re.compile(r"\brev\.?\s*[a-z0-9]+\b"), " "),  # board revisions: "RTX 2080 Rev. A"
    (re.compile(r"max-q"), " maxq "),
    (re.compile(r"\brtx(\d{4})p?\b"), r"rtx \1"),  # GRID board names: "GRID RTX8000P-6Q"
    (re.compile(r"(\d)(ti|super)\b"), r"\1 \2"),  # "RTX 3050Ti Laptop GPU" (NVIDIA's own spelling of 25a0)
    (re.compile(r"\b(\d{3,4})/(\d{3,4})\b"), r"\1 / \2"),  # "Quadro RTX 6000/8000": two products
)
_LABEL = re.compile(r"^\s*(\S+)(?:\s*/\s*[^\[]*?)?\s*\[(.+)\]\s*$")


@dataclass(frozen=True, kw_only=True)
class Product:
    """One name a GPU goes by: a device of the PCI database, or a product the matrix names by hand.

    Its tokens and segment are worked out on first use: a lookup reads a handful of the two thousand devices.
    """

    label: str  # as its source prints it: "AD107M [GeForce RTX 4050 Max-Q / Mobile]", or "Jetson Orin Nano"
    name: str  # the marketing name(s): "GeForce RTX 4050 Max-Q / Mobile"
    chip: str | None  # "AD107M" (None for products named by hand)
    device: str | None  # PCI device id, "28a1"
    cc: str | None  # None: no chip rule knows this chip, so the compute capability is unknown
    source: str
    folded: str = ""  # the name in lower case, for the model-number prefilter of a lookup
    given_segment: str | None = None  # a product named by hand says its segment
    patterns: Mapping[str, re.Pattern[str]] = field(default_factory=dict, compare=False, repr=False)

    @functools.cached_property
    def keys(self) -> tuple[frozenset[str], ...]:
        """The token sets the product answers to (one per product a database entry stands for)."""
        if self.device is None:
            return (frozenset(tokens(self.name)),)
        return tuple(k for k in (frozenset(t) for t in alternatives(self.name)) if _has_model(k))

    @functools.cached_property
    def segment(self) -> str | None:
        return self.given_segment if self.device is None else segment_of(self.name, self.chip, self.patterns)

    @property
    def pci_id(self) -> str | None:
        return f"10de:{self.device}" if self.device else None


@dataclass(frozen=True, slots=True, kw_only=True)
class GpuTable:
    """The products, the database's version and date, and the chips no rule knows (with their devices)."""

    version: str | None
    date: str | None
    products: tuple[Product, ...]
    by_device: Mapping[str, Product]
    unknown_chips: Mapping[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class HandProduct:
    """A product the matrix names by hand (not a PCI device): its name, compute capability and segment."""

    name: str
    cc: str
    segment: str
    source: str


@dataclass(frozen=True, slots=True)
class NameMatch:
    """The products a name may mean; ``exact`` when one of them answers to exactly the name's tokens."""

    products: tuple[Product, ...]
    exact: bool


# --------------------------------------------------------------------------- chips and devices


def is_gpu(name: str) -> bool:
    """A database device name that names a GPU of Fermi or later (not an audio, USB or bridge function)."""
    return bool(GPU_CHIP.match(chip_of(name))) and not NOT_A_GPU.search(name)


def chip_of(name: str) -> str:
    """The chip word of a database name: 'GB203M / GN22 [GeForce RTX 5090 ...]' -> 'GB203M'."""
    return name.split("[", 1)[0].split(maxsplit=1)[0] if name.strip() else ""


def chip_rule(chip: str, rules: Mapping[str, str]) -> str | None:
    """The die in ``rules`` that ``chip`` is, with or without its variant suffix: 'AD107GLM' -> 'AD107'."""
    if chip in rules:
        return chip
    return next((chip[: -len(s)] for s in CHIP_SUFFIXES if chip.endswith(s) and chip[: -len(s)] in rules), None)


def gpu_devices(db: PciIds) -> list[tuple[str, str]]:
    """The devices of ``db`` that are GPUs, in database order (what ``matrices/nvidia.ids`` keeps)."""
    return [(device, name) for device, name in db.devices if is_gpu(name)]


def render_ids(db: PciIds) -> str:
    """``matrices/nvidia.ids``: the GPU devices of ``db`` in pci.ids format, with its version and date."""
    devices = gpu_devices(db)
    comments = (
        "The NVIDIA GPUs (Fermi and later) of the PCI ID database, https://pci-ids.ucw.cz/: generated by",
        "`envbuilder matrix refresh --pci-ids`; do not edit (lay an overlay with --matrix-dir instead).",
        f"{len(devices)} of the database's {len(db.devices)} NVIDIA devices: audio, USB, bridge and pre-Fermi",
        "entries are left out. Compute capabilities come from the chip rules of gpu-chips.toml.",
    )
    return render(db, devices, comments)


@dataclass(frozen=True, slots=True)
class IdsChange:
    """What a new database changes in the GPU table: devices added, removed, renamed (id, old, new)."""

    added: tuple[tuple[str, str], ...]
    removed: tuple[tuple[str, str], ...]
    renamed: tuple[tuple[str, str, str], ...]


def compare_ids(old: PciIds, new: PciIds) -> IdsChange:
    before, after = dict(gpu_devices(old)), dict(gpu_devices(new))
    return IdsChange(
        added=tuple((d, n) for d, n in after.items() if d not in before),
        removed=tuple((d, n) for d, n in before.items() if d not in after),
        renamed=tuple((d, before[d], n) for d, n in after.items() if d in before and before[d] != n),
    )


def version_key(version: str | None) -> tuple[int, ...]:
    """pci.ids versions are dates ("2026.10.24"); an unreadable one sorts first."""
    parts = (version or "").split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else ()


def segment_of(name: str, chip: str | None, patterns: Mapping[str, re.Pattern[str]]) -> str | None:
    """The product segment a name's pattern gives (``None`` when none matches: then nothing is assumed)."""
    text = f"{chip or ''} {name}"
    return next((s for s in SEGMENT_ORDER if s in patterns and patterns[s].search(text)), None)


def build_table(
    db: PciIds,
    rules: Mapping[str, str],
    patterns: Mapping[str, re.Pattern[str]],
    hand: Sequence[HandProduct] = (),
) -> GpuTable:
    """The product table: each device of ``db`` with its compute capability from ``rules`` (die -> cc).

    ``db`` holds GPUs only (``nvidia.ids`` is written so; filter a whole database with ``gpu_devices``).
    """
    source = f"pci.ids {db.version or 'unknown version'} ({db.date or 'undated'})"
    products: list[Product] = []
    unknown: dict[str, list[str]] = {}
    dies: dict[str, str | None] = {}  # a few hundred chips among two thousand devices
    for device, label in db.devices:
        chip = chip_of(label)
        die = dies[chip] if chip in dies else dies.setdefault(chip, chip_rule(chip, rules))
        if die is None:
            unknown.setdefault(chip, []).append(device)
        name = _bracket(label)
        products.append(
            Product(
                label=label,
                name=name,
                chip=chip,
                device=device,
                cc=rules[die] if die else None,
                source=source,
                folded=name.lower(),
                patterns=patterns,
            )
        )
    products += [
        Product(
            label=h.name,
            name=h.name,
            chip=None,
            device=None,
            cc=h.cc,
            source=h.source,
            folded=h.name.lower(),
            given_segment=h.segment,
        )
        for h in hand
    ]
    return GpuTable(
        version=db.version,
        date=db.date,
        products=tuple(products),
        by_device={p.device: p for p in products if p.device},
        unknown_chips={chip: tuple(devices) for chip, devices in unknown.items()},
    )


def _bracket(label: str) -> str:
    """The marketing names of a database entry ('GA102GL [A10G]' -> 'A10G'); the label itself if it has none."""
    start, end = label.find("["), label.rfind("]")
    return label[start + 1 : end].strip() if 0 <= start < end else label


# --------------------------------------------------------------------------- tokens


def tokens(text: str) -> list[str]:
    """The tokens that identify a product, in order: 'NVIDIA GeForce RTX 4050 Laptop GPU' -> rtx 4050 mobile."""
    raw = text.lower()
    for pattern, replacement in _RAW_EDITS:
        raw = pattern.sub(replacement, raw)
    out: list[str] = []
    for word in re.findall(r"[a-z0-9]+", raw):
        token = _SYNONYMS.get(word, word)
        if token not in _NOISE and not _NOISE_TOKEN.match(token) and token not in out:
            out.append(token)
    return out


def _has_model(tokens_: Iterable[str]) -> bool:
    """A model number is what names a GPU ('4090', 'a100', 'mx550', and TITAN's letters); words alone
    ('quadro', 'mobile') name none, so they match only a product named exactly so ('Jetson Orin Nano')."""
    return any(t == "titan" or any(c.isdigit() for c in t) for t in tokens_)


def _model_at(toks: Sequence[str]) -> int:
    return next((i for i, t in enumerate(toks) if _has_model((t,))), -1)


def alternatives(name: str) -> list[list[str]]:
    """The products a database name stands for: 'GeForce RTX 4050 Max-Q / Mobile' is two spellings of one,
    'A2 / A16' two products, 'RTX 2000 / 2000E Ada Generation' the RTX 2000 Ada and the RTX 2000E Ada."""
    parts = [tokens(p) for p in re.split(r"\s+/\s+", _RAW_EDITS[-1][0].sub(r"\1 / \2", name))]
    parts = [p for p in parts if p]
    if not parts:
        return []
    base, out = parts[0], []
    for part in parts[1:]:
        at = _model_at(part)
        if at < 0:  # variant words only ("Max-Q", "Mobile Refresh") replace the base's variant words
            stem = list(base)
            while stem and stem[-1] in _VARIANT_WORDS:
                stem.pop()
            out.append(stem + [t for t in part if t not in stem])
        elif at == 0:  # a model number with the base's prefix: "945M / 945A", "RTX 2000 / 2000E Ada"
            prefix = base[: max(_model_at(base), 0)]
            out.append(prefix + part)
            base_tail = base[_model_at(base) + 1 :] if _model_at(base) >= 0 else base
            if not base_tail and part[1:]:  # a suffix the base lacks is shared: "RTX 2000 ... Ada Generation"
                base = base + part[1:]
        else:
            out.append(part)
    return [base, *out]


# --------------------------------------------------------------------------- matching


def match_name(table: GpuTable, text: str) -> NameMatch:
    """The products ``text`` may mean: those answering to exactly its tokens; else those whose tokens all
    appear in it (the longest such: nvidia-smi adds memory sizes and form factors); else those that contain
    all of its tokens (a short name: '4050 laptop'). A database entry as the database prints it
    ('AD107M [GeForce RTX 4050 Max-Q / Mobile]') is looked up among that chip's devices."""
    label = _LABEL.match(text)
    if label:
        chip = label.group(1).upper()
        of_chip = [p for p in table.products if p.chip and p.chip.upper() == chip]
        if of_chip:
            wanted = " ".join(label.group(2).split()).casefold()
            same = tuple(p for p in of_chip if " ".join(p.name.split()).casefold() == wanted)
            return NameMatch(same, True) if same else _match_tokens(of_chip, label.group(2))
    return _match_tokens(table.products, text)


def _match_tokens(products: Sequence[Product], text: str) -> NameMatch:
    query = frozenset(tokens(text))
    # A product can answer only if it shares a model number with the query (every key has one), and a
    # model number is always a substring of the name it came from: read the tokens of those products only.
    models = [t for t in query if _has_model((t,))]
    if len(models) > 1:  # rare ("CMP 100-210"): keep the table's order
        hit = {id(p) for m in models for p in products if m in p.folded}
        products = [p for p in products if p.device is None or id(p) in hit]
    else:
        model = models[0] if models else None  # none: only the products named by hand can answer exactly
        products = [p for p in products if p.device is None or (model is not None and model in p.folded)]
    exact = _unique(p for p in products if query in p.keys)
    if exact:
        return NameMatch(exact, True)
    if not _has_model(query):
        return NameMatch((), False)
    inside = [(len(k), p) for p in products for k in p.keys if k < query]
    if inside:
        longest = max(n for n, _ in inside)
        return NameMatch(_unique(p for n, p in inside if n == longest), False)
    return NameMatch(_unique(p for p in products if any(query < k for k in p.keys)), False)


def _unique(products: Iterable[Product]) -> tuple[Product, ...]:
    return tuple({id(p): p for p in products}.values())


def best_named(products: Sequence[Product], text: str) -> Product:
    """The product whose name shares most words with ``text`` ('A100-SXM4-80GB' -> 'A100 SXM4 80GB'), then
    the one with the fewest other words, then the lowest device id: one stable choice among equals."""
    words = set(re.findall(r"[a-z0-9]+", text.lower()))

    def rank(p: Product) -> tuple[int, int, str]:
        own = set(re.findall(r"[a-z0-9]+", p.name.lower()))
        return (-len(words & own), len(own - words), p.device or "")

    return min(products, key=rank)
