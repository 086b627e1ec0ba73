"""Judge the light probe's bitsandbytes evidence against the matrix: which library would the release load?

The probe (``smoke/check.py --light``) never imports bitsandbytes and carries no release facts: it names a
loader-neutral candidate (override, else the exact ``torch.version.cuda`` file, else the nearest file of the
same CUDA major) and dlopens it. Here the installed release's loader rule (``[[release]].loader`` in
``matrices/bitsandbytes.toml``, applied by ``rules.bnb.library_cuda`` to the files actually shipped) decides
whether that candidate is what a real import loads. Only then does its dlopen error join the text the rules
read, so ``libcudart.so.12: cannot open shared object file`` is reported exactly when an import would hit it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from packaging.version import InvalidVersion, Version

from envbuilder.doctor import Evidence
from envbuilder.model.matrix import BnbRelease, Matrix
from envbuilder.rules.bnb import library_cuda

__all__ = [
    "CUDA_FILE",
    "DIGITS_ONLY_LOADER",
    "DIGITS_ONLY_SINCE",
    "expected_library",
    "judge",
    "refuses_non_digits",
    "shipped_cuda",
]

CUDA_FILE = re.compile(r"libbitsandbytes_cuda(\d\d)(\d+)\.(?:so|dll|dylib)$")
# The loader era that checks BNB_CUDA_VERSION in Python ("value must be digits only") and falls back by major.
DIGITS_ONLY_LOADER = "nearest-same-major"
DIGITS_ONLY_SINCE = Version("0.50.0")  # for a release the matrix does not know


def shipped_cuda(files: tuple[str, ...]) -> tuple[str, ...]:
    """The CUDA versions of the shipped CUDA libraries: ('libbitsandbytes_cuda118.so',) -> ('11.8',)."""
    return tuple(f"{int(m.group(1))}.{int(m.group(2))}" for f in files if (m := CUDA_FILE.match(f)))


def refuses_non_digits(release: BnbRelease | None, version: str | None) -> bool:
    """Does this release refuse an empty or non-digit BNB_CUDA_VERSION (0.50+), not use it as a name?"""
    if release is not None:
        return release.loader == DIGITS_ONLY_LOADER
    try:
        return version is not None and Version(version.split("+", 1)[0]) >= DIGITS_ONLY_SINCE
    except InvalidVersion:
        return False


def expected_library(
    release: BnbRelease | None,
    version: str | None,
    cand: Mapping[str, Any],
    *,
    override: str | None,
    torch_cuda: str | None,
    suffix: str,
) -> tuple[str | None, str]:
    """Pure: (the file the release's loader loads, or None; why) for the probe's candidate.

    An unknown release is taken at the probe's word (its candidate)."""
    name = str(cand.get("name") or "")
    if cand.get("rule") == "cpu" or torch_cuda is None:
        return name, "no GPU in use: the CPU library"
    if override is not None and not override.isdigit() and refuses_non_digits(release, version):
        return None, f"BNB_CUDA_VERSION={override!r}: bitsandbytes {version} takes digits only, loads nothing"
    if cand.get("rule") == "override" or release is None:
        return name, "the probe's candidate"
    files = tuple(str(f) for f in cand.get("shipped", ()))
    lib_cuda = library_cuda(dataclasses.replace(release, cuda_libs=shipped_cuda(files)), torch_cuda)
    if lib_cuda is not None:
        return f"libbitsandbytes_cuda{lib_cuda.replace('.', '')}{suffix}", f"loader {release.loader}"
    if release.loader == "exact-or-cpu":
        return f"libbitsandbytes_cpu{suffix}", f"no {cand.get('exact')}: exact-or-cpu loads the CPU library"
    return None, f"no {cand.get('exact')} shipped: loader {release.loader} loads none for CUDA {torch_cuda}"


def judge(matrix: Matrix, ev: Evidence) -> Evidence:
    """Pure: the evidence with ``bnb_lib`` (what the release loads), ``bnb_load_error``, and the dlopen error
    in ``text`` where a real import would meet it. Evidence from a real import is returned unchanged."""
    cand = ev.bnb_candidate
    if ev.bnb_imported or not cand or not ev.bnb or ev.bnb_lib or ev.bnb_load_error:
        return ev  # a real import, no probe, or judged already (judging sets one of the two)
    release = matrix.bnb_release(ev.bnb.split("+", 1)[0])
    suffix = "." + str(cand.get("name") or ".so").rsplit(".", 1)[-1]
    torch_cuda = ev.torch_cuda if cand.get("rule") != "cpu" else None
    loads, why = expected_library(
        release,
        ev.bnb,
        {**cand, "shipped": ev.bnb_shipped},
        suffix=suffix,
        override=ev.env.get("BNB_CUDA_VERSION"),
        torch_cuda=torch_cuda,
    )
    error: str | None = None
    text = ev.text
    if loads is None:
        error = why
    elif loads == cand.get("name"):
        if not cand.get("exists"):
            error = f"{loads} is not shipped in {cand.get('path') or 'the package'}"
        elif cand.get("dlopen_error"):
            error = str(cand["dlopen_error"])
            text = "\n".join(t for t in (text, error) if t)
    return dataclasses.replace(ev, bnb_lib=None if error else loads, bnb_load_error=error, text=text)
