"""Fixtures for the report tests: synthetic results, no model and no torch."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _report_data import make_results  # noqa: E402

from trustml.report import RunResults  # noqa: E402


@pytest.fixture
def results() -> RunResults:
    """A complete regression run with 4 attribution examples of 2D inputs and 3 members."""
    return make_results()


@pytest.fixture(scope="module")
def quickstart_html() -> str:
    """The report of a quickstart-sized run: 16 examples, 8 members, 32x32 inputs."""
    from trustml.report import render_html

    return render_html(make_results(n_examples=16, members=8), outdir="reports/quickstart")
