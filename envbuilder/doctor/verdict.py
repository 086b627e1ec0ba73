"""One answer from the findings: broken (exit 1), not recognised (exit 1), outside the stack or healthy (exit 0).

An error no rule explains is never "healthy". When the failing line, or the frames just above it, involve the
stack (CUDA, the driver, torch, bitsandbytes, GPTQ/AWQ, the companions), the verdict is "not recognised": it
shows what was extracted and where to look next, and exits 1. When they plainly do not, the stack looks fine
and the error is outside it (exit 0).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from envbuilder.doctor import Evidence, Finding, Layer
from envbuilder.doctor.logs import quote
from envbuilder.doctor.plan import ASK_ENV, ASK_GPU

__all__ = [
    "CONTEXT_LINES",
    "ERROR_LINE",
    "STACK",
    "TRIGGERS",
    "Kind",
    "Verdict",
    "extracted",
    "look_next",
    "verdict",
]

Kind = Literal["broken", "not-recognised", "outside", "healthy"]
# Every line ERROR_LINE can match holds one of these (a big log is reduced to such lines: doctor.logs).
TRIGGERS = ("error", "exception", "exit", "traceback", "failed", "killed")

# A line that reports a failure: an exception, an error line of a build or a CUDA kernel, a killed process.
ERROR_LINE = re.compile(
    r"^\W{0,4}(?:[\w.]+\.)?\w*(?:Error|Exception|Exit)\b[:(]|Traceback \(most recent call last\)|"
    r"(?i:\berror:|\bfailed\b|\bkilled\b)|^Error \w"
)
# Words that tie a failing line (or the frames just above it) to the stack this tool builds.
STACK = re.compile(
    r"(?i)cuda|nvidia|driver|torch|bitsandbytes|\bbnb\b|gptq|\bawq|exllama|triton|accelerate|peft|"
    r"transformers|optimum|compressed.tensors|llmcompressor|\blib\w+\.so\b|\.dll\b|nvcc|cublas|cudnn|\bgpu\b|sm_\d+"
)
CONTEXT_LINES = 6  # frames above the error line that still count as its context


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    kind: Kind
    layer: Layer | None
    cause: str
    fix: str
    seen: str = ""
    extracted: tuple[str, ...] = ()  # what the evidence holds, for "not recognised"

    @property
    def ok(self) -> bool:
        return self.kind in ("outside", "healthy")

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "layer": self.layer,
            "seen": self.seen,
            "cause": self.cause,
            "fix": self.fix,
            "extracted": list(self.extracted),
        }


def verdict(findings: Sequence[Finding], facts: Evidence, text: str) -> Verdict:
    """Pure: the answer the findings (and the text they were read from) give."""
    fail = next((f for f in findings if f.severity == "FAIL"), None)
    if fail is not None:
        return Verdict(kind="broken", layer=fail.layer, cause=fail.cause, fix=fail.fix, seen=fail.seen)
    outside = next((f for f in findings if f.layer == "outside"), None)
    if outside is not None:
        return Verdict(
            kind="outside",
            layer="outside",
            cause=f"the stack looks fine; the error is outside it: {outside.cause}",
            fix=outside.fix,
            seen=outside.seen,
        )
    error = _error_line(text)
    notes = [f for f in findings if f.severity in ("WARN", "INFO")]
    if error is not None and not any(f.seen and f.seen in error for f in notes):
        if _stack_related(text, error):
            return Verdict(
                kind="not-recognised",
                layer=None,
                cause=f"not recognised: no rule explains this error in the stack: {error}",
                fix=look_next(facts),
                seen=error,
                extracted=extracted(facts),
            )
        return Verdict(
            kind="outside",
            layer="outside",
            cause=f"the stack looks fine; the error is outside it (nothing of CUDA, torch or the quantization "
            f"libraries in it): {error}",
            fix="look at the code, data or model files the traceback names",
            seen=error,
        )
    if notes:
        first = notes[0]
        cause = first.cause if first.all_clear else f"the stack looks fine; note: {first.cause}"
        return Verdict(kind="healthy", layer="healthy", cause=cause, fix=first.fix, seen=first.seen)
    return Verdict(kind="healthy", layer="healthy", cause="the stack looks fine: no error in the text", fix="")


def _error_line(text: str) -> str | None:
    hit = quote(text, ERROR_LINE)
    if hit is None:
        return None
    # the last error line is the one that ended the run (a traceback's first line is only its start): looked
    # for from the end, so a big log's lines are not all searched
    last = next((ln for ln in reversed(text.splitlines()) if "Traceback" not in ln and ERROR_LINE.search(ln)), None)
    return last.strip()[:300] if last is not None else hit[0]


def _stack_related(text: str, error: str) -> bool:
    if STACK.search(error):
        return True
    lines = text.splitlines()
    at = next((i for i in range(len(lines) - 1, -1, -1) if error[:60] in lines[i]), None)
    if at is None:
        return False
    return any(STACK.search(line) for line in lines[max(0, at - CONTEXT_LINES) : at])


def extracted(ev: Evidence) -> tuple[str, ...]:
    """The facts the evidence holds, one "name: value" each (what the doctor saw)."""
    pairs: list[tuple[str, object]] = [
        ("python", ev.python),
        ("platform", ev.platform if ev.system else None),
        ("wsl2", "yes" if ev.wsl else None),
        ("torch", ev.torch),
        ("torch CUDA", ev.torch_cuda),
        ("driver", ev.driver),
        ("driver's CUDA", ev.driver_cuda),
        ("toolkit CUDA", ev.toolkit_cuda),
        ("bitsandbytes", ev.bnb),
        ("GPUs", ", ".join(f"{d.name or '?'} ({d.cc or 'cc ?'})" for d in ev.devices)),
        ("packages", ", ".join(f"{k} {v}" for k, v in sorted(ev.packages.items()))),
        ("failed to load", ", ".join(ev.failed_libs + ev.failed_modules)),
        ("undefined symbols", ", ".join(s[:60] for s in ev.symbols)),
        ("building", ", ".join(ev.building)),
    ]
    return tuple(f"{k}: {v}" for k, v in pairs if v)


def look_next(ev: Evidence) -> str:
    """Where to look next, from what is missing."""
    steps = []
    if not ev.torch or not ev.devices:
        steps.append(f"run `{ASK_ENV}` on the environment that failed (it probes torch, CUDA, bitsandbytes, GPUs)")
    if not ev.driver:
        steps.append(f"`{ASK_GPU}` for the GPU and driver")
    steps.append("search the last error line in the failing package's issue tracker")
    return "; ".join(steps)
