"""`envbuilder detect [--json]`: what this host is (GPUs, driver, OS flavour, glibc, Pythons)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from envbuilder.cli._common import print_json

if TYPE_CHECKING:
    from envbuilder.detect import Host

SCHEMA = "envbuilder.detect/1"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `detect` subcommand."""
    parser = sub.add_parser("detect", help="report this host: GPUs, driver, OS flavour, glibc, Pythons")
    parser.add_argument("--json", action="store_true", help=f"print a JSON document (schema {SCHEMA})")
    parser.set_defaults(handler=_cmd_detect)


def _cmd_detect(args: argparse.Namespace) -> int:
    from envbuilder.detect import probe_host  # the probe's parsers are not needed to build the parser

    host = probe_host()
    if args.json:
        print_json({"schema": SCHEMA, **host.to_json(), **_cuda_json(args, host)})
    else:
        print("\n".join(render_host(host, _cuda_lines(args, host))))
    return 0


def _cuda_lines(args: argparse.Namespace, host: Host) -> list[str]:
    # The CUDA versions a driver runs come from the matrix.
    from envbuilder.cli._common import driver_cuda_lines

    return driver_cuda_lines(args, host) if host.gpus else []


def _cuda_json(args: argparse.Namespace, host: Host) -> dict[str, str | None]:
    from envbuilder.cli._common import driver_cuda_json

    return driver_cuda_json(args, host) if host.gpus else {"cuda_native": None, "cuda_minor_compat": None}


def render_host(host: Host, cuda_lines: list[str]) -> list[str]:
    """The readable report, one fact per line (pure)."""
    lines: list[str] = []
    if host.gpus:
        for gpu in host.gpus:
            arch = f"{gpu.sm} ({gpu.cc})" if gpu.cc else "compute capability unknown"
            memory = f", {gpu.memory_mib} MiB" if gpu.memory_mib is not None else ""
            lines.append(f"GPU {gpu.index}: {gpu.name}, {arch}{memory}")
        lines.append(f"driver: {host.driver or 'unknown'}")
        lines.extend(cuda_lines)
    else:
        lines.append(f"no NVIDIA GPU found ({host.gpu_probe or 'nvidia-smi listed none'})")
        if host.driver:
            lines.append(f"driver: {host.driver} (kernel module loaded)")
    lines.append(f"OS: {host.os} (kernel {host.kernel}), machine {host.machine}")
    lines.append(f"glibc: {host.glibc or 'none'}")
    if host.pythons:
        lines.append("Pythons:")
        lines.extend(f"  {p.version}  {p.path}" for p in host.pythons)
    else:
        lines.append("Pythons: none found")
    lines.extend(f"warning: {w}" for w in host.warnings)
    return lines
