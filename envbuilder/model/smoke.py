"""The smoke program's values (pure): what it is told (bounds, import names, what a lock installed), and what it
reports (``Check``, one per stage, in an ``envbuilder.smoke/1`` document).

The bounds and the module names are facts in ``matrices/smoke.toml`` (one table for environments, images and
recipes). ``check.py`` runs inside a target interpreter on the standard library alone, so it cannot read the
matrix: envbuilder hands it the bounds (``--bounds``) and, for an image or a recipe, an expectation file
(``--expect expect.json``: the lock's versions, torch's CUDA, the bitsandbytes library torch's CUDA needs, the
modules to import). ``check.py`` keeps a copy of the bounds for runs by hand; a test proves the copy agrees.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from envbuilder.model.errors import MatrixError
from envbuilder.model.matrix import Fact, _load_file, _read_all, _Row, _rows, matrix_dirs
from envbuilder.model.types import STATUSES, Status

__all__ = [
    "SMOKE_FILE",
    "SMOKE_SCHEMA",
    "Bound",
    "Check",
    "Expect",
    "ImportName",
    "SmokeTable",
    "check_from_json",
    "expect_for",
    "load_smoke_table",
    "parse_smoke_table",
    "program_text",
]

SMOKE_FILE = "smoke"  # matrices/smoke.toml
SMOKE_SCHEMA = "envbuilder.smoke/1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One smoke stage's result: what ran, how it ended, why, and what it saw."""

    name: str
    status: Status
    detail: str
    hint: str = ""
    seconds: float = 0.0  # the stage's own work: what it imported is in import_seconds, its JIT builds in jit_seconds
    evidence: Mapping[str, Any] = field(default_factory=dict)
    import_seconds: float = 0.0
    jit_seconds: float = 0.0  # torch extensions JIT-compiled during the stage (evidence["jit"] names each)

    def to_json(self) -> dict[str, Any]:
        doc = {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "hint": self.hint,
            "seconds": self.seconds,
            "evidence": dict(self.evidence),
        }
        doc |= {"import_seconds": self.import_seconds} if self.import_seconds else {}
        return doc | ({"jit_seconds": self.jit_seconds} if self.jit_seconds else {})


def check_from_json(stage: Mapping[str, Any]) -> Check:
    """One stage dict of the smoke document as a Check (an unknown status reads as FAIL)."""
    status: Status = next((s for s in STATUSES if s == stage.get("status")), "FAIL")
    return Check(
        name=str(stage.get("name", "?")),
        status=status,
        detail=str(stage.get("detail", "")),
        hint=str(stage.get("hint", "")),
        seconds=float(stage.get("seconds", 0.0)),
        evidence=dict(stage.get("evidence", {})),
        import_seconds=float(stage.get("import_seconds", 0.0)),
        jit_seconds=float(stage.get("jit_seconds", 0.0)),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Bound(Fact):
    """A smoke stage's pass bound: ``metric`` of ``stage`` must be at most ``max``."""

    stage: str
    metric: str
    max: float
    what: str
    observed: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportName(Fact):
    """The module a distribution imports as; ``gpu_only``: imported only where a GPU is."""

    distribution: str
    module: str
    gpu_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SmokeTable:
    bounds: tuple[Bound, ...]
    imports: tuple[ImportName, ...]

    def bounds_json(self) -> dict[str, dict[str, float]]:
        """``{"quant4": {"nf4": 0.15, ...}, ...}``: the form ``check.py --bounds`` reads."""
        out: dict[str, dict[str, float]] = {}
        for b in self.bounds:
            out.setdefault(b.stage, {})[b.metric] = b.max
        return out

    def module(self, distribution: str) -> ImportName | None:
        return next((i for i in self.imports if i.distribution == distribution), None)


def _bound(r: _Row) -> Bound:
    return Bound(
        stage=r.get("stage", str),
        metric=r.get("metric", str),
        max=r.get("max", float),
        what=r.get("what", str),
        observed=r.get("observed", str),
        **r.fact(),
    )


def _import(r: _Row) -> ImportName:
    return ImportName(
        distribution=r.get("distribution", str),
        module=r.get("module", str),
        gpu_only=r.get("gpu-only", bool, required=False, default=False),
        **r.fact(),
    )


def parse_smoke_table(docs: Sequence[tuple[str, Mapping[str, Any]]]) -> SmokeTable:
    """Pure: the table from the shipped document and its overlays, in order (a row with the same key replaces)."""
    bounds: dict[tuple[str, str], Bound] = {}
    imports: dict[str, ImportName] = {}
    for label, doc in docs:
        top = _Row(doc, label, "")
        top.seen.update(("schema-version", "bound", "import"))
        top.done()
        for b in _read_all(_rows(doc, label, "bound", required=False), _bound):
            bounds[(b.stage, b.metric)] = b
        for i in _read_all(_rows(doc, label, "import", required=False), _import):
            imports[i.distribution] = i
    if not bounds:
        msg = f"{docs[0][0] if docs else SMOKE_FILE + '.toml'}: missing table '[[bound]]'"
        raise MatrixError(msg, hint="see matrices/SCHEMA.md (smoke.toml)")
    return SmokeTable(bounds=tuple(bounds.values()), imports=tuple(imports.values()))


def load_smoke_table(extra_dirs: Iterable[str | Path] | None = None) -> SmokeTable:
    """Read ``smoke.toml`` from the shipped matrix and every overlay directory that has one."""
    docs = []
    for i, directory in enumerate(matrix_dirs(extra_dirs)):
        path = directory / f"{SMOKE_FILE}.toml"
        if path.is_file() or i == 0:
            docs.append((f"{SMOKE_FILE}.toml" if i == 0 else str(path), _load_file(path)))
    return parse_smoke_table(docs)


@dataclass(frozen=True, slots=True, kw_only=True)
class Expect:
    """What an image or a recipe tells ``check.py`` to find (written beside it as ``expect.json``)."""

    packages: Mapping[str, str]  # distribution -> version, as the lock (or the plan) pins it
    exact: bool  # nothing else may be installed (a lock was installed), not only these at these versions
    cuda: str | None  # torch.version.cuda the build must report (None: a CPU build)
    bnb_library: str | None  # the bitsandbytes library file torch's CUDA needs (None: no bitsandbytes)
    imports: tuple[str, ...]
    gpu_imports: tuple[str, ...]
    bounds: Mapping[str, Mapping[str, float]]

    def to_json(self) -> str:
        doc = {
            "schema": "envbuilder.smoke-expect/1",
            "packages": dict(self.packages),
            "exact": self.exact,
            "cuda": self.cuda,
            "bnb_library": self.bnb_library,
            "imports": list(self.imports),
            "gpu_imports": list(self.gpu_imports),
            "bounds": {k: dict(v) for k, v in self.bounds.items()},
        }
        return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def expect_for(
    packages: Mapping[str, str],
    pins: Sequence[str],
    *,
    cuda: str | None,
    bnb_library: str | None,
    exact: bool,
    table: SmokeTable,
) -> Expect:
    """Pure: the expectation for ``packages`` (every installed distribution -> version) of which ``pins``
    (``name==version``) are the plan's own: their modules are the ones imported."""
    names = [table.module(p.split("==", 1)[0]) for p in pins]
    return Expect(
        packages=dict(packages),
        exact=exact,
        cuda=cuda,
        bnb_library=bnb_library if "bitsandbytes" in packages else None,
        imports=tuple(i.module for i in names if i is not None and not i.gpu_only),
        gpu_imports=tuple(i.module for i in names if i is not None and i.gpu_only),
        bounds=table.bounds_json(),
    )


def program_text() -> str:
    """The smoke program's source (``envbuilder/smoke/check.py``, package data), to ship into an image or a recipe."""
    # Read as package data of envbuilder itself: importing envbuilder.smoke (the runner, an edge) is not needed.
    return resources.files("envbuilder").joinpath("smoke").joinpath("check.py").read_text(encoding="utf-8")
