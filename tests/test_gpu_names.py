"""GPU names and PCI ids against the product table built from the PCI ID database (envbuilder/model/gpu_table.py,
envbuilder/model/pci_ids.py, the --gpu parsing of envbuilder/model/target.py and `matrix refresh --pci-ids`).

The names are real: as users' machines printed them (tests/fixtures/gpu-names/README.md cites each), and as
NVIDIA's own driver names each PCI device. Each must map to NVIDIA's compute capability, or be refused.
"""

from __future__ import annotations

import argparse
import csv
import functools
import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from envbuilder.cli._common import target_from_args
from envbuilder.cli.app import main
from envbuilder.edge import detect, nvidia
from envbuilder.edge.detect import Host
from envbuilder.edge.pci_source import read_pci_ids
from envbuilder.model import gpu_table, pci_ids
from envbuilder.model.errors import SourceError, TargetError
from envbuilder.model.gpu_table import alternatives, chip_rule, is_gpu, tokens
from envbuilder.model.matrix import BUILTIN_DIR, Matrix, load_matrix
from envbuilder.model.target import gpu_from_pci_id, parse_gpu

NAMES = Path(__file__).parent / "fixtures" / "gpu-names"
PCI_IDS = Path(__file__).parent / "fixtures" / "pci-ids" / "pci.ids"
H100 = Path(__file__).parent / "fixtures" / "h100-cu130"


def _rows(name: str) -> list[dict[str, str]]:
    with (NAMES / name).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


REAL = _rows("names.csv")
REFUSED = _rows("refused.csv")
DRIVER = _rows("nvidia-driver-595.45.04.csv")


# --------------------------------------------------------------------------- real names


def test_the_real_names_are_many_cited_and_include_the_ones_that_failed() -> None:
    assert len(REAL) >= 150
    assert len({r["name"] for r in REAL}) == len(REAL)
    assert all(re.match(r"https://github\.com/\S+$", r["source"]) for r in REAL)
    assert {r["basis"] for r in REAL} <= {"nvidia", "device", "die"}
    # "device": the product is on none of NVIDIA's lists, so the cc the source printed from the device is it.
    assert all(r["reported_cc"] == r["expected_cc"] for r in REAL if r["basis"] == "device")
    # Issue 19: refused as "no GPU of that name" by the hand-typed table.
    failed = {
        "NVIDIA GeForce RTX 4050 Laptop GPU",
        "NVIDIA GeForce RTX 2050",
        "NVIDIA RTX A1000 Laptop GPU",
        "NVIDIA RTX A500 Laptop GPU",
        "NVIDIA RTX A400",
        "NVIDIA RTX 3500 Ada Generation Laptop GPU",
        "NVIDIA RTX 5880 Ada Generation",
        "NVIDIA RTX PRO 500 Blackwell Generation Laptop GPU",
        "NVIDIA GeForce MX550",
        "NVIDIA T4G",
    }
    assert failed <= {r["name"] for r in REAL}


@pytest.mark.parametrize("row", REAL, ids=[r["name"] for r in REAL])
def test_real_name_maps_to_nvidias_compute_capability(matrix: Matrix, row: dict[str, str]) -> None:
    assert parse_gpu(row["name"], matrix).cc == row["expected_cc"]


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("amd", "ROCm/AMD GPUs are not supported"),
        ("jetson", "Jetson (aarch64 + JetPack) is not supported"),
        ("unknown", "no GPU of that name in the matrix"),
    ],
)
def test_real_names_that_are_refused_with_the_reason(matrix: Matrix, reason: str, message: str) -> None:
    rows = [r for r in REFUSED if r["reason"] == reason]
    assert rows
    for row in rows:
        with pytest.raises(TargetError) as info:
            parse_gpu(row["name"], matrix)
        assert message in info.value.message, row["name"]


# Names in NVIDIA's table that the PCI database does not give (Matrox-branded Turing boards, a DGX display
# adapter, a bare board number): refused as unknown, which is never a wrong compute capability.
DRIVER_NAMES_REFUSED = {"Matrox D-Series D2450", "Matrox D-Series D2480", "NVIDIA DGX Display", "NVIDIA PG509-210"}


def test_nvidias_own_names_map_like_their_pci_ids(matrix: Matrix) -> None:
    """Every (PCI device, name) of NVIDIA's driver table: the name gives the device's compute capability."""
    assert len(DRIVER) == 825
    wrong, refused = [], set()
    for row in DRIVER:
        by_id = gpu_from_pci_id("10de", row["device"], matrix).cc
        try:
            by_name = parse_gpu(row["name"], matrix).cc
        except TargetError:
            refused.add(row["name"])
            continue
        if by_name != by_id:
            wrong.append((row["device"], row["name"], by_id, by_name))
    assert wrong == []
    assert refused == DRIVER_NAMES_REFUSED


# --------------------------------------------------------------------------- the pure pieces, in tables


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NVIDIA GeForce RTX 4050 Laptop GPU", ["rtx", "4050", "mobile"]),
        ("GeForce RTX 4050 Max-Q", ["rtx", "4050", "mobile"]),  # Max-Q, Mobile and Laptop are one thing
        ("NVIDIA A100-SXM4-80GB", ["a100"]),  # form factor and memory size dropped
        ("NVIDIA H100 80GB HBM3", ["h100"]),
        ("NVIDIA GH200 144G HBM3e", ["gh200"]),
        ("NVIDIA A40-48Q", ["a40"]),  # vGPU profile
        ("GRID RTX8000P-6Q", ["rtx", "8000"]),  # GRID board name
        ("NVIDIA GeForce RTX 2080 Ti Rev. A", ["rtx", "2080", "ti"]),
        ("NVIDIA GeForce RTX 3050Ti Laptop GPU", ["rtx", "3050", "ti", "mobile"]),
        ("NVIDIA TITAN X (Pascal)", ["titan", "x", "pascal"]),
        ("NVIDIA GeForce RTX 3060 Lite Hash Rate", ["rtx", "3060"]),
        ("NVIDIA RTX 3500 Ada Generation Laptop GPU", ["rtx", "3500", "ada", "mobile"]),
    ],
)
def test_tokens(text: str, expected: list[str]) -> None:
    assert tokens(text) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("GeForce RTX 4050 Max-Q / Mobile", [["rtx", "4050", "mobile"], ["rtx", "4050", "mobile"]]),
        ("GeForce RTX 2070 SUPER Mobile / Max-Q", [["rtx", "2070", "super", "mobile"]] * 2),
        ("GeForce RTX 2070 Mobile / Max-Q Refresh", [["rtx", "2070", "mobile"], ["rtx", "2070", "mobile", "refresh"]]),
        ("A2 / A16", [["a2"], ["a16"]]),
        ("GeForce GTX 960 OEM / 970M", [["gtx", "960"], ["gtx", "970m"]]),
        ("Quadro RTX 6000/8000", [["quadro", "rtx", "6000"], ["quadro", "rtx", "8000"]]),
        # A suffix after the last alternative is shared: there is no plain "RTX 2000" in this entry.
        ("RTX 2000 / 2000E Ada Generation", [["rtx", "2000", "ada"], ["rtx", "2000e", "ada"]]),
        ("RTX PRO 5000 Blackwell / RTX PRO 5000 72GB Blackwell", [["rtx", "pro", "5000", "blackwell"]] * 2),
        ("GH200 120GB / 480GB", [["gh200"]]),  # the second part is only a memory size
    ],
)  # fmt: skip
def test_alternatives(name: str, expected: list[list[str]]) -> None:
    assert alternatives(name) == expected


@pytest.mark.parametrize(
    ("chip", "die"),
    [("AD107M", "AD107"), ("AD107GLM", "AD107"), ("GK110BGL", "GK110B"), ("GA107BM", "GA107"), ("GB20B", "GB20B"),
     ("GB10B", "GB10B"), ("GR100", None), ("TU104GL", "TU104")],
)  # fmt: skip
def test_chip_rule(chip: str, die: str | None) -> None:
    rules = {"AD107": "8.9", "GK110B": "3.5", "GA107": "8.6", "GB20B": "12.1", "GB10B": "11.0", "TU104": "7.5"}
    assert chip_rule(chip, rules) == die


@pytest.mark.parametrize(
    ("name", "gpu"),
    [
        ("AD107M [GeForce RTX 4050 Max-Q / Mobile]", True),
        ("GB203M / GN22 [GeForce RTX 5090 Max-Q / Mobile]", True),
        ("GA100 [A100 SXM4 80GB]", True),
        ("GA100 [A100 NVSwitch]", False),
        ("GB202 High Definition Audio Controller", False),
        ("TU102 USB 3.1 Host Controller", False),
        ("GB10 GEN5 X4 PCIe host", False),
        ("NV40 [GeForce 6800 Ultra]", False),  # pre-Fermi
        ("MCP04 SMBus", False),
    ],
)
def test_is_gpu(name: str, gpu: bool) -> None:
    assert is_gpu(name) is gpu


@pytest.mark.parametrize(
    ("text", "segment"),
    [
        ("RTX 4090", "geforce"),
        ("NVIDIA RTX A400", "workstation"),  # an A-number inside an RTX name is a workstation card
        ("A40", "datacenter"),
        ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "datacenter"),
        ("RTX PRO 6000 Blackwell Workstation Edition", "workstation"),
        ("GA100 [CMP 170HX]", "geforce"),  # a mining board on a data-centre die
        ("NVIDIA CMP 40HX", "geforce"),
        ("T1000", "workstation"),
        ("T4", "datacenter"),
        ("TITAN V", "geforce"),
    ],
)
def test_segment_patterns(matrix: Matrix, text: str, segment: str) -> None:
    assert parse_gpu(text, matrix).segment == segment


def test_the_table_is_read_only_when_a_name_is_looked_up() -> None:
    fresh = load_matrix()
    parse_gpu("sm_89", fresh)
    assert "table" not in fresh._cache  # planning for sm_89 never reads the 2,000-device table
    parse_gpu("RTX 4090", fresh)
    assert fresh.gpu_table().version == "2026.10.24"


# --------------------------------------------------------------------------- pci.ids


def test_pci_ids_reads_the_real_database_excerpt() -> None:
    db = pci_ids.parse(PCI_IDS.read_text(encoding="utf-8"))
    assert (db.version, db.date, db.vendor_name, len(db.devices)) == (
        "2026.10.24",
        "2026-10-24 03:15:02",
        "NVIDIA Corporation",
        1992,
    )
    assert db.devices[0] == ("0008", "NV1 [STG2000X-B Series]")  # subsystem lines are skipped
    assert ("28a1", "AD107M [GeForce RTX 4050 Max-Q / Mobile]") in db.devices


def test_the_tracked_table_is_what_refresh_makes_of_its_database() -> None:
    """matrices/nvidia.ids is generated: regenerating it from pci.ids 2026.10.24 changes nothing."""
    db = pci_ids.parse(PCI_IDS.read_text(encoding="utf-8"))
    assert gpu_table.render_ids(db) == (BUILTIN_DIR / "nvidia.ids").read_text(encoding="utf-8")
    assert (BUILTIN_DIR / "nvidia.ids").stat().st_size < 100_000  # the NVIDIA GPUs only, not the database


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("0001  SafeNet\n", "no vendor 10de in it (is it a pci.ids file?)", 0),
        ("10de  NVIDIA Corporation\n  28a1  AD107M\n", "line 2 is neither a vendor, a device nor a subsystem line: "
         "'  28a1  AD107M'", 2),
        ("<html>not found</html>\n", "line 1 is neither a vendor, a device nor a subsystem line: "
         "'<html>not found</html>'", 1),
    ],
)  # fmt: skip
def test_pci_ids_refuses_what_is_not_the_database(text: str, message: str, line: int) -> None:
    with pytest.raises(pci_ids.PciIdsError) as info:
        pci_ids.parse(text)
    assert (info.value.message, info.value.line) == (message, line)


def test_compare_ids_on_real_entries() -> None:
    db = pci_ids.parse(PCI_IDS.read_text(encoding="utf-8"))
    older = pci_ids.PciIds("2026.01.01", None, db.vendor, db.vendor_name, tuple(d for d in db.devices if d[0] < "2e00"))
    change = gpu_table.compare_ids(older, db)
    assert ("2e12", "GB20B [GB10]") in change.added
    assert change.removed == () and change.renamed == ()
    assert all(device >= "2e00" for device, _ in change.added)
    assert gpu_table.version_key("2026.10.24") > gpu_table.version_key("2025.06.09") > gpu_table.version_key(None)


# --------------------------------------------------------------------------- detection


def test_detected_gpu_without_a_compute_capability_gets_its_names(matrix: Matrix) -> None:
    """nvidia-smi -q's XML has no compute capability (real H100 output): the name gives it."""
    summary = detect.parse_nvidia_smi_xml((H100 / "nvidia-smi-q.xml").read_text(encoding="utf-8"))
    assert [g.cc for g in summary.gpus] == [""]
    host = Host(gpus=summary.gpus, driver=summary.driver, os="linux", machine="x86_64", glibc="2.39", kernel="k",
                pythons=())  # fmt: skip
    args = argparse.Namespace(gpu="auto", driver=None, os=None, machine=None, python=None, profile=None, torch=None,
                              bnb=None, forward_compat=False)  # fmt: skip
    target = target_from_args(args, matrix, host)
    assert [(g.cc, g.product, g.segment) for g in target.gpus] == [("9.0", "NVIDIA H100 80GB HBM3", "datacenter")]


LSPCI = Path(__file__).parent / "fixtures" / "lspci"


@pytest.mark.parametrize(
    ("fixture", "named"),
    [
        ("torchruntime-15-a100-40gb.txt", [("A100 SXM4 40GB", "8.0")]),
        ("batocera-10290-rtx-a5000-mobile.txt", [("RTX A5000 Mobile", "8.6")]),
        ("egpu-switcher-22-mx130-gtx970.txt", [("GeForce MX130", "5.0"), ("GeForce GTX 970", "5.2")]),
        ("nvidia-optimus-manager-3-mx150.txt", [("GeForce MX150", "6.1")]),
        ("gentoo-wiki-dell-xps-15-9570.txt", [("GeForce GTX 1050 Ti Mobile", "6.1")]),
        ("akash-provider-configs-90-pg500-216.txt", [("Tesla PG500-216", "7.0")]),
        ("nvidiux-10-gtx560ti.txt", [("GeForce GTX 560 Ti", "2.1")]),  # Fermi: named, and not in the matrix
        ("bumblebee-499-device-0df2.txt", [("GeForce GT 435M", "2.1")]),  # its old pci.ids said only "Device"
    ],
)
def test_driverless_gpus_are_named_by_their_pci_id(fixture: str, named: list[tuple[str, str]]) -> None:
    """GPUs on the PCI bus with no driver tool to name them (real `lspci -nn` outputs users posted)."""
    devices = nvidia.parse_lspci_nn((LSPCI / fixture).read_text(encoding="utf-8"))
    gpus = detect.gpus_from_bus(devices, {}, detect.pci_namer())
    assert [(g.name, g.cc) for g in gpus] == named


def test_a_pasted_lspci_line_names_the_gpu(matrix: Matrix) -> None:
    line = (LSPCI / "batocera-10290-rtx-a5000-mobile.txt").read_text(encoding="utf-8").splitlines()[1]
    assert parse_gpu(line, matrix).cc == "8.6"


# --------------------------------------------------------------------------- matrix refresh --pci-ids


def test_refresh_writes_the_table_into_an_overlay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--matrix-dir", str(tmp_path), "matrix", "refresh", "--pci-ids", str(PCI_IDS)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "nvidia.ids").read_text() == (BUILTIN_DIR / "nvidia.ids").read_text()
    assert out.splitlines() == [
        f"{tmp_path}/nvidia.ids: pci.ids 2026.10.24 (2026-10-24 03:15:02) from {PCI_IDS}",
        "  968 NVIDIA GPUs of the database's 1992 NVIDIA devices: 0 new, 0 gone, 0 renamed",
        "  dies no chip rule knows (compute capability unknown until gpu-chips.toml names them): GB112 (3), "
        "GB120 (1), GR100 (7), GR102 (3)",
        f"updated {tmp_path}/nvidia.ids",
    ]
    assert main(["--matrix-dir", str(tmp_path), "matrix", "refresh", "--pci-ids", str(PCI_IDS), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["schema"], doc["version"], doc["devices"], doc["updated"]) == (
        "envbuilder.matrix-refresh-pci/1",
        "2026.10.24",
        968,
        False,
    )
    assert doc["unknown_chips"]["GR100"][0] == "3000"


def test_refresh_refuses_an_older_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    older = tmp_path / "pci.ids"
    text = PCI_IDS.read_text(encoding="utf-8").replace("Version: 2026.10.24", "Version: 2023.04.11", 1)
    older.write_text(text, encoding="utf-8")
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    assert main(["--matrix-dir", str(overlay), "matrix", "refresh", "--pci-ids", str(older)]) == 2
    assert capsys.readouterr().err == (
        f"envbuilder: {older}: pci.ids 2023.04.11 is older than the GPU table's 2026.10.24: nothing written\n"
        "TIP give a newer pci.ids (Debian testing's pci.ids package, or hwdata)\n"
    )
    assert not (overlay / "nvidia.ids").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "{path}: no such file"),
        ("<html>moved</html>\n", "{path}: line 1 is neither a vendor, a device nor a subsystem line: "
         "'<html>moved</html>'"),
    ],
)  # fmt: skip
def test_refresh_refuses_a_bad_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, message: str
) -> None:
    path = tmp_path / "pci.ids"
    if content is not None:
        path.write_text(content)
    assert main(["--matrix-dir", str(tmp_path), "matrix", "refresh", "--pci-ids", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == "envbuilder: " + message.format(path=path)
    assert not (tmp_path / "nvidia.ids").exists()


@pytest.fixture
def served_pci_ids() -> Iterator[str]:
    """The real database excerpt over HTTP on loopback, as a mirror would serve it."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(PCI_IDS.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pci.ids"
    finally:
        server.shutdown()
        server.server_close()


def test_refresh_downloads_where_the_system_has_none(served_pci_ids: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("ENVBUILDER_PCI_IDS_URL", served_pci_ids)
    text, where = read_pci_ids(None, system_paths=(str(PCI_IDS.parent / "absent"),))
    assert where == served_pci_ids
    assert pci_ids.parse(text).version == "2026.10.24"
    # The system's copy comes first; offline, only it is read.
    assert read_pci_ids(None, system_paths=(str(PCI_IDS),))[1] == str(PCI_IDS)
    monkeypatch.setenv("ENVBUILDER_OFFLINE", "1")
    with pytest.raises(SourceError) as info:
        read_pci_ids(None, system_paths=("/nonexistent/pci.ids",))
    assert info.value.message == (
        "no pci.ids on this system (/nonexistent/pci.ids), and ENVBUILDER_OFFLINE forbids a download"
    )


def test_refresh_from_a_url(
    served_pci_ids: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert main(["--matrix-dir", str(tmp_path), "matrix", "refresh", "--pci-ids", served_pci_ids]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path}/nvidia.ids: pci.ids 2026.10.24 (2026-10-24 03:15:02) from")
    assert load_matrix([tmp_path]).gpu_table().by_device["28a1"].cc == "8.9"
