"""Compare every readable fact of the matrix with what the indexes' files say (pure; ``matrix check --upstream``).

Input: the matrix rows as written (``matrix_audit.Row``: file, table, index, data) and what
``envbuilder.edge.upstream`` read (``Observed``). Output: each disagreement with its file and key, the edits that
would write the observed facts back (``--update``, with ``verified = "wheel <file> sha256 <hex>"``), new rows
for what the matrix lacks (a newer release, a library or build no row describes), and what could not be
checked and why (a build only the unreachable PyTorch index serves, a Windows DLL, a torch too old to carry
a small CUDA library built with its own arch list).

Facts read, per table:
- torch ``[[release]]``: on the index and the newest patch of its minor; ``python`` (the wheels' cp tags);
  ``pypi.<platform>`` (``torch/version.py`` of that platform's PyPI wheel); ``released`` (first x.y.0 upload).
- torch ``[[build]]``: ``cuda``, ``sass``, ``ptx`` of the loaded image of ``libtorch_nvshmem.so`` in each
  release's wheel of that variant (PyPI's default build, or the PyTorch index's where it can be reached).
- bitsandbytes ``[[release]]``: ``python``, ``torch`` (METADATA), ``platforms`` (wheel tags), ``cuda-libs``
  (``libbitsandbytes_cuda*.so`` in the linux-x86_64 wheel); ``[[sass]]``: ``sass``/``ptx`` of each library's
  loaded image, on linux-x86_64 and linux-aarch64.
- companions ``[[package]]`` and quant ``[[library]]``: ``python`` (Requires-Python) and ``requires-dist``
  (the Requires-Dist lines naming packages the matrix pins, hard ones and those of the row's ``extras``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from envbuilder.edge.reader import parse_version_py, torch_variant
from envbuilder.edge.upstream import FileObs, Observed, ReleaseObs, cp_tags, wheel_platform
from envbuilder.jobs.matrix_audit import Edit, Mismatch, Row
from envbuilder.model.audit import arch_key, cuda_of_library
from envbuilder.model.types import PLATFORMS, Platform

__all__ = [
    "DEPENDENCIES",
    "NVSHMEM",
    "PROPOSED_NOTE",
    "READER",
    "Report",
    "Tables",
    "check_bnb_releases",
    "check_bnb_sass",
    "check_packages",
    "check_torch_builds",
    "check_torch_releases",
    "compare",
    "first_upload",
    "kept_requirements",
    "metadata_fields",
    "normalize_requirement",
    "python_range",
    "pytorch_builds",
    "same_spec",
    "wanted_versions",
]

# Packages whose declared requirements the matrix keeps (the resolver pins or checks them).
DEPENDENCIES = frozenset({
    "torch", "bitsandbytes", "transformers", "accelerate", "peft", "numpy", "torchao", "compressed-tensors",
    "auto-round", "triton", "optimum", "gptqmodel", "auto-gptq", "autoawq", "llmcompressor",
})  # fmt: skip
NVSHMEM = "torch/lib/libtorch_nvshmem.so"
Tables = Mapping[tuple[str, str], Sequence[Row]]


@dataclass
class Report:
    """Disagreements, edits, new rows, and what could not be checked."""

    mismatches: list[Mismatch] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)
    proposals: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    checked: int = 0
    unchecked: list[str] = field(default_factory=list)
    news: list[str] = field(default_factory=list)

    def differ(self, row: Row, key: str, claimed: object, observed: object, evidence: str) -> None:
        self.mismatches.append(Mismatch(row.file.name, f"{row.key}.{key}", claimed, observed, evidence))


# --------------------------------------------------------------------------- small pure helpers


@lru_cache(maxsize=2048)
def _spec_key(text: str) -> frozenset[tuple[str, object]]:
    """A specifier set as comparable values: ">=3.10.0" and ">=3.10" are the same range."""
    from packaging.specifiers import InvalidSpecifier, SpecifierSet
    from packaging.version import Version

    try:
        return frozenset((s.operator, Version(s.version.rstrip(".*"))) for s in SpecifierSet(text))
    except (InvalidSpecifier, ValueError):
        return frozenset({("?", text)})


def same_spec(a: object, b: object) -> bool:
    return _spec_key(str(a or "")) == _spec_key(str(b or ""))


def normalize_requirement(line: str) -> str | None:
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        return str(Requirement(line))
    except InvalidRequirement:
        return None


def kept_requirements(requires_dist: Iterable[str], extras: Sequence[str]) -> list[str]:
    """The declared requirements the matrix keeps: on ``DEPENDENCIES``, hard or under one of ``extras``."""
    from packaging.requirements import InvalidRequirement, Requirement

    out: list[str] = []
    for line in requires_dist:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        from packaging.utils import canonicalize_name

        if canonicalize_name(req.name) not in DEPENDENCIES:
            continue
        marker = req.marker
        if marker is not None and "extra" in str(marker) and not any(marker.evaluate({"extra": e}) for e in extras):
            continue
        out.append(str(req))
    return sorted(dict.fromkeys(out))


def metadata_fields(text: str) -> tuple[str | None, tuple[str, ...]]:
    """(Requires-Python, Requires-Dist) of a METADATA / PKG-INFO text."""
    import email.parser

    message = email.parser.HeaderParser().parsestr(text)
    python = message.get("Requires-Python")
    return (str(python).strip() if python else None), tuple(str(v) for v in message.get_all("Requires-Dist") or ())


def python_range(files: Iterable[Any]) -> str | None:
    """The CPython range of a release's wheels, from their cp tags: cp310..cp314 -> ">=3.10,<3.15"."""
    minors = sorted({int(v.split(".")[1]) for f in files for v in cp_tags(f.filename)})
    return f">=3.{minors[0]},<3.{minors[-1] + 1}" if minors else None


def first_upload(files: Iterable[Any]) -> str | None:
    times = sorted(str(f.upload_time) for f in files if f.upload_time)
    return times[0][:10] if times else None


def _version(text: str) -> Any:
    from packaging.version import Version

    return Version(text)


def _in_range(spec: object, version: str) -> bool:
    from packaging.specifiers import InvalidSpecifier, SpecifierSet

    try:
        return SpecifierSet(str(spec or "")).contains(version, prereleases=True)
    except InvalidSpecifier:
        return False


def _variant_of(obs: FileObs) -> str | None:
    text = obs.facts.members.get("torch/version.py") if obs.facts else None
    return torch_variant(text) if text else None


def _evidence(observations: Iterable[FileObs]) -> str:
    return "; ".join(dict.fromkeys(o.evidence for o in observations))


def _verified(old: object, evidence: str) -> str:
    """``verified`` keeps other evidence (a GPU run) and replaces what an earlier read of the index said.

    No date: a weekly refresh that reads the same files changes nothing.
    """
    kept = [p for p in str(old or "").split("; ") if p and not p.startswith(("wheel ", "sdist "))]
    kept = [p for p in kept if " audit of " not in p]
    return "; ".join([*kept, evidence])


READER = "`envbuilder matrix refresh`"


def _edit(
    row: Row, values: dict[str, Any], evidence: str, today: str, report: Report, *, confirm: bool, read: Sequence[str]
) -> None:
    """Write the observed facts (if any differ), the evidence, and what the reader confirmed.

    ``read`` names the keys whose facts were read from the files; the row's source says so once.
    """
    changed = dict(values)
    verified = _verified(row.data.get("verified"), evidence)
    if verified != row.data.get("verified"):
        changed["verified"] = verified
    flips = confirm and row.data.get("confidence") != "confirmed"
    if (values or flips) and READER not in str(row.data.get("source", "")):
        changed["source"] = f"{row.data.get('source')}; {', '.join(read)} read from the files by {READER} ({today})"
    if flips:
        changed["confidence"] = "confirmed"
    if changed:
        report.edits.append(Edit(row.file, row.table, row.index, changed))


# --------------------------------------------------------------------------- torch


def check_torch_releases(rows: Sequence[Row], obs: Mapping[str, ReleaseObs], report: Report, today: str) -> None:
    listed = sorted(obs, key=_version)
    for row in rows:
        version = str(row.data.get("version"))
        rel = obs.get(version)
        if rel is None or not rel.files:
            report.differ(row, "version", version, None, "not on the index")
            continue
        newer = [
            v
            for v in listed
            if _version(v).release[:2] == _version(version).release[:2] and _version(v) > _version(version)
        ]
        if newer and not _version(newer[-1]).is_prerelease:
            report.differ(row, "version", version, newer[-1], "a newer patch of this minor is on the index")
        v = _version(version)
        _check_torch_release(row, rel, obs.get(f"{v.major}.{v.minor}.0", rel if v.micro == 0 else None), report, today)


def _check_torch_release(row: Row, rel: ReleaseObs, first: ReleaseObs | None, report: Report, today: str) -> None:
    values: dict[str, Any] = {}
    released = first_upload(first.files) if first is not None else None
    if released and row.data.get("released") != released:
        report.differ(
            row, "released", row.data.get("released"), released, f"first upload of {first.version if first else ''}"
        )
        values["released"] = released
    python = python_range(rel.files)
    if python and not same_spec(row.data.get("python"), python):
        report.differ(row, "python", row.data.get("python"), python, "cp tags of its wheels")
        values["python"] = python
    pypi = dict(row.data.get("pypi") or {})
    read = [o for o in rel.read if _variant_of(o)]
    for o in read:
        assert o.platform is not None
        seen = _variant_of(o)
        if pypi.get(o.platform) != seen:
            report.differ(row, f"pypi.{o.platform}", pypi.get(o.platform), seen, o.evidence)
            pypi[o.platform] = seen
            values["pypi"] = pypi
    for o in rel.read:
        if o.facts is None:
            report.unchecked.append(f"{row.key}.pypi.{o.platform}: {o.file.filename} could not be read")
    report.checked += 1
    if read:
        keys = ["python", "pypi", "released"]
        _edit(row, values, _evidence(read), today, report, confirm=all(o.facts for o in rel.read), read=keys)


def _torch_observations(obs: Observed, version: str) -> list[tuple[str, FileObs]]:
    """(variant, observation) of every torch wheel read for ``version``: PyPI's and the PyTorch index's."""
    out = [(v, o) for o in obs.releases.get("torch", {}).get(version, ReleaseObs("torch", version, ())).read
           if (v := _variant_of(o))]  # fmt: skip
    for (variant, ver, _platform), rel in obs.variants.items():
        if ver == version:
            out += [(variant, o) for o in rel.read if _variant_of(o) == variant]
    return out


def check_torch_builds(
    build_rows: Sequence[Row], versions: Sequence[str], obs: Observed, report: Report, today: str
) -> None:
    seen_by_row: dict[int, list[tuple[str, FileObs]]] = {}
    for version in versions:
        for variant, o in _torch_observations(obs, version):
            if not variant.startswith("cu") or o.platform is None:
                continue
            covering = [
                i for i, r in enumerate(build_rows)
                if r.data.get("variant") == variant and o.platform in (r.data.get("platforms") or ())
                and _in_range(r.data.get("torch"), version)
            ]  # fmt: skip
            if not covering:
                _propose_build(build_rows, version, variant, o, report, today)
            elif len(covering) > 1:
                keys = ", ".join(build_rows[i].key for i in covering)
                report.mismatches.append(
                    Mismatch(build_rows[0].file.name, keys, None, f"{version}+{variant}", "rows overlap")
                )
            else:
                seen_by_row.setdefault(covering[0], []).append((version, o))
    _missing_on_the_index(build_rows, obs, report)
    for i, row in enumerate(build_rows):
        seen = seen_by_row.get(i)
        if seen:
            covered = {
                (v, p) for v in versions if _in_range(row.data.get("torch"), v) for p in row.data.get("platforms") or ()
            }
            _check_build_row(row, seen, covered, report, today)
        elif row.data.get("variant") != "cpu":
            report.unchecked.append(
                f"{row.key} ({row.data.get('variant')} {row.data.get('torch')}): {_why_unread(row)}"
            )


def _missing_on_the_index(build_rows: Sequence[Row], obs: Observed, report: Report) -> None:
    """A build the matrix says the PyTorch index serves, where the index (when it was read) lists no file."""
    for (variant, version, platform), rel in sorted(obs.variants.items()):
        if rel.files:
            continue
        for row in build_rows:
            if (
                row.data.get("variant") == variant
                and platform in (row.data.get("platforms") or ())
                and _in_range(row.data.get("torch"), version)
            ):
                why = f"{rel.index}/torch/ lists no torch {version}+{variant} for {platform}"
                report.differ(row, "torch", row.data.get("torch"), None, why)


def _why_unread(row: Row) -> str:
    platforms = row.data.get("platforms") or []
    if all(str(p).startswith("windows") for p in platforms):
        return "PyPI's Windows torch is a CPU build: its CUDA builds are only on the PyTorch index, which was not read"
    return "not PyPI's default build of any release it covers, and the PyTorch index was not read"


def _library_view(o: FileObs) -> tuple[tuple[str, ...], str | None] | None:
    lib = o.facts.libraries.get(NVSHMEM) if o.facts else None
    return (tuple(lib.sass), lib.ptx[-1] if lib.ptx else None) if lib is not None else None


def _check_build_row(
    row: Row, seen: Sequence[tuple[str, FileObs]], covered: set[tuple[str, str]], report: Report, today: str
) -> None:
    views = {v for _, o in seen if (v := _library_view(o)) is not None}
    cudas = {parse_version_py(o.facts.members["torch/version.py"]).get("cuda") for _, o in seen if o.facts}
    readable = [(v, o) for v, o in seen if _library_view(o) is not None]
    values: dict[str, Any] = {}
    if len(cudas) == 1 and (cuda := next(iter(cudas))) and row.data.get("cuda") != cuda:
        report.differ(row, "cuda", row.data.get("cuda"), cuda, _evidence(o for _, o in seen))
        values["cuda"] = cuda
    if not views:
        report.unchecked.append(f"{row.key}: no libtorch_nvshmem.so in its wheels (torch < 2.9): SASS not read")
        return
    report.checked += 1
    evidence = _evidence(o for _, o in readable)
    if len(views) > 1:
        report.differ(row, "sass", row.data.get("sass"), sorted(views), f"its releases' wheels differ ({evidence})")
        return
    sass, ptx = next(iter(views))
    if list(row.data.get("sass") or []) != list(sass):
        report.differ(row, "sass", row.data.get("sass"), list(sass), evidence)
        values["sass"] = list(sass)
    if row.data.get("ptx") != ptx:
        report.differ(row, "ptx", row.data.get("ptx"), ptx, f"{evidence} (the image the driver loads)")
        values["ptx"] = ptx
    # Confirmed when every release and platform the row covers was read.
    read = {(v, str(o.platform)) for v, o in readable}
    _edit(row, values, evidence, today, report, confirm=covered <= read, read=["cuda", "sass", "ptx"])


def _propose_build(rows: Sequence[Row], version: str, variant: str, o: FileObs, report: Report, today: str) -> None:
    view = _library_view(o)
    text = o.facts.members.get("torch/version.py") if o.facts else None
    cuda = parse_version_py(text).get("cuda") if text else None
    v = _version(version)
    where = rows[0].file.name if rows else "torch.toml"
    why = f"no [[build]] row for torch {version}+{variant} on {o.platform} ({o.evidence})"
    report.mismatches.append(Mismatch(where, f"{where}: build", None, f"{version}+{variant} {o.platform}", why))
    if view is None or rows == ():
        return
    row: dict[str, Any] = {
        "table": "build",
        "torch": f">={v.major}.{v.minor},<{v.major}.{v.minor + 1}",
        "variant": variant,
        "cuda": cuda,
        "platforms": [o.platform],
        "sass": list(view[0]),
    }
    if view[1]:
        row["ptx"] = view[1]
    row.update(
        source=f"loaded image of libtorch_nvshmem.so read by `envbuilder matrix refresh` ({today})",
        confidence="confirmed",
        verified=o.evidence,
    )
    report.proposals.append((rows[-1].file, row))


# --------------------------------------------------------------------------- bitsandbytes


def check_bnb_releases(rows: Sequence[Row], obs: Mapping[str, ReleaseObs], report: Report, today: str) -> None:
    for row in rows:
        version = str(row.data.get("version"))
        rel = obs.get(version)
        if rel is None or not rel.files:
            report.differ(row, "version", version, None, "not on the index")
            continue
        _check_bnb_release(row, rel, report, today)


def _platforms_of(files: Iterable[Any]) -> list[str]:
    return sorted({p for f in files if f.is_wheel and (p := wheel_platform(f.filename)) not in {None, "any"}})


def _check_bnb_release(row: Row, rel: ReleaseObs, report: Report, today: str) -> None:
    x86 = rel.on("linux-x86_64")
    values: dict[str, Any] = {}
    platforms = _platforms_of(rel.files)
    if sorted(row.data.get("platforms") or []) != platforms:
        report.differ(row, "platforms", row.data.get("platforms"), platforms, "wheel tags on the index")
        values["platforms"] = platforms
    if x86 is None or x86.facts is None or x86.facts.metadata is None:
        report.unchecked.append(f"{row.key}: its linux-x86_64 wheel could not be read")
        return
    python, requires = metadata_fields(x86.facts.metadata)
    if python is not None and not same_spec(row.data.get("python"), python):
        report.differ(row, "python", row.data.get("python"), python, x86.evidence)
        values["python"] = python
    torch = next((r.split(";")[0][len("torch") :].strip() for r in requires if _req_name(r) == "torch"), None)
    if torch is not None and not same_spec(row.data.get("torch"), torch):
        report.differ(row, "torch", row.data.get("torch"), torch, x86.evidence)
        values["torch"] = torch
    libs = sorted({c for n in x86.facts.native or () if "libbitsandbytes_cuda" in n and (c := cuda_of_library(n))},
                  key=arch_key)  # fmt: skip
    if list(row.data.get("cuda-libs") or []) != libs:
        report.differ(row, "cuda-libs", row.data.get("cuda-libs"), libs, x86.evidence)
        values["cuda-libs"] = libs
    report.checked += 1
    _edit(row, values, x86.evidence, today, report, confirm=False, read=["python", "torch", "platforms", "cuda-libs"])


def _req_name(line: str) -> str:
    from packaging.utils import canonicalize_name

    cut = min((line.find(c) for c in "<>=!~ ;[(" if c in line), default=len(line))
    return canonicalize_name(line[:cut].strip())


def _bnb_libraries(rel: ReleaseObs) -> list[tuple[str, str, tuple[str, ...], str | None, FileObs]]:
    """(platform, CUDA, SASS, highest PTX, observation) of every CUDA library read in a release's wheels."""
    out: list[tuple[str, str, tuple[str, ...], str | None, FileObs]] = []
    for o in rel.read:
        if o.facts is None or o.platform is None:
            continue
        for name, lib in o.facts.libraries.items():
            cuda = cuda_of_library(name)
            if lib is not None and cuda:
                out.append((o.platform, cuda, tuple(lib.sass), lib.ptx[-1] if lib.ptx else None, o))
    return out


def check_bnb_sass(
    sass_rows: Sequence[Row], versions: Sequence[str], obs: Mapping[str, ReleaseObs], report: Report, today: str
) -> None:
    seen_by_row: dict[int, list[tuple[tuple[str, ...], str | None, FileObs, str]]] = {}
    missing: list[tuple[str, str, str, tuple[str, ...], str | None, FileObs]] = []
    every: dict[tuple[str, str], list[tuple[str, tuple[str, ...], str | None, bool]]] = {}
    for version in versions:
        rel = obs.get(version)
        for platform, cuda, sass, ptx, o in sorted(
            _bnb_libraries(rel) if rel else (), key=lambda x: (x[0], arch_key(x[1]))
        ):
            covering = [
                i for i, r in enumerate(sass_rows)
                if r.data.get("platform") == platform and _in_range(r.data.get("bnb"), version)
                and _in_range(r.data.get("cuda"), cuda)
            ]  # fmt: skip
            every.setdefault((platform, version), []).append((cuda, sass, ptx, bool(covering)))
            if len(covering) == 1:
                seen_by_row.setdefault(covering[0], []).append((sass, ptx, o, f"{version} cuda{cuda}"))
            elif not covering:
                missing.append((version, platform, cuda, sass, ptx, o))
            else:
                keys = ", ".join(sass_rows[i].key for i in covering)
                report.mismatches.append(Mismatch(sass_rows[0].file.name, keys, None, f"{version} {cuda}", "overlap"))
    for i, row in enumerate(sass_rows):
        if i in seen_by_row:
            _check_sass_row(row, seen_by_row[i], versions, report, today)
        else:
            report.unchecked.append(f"{row.key} ({row.data.get('platform')}): {_why_sass_unread(row)}")
    _propose_sass(sass_rows, versions, missing, report, today, every)


def _why_sass_unread(row: Row) -> str:
    return "no library of the releases it covers was read"


def _check_sass_row(
    row: Row,
    seen: Sequence[tuple[tuple[str, ...], str | None, FileObs, str]],
    versions: Sequence[str],
    report: Report,
    today: str,
) -> None:
    views = {(s, p) for s, p, _, _ in seen}
    evidence = _evidence(o for _, _, o, _ in seen)
    report.checked += 1
    if len(views) > 1:
        detail = "; ".join(f"{label}: {' '.join(s)}{' +PTX ' + p if p else ''}" for s, p, _, label in seen)
        report.differ(row, "sass", row.data.get("sass"), sorted(views), f"the libraries it covers differ ({detail})")
        _split_sass_row(row, seen, versions, report, today)
        return
    sass, ptx = next(iter(views))
    values: dict[str, Any] = {}
    if list(row.data.get("sass") or []) != list(sass):
        report.differ(row, "sass", row.data.get("sass"), list(sass), evidence)
        values["sass"] = list(sass)
    if row.data.get("ptx") != ptx:
        why = f"{evidence} (the image the driver loads: with separable compilation the PTX is never JIT-loaded)"
        report.differ(row, "ptx", row.data.get("ptx"), ptx, why)
        values["ptx"] = ptx
    _edit(row, values, evidence, today, report, confirm=True, read=["sass", "ptx"])


def _split_sass_row(
    row: Row,
    seen: Sequence[tuple[tuple[str, ...], str | None, FileObs, str]],
    versions: Sequence[str],
    report: Report,
    today: str,
) -> None:
    """Where the releases a row covers differ (each release alike within itself), narrow the row to its first
    run of alike releases and propose one row per further run."""
    by_version: dict[str, set[tuple[tuple[str, ...], str | None]]] = {}
    proof: dict[str, list[FileObs]] = {}
    for sass, ptx, o, label in seen:
        version = label.split(" ", 1)[0]
        by_version.setdefault(version, set()).add((sass, ptx))
        proof.setdefault(version, []).append(o)
    if any(len(v) > 1 for v in by_version.values()):
        return  # the libraries of one release differ: split by CUDA version by hand
    order = [v for v in sorted(versions, key=_version) if v in by_version]
    runs: list[list[str]] = []
    for version in order:
        if runs and by_version[runs[-1][-1]] == by_version[version]:
            runs[-1].append(version)
        else:
            runs.append([version])
    for i, run in enumerate(runs):
        ((sass, ptx),) = by_version[run[0]]
        spec = f"=={run[0]}" if len(run) == 1 else f">={run[0]},<={run[-1]}"
        values: dict[str, Any] = {"bnb": spec, "sass": list(sass), "ptx": ptx}
        evidence = _evidence(o for v in run for o in proof[v])
        source = f"{row.data.get('source')}; split by {READER} ({today}): the releases' libraries differ"
        if i == 0:
            report.edits.append(
                Edit(row.file, row.table, row.index, {**values, "source": source, "verified": evidence})
            )
        else:
            new = {k: v for k, v in row.data.items() if k not in {"verified", "ptx"}}
            new.update({k: v for k, v in values.items() if v is not None}, source=source, verified=evidence)
            report.proposals.append((row.file, {"table": row.table, **new}))


def _segments(
    libs: Sequence[tuple[str, tuple[str, ...], str | None, bool]],
) -> list[tuple[str, str, tuple[str, ...], str | None]]:
    """(lowest CUDA, highest CUDA, SASS, PTX) of each run of uncovered libraries with the same targets; ``libs``
    is every library of one wheel, sorted by CUDA, with whether a row already covers it (which breaks a run)."""
    out: list[tuple[str, str, tuple[str, ...], str | None]] = []
    for cuda, sass, ptx, covered in libs:
        if covered:
            out.append(("", "", (), None))  # a boundary
            continue
        if out and out[-1][0] and out[-1][2:] == (sass, ptx):
            out[-1] = (out[-1][0], cuda, sass, ptx)
        else:
            out.append((cuda, cuda, sass, ptx))
    return [seg for seg in out if seg[0]]


def _propose_sass(
    rows: Sequence[Row],
    versions: Sequence[str],
    missing: Sequence[tuple[str, str, str, tuple[str, ...], str | None, FileObs]],
    report: Report,
    today: str,
    every: Mapping[tuple[str, str], Sequence[tuple[str, tuple[str, ...], str | None, bool]]],
) -> None:
    """Rows for the libraries no row covers: per release, runs of CUDA versions with the same SASS; then runs of
    consecutive releases with the same (CUDA range, SASS) become one row."""
    where = rows[0].file.name if rows else "bitsandbytes.toml"
    evidence: dict[tuple[str, str], str] = {}
    for version, platform, cuda, sass, _ptx, o in missing:
        evidence[(platform, version)] = o.evidence
        why = f"no [[sass]] row covers bitsandbytes {version} {_lib(cuda, platform)} on {platform} ({o.evidence})"
        report.mismatches.append(Mismatch(where, f"{where}: sass", None, list(sass), why))
    found: dict[tuple[str, str, str, tuple[str, ...], str | None], list[str]] = {}
    for (platform, version), libs in every.items():
        for seg in _segments(libs):
            found.setdefault((platform, *seg), []).append(version)
    order = sorted(versions, key=_version)
    for (platform, lo, hi, sass, ptx), have in sorted(found.items(), key=lambda kv: (kv[0][0], arch_key(kv[0][1]))):
        for run in _runs(have, order):
            row: dict[str, Any] = {
                "table": "sass",
                "bnb": f"=={run[0]}" if len(run) == 1 else f">={run[0]},<={run[-1]}",
                "cuda": f"=={lo}" if lo == hi else f">={lo},<={hi}",
                "platform": platform,
                "sass": list(sass),
            }
            if ptx:
                row["ptx"] = ptx
            names = _lib(lo, platform) if lo == hi else f"{_lib(lo, platform)}..{_lib(hi, platform)}"
            row.update(
                source=f"loaded image of {names} read by {READER} ({today})",
                confidence="confirmed",
                verified="; ".join(evidence[(platform, v)] for v in run if (platform, v) in evidence),
            )
            if rows:
                report.proposals.append((rows[-1].file, row))


def _lib(cuda: str, platform: str = "linux") -> str:
    return f"libbitsandbytes_cuda{cuda.replace('.', '')}.{'dll' if platform.startswith('windows') else 'so'}"


def _runs(found: Sequence[str], order: Sequence[str]) -> list[list[str]]:
    """``found`` split into runs of releases that follow each other in ``order``."""
    have = set(found)
    runs: list[list[str]] = []
    current: list[str] = []
    for version in order:
        if version in have:
            current.append(version)
        elif current:
            runs.append(current)
            current = []
    return [*runs, current] if current else runs


# --------------------------------------------------------------------------- companions and GPTQ/AWQ libraries


def check_packages(
    rows: Sequence[Row], obs: Mapping[str, Mapping[str, ReleaseObs]], report: Report, today: str
) -> None:
    """companions.toml [[package]] and quant.toml [[library]]: Requires-Python and the kept Requires-Dist."""
    for row in rows:
        name, version = str(row.data.get("name")), str(row.data.get("version"))
        rel = obs.get(name, {}).get(version)
        if rel is None or not rel.files:
            report.differ(row, "version", version, None, f"{name} {version} is not on the index")
            continue
        read = next((o for o in rel.read if o.facts and o.facts.metadata), None)
        if read is None or read.facts is None or read.facts.metadata is None:
            report.unchecked.append(f"{row.key}: no file of {name} {version} could be read")
            continue
        _check_package(row, read, report, today)


def _check_package(row: Row, read: FileObs, report: Report, today: str) -> None:
    assert read.facts is not None and read.facts.metadata is not None
    python, requires = metadata_fields(read.facts.metadata)
    values: dict[str, Any] = {}
    if python is not None and not same_spec(row.data.get("python"), python):
        report.differ(row, "python", row.data.get("python"), python, read.evidence)
        values["python"] = python
    kept = kept_requirements(requires, list(row.data.get("extras") or []))
    claimed = row.data.get("requires-dist")
    normalized = sorted(n for r in claimed or () if (n := normalize_requirement(str(r))))
    if claimed is None or normalized != kept:
        report.differ(row, "requires-dist", claimed, kept, read.evidence)
        values["requires-dist"] = kept
    report.checked += 1
    _edit(row, values, read.evidence, today, report, confirm=True, read=["python", "requires-dist"])


# --------------------------------------------------------------------------- newer releases: proposed rows


PROPOSED_NOTE = "proposed by `envbuilder matrix refresh`: review the facts it could not read before merging"


def _template(rows: Sequence[Row], name: str | None = None) -> Mapping[str, Any]:
    """The newest row (of that package), whose unreadable fields a proposal copies."""
    same = [r for r in rows if name is None or r.data.get("name") == name]
    return max(same, key=lambda r: _version(str(r.data.get("version")))).data if same else {}


def _propose_torch_release(
    rows: Sequence[Row], rel: ReleaseObs, obs: Mapping[str, ReleaseObs], today: str
) -> dict[str, Any]:
    v = _version(rel.version)
    first = obs.get(f"{v.major}.{v.minor}.0", rel)
    read = [o for o in rel.read if _variant_of(o)]
    row: dict[str, Any] = {
        "table": "release",
        "version": rel.version,
        "python": python_range(rel.files),
        "pypi": {str(o.platform): _variant_of(o) for o in read},
        "released": first_upload(first.files),
        "source": f"the index's files read by {READER} ({today})",
        "confidence": "confirmed" if read and all(o.facts for o in rel.read) else "unconfirmed",
        "verified": _evidence(read),
        "note": PROPOSED_NOTE,
    }
    return {k: v for k, v in row.items() if v not in (None, {}, "")}


def _propose_bnb_release(rows: Sequence[Row], rel: ReleaseObs, today: str) -> dict[str, Any] | None:
    x86 = rel.on("linux-x86_64")
    if x86 is None or x86.facts is None or x86.facts.metadata is None:
        return None
    python, requires = metadata_fields(x86.facts.metadata)
    template = _template(rows)
    torch = next((r.split(";")[0][len("torch") :].strip() for r in requires if _req_name(r) == "torch"), "")
    libs = sorted({c for n in x86.facts.native or () if "libbitsandbytes_cuda" in n and (c := cuda_of_library(n))},
                  key=arch_key)  # fmt: skip
    return {
        "table": "release",
        "version": rel.version,
        "python": python or template.get("python", ""),
        "torch": torch,
        "platforms": _platforms_of(rel.files),
        "cuda-libs": libs,
        "loader": template.get("loader", "nearest-same-major"),
        "cpu": template.get("cpu", "full"),
        "source": f"the index's files read by {READER} ({today}); loader and cpu copied from {template.get('version')}",
        "confidence": "unconfirmed",  # the loader rule and the CPU backend are in code, which the reader cannot read
        "verified": x86.evidence,
        "note": PROPOSED_NOTE,
    }


def _propose_package(rows: Sequence[Row], table: str, rel: ReleaseObs, today: str) -> dict[str, Any] | None:
    read = next((o for o in rel.read if o.facts and o.facts.metadata), None)
    if read is None or read.facts is None or read.facts.metadata is None:
        return None
    python, requires = metadata_fields(read.facts.metadata)
    template = _template(rows, rel.project)
    keep = ("name", "status", "profile", "profiles", "extras", "kernels", "min-cc", "platforms")
    row: dict[str, Any] = {"table": table, **{k: template[k] for k in keep if k in template}}
    row.update(
        name=rel.project,
        version=rel.version,
        python=python or template.get("python", ""),
        **{"requires-dist": kept_requirements(requires, list(template.get("extras") or []))},
        source=f"{read.file.filename} METADATA read by {READER} ({today}); the rest copied from "
        f"{template.get('version')}",
        confidence="unconfirmed",  # which profiles it fits, and how it behaves, are not in its metadata
        verified=read.evidence,
        note=PROPOSED_NOTE,
    )
    return row


def _target(rows: Sequence[Row], fallback: Path) -> Path:
    return rows[-1].file if rows else fallback


def compare(tables: Tables, obs: Observed, *, today: str, matrix_dir: Path = Path("matrices")) -> Report:
    """Every check above over the whole matrix, and rows proposed for releases newer than it."""
    report = Report(unchecked=list(obs.unread))
    torch_rows = tables.get(("torch.toml", "release"), ())
    bnb_rows = tables.get(("bitsandbytes.toml", "release"), ())
    torch_obs = obs.releases.get("torch", {})
    bnb_obs = obs.releases.get("bitsandbytes", {})
    new_torch = [v for v in obs.newer.get("torch", ()) if v in torch_obs]
    new_bnb = [v for v in obs.newer.get("bitsandbytes", ()) if v in bnb_obs]
    check_torch_releases(torch_rows, torch_obs, report, today)
    torch_versions = [*(str(r.data.get("version")) for r in torch_rows), *new_torch]
    check_torch_builds(tables.get(("torch.toml", "build"), ()), torch_versions, obs, report, today)
    check_bnb_releases(bnb_rows, bnb_obs, report, today)
    bnb_versions = [*(str(r.data.get("version")) for r in bnb_rows), *new_bnb]
    check_bnb_sass(tables.get(("bitsandbytes.toml", "sass"), ()), bnb_versions, bnb_obs, report, today)
    packages = tables.get(("companions.toml", "package"), ())
    libraries = tables.get(("quant.toml", "library"), ())
    check_packages(packages, obs.releases, report, today)
    check_packages(libraries, obs.releases, report, today)
    for version in new_torch:
        report.news.append(f"torch {version} is on the index, newer than the matrix")
        report.proposals.append(
            (
                _target(torch_rows, matrix_dir / "torch.toml"),
                _propose_torch_release(torch_rows, torch_obs[version], torch_obs, today),
            )
        )
    for version in new_bnb:
        report.news.append(f"bitsandbytes {version} is on the index, newer than the matrix")
        if (row := _propose_bnb_release(bnb_rows, bnb_obs[version], today)) is not None:
            report.proposals.append((_target(bnb_rows, matrix_dir / "bitsandbytes.toml"), row))
    for rows, table, fallback in ((packages, "package", "companions.toml"), (libraries, "library", "quant.toml")):
        for name in sorted({str(r.data.get("name")) for r in rows}):
            for version in obs.newer.get(name, ()):
                rel = obs.releases.get(name, {}).get(version)
                if rel is None:
                    continue
                report.news.append(f"{name} {version} is on the index, newer than the matrix")
                if (row := _propose_package(rows, table, rel, today)) is not None:
                    report.proposals.append((_target(rows, matrix_dir / fallback), row))
    return report


def wanted_versions(tables: Tables) -> dict[str, list[str]]:
    """package -> the versions the matrix names (what ``upstream.gather`` reads)."""
    out: dict[str, list[str]] = {
        "torch": [str(r.data.get("version")) for r in tables.get(("torch.toml", "release"), ())],
        "bitsandbytes": [str(r.data.get("version")) for r in tables.get(("bitsandbytes.toml", "release"), ())],
    }
    for key in (("companions.toml", "package"), ("quant.toml", "library")):
        for r in tables.get(key, ()):
            out.setdefault(str(r.data.get("name")), []).append(str(r.data.get("version")))
    return out


_PLATFORM: Mapping[str, Platform] = {p: p for p in PLATFORMS}  # a table's platform string as the closed set


def pytorch_builds(tables: Tables) -> list[tuple[str, str, Platform]]:
    """(variant, version, platform) of every Linux CUDA build the matrix says only the PyTorch index serves
    (a platform the schema does not know is no build: the matrix refuses it)."""
    releases = tables.get(("torch.toml", "release"), ())
    out = []
    for build in tables.get(("torch.toml", "build"), ()):
        variant = str(build.data.get("variant"))
        if not variant.startswith("cu"):
            continue
        for rel in releases:
            version = str(rel.data.get("version"))
            if not _in_range(build.data.get("torch"), version):
                continue
            for name in build.data.get("platforms") or ():
                platform = _PLATFORM.get(str(name))
                pypi = (rel.data.get("pypi") or {}).get(name)
                if platform is not None and platform.startswith("linux") and pypi != variant:
                    out.append((variant, version, platform))
    return out
