"""The fuzz suite (issue 11): every parser of outside input, and every flag of every subcommand, under hypothesis.

Property, everywhere: bad input gives one message and exit 2 (or 1 where the thing checked failed), never a
traceback (an exception other than EnvbuilderError escaping is one), and nothing is written outside a temporary
directory the test owns. Inputs are built from real ones (the shipped lock and matrix, the log corpus, nvidia-smi
outputs recorded on real hosts) mutated at random, and from random text and bytes.

Deterministic (``derandomize=True``, no example database) and bounded (``max_examples``), so CI runs it in about
a minute; ``FUZZ_EXAMPLES=N`` multiplies the examples for a longer local run. Each test counts the inputs it
tried and how they ended into ``FUZZ_REPORT`` (a JSON file, when set) for the README's reliability figures.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from envbuilder.model.errors import EnvbuilderError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
CPU_LOCK = ROOT / "dockerfiles" / "cpu" / "pylock.cpu.toml"
SCALE = int(os.environ.get("FUZZ_EXAMPLES", "1"))


def fuzz(n: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return settings(
        max_examples=n * SCALE,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --------------------------------------------------------------------------- the tally for the README

TALLY: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)


def _tally(suite: str, outcome: str) -> None:
    TALLY[suite][outcome] += 1


@atexit.register
def _write_report() -> None:
    path = os.environ.get("FUZZ_REPORT")
    if path and TALLY:
        Path(path).write_text(json.dumps({k: dict(v) for k, v in sorted(TALLY.items())}, indent=2) + "\n")


# --------------------------------------------------------------------------- strategies

# Text that reaches parsers: anything, with a bias toward the characters that break them.
NASTY = st.sampled_from(
    [
        "",
        " ",
        "\n",
        "\r\n",
        "\x00",
        "\ufeff",
        "'",
        '"',
        "\\",
        "$(id)",
        "`id`",
        ";",
        "|",
        "..",
        "/",
        "=",
        "[",
        "]",
        "{",
        "}",
        "#",
        "\u2028",
        "\udcff",
        "é",
        "İ",
        "ſ",
        "+",
        "@",
        ":",
        "*",
    ]
)
TEXT = st.one_of(
    st.text(max_size=60),
    st.lists(st.one_of(NASTY, st.text(max_size=8)), max_size=8).map("".join),
)
SCALARS = st.one_of(TEXT, st.integers(), st.floats(allow_nan=False), st.booleans())
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)),
    max_leaves=6,
)


def _mutations(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into a TOML document (keys and list indexes)."""
    yield path
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _mutations(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            yield from _mutations(v, (*path, i))


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, *rest = path
    copy = dict(doc) if isinstance(doc, dict) else list(doc)
    copy[head] = _set(copy[head], tuple(rest), value)
    return copy


def _dump(doc: Any) -> str | None:
    import tomlkit

    try:
        return tomlkit.dumps(_tomlable(doc))
    except Exception:  # noqa: BLE001  # a value TOML cannot hold: not an input a user could write
        return None


def _tomlable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _tomlable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tomlable(v) for v in value]
    return value


class Edit:
    """Changes to a real document (kept small in hypothesis' reports); ``text`` is the TOML they give."""

    def __init__(self, doc: dict[str, Any], changes: list[tuple[tuple[Any, ...], Any]]) -> None:
        self.doc, self.changes = doc, changes

    def __repr__(self) -> str:
        return f"Edit({self.changes!r})"

    @property
    def text(self) -> str:
        doc: Any = self.doc
        for path, value in self.changes:
            with contextlib.suppress(KeyError, IndexError, TypeError):
                doc = _set(doc, path, value)
        return _dump(doc) or ""


def _leaves(doc: Any) -> list[Any]:
    if isinstance(doc, dict):
        return [v for x in doc.values() for v in _leaves(x)]
    if isinstance(doc, list):
        return [v for x in doc[:3] for v in _leaves(x)] or [[]]
    return [doc]


@st.composite
def mutated(draw: st.DrawFn, doc: dict[str, Any], extra_keys: tuple[str, ...] = ()) -> Edit:
    """A real document with one to three values replaced (or keys added): by random values, or by values of
    the document itself put elsewhere (plausible, but contradicting: they reach the deeper checks)."""
    paths = list(_mutations(doc))
    own = st.sampled_from(_leaves(doc))
    changes = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths))
        if extra_keys and path and draw(st.booleans()):
            path = (*path[:-1], draw(st.sampled_from(extra_keys)))
        changes.append((path, draw(st.one_of(VALUES, own))))
    return Edit(doc, changes)


def text_of(value: Edit | str) -> str:
    return value.text if isinstance(value, Edit) else value


BYTES = st.one_of(st.binary(max_size=200), st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))


# --------------------------------------------------------------------------- the CLI, in-process and contained


class Outcome:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _nothing_written_outside: None) -> Path:
    """Every place envbuilder may write points into tmp_path; the network is a dead proxy."""
    for var in ("ENVBUILDER_HOME", "ENVBUILDER_CACHE", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("ENVBUILDER_MATRIX_DIR", raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def cli(argv: list[str], stdin: str = "") -> Outcome:
    """main(argv) with its output captured; a tool the unit tests block counts as input accepted."""
    from envbuilder.cli.app import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _stdin(stdin):
        try:
            code = main(argv)
        except RuntimeError as exc:
            if "is blocked in unit tests" not in str(exc):
                raise
            code = 0  # it got as far as starting uv/nvidia-smi/podman: the input was accepted
    return Outcome(code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def _stdin(text: str) -> Iterator[None]:
    saved = sys.stdin
    sys.stdin = io.StringIO(text)
    try:
        yield
    finally:
        sys.stdin = saved


def check(result: Outcome, suite: str, *, allowed: frozenset[int] = frozenset({0, 1, 2})) -> None:
    """The property: an allowed exit code, no traceback, and one message (with its TIP) for exit 2."""
    _tally(suite, f"exit {result.code}")
    assert result.code in allowed, (result.code, result.err[-2000:])
    # An exception of ours escaping main() fails the test by itself; stdout may quote a smoke stage's traceback
    # (the evidence of the thing checked), stderr never shows one.
    assert "Traceback" not in result.err
    if result.code == 2:
        err = re.sub(r"\x1b\[[0-9;]*m", "", result.err)  # a drawn --color=always colours the message
        messages = [ln for ln in err.splitlines() if ln.startswith("envbuilder: ")]
        assert len(messages) == 1, result.err
        assert "\nTIP " in err, result.err


def _git_status() -> str:
    import subprocess

    return subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True).stdout


@pytest.fixture
def _nothing_written_outside() -> Iterator[None]:
    """After a test's examples: the repository is as it was (nothing written beside the test or into the
    shipped data); everything else envbuilder may write to points into the sandbox."""
    before = _git_status()
    yield
    assert _git_status() == before


# --------------------------------------------------------------------------- the manifest


MANIFEST_DOC = {
    "sources": {"index-url": "https://mirror.example/simple", "find-links": ["wheels"], "offline": False},
    "env": [
        {"name": "train", "profile": "bnb", "gpu": ["sm_89"], "driver": "550.54.14", "python": "3.11"},
        {"name": "cpu", "profile": "cpu", "packages": ["datasets==3.2.0"]},
    ],
}
MANIFEST_KEYS = (
    "name",
    "profile",
    "gpu",
    "driver",
    "os",
    "python",
    "machine",
    "packages",
    "torch",
    "bnb",
    "offline",
    "find-links",
    "index-url",
    "ca-certs",
    "extra-index-url",
    "pytorch-index",
    "env",
    "sources",
)


@fuzz(80)
@given(text=st.one_of(mutated(MANIFEST_DOC, MANIFEST_KEYS), TEXT))
def test_manifest(text: Edit | str, sandbox: Path) -> None:
    path = sandbox / "envbuilder.toml"
    path.write_text(text_of(text), encoding="utf-8", errors="surrogatepass")
    for argv in (["lock", "--manifest", str(path), "--only", "nosuch-env"], ["ci", "--manifest", str(path)]):
        check(cli(argv), "manifest")


@fuzz(40)
@given(data=BYTES)
def test_manifest_bytes(data: bytes, sandbox: Path) -> None:
    path = sandbox / "envbuilder.toml"
    path.write_bytes(data)
    check(cli(["lock", "--manifest", str(path), "--only", "nosuch-env"]), "manifest")


def test_manifest_typed_sources_hold(tmp_path: Path) -> None:
    """Not random: the shapes the issue named, read as they are meant."""
    from envbuilder.edge.manifest import load_manifest

    path = tmp_path / "envbuilder.toml"
    path.write_text('[sources]\nfind-links = "wheels"\noffline = false\n[[env]]\nname = "a"\n')
    # a relative wheelhouse is read from the manifest's directory (issue 16: a run from a subdirectory finds it)
    assert load_manifest(path).sources == {"find-links": [str(tmp_path / "wheels")], "offline": False}


# --------------------------------------------------------------------------- locks


def _reseal(text: str) -> str:
    from envbuilder.model.lock import content_digest

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return text
    digest = content_digest(doc)
    return re.sub(r'lock-digest = "[^"\n]*"', f'lock-digest = "{digest}"', text, count=1)


def _small_lock() -> dict[str, Any]:
    """The shipped CPU lock cut to three packages (tomlkit writes 42 packages too slowly for hundreds of runs)."""
    doc = tomllib.loads(CPU_LOCK.read_text())
    doc["packages"] = [p for p in doc["packages"] if p["name"] in {"torch", "bitsandbytes", "peft"}]
    return doc


LOCK_DOC = _small_lock()


@fuzz(80)
@given(
    text=mutated(LOCK_DOC, ("marker", "url", "hashes", "sha256", "version", "name", "indexes", "pins")),
    sealed=st.booleans(),
)
def test_lock(text: Edit, sealed: bool, sandbox: Path) -> None:
    """A mutated lock, its digest recomputed half of the time (what a careless tool or an attacker would do)."""
    lock = sandbox / "pylock.cpu.toml"
    lock.write_text(_reseal(text.text) if sealed else text.text, encoding="utf-8", errors="surrogatepass")
    ctx = sandbox / "ctx"
    result = cli(["dockerfile", "--lock", str(lock), "--no-pip-config", "-o", str(ctx)])
    check(result, "lock")
    if result.code == 0:
        _generated_files_are_sound(ctx)
    if not sealed:
        return  # refused for its digest already; the recipe reads locks through the same parse_lock
    script = cli(["recipe", "wsl2", "--lock", str(lock), "-o", str(sandbox / "setup.sh")])
    check(script, "lock")
    if script.code == 0:
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", (sandbox / "setup.sh").read_text())


def _generated_files_are_sound(ctx: Path) -> None:
    """What a lock's values may not do to a generated file: add lines or control characters."""
    for path in [ctx / "Dockerfile", *(ctx / "requirements").glob("*.txt")]:
        text = path.read_text()
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", text), path
    for req in (ctx / "requirements").glob("*.txt"):
        # the guard's constraints (issue 15) pin without hashes, as a constraints file does; the rest is hashed
        pin = r"[A-Za-z0-9][A-Za-z0-9._-]*==\S+( ; .*)?"
        form = rf"^(#.*|{pin}|)$" if req.name == "envbuilder-constraints.txt" else (
            rf"^(#.*|{pin} \\|    --hash=sha256:[0-9a-f]{{64}}( \\)?|)$"
        )
        for line in req.read_text().splitlines():
            assert re.match(form, line), (req.name, line)


@fuzz(40)
@given(data=BYTES)
def test_lock_bytes(data: bytes, sandbox: Path) -> None:
    lock = sandbox / "pylock.x.toml"
    lock.write_bytes(data)
    check(cli(["dockerfile", "--lock", str(lock), "--no-pip-config", "-o", str(sandbox / "ctx")]), "lock")


# --------------------------------------------------------------------------- matrix overlays


def _matrix_file(name: str) -> dict[str, Any]:
    return tomllib.loads((ROOT / "matrices" / name).read_text())


MATRIX_FILES = sorted(p.name for p in (ROOT / "matrices").glob("*.toml"))


@fuzz(50)
@given(data=st.data())
def test_matrix_overlay(data: st.DataObject, sandbox: Path) -> None:
    name = data.draw(st.sampled_from(MATRIX_FILES))
    doc = _matrix_file(name)
    # Keep the overlay small: one row of each table, then mutate it.
    small = {k: (v[:1] if isinstance(v, list) else v) for k, v in doc.items()}
    text = text_of(data.draw(st.one_of(mutated(small), TEXT)))
    overlay = sandbox / "overlay"
    overlay.mkdir(exist_ok=True)
    (overlay / name).write_text(text, encoding="utf-8", errors="surrogatepass")
    check(cli(["--matrix-dir", str(overlay), "matrix", "check"]), "matrix overlay")
    check(cli(["--matrix-dir", str(overlay), "resolve", "--gpu", "sm_89", "--driver", "550.54.14"]), "matrix overlay")


@fuzz(30)
@given(data=BYTES)
def test_matrix_overlay_bytes(data: bytes, sandbox: Path) -> None:
    overlay = sandbox / "overlay"
    overlay.mkdir(exist_ok=True)
    (overlay / "torch.toml").write_bytes(data)
    check(cli(["--matrix-dir", str(overlay), "matrix", "check"]), "matrix overlay")


# --------------------------------------------------------------------------- caches


JSONISH = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)),
    max_leaves=8,
)


@fuzz(100)
@given(entry=JSONISH, raw=st.one_of(st.none(), BYTES))
def test_reachability_cache(entry: Any, raw: bytes | None, tmp_path: Path) -> None:
    from envbuilder.edge.settings import Settings
    from envbuilder.edge.sources import _reach_cache

    url = "http://127.0.0.1:9/simple"
    path = tmp_path / "reachable.json"
    if raw is None:
        path.write_text(json.dumps({url: entry}))
    else:
        path.write_bytes(raw)
    cache = _reach_cache(Settings(cache_dir=tmp_path))
    assert cache.get(url) in {None, True, False}
    cache.put(url, True)
    assert cache.get(url) is True
    _tally("caches", "handled")


@fuzz(100)
@given(entry=JSONISH, raw=st.one_of(st.none(), BYTES))
def test_pythons_cache(entry: Any, raw: bytes | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from envbuilder.edge.detect import _ProbeCache

    monkeypatch.setenv("ENVBUILDER_CACHE", str(tmp_path))
    path = tmp_path / "pythons.json"
    if raw is None:
        path.write_text(json.dumps({sys.executable: entry}))
    else:
        path.write_bytes(raw)
    cache = _ProbeCache.load()
    got = cache.get(sys.executable)
    assert got is None or isinstance(got, str)
    _tally("caches", "handled")


# uv's part of the shipped CPU lock (what a cached resolution holds), and the plan it resolves.
RESOLUTION = CPU_LOCK.read_text().split("[tool.envbuilder]", 1)[0]
TORCH_WHEEL = "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"


@fuzz(80)
@given(
    text=st.one_of(
        mutated(tomllib.loads(RESOLUTION), ("url", "marker", "version", "sha256")),
        TEXT,
        BYTES.map(lambda b: b.decode("latin-1")),
    )
)
def test_cached_resolution(text: Edit | str, matrix: Any) -> None:
    """A cached resolution is judged like user input: a reason to discard it, or None; never an exception."""
    from envbuilder.edge.settings import Settings
    from envbuilder.jobs.builder import resolution_problem
    from envbuilder.model.target import build_target
    from envbuilder.resolve import Sources, resolve

    text = text_of(text)
    sources = Sources(pytorch_index=None, wheelhouse=(TORCH_WHEEL,), wheelhouse_dirs=("/opt/wheels",))
    plan = resolve(build_target(matrix, gpus=(), pythons=("3.11",), profile="cpu", torch="2.13.0"), matrix, sources)
    settings = Settings(pytorch_index=matrix.pytorch_index)  # the CLI's default sources: PyPI and the PyTorch index
    assert resolution_problem(RESOLUTION, plan=plan, settings=settings, indexes=()) is None  # type: ignore[arg-type]
    problem = resolution_problem(text, plan=plan, settings=settings, indexes=())  # type: ignore[arg-type]
    assert problem is None or isinstance(problem, str)
    _tally("caches", "discarded" if problem else "accepted")


# --------------------------------------------------------------------------- host text: nvidia-smi, /proc, pip


SMI_SAMPLES = [p.read_text(errors="replace") for p in sorted(FIXTURES.rglob("*smi*")) if p.is_file()][:20]


@fuzz(200)
@given(
    text=st.one_of(
        TEXT,
        st.sampled_from(SMI_SAMPLES or [""]).flatmap(
            lambda s: st.tuples(st.integers(0, max(len(s), 1)), TEXT).map(lambda t: s[: t[0]] + t[1] + s[t[0] :])
        ),
    )
)
def test_host_text_parsers(text: str) -> None:
    from envbuilder.edge import detect

    gpus = detect.parse_nvidia_smi_csv(text)
    assert all(isinstance(g.name, str) for g in gpus)
    detect.parse_nvidia_smi_csv_driver(text)
    detect.parse_nvidia_smi_xml(text)
    detect.parse_nvidia_smi_banner(text)
    detect.parse_proc_driver_version(text)
    detect.parse_glibc(text)
    detect.parse_ldconfig_libcuda(text)
    detect.parse_python_probe(text, "/x")
    detect.wsl_version(text, text, [text])
    _tally("host text", "handled")


@fuzz(150)
@given(
    texts=st.lists(
        st.one_of(
            TEXT,
            st.lists(
                st.one_of(
                    NASTY,
                    st.sampled_from(
                        [
                            "[global]\n",
                            "[install]\n",
                            "index-url = ",
                            "find-links = ",
                            "cert = ",
                            "extra-index-url = ",
                            "\n",
                            "https://u:p@h/simple",
                            "/opt/wheels",
                            "%(x)s",
                        ]
                    ),
                ),
                max_size=10,
            ).map("".join),
        ),
        max_size=3,
    ),
    env=st.dictionaries(
        st.sampled_from(["PIP_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT", "PIP_EXTRA_INDEX_URL"]), TEXT, max_size=4
    ),
)
def test_pip_configuration(texts: list[str], env: dict[str, str]) -> None:
    from envbuilder.edge.settings import Settings
    from envbuilder.edge.sources import apply_pip_config, parse_pip_config, parse_pip_ini

    config = parse_pip_ini(texts, env)
    settings = apply_pip_config(Settings(), config)
    for note in settings.notes:
        assert ":p@" not in note  # credentials never reach the notes printed on the console
    parse_pip_config("\n".join(texts))
    _tally("pip configuration", "handled")


# --------------------------------------------------------------------------- pasted logs


LOGS = sorted((FIXTURES / "logs").glob("*.txt"))
LOG_LINES = [ln for p in LOGS for ln in p.read_text(errors="replace").splitlines() if ln.strip()]


@fuzz(120)
@given(lines=st.lists(st.one_of(st.sampled_from(LOG_LINES), TEXT), max_size=30))
def test_pasted_logs(lines: list[str], matrix: Any) -> None:
    from envbuilder.doctor import Context, diagnose

    findings = diagnose(Context(matrix=matrix, log="\n".join(lines)))
    assert all(f.severity in {"FAIL", "WARN", "INFO"} for f in findings)
    _tally("pasted logs", "handled")


@fuzz(30)
@given(data=BYTES)
def test_pasted_log_bytes(data: bytes, sandbox: Path) -> None:
    path = sandbox / "log.txt"
    path.write_bytes(data)
    check(cli(["doctor", "--log", str(path)]), "pasted logs")
    check(cli(["doctor", "--log", "-"], stdin=data.decode("utf-8", "replace")), "pasted logs")


def _patterns() -> list[re.Pattern[str]]:
    """Every pattern the doctor matches log text with: module constants of every rule module and the verdict,
    the log facts, and (observed while diagnosing the whole corpus) those written inline in a rule."""
    import importlib

    from envbuilder.doctor import RULE_MODULES, Context, diagnose, logs, verdict
    from envbuilder.model.matrix import load_matrix

    modules = [importlib.import_module(name) for name in RULE_MODULES]
    found: dict[str, re.Pattern[str]] = {}
    for module in modules:
        for value in vars(module).values():
            if isinstance(value, re.Pattern):
                found[value.pattern] = value
    for patterns in logs.FACT_PATTERNS.values():
        for p in patterns:
            found[p] = re.compile(p)
    for rx in (logs.PACKAGE_LINE, logs.PACKAGE_PIN):
        found[rx.pattern] = rx
    real = logs.quote

    def spy(text: str, pattern: str | re.Pattern[str]) -> Any:
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        found.setdefault(rx.pattern, rx)
        return real(text, pattern)

    saved = [(m, m.quote) for m in (*modules, verdict) if hasattr(m, "quote")]
    for m, _ in saved:
        m.quote = spy
    try:
        matrix = load_matrix()
        for path in LOGS:
            diagnose(Context(matrix=matrix, log=path.read_text(errors="replace")))
    finally:
        for m, q in saved:
            m.quote = q
    return list(found.values())


PATTERNS = _patterns()


@pytest.mark.parametrize("rx", PATTERNS, ids=[p.pattern[:40] for p in PATTERNS])
@fuzz(25)
@given(data=st.data())
def test_every_log_pattern_has_a_trigger(rx: re.Pattern[str], data: st.DataObject) -> None:
    """A big log reaches the rules reduced to the lines that hold a trigger word: every text a pattern matches
    must hold one, or that rule would go blind on big logs (doctor.logs.relevant_lines)."""
    from envbuilder.doctor import load_triggers

    # ASCII: the triggers are ASCII words, and a log's non-ASCII look-alikes of them (a long s) are no errors.
    text = data.draw(st.from_regex(rx, fullmatch=True, alphabet=st.characters(codec="ascii")))
    assert any(t in text.lower() for t in load_triggers()), (rx.pattern, text)
    _tally("log triggers", "handled")


@pytest.mark.parametrize("rx", PATTERNS, ids=[p.pattern[:40] for p in PATTERNS])
@fuzz(25)
@given(data=st.data())
def test_every_match_holds_a_literal_the_scanner_names(rx: re.Pattern[str], data: st.DataObject) -> None:
    """doctor.logs.required reads, off a pattern's source, literals one of which every match holds (the
    doctor skips a pattern whose literals a log lacks, and searches a big log only in the lines that hold
    them); within_lines says a match never crosses a line. Any Unicode text: case-insensitive re matches a
    long s to "s", which the scanner's folding must see too."""
    from envbuilder.doctor.logs import _folded, required, within_lines

    text = data.draw(st.from_regex(rx, fullmatch=True))
    need = required(rx.pattern, rx.flags)
    if need is not None:
        literals, icase = need
        assert any(lit in (_folded(text) if icase else text) for lit in literals), (rx.pattern, text, need)
    if within_lines(rx.pattern, rx.flags):
        assert "\n" not in text, (rx.pattern, text)
    _tally("log triggers", "handled")


def test_the_scanner_knows_every_letter_case_folding_matches_to_ascii() -> None:
    """Every code point that case-insensitive re matches to an ASCII letter is found by ``in`` in the folded
    text (the table in doctor.logs: four such letters in Unicode)."""
    import string
    import sys

    from envbuilder.doctor.logs import _folded

    any_letter = re.compile("(?i)[a-z]")
    for cp in range(128, sys.maxunicode + 1):
        c = chr(cp)
        if 0xD800 <= cp <= 0xDFFF or not any_letter.fullmatch(c):
            continue
        letter = next(a for a in string.ascii_lowercase if re.fullmatch("(?i)" + a, c))
        assert letter in _folded(f"x{c}y") and f"x{letter}y" in _folded(f"x{c}y"), hex(cp)


@pytest.mark.parametrize(
    ("pattern", "literals"),
    [
        (r"too old \(found version (\d+)\)", ("too old (found version ",)),
        (r"ab+cd", ("ab",)),  # the b under + counts once and ends the run
        (r"abc?de", ("ab",)),  # the c is optional: "ab" and "de" are each required
        (r"x{2,}yz", ("yz",)),
        (r"x{0,3}yz", ("yz",)),
        (r"(?i)Foo|bar", ("foo", "bar")),
        (r"(ab|cd)?efg", ("efg",)),
        (r"(?:RTX|GTX) ?\d{3}", ("RTX", "GTX")),
        (r"(?<!e\.g\. )[Tt]orch (\d)", ("orch ",)),
        (r"x(?i:abc)", ("x",)),  # scoped flags: the group is not read
        (r"a|\d+", None),  # one branch holds no literal: nothing is required
        (r"[a-z]+\d", None),
        (r"(?x)a b c", None),  # verbose mode: whitespace is not literal
        (r"a{", None),  # a literal brace: not taken apart
    ],
)
def test_required_literals(pattern: str, literals: tuple[str, ...] | None) -> None:
    from envbuilder.doctor.logs import required

    got = required(pattern, re.compile(pattern).flags)
    assert (got[0] if got else None) == literals


@fuzz(60)
@given(lines=st.lists(st.one_of(st.sampled_from(LOG_LINES), TEXT), min_size=1, max_size=12), data=st.data())
def test_a_big_text_searched_in_its_candidate_lines_gives_what_a_whole_search_gives(
    lines: list[str], data: st.DataObject
) -> None:
    """Past doctor.logs.RESTRICT a pattern searches only the lines holding its literals, and past twice PIECE
    piece by piece: the same first line (quote), the same first match's groups (search) and the same matches'
    groups (finditer) as searching it all. The log's lines at the start, in the second piece and at the end."""
    from envbuilder.doctor.logs import PIECE, _quote_linewise, finditer, quote, search

    filler = "\n".join(f"step {i}: loss 0.{i:04d}" for i in range(PIECE // 20))
    text = "\n".join([*lines, filler, *reversed(lines), filler, filler, *lines])
    rx = data.draw(st.sampled_from(PATTERNS))
    fast, slow = quote(text, rx), _quote_linewise(text, rx)
    assert (fast and (fast[0], fast[1].groups())) == (slow and (slow[0], slow[1].groups()))
    whole = rx.search(text)
    got = search(text, rx)
    assert (got and got.groups()) == (whole and whole.groups())
    assert [m.groups() for m in finditer(text, rx)] == [m.groups() for m in rx.finditer(text)]
    _tally("log triggers", "handled")


@fuzz(150)
@given(lines=st.lists(st.one_of(st.sampled_from(LOG_LINES), TEXT), max_size=12), data=st.data())
def test_quote_finds_the_line_a_line_by_line_search_finds(lines: list[str], data: st.DataObject) -> None:
    """quote searches the whole text at once and checks each hit on its line: the same first line and match as
    trying every line in turn, for every pattern the rules use."""
    from envbuilder.doctor.logs import _quote_linewise, quote

    text = "\n".join(lines)
    rx = data.draw(st.sampled_from(PATTERNS))
    fast, slow = quote(text, rx), _quote_linewise(text, rx)
    assert (fast and (fast[0], fast[1].span(), fast[1].groups())) == (
        slow and (slow[0], slow[1].span(), slow[1].groups())
    )
    _tally("log triggers", "handled")


@pytest.mark.parametrize("path", LOGS, ids=[p.stem[:40] for p in LOGS])
def test_a_big_log_gives_the_findings_of_its_small_self(path: Path, matrix: Any) -> None:
    """The reduction is invisible: a corpus log, repeated and padded past the size that triggers it, gives the
    same findings as the log itself."""
    from envbuilder.doctor import Context, diagnose
    from envbuilder.doctor.logs import BIG_LOG

    text = path.read_text(errors="replace")
    small = diagnose(Context(matrix=matrix, log=text))
    padding = "\n".join(f"step {i}: loss 0.{i:04d}" for i in range(BIG_LOG // 20))
    big = diagnose(Context(matrix=matrix, log="\n".join([text, padding, text])))
    assert [(f.rule, f.seen) for f in big] == [(f.rule, f.seen) for f in small]


# --------------------------------------------------------------------------- every flag of every subcommand


def _subcommands() -> dict[str, list[Any]]:
    """{'resolve': [actions...], 'recipe wsl2': [...], ...} from the real parser."""
    import argparse

    from envbuilder.cli.app import build_parser

    out: dict[str, list[Any]] = {}

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out[" ".join(prefix)] = [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]
            return
        for name, sub in subs[0].choices.items():
            walk(sub, [*prefix, name])

    walk(build_parser(), [])
    return out


SUBCOMMANDS = _subcommands()
# Values that look like what each option wants, so that a run gets past argparse and into envbuilder's own checks.
PLAUSIBLE = {
    "--gpu": ["sm_89", "8.9", "RTX 4090", "cpu", "auto", "sm_75,sm_89", "RTX 6000", "H100"],
    "--driver": ["550.54.14", "580.65.06", "576.02", "abc"],
    "--python": ["3.11", "3.12", "2.7", "3"],
    "--profile": ["bnb", "gptq", "awq", "cpu", "qlora"],
    "--os": ["linux", "wsl2", "windows", "macos"],
    "--machine": ["x86_64", "aarch64", "riscv"],
    "--torch": ["2.10.0", ">=2.8,<2.12", "latest"],
    "--bnb": ["0.49.2", ">=0.45"],
    "--lock": [str(CPU_LOCK), "pylock.none.toml"],
    "--name": ["train", "a b", "../x", ""],
    "--index-url": ["https://u:p@mirror.example/simple", "not a url"],
    "--pytorch-index": ["http://127.0.0.1:9/whl", "file:///nonexistent"],
    "--engine": ["podman", "docker"],
    "--base-image": ["python:3.11-slim", "a b"],
}
NEVER = {"--help", "--version"}  # argparse's own exits are not envbuilder's to test here


@st.composite
def argvs(draw: st.DrawFn, command: str) -> list[str]:
    argv = command.split()
    for action in SUBCOMMANDS[command]:
        flags = [f for f in action.option_strings if f.startswith("--") and f not in NEVER]
        if action.option_strings and not flags:
            continue
        if not draw(st.integers(0, 3)) == 0:
            continue
        values = st.one_of(st.sampled_from(PLAUSIBLE.get(flags[0] if flags else "", [""]) or [""]), TEXT)
        if not action.option_strings:  # a positional
            if action.nargs in ("?", "*", argparse_remainder()):
                argv += draw(st.lists(values, max_size=2))
            else:
                argv.append(draw(values))
        elif action.nargs == 0:
            argv.append(flags[0])
        elif action.choices:
            argv.append(f"{flags[0]}={draw(st.one_of(st.sampled_from(sorted(action.choices)), TEXT))}")
        else:
            argv.append(f"{flags[0]}={draw(values)}")
    # The cheap way out of a long real run: never let a fuzzed create start building. smoke and doctor with no
    # target examine this very interpreter (seconds each; tests/test_smoke.py and test_doctor.py cover it).
    if argv[0] == "create":
        argv.append("--dry-run")
    if argv[0] == "smoke" and not any(a.startswith(("--env", "--python")) for a in argv):
        argv.append("--python=/nonexistent/python3")
    if argv[0] == "doctor" and not any(a.startswith(("--env", "--python", "--log")) for a in argv):
        argv.append("--log=-")
    return argv


def argparse_remainder() -> str:
    import argparse

    return argparse.REMAINDER


# Subcommands that start processes of the user's choosing or reach PyPI are driven with a safe subset.
HOST_RUNNERS = {"run", "shell"}


@pytest.fixture
def matrix_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped matrix read once for the many runs below (its reading is fuzzed by test_matrix_overlay)."""
    import functools

    from envbuilder.model import matrix

    monkeypatch.setattr(matrix, "load_matrix", functools.lru_cache(maxsize=4)(matrix.load_matrix))


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
@fuzz(20)
@given(data=st.data())
def test_every_flag(command: str, data: st.DataObject, sandbox: Path, matrix_once: None) -> None:
    argv = data.draw(argvs(command))
    if argv[0] in HOST_RUNNERS:
        argv = [argv[0], *[a for a in argv[1:] if not a.startswith("--path")][:1], "--", "true"]
    result = cli(argv)
    check(result, f"flags: {command}", allowed=frozenset({0, 1, 2}))


def test_the_readme_counts_the_leaves_the_parser_has() -> None:
    """The README's fuzz table names how many subcommands (leaves of the parser) test_every_flag drives."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"the (\d+) leaves of the real parser, (\d+) examples each[^|]*\| (\d+) \|", readme)
    assert found, "the README's fuzz table lost its row for every option of every subcommand"
    leaves, examples, inputs = map(int, found.groups())
    assert leaves == len(SUBCOMMANDS), sorted(SUBCOMMANDS)
    assert inputs == leaves * examples


def test_the_fuzzed_parser_covers_every_subcommand() -> None:
    """Guard: a subcommand added later is fuzzed too (the strategy reads the real parser)."""
    names = {c.split()[0] for c in SUBCOMMANDS}
    assert {
        "detect",
        "resolve",
        "create",
        "lock",
        "sync",
        "list",
        "remove",
        "run",
        "shell",
        "smoke",
        "doctor",
        "dockerfile",
        "build",
        "ci",
        "recipe",
        "matrix",
    } <= names
