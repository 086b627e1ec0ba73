"""The PCI ID database's text format (``pci.ids`` as pciutils, hwdata and Debian's ``pci.ids`` package ship it).

Pure: text in, values out. Only what envbuilder needs is read: the header's ``Version`` and ``Date``, and the
device lines of one vendor (subsystem lines and the device-class section are skipped). The same reader takes
the whole database and the NVIDIA subset that ``matrices/nvidia.ids`` keeps, because that subset is written
in the same format (``render``).

The format (from the file's own header)::

    # vendor  vendor_name
    #	device  device_name				<-- single tab
    #		subvendor subdevice  subsystem_name	<-- two tabs
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "NVIDIA",
    "PciIds",
    "PciIdsError",
    "parse",
    "render",
]

NVIDIA = "10de"

_VENDOR = re.compile(r"^([0-9a-f]{4})  (.+)$")
_DEVICE = re.compile(r"^\t([0-9a-f]{4})  (.+)$")
_VERSION = re.compile(r"^#\s*Version:\s*(\S+)\s*$")
_DATE = re.compile(r"^#\s*Date:\s*(.+?)\s*$")


class PciIdsError(ValueError):
    """The text is not a pci.ids database (or lacks the vendor asked for); ``line`` is 1-based, 0 if none."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.message, self.line = message, line


@dataclass(frozen=True, slots=True)
class PciIds:
    """One vendor's devices, in file order, and the database's version and date (``None`` when absent)."""

    version: str | None
    date: str | None
    vendor: str
    vendor_name: str
    devices: tuple[tuple[str, str], ...]  # (device id, name): ("28a1", "AD107M [GeForce RTX 4050 Max-Q / Mobile]")


def parse(text: str, vendor: str = NVIDIA) -> PciIds:
    """Read ``vendor``'s device lines and the header of a pci.ids text; raise ``PciIdsError`` if it has none."""
    lines = text.splitlines()
    body = next((i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")), len(lines))
    header = lines[:body]
    version = next((v for v in (_match(_VERSION, line) for line in header) if v), None)
    date = next((d for d in (_match(_DATE, line) for line in header) if d), None)
    name, devices = _vendor_devices(lines, body, vendor)
    if name is None:
        msg = f"no vendor {vendor} in it (is it a pci.ids file?)"
        raise PciIdsError(msg)
    return PciIds(version=version, date=date, vendor=vendor, vendor_name=name, devices=tuple(devices))


def _vendor_devices(lines: Sequence[str], start: int, vendor: str) -> tuple[str | None, list[tuple[str, str]]]:
    name: str | None = None
    devices: list[tuple[str, str]] = []
    for number, line in enumerate(lines[start:], start + 1):
        if line.startswith(("#", "\t\t")) or not line.strip():
            continue
        if line.startswith("C "):  # the device-class section follows the vendors
            break
        top = _VENDOR.match(line)
        if top:
            if name is not None:  # vendors are sorted: the one asked for has ended
                break
            name = top.group(2).strip() if top.group(1) == vendor else None
            continue
        device = _DEVICE.match(line)
        if device is None:
            msg = f"line {number} is neither a vendor, a device nor a subsystem line: {line[:60]!r}"
            raise PciIdsError(msg, number)
        if name is not None:
            devices.append((device.group(1), device.group(2).strip()))
    return name, devices


def _match(pattern: re.Pattern[str], line: str) -> str | None:
    found = pattern.match(line)
    return found.group(1) if found else None


def render(db: PciIds, devices: Iterable[tuple[str, str]], comments: Sequence[str] = ()) -> str:
    """A pci.ids text holding ``devices`` of ``db``'s vendor, with ``db``'s version and date in its header.

    ``parse`` reads it back; so do pciutils' tools (``lspci -i FILE``).
    """
    head = [f"# {c}" if c else "#" for c in comments]
    head += ["#", f"#\tVersion: {db.version or 'unknown'}", f"#\tDate:    {db.date or 'unknown'}", "#"]
    body = [f"{db.vendor}  {db.vendor_name}", *(f"\t{device}  {name}" for device, name in devices)]
    return "\n".join([*head, *body]) + "\n"
