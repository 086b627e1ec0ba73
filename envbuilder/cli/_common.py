"""Shared option groups and helpers for the subcommands: the target options, loading the matrix, JSON."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from envbuilder.model.errors import TargetError

if TYPE_CHECKING:
    from envbuilder.edge.detect import Host
    from envbuilder.edge.manifest import EnvSpec
    from envbuilder.model.matrix import Matrix
    from envbuilder.model.target import Gpu, OsFlavour, Target


def load_matrix_for(args: argparse.Namespace) -> Matrix:
    from envbuilder.edge.matrix_cache import cached_matrix

    return cached_matrix(getattr(args, "matrix_dir", None))


def add_target_options(parser: argparse.ArgumentParser, *, gpu_default: str | None = None) -> None:
    """The options that name a target: --gpu --driver --os --python --machine --profile --torch --bnb."""
    g = parser.add_argument_group("target (default: this host, detected)")
    g.add_argument("--gpu", default=gpu_default, metavar="X", help="sm_89, 8.9, 'RTX 4090', a comma list, auto or cpu")
    g.add_argument("--driver", metavar="V", help="NVIDIA driver version, e.g. 550.54.14")
    g.add_argument("--os", default=None, metavar="OS", help="linux, wsl2 or windows (default: this host's)")
    g.add_argument("--python", metavar="3.N", help="the environment's Python (default: the best that works)")
    g.add_argument("--machine", default=None, metavar="ARCH", help="x86_64 or aarch64 (default: this host's)")
    g.add_argument("--profile", metavar="P", help="bnb, gptq, awq or cpu (default: bnb with a GPU, cpu without)")
    g.add_argument("--torch", metavar="SPEC", help="constrain torch, e.g. 2.10.0 or '>=2.8,<2.12'")
    g.add_argument("--bnb", metavar="SPEC", help="constrain bitsandbytes, e.g. 0.49.2")
    g.add_argument("--forward-compat", action="store_true", help="allow cuda-compat on data-centre GPUs (opt-in)")


_TARGET_OPTIONS = ("gpu", "driver", "os", "python", "machine", "profile", "torch", "bnb")


def _refuse_empty(values: dict[str, str | None]) -> None:
    """`--gpu ''` was read as "not given" (and so as this host): an empty value is a mistake, said as one."""
    for key, value in values.items():
        if value is not None and not value.strip():
            msg = f"--{key} is empty"
            raise TargetError(msg, hint=f"give a value (see `--help`), or leave --{key} out for the default")


def target_from_args(
    args: argparse.Namespace, matrix: Matrix, host: Host | None = None, *, os_name: str | None = None
) -> Target:
    """A Target from the options; detection fills only what the options leave open (STYLE rule 3).
    ``os_name`` is the OS where the command itself names it (``recipe wsl2``), in place of --os."""
    return target_from_options(
        matrix,
        host,
        gpu=args.gpu,
        driver=args.driver,
        os=os_name or args.os,
        python=args.python,
        machine=args.machine,
        profile=args.profile,
        torch=args.torch,
        bnb=args.bnb,
        forward_compat=args.forward_compat,
    )


def target_from_options(
    matrix: Matrix,
    host: Host | None = None,
    *,
    gpu: str | None = None,
    driver: str | None = None,
    os: str | None = None,
    python: str | None = None,
    machine: str | None = None,
    profile: str | None = None,
    torch: str | None = None,
    bnb: str | None = None,
    forward_compat: bool = False,
) -> Target:
    """``target_from_args`` over the option values themselves (None: not given)."""
    from envbuilder.model.target import build_target, parse_gpus

    _refuse_empty(dict(zip(_TARGET_OPTIONS, (gpu, driver, os, python, machine, profile, torch, bnb), strict=True)))
    gpu_text = (gpu or "auto").strip()
    if host is None and gpu_text.lower() == "auto":  # planning for another machine never probes this one
        from envbuilder.edge.detect import probe_host

        host = probe_host()
    if gpu_text.lower() == "auto":
        gpus = _host_gpus(host, matrix) if host else ()
        driver = driver or (host.driver if host and gpus else None)  # the probe applied the variables
    else:
        gpus = parse_gpus(gpu_text, matrix)
        driver = driver or _driver_variable()
    if python:
        pythons: tuple[str, ...] = (python,)
    elif host and host.pythons and gpu_text.lower() == "auto":
        pythons = _preferred_installed(host)
    else:
        from envbuilder.model.target import DEFAULT_PYTHONS

        pythons = DEFAULT_PYTHONS
    return build_target(
        matrix,
        gpus=gpus,
        driver=driver,
        os=os or (host_os(host) if host else "linux"),
        pythons=pythons,
        machine=machine or (host.machine if host else "x86_64"),
        profile=profile,
        torch=torch,
        bnb=bnb,
        forward_compat=forward_compat,
    )


def _driver_variable() -> str | None:
    """ENVBUILDER_DRIVER, then UV_CUDA_DRIVER_VERSION: a flag beats them, they beat detection (as in uv)."""
    import os

    from envbuilder.model.driver import driver_override

    reading, _ = driver_override(os.environ)
    return reading.version if reading else None


def _preferred_installed(host: Host) -> tuple[str, ...]:
    from envbuilder.model.target import DEFAULT_PYTHONS

    installed = {p.minor for p in host.pythons}
    ordered = [p for p in DEFAULT_PYTHONS if p in installed]
    return tuple(ordered) or DEFAULT_PYTHONS


def _host_gpus(host: Host, matrix: Matrix) -> tuple[Gpu, ...]:
    """The detected GPUs as the target's: nvidia-smi's compute capability, else the one its name gives."""
    from envbuilder.model.target import Gpu, identify_name

    out = []
    for gpu in host.gpus:
        products = identify_name(gpu.name, matrix)
        cc = gpu.cc or cc_of_name(gpu.name, matrix)
        if not cc:
            where = f"its PCI id {gpu.pci_id}" if gpu.pci_id else "nvidia-smi (old driver?)"
            msg = f"detected GPU {gpu.name}, but neither {where} nor its name tells its compute capability"
            raise TargetError(msg, hint="name it with --gpu (e.g. --gpu sm_86 or --gpu 'RTX 3090')")
        if matrix.arch(cc) is None:
            msg = f"detected GPU {gpu.name} has compute capability {cc}, which the matrix does not know"
            raise TargetError(msg, hint="name a known architecture with --gpu, or update envbuilder")
        segments = {p.segment for p in products if p.cc == cc}
        out.append(Gpu(cc=cc, product=gpu.name, segment=segments.pop() if len(segments) == 1 else None))
    return tuple(out)


def cc_of_name(name: str, matrix: Matrix) -> str:
    """The one compute capability a product name means (the driver's /proc name of a GPU no tool reported), or ""."""
    from envbuilder.model import target

    return target.cc_of_name(name, matrix)


def host_os(host: Host) -> OsFlavour:
    """The OS flavour the matrix knows for a probed host (macOS plans as a Linux target)."""
    from envbuilder.jobs.sync import os_flavour

    return os_flavour(host)


def driver_cuda_json(args: argparse.Namespace, host: Host) -> dict[str, str | None]:
    """For `detect`: the highest CUDA the driver runs natively and by minor-version compatibility."""
    from envbuilder.rules.cuda import driver_cuda

    if not host.driver:
        return {"cuda_native": None, "cuda_minor_compat": None}
    native, mvc = driver_cuda(load_matrix_for(args), host.driver, host_os(host))
    return {"cuda_native": native, "cuda_minor_compat": mvc}


def driver_cuda_lines(args: argparse.Namespace, host: Host) -> list[str]:
    """The same, as the lines `detect` prints."""
    if not host.driver:
        return []
    cuda = driver_cuda_json(args, host)
    native, mvc = cuda["cuda_native"], cuda["cuda_minor_compat"]
    return [
        f"CUDA (native): up to {native}" if native else "CUDA (native): none known for this driver",
        f"CUDA (minor-version compatibility): {mvc}" if mvc else "CUDA (minor-version compatibility): none",
    ]


def plan_driver_floor(args: argparse.Namespace, host: Host) -> str | None:
    """The lowest driver that runs the plan for this host's GPUs natively (no driver known yet), or None when no
    plan can be made (a GPU whose architecture is unknown, no GPU at all)."""
    from envbuilder.model.plan import Plan
    from envbuilder.resolve import resolve
    from envbuilder.rules.cuda import driver_floors

    if not host.gpus:
        return None
    matrix = load_matrix_for(args)
    try:
        target = target_from_options(matrix, host)  # every option open: the host decides
    except TargetError:
        return None
    plan = resolve(target, matrix)
    if not isinstance(plan, Plan) or plan.cuda is None:
        return None
    native, mvc = driver_floors(matrix, plan.cuda, target.os)
    return native or mvc


def print_json(doc: object) -> None:
    import json

    json.dump(doc, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


def build_target_from_spec(spec: EnvSpec, matrix: Matrix) -> Target:
    """A manifest [[env]] as a Target (it names another machine, so nothing is detected)."""
    from envbuilder.model.target import DEFAULT_PYTHONS, build_target, parse_gpus

    gpus = parse_gpus(",".join(spec.gpus), matrix) if spec.gpus else ()
    return build_target(
        matrix,
        gpus=gpus,
        driver=spec.driver,
        os=spec.os,
        pythons=(spec.python,) if spec.python else DEFAULT_PYTHONS,
        machine=spec.machine,
        profile=spec.profile,
        torch=spec.torch,
        bnb=spec.bnb,
    )
