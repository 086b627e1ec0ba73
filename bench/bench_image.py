"""Benchmark: image size per profile, and rebuild time after a bitsandbytes pin change.

    python bench/bench_image.py --lock dockerfiles/cpu/pylock.cpu.toml --bnb 0.49.2 \
        --base-image localhost/envbuilder-test-base:bookworm --uv-image localhost/envbuilder-test-uv:0.13.9

1. builds the image of --lock (cache warm or cold, as the engine has it) and reports its size;
2. locks the same target again with bitsandbytes pinned to --bnb (`envbuilder lock`), builds that, and
   reports the rebuild time and whether the CUDA-stack step (torch and its CUDA wheels) came from cache;
3. compares the size with the published size of the official pytorch/pytorch runtime image for the same
   torch/CUDA where one is recorded in REFERENCE (with its source), and removes the images it built.

Prints one JSON document (schema envbuilder.bench-image/1). Use the public API like any other client.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from envbuilder.cli.app import main as cli  # noqa: E402
from envbuilder.edge import _run  # noqa: E402
from envbuilder.edge.containers import BuildRequest, Podman  # noqa: E402
from envbuilder.edge.settings import Settings  # noqa: E402
from envbuilder.jobs.image import copy_wheels, write_context  # noqa: E402
from envbuilder.model.images import PinTable, load_pin_table  # noqa: E402
from envbuilder.model.lock import Lock, read_lock  # noqa: E402
from envbuilder.model.smoke import load_smoke_table  # noqa: E402
from envbuilder.render.dockerfile import Options, build_args, image_tags, render_context  # noqa: E402

# Published (compressed, as Docker Hub lists it) sizes of official pytorch/pytorch runtime images, keyed by
# (torch, cuda). Only figures read in a source go here, with that source; none could be found with the
# search tools available when this was written, so the comparison prints "unknown" until one is added.
REFERENCE: dict[tuple[str, str | None], tuple[int, str]] = {}


def _build(
    engine: Podman, *, lock: Lock, text: str, options: Options, settings: Settings, cert: str | None
) -> tuple[float, str, tuple[str, str]]:
    with tempfile.TemporaryDirectory(prefix="envbuilder-bench-") as tmp:
        ctx = Path(tmp) / "context"
        write_context(ctx, render_context(lock, text, options=options, table=load_smoke_table()))
        covered = copy_wheels(lock, settings, ctx / "wheels")
        tags = image_tags(lock, "localhost/envbuilder-bench")
        request = BuildRequest(
            context=ctx,
            tags=tags,
            build_args=build_args(lock, options, wheelhouse_serves_all=covered),
            secrets={"ca": Path(cert)} if cert else {},
            stream=False,
        )
        start = time.perf_counter()
        result = _run.run(engine.build_argv(request), timeout=7200)
        return time.perf_counter() - start, result.stdout + result.stderr, tags


def _stack_cached(log: str) -> bool:
    """Did the cuda-stack install step come from the engine's cache?"""
    step = re.search(r"STEP \d+/\d+: RUN [^\n]*--target /opt/envbuilder/cuda-stack[^\n]*\n(--> [^\n]*)", log)
    return bool(step and "Using cache" in step.group(1))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lock", default=str(ROOT / "dockerfiles" / "cpu" / "pylock.cpu.toml"))
    p.add_argument("--bnb", default="0.49.2", help="the other bitsandbytes pin for the rebuild")
    p.add_argument("--base-image")
    p.add_argument("--uv-image", help="default: uv's image at the matrix's release (images.toml [uv])")
    p.add_argument("--find-links", action="append", default=[])
    p.add_argument("--ca-cert")
    p.add_argument("--keep", action="store_true", help="keep the images")
    args = p.parse_args(argv)
    engine = Podman()
    settings = Settings(find_links=tuple(args.find_links))
    # uv's release from the matrix; the bases stay tags (no digests), as the bench has always built them.
    options = Options(base_image=args.base_image, uv_image=args.uv_image, pins=PinTable(uv=load_pin_table().uv))
    lock_a = read_lock(Path(args.lock))
    t_a, _, tags_a = _build(
        engine,
        lock=lock_a,
        text=Path(args.lock).read_text(encoding="utf-8"),
        options=options,
        settings=settings,
        cert=args.ca_cert,
    )
    size_a = engine.image_size(tags_a[0])
    with tempfile.TemporaryDirectory(prefix="envbuilder-bench-lock-") as tmp:
        target = lock_a.target
        gpus = ",".join(g["sm"] for g in target.get("gpus", [])) or "cpu"
        out = Path(tmp) / f"pylock.{lock_a.name}.toml"
        lock_argv = [
            "lock",
            "--gpu",
            gpus,
            "--os",
            "linux",
            "--python",
            lock_a.python,
            "--profile",
            lock_a.profile,
            "--bnb",
            args.bnb,
            "--name",
            lock_a.name,
            "-o",
            str(out),
            "--no-pip-config",
            *(f"--find-links={d}" for d in args.find_links),
        ]
        if target.get("driver"):
            lock_argv += ["--driver", str(target["driver"])]
        if cli(lock_argv) != 0:
            return 1
        lock_b = read_lock(out)
        t_b, log_b, tags_b = _build(
            engine,
            lock=lock_b,
            text=out.read_text(encoding="utf-8"),
            options=options,
            settings=settings,
            cert=args.ca_cert,
        )
    size_b = engine.image_size(tags_b[0])
    torch = lock_a.package("torch")
    ref = REFERENCE.get((torch.version.split("+")[0] if torch else "", lock_a.cuda))
    doc = {
        "schema": "envbuilder.bench-image/1",
        "engine": "podman (vfs, chroot)",
        "image": {
            "tag": tags_a[0],
            "profile": lock_a.profile,
            "cuda": lock_a.cuda,
            "size_bytes": size_a,
            "build_seconds": round(t_a, 1),
        },
        "rebuild_after_bnb_change": {
            "tag": tags_b[0],
            "bitsandbytes": f"{lock_a.package('bitsandbytes').version if lock_a.package('bitsandbytes') else None} -> {args.bnb}",
            "seconds": round(t_b, 1),
            "cuda_stack_from_cache": _stack_cached(log_b),
            "size_bytes": size_b,
        },
        "official_runtime_image": {"size_bytes": ref[0], "source": ref[1]}
        if ref
        else "unknown (no published figure recorded)",
    }
    print(json.dumps(doc, indent=2))
    if not args.keep:
        engine.remove_images([*tags_a, *tags_b])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
