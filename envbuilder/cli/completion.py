"""`envbuilder completion bash|zsh|fish|powershell`: a completion script, generated from the real parser.

Every script holds the same tree (each command path, its subcommands, its options, which options take a value
and what kind: a choice, a file, a directory) and a small walker in the shell's own language, so the scripts
never drift from the parser. Environment names (``remove``/``run``/``shell NAME``) are read from the home's
``envs/`` directory (``ENVBUILDER_HOME``, else ``$XDG_DATA_HOME/envbuilder``) without starting envbuilder.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "SHELLS",
    "Node",
    "Option",
    "Positional",
    "Shell",
    "ValueKind",
    "bash",
    "fish",
    "powershell",
    "register",
    "render",
    "run",
    "tree",
    "zsh",
]

Shell = Literal["bash", "zsh", "fish", "powershell"]
SHELLS: tuple[Shell, ...] = ("bash", "zsh", "fish", "powershell")
ValueKind = Literal["", "any", "file", "dir", "choice"]
Positional = Literal["", "file", "env", "choice"]

# What a metavar means for completion: a file or a directory to pick; any other metavar is free text.
_FILE_METAVARS = frozenset({"FILE", "LOCK", "PEM", "EXE"})
_DIR_METAVARS = frozenset({"DIR", "PATH"})


@dataclass(frozen=True, slots=True)
class Option:
    flags: tuple[str, ...]
    help: str
    kind: ValueKind
    choices: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Node:
    """One command path (``""``, ``"lock"``, ``"matrix check"``) and what may follow it."""

    path: str
    commands: tuple[tuple[str, str], ...]  # (name, help)
    options: tuple[Option, ...]
    positional: Positional
    positional_choices: tuple[str, ...] = ()

    @property
    def flags(self) -> tuple[str, ...]:
        return tuple(f for o in self.options for f in o.flags)

    @property
    def value_flags(self) -> tuple[str, ...]:
        return tuple(f for o in self.options if o.kind for f in o.flags)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("completion", help="print a shell completion script (bash, zsh, fish, PowerShell)")
    p.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash, zsh, fish or powershell")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from envbuilder.cli.app import build_parser

    sys.stdout.write(render(args.shell, tree(build_parser())))
    return 0


# --------------------------------------------------------------------------- the tree (pure)


def _option(action: argparse.Action) -> Option:
    flags = tuple(action.option_strings)
    text = (action.help or "").replace("\n", " ") if action.help != argparse.SUPPRESS else ""
    if action.nargs == 0:
        return Option(flags, text, "")
    if action.choices:
        return Option(flags, text, "choice", tuple(str(c) for c in action.choices))
    metavar = action.metavar if isinstance(action.metavar, str) else ""
    kind: ValueKind = "any"
    if metavar in _FILE_METAVARS:
        kind = "file"
    elif metavar in _DIR_METAVARS or "--path" in flags:  # `--path P`: P is a directory, `--profile P` is not
        kind = "dir"
    return Option(flags, text, kind)


def _positional(parser: argparse.ArgumentParser) -> tuple[Positional, tuple[str, ...]]:
    """What the first positional argument is: a lock file, an environment's name, one of a few words."""
    for action in parser._actions:
        if not action.option_strings and not isinstance(action, argparse._SubParsersAction):
            if action.choices:
                return "choice", tuple(str(c) for c in action.choices)
            if action.metavar == "LOCK":
                return "file", ()
            if action.metavar == "NAME":
                return "env", ()
    return "", ()


def tree(parser: argparse.ArgumentParser, path: str = "") -> list[Node]:
    """Every command path of ``parser``, depth first."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {c.dest: c.help or "" for s in subs for c in s._choices_actions}
    commands = tuple((name, helps.get(name, "")) for s in subs for name in s.choices)
    options = tuple(_option(a) for a in parser._actions if a.option_strings)
    nodes = [Node(path, commands, options, *_positional(parser))]
    for s in subs:
        for name, child in s.choices.items():
            nodes += tree(child, f"{path} {name}".strip())
    return nodes


def render(shell: Shell, nodes: list[Node]) -> str:
    return {"bash": bash, "zsh": zsh, "fish": fish, "powershell": powershell}[shell](nodes)


# --------------------------------------------------------------------------- bash


def _q(text: str) -> str:
    """A single-quoted shell word (bash and zsh), always quoted."""
    return "'" + text.replace("'", "'\\''") + "'"


def _kind_cases(nodes: list[Node], fmt: str, sep: str = "|") -> list[str]:
    """``case "$path $option"`` arms, one per kind of value (one per choice list)."""
    by_kind: dict[tuple[ValueKind, tuple[str, ...]], list[str]] = {}
    for n in nodes:
        for o in n.options:
            if o.kind:
                by_kind.setdefault((o.kind, o.choices), []).extend(f"{n.path} {f}" for f in o.flags)
    return [
        fmt.format(patterns=sep.join(_q(p) for p in pats), kind=k, choices=" ".join(c))
        for (k, c), pats in by_kind.items()
    ]


_BASH = r"""# bash completion for envbuilder (generated by `envbuilder completion bash`; regenerate after an upgrade).
# Load it: envbuilder completion bash > ~/.local/share/bash-completion/completions/envbuilder
#      or: source <(envbuilder completion bash)   (in ~/.bashrc)

_envbuilder_node() {
    case "$1" in
@NODES@
        *) _eb_commands=''; _eb_flags=''; _eb_values=''; _eb_positional=''; _eb_choices='' ;;
    esac
}

_envbuilder_value() {
    local kind='' choices=''
    case "$1 $2" in
@VALUES@
    esac
    case "$kind" in
        choice) mapfile -t COMPREPLY < <(compgen -W "$choices" -- "$3") ;;
        file) mapfile -t COMPREPLY < <(compgen -f -- "$3") ;;
        dir) mapfile -t COMPREPLY < <(compgen -d -- "$3") ;;
        *) COMPREPLY=() ;;
    esac
}

_envbuilder_envs() {
    local home="@DATA_ROOT@" dir
    local -a names=()
    for dir in "$home"/envs/*/; do
        [[ -d $dir ]] && names+=("$(basename "$dir")")
    done
    mapfile -t COMPREPLY < <(compgen -W "${names[*]}" -- "$1")
}

_envbuilder() {
    local cur="${COMP_WORDS[COMP_CWORD]}" path='' word option='' i skip=0 given=0
    local _eb_commands _eb_flags _eb_values _eb_positional _eb_choices
    _envbuilder_node ''
    for (( i = 1; i < COMP_CWORD; i++ )); do
        word="${COMP_WORDS[i]}"
        if [[ $word == '=' ]]; then skip=1; continue; fi  # bash splits --opt=value at '='
        if (( skip )); then skip=0; continue; fi
        if [[ $word == '--' ]]; then COMPREPLY=(); return 0; fi  # a child command's words
        if [[ $word == -* ]]; then
            [[ " $_eb_values " == *" $word "* ]] && { skip=1; option=$word; }
            continue
        fi
        if [[ " $_eb_commands " == *" $word "* ]]; then
            path="${path:+$path }$word"; given=0
            _envbuilder_node "$path"
        else
            given=$(( given + 1 ))
        fi
    done
    if [[ $cur == '=' ]]; then cur=''; fi
    if (( skip )); then
        _envbuilder_value "$path" "$option" "$cur"
    elif [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$_eb_flags" -- "$cur")
    elif [[ -n $_eb_commands ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$_eb_commands" -- "$cur")
    elif (( given == 0 )) && [[ $_eb_positional == env ]]; then
        _envbuilder_envs "$cur"
    elif (( given == 0 )) && [[ $_eb_positional == file ]]; then
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    elif (( given == 0 )) && [[ $_eb_positional == choice ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$_eb_choices" -- "$cur")
    else
        COMPREPLY=()
    fi
    return 0
}

complete -o default -F _envbuilder envbuilder
"""


def bash(nodes: list[Node]) -> str:
    arms = [
        f"        {_q(n.path)}) _eb_commands={_q(' '.join(c for c, _ in n.commands))};"
        f" _eb_flags={_q(' '.join(n.flags))}; _eb_values={_q(' '.join(n.value_flags))};"
        f" _eb_positional={_q(n.positional)}; _eb_choices={_q(' '.join(n.positional_choices))} ;;"
        for n in nodes
    ]
    values = _kind_cases(nodes, "        {patterns}) kind='{kind}'; choices='{choices}' ;;")
    from envbuilder.render.wsl2 import SH_DATA_ROOT

    text = _BASH.replace("@NODES@", "\n".join(arms)).replace("@VALUES@", "\n".join(values))
    return text.replace("@DATA_ROOT@", SH_DATA_ROOT)


# --------------------------------------------------------------------------- zsh


def _described(name: str, text: str) -> str:
    """``name:description`` for _describe (a colon in the name is escaped)."""
    return _q(name.replace(":", "\\:") + ":" + " ".join(text.split()))


_ZSH = r"""#compdef envbuilder
# zsh completion for envbuilder (generated by `envbuilder completion zsh`; regenerate after an upgrade).
# Load it: envbuilder completion zsh > "${fpath[1]}/_envbuilder"   (a directory on $fpath, before compinit)
#      or: source <(envbuilder completion zsh)   (in ~/.zshrc, after compinit)

_envbuilder_node() {
    case "$1" in
@NODES@
        *) reply_commands=(); reply_flags=(); reply_values=(); reply_positional=''; reply_choices=() ;;
    esac
}

_envbuilder_value() {
    local kind='' choices=''
    case "$1 $2" in
@VALUES@
    esac
    case $kind in
        choice) compadd -- ${=choices} ;;
        file) _files ;;
        dir) _files -/ ;;
        *) _message 'a value' ;;
    esac
}

_envbuilder() {
    local -a reply_commands reply_flags reply_values reply_choices
    local reply_positional path='' word option='' i skip=0 given=0 cur=${words[CURRENT]}
    _envbuilder_node ''
    for (( i = 2; i < CURRENT; i++ )); do
        word=${words[i]}
        if (( skip )); then skip=0; continue; fi
        if [[ $word == -- ]]; then _normal; return; fi
        if [[ $word == -* ]]; then
            if [[ $word != *=* ]] && (( ${reply_values[(Ie)$word]} )); then skip=1; option=$word; fi
            continue
        fi
        if (( ${reply_commands[(I)${(b)word}:*]} )); then
            path=${path:+$path }$word; given=0
            _envbuilder_node "$path"
        else
            (( given++ ))
        fi
    done
    if (( skip )); then
        _envbuilder_value "$path" "$option"
    elif [[ $cur == --*=* ]]; then
        option=${cur%%=*}
        compset -P '*='
        _envbuilder_value "$path" "$option"
    elif [[ $cur == -* ]]; then
        _describe -t options 'option' reply_flags
    elif (( ${#reply_commands} )); then
        _describe -t commands 'command' reply_commands
    elif (( given == 0 )) && [[ $reply_positional == env ]]; then
        local home=@DATA_ROOT@
        local -a names=( $home/envs/*(N/:t) )
        compadd -- $names
    elif (( given == 0 )) && [[ $reply_positional == choice ]]; then
        compadd -- $reply_choices
    else
        _files
    fi
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _envbuilder "$@"
else
    compdef _envbuilder envbuilder
fi
"""


def zsh(nodes: list[Node]) -> str:
    arms = []
    for n in nodes:
        commands = " ".join(_described(c, h) for c, h in n.commands)
        flags = " ".join(_described(f, o.help) for o in n.options for f in o.flags)
        arms.append(
            f"        {_q(n.path)}) reply_commands=({commands}); reply_flags=({flags});"
            f" reply_values=({' '.join(_q(f) for f in n.value_flags)}); reply_positional={_q(n.positional)};"
            f" reply_choices=({' '.join(_q(c) for c in n.positional_choices)}) ;;"
        )
    values = _kind_cases(nodes, "        {patterns}) kind='{kind}'; choices='{choices}' ;;")
    from envbuilder.render.wsl2 import SH_DATA_ROOT

    text = _ZSH.replace("@NODES@", "\n".join(arms)).replace("@VALUES@", "\n".join(values))
    return text.replace("@DATA_ROOT@", SH_DATA_ROOT)


# --------------------------------------------------------------------------- fish


def _fq(text: str) -> str:
    """A fish single-quoted string (backslash and quote escaped)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_FISH = r"""# fish completion for envbuilder (generated by `envbuilder completion fish`; regenerate after an upgrade).
# Load it: envbuilder completion fish > ~/.config/fish/completions/envbuilder.fish

function __envbuilder_node_values --argument-names path
    switch $path
@VALUES@
    end
end

function __envbuilder_node_commands --argument-names path
    switch $path
@COMMANDS@
    end
end

# The command path the line names so far ('' at the top; '--' once a child command's words begin).
function __envbuilder_path
    set -l tokens (commandline -opc)
    set -e tokens[1]
    set -l path ''
    set -l skip 0
    for word in $tokens
        if test $skip = 1
            set skip 0
            continue
        end
        if test "$word" = '--'
            printf '%s\n' '--'
            return
        end
        if string match -q -- '-*' $word
            if not string match -q -- '*=*' $word; and contains -- $word (__envbuilder_node_values $path)
                set skip 1
            end
            continue
        end
        if contains -- $word (__envbuilder_node_commands $path)
            set path (string trim -- "$path $word")
        end
    end
    printf '%s\n' "$path"
end

function __envbuilder_at --argument-names wanted
    set -l here (__envbuilder_path)
    test "$here" = "$wanted"
end

function __envbuilder_envs
    set -l home $ENVBUILDER_HOME
    if test -z "$home"
        set -l data $XDG_DATA_HOME
        test -z "$data"; and set data $HOME/.local/share
        set home $data/envbuilder
    end
    for dir in $home/envs/*/
        basename $dir
    end
end

complete -c envbuilder -f
@COMPLETES@
"""


def _fish_option(path: str, o: Option) -> str:
    parts = [f"complete -c envbuilder -n {_fq(f'__envbuilder_at {_fq(path)}')}"]
    for f in o.flags:
        parts.append(f"-l {f[2:]}" if f.startswith("--") else f"-s {f[1:]}")
    if o.kind == "choice":
        parts.append(f"-x -a {_fq(' '.join(o.choices))}")
    elif o.kind == "file":
        parts.append("-r -F")
    elif o.kind == "dir":
        parts.append("-x -a '(__fish_complete_directories)'")
    elif o.kind == "any":
        parts.append("-x")
    if o.help:
        parts.append(f"-d {_fq(' '.join(o.help.split()))}")
    return " ".join(parts)


def fish(nodes: list[Node]) -> str:
    values = [
        f"        case {_fq(n.path)}\n            printf '%s\\n' {' '.join(_fq(f) for f in n.value_flags)}"
        for n in nodes
        if n.value_flags
    ]
    commands = [
        f"        case {_fq(n.path)}\n            printf '%s\\n' {' '.join(_fq(c) for c, _ in n.commands)}"
        for n in nodes
        if n.commands
    ]
    lines: list[str] = []
    for n in nodes:
        at = _fq(f"__envbuilder_at {_fq(n.path)}")
        lines += [f"complete -c envbuilder -n {at} -a {_fq(c)} -d {_fq(' '.join(h.split()))}" for c, h in n.commands]
        lines += [_fish_option(n.path, o) for o in n.options]
        if n.positional == "env":
            lines.append(f"complete -c envbuilder -n {at} -a '(__envbuilder_envs)'")
        elif n.positional == "file":
            lines.append(f"complete -c envbuilder -n {at} -F")
        elif n.positional == "choice":
            lines.append(f"complete -c envbuilder -n {at} -a {_fq(' '.join(n.positional_choices))}")
    return (
        _FISH.replace("@VALUES@", "\n".join(values))
        .replace("@COMMANDS@", "\n".join(commands))
        .replace("@COMPLETES@", "\n".join(lines))
    )


# --------------------------------------------------------------------------- PowerShell


def _pq(text: str) -> str:
    """A PowerShell single-quoted string (a quote doubled)."""
    return "'" + text.replace("'", "''") + "'"


_POWERSHELL = r"""# PowerShell completion for envbuilder (generated by `envbuilder completion powershell`).
# Load it: envbuilder completion powershell >> $PROFILE   (or dot-source the saved file)

Register-ArgumentCompleter -Native -CommandName envbuilder -ScriptBlock {
    param($wordToComplete, $commandAst, $cursorPosition)
    $tree = @{
@NODES@
    }
    $words = @($commandAst.CommandElements | Where-Object { $_.Extent.EndOffset -lt $cursorPosition } |
        ForEach-Object { $_.ToString() })
    $path = ''
    $skip = $false
    $option = ''
    $given = 0
    foreach ($word in ($words | Select-Object -Skip 1)) {
        if ($skip) { $skip = $false; continue }
        if ($word -eq '--') { return }
        if ($word.StartsWith('-')) {
            if (-not $word.Contains('=') -and $tree[$path].values.ContainsKey($word)) { $skip = $true; $option = $word }
            continue
        }
        if ($tree[$path].commands -contains $word) {
            $path = ($path + ' ' + $word).Trim()
            $given = 0
        } else {
            $given += 1
        }
    }
    $node = $tree[$path]
    $candidates = @()
    if ($skip) {
        $kind = $node.values[$option]
        if ($kind -is [array]) { $candidates = $kind }
        elseif ($kind -eq 'file' -or $kind -eq 'dir') {
            $candidates = @(Get-ChildItem -Path "$wordToComplete*" -ErrorAction SilentlyContinue |
                Where-Object { $kind -eq 'file' -or $_.PSIsContainer } | ForEach-Object { $_.Name })
        }
    } elseif ($wordToComplete.StartsWith('-')) {
        $candidates = $node.flags
    } elseif ($node.commands.Count -gt 0) {
        $candidates = $node.commands
    } elseif ($given -eq 0 -and $node.positional -eq 'choice') {
        $candidates = $node.choices
    } elseif ($given -eq 0 -and $node.positional -eq 'env') {
        @DATA_ROOT@
        $envs = Join-Path $EnvbuilderHome 'envs'
        $candidates = @(Get-ChildItem -Path $envs -Directory -ErrorAction SilentlyContinue |
            ForEach-Object { $_.Name })
    }
    $candidates | Where-Object { $_ -like "$wordToComplete*" } | ForEach-Object {
        [System.Management.Automation.CompletionResult]::new($_, $_, 'ParameterValue', $_)
    }
}
"""


def powershell(nodes: list[Node]) -> str:
    arms = []
    for n in nodes:
        values = "; ".join(
            f"{_pq(f)} = " + ("@(" + ", ".join(_pq(c) for c in o.choices) + ")" if o.kind == "choice" else _pq(o.kind))
            for o in n.options
            if o.kind
            for f in o.flags
        )
        arms.append(
            f"        {_pq(n.path)} = @{{ commands = @({', '.join(_pq(c) for c, _ in n.commands)});"
            f" flags = @({', '.join(_pq(f) for f in n.flags)}); values = @{{ {values} }};"
            f" positional = {_pq(n.positional)}; choices = @({', '.join(_pq(c) for c in n.positional_choices)}) }}"
        )
    # envbuilder's home as the Windows recipe finds it (one PowerShell spelling of edge/_roots.data_root).
    from envbuilder.render.windows import PS_DATA_ROOT

    data_root = PS_DATA_ROOT.replace("\n", "\n        ")
    return _POWERSHELL.replace("@NODES@", "\n".join(arms)).replace("@DATA_ROOT@", data_root)
