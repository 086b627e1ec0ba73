"""`envbuilder detect [--json]`: what this host is (GPUs, driver, OS flavour, glibc, Pythons)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from envbuilder.cli._common import print_json

if TYPE_CHECKING:
    from envbuilder.edge.detect import Host

__all__ = [
    "SCHEMA",
    "needs_driver",
    "register",
    "render_host",
]

SCHEMA = "envbuilder.detect/1"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `detect` subcommand."""
    parser = sub.add_parser("detect", help="report this host: GPUs, driver, OS flavour, glibc, Pythons")
    parser.add_argument("--json", action="store_true", help=f"print a JSON document (schema {SCHEMA})")
    parser.set_defaults(handler=_cmd_detect)


def _cmd_detect(args: argparse.Namespace) -> int:
    from envbuilder.edge.detect import probe_host  # the probe's parsers are not needed to build the parser

    host = probe_host()
    advice = _advice(args, host)
    by_name = _ccs_by_name(args, host)
    if args.json:
        doc = host.to_json()
        doc["gpus"] = [{**g.to_json(), "cc_by_name": by_name.get(g.index)} for g in host.gpus]
        print_json({"schema": SCHEMA, **doc, **_cuda_json(args, host), "driver_advice": advice})
    else:
        print("\n".join(render_host(host, _cuda_lines(args, host), advice, by_name)))
    return 0


def _ccs_by_name(args: argparse.Namespace, host: Host) -> dict[int, str]:
    """For GPUs no tool gave a compute capability (named by the driver's /proc files): what the name means."""
    if all(g.cc for g in host.gpus):
        return {}
    from envbuilder.cli._common import cc_of_name, load_matrix_for

    matrix = load_matrix_for(args)
    return {g.index: cc for g in host.gpus if not g.cc and (cc := cc_of_name(g.name, matrix))}


def _cuda_lines(args: argparse.Namespace, host: Host) -> list[str]:
    # The CUDA versions a driver runs come from the matrix.
    from envbuilder.cli._common import driver_cuda_lines

    return driver_cuda_lines(args, host) if host.gpus else []


def _cuda_json(args: argparse.Namespace, host: Host) -> dict[str, str | None]:
    from envbuilder.cli._common import driver_cuda_json

    return driver_cuda_json(args, host) if host.gpus else {"cuda_native": None, "cuda_minor_compat": None}


def needs_driver(host: Host) -> bool:
    """GPUs on the PCI bus that no driver tool answered for, or a WSL2 distro with no GPU visible (pure)."""
    return host.gpu_source == "PCI bus" or (host.os == "wsl2" and not host.gpus and not host.driver)


def _advice(args: argparse.Namespace, host: Host) -> str | None:
    from envbuilder.cli._common import plan_driver_floor
    from envbuilder.edge.nvidia import driver_advice

    if not needs_driver(host):
        return None
    return driver_advice(
        host.os,
        container=host.container,
        module=host.kernel_module,
        device_nodes=host.device_nodes,
        floor=plan_driver_floor(args, host),
    )


def render_host(
    host: Host, cuda_lines: list[str], advice: str | None = None, by_name: dict[int, str] | None = None
) -> list[str]:
    """The readable report, one fact per line (pure). ``by_name``: GPU index -> the compute capability its name
    means, for GPUs no tool reported one for."""
    lines: list[str] = []
    where = f" (from {host.driver_source})" if host.driver_source else ""
    by_name = by_name or {}
    if host.gpus:
        for gpu in host.gpus:
            named = by_name.get(gpu.index)
            if gpu.cc:
                arch = f"{gpu.sm} ({gpu.cc})"
            elif named:
                arch = f"sm_{named.replace('.', '')} ({named}, by its name)"
            else:
                arch = "compute capability unknown"
            memory = f", {gpu.memory_mib} MiB" if gpu.memory_mib is not None else ""
            pci = f", PCI {gpu.pci_id}" if host.gpu_source == "PCI bus" and gpu.pci_id else ""
            lines.append(f"GPU {gpu.index}: {gpu.name}, {arch}{memory}{pci}")
        if host.gpu_source == "PCI bus":
            lines.append(f"  found on the {host.gpu_probe}")
        lines.append(f"driver: {host.driver}{where}" if host.driver else "driver: none loaded")
        lines.extend(cuda_lines)
    else:
        lines.append(f"no NVIDIA GPU found ({host.gpu_probe or 'nvidia-smi listed none'})")
        if host.driver:
            lines.append(f"driver: {host.driver}{where}")
    if advice:
        lines.append(f"to do: {advice}")
    lines.append(f"OS: {host.os} (kernel {host.kernel}), machine {host.machine}")
    lines.append(f"glibc: {host.glibc or 'none'}")
    if host.pythons:
        lines.append("Pythons:")
        lines.extend(f"  {p.version}  {p.path}" for p in host.pythons)
    else:
        lines.append("Pythons: none found")
    lines.extend(f"warning: {w}" for w in host.warnings)
    return lines
