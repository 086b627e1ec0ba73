"""The doctor: evidence from an environment or a pasted log -> rules -> findings (cause + exact fix).

Checks and findings are data (STYLE rule 9): nothing here prints. Rules live in modules listed in
``RULE_MODULES``; each such module exposes ``RULES``, a sequence of callables ``(Context) -> Iterable[Finding]``.
A teammate adds platform rules (e.g. ``envbuilder.doctor.rules_windows``) by adding one line there.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from envbuilder.matrix import Matrix
from envbuilder.model.smoke import SMOKE_SCHEMA, Check
from envbuilder.model.types import Severity, Status

__all__ = [
    "DOCTOR_SCHEMA",
    "RULE_MODULES",
    "SMOKE_SCHEMA",
    "Check",
    "Context",
    "Device",
    "Evidence",
    "Finding",
    "Rule",
    "Severity",
    "Status",
    "diagnose",
    "doctor_json",
    "finding",
    "load_rules",
    "load_triggers",
]

DOCTOR_SCHEMA = "envbuilder.doctor/1"
RULE_MODULES: tuple[str, ...] = (
    "envbuilder.doctor.rules_bnb",
    "envbuilder.doctor.rules_windows",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """A diagnosis: the line that shows it (quoted), the cause, and the exact fix.

    ``commands`` are argv lists ``doctor --fix`` may run (empty when the fix is manual, e.g. a shell variable).
    """

    rule: str
    severity: Severity
    seen: str
    cause: str
    fix: str
    commands: tuple[tuple[str, ...], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "seen": self.seen,
            "cause": self.cause,
            "fix": self.fix,
            "commands": [list(c) for c in self.commands],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    index: int
    name: str
    cc: str
    vram_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """What the light probe saw inside an environment (all optional: a failed import leaves gaps)."""

    python_exe: str | None = None
    python: str | None = None
    system: str | None = None
    machine: str | None = None
    libc: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    packages: Mapping[str, str] = field(default_factory=dict)
    torch: str | None = None
    torch_cuda: str | None = None
    arch_list: tuple[str, ...] = ()
    devices: tuple[Device, ...] = ()
    bnb: str | None = None
    bnb_lib: str | None = None  # the file name bitsandbytes loaded (or, light probe: would load), e.g. ..._cuda130.so
    bnb_lib_path: str | None = None
    bnb_shipped: tuple[str, ...] = ()
    bnb_imported: bool = True  # False: the light probe, which never imports bitsandbytes (see ``loader.judge``)
    bnb_candidate: Mapping[str, Any] | None = None  # the probe's loader-neutral pick and its dlopen result
    bnb_load_error: str | None = None  # light probe, judged: why the installed release loads no library
    text: str = ""  # every error and stderr the stages produced: what log rules also read
    checks: tuple[Check, ...] = ()

    @property
    def platform(self) -> str:
        """The matrix's platform key: linux-x86_64, windows-x86_64, ..."""
        system = (self.system or "linux").lower()
        machine = (self.machine or "x86_64").lower().replace("amd64", "x86_64").replace("arm64", "aarch64")
        if system == "windows":
            return "windows-arm64" if machine == "aarch64" else "windows-x86_64"
        return f"linux-{machine}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What a rule may read: the evidence (from an environment), the log text, the matrix, the env's python."""

    matrix: Matrix
    evidence: Evidence | None = None
    log: str = ""
    python: str | None = None  # the environment's interpreter, for `uv pip install --python` fixes
    ours: bool = False  # the environment carries envbuilder's marker

    @property
    def text(self) -> str:
        """Everything rules match text against: the pasted log plus errors the probe captured."""
        return "\n".join(t for t in (self.log, self.evidence.text if self.evidence else "") if t)


Rule = Callable[[Context], Iterable[Finding]]


def finding(
    rule: str, severity: Severity, seen: str, cause: str, fix: str, commands: tuple[tuple[str, ...], ...] = ()
) -> Finding:
    """A Finding from positional parts: the one shorthand every rule module uses."""
    return Finding(rule=rule, severity=severity, seen=seen, cause=cause, fix=fix, commands=commands)


def load_triggers(modules: Sequence[str] = RULE_MODULES) -> tuple[str, ...]:
    """The words a line must hold for any rule (or the log facts) to read it."""
    from envbuilder.doctor.logs import FACT_TRIGGERS

    words = list(FACT_TRIGGERS)
    for name in modules:
        words.extend(getattr(importlib.import_module(name), "TRIGGERS", ()))
    return tuple(dict.fromkeys(words))


def load_rules(modules: Sequence[str] = RULE_MODULES) -> tuple[Rule, ...]:
    """Every rule of every registered module, in order."""
    rules: list[Rule] = []
    for name in modules:
        rules.extend(importlib.import_module(name).RULES)
    return tuple(rules)


def diagnose(ctx: Context, rules: Sequence[Rule] | None = None) -> tuple[Finding, ...]:
    """Apply the rules; findings sorted FAIL, WARN, INFO, each rule's finding reported once.

    Evidence from the light probe is first judged against the matrix (which library the installed release's
    loader picks), so rules read the same facts as from a real import."""
    from envbuilder.doctor.loader import judge
    from envbuilder.doctor.logs import BIG_LOG, relevant_lines

    if ctx.evidence is not None and not ctx.evidence.bnb_imported:
        ctx = replace(ctx, evidence=judge(ctx.matrix, ctx.evidence))
    if len(ctx.log) > BIG_LOG:
        ctx = replace(ctx, log=relevant_lines(ctx.log, load_triggers()))
    found: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for rule in rules if rules is not None else load_rules():
        for f in rule(ctx):
            if (f.rule, f.seen) not in seen:
                seen.add((f.rule, f.seen))
                found.append(f)
    order = {"FAIL": 0, "WARN": 1, "INFO": 2}
    return tuple(sorted(found, key=lambda f: order[f.severity]))


def doctor_json(findings: Sequence[Finding], *, source: str, evidence: Evidence | None) -> dict[str, Any]:
    """The versioned ``--json`` document."""
    return {
        "schema": DOCTOR_SCHEMA,
        "source": source,
        "ok": not any(f.severity == "FAIL" for f in findings),
        "evidence": _evidence_json(evidence) if evidence else None,
        "findings": [f.to_json() for f in findings],
    }


def _evidence_json(ev: Evidence) -> dict[str, Any]:
    return {
        "python": ev.python,
        "platform": ev.platform,
        "libc": ev.libc,
        "torch": ev.torch,
        "torch_cuda": ev.torch_cuda,
        "arch_list": list(ev.arch_list),
        "devices": [{"index": d.index, "name": d.name, "cc": d.cc, "vram_bytes": d.vram_bytes} for d in ev.devices],
        "bitsandbytes": ev.bnb,
        "bnb_library": ev.bnb_lib,
        "bnb_imported": ev.bnb_imported,
        "bnb_load_error": ev.bnb_load_error,
        "env": dict(ev.env),
        "packages": dict(ev.packages),
    }
