"""The words of ``--help``: what envbuilder is for, and an example for every subcommand.

The examples are data, so a test parses every one of them with the real parser (an example that no longer
parses fails the suite) and the completion scripts never drift from what ``--help`` shows.
"""

from __future__ import annotations

DESCRIPTION = """\
Build GPU environments that work. envbuilder reads this machine's GPU, driver, OS and Pythons (or the ones you
name), picks the torch, bitsandbytes and quantization libraries that run together on them, says why, and builds
the environment with uv, proven by a smoke test; locks (PEP 751), Dockerfiles, CI files and setup scripts for
WSL2 and Windows come from the same plan."""

EPILOG = """\
start here:
  envbuilder detect                      what this machine has: GPUs, driver, CUDA, Pythons
  envbuilder resolve                     the plan for this machine, and every reason
  envbuilder create                      build that environment and prove it with a smoke test
  envbuilder resolve --gpu 'RTX 4090' --driver 550.54.14
                                         the plan for another machine
  envbuilder doctor --log error.txt      the cause and the fix of a pasted error

configuration (later ones give way to earlier ones): options; ENVBUILDER_* variables; the project's
envbuilder.toml or [tool.envbuilder] in pyproject.toml, searched upward from here to the repository's root;
the user's $XDG_CONFIG_HOME/envbuilder/config.toml (~/.config/envbuilder/config.toml); pip's configuration.
--no-config reads none of the files.

exit codes: 0 done; 1 the thing checked failed (no plan works, a smoke stage failed, doctor found a problem);
2 bad input or a precondition to fix (the message says what, where and what to do); 130 interrupted;
143 terminated. With --json an error is a JSON document on stdout too: {"schema", "error", "tip", "exit_code"}.

shell completion: envbuilder completion bash|zsh|fish|powershell (`envbuilder completion --help` says where)."""

# Each subcommand's examples: (the command line, what it does). Every line must parse (tests/test_cli_habits.py).
EXAMPLES: dict[str, tuple[tuple[str, str], ...]] = {
    "detect": (("envbuilder detect", "this host's GPUs, driver and Pythons"), ("envbuilder detect --json", "as JSON")),
    "resolve": (
        ("envbuilder resolve", "the plan for this host"),
        ("envbuilder resolve --gpu sm_61 --driver 535.183.01", "for a GTX 1080 Ti elsewhere"),
        ("envbuilder resolve --gpu 'RTX 4090' --profile gptq --json", "a GPTQ plan, as JSON"),
    ),
    "create": (
        ("envbuilder create", "build and prove the environment this host needs"),
        ("envbuilder create --profile cpu --name cpu-dev", "a CPU environment named cpu-dev"),
        ("envbuilder create --dry-run", "show the plan and the commands, build nothing"),
    ),
    "lock": (
        ("envbuilder lock", "lock every [[env]] of envbuilder.toml (found upward), or this host"),
        ("envbuilder lock --gpu sm_89,sm_90 --driver 550.54.14 --name train", "one lock for two GPU kinds"),
        ("envbuilder lock --gpu cpu --save --name ci", "lock, and record it in envbuilder.toml"),
    ),
    "sync": (
        ("envbuilder sync", "build the manifest's environment that fits this host"),
        ("envbuilder sync pylock.train.toml --name train", "build exactly that lock"),
    ),
    "list": (("envbuilder list", "the environments envbuilder made"), ("envbuilder list --json", "as JSON")),
    "remove": (("envbuilder remove cpu-dev", "delete the environment cpu-dev"),),
    "run": (
        ("envbuilder run cpu-dev -- python -c 'import torch'", "run a command inside cpu-dev"),
        ("envbuilder run --path ./venv -- pytest -q", "inside an environment built with --path"),
    ),
    "shell": (("envbuilder shell cpu-dev", "a shell with cpu-dev activated"),),
    "upgrade": (
        ("envbuilder upgrade train --latest --dry-run", "show the newest stack that works, change nothing"),
        ("envbuilder upgrade train --torch 2.14.1", "move torch (and what must follow it), proven again"),
    ),
    "guard": (("envbuilder guard train", "bind the stack's layers again (uv/pip cannot move them)"),),
    "unguard": (("envbuilder unguard train", "let uv/pip move the stack's layers inside train"),),
    "smoke": (
        ("envbuilder smoke --env ~/.local/share/envbuilder/envs/cpu-dev", "prove an environment works"),
        ("envbuilder smoke --python ./venv/bin/python --quick --json", "the quick stages, as JSON"),
    ),
    "doctor": (
        ("envbuilder doctor --log error.txt", "explain a pasted error log"),
        ("pbpaste | envbuilder doctor --log -", "the same, from stdin"),
        ("envbuilder doctor --env ./venv", "examine an environment"),
    ),
    "dockerfile": (
        ("envbuilder dockerfile --lock pylock.train.toml", "a build context in ./docker/train"),
        ("envbuilder dockerfile --gpu sm_89 --driver 550.54.14 -o ctx", "lock a target, then write its context"),
    ),
    "build": (
        ("envbuilder build --lock pylock.train.toml", "build its image with docker buildx or podman"),
        ("envbuilder build --lock pylock.train.toml --dry-run", "print the build command only"),
    ),
    "ci": (
        ("envbuilder ci", "docker-bake.hcl and a GitHub workflow for every env of envbuilder.toml"),
        ("envbuilder ci --registry ghcr.io/acme/envs --json", "for another registry, the result as JSON"),
    ),
    "recipe": (
        ("envbuilder recipe wsl2 --gpu 'RTX 4090' -o setup.sh", "a setup script for WSL2 Ubuntu"),
        ("envbuilder recipe windows --lock pylock.train.toml > setup.ps1", "a PowerShell script from a lock"),
    ),
    "matrix": (
        ("envbuilder matrix check", "validate the facts in matrices/"),
        ("envbuilder matrix audit torch==2.10.0 --json", "read one release's wheels and compare"),
    ),
    "completion": (
        ("envbuilder completion bash > ~/.local/share/bash-completion/completions/envbuilder", "bash"),
        ("envbuilder completion zsh > ~/.zfunc/_envbuilder", "zsh (with fpath+=~/.zfunc before compinit)"),
        ("envbuilder completion fish > ~/.config/fish/completions/envbuilder.fish", "fish"),
        ("envbuilder completion powershell >> $PROFILE", "PowerShell"),
    ),
}


def epilog(command: str) -> str | None:
    """The ``examples:`` block of a subcommand's help."""
    rows = EXAMPLES.get(command)
    if not rows:
        return None
    width = max(len(line) for line, _ in rows)
    lines = [f"  {line:<{width}}  # {what}" if width <= 64 else f"  {line}\n      # {what}" for line, what in rows]
    return "examples:\n" + "\n".join(lines)
