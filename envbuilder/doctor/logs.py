"""Reading pasted logs and tracebacks: quote the line that shows a problem, and pull out the facts they state.

Pure functions over text. Logs come from anywhere (``python -m bitsandbytes``, a transformers traceback, a
journal with timestamps), so matching is per line and tolerant of prefixes.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterable, Iterator

__all__ = [
    "BIG_LOG",
    "FACT_PATTERNS",
    "FACT_TRIGGERS",
    "MAX_LINE",
    "MAX_QUOTE",
    "PACKAGE_LINE",
    "PACKAGE_NAMES",
    "PACKAGE_PIN",
    "PIECE",
    "RESTRICT",
    "compiled",
    "finditer",
    "max_memory_for",
    "may_match",
    "quote",
    "reduced_log",
    "relevant_lines",
    "required",
    "search",
    "within_lines",
]

MAX_QUOTE = 300
# A log above this size is first reduced to the lines any rule can read (``relevant_lines``); the fixtures and
# the logs users paste are far below it and reach the rules whole.
BIG_LOG = 256 * 1024
# In such a log a line is read as its first MAX_LINE characters (a quote shows 300; a megabyte line of one error
# is no more telling than its start, and every rule's work on it is bounded).
MAX_LINE = 16 * 1024
# Past this many characters of distinct trigger lines the rules read the first and the last half of them (and
# the doctor says how many lines it skipped between): reading the facts and the rules cost about 0.2 s per MiB,
# and a log that holds megabytes of different stack errors is one failure repeated with changing numbers, whose
# first occurrences (the cause) and last lines (the fatal error) are what a diagnosis quotes. Real logs hold
# kilobytes of such lines (the largest of the corpus, tests/fixtures/logs, holds 200 lines). As big as BIG_LOG, so
# a reduced log is never reduced again.
TRIGGER_CAP = BIG_LOG
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

    A pattern none of whose required literals the text holds (``may_match``) is not searched at all. Otherwise
    it is searched at C speed over the whole text, each hit then checked on its own line, which gives the same
    first line as trying line by line (a Python loop over every line for each of forty patterns, the cost that
    made a 10 MB log take seconds). Text with other line separators than newline, and patterns whose meaning
    depends on what lies beyond a line, take the plain line-by-line way.
    """
    rx = compiled(pattern)
    scan = _scanned(text)
    if not scan.may(rx):
        return None
    linewise = bool(_LINEWISE.search(rx.pattern)) or scan.other_separators  # its pieces' lines have none either
    for piece in scan.pieces():  # in order: the first piece with a match holds the first line that matches
        if piece is scan or piece.may(rx):
            found = _quote_in(piece.candidates(rx, linewise=True), rx, linewise=linewise)
            if found is not None:
                return found
    return None


def _quote_in(text: str, rx: re.Pattern[str], *, linewise: bool) -> tuple[str, re.Match[str]] | None:
    if linewise:
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


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def compiled(pattern: str | re.Pattern[str]) -> re.Pattern[str]:
    """The compiled pattern, compiled once per process (and only when a text may hold a match)."""
    return _compiled(pattern) if isinstance(pattern, str) else pattern


# --------------------------------------------------------------------------- literals a match must hold

# Python's case-insensitive matching also matches four non-ASCII letters to ASCII ones (found by trying every
# code point against every ASCII letter; tests/test_fuzz.py checks the list): the Kelvin sign lowers
# to k; dotted capital I lowers to i and a combining dot; dotless i and long s lower to themselves.
_FOLDS = (("i\u0307", "i"), ("\u0131", "i"), ("\u017f", "s"))


def _folded(text: str) -> str:
    """``text`` in lower case, where every ASCII literal that case-insensitive re matches is found by ``in``."""
    low = text.lower()
    if not text.isascii():
        for old, new in _FOLDS:
            low = low.replace(old, new)
    return low


# Where a regular expression's source stops being plain characters, for ``required``.
_QUANTIFIER = re.compile(r"[*+?]|\{(\d*)(?:,(\d*))?\}")
_GLOBAL_FLAGS = re.compile(r"\(\?([aiLmsux]+)\)")


@functools.lru_cache(maxsize=1024)
def required(pattern: str, flags: int = 0) -> tuple[tuple[str, ...], bool] | None:
    """Literals of which every match of ``pattern`` holds at least one (the longest run of plain characters of
    each top-level branch), and whether case is ignored; None when no such literal is known (a branch of only
    classes and groups, verbose mode, a construct this small reader does not take apart).

    Read off the source text without re's parser (which costs most of a compile): a reader that says less than
    it could is safe, one that names a literal a match may lack is not (tests/test_fuzz.py proves every
    answer against re's own parse tree and against strings generated from each pattern)."""
    at = 0
    while (m := _GLOBAL_FLAGS.match(pattern, at)) is not None:  # (?im): the compiled flags say what they set
        flags |= re.IGNORECASE if "i" in m.group(1) else 0
        flags |= re.VERBOSE if "x" in m.group(1) else 0
        at = m.end()
    if flags & re.VERBOSE:
        return None
    icase = bool(flags & re.IGNORECASE)
    literals = _alternation(pattern, at, len(pattern))
    if not literals or not all(lit.isascii() for lit in literals):
        return None
    return tuple(dict.fromkeys(lit.lower() if icase else lit for lit in literals)), icase


def _alternation(p: str, start: int, end: int) -> tuple[str, ...] | None:
    """Literals of which every match of ``p[start:end]`` holds one: one set per branch, joined; None when a
    branch has none."""
    out: list[str] = []
    for s, e in _branches(p, start, end) or [(0, -1)]:
        if e < 0:
            return None
        got = _sequence(p, s, e)
        if not got:
            return None
        out.extend(got)
    return tuple(out)


def _branches(p: str, start: int, end: int) -> list[tuple[int, int]] | None:
    """(start, end) of each branch of the alternation at the top of ``p[start:end]``, or None on unbalanced text."""
    out, depth, i = [], 0, start
    while i < end:
        c = p[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i = _class_end(p, i)
            if i < 0:
                return None
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return None
        elif c == "|" and depth == 0:
            out.append((start, i))
            start = i + 1
        i += 1
    if depth or i != end:
        return None
    out.append((start, end))
    return out


def _class_end(p: str, i: int) -> int:
    """The index after the character class that opens at ``p[i]`` ("["), or -1."""
    j = i + 1
    if j < len(p) and p[j] == "^":
        j += 1
    if j < len(p) and p[j] == "]":
        j += 1
    while j < len(p):
        if p[j] == "\\":
            j += 2
            continue
        if p[j] == "]":
            return j + 1
        j += 1
    return -1


def _group_end(p: str, i: int) -> int:
    """The index after the group that opens at ``p[i]`` ("("), or -1."""
    depth, j = 0, i
    while j < len(p):
        c = p[j]
        if c == "\\":
            j += 2
            continue
        if c == "[":
            j = _class_end(p, j)
            if j < 0:
                return -1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return -1


def _group_body(p: str, i: int) -> int | None:
    """Where the body of the group at ``p[i]`` starts when every match of the group matches its body: plain,
    ``(?:``, named; None for lookarounds, scoped flags, conditionals, comments and back references."""
    if not p.startswith("?", i + 1):
        return i + 1
    if p.startswith("?:", i + 1):
        return i + 3
    if p.startswith("?P<", i + 1):
        close = p.find(">", i)
        return close + 1 if close > 0 else None
    return None


def _selective(found: tuple[str, ...] | None, other: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """The better of two literal sets: the one whose shortest literal is longer (it rules out more texts)."""
    if not other:
        return found
    if not found:
        return other
    return other if min(map(len, other)) > min(map(len, found)) else found


def _sequence(p: str, i: int, end: int) -> tuple[str, ...] | None:
    """The most selective literal set of one branch (no top-level ``|``): a run of plain characters and escaped
    punctuation, broken by anything else, or a required group's set. A character or group under a quantifier
    that allows zero is dropped; one under ``+`` or ``{n,}`` (n >= 1) counts and ends the run."""
    best: tuple[str, ...] | None = None
    run = ""
    while i < end:
        element = _element(p, i, end)
        if element is None:
            return None
        atom, inner, i = element
        q = _QUANTIFIER.match(p, i) if i < end else None
        if q is not None and q.end() <= end:
            low = 1 if q.group(0) == "+" else 0 if q.group(0) in "*?" else int(q.group(1) or 0)
            i = q.end() + (1 if q.end() < end and p[q.end()] in "?+" else 0)  # lazy or possessive: the same
            if atom is not None and low >= 1:
                run += atom
            best, run = _selective(best, (run,) if run else None), ""
            best = _selective(best, inner) if low >= 1 else best
        elif atom is None:
            best, run = _selective(_selective(best, (run,) if run else None), inner), ""
        else:
            run += atom
    return _selective(best, (run,) if run else None)


def _element(p: str, i: int, end: int) -> tuple[str | None, tuple[str, ...] | None, int] | None:
    """One element of a branch at ``p[i]``: (its literal character or None, a group's literal set or None,
    where the next element starts); None on what this reader does not take apart."""
    c = p[i]
    got: tuple[str | None, tuple[str, ...] | None, int] | None = None
    if c == "\\" and i + 1 < end:
        nxt = p[i + 1]
        got = (None if nxt.isalnum() or nxt == "_" else nxt), None, i + 2  # \d \b \1 \n: no literal
    elif c == "[":
        close = _class_end(p, i)
        got = None if close < 0 else (None, None, close)
    elif c == "(":
        close, body = _group_end(p, i), _group_body(p, i)
        if 0 <= close <= end:
            got = None, (_alternation(p, body, close - 1) if body is not None else None), close
    elif c in ".^$":
        got = None, None, i + 1
    elif c not in "\\*+?{)|":  # not a quantifier with nothing before it, a literal brace, stray syntax
        got = c, None, i + 1
    return got


@dataclasses.dataclass(slots=True)
class _Scanned:
    """What one text is known to hold: computed once per text, however many patterns ask."""

    text: str
    other_separators: bool
    folded: str | None = None
    found: dict[tuple[str, bool], bool] = dataclasses.field(default_factory=dict)
    lines: dict[tuple[tuple[str, ...], bool], str | None] = dataclasses.field(default_factory=dict)
    parts: list[_Scanned] | None = None

    def holds(self, literal: str, icase: bool) -> bool:
        key = (literal, icase)
        if key not in self.found:
            self.found[key] = literal in self._hay(icase)
        return self.found[key]

    def _hay(self, icase: bool) -> str:
        """The text, case-folded (once, on first need) where the pattern ignores case."""
        if not icase:
            return self.text
        if self.folded is None:
            self.folded = _folded(self.text)
        return self.folded

    def may(self, rx: re.Pattern[str]) -> bool:
        """False when the text holds none of the literals every match of ``rx`` holds: no search needed."""
        need = required(rx.pattern, rx.flags)
        return need is None or any(self.holds(lit, need[1]) for lit in need[0])

    def candidates(self, rx: re.Pattern[str], *, linewise: bool = False) -> str:
        """The lines of a big text that hold one of ``rx``'s literals (joined by newlines, in order), where
        every match ``rx`` has in the text lies within one of them; else the text itself. ``linewise``: the
        caller matches line by line (``quote``), so a pattern that could match across lines is restricted too."""
        need = required(rx.pattern, rx.flags)
        if need is None or len(self.text) < RESTRICT or not (linewise or within_lines(rx.pattern, rx.flags)):
            return self.text
        found = self.lines_with(*need)
        return self.text if found is None else found

    def pieces(self) -> list[_Scanned]:
        """The text in pieces cut at line ends, PIECE characters and doubling (itself when it is small)."""
        if self.parts is None:
            text, n = self.text, len(self.text)
            if n <= 2 * PIECE:
                self.parts = [self]
            else:
                self.parts, start, size = [], 0, PIECE
                while start < n:
                    end = text.find("\n", start + size)
                    end = n if end == -1 else end
                    self.parts.append(_Scanned(text=text[start:end], other_separators=self.other_separators))
                    start, size = end + 1, size * 2  # doubling: a few pieces, the first one small
        return self.parts

    def lines_with(self, literals: tuple[str, ...], icase: bool) -> str | None:
        """The lines that hold one of ``literals``, joined in order (None: case-folding moved positions)."""
        key = (literals, icase)
        if key not in self.lines:
            hay = self._hay(icase)
            if len(hay) != len(self.text):
                self.lines[key] = None
                return None
            spans: set[tuple[int, int]] = set()
            for lit in literals:
                at = hay.find(lit)
                while at != -1:
                    end = hay.find("\n", at)
                    end = len(hay) if end == -1 else end
                    spans.add((hay.rfind("\n", 0, at) + 1, end))
                    at = hay.find(lit, end)
            self.lines[key] = "\n".join(self.text[a:b] for a, b in sorted(spans))
        return self.lines[key]


_SCANNED: dict[int, _Scanned] = {}


def _scanned(text: str) -> _Scanned:
    """The scan of ``text``, kept for the few texts a diagnosis reads (the log; keyed by identity: the entry
    holds the text, so its id cannot be reused while it is kept)."""
    got = _SCANNED.get(id(text))
    if got is not None and got.text is text:
        return got
    got = _Scanned(text=text, other_separators=_OTHER_SEPARATORS.search(text) is not None)
    if len(text) >= 4096:
        if len(_SCANNED) >= 4:
            _SCANNED.pop(next(iter(_SCANNED)))
        _SCANNED[id(text)] = got
    return got


def search(text: str, pattern: str | re.Pattern[str]) -> re.Match[str] | None:
    """``pattern``'s first match in ``text``, for its groups (its positions may be those of a shorter text)."""
    rx = compiled(pattern)
    scan = _scanned(text)
    if not scan.may(rx):
        return None
    if not within_lines(rx.pattern, rx.flags):
        return rx.search(text)
    for piece in scan.pieces():
        if piece is scan or piece.may(rx):
            m = rx.search(piece.candidates(rx))
            if m is not None:
                return m
    return None


def finditer(text: str, pattern: str | re.Pattern[str]) -> Iterator[re.Match[str]]:
    """``pattern``'s matches in ``text`` in order, for their groups (positions may be those of a shorter text)."""
    rx = compiled(pattern)
    scan = _scanned(text)
    if not scan.may(rx):
        return
    if not within_lines(rx.pattern, rx.flags):
        yield from rx.finditer(text)
        return
    for piece in scan.pieces():
        if piece is scan or piece.may(rx):
            yield from rx.finditer(piece.candidates(rx))


# A text above twice this size is read in pieces (cut at line ends), the first about PIECE, each next one twice the
# one before: a pattern that matches early stops early, one that cannot match in a piece skips it, and a
# pattern that matches nowhere costs a few pieces' checks.
PIECE = 256 * 1024
# A text this big is searched by a pattern only in its lines that hold one of the pattern's literals.
RESTRICT = 64 * 1024


# Escapes that can match a newline or a character given by number.
_NEWLINE_ESCAPES = frozenset("sWDnxuUN0")


@functools.lru_cache(maxsize=1024)
def within_lines(pattern: str, flags: int = 0) -> bool:
    """Does every match of ``pattern`` lie within one line, the same whatever text surrounds that line? No
    construct that can match a newline (``\\s``, a negated class without ``\\n``, ``.`` under DOTALL, a
    character by number), no anchor to the text's start or end (``^`` ``$`` without MULTILINE, ``\\A``
    ``\\Z``). Conservative: a False only costs speed."""
    i = 0
    while (m := _GLOBAL_FLAGS.match(pattern, i)) is not None:
        flags |= re.DOTALL if "s" in m.group(1) else 0
        flags |= re.MULTILINE if "m" in m.group(1) else 0
        flags |= re.VERBOSE if "x" in m.group(1) else 0
        i = m.end()
    if flags & re.VERBOSE:
        return False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if pattern[i + 1 : i + 2] in _NEWLINE_ESCAPES or pattern[i + 1 : i + 2] in ("A", "Z"):
                return False
            i += 2
        elif c == "[":
            end = _class_end(pattern, i)
            body = pattern[i + 1 : end - 1] if end > 0 else ""
            if end < 0 or any("\\" + e in body for e in _NEWLINE_ESCAPES if e != "n"):
                return False
            if body.startswith("^") and "\\n" not in body:
                return False
            i = end
        elif (c == "." and flags & re.DOTALL) or (c in "^$" and not flags & re.MULTILINE):
            return False
        else:
            i += 1
    return True


def may_match(text: str, rx: re.Pattern[str]) -> bool:
    """False when ``text`` holds none of the literals every match of ``rx`` holds: no search needed."""
    return _scanned(text).may(rx)


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


def reduced_log(text: str, triggers: Iterable[str], cap: int = TRIGGER_CAP) -> tuple[str, int]:
    """``relevant_lines`` bounded: past ``cap`` characters, its first and last ``cap // 2`` characters' worth of
    whole lines; with the number of lines left out between them (0: nothing was)."""
    kept = relevant_lines(text, triggers)
    if len(kept) <= cap:
        return kept, 0
    half = cap // 2
    head_end = kept.rfind("\n", 0, half)
    tail_start = kept.find("\n", len(kept) - half)
    if head_end < 0 or tail_start < 0:  # a line longer than half the cap (only a cap below 2 * MAX_LINE)
        return kept[:half] + "\n" + kept[-half:], kept.count("\n", half, len(kept) - half) + 1
    skipped = kept.count("\n", head_end + 1, tail_start) + 1
    return kept[:head_end] + kept[tail_start:], skipped


def relevant_lines(text: str, triggers: Iterable[str]) -> str:
    """The distinct lines of ``text`` that hold a trigger (any case), in order of first appearance.

    One pass splits the log into lines and drops repeats (a training log repeats its progress and warning lines
    thousands of times; the rules quote the first line that matches, which a repeat never is), each line cut
    to MAX_LINE; one more pass, a single regular expression of all triggers as a trie (``_any_trigger``),
    picks out at C speed the lines that hold one, where a search per trigger cost a pass over the text each
    (127 passes). Every pattern a rule uses has a trigger on each line it can match (tested).
    """
    distinct = list(dict.fromkeys(text.splitlines()))
    if distinct and max(map(len, distinct)) > MAX_LINE:  # bounded work per line: /dev/zero is one 16 MiB line
        distinct = list(dict.fromkeys(line[:MAX_LINE] for line in distinct))
    trigger = _any_trigger(tuple(dict.fromkeys(t.lower() for t in triggers)))
    # One emoji or progress-bar block makes a joined text 2 or 4 bytes a character (and lower() and the search
    # that much slower): the ASCII lines (``isascii`` reads a flag, not the text) are searched joined, the
    # others one by one.
    wide = [line for line in distinct if not line.isascii()]
    narrow = "\n".join([line for line in distinct if line.isascii()] if wide else distinct)
    kept = _lines_with_a_trigger(narrow, trigger)
    if not wide:
        return "\n".join(kept)
    found = set(kept).union(line for line in wide if trigger.search(_lower(line)))
    return "\n".join([line for line in distinct if line in found])


def _lower(line: str) -> str:
    low = line.lower()
    return low if len(low) == len(line) else line.translate(_ASCII_LOWER)  # a few letters lower to two


def _lines_with_a_trigger(blob: str, trigger: re.Pattern[str]) -> list[str]:
    """The lines of an ASCII ``blob`` that hold a trigger, in order: a match runs on to its line's end, so
    the next one is on a later line."""
    low = blob.lower()
    rest = _to_line_end(trigger)
    return [blob[low.rfind("\n", 0, m.start()) + 1 : m.end()] for m in rest.finditer(low)]


@functools.lru_cache(maxsize=4)
def _to_line_end(trigger: re.Pattern[str]) -> re.Pattern[str]:
    return re.compile(f"(?:{trigger.pattern})[^\n]*")


@functools.lru_cache(maxsize=4)
def _any_trigger(triggers: tuple[str, ...]) -> re.Pattern[str]:
    """One of ``triggers``: the alternation as a trie, so that at each position re tries one branch per first
    character rather than every word (and skips positions no trigger starts with)."""
    return re.compile(_trie(sorted(triggers)))


def _trie(words: list[str]) -> str:
    """A regular expression matching any of ``words`` (none empty), shared prefixes factored out."""
    heads: dict[str, list[str]] = {}
    for w in words:
        heads.setdefault(w[0], []).append(w[1:])
    alternatives = []
    for head, tails in heads.items():
        if "" in tails:  # a word ends here: whatever follows, a trigger is held
            alternatives.append(re.escape(head))
        else:
            alternatives.append(re.escape(head) + _trie(tails))
    return alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"


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
