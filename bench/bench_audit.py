"""Time auditing one bitsandbytes wheel that is already downloaded (goal: under 2 s).

    python bench/bench_audit.py [WHEEL] [--repeat N]

WHEEL defaults to bitsandbytes 0.50.2's linux-x86_64 wheel in the envbuilder cache (``ENVBUILDER_CACHE``
or ``~/.cache/envbuilder/wheels``); fetch it first with ``envbuilder matrix audit bitsandbytes==0.50.2``.
The figure includes the sha256 of the wheel, unzipping every native library and reading its fat binaries.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from envbuilder.audit import audit_wheel
from envbuilder.pypi import default_cache_dir

DEFAULT = "bitsandbytes-0.50.2-py3-none-manylinux_2_24_x86_64.whl"
GOAL_S = 2.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", nargs="?", type=Path, default=default_cache_dir() / DEFAULT)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not args.wheel.is_file():
        print(f"{args.wheel}: not downloaded yet", file=sys.stderr)
        print("TIP run `envbuilder matrix audit bitsandbytes==0.50.2` once to fetch it", file=sys.stderr)
        return 2
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        report = audit_wheel(args.wheel)  # sha256 computed too: the full cost of a cached audit
        times.append(time.perf_counter() - start)
    libs = [lib for lib in report.libraries if lib.entries]
    entries = sum(lib.entries for lib in libs)
    size_mb = args.wheel.stat().st_size / 1e6
    best, median = min(times), statistics.median(times)
    print(
        f"audit {args.wheel.name} ({size_mb:.1f} MB, {len(report.libraries)} native libraries, "
        f"{len(libs)} with CUDA code, {entries} fatbin entries): "
        f"median {median:.3f} s, best {best:.3f} s over {args.repeat} runs (goal < {GOAL_S:.0f} s)"
    )
    return 0 if median < GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
