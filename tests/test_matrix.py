"""envbuilder/model/matrix.py: the loader and validator, fed one tiny broken overlay per error."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from envbuilder.cli.app import main
from envbuilder.model.errors import MatrixError
from envbuilder.model.matrix import BUILTIN_DIR, ENV_MATRIX_DIR, FILES, GPU_FILES, IDS_FILE, Matrix, load_matrix

FIXTURES = Path(__file__).parent / "fixtures" / "matrices"


def _overlay(name: str) -> Path:
    return FIXTURES / name


# Each row: the overlay directory, the message (exact; {dir} is the overlay's path), the hint (exact).
BROKEN = [
    pytest.param(
        "typo-key",
        "{dir}/gpus.toml: unknown key in 'arch[0].frist-cuda'",
        "did you mean 'first-cuda'?",
        id="typo-key",
    ),
    pytest.param(
        "typo-table",
        "{dir}/gpus.toml: unknown key in 'arc'",
        "did you mean 'arch'?",
        id="typo-table",
    ),
    pytest.param(
        "wrong-type",
        "{dir}/gpus.toml: unexpected type float (expected str) in 'arch[0].cc'",
        "write `cc` as a TOML string",
        id="wrong-type",
    ),
    pytest.param(
        "bad-version",
        "{dir}/torch.toml: not a version: '2.x' in 'release[0].version'",
        'write it like "2.11.0" or "12.8"',
        id="bad-version",
    ),
    pytest.param(
        "bad-range",
        "{dir}/torch.toml: not a version range: '>=2.9,<' in 'build[0].torch'",
        'write it like ">=2.4,<3"',
        id="bad-range",
    ),
    pytest.param(
        "unknown-platform",
        "{dir}/torch.toml: unknown value 'linux-x86-64' in 'build[0].platforms[0]'",
        "did you mean 'linux-x86_64'?",
        id="unknown-platform",
    ),
    pytest.param(
        "broken-xref",
        "{dir}/evidence.toml: run[0].torch: torch 2.99.0+cu128 is not a [[release]] in torch.toml",
        "add the release, or correct the version",
        id="broken-cross-reference",
    ),
    pytest.param(
        "bad-schema-version",
        "{dir}/meta.toml: schema-version 2 is not supported (this envbuilder reads 1)",
        "add `schema-version = 1` at the top, or upgrade envbuilder",
        id="bad-schema-version",
    ),
    pytest.param(
        "unknown-file",
        "{dir}/gpu.toml: not a matrix file",
        "did you mean gpus.toml?",
        id="unknown-file",
    ),
]


@pytest.mark.parametrize(("overlay", "message", "hint"), BROKEN)
def test_broken_overlay_names_file_key_path_and_fix(overlay: str, message: str, hint: str) -> None:
    directory = _overlay(overlay)
    with pytest.raises(MatrixError) as info:
        load_matrix([directory])
    assert info.value.message == message.format(dir=directory)
    assert info.value.hint == hint


def test_not_toml_names_the_file_and_the_line() -> None:
    directory = _overlay("not-toml")
    with pytest.raises(MatrixError) as info:
        load_matrix([directory])
    # The parser's own words follow the path; the line and column are what matter to the user.
    assert info.value.message.startswith(f"{directory}/quant.toml: not valid TOML: ")
    assert "line 3" in info.value.message
    assert info.value.hint == "fix the syntax at that line"


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(MatrixError) as info:
        load_matrix([missing])
    assert info.value.message == f"matrix directory {missing} does not exist"
    assert info.value.hint == f"create it, or unset {ENV_MATRIX_DIR} / drop --matrix-dir"


@pytest.mark.parametrize(
    ("row", "message", "hint"),
    [
        # A required key simply absent (no near spelling) says "missing" and how to add it.
        (
            'cc = "8.9"\nfirst-cuda = "11.8"\nsource = "x"\nconfidence = "confirmed"\n',
            "{path}: missing key in 'arch[0].name'",
            "add `name = ...` (see matrices/SCHEMA.md)",
        ),
        # An optional key misspelt is an unknown key with a near miss.
        (
            'cc = "8.9"\nname = "Ada"\nfirst-cuda = "11.8"\nsource = "x"\nconfidence = "confirmed"\n'
            'verifed = "yes"\n[arch.products]\ngeforce = ["RTX 4090"]\n',
            "{path}: unknown key in 'arch[0].verifed'",
            "did you mean 'verified'?",
        ),
        # A closed set of values.
        (
            'cc = "8.9"\nname = "Ada"\nfirst-cuda = "11.8"\nsource = "x"\nconfidence = "sure"\n',
            "{path}: unknown value 'sure' in 'arch[0].confidence'",
            "use one of: confirmed, unconfirmed",
        ),
        # Every fact carries its source.
        (
            'cc = "8.9"\nname = "Ada"\nfirst-cuda = "11.8"\nconfidence = "confirmed"\n',
            "{path}: missing key in 'arch[0].source'",
            "add `source = ...` (see matrices/SCHEMA.md)",
        ),
        # A list of strings holding a number.
        (
            'cc = "8.9"\nname = "Ada"\nfirst-cuda = "11.8"\nsource = "x"\nconfidence = "confirmed"\n'
            '[arch.products]\ngeforce = ["RTX 4090", 4090]\n',
            "{path}: unexpected type int (expected str) in 'arch[0].products.geforce[1]'",
            "quote it",
        ),
    ],
    ids=["missing-key", "typo-optional-key", "bad-choice", "no-source", "wrong-item-type"],
)
def test_row_errors_in_a_written_overlay(tmp_path: Path, row: str, message: str, hint: str) -> None:
    path = tmp_path / "gpus.toml"
    path.write_text(f"schema-version = 1\n[[arch]]\n{row}")
    with pytest.raises(MatrixError) as info:
        load_matrix([tmp_path])
    assert info.value.message == message.format(path=path)
    assert info.value.hint == hint


def test_overlay_replaces_a_row_by_key_and_adds_new_rows(matrix: Matrix) -> None:
    laid = load_matrix([_overlay("replace-row")])
    ada = laid.arch("8.9")
    assert ada is not None
    assert ada.name == "Ada Lovelace (overlay)"
    assert ada.products["geforce"] == ("RTX 4090", "RTX 4090 D")
    assert [a.cc for a in laid.archs].count("8.9") == 1  # replaced, not duplicated
    new = laid.arch("9.9")
    assert new is not None and new.name == "Futurewell"
    assert new.origin == f"{_overlay('replace-row')}/gpus.toml: arch[1]"
    assert len(laid.archs) == len(matrix.archs) + 1
    # Everything the overlay does not mention is the shipped matrix, untouched.
    assert laid.torch_builds == matrix.torch_builds
    assert laid.digest != matrix.digest


def test_environment_variable_and_argument_both_lay_overlays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_MATRIX_DIR, str(_overlay("replace-row")))
    assert load_matrix().arch("9.9") is not None
    # The argument comes after the variable, so its error is met as well.
    with pytest.raises(MatrixError, match=r"arch\[0\]\.frist-cuda"):
        load_matrix([_overlay("typo-key")])


def test_cli_matrix_dir_option_lays_an_overlay(capsys: pytest.CaptureFixture[str]) -> None:
    directory = _overlay("typo-key")
    assert main(["--matrix-dir", str(directory), "matrix", "check"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"envbuilder: {directory}/gpus.toml: unknown key in 'arch[0].frist-cuda'\nTIP did you mean 'first-cuda'?\n"
    )


def test_digest_changes_with_content_and_only_with_content(tmp_path: Path, matrix: Matrix) -> None:
    overlay = tmp_path / "o"
    shutil.copytree(_overlay("replace-row"), overlay)
    first = load_matrix([overlay]).digest
    assert load_matrix([overlay]).digest == first  # deterministic
    path = overlay / "gpus.toml"
    path.write_text(path.read_text().replace("Futurewell", "Futurewell II"))
    assert load_matrix([overlay]).digest not in {first, matrix.digest}


def test_shipped_matrix_loads_with_every_file(matrix: Matrix) -> None:
    assert [Path(f).name for f in matrix.files] == [*(f"{n}.toml" for n in (*FILES, *GPU_FILES)), IDS_FILE]
    assert all(Path(f).parent == BUILTIN_DIR for f in matrix.files)
    assert len(matrix.date) == 10 and matrix.date[4] == "-"


def _facts(m: Matrix) -> list[object]:
    return [
        *m.archs,
        *m.toolkits,
        *m.minor_compat,
        *m.torch_releases,
        *m.torch_builds,
        *m.bnb_releases,
        *m.bnb_loaders,
        *m.bnb_sass,
        *m.companions,
        *m.quant,
        *m.profiles,
        *m.evidence,
    ]


def test_every_shipped_row_has_source_and_confidence(matrix: Matrix) -> None:
    facts = _facts(matrix)
    assert len(facts) > 150
    missing = [f.origin for f in facts if not f.source.strip()]  # type: ignore[attr-defined]
    assert missing == []
    assert {f.confidence for f in facts} <= {"confirmed", "unconfirmed"}  # type: ignore[attr-defined]


def test_every_release_default_variant_has_a_build(matrix: Matrix) -> None:
    # The cross-check guarantees it at load; this pins the headline facts of DESIGN.md.
    defaults = {r.version: r.pypi["linux-x86_64"] for r in matrix.torch_releases}
    assert defaults["2.7.1"] == "cu126"
    assert defaults["2.10.0"] == "cu128"
    assert defaults["2.11.0"] == "cu130"
    for release in matrix.torch_releases:
        assert release.pypi["linux-x86_64"] in {b.variant for b in matrix.builds_of(release)}


_QUANTIZER = (
    'method = "gptq"\ntransformers = ">=5.14.1,<=5.24.0"\ncpu = "yes"\npaths = ["transformers/quantizers/x.py"]\n'
    'source = "x"\nconfidence = "confirmed"\n'
)
_SHA = "ff5ebedf9359f94bb63772b6380eba6e7104d010cbbb2cb82c788817ea7486f6"


@pytest.mark.parametrize(
    ("row", "message", "hint"),
    [
        # The wheel must be one whose release the row describes: a fact read from 5.13 is no fact about 5.14+.
        (
            _QUANTIZER + f'wheels = [{{ file = "transformers-5.13.0-py3-none-any.whl", sha256 = "{_SHA}" }}]\n',
            "{path}: 'transformers-5.13.0-py3-none-any.whl' is not a transformers wheel inside "
            "'<=5.24.0,>=5.14.1' in 'quantizer[0].wheels[0].file'",
            "name the wheel whose source was read: transformers-5.24.0-py3-none-any.whl",
        ),
        (
            _QUANTIZER + 'wheels = [{ file = "transformers-5.24.0-py3-none-any.whl", sha256 = "ff5e" }]\n',
            "{path}: not a sha256 hex digest in 'quantizer[0].wheels[0].sha256'",
            "write the 64 lowercase hex digits of `sha256sum`",
        ),
        (
            _QUANTIZER.replace('"gptq"', '"exl2"') + "wheels = []\n",
            "{path}: unknown value 'exl2' in 'quantizer[0].method'",
            "use one of: gptq, awq, compressed-tensors, bitsandbytes_4bit, bitsandbytes_8bit",
        ),
        (
            _QUANTIZER + 'wheels = ["transformers-5.24.0-py3-none-any.whl"]\n',
            "{path}: not a table in 'quantizer[0].wheels[0]'",
            'write { file = "transformers-...whl", sha256 = "..." }',
        ),
    ],
    ids=["wheel-outside-range", "bad-digest", "unknown-method", "wheel-not-a-table"],
)
def test_quantizer_row_errors(tmp_path: Path, row: str, message: str, hint: str) -> None:
    path = tmp_path / "quantizers.toml"
    path.write_text(f"schema-version = 1\n[[quantizer]]\n{row}")
    with pytest.raises(MatrixError) as info:
        load_matrix([tmp_path])
    assert info.value.message == message.format(path=path)
    assert info.value.hint == hint


def test_profile_formats_reject_an_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(
        'schema-version = 1\n[[profile]]\nname = "cpu"\ndescription = "x"\npackages = ["torch"]\ngpu = false\n'
        'source = "x"\nconfidence = "confirmed"\n[[profile.formats]]\nformat = "gguf"\nload = true\nmake = false\n'
        'source = "x"\nconfidence = "confirmed"\n'
    )
    with pytest.raises(MatrixError) as info:
        load_matrix([tmp_path])
    assert info.value.message == f"{path}: unknown value 'gguf' in 'profile[0].formats[0].format'"


def test_shipped_quantizers_and_formats(matrix: Matrix) -> None:
    methods = {"gptq", "awq", "compressed-tensors", "bitsandbytes_4bit", "bitsandbytes_8bit"}
    assert {q.method for q in matrix.quantizers if q.transformers.contains("5.24.0")} == methods
    for profile in matrix.profiles:  # each profile says, for every format, whether it loads and makes it
        assert {f.format for f in profile.formats} == methods, profile.name
