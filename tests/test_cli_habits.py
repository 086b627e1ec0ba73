"""Shell habits (issue 16): global options anywhere, -V, JSON errors, help with examples, colour, completion."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest

from envbuilder import __version__
from envbuilder.cli._help import EXAMPLES
from envbuilder.cli.app import COMMAND_MODULES, build_parser, main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


# --------------------------------------------------------------------------- -q / -v / --color anywhere


@pytest.mark.parametrize(
    ("argv", "verbose", "quiet", "color"),
    [
        (["-v", "lock", "--gpu", "cpu"], True, False, "auto"),
        (["lock", "--verbose", "--gpu", "cpu"], True, False, "auto"),  # exited 2 before issue 16
        (["lock", "--gpu", "cpu", "-q"], False, True, "auto"),
        (["--quiet", "resolve"], False, True, "auto"),
        (["--color=never", "resolve", "--color", "always"], False, False, "always"),  # the later one wins
        (["matrix", "check", "-v"], True, False, "auto"),  # a nested subcommand takes them too
        (["recipe", "wsl2", "--gpu", "sm_89", "-q", "--color=never"], False, True, "never"),
    ],
)
def test_global_options_before_or_after_the_command(argv: list[str], verbose: bool, quiet: bool, color: str) -> None:
    args = build_parser().parse_args(argv)
    assert (args.verbose, args.quiet, args.color) == (verbose, quiet, color)


def test_a_child_command_keeps_its_own_flags() -> None:
    """`envbuilder run NAME python -v`: the -v is python's, not envbuilder's."""
    args = build_parser().parse_args(["run", "x", "python", "-q", "-v"])
    assert (args.cmd, args.verbose, args.quiet) == (["python", "-q", "-v"], False, False)


def test_quiet_and_verbose_contradict(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["-q", "resolve", "--gpu", "cpu", "-v"], capsys)
    assert (code, out, err) == (
        2,
        "",
        "envbuilder: error: -q (quiet) and -v (verbose) contradict each other\nTIP give one of them\n",
    )


@pytest.mark.parametrize("flag", ["-V", "--version"])
def test_version(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run([flag], capsys)
    assert code == 0 and err == "" and out.startswith(f"envbuilder {__version__} (matrix ")


# --------------------------------------------------------------------------- JSON errors


@pytest.mark.parametrize(
    ("argv", "code", "error", "tip"),
    [
        (  # a usage error (argparse's): exit 2
            ["resolve", "--gpu", "sm_89", "--json", "--bogus"],
            2,
            "unrecognized arguments: --bogus",
            "run `envbuilder --help` for the options",
        ),
        (  # the input is wrong: exit 2
            ["resolve", "--gpu", "sm_89", "--driver", "abc", "--json"],
            2,
            "--driver 'abc' is not an NVIDIA driver version",
            "write it as nvidia-smi prints it, e.g. 550.54.14 (Linux) or 576.02 (Windows)",
        ),
        (  # a lock that is not there (lock --json): exit 2, through the one handler
            ["sync", "/nonexistent/pylock.x.toml", "--json"],
            2,
            None,
            None,
        ),
    ],
)
def test_an_error_under_json_is_a_document_on_stdout(
    argv: list[str], code: int, error: str | None, tip: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    got, out, err = _run(argv, capsys)
    doc = json.loads(out)
    assert got == code == doc["exit_code"]
    assert set(doc) == {"schema", "error", "tip", "exit_code"} and doc["schema"] == "envbuilder.error/1"
    if error is not None:
        assert (doc["error"], doc["tip"]) == (error, tip)
    assert err.startswith("envbuilder: ")  # the person reading the terminal still gets the sentence


def test_no_plan_under_json_is_the_plan_document_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    """Exit 1 with a report (no plan) is the command's own document, not an error document."""
    code, out, _ = _run(["resolve", "--gpu", "sm_120", "--driver", "535.104.05", "--json"], capsys)
    assert code == 1 and json.loads(out)["schema"] == "envbuilder.plan/1"


def test_without_json_an_error_prints_nothing_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["resolve", "--gpu", "sm_89", "--driver", "abc"], capsys)
    assert (code, out) == (2, "") and err.startswith("envbuilder: --driver 'abc'")


# --------------------------------------------------------------------------- help


def test_top_level_help_is_for_users(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["--help"], capsys)
    assert code == 0
    assert out.startswith("usage: envbuilder [-h] [-V] [-q | -v] [--color WHEN] [--no-config]")
    assert "Build GPU environments that work." in out
    assert "argument parsing" not in out and "exit codes" in out and "envbuilder completion" in out


def test_every_subcommand_has_examples_that_parse() -> None:
    parser = build_parser()
    subs = _subparsers(parser)
    assert set(EXAMPLES) == set(subs) == set(COMMAND_MODULES)
    for name, sub in subs.items():
        assert sub.epilog and sub.epilog.startswith("examples:\n"), name
        for line, _ in EXAMPLES[name]:
            words = shlex.split(line.split(" > ")[0].split(" >> ")[0].split("| ")[-1])
            assert words[:2] == ["envbuilder", name], line
            parser.parse_args(words[1:])  # a UsageError here means an example went stale
            assert line in sub.format_help()


# --------------------------------------------------------------------------- completion, in the real shells

SHELLS_DIR = Path(__file__).parent / "shells"
# (the words typed, what the shell must offer): commands, options, choices, env names, nested commands.
CASES = [
    ("envbuilder lo", {"lock"}),
    ("envbuilder matrix ", {"check", "audit", "refresh"}),
    ("envbuilder -q lock --col", {"--color"}),
    ("envbuilder lock --color ", {"auto", "always", "never"}),
    ("envbuilder completion ", {"bash", "zsh", "fish", "powershell"}),
    ("envbuilder recipe wsl2 --pro", {"--profile"}),
    ("envbuilder --matrix-dir lock re", {"recipe", "remove", "resolve"}),  # "lock" is --matrix-dir's value
    ("envbuilder run ", {"cpu-dev", "train"}),  # the home's environments
]


@pytest.fixture(scope="module")
def scripts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("completion")
    paths = {}
    from envbuilder.cli.completion import render, tree

    nodes = tree(build_parser())
    for shell in ("bash", "zsh", "fish", "powershell"):
        paths[shell] = out / f"envbuilder.{shell}"
        paths[shell].write_text(render(shell, nodes), encoding="utf-8")  # type: ignore[arg-type]
    (out / "home" / "envs" / "cpu-dev").mkdir(parents=True)
    (out / "home" / "envs" / "train").mkdir(parents=True)
    paths["home"] = out / "home"
    return paths


def _shell_env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(home.parent), "ENVBUILDER_HOME": str(home), "TERM": "dumb"}


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (.ci/run installs it from Debian)")
    return path


def test_bash_script_passes_shellcheck(scripts: dict[str, Path]) -> None:
    result = _run_tool([_need("shellcheck"), "--shell=bash", str(scripts["bash"])])
    assert result.returncode == 0, result.stdout


BASH_PROBE = r"""
source "$1"
shift
read -r -a COMP_WORDS <<< "$1"
[[ $1 == *' ' ]] && COMP_WORDS+=('')
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
_envbuilder
printf '%s\n' "${COMPREPLY[@]}"
complete -p envbuilder
"""


@pytest.mark.parametrize(("line", "offered"), CASES)
def test_bash_completes(scripts: dict[str, Path], line: str, offered: set[str]) -> None:
    result = _run_tool(
        [_need("bash"), "--norc", "-c", BASH_PROBE, "probe", str(scripts["bash"]), line],
        env=_shell_env(scripts["home"]),
    )
    lines = result.stdout.splitlines()
    assert lines[-1] == "complete -o default -F _envbuilder envbuilder"  # registered for the command
    assert offered <= set(lines[:-1]), result.stdout + result.stderr
    assert not {w for w in lines[:-1] if not any(o.startswith(w[:2]) for o in offered)}  # nothing unrelated


@pytest.mark.parametrize(("line", "offered"), CASES)
def test_fish_completes(scripts: dict[str, Path], line: str, offered: set[str]) -> None:
    fish = _need("fish")
    probe = f"source {shlex.quote(str(scripts['fish']))}; complete -C {shlex.quote(line)}"
    result = _run_tool([fish, "--no-config", "-c", probe], env=_shell_env(scripts["home"]))
    got = {ln.split("\t")[0] for ln in result.stdout.splitlines()}
    assert offered <= got, result.stdout + result.stderr


@pytest.mark.parametrize(("line", "offered"), CASES[::2])
def test_zsh_completes(scripts: dict[str, Path], line: str, offered: set[str]) -> None:
    """Through zsh's real completion system (compinit), in a pseudo-terminal: tests/shells/zsh_complete.zsh."""
    zsh = _need("zsh")
    assert _run_tool([zsh, "-n", str(scripts["zsh"])]).returncode == 0
    result = _run_tool(
        [zsh, "-f", str(SHELLS_DIR / "zsh_complete.zsh"), str(scripts["zsh"]), line],
        env=_shell_env(scripts["home"]) | {"TERM": "xterm"},  # zle needs a terminal it knows
    )
    assert offered <= set(result.stdout.splitlines()), result.stdout + result.stderr


def test_powershell_script_holds_the_tree(scripts: dict[str, Path]) -> None:
    """PowerShell cannot run here (no pwsh: Debian does not package it and no .NET is installed), so the script is
    checked for what the walker reads: every command path, its options and the choices of --color."""
    text = scripts["powershell"].read_text(encoding="utf-8")
    assert text.count("Register-ArgumentCompleter -Native -CommandName envbuilder") == 1
    for node in ("'' = @{ commands = @('detect'", "'matrix check' = @{", "'--color' = @('auto', 'always', 'never')"):
        assert node in text
    if shutil.which("pwsh"):
        result = _run_tool(["pwsh", "-NoProfile", "-Command", f". {scripts['powershell']}"])
        assert result.returncode == 0, result.stdout + result.stderr


def _run_tool(argv: list[str], env: dict[str, str] | None = None) -> Any:
    from envbuilder.edge import _run

    return _run.run(argv, env=env, timeout=60, check=False)


# --------------------------------------------------------------------------- --json on every command that reports

ROOT = Path(__file__).resolve().parent.parent
CPU_LOCK = ROOT / "dockerfiles" / "cpu" / "pylock.cpu.toml"
# Commands that report nothing a script would read: they run a child (run, shell), print a script
# (completion), or act on one environment and confirm it (remove, guard, unguard: the exit code says it all).
NO_JSON = {"run", "shell", "completion", "remove", "guard", "unguard"}


def test_every_reporting_command_has_json() -> None:
    def leaves(parser: argparse.ArgumentParser, path: str) -> dict[str, argparse.ArgumentParser]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return {path: parser}
        return {
            k: v for name, child in subs[0].choices.items() for k, v in leaves(child, f"{path} {name}".strip()).items()
        }

    missing = [
        path
        for path, parser in leaves(build_parser(), "").items()
        if path.split()[0] not in NO_JSON and not any("--json" in a.option_strings for a in parser._actions)
    ]
    assert missing == []


def test_dockerfile_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        ["dockerfile", "--lock", str(CPU_LOCK), "--no-pip-config", "-o", str(tmp_path), "--json"], capsys
    )
    doc = json.loads(out)
    assert code == 0 and doc["schema"] == "envbuilder.dockerfile/1" and doc["name"] == "cpu"
    assert "Dockerfile" in doc["files"] and all((tmp_path / f).is_file() for f in doc["files"])
    assert doc["lock"] == str(tmp_path / "pylock.cpu.toml") and doc["image"].startswith("cpu:")


def test_build_dry_run_json(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["build", "--lock", str(CPU_LOCK), "--no-pip-config", "--engine", "podman", "--dry-run", "--json"]
    code, out, _ = _run(argv, capsys)
    doc = json.loads(out)
    assert (code, doc["schema"], doc["engine"], doc["built"]) == (0, "envbuilder.build/1", "podman", False)
    assert doc["command"][0] == "podman" and "build" in doc["command"] and doc["tags"][0] in doc["command"]


def test_ci_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "envbuilder.toml").write_text('[[env]]\nname = "cpu"\nprofile = "cpu"\n', encoding="utf-8")
    shutil.copy(CPU_LOCK, tmp_path / "pylock.cpu.toml")
    code, out, _ = _run(["ci", "--manifest", str(tmp_path / "envbuilder.toml"), "--json"], capsys)
    doc = json.loads(out)
    assert (code, doc["schema"], doc["images"]) == (0, "envbuilder.ci/1", ["cpu"])
    assert Path(doc["bake"]).is_file() and Path(doc["workflow"]).is_file() and Path(doc["contexts"][0]).is_dir()


def test_recipe_json_holds_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["recipe", "wsl2", "--gpu", "sm_89", "--driver", "550.54.14", "--json"], capsys)
    doc = json.loads(out)
    assert (code, doc["schema"], doc["os"], doc["path"]) == (0, "envbuilder.recipe/1", "wsl2", None)
    assert doc["script"].startswith("#!/usr/bin/env bash") and doc["checklist"]


def test_ci_error_under_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "envbuilder.toml").write_text('[[env]]\nname = "cpu"\nprofile = "cpu"\n', encoding="utf-8")
    code, out, _ = _run(["ci", "--manifest", str(tmp_path / "envbuilder.toml"), "--json"], capsys)
    doc = json.loads(out)
    assert (
        code == doc["exit_code"] == 2 and doc["error"] == f"{tmp_path}/pylock.cpu.toml: no lock for environment 'cpu'"
    )


# --------------------------------------------------------------------------- colour, through a real terminal

BAD_DRIVER = ["resolve", "--gpu", "sm_89", "--driver", "abc"]  # exit 2 with one message: stderr shows colour or not
RED = "\x1b[1;31menvbuilder:\x1b[0m"


def _in_pty(argv: list[str], env: dict[str, str], *, tty: bool) -> str:
    """envbuilder's stderr when it is a terminal (a real pseudo-terminal) or a pipe."""
    import pty
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if k not in {"NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE", "TERM"}}
    if not tty:
        proc = subprocess.run(
            [sys.executable, "-m", "envbuilder", *argv], env=base | env, capture_output=True, text=True, timeout=120
        )
        return proc.stderr
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "envbuilder", *argv], env=base | env, stdout=slave, stderr=slave, stdin=slave
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=120)
    finally:
        os.close(master)
    return b"".join(chunks).decode()


@pytest.mark.parametrize(
    ("tty", "env", "flags", "coloured"),
    [
        (True, {"TERM": "xterm"}, [], True),  # a terminal: colour
        (False, {"TERM": "xterm"}, [], False),  # a pipe (a CI log): none
        (True, {"TERM": "xterm", "NO_COLOR": "1"}, [], False),  # no-color.org
        (True, {"TERM": "dumb"}, [], False),  # a terminal that cannot show it
        (False, {"FORCE_COLOR": "1"}, [], True),  # force-color.org
        (False, {"CLICOLOR_FORCE": "1"}, [], True),  # as uv reads it too
        (True, {"TERM": "xterm", "NO_COLOR": "1", "FORCE_COLOR": "1"}, [], False),  # NO_COLOR beats FORCE_COLOR
        (True, {"TERM": "xterm"}, ["--color", "never"], False),  # the flag beats the terminal
        (False, {"NO_COLOR": "1"}, ["--color=always"], True),  # and the variables
    ],
)
def test_colour_on_a_terminal_only(tty: bool, env: dict[str, str], flags: list[str], coloured: bool) -> None:
    err = _in_pty([*flags, *BAD_DRIVER], env, tty=tty)
    assert "--driver 'abc' is not an NVIDIA driver version" in err
    assert (RED in err) == coloured, repr(err)
    assert ("\x1b[" in err) == coloured, repr(err)  # nothing else either


def test_quiet_drops_progress_and_notes_keeps_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    from envbuilder.cli import _console

    for quiet, expected in ((False, "step 1\nnote: a source\nwarning: a misfit\n"), (True, "warning: a misfit\n")):
        token = _console.use(_console.Console(quiet=quiet))
        try:
            _console.progress("step 1")
            _console.note("a source")
            _console.warn("a misfit")
        finally:
            _console.reset(token)
        assert capsys.readouterr() == ("", expected)


def test_doctor_note_is_dropped_by_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real note (a log larger than doctor reads whole) is shown, and not with -q."""
    from envbuilder.cli.doctor import LOG_CAP

    log = tmp_path / "big.log"
    log.write_bytes(b"x\n" * (LOG_CAP // 2 + 10))
    _, _, err = _run(["doctor", "--log", str(log)], capsys)
    assert "note: " in err
    _, _, err = _run(["doctor", "--log", str(log), "-q"], capsys)
    assert "note: " not in err
