"""A compiled matrix: the validated ``Matrix`` kept as a pickle, keyed by the digest of every file it came from.

Reading and validating ``matrices/`` (TOML parsing, typed getters, cross-checks) is most of a short command's
start-up; the facts change only when a file changes. The key covers the bytes of every file in every matrix
directory (shipped and overlays), envbuilder's version, the source of the module that defines the model and
its module path, packaging's version and the interpreter, so any change reads the files again. A cache file
that is not ours, is writable by others, or does not unpickle to a ``Matrix`` is ignored and written again.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from collections.abc import Iterable
from pathlib import Path

from envbuilder import __version__
from envbuilder.model.matrix import Matrix, load_matrix, matrix_dirs

__all__ = ["cache_key", "cached_matrix"]

_SUFFIXES = (".toml", ".ids")
# Compiled matrices kept: one per matrix directory set (projects with their own overlays, checkouts of
# envbuilder), so that switching between a few of them does not validate the matrix again each time.
KEEP = 4


def cache_key(dirs: Iterable[Path]) -> str:
    """sha256 over the files of ``dirs`` (names and bytes) and what decides how they are read."""
    import packaging

    from envbuilder.model import matrix

    h = hashlib.sha256()
    for part in (__version__, sys.version, packaging.__version__):
        h.update(part.encode() + b"\0")
    h.update(Path(matrix.__file__).read_bytes())
    # A pickle names its classes by module path: a cache written before a module moved is keyed apart.
    h.update(f"{Matrix.__module__}.{Matrix.__qualname__}\0".encode())
    for i, directory in enumerate(dirs):
        h.update(f"{i}:{directory}\0".encode())
        try:
            names = sorted(n for n in os.listdir(directory) if n.endswith(_SUFFIXES))
        except OSError:
            names = []  # load_matrix says what is wrong with the directory
        for name in names:
            h.update(name.encode() + b"\0")
            h.update((directory / name).read_bytes())
    return h.hexdigest()


def _trusted(path: Path) -> bool:
    try:
        st = path.stat()
    except OSError:
        return False
    mine = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    return mine and not st.st_mode & 0o022


def cached_matrix(extra_dirs: Iterable[str | Path] | None = None, *, cache_dir: Path | None = None) -> Matrix:
    """``load_matrix(extra_dirs)``, from the compiled cache when the files are unchanged."""
    from envbuilder.edge.settings import cache_path

    dirs = matrix_dirs(extra_dirs)
    where = cache_path("matrix", cache_dir)
    path = where / f"{cache_key(dirs)}.pickle"
    if _trusted(path):
        try:
            found = pickle.loads(path.read_bytes())  # noqa: S301 - our own file, checked above
        except Exception:  # a damaged file: read the matrix again below
            found = None
        if isinstance(found, Matrix):
            return found
    from envbuilder.edge._fs import store_private  # a miss only: json, shutil, tempfile stay off the warm path

    matrix = load_matrix(extra_dirs)
    store_private(path, pickle.dumps(matrix, protocol=pickle.HIGHEST_PROTOCOL), keep=KEEP)
    return matrix
