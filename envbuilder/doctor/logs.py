"""Reading pasted logs and tracebacks: quote the line that shows a problem, and pull out the facts they state.

Pure functions over text. Logs come from anywhere (``python -m bitsandbytes``, a transformers traceback, a
journal with timestamps), so matching is per line and tolerant of prefixes.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_QUOTE = 300
# A log above this size is first reduced to the lines any rule can read (``relevant_lines``); the fixtures and
# the logs users paste are far below it and reach the rules whole.
BIG_LOG = 256 * 1024
# What facts_from_log reads: every line it can match holds one of these (lower case; tests/test_fuzz.py checks
# each pattern against strings generated from it).
FACT_TRIGGERS = (
    "bitsandbytes",
    "torch",
    "cuda",
    "+cu",
    "capability",
    "total capacity",
    ":\\",
    ".dll",
    "windowspath",
    "aarch64",
    "tegra",
    "jetson",
    "l4t",
)


def quote(text: str, pattern: str | re.Pattern[str]) -> tuple[str, re.Match[str]] | None:
    """The first line matching ``pattern`` (stripped, shortened) and its match, or None.

    Searched at C speed over the whole text, each hit then checked on its own line, which gives the same first
    line as trying line by line (a Python loop over every line for each of forty patterns, the cost that made
    a 10 MB log take seconds). Text with other line separators than newline, and patterns whose meaning
    depends on what lies beyond a line, take the plain line-by-line way.
    """
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern
    if _LINEWISE.search(rx.pattern) or _OTHER_SEPARATORS.search(text):
        return _quote_linewise(text, rx)
    whole = _multiline(rx)
    at = 0
    while (hit := whole.search(text, at)) is not None:
        start = text.rfind("\n", 0, hit.start()) + 1
        end = text.find("\n", hit.start())
        end = len(text) if end == -1 else end
        line = text[start:end]
        m = rx.search(line)
        if m:
            return _shortened(line), m
        at = end + 1
        if at > len(text):
            break
    return None


# Patterns that look beyond a line (lookarounds, string anchors), and separators str.splitlines() knows besides
# the newline: with either, a hit in the whole text and a match on the line could disagree.
_LINEWISE = re.compile(r"\(\?<?[=!]|\\[AZ]")
_OTHER_SEPARATORS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


@functools.lru_cache(maxsize=256)
def _multiline(rx: re.Pattern[str]) -> re.Pattern[str]:
    return re.compile(rx.pattern, rx.flags | re.MULTILINE)


def _quote_linewise(text: str, rx: re.Pattern[str]) -> tuple[str, re.Match[str]] | None:
    for line in text.splitlines():
        m = rx.search(line)
        if m:
            return _shortened(line), m
    return None


def _shortened(line: str) -> str:
    s = line.strip()
    return s if len(s) <= MAX_QUOTE else s[: MAX_QUOTE - 3] + "..."


@dataclass(frozen=True, slots=True, kw_only=True)
class LogFacts:
    """What a log says about the environment it came from (None where it does not say)."""

    bnb: str | None = None
    torch: str | None = None
    torch_cuda: str | None = None  # "12.4"
    wanted_lib_cuda: str | None = None  # the CUDA of the libbitsandbytes_cudaXYZ the log names
    sm: str | None = None  # "12.0", from torch's "capability sm_120" warning or bnb's diagnostics
    vram_gib: float | None = None
    windows: bool = False
    aarch64: bool = False


def _first(text: str, *patterns: str) -> str | None:
    for p in patterns:
        m = re.search(p, text)
        if m:
            return m.group(1)
    return None


def _cuda_digits(digits: str | None) -> str | None:
    """'124' -> '12.4', '118' -> '11.8'."""
    return f"{digits[:-1]}.{digits[-1]}" if digits and len(digits) >= 2 else None


def _sm_to_cc(sm: str | None) -> str | None:
    return f"{sm[:-1]}.{sm[-1]}" if sm else None


def relevant_lines(text: str, triggers: Iterable[str]) -> str:
    """The distinct lines of ``text`` that hold a trigger (any case), in order of first appearance.

    One pass splits the log into lines and drops repeats (a training log repeats its progress and warning lines
    thousands of times; the rules quote the first line that matches, which a repeat never is); each trigger is
    then found at C speed in the distinct lines, so the rules' forty patterns read a few lines instead of a
    10 MB text forty times. Every pattern a rule uses has a trigger on each line it can match (tested).
    """
    distinct = list(dict.fromkeys(text.splitlines()))
    blob = "\n".join(distinct)
    low = blob.lower()
    if len(low) != len(blob):  # a few non-ASCII letters lower to two characters: lower the ASCII ones only
        low = blob.translate(_ASCII_LOWER)
    starts = list(itertools.accumulate((len(line) + 1 for line in distinct[:-1]), initial=0))
    keep: set[int] = set()
    for trigger in dict.fromkeys(t.lower() for t in triggers):
        at = low.find(trigger)
        while at != -1:
            line = bisect.bisect_right(starts, at) - 1
            keep.add(line)
            end = starts[line + 1] if line + 1 < len(starts) else len(low)
            at = low.find(trigger, end)
    return "\n".join(distinct[i] for i in sorted(keep))


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


# What facts_from_log looks for, fact by fact: the first pattern that matches gives the value (group 1).
FACT_PATTERNS: dict[str, tuple[str, ...]] = {
    "vram": (r"(\d+(?:\.\d+)?) GiB total capacity", r"total capacity of (\d+(?:\.\d+)?) GiB"),
    "cc": (r"Highest Compute Capability: \((\d+, \d+)\)", r"highest_compute_capability=\((\d+, \d+)\)"),
    "bnb": (
        r"bitsandbytes v(\d+\.\d+\.\d+)",
        r"bitsandbytes-(\d+\.\d+\.\d+)",
        r"(?m)^bitsandbytes[ \t]+(\d+\.\d+\.\d+)[ \t\r]*$",
        r"bitsandbytes==(\d+\.\d+\.\d+)",
    ),
    "torch": (
        r"PyTorch: (\d+\.\d+\.\d+\S*)",
        r"(?m)^torch[ \t]+(\d+\.\d+\.\d+\S*)[ \t\r]*$",
        r"PyTorch version: (\d+\.\d+\.\d+\S*)",
    ),
    "torch_cuda": (r"PyTorch settings found: CUDA_VERSION=(\d{3})", r"cuda_version_string='(\d{3})'", r"\+cu(\d{3})\b"),
    "wanted_lib_cuda": (r"libbitsandbytes_cuda(\d{3})",),
    "sm": (r"capability sm_(\d+)",),
    "windows": (r"[A-Za-z]:\\|\.dll\b|WindowsPath",),
    "aarch64": (r"(?i)aarch64|tegra|jetson|L4T",),
}


@functools.lru_cache(maxsize=4)
def facts_from_log(text: str) -> LogFacts:
    """The versions, CUDA, GPU and VRAM a log mentions (kept for the last few texts: a dozen rules ask)."""
    vram = _first(text, *FACT_PATTERNS["vram"])
    cc = _first(text, *FACT_PATTERNS["cc"])
    return LogFacts(
        bnb=_first(text, *FACT_PATTERNS["bnb"]),
        torch=_first(text, *FACT_PATTERNS["torch"]),
        torch_cuda=_cuda_digits(_first(text, *FACT_PATTERNS["torch_cuda"])),
        wanted_lib_cuda=_cuda_digits(_first(text, *FACT_PATTERNS["wanted_lib_cuda"])),
        sm=_sm_to_cc(_first(text, *FACT_PATTERNS["sm"])) or (cc.replace(", ", ".") if cc else None),
        vram_gib=float(vram) if vram else None,
        windows=bool(re.search(FACT_PATTERNS["windows"][0], text)),
        aarch64=bool(re.search(FACT_PATTERNS["aarch64"][0], text)),
    )


def max_memory_for(vram_gib: float, headroom: float = 0.15) -> str:
    """A ``max_memory`` budget that leaves ``headroom`` of the card for the 4-bit conversion buffers."""
    return f"{int(vram_gib * (1 - headroom))}GiB"
