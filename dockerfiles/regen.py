"""Regenerate dockerfiles/: the build contexts of the headline targets, from their committed locks.

    python dockerfiles/regen.py            # Dockerfiles etc. from the committed locks (no network)
    python dockerfiles/regen.py --relock   # lock the headline targets again first (PyPI metadata, seconds)

tests/test_docker.py calls ``render_all`` and fails when a committed file differs (drift).
Locks are made with `envbuilder lock`, exactly as a user would; CUDA targets resolve to torch builds that
PyPI serves, which is what these machines can reach (the PyTorch index is not reachable here).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from envbuilder.model.images import load_pin_table  # noqa: E402
from envbuilder.model.lock import lock_file_name, read_lock  # noqa: E402
from envbuilder.model.smoke import load_smoke_table  # noqa: E402
from envbuilder.render.dockerfile import Options, render_context  # noqa: E402


@dataclass(frozen=True, slots=True)
class Headline:
    name: str
    gpu: str | None
    driver: str | None
    profile: str


HEADLINES = (
    Headline("bnb-sm86", "sm_86", "550.54.14", "bnb"),
    Headline("bnb-sm89", "sm_89", "550.54.14", "bnb"),
    Headline("bnb-sm90", "sm_90", "580.65.06", "bnb"),
    Headline("bnb-sm120", "sm_120", "570.124.06", "bnb"),
    Headline("gptq-sm89", "sm_89", "550.54.14", "gptq"),
    Headline("awq-sm89", "sm_89", "550.54.14", "awq"),
    Headline("cpu", None, None, "cpu"),
)
PYTHON = "3.11"


def lock_path(h: Headline, root: Path = HERE) -> Path:
    return root / h.name / lock_file_name(h.name)


def relock(root: Path = HERE) -> None:
    """Lock every headline target with `envbuilder lock` (metadata only)."""
    from envbuilder.cli.app import main

    for h in HEADLINES:
        target = ["--gpu", h.gpu, "--driver", h.driver] if h.gpu and h.driver else ["--gpu", "cpu"]
        argv = [
            "lock",
            *target,
            "--os",
            "linux",
            "--python",
            PYTHON,
            "--profile",
            h.profile,
            "--name",
            h.name,
        ]
        if main([*argv, "-o", str(lock_path(h, root))]) != 0:
            msg = f"envbuilder lock failed for {h.name}"
            raise SystemExit(msg)


def render_all(root: Path = HERE) -> dict[Path, str]:
    """Every generated file of dockerfiles/, by path (from the locks under ``root``).

    envbuilder's smoke program (envbuilder/smoke/check.py) is left out: it changes with its own module, and
    `envbuilder build --lock dockerfiles/<name>/pylock.<name>.toml` adds it to the context it builds.
    """
    files: dict[Path, str] = {}
    table = load_smoke_table()
    options = Options(pins=load_pin_table())  # base images by the digests matrices/images.toml records
    for h in HEADLINES:
        path = lock_path(h, root)
        lock = read_lock(path)
        for rel, text in render_context(lock, path.read_text(encoding="utf-8"), table=table, options=options).items():
            if rel != "smoke/check.py":
                files[root / h.name / rel] = text
    return files


def main(argv: list[str]) -> int:
    from envbuilder.edge._fs import write_text_atomic

    if "--relock" in argv:
        relock()
    for path, text in sorted(render_all().items()):
        write_text_atomic(path, text)
    print(f"regenerated {len(HEADLINES)} build contexts under {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
