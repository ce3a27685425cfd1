"""The paper examples: each protocol validates and each README documents its run (no training)."""

import re
from pathlib import Path

import pytest

from trustml.protocol import load_protocol

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "paper_examples"
CASES = [
    "climate_extreme_weather",
    "cosmology_parameters",
    "hep_jet_images",
    "enso_forecasting",
    "climate_labeling_campaign",
    "cosmology_search",
]


@pytest.mark.parametrize("case", CASES)
def test_protocol_validates(case):
    protocol, text = load_protocol(EXAMPLES / case / "protocol.yaml")
    assert protocol.claims and protocol.limitations
    assert text.lstrip().startswith("#"), "the protocol opens with a comment saying what it asks"
    assert protocol.report.out == f"reports/paper_examples/{case}"


@pytest.mark.parametrize("case", CASES)
def test_readme_documents_the_run(case):
    readme = (EXAMPLES / case / "README.md").read_text(encoding="utf-8")
    command = f"trustml evaluate paper_examples/{case}/protocol.yaml"
    assert command in readme
    # a markdown results table with a header separator row and 95 % CIs "v [lo, hi]"
    assert re.search(r"^\|[-| ]+\|\s*$", readme, re.M), "no markdown table"
    assert re.search(r"\d\.\d+ \[-?\d[\d.]*, -?\d[\d.]*\]", readme), "no value with a CI"
    assert re.search(r"wall time", readme, re.I)
    # every figure it shows is checked in, and small
    figures = re.findall(r"\]\((figures/[^)]+\.png)\)", readme)
    assert 2 <= len(figures) <= 4, figures
    for f in figures:
        path = EXAMPLES / case / f
        assert path.is_file(), f
        assert path.stat().st_size < 200_000, f"{f} is larger than 200 kB"


def test_index_lists_every_case():
    index = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    for case in CASES:
        assert f"{case}/" in index


def test_makefile_runs_every_case():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^examples:", makefile, re.M)
    for case in CASES:
        assert case in makefile


def test_the_campaign_case_reports_labels_per_strategy():
    protocol, _ = load_protocol(EXAMPLES / "climate_labeling_campaign" / "protocol.yaml")
    assert protocol.acquisition is not None
    readme = (EXAMPLES / "climate_labeling_campaign" / "README.md").read_text(encoding="utf-8")
    for strategy in protocol.acquisition.strategy_names(protocol.task):
        assert re.search(rf"^\| {strategy} \| (\d+|not reached) \|", readme, re.M), strategy
