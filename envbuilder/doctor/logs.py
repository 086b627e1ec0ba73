"""Reading pasted logs and tracebacks: quote the line that shows a problem, and pull out the facts they state.

Pure functions over text. Logs come from anywhere (``python -m bitsandbytes``, a transformers traceback, a
journal with timestamps), so matching is per line and tolerant of prefixes.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from collections.abc import Iterable

MAX_QUOTE = 300
# A log above this size is first reduced to the lines any rule can read (``relevant_lines``); the fixtures and
# the logs users paste are far below it and reach the rules whole.
BIG_LOG = 256 * 1024
# What evidence.from_log reads: every line one of its patterns can match holds one of these (lower case;
# tests/test_fuzz.py checks each pattern against strings generated from it).
FACT_TRIGGERS = (
    "bitsandbytes",
    "torch",
    "cuda",
    "+cu",
    "+rocm",
    "rocm",
    "capability",
    "capacity",
    "capacty",
    "gib",
    ":\\",
    ".dll",
    "windowspath",
    "winerror",
    "windows",
    "win 1",
    "aarch64",
    "tegra",
    "jetson",
    "l4t",
    "orin",
    "jetpack",
    "python",
    "cp3",
    "driver",
    "nvidia-smi",
    "glibc",
    "mach-o",
    "homebrew",
    "/users/",
    "macos",
    "darwin",
    "apple",
    "wsl",
    "windows subsystem for linux",
    "microsoft-standard",
    "/mnt/",
    "libbitsandbytes",
    ".so",
    "-lcuda",
    "libcuda",
    "undefined symbol",
    "no module named",
    "cannot import name",
    "is not defined",
    "wheel",
    "failed to build",
    "extension",
    "rtx",
    "gtx",
    "nvidia",
    "tesla",
    "a100",
    "h100",
    "h200",
    "v100",
    "p100",
    "p40",
    "t4",
    "m40",
    "k80",
    "l4",
    "a10",
    "a40",
    "l40",
    "nvcc",
    "compute_capabilities",
    "iris",
    "intel(r)",
    "radeon",
    "rx ",
    "transformers",
    "accelerate",
    "peft",
    "trl",
    "optimum",
    "triton",
    "gptq",
    "awq",
    "llm compressor",
    "llmcompressor",
    "compressed-tensors",
    "exllama",
)


def quote(text: str, pattern: str | re.Pattern[str]) -> tuple[str, re.Match[str]] | None:
    """The first line matching ``pattern`` (stripped, shortened) and its match, or None.

    Searched at C speed over the whole text, each hit then checked on its own line, which gives the same first
    line as trying line by line (a Python loop over every line for each of forty patterns, the cost that made
    a 10 MB log take seconds). Text with other line separators than newline, and patterns whose meaning
    depends on what lies beyond a line, take the plain line-by-line way.
    """
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern
    if _LINEWISE.search(rx.pattern) or _OTHER_SEPARATORS.search(text):
        return _quote_linewise(text, rx)
    whole = _multiline(rx)
    at = 0
    while (hit := whole.search(text, at)) is not None:
        start = text.rfind("\n", 0, hit.start()) + 1
        end = text.find("\n", hit.start())
        end = len(text) if end == -1 else end
        line = text[start:end]
        m = rx.search(line)
        if m:
            return _shortened(line), m
        at = end + 1
        if at > len(text):
            break
    return None


# Patterns that look beyond a line (lookarounds, string anchors), and separators str.splitlines() knows besides
# the newline: with either, a hit in the whole text and a match on the line could disagree.
_LINEWISE = re.compile(r"\(\?<?[=!]|\\[AZ]")
_OTHER_SEPARATORS = re.compile("[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


@functools.lru_cache(maxsize=256)
def _multiline(rx: re.Pattern[str]) -> re.Pattern[str]:
    return re.compile(rx.pattern, rx.flags | re.MULTILINE)


def _quote_linewise(text: str, rx: re.Pattern[str]) -> tuple[str, re.Match[str]] | None:
    for line in text.splitlines():
        m = rx.search(line)
        if m:
            return _shortened(line), m
    return None


def _shortened(line: str) -> str:
    s = line.strip()
    return s if len(s) <= MAX_QUOTE else s[: MAX_QUOTE - 3] + "..."


def _cuda_digits(digits: str | None) -> str | None:
    """'124' -> '12.4', '118' -> '11.8'."""
    return f"{digits[:-1]}.{digits[-1]}" if digits and len(digits) >= 2 else None


def relevant_lines(text: str, triggers: Iterable[str]) -> str:
    """The distinct lines of ``text`` that hold a trigger (any case), in order of first appearance.

    One pass splits the log into lines and drops repeats (a training log repeats its progress and warning lines
    thousands of times; the rules quote the first line that matches, which a repeat never is); each trigger is
    then found at C speed in the distinct lines, so the rules' forty patterns read a few lines instead of a
    10 MB text forty times. Every pattern a rule uses has a trigger on each line it can match (tested).
    """
    distinct = list(dict.fromkeys(text.splitlines()))
    blob = "\n".join(distinct)
    low = blob.lower()
    if len(low) != len(blob):  # a few non-ASCII letters lower to two characters: lower the ASCII ones only
        low = blob.translate(_ASCII_LOWER)
    starts = list(itertools.accumulate((len(line) + 1 for line in distinct[:-1]), initial=0))
    keep: set[int] = set()
    for trigger in dict.fromkeys(t.lower() for t in triggers):
        at = low.find(trigger)
        while at != -1:
            line = bisect.bisect_right(starts, at) - 1
            keep.add(line)
            end = starts[line + 1] if line + 1 < len(starts) else len(low)
            at = low.find(trigger, end)
    return "\n".join(distinct[i] for i in sorted(keep))


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


# What evidence.from_log looks for, fact by fact: the first pattern that matches gives the value (group 1).
# Every pattern was read off the real logs in tests/fixtures/logs (which log shows which: tests/test_doctor.py).
_V = r"(\d+\.\d+(?:\.\d+)?(?:\.post\d+|\.dev\d+|rc\d+)?(?:\+[\w.]+)?)"  # a version, with a local part
FACT_PATTERNS: dict[str, tuple[str, ...]] = {
    "vram": (
        r"(\d+(?:\.\d+)?) GiB total capacity",
        r"total capac\w* of (\d+(?:\.\d+)?) GiB",
    ),
    "cc": (
        r"Highest Compute Capability: \((\d+, \d+)\)",
        r"highest_compute_capability=\((\d+, \d+)\)",
        r"[Hh]ighest compute capability among GPUs detected: (\d+\.\d+)",
        r"[Cc]ompute [Cc]apability\D{0,12}(\d{1,2}\.\d)\b",
        r"CUDA Capability >= \d+\.\d+, but your device is of CUDA capability (\d+\.\d+)",
        r"COMPUTE_CAPABILITIES_PER_GPU = \['(\d+\.\d+)'",
    ),
    "sm": (r"capability sm_(\d+)",),
    "arch_list": (r"supports CUDA capabilities ((?:sm_\d+ ?)+)",),
    "bnb": (
        r"bitsandbytes v(\d+\.\d+\.\d+)",
        r"bitsandbytes-(\d+\.\d+\.\d+)",
        r"(?im)^[ \t>*`-]*bitsandbytes[ \t]+(\d+\.\d+(?:\.\d+)?(?:\.post\d+)?)[ \t\r`]*$",
        r"bitsandbytes==(\d+\.\d+\.\d+)",
        r"bitsandbytes version \W?(\d+\.\d+\.\d+)",
        r"bitsandbytes (\d\.\d+(?:\.\d+)?) ",
    ),
    "torch": (
        r"PyTorch: (\d+\.\d+\.\d+\S*)",
        r"(?im)^[ \t>*`-]*torch[ \t]*[:=]{0,2}[ \t]*(\d+\.\d+\.\d+(?:\+\w+)?)\b",
        r"PyTorch version: (\d+\.\d+\.\d+\S*)",
        r"torch==(\d+\.\d+\.\d+(?:\+\w+)?)",
        r"(?<!e\.g\. )[Tt]orch (?:version )?(\d+\.\d+\.\d+(?:\+\w+)?)",
        r"(?:running|install(?:ed)?) torch\W+(\d+\.\d+\.\d+(?:\+\w+)?)",
        r"pytorch:(\d+\.\d+\.\d+)-py",
    ),
    "torch_cuda": (
        r"PyTorch settings found: CUDA_VERSION=(\d{3})",
        r"cuda_version_string='(\d{3})'",
        r"\btorch\S*\+cu(\d{3})\b",
        r"\+cu(\d{3})\b",
        r"Detected PyTorch CUDA version:\s+(\d+\.\d+)",
        r"CUDA SETUP: Detected CUDA version (\d{3})",
        r"download\.pytorch\.org/whl/cu(\d{3})\b",
    ),
    "torch_cuda_dotted": (
        r"version that was used to compile\s+PyTorch \((\d+\.\d+)\)",
        r"CUDA used to build PyTorch: (\d+\.\d+)",
        r"torch\.version\.cuda\W+(\d+\.\d+)",
        r"pytorch:\d+\.\d+\.\d+-py[\d.]+-cuda(\d+\.\d+)",
    ),
    "toolkit_cuda": (
        r"The detected CUDA version \((\d+\.\d+)\)",
        r"Cuda compilation tools, release (\d+\.\d+)",
        r"nvcc[^\n]{0,40}release (\d+\.\d+)",
        r"\bCUDA version (\d+\.\d+)\b",
    ),
    "driver": (
        r"Driver Version: (\d{3}\.\d+(?:\.\d+)?)",
        r"NVIDIA-SMI (\d{3}\.\d+(?:\.\d+)?)",
        r"[Dd]river(?: version)?[ :]+(\d{3}\.\d{2,3}(?:\.\d+)?)\b",
    ),
    "driver_cuda": (r"CUDA Version: (\d+\.\d+)",),
    "driver_found": (r"driver on your system is too old \(found version (\d{4,5})\)",),
    "python": (
        r"Python version\W+(3\.\d+(?:\.\d+)?)",
        r"\bPython:? (3\.\d+\.\d+)",
        r"(?im)^[ \t*-]*python[ \t]+(3\.\d+(?:\.\d+)?)\b",
        r"\bPython (3\.\d+)\b",
        r"python(3\.\d+)[/\\]",
        r"\bPython3(\d+)[/\\]",
        r"\bcp3(\d+)-",
    ),
    "glibc": (r"with-glibc(\d\.\d+)",),
    "rocm": (r"\+rocm(\d+\.\d+)", r"(?i)\bROCm[ \t]+(\d+\.\d+)", r"\bAMD \((ROCm)\)"),
    "windows": (r"[A-Za-z]:\\|\.dll\b|WindowsPath|\[WinError|\bWindows 1[01]\b|\bwin 1[01]\b",),
    "macos": (r"not a mach-o file|/opt/homebrew/|/Users/\w+/|\bmacOS\b|\bDarwin\b|\bApple M[1-4]\b",),
    "wsl": (r"microsoft-standard|WSL2|\bWSL\b|Windows Subsystem for Linux|/usr/lib/wsl\b|/mnt/[a-z]/|wsl\.exe",),
    "aarch64": (r"(?i)aarch64|tegra|jetson|L4T|\bOrin\b",),
    "jetson": (r"(?i)tegra|jetson|\bL4T\b|\bOrin\b|JetPack",),
    "wanted_lib": (r"(libbitsandbytes_cuda\d{3}\w*(?:\.so|\.dll|\.dylib)?)",),
    "failed_lib": (
        r"(lib[\w.+-]*?\.so(?:\.\d+)*): cannot open shared object file",
        r"Could not find module '[^']*?([\w.+-]+\.dll)'",
        r"cannot find -l(cuda)\b",
        r"([\w.+-]+\.so(?:\.\d+)*): undefined symbol:",
        r"dlopen\([^,]*?([\w.+-]+\.so(?:\.\d+)*), \w+\)",
        r"(libcuda\.so)(?:\.1)?(?: not found|: cannot open)",
        r"not found \(required by [^)]*?([\w.+-]+\.so(?:\.\d+)*)\)",
    ),
    "failed_module": (
        r"DLL load failed while importing (\w+)",
        r"[/\\](\w+)\.cpython-\d+[\w-]*\.(?:so|pyd): undefined symbol",
        r"name '(\w+_ext)' is not defined",
        r"No module named '([\w.]+)'",
        r"cannot import name '\w+' from '([\w.]+)'",
    ),
    "symbol": (r"undefined symbol: (\w+)",),
    "built_against": (
        r"(?i)compiled against torch (\d+\.\d+\.\d+)",
        r"(?i)built (?:for|against) torch (\d+\.\d+\.\d+)",
    ),
    "building": (
        r"Failed building wheel for ([\w.-]+)",
        r"Building wheel for ([\w.-]+) \(",
        r"Failed to build ([\w.-]+)",
        r"building '([\w.-]+)' extension",
    ),
    "gpu": (
        r"\b((?:NVIDIA )?(?:GeForce )?(?:RTX|GTX) ?\d{3,4}(?: ?Ti| SUPER)?)\b",
        r"\b((?:NVIDIA |Tesla )?(?:[AH]100|H200|A10G?|A40|L40S?|L4|T4|V100|P100|P40|M40|K80)"
        r"(?:-SXM\d-\d+GB|-PCIE-\d+GB| \d+GB?)?)\b",
        r"(?i)\b(iris xe graphics|intel\(r\) [\w ]*graphics|radeon [\w ]+|RX \d{4,5}\s?XTX?)\b",
    ),
}
# Packages a log names with a version ("autoawq  0.2.4", "- transformers 4.37.2", "Transformers version: 4.41.2",
# "LLM Compressor version - 0.2.0", "trl version: 0.13.0.dev0"): spelt as pip lists them.
PACKAGE_NAMES = (
    "transformers",
    "accelerate",
    "peft",
    "trl",
    "optimum",
    "triton",
    "auto-gptq",
    "auto_gptq",
    "gptqmodel",
    "autoawq",
    "autoawq-kernels",
    "autoawq_kernels",
    "llmcompressor",
    "llm compressor",
    "compressed-tensors",
    "exllamav2",
    "bitsandbytes-windows",
)
PACKAGE_LINE = re.compile(
    r"(?im)^[ \t>*`\d.)-]*("
    + "|".join(re.escape(n) for n in PACKAGE_NAMES)
    + r")(?:[ \t]+version)?(?:[ \t]*[:=-]=?[ \t]*|[ \t]+)v?"
    + _V
    + r"[ \t\r`]*$"
)
PACKAGE_PIN = re.compile(r"(?i)\b(" + "|".join(re.escape(n) for n in PACKAGE_NAMES) + r")==" + _V)


def max_memory_for(vram_gib: float, headroom: float = 0.15) -> str:
    """A ``max_memory`` budget that leaves ``headroom`` of the card for the 4-bit conversion buffers."""
    return f"{int(vram_gib * (1 - headroom))}GiB"
