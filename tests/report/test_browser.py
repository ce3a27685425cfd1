"""The report loads in a real browser with no console errors.

Skipped where no Chromium is installed, except in CI: ``.ci/run`` installs Debian's chromium
and sets ``TRUSTML_REQUIRE_BROWSER=1``, and then a missing browser is a failure, not a skip.
"""

from __future__ import annotations

import os

import pytest
from _browser import console_errors, find_browser
from _report_data import make_classification_results, make_results

BROWSER = find_browser()
REQUIRED = os.environ.get("TRUSTML_REQUIRE_BROWSER") == "1"
pytestmark = pytest.mark.skipif(
    BROWSER is None and not REQUIRED, reason="no Chromium or Chrome on PATH"
)


def test_a_browser_is_found_where_one_is_required():
    assert BROWSER is not None, "TRUSTML_REQUIRE_BROWSER=1 but no Chromium on PATH"


def test_harness_sees_console_errors(tmp_path):
    """The check below can fail: a page with a script error and a missing image is caught."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<html><body><img src="missing.png">'
        '<script>console.error("oops"); throw new Error("boom")</script></body></html>'
    )
    result = console_errors(BROWSER, page)
    text = "\n".join(result["errors"])
    assert "oops" in text and "boom" in text and "missing.png" in text
    assert result["facts"]["decoded"] == 0


@pytest.mark.parametrize("make", [make_results, make_classification_results])
def test_report_loads_without_console_errors(tmp_path, make):
    out = make().write(tmp_path / "run")
    result = console_errors(BROWSER, out / "report.html")
    assert result["errors"] == []
    facts = result["facts"]
    assert facts["sections"][0] == "verdict" and facts["sections"][-1] == "checklist"
    assert facts["images"] > 0
    assert facts["decoded"] == facts["images"]  # every embedded PNG decodes
    assert facts["title"].startswith("trustml report:")
