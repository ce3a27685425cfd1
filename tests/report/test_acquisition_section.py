"""The labeling-campaign section: learning curves, labels to the target, savings against random."""

from __future__ import annotations

import json

import numpy as np
import pytest
from _page import Page, rows_by_first_cell
from _report_data import (
    CAMPAIGN_LABELS,
    make_campaign_results,
    make_classification_results,
)
from matplotlib.collections import PolyCollection

from trustml.report import RunResults, json_bytes, render_html, results_schema
from trustml.report.figures import strategy_colours
from trustml.report.html import figure_jobs
from trustml.report.sections import KNOWN_SUMMARY_KEYS, ReportInput
from trustml.report.sections.acquisition import build

STRATEGIES = ["random", "bald", "entropy", "margin"]
LABELS_HEADER = "labels to reach the target"


def _page(**options) -> Page:
    return Page(render_html(make_campaign_results(**options)))


def _content(results: RunResults):
    return build(ReportInput(results=results, outdir="OUTDIR", methods=()))


def _lines_by_label(fig) -> dict[str, list]:
    out: dict[str, list] = {}
    for line in fig.axes[0].get_lines():
        out.setdefault(line.get_label(), []).append(line)
    return out


@pytest.fixture(scope="module")
def page() -> Page:
    return _page()


# --- on the page -----------------------------------------------------------------------------


def test_section_is_on_the_page_with_its_figure(page):
    ids = page.section_ids
    assert "acquisition" in ids and "acquisition" in page.nav_targets
    assert ids.index("attribution" if "attribution" in ids else "uncertainty") < ids.index(
        "acquisition"
    )
    assert ids.index("acquisition") < ids.index("reproducibility")
    assert page.alts("acquisition") == ["Learning curves of accuracy"]
    assert len(page.pngs("acquisition")) == 1
    # The key is read by the section, so it is not dumped under "Other results".
    assert "acquisition" in KNOWN_SUMMARY_KEYS
    assert "other" not in ids


def test_table_shows_labels_to_target_and_saving_against_random(page):
    rows = rows_by_first_cell(page.table_with("acquisition", LABELS_HEADER))
    assert list(rows) == STRATEGIES
    header = [c.text for c in page.table_with("acquisition", LABELS_HEADER)[0]]
    assert header == [
        "strategy", LABELS_HEADER, "per repeat", "saving against random",
        "final accuracy \u2191 (mean \u00b1 std)",
    ]  # fmt: skip
    text = {name: [c.text for c in cells[1:]] for name, cells in rows.items()}
    # Fixture: random reaches 0.9 at 145 labels, bald at 90 (145/90 = 1.61), entropy at 110.
    assert text["random"] == ["145", "148, 145, 142", "reference", "0.951 \u00b1 0.01"]
    assert text["bald"][0] == "90" and text["bald"][2] == "1.61\u00d7"
    assert text["entropy"][0] == "110" and text["entropy"][2] == "1.32\u00d7"
    assert text["margin"] == ["not reached within 220 labels", "\u2014, \u2014, \u2014",
                              "\u2014", "0.88 \u00b1 0.01"]  # fmt: skip


def test_reading_names_the_fastest_strategy_against_random(page):
    text = page.section("acquisition")
    assert "bald reaches accuracy 0.9 with 90 labels, 1.61\u00d7 fewer than random (145)." in text
    assert "Each of 3 repeats starts from 20 labels drawn at random" in text
    assert "20 rounds (220 labels in the end, 20% of the pool)" in text
    assert "(ensemble) is trained for 200 epochs" in text
    assert "Target: accuracy 0.9 (set in the protocol)." in text


def test_a_random_that_never_reaches_the_target_gives_lower_bounds():
    page = _page(random_reaches=False)
    rows = rows_by_first_cell(page.table_with("acquisition", LABELS_HEADER))
    assert rows["random"][1].text == "not reached within 220 labels"
    assert rows["bald"][3].text == "\u2265 2.44\u00d7"  # 220 / 90, a lower bound
    assert rows["entropy"][3].text == "\u2265 2.00\u00d7"
    assert rows["margin"][3].text == "\u2014"
    assert (
        "bald reaches accuracy 0.9 with 90 labels; random does not reach it within 220 labels, "
        "a saving of at least 2.44\u00d7." in page.section("acquisition")
    )


def test_nothing_reaching_the_target_is_said():
    results = make_campaign_results(target=0.99)
    page = Page(render_html(results))
    rows = rows_by_first_cell(page.table_with("acquisition", LABELS_HEADER))
    assert {r[1].text for r in rows.values()} == {"not reached within 220 labels"}
    assert "No strategy reaches accuracy 0.99 within 220 labels." in page.section("acquisition")


def test_without_random_there_is_no_saving_column():
    page = _page(strategies=("bald", "margin"))
    header = [c.text for c in page.table_with("acquisition", LABELS_HEADER)[0]]
    assert "saving against random" not in header
    text = page.section("acquisition")
    assert "bald reaches accuracy 0.9 with 90 labels; the campaign has no random strategy" in text


def test_only_random_reaching_the_target_is_said():
    page = _page(strategies=("random", "margin"))
    assert (
        "No strategy but random reaches accuracy 0.9 within 220 labels; random needs 145 labels."
        in page.section("acquisition")
    )


def test_one_repeat_has_no_spread():
    page = _page(repeats=1)
    rows = page.table_with("acquisition", LABELS_HEADER)
    assert [c.text for c in rows[0]] == [
        "strategy", LABELS_HEADER, "saving against random", "final accuracy \u2191",
    ]  # fmt: skip
    assert rows_by_first_cell(rows)["bald"][3].text == "0.97"  # no "± 0"
    text = page.section("acquisition")
    assert "A single run starts from 20 labels" in text
    assert "one repeat" in text and "worst to the best repeat" not in text


def test_target_from_randoms_final_mean_is_named():
    results = make_campaign_results()
    a = results.summary["acquisition"]
    a["target_source"], a["target"] = "random_final", 0.951
    content = _content(results)
    assert content.context["target"] == "accuracy 0.951 (random's final mean)"
    labels = _lines_by_label(content.figures[0].draw())
    assert "target 0.951 (random's final mean)" in labels
    assert content.context["reading"].startswith("bald reaches random's final accuracy (0.951)")


def test_no_section_without_the_key():
    results = make_classification_results()
    assert "acquisition" not in results.summary
    assert _content(results) is None
    page = Page(render_html(results))
    assert "acquisition" not in page.section_ids
    assert "acquisition" not in page.nav_targets
    assert not any(key.startswith("acquisition/") for key, _ in figure_jobs(results))


def test_malformed_campaign_renders_without_figure():
    results = make_campaign_results()
    results.summary["acquisition"] = {"labels": "twenty", "strategies": {"bald": {"mean": "x"}}}
    results.arrays.pop("acquisition/n_labels")
    page = Page(render_html(results))
    assert "acquisition" in page.section_ids
    assert page.pngs("acquisition") == []


# --- the figure ------------------------------------------------------------------------------


def test_figure_has_one_line_per_strategy_a_band_each_and_the_target():
    content = _content(make_campaign_results())
    (spec,) = content.figures
    assert spec.key == "acquisition/learning_curves"
    fig = spec.draw()
    lines = _lines_by_label(fig)
    for name in STRATEGIES:
        assert len(lines[name]) == 1, name
        assert len(lines[name][0].get_xdata()) == len(CAMPAIGN_LABELS)
    (target,) = lines["target 0.9 (protocol)"]
    assert set(target.get_ydata()) == {0.9} and target.get_linestyle() == "--"
    bands = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    assert len(bands) == len(STRATEGIES)
    ax = fig.axes[0]
    assert ax.get_ylabel() == "test accuracy \u2191 (higher is better)"
    assert ax.get_xlabel() == "labelled training samples"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        *STRATEGIES, "target 0.9 (protocol)"
    ]  # fmt: skip


def test_table_and_figure_share_the_strategy_colours():
    content = _content(make_campaign_results())
    lines = _lines_by_label(content.figures[0].draw())
    colours = {r["name"]: r["colour"] for r in content.context["rows"]}
    assert colours == strategy_colours(STRATEGIES)
    assert colours["random"] == "#333333"  # random is drawn in dark grey
    assert len(set(colours.values())) == len(colours)
    for name, colour in colours.items():
        assert lines[name][0].get_color() == colour


def test_band_comes_from_the_arrays_when_the_summary_has_none():
    results = make_campaign_results()
    for entry in results.summary["acquisition"]["strategies"].values():
        del entry["min"], entry["max"]
    fig = _content(results).figures[0].draw()
    bands = [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    assert len(bands) == len(STRATEGIES)
    # Without the per-repeat curves either, the mean lines remain, with no band.
    for name in STRATEGIES:
        results.arrays.pop(f"acquisition/{name}/curve")
    fig = _content(results).figures[0].draw()
    assert not [c for c in fig.axes[0].collections if isinstance(c, PolyCollection)]
    assert all(len(_lines_by_label(fig)[name]) == 1 for name in STRATEGIES)


def test_lower_is_better_metric_points_down():
    results = make_campaign_results()
    a = results.summary["acquisition"]
    a["metric"], a["higher_is_better"] = "rmse", False
    content = _content(results)
    assert content.context["direction"] == "\u2193"
    ax = content.figures[0].draw().axes[0]
    assert ax.get_ylabel() == "test rmse \u2193 (lower is better)"


# --- the results schema ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema")
    return jsonschema.Draft202012Validator(results_schema())


def _canonical_campaign(**options) -> dict:
    return json.loads(json_bytes(make_campaign_results(**options).summary))


@pytest.mark.parametrize(
    "options",
    [{}, {"random_reaches": False}, {"repeats": 1}, {"strategies": ("bald",)}],
    ids=["default", "lower_bound", "one_repeat", "no_random"],
)
def test_schema_accepts_the_campaign_fixture(validator, options):
    errors = [e.message for e in validator.iter_errors(_canonical_campaign(**options))]
    assert errors == []


def test_schema_accepts_a_method_without_epochs(validator):
    """NUTS is not trained by epochs: the runner writes null, and the setup leaves them out."""
    results = make_campaign_results()
    results.summary["acquisition"]["epochs"] = None
    results.manifest.pop("timings_s")
    assert validator.is_valid(json.loads(json_bytes(results.summary)))
    setup = _content(results).context["setup"]
    assert "epochs" not in setup and "took" not in setup
    assert "the model (ensemble) is trained on the labels held" in setup


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("labels",), 20),
        (("labels",), [20, "30"]),
        (("strategies",), ["random", "bald"]),
        (("strategies", "bald", "mean"), "0.9"),
        (("strategies", "bald", "labels_to_target"), "90"),
        (("strategies", "bald", "labels_to_target_per_repeat"), 90.0),
        (("strategies", "bald", "saving_is_lower_bound"), "no"),
        (("target_source",), "median"),
        (("higher_is_better",), "yes"),
        (("repeats",), 0),
        (("pool_size",), -1),
    ],
)
def test_schema_rejects_a_malformed_campaign(validator, path, value):
    summary = _canonical_campaign()
    node = summary["acquisition"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert not validator.is_valid(summary)


@pytest.mark.parametrize("key", ["metric", "labels", "strategies"])
def test_schema_requires_the_campaign_core(validator, key):
    summary = _canonical_campaign()
    del summary["acquisition"][key]
    assert not validator.is_valid(summary)


def test_campaign_round_trips_through_a_results_folder(tmp_path):
    results = make_campaign_results()
    out = results.write(tmp_path / "run")
    loaded = RunResults.load(out)
    assert loaded.summary["acquisition"] == json.loads(json_bytes(results.summary))["acquisition"]
    np.testing.assert_array_equal(loaded.arrays["acquisition/n_labels"], CAMPAIGN_LABELS)
    page = Page((out / "report.html").read_text(encoding="utf-8"))
    assert "1.61\u00d7" in page.section("acquisition")
