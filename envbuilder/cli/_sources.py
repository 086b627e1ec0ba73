"""Source options shared by create/lock/sync: mirrors, wheelhouses, offline, CA certificates.

Precedence: flags, then ENVBUILDER_* environment variables, then the project's [sources] (envbuilder.toml or
[tool.envbuilder] in pyproject.toml, found upward: ``envbuilder.edge.config``), then the user's
(~/.config/envbuilder/config.toml), then pip's own configuration (index-url, find-links, cert), which is honoured
explicitly and named in the output. ``--no-config`` reads neither envbuilder file.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from envbuilder.edge.settings import Settings, UvOutput, env_flag, with_credentials_apart


def add_source_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("package sources")
    g.add_argument("--index-url", metavar="URL", help="a PyPI mirror (ENVBUILDER_INDEX_URL)")
    g.add_argument("--extra-index-url", action="append", default=[], metavar="URL", help="another index (repeatable)")
    g.add_argument(
        "--pytorch-index",
        metavar="URL",
        help="the PyTorch index or its mirror (default: the matrix's indexes.pytorch; ENVBUILDER_PYTORCH_INDEX)",
    )
    g.add_argument(
        "--find-links",
        action="append",
        default=[],
        metavar="DIR",
        help="a wheelhouse directory (repeatable; ENVBUILDER_FIND_LINKS)",
    )
    g.add_argument(
        "--offline", action="store_true", help="no network: wheelhouse and uv's cache only (ENVBUILDER_OFFLINE=1)"
    )
    g.add_argument(
        "--ca-cert",
        action="append",
        default=[],
        metavar="PEM",
        help="extra CA bundle for a corporate proxy (ENVBUILDER_CA_CERT)",
    )
    g.add_argument(
        "--no-pip-config", action="store_true", help="ignore pip's configuration (index-url, find-links, cert)"
    )
    g.add_argument(
        "--home",
        metavar="DIR",
        help="where environments live (default ~/.local/share/envbuilder, on Windows %%LOCALAPPDATA%%\\envbuilder;"
        " ENVBUILDER_HOME)",
    )
    g.add_argument(
        "--refresh", action="store_true", help="re-resolve even where the same resolution is cached (kept 24 h)"
    )


def _env_list(name: str) -> list[str]:
    return [p for p in os.environ.get(name, "").split(os.pathsep) if p]


def project_manifest(args: argparse.Namespace, explicit: str | None = None) -> Path | None:
    """The manifest a command works on: the one named, else the project's found upward (None with --no-config
    or when there is none). One found in a parent directory is named on stderr: locks are written beside it."""
    if explicit:
        return Path(explicit)
    if getattr(args, "no_config", False):
        return None
    from envbuilder.edge.config import find_project

    found = find_project(Path.cwd())
    if found is not None and found.parent != Path.cwd().absolute():
        from envbuilder.cli import _console

        _console.note(f"using {os.path.relpath(found)} (found above this directory; --no-config ignores it)")
    return found


def configured_sources(args: argparse.Namespace, manifest_sources: Mapping[str, Any] | None) -> dict[str, Any]:
    """[sources] from the configuration files: the manifest's (or the project's found upward) over the user's."""
    if getattr(args, "no_config", False):
        return dict(manifest_sources or {})
    from envbuilder.edge.config import find_project, load_user_sources, merge_sources
    from envbuilder.edge.settings import user_config_path

    project = manifest_sources
    if project is None:
        from envbuilder.edge.manifest import read_project_sources

        found = find_project(Path.cwd())
        project = read_project_sources(found) if found is not None else {}
    user_file = user_config_path()
    user = load_user_sources(user_file) if user_file.is_file() else {}
    return merge_sources(project, user)


def uv_output() -> UvOutput:
    """uv's install output for this run: nothing with -q or --json, its own progress bars when stderr is a
    terminal (without colour where the console has none), plain lines otherwise (a CI log)."""
    import sys

    from envbuilder.cli import _console

    console = _console.current()
    if console.quiet or console.json:
        return "capture"
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    if not tty:
        return "lines"
    return "terminal" if console.color_err else "terminal-plain"


def _matrix_pytorch_index(args: argparse.Namespace) -> str:
    """The default PyTorch index: the matrix's (torch.toml ``indexes.pytorch``, with the --matrix-dir overlays)."""
    from envbuilder.cli._common import load_matrix_for

    return load_matrix_for(args).pytorch_index


def settings_from_args(
    args: argparse.Namespace, manifest_sources: Mapping[str, Any] | None = None, *, refresh: bool = False
) -> Settings:
    """The settings of the source options, ``ENVBUILDER_*``, the manifest's sources and pip's configuration.

    ``refresh``: re-resolve even where cached, as --refresh does (``lock --upgrade`` implies it).
    """
    from envbuilder.model.errors import SourceError

    src = configured_sources(args, manifest_sources)
    base = Path(args.home) if getattr(args, "home", None) else None
    find_links = [*args.find_links, *_env_list("ENVBUILDER_FIND_LINKS"), *src.get("find-links", [])]
    for d in find_links:
        if not Path(d).is_dir():
            msg = f"--find-links {d}: no such directory"
            raise SourceError(msg, hint="give a directory of .whl files")
    certs = [*args.ca_cert, *_env_list("ENVBUILDER_CA_CERT"), *src.get("ca-certs", [])]
    for c in certs:
        if not Path(c).is_file():
            msg = f"--ca-cert {c}: no such file"
            raise SourceError(msg, hint="give a PEM bundle")
    offline = args.offline or env_flag("ENVBUILDER_OFFLINE") or src.get("offline") is True
    settings = Settings(
        index_url=args.index_url or os.environ.get("ENVBUILDER_INDEX_URL") or src.get("index-url"),
        extra_index_urls=tuple(args.extra_index_url or src.get("extra-index-url", [])),
        pytorch_index=(
            args.pytorch_index
            or os.environ.get("ENVBUILDER_PYTORCH_INDEX")
            or src.get("pytorch-index")
            or _matrix_pytorch_index(args)
        ).rstrip("/"),
        find_links=tuple(dict.fromkeys(find_links)),
        ca_certs=tuple(certs),
        offline=offline,
    )
    if base is not None:
        settings = replace(settings, home=base)
    if args.refresh or refresh:
        settings = replace(settings, refresh=True)
    settings = replace(settings, uv_output=uv_output())
    if not args.no_pip_config:
        from envbuilder.edge.sources import apply_pip_config, read_pip_config

        settings = apply_pip_config(settings, read_pip_config())
    return with_credentials_apart(settings)
