"""Checkpoint formats (pure): which a profile loads and makes, and what transformers demands to load one.

The facts are data: ``[[profile.formats]]`` in profiles.toml (per profile and format: loads, makes, CPU path,
through what) and quantizers.toml (what transformers' quantizer for a ``quant_method`` checks before
``from_pretrained`` loads it, with its messages verbatim). The rules here are the one home of "does this set of
pins load that format" and "which profile loads it": the resolver, ``resolve``/``list``, the README's table and
the doctor all call them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

from packaging.version import InvalidVersion, Version

from envbuilder.model.matrix import QUANT_METHODS, Matrix, Profile, ProfileFormat, Quantizer

__all__ = [
    "FORMAT_LABELS",
    "FormatSummary",
    "format_table",
    "formats_line",
    "loader_unmet",
    "message_head",
    "ordered",
    "profiles_that_load",
    "profiles_that_make",
    "quantizer_error",
    "quantizer_errors",
    "quantizer_for",
    "summary",
]

# How the README and the console name each quant_method (transformers' own key is in --json)
FORMAT_LABELS: Mapping[str, str] = {
    "gptq": "GPTQ",
    "awq": "AWQ",
    "compressed-tensors": "compressed-tensors",
    "bitsandbytes_4bit": "bitsandbytes 4-bit",
    "bitsandbytes_8bit": "bitsandbytes 8-bit",
}


def _bare(version: str) -> str:
    return version.split("+", 1)[0]


def quantizer_for(matrix: Matrix, method: str, transformers: str) -> Quantizer | None:
    """The quantizers.toml row for ``method`` whose transformers range holds ``transformers`` (None: not read)."""
    try:
        Version(_bare(transformers))
    except InvalidVersion:
        return None
    return next(
        (q for q in matrix.quantizers if q.method == method and q.transformers.contains(_bare(transformers))), None
    )


def loader_unmet(quantizer: Quantizer, pins: Mapping[str, str]) -> tuple[str, ...]:
    """Each of the quantizer's requirements that ``pins`` (name -> version) do not meet, as text; () when all hold.

    ``requires``: every one must be installed (an empty specifier: any version); ``one_of``: at least one."""
    unmet = []
    for name, spec in quantizer.requires.items():
        have = pins.get(name)
        if have is None:
            unmet.append(f"{name}{spec} is not installed")
        elif not spec.contains(_bare(have), prereleases=True):
            unmet.append(f"{name} {have} is not {spec}")
    if quantizer.one_of and not any(
        name in pins and spec.contains(_bare(pins[name]), prereleases=True) for name, spec in quantizer.one_of.items()
    ):
        unmet.append("none of " + ", ".join(f"{n}{s}" for n, s in quantizer.one_of.items()) + " is installed")
    return tuple(unmet)


def message_head(message: str) -> str:
    """A recorded message up to where transformers formats in a value (" (", a backquote, ". Please"): the part
    that appears verbatim in every log of it."""
    return re.split(r" \(|`|\. Please", message, maxsplit=1)[0].strip()


def quantizer_errors(text: str, matrix: Matrix) -> Iterator[tuple[Quantizer, str, str]]:
    """Each quantizers.toml message whose head (``message_head``, at least 20 characters: shorter ones are too
    common to be evidence) occurs in ``text`` (a log, a smoke stage's error), the first in the text first (the
    first load that failed): the row, the message, its head. What transformers refused to load; the doctor
    answers it with ``profiles_that_load``."""
    found = []
    for q in matrix.quantizers:
        for message in q.errors:
            head = message_head(message)
            if len(head) >= 20 and head in text:
                found.append((text.find(head), q, message, head))
    for _at, q, message, head in sorted(found, key=lambda f: f[0]):  # stable: matrix order among equals
        yield q, message, head


def quantizer_error(text: str, matrix: Matrix) -> tuple[Quantizer, str] | None:
    """The first of ``quantizer_errors``: the row and its message (None: transformers refused nothing known)."""
    found = next(quantizer_errors(text, matrix), None)
    return (found[0], found[1]) if found else None


def profiles_that_load(fmt: str, matrix: Matrix) -> tuple[str, ...]:
    """The profiles whose environments load checkpoints of ``fmt`` (a quant_method), in matrix order."""
    return tuple(p.name for p in matrix.profiles if any(f.format == fmt and f.load for f in p.formats))


def profiles_that_make(fmt: str, matrix: Matrix) -> tuple[str, ...]:
    """The profiles whose environments make (quantize and save) checkpoints of ``fmt``."""
    return tuple(p.name for p in matrix.profiles if any(f.format == fmt and f.make for f in p.formats))


@dataclass(frozen=True, slots=True, kw_only=True)
class FormatSummary:
    """What one profile does with the formats: the quant_methods it loads and makes, and their CPU paths."""

    profile: str
    loads: tuple[str, ...]
    makes: tuple[str, ...]
    cpu_proven: tuple[str, ...]  # loads and ran on a CPU host (tests/fixtures/quant-load, the smoke stage)
    no_cpu: tuple[str, ...]  # loads, but not on a CPU


def summary(profile: Profile) -> FormatSummary:
    rows = ordered(profile.formats)
    return FormatSummary(
        profile=profile.name,
        loads=tuple(f.format for f in rows if f.load),
        makes=tuple(f.format for f in rows if f.make),
        cpu_proven=tuple(f.format for f in rows if f.load and f.cpu == "proven"),
        no_cpu=tuple(f.format for f in rows if f.load and f.cpu == "no"),
    )


def _labels(methods: Sequence[str]) -> str:
    return ", ".join(FORMAT_LABELS.get(m, m) for m in methods) or "none"


def formats_line(rows: Sequence[ProfileFormat]) -> str:
    """One line for the console: ``loads GPTQ, AWQ; makes GPTQ, AWQ``."""
    rows = ordered(rows)
    loads = [f.format for f in rows if f.load]
    makes = [f.format for f in rows if f.make]
    return f"loads {_labels(loads)}; makes {_labels(makes)}"


def ordered(rows: Sequence[ProfileFormat]) -> tuple[ProfileFormat, ...]:
    """The rows in one order everywhere (QUANT_METHODS: GPTQ, AWQ, compressed-tensors, bitsandbytes 4/8-bit)."""
    return tuple(sorted(rows, key=lambda f: QUANT_METHODS.index(f.format)))


def _cell(f: ProfileFormat | None) -> str:
    if f is None:
        return "?"
    what = "load + make" if f.load and f.make else "load" if f.load else "make" if f.make else "no"
    if f.load and f.cpu == "proven":
        what += " (CPU run)"
    elif f.load and f.cpu == "no":
        what += " (GPU only)"
    return what


def format_table(matrix: Matrix) -> str:
    """The README's table (Markdown), generated from profiles.toml: tests/test_readme.py keeps them equal."""
    head = "| profile | " + " | ".join(FORMAT_LABELS[m] for m in QUANT_METHODS) + " |"
    lines = [head, "| --- |" + " --- |" * len(QUANT_METHODS)]
    for p in matrix.profiles:
        by: dict[str, ProfileFormat] = {f.format: f for f in p.formats}
        lines.append(f"| {p.name} | " + " | ".join(_cell(by.get(m)) for m in QUANT_METHODS) + " |")
    return "\n".join(lines) + "\n"
