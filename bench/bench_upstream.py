"""What reading the matrix's facts from PyPI costs, against downloading the files whole (the alternative).

    python bench/bench_upstream.py [--warm-cache DIR] [--skip-download]

1. One torch wheel's facts (torch 2.15.0, cp312, manylinux x86_64: METADATA, torch/version.py and
   libtorch_nvshmem.so's loaded GPU image) read by range requests into an empty cache, against streaming the
   same wheel whole (what `pip download torch==2.15.0 --no-deps` fetches), in the same run.
   Goal: under 8 MB over the network.
2. `envbuilder matrix refresh` over the whole matrix with a warm cache (``--warm-cache``, default the
   envbuilder cache: run `envbuilder matrix refresh` once first), and what the same facts would cost as whole
   files (the sum of the sizes the index lists for every file read). Goal: under 2 minutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from envbuilder.edge.pypi import Http
from envbuilder.edge.settings import cache_root
from envbuilder.edge.upstream import open_upstream, pick_file
from envbuilder.jobs.matrix_audit import read_upstream
from envbuilder.model.matrix import matrix_dirs

ONE_WHEEL_GOAL_BYTES = 8_000_000
REFRESH_GOAL_S = 120.0


def one_wheel(*, download: bool) -> tuple[int, float, int, float | None]:
    """(bytes read, seconds, the wheel's size, seconds to stream it whole or None)."""
    with tempfile.TemporaryDirectory() as tmp:
        upstream, http = open_upstream(index_url=None, pytorch_index=None, cache_root=Path(tmp))
        with http:
            file = pick_file(upstream.releases("torch")["2.15.0"], "linux-x86_64")
            assert file is not None and file.size
            before, start = http.bytes_in, time.perf_counter()
            facts = upstream.reader.torch_facts(file)
            spent, seconds = http.bytes_in - before, time.perf_counter() - start
    assert "torch/version.py" in facts.members and facts.libraries
    whole_s = None
    if download:
        with Http() as whole:
            start = time.perf_counter()
            for _ in whole.stream_range(file.url, 0, file.size):
                pass
            whole_s = time.perf_counter() - start
    return spent, seconds, file.size, whole_s


def refresh(cache: Path) -> tuple[float, int, int, int]:
    """(seconds, bytes read, requests, bytes of the files whose facts it used, as whole files)."""
    run = read_upstream(
        list(matrix_dirs()), index_url=None, pytorch_index=None, ca_cert=None, cache_root=cache
    )
    sizes = {
        o.file.filename: o.file.size or 0
        for releases in run.observed.releases.values()
        for rel in releases.values()
        for o in rel.read
        if o.facts is not None
    }
    return run.seconds, run.bytes_in, run.requests, sum(sizes.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-cache", type=Path, default=cache_root(), help="the cache root a refresh filled")
    parser.add_argument("--skip-download", action="store_true", help="do not stream the whole wheel")
    args = parser.parse_args()
    spent, seconds, size, whole_s = one_wheel(download=not args.skip_download)
    whole = f", streamed whole in {whole_s:.1f} s" if whole_s is not None else ""
    print(
        f"one torch wheel (2.15.0 cp312 x86_64, {size / 1e6:.0f} MB): facts read with {spent / 1e6:.2f} MB in "
        f"{seconds:.1f} s{whole}; {size / spent:.0f}x fewer bytes (goal < {ONE_WHEEL_GOAL_BYTES / 1e6:.0f} MB)"
    )
    r_s, r_bytes, r_requests, r_whole = refresh(args.warm_cache)
    print(
        f"matrix refresh, warm cache: {r_s:.1f} s, {r_bytes / 1e6:.1f} MB in {r_requests} requests; the same "
        f"facts as whole files: {r_whole / 1e9:.1f} GB (goal < {REFRESH_GOAL_S:.0f} s)"
    )
    return 0 if spent < ONE_WHEEL_GOAL_BYTES and r_s < REFRESH_GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
