"""The one evidence model, filled two ways: from an environment, read purely from the smoke program's document
(``smoke.collect_evidence`` runs its light stages inside the environment), and from a pasted log (``from_log``:
what the text states). ``merge`` joins them when both are given."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from envbuilder.doctor import Device, Evidence
from envbuilder.doctor.logs import FACT_PATTERNS, PACKAGE_LINE, PACKAGE_PIN, _cuda_digits, finditer, search
from envbuilder.model.matrix import Matrix
from envbuilder.model.smoke import check_from_json

__all__ = [
    "MAX_LISTED",
    "NOT_NVIDIA",
    "from_log",
    "from_smoke_document",
    "merge",
]


def from_smoke_document(doc: Mapping[str, Any]) -> Evidence:
    """Pure: the facts a smoke document (light or full) holds, as Evidence.

    A full run imported bitsandbytes (``bnb_import``: what it loaded is fact); a light run only probed it
    (``bnb_library``: a candidate and its dlopen result, which ``loader.judge`` weighs against the matrix)."""
    checks = tuple(check_from_json(s) for s in doc.get("stages", []))
    by = {c.name: c.evidence for c in checks}
    interp, torch, cuda = by.get("interpreter", {}), by.get("torch", {}), by.get("cuda", {})
    imported = bool(by.get("bnb_import"))
    bnb = by.get("bnb_import") or by.get("bnb_library") or {}
    lib = bnb.get("library") or {}
    devices = tuple(
        Device(index=int(d["index"]), name=str(d["name"]), cc=str(d["cc"]), vram_bytes=int(d["vram_bytes"]))
        for d in cuda.get("devices", [])
    )
    texts = []
    for c in checks:
        texts += [str(c.evidence[k]) for k in ("error", "stderr") if c.evidence.get(k)]
        texts += [str(lib[k]) for k in ("error_msg",) if c.name == "bnb_import" and lib.get(k)]
        texts += _nested_errors(c.evidence)
    return Evidence(
        python_exe=interp.get("executable"),
        python=interp.get("python"),
        system=interp.get("system"),
        machine=interp.get("machine"),
        libc=interp.get("libc"),
        env=dict(interp.get("env", {})),
        packages=dict(interp.get("packages", {})),
        torch=torch.get("version"),
        torch_cuda=torch.get("cuda"),
        arch_list=tuple(torch.get("arch_list", ())),
        devices=devices,
        bnb=bnb.get("version"),
        bnb_lib=lib.get("name"),
        bnb_shipped=tuple(bnb.get("shipped", ())),
        bnb_imported=imported or not bnb,
        bnb_candidate=None if imported else bnb.get("candidate"),
        text="\n".join(texts),
        checks=checks,
    )


def _nested_errors(evidence: Mapping[str, Any]) -> list[str]:
    """Errors recorded per device / per mode by the heavy stages (``{"cuda:0": {"nf4": {"error": ...}}}``)."""
    out: list[str] = []
    for value in evidence.values():
        if isinstance(value, Mapping):
            if isinstance(value.get("error"), str):
                out.append(value["error"])
            out += _nested_errors(value)
    return out


# --------------------------------------------------------------------------- evidence a log states


def from_log(text: str, matrix: Matrix) -> Evidence:
    """Pure: every fact the text states, in the model ``--env`` fills by probing (None/empty where it is silent).

    Versions from pip lists, ``python -m bitsandbytes``, tracebacks' paths and prose; torch's CUDA from its local
    version or its own messages; the driver's CUDA from nvidia-smi or torch's "found version 11000" (= 11.0); the
    toolkit's from nvcc or torch's extension builder; GPUs by name (compute capability from the GPU table) or by
    the capability a message prints; what failed to load or build. ``text`` is the log (or the reduction
    ``diagnose`` made of a big one)."""
    if not text:
        return Evidence()
    found = {key: _first(text, key) for key in FACT_PATTERNS}
    torch = found["torch"]
    torch_cuda = found["torch_cuda_dotted"] or _dotted(found["torch_cuda"])
    if torch_cuda is None and torch and "+cu" in torch:
        torch_cuda = _cuda_digits(torch.rsplit("+cu", 1)[1])
    rocm = found["rocm"]
    if rocm == "ROCm":  # an AMD GPU named, no version: bitsandbytes reads ROCm's as torch's "CUDA version"
        rocm, torch_cuda = torch_cuda or rocm, None
    driver_cuda = found["driver_cuda"] or _found_version(found["driver_found"])
    macos = bool(found["macos"])
    windows = not macos and bool(found["windows"])
    return Evidence(
        python=_python(found["python"]),
        system="Darwin" if macos else "Windows" if windows else ("Linux" if _linux(text) else None),
        machine="aarch64" if found["aarch64"] else None,
        libc=f"glibc-{found['glibc']}" if found["glibc"] else None,
        packages=_packages(text),
        torch=torch,
        torch_cuda=torch_cuda,
        arch_list=tuple(found["arch_list"].split()) if found["arch_list"] else (),
        devices=_devices(text, found, matrix),
        bnb=found["bnb"],
        driver=found["driver"],
        driver_cuda=driver_cuda,
        toolkit_cuda=found["toolkit_cuda"],
        wsl=bool(found["wsl"]),
        jetson=bool(found["jetson"]),
        rocm=rocm,
        failed_libs=tuple(v if "." in v else f"lib{v}.so" for v in _all(text, "failed_lib")),  # -lcuda
        failed_modules=_all(text, "failed_module"),
        symbols=_all(text, "symbol"),
        building=_all(text, "building"),
        wanted_lib=found["wanted_lib"],
        vram_gib=float(found["vram"]) if found["vram"] else None,
        text="",
    )


def merge(env: Evidence | None, log: Evidence) -> Evidence:
    """The environment's evidence, with what the log adds where the probe is silent (the probe wins where both
    speak: it read the environment itself; a log may be old or from another machine)."""
    if env is None:
        return log
    updates: dict[str, Any] = {}
    for f in dataclasses.fields(Evidence):
        mine, theirs = getattr(env, f.name), getattr(log, f.name)
        if f.name in ("text", "checks", "bnb_imported"):
            continue
        if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
            updates[f.name] = {**theirs, **mine}
        elif not mine and theirs:
            updates[f.name] = theirs
    return dataclasses.replace(env, **updates)


def _first(text: str, key: str) -> str | None:
    for pattern in FACT_PATTERNS[key]:
        m = search(text, pattern)
        if m:
            return next((g for g in m.groups() if g), m.group(0))
    return None


def _all(text: str, key: str) -> tuple[str, ...]:
    out: dict[str, None] = {}
    for pattern in FACT_PATTERNS[key]:
        for m in finditer(text, pattern):
            value = next((g for g in m.groups() if g), None)
            if value:
                out[value] = None
            if len(out) >= MAX_LISTED:
                return tuple(out)
    return tuple(out)


MAX_LISTED = 8  # names kept per list: a log that fails to load a hundred libraries names the first few


def _dotted(digits: str | None) -> str | None:
    return digits if digits and "." in digits else _cuda_digits(digits)


def _found_version(value: str | None) -> str | None:
    """torch's "found version 11040" is CUDA's integer version (1000 * major + 10 * minor): 11.4."""
    if not value:
        return None
    n = int(value)
    return f"{n // 1000}.{(n % 1000) // 10}"


def _python(value: str | None) -> str | None:
    if value is None:
        return None
    return value if "." in value else f"3.{value}"  # Python310 / cp310 -> 3.10


def _linux(text: str) -> bool:
    return "/site-packages/" in text or "/dist-packages/" in text or "linux" in text.lower()


def _packages(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for rx in (PACKAGE_PIN, PACKAGE_LINE):
        for m in finditer(text, rx):
            name = m.group(1).lower().replace("_", "-").replace("llm compressor", "llmcompressor")
            out.setdefault(name, m.group(2))
    return out


def _devices(text: str, found: Mapping[str, str | None], matrix: Matrix) -> tuple[Device, ...]:
    """GPUs by name (their compute capability from the GPU table), else one GPU of the capability a message
    names ("capability sm_120", "Highest compute capability ... 8.6")."""
    from envbuilder.model.target import cc_of_name

    stated = _stated_cc(found)
    names = _all(text, "gpu")
    devices: list[Device] = []
    for i, name in enumerate(names):
        cc = cc_of_name(name, matrix) if not _not_nvidia(name) else ""
        devices.append(Device(index=i, name=name, cc=cc or (stated if len(names) == 1 else ""), vram_bytes=0))
    if not devices and stated:
        devices.append(Device(index=0, name="", cc=stated, vram_bytes=0))
    vram = found["vram"]
    if vram and devices:
        devices[0] = dataclasses.replace(devices[0], vram_bytes=int(float(vram) * 2**30))
    return tuple(devices)


def _stated_cc(found: Mapping[str, str | None]) -> str:
    if found["sm"]:
        sm = found["sm"]
        return f"{sm[:-1]}.{sm[-1]}"
    cc = found["cc"]
    return cc.replace(", ", ".") if cc else ""


NOT_NVIDIA = re.compile(r"(?i)iris|intel|radeon|\bRX \d")


def _not_nvidia(name: str) -> bool:
    return bool(NOT_NVIDIA.search(name))
