"""The native Windows recipe (PowerShell), the `envbuilder recipe` command, and the WSL2/Windows doctor rules.

There is no PowerShell here (Debian ships none, and its installers download from outside), so the scripts are
checked by golden files (``tests/golden/``; regenerate with ``ENVBUILDER_UPDATE_GOLDEN=1``) and by a small
tokenizer for PowerShell's single-quoted strings that proves every inserted value reads back as the same text.
The doctor rules run on lines quoted verbatim from public issues (``tests/fixtures/windows/README.md``).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import pytest

from envbuilder.cli.app import main
from envbuilder.doctor import Context, diagnose, load_rules
from envbuilder.edge.settings import env_flag
from envbuilder.model.errors import TargetError
from envbuilder.model.images import load_pin_table
from envbuilder.model.matrix import Matrix, load_matrix
from envbuilder.model.smoke import load_smoke_table, program_text
from envbuilder.render import recipe, values, windows
from envbuilder.render.windows import render_windows_script

GOLDEN = Path(__file__).parent / "golden"
LOGS = Path(__file__).parent / "fixtures" / "windows"

SMOKE_TABLE = load_smoke_table()
UV = load_pin_table().uv_release  # images.toml [uv]: the uv the script installs, the oldest it accepts
UV_VERSION = UV.version
BNB_FIRST = load_matrix().bnb_first_on("windows-x86_64").version  # type: ignore[union-attr]


def spec(**over: object) -> recipe.RecipeSpec:
    base: dict[str, object] = {
        "name": "bnb-cu126-py3.12",
        "profile": "bnb",
        "python": "3.12",
        "cuda": "12.6",
        "variant": "cu126",
        "platform": "windows-x86_64",
        "driver_floor": "527.41",
        "pins": ("torch==2.14.1+cu126", "bitsandbytes==0.50.2", "transformers==5.24.0", "accelerate==1.15.0"),
        "indexes": ("https://download.pytorch.org/whl/cu126",),
        "uv_version": UV_VERSION,
        "uv_min_version": UV.min_version,
        "bnb_first": BNB_FIRST,
    }
    base.update(over)
    made = recipe.RecipeSpec(**base)  # type: ignore[arg-type]
    return recipe.validate(dataclasses.replace(made, expect=recipe.recipe_expect(made, SMOKE_TABLE)))


def _ps_data_root(environ: dict[str, str], home: str) -> str:
    """What PS_DATA_ROOT's if/elseif chain gives for ``environ`` (no PowerShell here: its three forms read by hand)."""
    import ntpath

    branches = re.findall(r"(?:if|elseif) \(\$env:(\w+)\) \{\s*(.*?)\s*\}", windows.PS_DATA_ROOT, re.DOTALL)
    last = re.search(r"else \{\s*(.*?)\s*\}$", windows.PS_DATA_ROOT, re.DOTALL)
    assert len(branches) == 3 and last is not None
    chosen = next((expr for var, expr in branches if environ.get(var)), last.group(1))
    if chosen.startswith("$env:"):
        return environ[chosen[5:]]
    where, child = re.fullmatch(r"Join-Path (\$env:\w+|\$HOME) '([^']+)'", chosen).groups()  # type: ignore[union-attr]
    return ntpath.join(home if where == "$HOME" else environ[where[5:]], child)


@pytest.mark.parametrize(
    "environ",
    [
        {"LOCALAPPDATA": r"C:\Users\u\AppData\Local"},
        {"LOCALAPPDATA": r"C:\Users\u\AppData\Local", "XDG_DATA_HOME": r"D:\xdg"},
        {"LOCALAPPDATA": r"C:\Users\u\AppData\Local", "ENVBUILDER_HOME": r"E:\envbuilder"},
        {"LOCALAPPDATA": r"C:\Users\u\AppData\Local", "ENVBUILDER_HOME": "", "XDG_DATA_HOME": ""},
        {},
    ],
)
def test_the_script_finds_envbuilders_home_by_envbuilders_rule(environ: dict[str, str]) -> None:
    """The recipe's environment lies where `envbuilder list/smoke` on that machine look (edge/_roots.data_root
    with os_name "nt"), and the PowerShell completion lists the same directory."""
    import ntpath

    from envbuilder.cli import completion
    from envbuilder.edge._roots import data_root

    home = r"C:\Users\u"
    assert ntpath.normpath(_ps_data_root(environ, home)) == ntpath.normpath(data_root(environ, home, "nt"))
    assert windows.PS_DATA_ROOT + "\n$EnvDir = Join-Path $EnvbuilderHome (Join-Path 'envs' 'bnb-cu126-py3.12')" in (
        windows.render_windows_script(spec())
    )
    assert windows.PS_DATA_ROOT.replace("\n", "\n        ") in completion.powershell([])


LOCK = """lock-version = "1.0"
created-by = "uv"
requires-python = ">=3.12"

[[packages]]
name = "bitsandbytes"
version = "0.50.2"
wheels = [{ url = "https://files.example.org/bitsandbytes-0.50.2-py3-none-win_amd64.whl", hashes = { sha256 = "00" } }]
"""


# --------------------------------------------------------------------------- golden scripts


@pytest.mark.parametrize(
    ("golden", "over"),
    [
        ("windows-bnb-cu126-pins.ps1", {}),
        ("windows-bnb-cu126-lock.ps1", {"lock_text": LOCK}),
        (
            "windows-cpu-pins.ps1",
            {
                "name": "cpu-py3.12",
                "profile": "cpu",
                "cuda": None,
                "variant": "cpu",
                "driver_floor": None,
                "indexes": (),
                "pins": ("torch==2.14.1", "bitsandbytes==0.50.2"),
            },
        ),
    ],
)
def test_windows_script_matches_golden(golden: str, over: dict[str, object]) -> None:
    # The embedded smoke program is envbuilder/smoke/check.py itself (asserted here); the golden holds its place.
    text = render_windows_script(spec(**over))
    program = program_text().rstrip("\n")
    assert text.count(program) == 1
    text = text.replace(program, "@@SMOKE_PROGRAM@@")
    path = GOLDEN / golden
    if env_flag("ENVBUILDER_UPDATE_GOLDEN"):  # 1/true/yes/on, like every boolean variable
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"rerun with ENVBUILDER_UPDATE_GOLDEN=1 and review {path}"


@pytest.mark.parametrize("golden", ["windows-bnb-cu126-pins.ps1", "windows-bnb-cu126-lock.ps1", "windows-cpu-pins.ps1"])
def test_golden_scripts_check_what_the_issue_asks(golden: str) -> None:
    text = (GOLDEN / golden).read_text(encoding="utf-8")
    for needle in (
        r"HKLM:\SOFTWARE\Microsoft\VisualStudio\14.0\VC\Runtimes\x64",  # the VC++ 2015-2022 runtime key
        r"HKLM:\SYSTEM\CurrentControlSet\Control\FileSystem' -Name LongPathsEnabled",
        "& uv python install $PythonVersion",
        "IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)",
        "bitsandbytes-windows",
        "Set-StrictMode -Version Latest",
    ):
        assert needle in text, needle
    # Every native command is followed by an exit-code check ($ErrorActionPreference does not see them).
    natives = [ln for ln in text.splitlines() if re.match(r"\s*& (uv|powershell) ", ln) and "Test-Native" not in ln]
    for line in natives:
        after = text.split(line, 1)[1].lstrip().splitlines()[0]
        assert after.startswith("Assert-Exit"), line


# --------------------------------------------------------------------------- quoting, proved by reading it back


def ps_single_quoted(text: str, start: int) -> tuple[str, int]:
    """Read one PowerShell single-quoted literal at ``start``: the value and the index after it."""
    quotes = set(values.PS_QUOTES)
    assert text[start] in quotes
    out, i = [], start + 1
    while i < len(text):
        c = text[i]
        if c in quotes:
            if i + 1 < len(text) and text[i + 1] in quotes:
                out.append(text[i + 1])  # a doubled quote stands for one
                i += 2
                continue
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise AssertionError("unterminated string")


@pytest.mark.parametrize(
    "value",
    [
        "C:\\envs\\'; Remove-Item -Recurse -Force C:\\; '",
        "C:\\envs\\$(Remove-Item C:\\x)",
        "C:\\envs\\\u2019; Remove-Item C:\\ ;\u2018",  # typographic quotes end strings in PowerShell too
        "C:\\envs\\`n$env:USERPROFILE",
    ],
)
def test_windows_paths_read_back_as_the_same_text(value: str) -> None:
    text = render_windows_script(spec(env_dir=value))
    line = next(ln for ln in text.splitlines() if ln.startswith("$EnvDir = "))
    literal, end = ps_single_quoted(line, len("$EnvDir = "))
    assert literal == value
    assert line[end:] == ""  # nothing after the literal: no command smuggled in


@pytest.mark.parametrize("name", ["x; rm -rf /", "$(touch /tmp/pwned)", "'; Remove-Item", "a\u2019b"])
def test_windows_names_are_refused(name: str) -> None:
    with pytest.raises(Exception, match="not allowed"):
        spec(name=name)


def test_lock_ending_a_here_string_is_refused() -> None:
    with pytest.raises(Exception, match="here-string"):
        render_windows_script(spec(lock_text=LOCK + "'@\nRemove-Item C:\\\n"))


@pytest.mark.parametrize("profile", ["gptq", "awq"])
def test_kernel_profiles_are_refused_on_windows(profile: str) -> None:
    with pytest.raises(TargetError) as exc:
        render_windows_script(spec(profile=profile))
    assert exc.value.hint == f"use WSL2 instead: `envbuilder recipe wsl2 --profile {profile}` (same GPU, Linux wheels)"


def test_pre_043_bitsandbytes_is_refused_on_windows() -> None:
    with pytest.raises(TargetError, match=r"bitsandbytes 0\.42\.0 has no Windows build"):
        render_windows_script(spec(pins=("torch==2.1.2", "bitsandbytes==0.42.0")))



def test_the_first_windows_release_is_the_matrixs() -> None:
    # bitsandbytes.toml [[first]] decides: a matrix that recorded 0.44.0 would refuse 0.43.3, the shipped one not.
    pins = ("torch==2.4.1+cu121", "bitsandbytes==0.43.3")
    assert "bitsandbytes==0.43.3" in render_windows_script(spec(pins=pins))
    with pytest.raises(TargetError, match=r"0\.43\.3 has no Windows build") as exc:
        render_windows_script(spec(pins=pins, bnb_first="0.44.0"))
    assert exc.value.hint == "use bitsandbytes >= 0.44.0, the first release with official Windows wheels"


def test_linux_lock_is_refused_on_windows() -> None:
    with pytest.raises(Exception, match="not Windows"):
        render_windows_script(spec(platform="linux-x86_64"))


# --------------------------------------------------------------------------- the command


def test_cli_windows_gptq_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "windows", "--gpu", "sm_89", "--profile", "gptq"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("envbuilder: the gptq profile cannot work on native Windows")
    assert err[1] == "TIP use WSL2 instead: `envbuilder recipe wsl2 --profile gptq`"


def test_cli_contradicting_os_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "wsl2", "--gpu", "sm_89", "--os", "windows"]) == 2
    assert capsys.readouterr().err == (
        "envbuilder: recipe wsl2: --os windows contradicts the recipe\n"
        "TIP drop --os (it is wsl2 here), or use `envbuilder recipe windows`\n"
    )


def test_cli_injected_name_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "wsl2", "--gpu", "sm_89", "--name", "x; rm -rf /"]) == 2
    assert "environment name 'x; rm -rf /' is not allowed" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kind", "suffix", "first"), [("wsl2", "sh", "#!/usr/bin/env bash"), ("windows", "ps1", "# Generated")]
)
def test_cli_writes_script_and_prints_checklist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, suffix: str, first: str
) -> None:
    out = tmp_path / f"setup.{suffix}"
    assert main(["recipe", kind, "--gpu", "sm_89", "--driver", "560.94", "--python", "3.12", "-o", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"wrote {out}"
    assert printed[1] == "checklist:"
    assert printed[2].startswith("  1. ")
    assert out.read_text().startswith(first)
    if kind == "wsl2":
        assert os.access(out, os.X_OK)


def test_cli_stdout_is_only_the_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["recipe", "wsl2", "--gpu", "cpu", "--python", "3.12"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("#!/usr/bin/env bash\n")
    assert "checklist:" not in captured.out
    assert "checklist:" in captured.err


# --------------------------------------------------------------------------- doctor rules on real logs


@pytest.mark.parametrize(
    ("log", "rule", "severity", "seen_start"),
    [
        ("gh-bnb-17-wsl-libcuda-cannot-open.txt", "wsl-libcuda", "FAIL", "WSL: libcuda.so: cannot open"),
        ("gh-nougat-115-wsl2-cudnn-libcuda.txt", "wsl-libcuda", "FAIL", "0%|"),
        (
            "gh-alpaca-lora-227-wsl2-libcuda-not-found.txt",
            "wsl-libcuda",
            "FAIL",  # no libcuda: nothing runs on the GPU (the doctor blames the driver where WSL is not said)
            "CUDA SETUP: WARNING! libcuda.so not found!",
        ),
        (
            "gh-wsl-8794-nvidia-smi-not-found-ssh.txt",
            "wsl-nvidia-smi-path",
            "WARN",
            "zsh: command not found: nvidia-smi",
        ),
        (
            "gh-atri-3-vc-redist-not-installed.txt",
            "windows-msvc-runtime",
            "FAIL",
            "Microsoft Visual C++ Redistributable is not installed",
        ),
        ("gh-funclip-105-winerror-126-fbgemm.txt", "windows-dll-load", "FAIL", "OSError: [WinError 126]"),
        ("gh-bnb-699-windows-linux-so-wheel.txt", "windows-linux-only-bnb", "FAIL", "CUDA SETUP: Loading binary C:\\"),
        (
            "gh-textgen-1174-windowspath-not-iterable.txt",
            "windows-linux-only-bnb",
            "FAIL",
            "TypeError: argument of type 'WindowsPath'",
        ),
        (
            "gh-jllllll-20-py3-none-any-0.38.1.txt",
            "windows-linux-only-bnb",
            "FAIL",
            "bitsandbytes-0.38.1-py3-none-any.whl",
        ),
        ("gh-jllllll-20-py3-none-any-0.38.1.txt", "windows-dll", "FAIL", "Could not find module 'e:\\"),
        ("gh-bnb-1058-windows-cuda116-dll.txt", "windows-dll", "FAIL", "Could not find module 'C:\\"),
    ],
)
def test_rules_on_real_logs(matrix: Matrix, log: str, rule: str, severity: str, seen_start: str) -> None:
    found = diagnose(Context(matrix=matrix, log=(LOGS / log).read_text(encoding="utf-8")), load_rules())
    hits = [f for f in found if f.rule == rule]
    assert hits, [f.rule for f in found]
    assert hits[0].severity == severity
    assert hits[0].seen.startswith(seen_start)


def test_wsl_libcuda_fix_names_the_wsl_lib_dir(matrix: Matrix) -> None:
    found = diagnose(
        Context(matrix=matrix, log=(LOGS / "gh-bnb-17-wsl-libcuda-cannot-open.txt").read_text()), load_rules()
    )
    fix = next(f.fix for f in found if f.rule == "wsl-libcuda")
    assert "export LD_LIBRARY_PATH=/usr/lib/wsl/lib:$LD_LIBRARY_PATH" in fix


def test_linux_only_bnb_fix_is_a_windows_release(matrix: Matrix) -> None:
    found = diagnose(
        Context(matrix=matrix, log=(LOGS / "gh-bnb-699-windows-linux-so-wheel.txt").read_text()), load_rules()
    )
    fix = next(f.fix for f in found if f.rule == "windows-linux-only-bnb")
    version = re.search(r"bitsandbytes==(\d+)\.(\d+)\.(\d+)", fix)
    assert version and (int(version[1]), int(version[2])) >= (0, 43), fix
    assert fix.startswith("uninstall it and any fork (pip uninstall -y bitsandbytes bitsandbytes-windows), then: ")


def test_msvc_line_suppresses_the_generic_dll_finding(matrix: Matrix) -> None:
    found = diagnose(
        Context(matrix=matrix, log=(LOGS / "gh-atri-3-vc-redist-not-installed.txt").read_text()), load_rules()
    )
    assert [f.rule for f in found if f.rule.startswith("windows-")] == ["windows-msvc-runtime"]


@pytest.mark.parametrize(
    "log", sorted(p.name for p in (Path(__file__).parent / "fixtures" / "h100-cu130").glob("*.txt"))
)
def test_healthy_h100_outputs_raise_no_windows_finding(matrix: Matrix, log: str) -> None:
    text = (Path(__file__).parent / "fixtures" / "h100-cu130" / log).read_text()
    found = diagnose(Context(matrix=matrix, log=text), load_rules(("envbuilder.doctor.rules_windows",)))
    assert found == ()
