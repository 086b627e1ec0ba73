"""Reading pasted logs and tracebacks: quote the line that shows a problem, and pull out the facts they state.

Pure functions over text. Logs come from anywhere (``python -m bitsandbytes``, a transformers traceback, a
journal with timestamps), so matching is per line and tolerant of prefixes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_QUOTE = 300


def quote(text: str, pattern: str | re.Pattern[str]) -> tuple[str, re.Match[str]] | None:
    """The first line matching ``pattern`` (stripped, shortened) and its match, or None."""
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern
    for line in text.splitlines():
        m = rx.search(line)
        if m:
            s = line.strip()
            return (s if len(s) <= MAX_QUOTE else s[: MAX_QUOTE - 3] + "..."), m
    return None


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


def facts_from_log(text: str) -> LogFacts:
    """The versions, CUDA, GPU and VRAM a log mentions."""
    vram = _first(text, r"([\d.]+) GiB total capacity", r"total capacity of ([\d.]+) GiB")
    cc = _first(text, r"Highest Compute Capability: \((\d+, \d+)\)", r"highest_compute_capability=\((\d+, \d+)\)")
    return LogFacts(
        bnb=_first(
            text,
            r"bitsandbytes v(\d+\.\d+\.\d+)",
            r"bitsandbytes-(\d+\.\d+\.\d+)",
            r"(?m)^bitsandbytes\s+(\d+\.\d+\.\d+)\s*$",
            r"bitsandbytes==(\d+\.\d+\.\d+)",
        ),
        torch=_first(
            text,
            r"PyTorch: (\d+\.\d+\.\d+\S*)",
            r"(?m)^torch\s+(\d+\.\d+\.\d+\S*)\s*$",
            r"PyTorch version: (\d+\.\d+\.\d+\S*)",
        ),
        torch_cuda=_cuda_digits(
            _first(
                text,
                r"PyTorch settings found: CUDA_VERSION=(\d{3})",
                r"cuda_version_string='(\d{3})'",
                r"\+cu(\d{3})\b",
            )
        ),
        wanted_lib_cuda=_cuda_digits(_first(text, r"libbitsandbytes_cuda(\d{3})")),
        sm=_sm_to_cc(_first(text, r"capability sm_(\d+)")) or (cc.replace(", ", ".") if cc else None),
        vram_gib=float(vram) if vram else None,
        windows=bool(re.search(r"[A-Za-z]:\\|\.dll\b|WindowsPath", text)),
        aarch64=bool(re.search(r"aarch64|tegra|jetson|L4T", text, re.IGNORECASE)),
    )


def max_memory_for(vram_gib: float, headroom: float = 0.15) -> str:
    """A ``max_memory`` budget that leaves ``headroom`` of the card for the 4-bit conversion buffers."""
    return f"{int(vram_gib * (1 - headroom))}GiB"
