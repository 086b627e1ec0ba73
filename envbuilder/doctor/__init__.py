"""The doctor: evidence from an environment or a pasted log -> rules -> findings (layer, cause, exact fix).

Both ways meet in one evidence model: ``--env`` fills ``Evidence`` by probing the environment
(``evidence.from_smoke_document``), ``--log`` from what the text states (``evidence.from_log``); ``diagnose``
merges the two into ``Context.facts`` and every rule reads that, so a rule is written once for both. Fixes
are computed from the matrix and the resolver (``doctor.plan``), never canned pins.

Checks and findings are data (STYLE rule 9): nothing here prints. Rules live in modules listed in
``RULE_MODULES``; each such module exposes ``RULES``, a sequence of callables ``(Context) -> Iterable[Finding]``,
and ``TRIGGERS`` (the words its patterns need). Order matters: the verdict names the first FAIL, so modules
with the more specific causes come first. Environment-only checks (drift, issue 15) add a module to
``RULE_MODULES`` the same way (``envbuilder.doctor.drift``). ``doctor.verdict`` turns the findings into one
answer: broken (exit 1), not recognised (exit 1), outside the stack or healthy (exit 0).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from envbuilder.model.matrix import Matrix
from envbuilder.model.smoke import SMOKE_SCHEMA, Check
from envbuilder.model.types import Layer, Severity, Status

if TYPE_CHECKING:  # verdict.py imports this module's values
    from envbuilder.doctor.verdict import Verdict

__all__ = [
    "DOCTOR_SCHEMA",
    "RULE_MODULES",
    "SMOKE_SCHEMA",
    "Check",
    "Context",
    "Device",
    "Evidence",
    "Finding",
    "Layer",
    "Rule",
    "Severity",
    "Status",
    "diagnose",
    "doctor_json",
    "evidence_json",
    "examine",
    "finding",
    "load_rules",
    "load_triggers",
    "prepared",
]

DOCTOR_SCHEMA = "envbuilder.doctor/1"
RULE_MODULES: tuple[str, ...] = (
    "envbuilder.doctor.rules_outside",  # outside the stack first: those logs also show stack words in passing
    "envbuilder.doctor.rules_quant",
    "envbuilder.doctor.rules_cuda",
    "envbuilder.doctor.rules_bnb",
    "envbuilder.doctor.rules_windows",
    "envbuilder.doctor.rules_stack",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """A diagnosis: the line that shows it (quoted), the cause, and the exact fix.

    ``commands`` are argv lists ``doctor --fix`` may run (empty when the fix is manual, e.g. a shell variable).
    ``layer`` is the part of the stack that broke (None: a rule that does not say, e.g. a teammate's module).
    """

    rule: str
    severity: Severity
    seen: str
    cause: str
    fix: str
    commands: tuple[tuple[str, ...], ...] = ()
    layer: Layer | None = None
    all_clear: bool = False  # the cause itself says the stack works (a harmless warning): the verdict quotes it

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "layer": self.layer,
            "seen": self.seen,
            "cause": self.cause,
            "fix": self.fix,
            "commands": [list(c) for c in self.commands],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """One GPU. From a log, what the text says: ``cc`` "" and ``vram_bytes`` 0 where it does not."""

    index: int
    name: str
    cc: str
    vram_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    """What is known about one environment: probed inside it (``--env``) or stated by a log (``--log``).

    Every field is optional (a failed import or a short log leaves gaps); unknown is None/empty, never a guess.
    """

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
    bnb_shipped: tuple[str, ...] = ()
    bnb_imported: bool = True  # False: the light probe, which never imports bitsandbytes (see ``loader.judge``)
    bnb_candidate: Mapping[str, Any] | None = None  # the probe's loader-neutral pick and its dlopen result
    bnb_load_error: str | None = None  # light probe, judged: why the installed release loads no library
    text: str = ""  # every error and stderr the stages produced: what log rules also read
    checks: tuple[Check, ...] = ()
    # What a log states that the probe reads elsewhere or not at all (``evidence.from_log``).
    driver: str | None = None  # the NVIDIA driver's version, "535.104.05"
    driver_cuda: str | None = None  # the newest CUDA the driver runs: nvidia-smi's "CUDA Version", torch's found 11000
    toolkit_cuda: str | None = None  # the CUDA toolkit (nvcc) an extension build used
    wsl: bool = False
    jetson: bool = False
    rocm: str | None = None  # a ROCm (AMD) build of torch or a ROCm version the log names
    failed_libs: tuple[str, ...] = ()  # shared libraries that failed to load: libcudart.so.12, awq_ext...so
    failed_modules: tuple[str, ...] = ()  # Python modules that failed to import: awq_ext, exllama_kernels
    symbols: tuple[str, ...] = ()  # undefined symbols, as the loader printed them
    building: tuple[str, ...] = ()  # packages the log shows being built from source
    wanted_lib: str | None = None  # the libbitsandbytes_* file a log says bitsandbytes looked for
    vram_gib: float | None = None  # total memory of the GPU a CUDA OOM message names

    @property
    def ccs(self) -> tuple[str, ...]:
        """The known compute capabilities of the GPUs, each once."""
        return tuple(dict.fromkeys(d.cc for d in self.devices if d.cc))

    @property
    def platform(self) -> str:
        """The matrix's platform key: linux-x86_64, windows-x86_64, ..."""
        system = (self.system or "linux").lower()
        machine = (self.machine or "x86_64").lower().replace("amd64", "x86_64").replace("arm64", "aarch64")
        if system == "windows":
            return "windows-arm64" if machine == "aarch64" else "windows-x86_64"
        if system == "darwin":
            return "macos-arm64"
        return f"linux-{machine}"

    @property
    def os(self) -> str:
        """The target's OS flavour: linux, wsl2 or windows (macOS has none: ``platform`` says so)."""
        if (self.system or "").lower() == "windows":
            return "windows"
        return "wsl2" if self.wsl else "linux"


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What a rule may read: the evidence (from an environment), the log text, the matrix, the env's python,
    and ``facts``: the environment's evidence merged with what the log states (``diagnose`` fills it)."""

    matrix: Matrix
    evidence: Evidence | None = None
    log: str = ""
    python: str | None = None  # the environment's interpreter, for `uv pip install --python` fixes
    ours: bool = False  # the environment carries envbuilder's marker
    facts: Evidence = field(default_factory=Evidence)

    @property
    def text(self) -> str:
        """Everything rules match text against: the pasted log plus errors the probe captured (joined once per
        context: rules ask for it a hundred times, and a copy of a big log each time is what it would cost)."""
        if self.evidence is None or not self.evidence.text:
            return self.log
        return _joined(self.log, self.evidence.text)


@functools.lru_cache(maxsize=4)
def _joined(log: str, probed: str) -> str:
    return "\n".join(t for t in (log, probed) if t)


Rule = Callable[[Context], Iterable[Finding]]


def finding(
    rule: str,
    severity: Severity,
    seen: str,
    cause: str,
    fix: str,
    commands: tuple[tuple[str, ...], ...] = (),
    *,
    layer: Layer | None = None,
    all_clear: bool = False,
) -> Finding:
    """A Finding from positional parts: the one shorthand every rule module uses."""
    return Finding(
        rule=rule,
        severity=severity,
        seen=seen,
        cause=cause,
        fix=fix,
        commands=commands,
        layer=layer,
        all_clear=all_clear,
    )


def load_triggers(modules: Sequence[str] = RULE_MODULES) -> tuple[str, ...]:
    """The words a line must hold for any rule (or the log facts) to read it."""
    from envbuilder.doctor.logs import FACT_TRIGGERS
    from envbuilder.doctor.verdict import TRIGGERS as VERDICT_TRIGGERS

    words = [*FACT_TRIGGERS, *VERDICT_TRIGGERS]
    for name in modules:
        words.extend(getattr(importlib.import_module(name), "TRIGGERS", ()))
    return _minimal(tuple(dict.fromkeys(w.lower() for w in words)))


@functools.lru_cache(maxsize=4)
def _minimal(words: tuple[str, ...]) -> tuple[str, ...]:
    """The words without those that hold another word ("libcudart" holds "cuda"): a line that holds the longer
    holds the shorter, so the same lines are kept, and each word costs a pass over a big log."""
    return tuple(w for w in words if not any(o != w and o in w for o in words))


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
    return examine(ctx, rules)[0]


def examine(ctx: Context, rules: Sequence[Rule] | None = None) -> tuple[tuple[Finding, ...], Evidence, Any]:
    """The findings, the facts they were read from (environment and log merged) and the verdict
    (``doctor.verdict.Verdict``): everything ``doctor`` prints, from one reading of the text."""
    from envbuilder.doctor.verdict import verdict

    ctx = prepared(ctx)
    found: list[Finding] = []
    seen: set[tuple[str, str]] = set()
    for rule in rules if rules is not None else load_rules():
        for f in rule(ctx):
            if (f.rule, f.seen) not in seen:
                seen.add((f.rule, f.seen))
                found.append(f)
    order = {"FAIL": 0, "WARN": 1, "INFO": 2}
    findings = tuple(sorted(found, key=lambda f: order[f.severity]))
    return findings, ctx.facts, verdict(findings, ctx.facts, ctx.text)


def prepared(ctx: Context) -> Context:
    """The context rules read: the light probe judged, a big log reduced to the lines any rule can read, and
    ``facts``: the environment's evidence merged with what the (reduced) log states."""
    from envbuilder.doctor.evidence import from_log, merge
    from envbuilder.doctor.loader import judge
    from envbuilder.doctor.logs import BIG_LOG, reduced_log

    if ctx.evidence is not None and not ctx.evidence.bnb_imported:
        ctx = replace(ctx, evidence=judge(ctx.matrix, ctx.evidence))
    if len(ctx.log) > BIG_LOG:  # a log the CLI reduced already is at most TRIGGER_CAP (= BIG_LOG) long
        ctx = replace(ctx, log=reduced_log(ctx.log, load_triggers())[0])
    return replace(ctx, facts=merge(ctx.evidence, from_log(ctx.text, ctx.matrix)))


def doctor_json(
    findings: Sequence[Finding], *, source: str, evidence: Evidence | None, verdict: Verdict | None = None
) -> dict[str, Any]:
    """The versioned ``--json`` document (a given ``verdict``'s ``ok`` wins over the findings')."""
    return {
        "schema": DOCTOR_SCHEMA,
        "source": source,
        "ok": verdict.ok if verdict is not None else not any(f.severity == "FAIL" for f in findings),
        "verdict": verdict.to_json() if verdict is not None else None,
        "evidence": evidence_json(evidence) if evidence else None,
        "findings": [f.to_json() for f in findings],
    }


def evidence_json(ev: Evidence) -> dict[str, Any]:
    """The evidence as JSON: what was probed or read (empty facts left out of the log-only fields)."""
    extra = {
        "driver": ev.driver,
        "driver_cuda": ev.driver_cuda,
        "toolkit_cuda": ev.toolkit_cuda,
        "wsl": ev.wsl or None,
        "jetson": ev.jetson or None,
        "rocm": ev.rocm,
        "failed_libraries": list(ev.failed_libs) or None,
        "failed_modules": list(ev.failed_modules) or None,
        "undefined_symbols": list(ev.symbols) or None,
        "building": list(ev.building) or None,
        "bnb_wanted_library": ev.wanted_lib,
    }
    return _base_evidence_json(ev) | {k: v for k, v in extra.items() if v is not None}


def _base_evidence_json(ev: Evidence) -> dict[str, Any]:
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
