"""Evidence from an environment, read purely from the smoke program's document (``smoke.collect_evidence``
runs its light stages inside the environment)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envbuilder.doctor import Device, Evidence
from envbuilder.model.smoke import check_from_json


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
        bnb_lib_path=lib.get("path"),
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
