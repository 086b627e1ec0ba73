"""The NVIDIA driver version as text gives it: one pattern for ``--driver``, the override variables and the files
and tools ``detect`` reads (nvidia-smi's form: 550.54.14 on Linux, 576.02 on Windows)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from envbuilder.model.errors import TargetError

__all__ = ["DRIVER_VARIABLES", "DriverReading", "driver_override", "driver_version"]

# envbuilder's own variable first: it is the more specific statement (the same order as a flag over a variable);
# uv's UV_CUDA_DRIVER_VERSION is honoured so that one setting drives both tools.
DRIVER_VARIABLES = ("ENVBUILDER_DRIVER", "UV_CUDA_DRIVER_VERSION")
# A CUDA version ("12.4") given by mistake is refused, not read as a driver.
_DRIVER = re.compile(r"^\d{3}(?:\.\d{1,3}){0,2}$", re.ASCII)


@dataclass(frozen=True, slots=True)
class DriverReading:
    """A driver version and where it was read ("/sys/module/nvidia/version", "UV_CUDA_DRIVER_VERSION", "NVML")."""

    version: str
    source: str


def driver_version(text: str | None) -> str | None:
    """``text`` stripped when it is a driver version, else None."""
    value = (text or "").strip()
    return value if _DRIVER.match(value) else None


def driver_override(env: Mapping[str, str]) -> tuple[DriverReading | None, tuple[str, ...]]:
    """The driver a variable names (``DRIVER_VARIABLES`` in order) and warnings; a malformed value is refused.

    An empty variable counts as unset (as uv's ``std::env::var`` sees it, an empty value would fail to parse;
    refusing an empty string would punish ``export UV_CUDA_DRIVER_VERSION=`` used to clear it).
    """
    found: list[DriverReading] = []
    for name in DRIVER_VARIABLES:
        raw = env.get(name, "").strip()
        if not raw:
            continue
        version = driver_version(raw)
        if version is None:
            msg = f"{name}={raw!r} is not an NVIDIA driver version"
            hint = f"write it as nvidia-smi prints it, e.g. {name}=550.54.14, or unset it to detect the driver"
            raise TargetError(msg, hint=hint)
        found.append(DriverReading(version, name))
    if not found:
        return None, ()
    warnings = tuple(
        f"{found[0].source}={found[0].version} is used, not {other.source}={other.version} "
        "(envbuilder's own variable is the more specific)"
        for other in found[1:]
        if other.version != found[0].version
    )
    return found[0], warnings
