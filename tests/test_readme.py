"""The README's example plans are the tool's real output: each `$ envbuilder resolve ...` block is run again.

A block may skip lines with `[...]`; every other line must come out of the command, in order, verbatim. Run
as on a user's machine: no pip configuration, a fresh cache.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from envbuilder.cli.app import main

README = Path(__file__).parent.parent / "README.md"


def _examples() -> list[tuple[list[str], list[str]]]:
    out = []
    for block in re.findall(r"```\n(\$ envbuilder resolve [^\n]*\n.*?)```", README.read_text(), re.DOTALL):
        command, *lines = block.rstrip("\n").split("\n")
        out.append((shlex.split(command.removeprefix("$ envbuilder ")), lines))
    return out


EXAMPLES = _examples()


def test_the_readme_has_the_gtx_1080_ti_examples() -> None:
    assert len(EXAMPLES) >= 3 and all(argv[:3] == ["resolve", "--gpu", "GTX 1080 Ti"] for argv, _ in EXAMPLES)


@pytest.mark.parametrize(("argv", "shown"), EXAMPLES, ids=[" ".join(a) for a, _ in EXAMPLES])
def test_readme_example_is_the_tools_output(
    argv: list[str],
    shown: list[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("PIP_FIND_LINKS", "PIP_CERT", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "ENVBUILDER_PYTORCH_INDEX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("ENVBUILDER_CACHE", str(tmp_path))
    assert main(argv) == 0
    produced = capsys.readouterr().out.splitlines()
    at = 0
    for part in "\n".join(shown).split("\n[...]\n"):
        lines = part.split("\n")
        while at < len(produced) and produced[at : at + len(lines)] != lines:
            at += 1
        assert at < len(produced), f"README lines not in the output of `envbuilder {shlex.join(argv)}`:\n{part}"
        at += len(lines)


def test_the_readme_formats_table_is_the_matrix() -> None:
    """What each profile loads and makes: the README's table is generated from profiles.toml, never typed."""
    from envbuilder.model.matrix import load_matrix
    from envbuilder.rules.formats import format_table

    text = README.read_text()
    found = re.search(r"<!-- formats-table:[^\n]*-->\n(.*?)<!-- /formats-table -->", text, re.DOTALL)
    assert found, "README.md has no formats table between its markers"
    assert found.group(1) == format_table(load_matrix())
