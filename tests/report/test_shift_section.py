"""The shift-ladder section: metrics along shift ladders, where criteria stop holding,
the REFORMS external-validity items filled from the ladders, and the schema of a ladder."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from _page import Page, rows_by_first_cell
from _report_data import make_classification_results, make_results

from trustml.report import RunResults, json_bytes, render_html, results_schema
from trustml.report.figures import ladder_positions
from trustml.report.html import figure_jobs
from trustml.report.reforms import crosswalk
from trustml.report.sections import ReportInput, compared_methods
from trustml.report.sections.shift import build

LEVELS = [0.0, 1.0, 2.0, 3.0]
LABELS = ["0", "1", "2", "3"]
METHODS = ("ensemble", "svi")  # as in make_classification_results, the ensemble primary
HOLDS_HEADER = "along the ladder"
CHECK, CROSS = "\u2713", "\u2717"

# The ensemble's ECE grows a little along the ladder, SVI's a lot; its entropy rises with it.
ECE = {"ensemble": [0.03, 0.035, 0.04, 0.05], "svi": [0.05, 0.09, 0.14, 0.22]}
ACCURACY = {"ensemble": [0.8, 0.76, 0.72, 0.71], "svi": [0.78, 0.7, 0.6, 0.5]}
ENTROPY = {"ensemble": [0.4, 0.5, 0.6, 0.75], "svi": [0.45, 0.46, 0.47, 0.5]}
CRITERIA = {"accuracy": ("min", 0.7), "ece": ("max", 0.045)}


def _metric(value: float, half: float = 0.02) -> dict:
    return {"value": value, "ci": [value - half, value + half]}


def _holds(levels: list[dict], methods) -> list[dict]:
    """What the runner writes (``holds_along``): every test-split criterion for every method."""
    rows = []
    for criterion, (bound, threshold) in CRITERIA.items():
        for m in methods:
            values = [lv["methods"][m]["metrics"][criterion]["value"] for lv in levels]
            passed = [v >= threshold if bound == "min" else v <= threshold for v in values]
            first = passed.index(False) if False in passed else len(passed)
            rows.append({
                "criterion": criterion, "metric": criterion, "method": m, "bound": bound,
                "threshold": threshold, "passed": passed,
                "holds_through": levels[first - 1]["label"] if first else None,
            })  # fmt: skip
    return rows


def ladder_entry(*, ece=ECE, accuracy=ACCURACY, entropy=ENTROPY, levels=LEVELS, labels=LABELS):
    methods = list(ece)
    scored = [
        {
            "level": level,
            "label": label,
            "n": 80,
            "methods": {
                m: {
                    "metrics": {"accuracy": _metric(accuracy[m][j]), "ece": _metric(ece[m][j])},
                    "mean_entropy": entropy[m][j],
                    "mean_mutual_information": 0.01 * (j + 1),
                }
                for m in methods
            },
        }
        for j, (level, label) in enumerate(zip(levels, labels, strict=True))
    ]
    return {
        "ladder": {"kind": "option", "parameter": "shift", "unit": "K", "source": "builtin:climate",
                   "levels": levels, "labels": labels},
        "levels": scored,
        "holds": _holds(scored, methods),
    }  # fmt: skip


def _level_row(criterion: str, method: str, value: float, passed: bool) -> dict:
    return {"criterion": criterion, "metric": "ece", "bound": "max", "threshold": 0.1,
            "value": value, "ci": [value - 0.02, value + 0.02], "passed": passed,
            "method": method, "shift": "warming", "level": "3"}  # fmt: skip


def make_ladder_results(**options) -> RunResults:
    """The classification fixture with a 4-level warming ladder and two criteria at level 3."""
    base = make_classification_results()
    summary = copy.deepcopy(base.summary)
    summary["shifts"]["warming"] = ladder_entry(**options)
    summary["methods"]["ensemble"]["uncertainty"] = {"mean_entropy": 0.38}
    summary["acceptance"] += [
        _level_row("ece@shift:warming:3", "ensemble", 0.05, True),
        _level_row("ece@svi@shift:warming:3", "svi", 0.22, False),
    ]
    summary["verdict"] = "fail"
    return RunResults(summary=summary, arrays=dict(base.arrays), manifest=dict(base.manifest),
                      protocol_text=base.protocol_text)  # fmt: skip


def _content(results: RunResults):
    run = ReportInput(results=results, outdir="OUTDIR", methods=compared_methods(results.summary))
    return build(run)


def _ladder(results: RunResults, name: str = "warming") -> dict:
    return next(p for p in _content(results).context["ladders"] if p["name"] == name)


@pytest.fixture(scope="module")
def page() -> Page:
    return Page(render_html(make_ladder_results()))


# --- on the page -----------------------------------------------------------------------------


def test_section_follows_uncertainty_with_one_figure_per_ladder(page):
    ids = page.section_ids
    assert "shift" in page.nav_targets
    assert ids.index("uncertainty") < ids.index("shift") < ids.index("checklist")
    assert page.alts("shift") == ["Metrics along the warming shift ladder"]
    assert len(page.pngs("shift")) == 1
    # The single shifted set stays in the uncertainty section, not here.
    assert "rotated" in page.section("uncertainty") and "rotated" not in page.section("shift")


def test_holds_table_has_a_cell_per_level_and_says_where_each_criterion_stops(page):
    rows = page.table_with("shift", HOLDS_HEADER)
    assert [c.text for c in rows[0]] == ["criterion", "method", *LABELS, HOLDS_HEADER]
    table = {(r[0].text, r[1].text): r[2:] for r in rows[1:]}
    # accuracy >= 0.7: the ensemble never drops below it; SVI's 0.6 at level 2 does.
    assert [c.text for c in table[("accuracy \u2265 0.7", "ensemble")]] == [
        CHECK, CHECK, CHECK, CHECK, "holds at every level (through 3)"]  # fmt: skip
    assert [c.text for c in table[("accuracy \u2265 0.7", "svi")]] == [
        CHECK, CHECK, CROSS, CROSS, "holds through 1; fails at 2"]  # fmt: skip
    assert [c.text for c in table[("ece \u2264 0.045", "ensemble")]][-1] == (
        "holds through 2; fails at 3"
    )
    assert [c.text for c in table[("ece \u2264 0.045", "svi")]] == [
        CROSS, CROSS, CROSS, CROSS, "fails already at the first level (0)"]  # fmt: skip
    assert "fail-cell" in table[("ece \u2264 0.045", "svi")][0].classes
    assert "pass-cell" in table[("accuracy \u2265 0.7", "svi")][0].classes


def test_cells_and_words_follow_passed_not_a_recomputation():
    results = make_ladder_results()
    row = results.summary["shifts"]["warming"]["holds"][0]
    assert (row["criterion"], row["method"]) == ("accuracy", "ensemble")
    row["passed"] = [False, True, False, True]  # what the runner decided is what is shown
    page = Page(render_html(results))
    table = {(r[0].text, r[1].text): r[2:] for r in page.table_with("shift", HOLDS_HEADER)[1:]}
    assert [c.text for c in table[("accuracy \u2265 0.7", "ensemble")]] == [
        CROSS, CHECK, CROSS, CHECK, "fails already at the first level (0)"]  # fmt: skip


def test_criteria_at_a_level_are_listed_with_their_verdict(page):
    rows = rows_by_first_cell(page.table_with("shift", "bound"))
    assert list(rows) == ["ece@shift:warming:3", "ece@svi@shift:warming:3"]
    ens, svi = rows["ece@shift:warming:3"], rows["ece@svi@shift:warming:3"]
    assert [c.text for c in ens[1:3]] == ["ensemble", "3"]
    assert ens[3].text.startswith("0.05") and ens[4].text == "\u2264 0.1" and ens[5].text == "pass"
    assert svi[5].text == "FAIL"


def test_scores_table_has_every_level_and_method(page):
    (rows,) = [rows for rows in page.tables_in("shift") if rows[0][0].text == "level"]
    header = [c.text for c in rows[0]]
    assert header[:5] == ["level", "n", "method", "accuracy \u2191", "ece \u2193"]
    assert "mean predictive entropy [nats]" in header
    assert len(rows) == 1 + len(LEVELS) * len(METHODS)


# --- the reading -----------------------------------------------------------------------------


def test_reading_names_the_method_whose_ece_degrades_least(page):
    text = page.section("shift")
    assert (
        "From warming 0 to warming 3, ece (lower is better) worsens least for ensemble "
        "(0.03 \u2192 0.05, +0.02) and most for svi (0.05 \u2192 0.22, +0.17)." in text
    )
    assert "the mean predictive entropy rises for ensemble (0.4 \u2192 0.75, +0.35) and svi" in text
    assert (
        "accuracy \u2265 0.7 holds at every level for ensemble; holds through warming 1 (fails at "
        "warming 2) for svi." in text
    )
    assert "ece \u2264 0.045 holds through warming 2 (fails at warming 3) for ensemble" in text


def test_reading_follows_the_numbers_when_the_methods_swap():
    swapped = {"ensemble": ECE["svi"], "svi": ECE["ensemble"]}
    reading = " ".join(_ladder(make_ladder_results(ece=swapped))["reading"])
    assert "worsens least for svi (0.03 \u2192 0.05, +0.02) and most for ensemble" in reading


def test_reading_says_when_a_method_improves():
    improving = {"ensemble": [0.06, 0.05, 0.04, 0.03], "svi": ECE["svi"]}
    reading = " ".join(_ladder(make_ladder_results(ece=improving))["reading"])
    assert "improves for ensemble (0.06 \u2192 0.03, -0.03) and worsens for svi" in reading


# --- the figure ------------------------------------------------------------------------------


def _panels(results: RunResults) -> dict:
    spec = _ladder(results)["figure"]
    assert spec.key == "shift/warming"
    fig = spec.draw()
    return {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}


def _lines(ax) -> dict[str, list]:
    out: dict[str, list] = {}
    for line in ax.get_lines():
        out.setdefault(line.get_label(), []).append(line)
    return out


def test_figure_has_a_panel_per_metric_and_uncertainty_with_one_line_per_method():
    panels = _panels(make_ladder_results())
    assert list(panels) == ["accuracy \u2191", "ece \u2193", "mean predictive entropy [nats]",
                            "mean mutual information [nats]"]  # fmt: skip
    for title, ax in panels.items():
        lines = _lines(ax)
        for m in METHODS:
            assert len(lines[m]) == 1, (title, m)
    ece = _lines(panels["ece \u2193"])
    np.testing.assert_allclose(ece["ensemble"][0].get_ydata(), ECE["ensemble"])
    np.testing.assert_allclose(ece["svi"][0].get_ydata(), ECE["svi"])
    # The in-distribution test value of each method, from results.json "methods".
    assert ece["ensemble: in-distribution test"][0].get_ydata()[0] == pytest.approx(0.031)
    assert ece["svi: in-distribution test"][0].get_ydata()[0] == pytest.approx(0.052)
    # The test-split criterion at every level, the criterion of level 3 there only.
    assert "ece \u2264 0.045" in ece
    (bar,) = ece["ece@shift:warming:3 \u2264 0.1"]
    assert np.all(np.asarray(bar.get_ydata()) == 0.1)
    assert np.mean(bar.get_xdata()) == pytest.approx(3.0)
    assert "accuracy \u2265 0.7" in _lines(panels["accuracy \u2191"])
    entropy = _lines(panels["mean predictive entropy [nats]"])
    np.testing.assert_allclose(entropy["ensemble"][0].get_ydata(), ENTROPY["ensemble"])
    assert entropy["ensemble: in-distribution test"][0].get_ydata()[0] == pytest.approx(0.38)
    assert "svi: in-distribution test" not in entropy  # no in-distribution entropy for svi


def test_range_levels_sit_at_their_midpoints():
    assert ladder_positions([[300, 400], [400, 600], [600, 1000]]) == [350.0, 500.0, 800.0]
    assert ladder_positions([0, 2, 4]) == [0.0, 2.0, 4.0]
    assert ladder_positions(["a", "b"]) == [0.0, 1.0]  # no numbers: by index
    assert ladder_positions([[0, 2], [1, 1]]) == [0.0, 1.0]  # coinciding midpoints: by index
    ranges, labels = [[300.0, 400.0], [400.0, 600.0], [600.0, 1000.0]], ["300-400", "400-600",
                                                                          "600-1000"]  # fmt: skip
    one = {m: v[:3] for m, v in ECE.items() if m == "ensemble"}
    results = make_ladder_results(ece=one, accuracy={"ensemble": ACCURACY["ensemble"][:3]},
                                  entropy={"ensemble": ENTROPY["ensemble"][:3]},
                                  levels=ranges, labels=labels)  # fmt: skip
    results.summary["acceptance"] = results.summary["acceptance"][:1]
    panels = _panels(results)
    ax = panels["ece \u2193"]
    np.testing.assert_allclose(ax.get_xticks(), [350.0, 500.0, 800.0])
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    np.testing.assert_allclose(_lines(ax)["ensemble"][0].get_xdata(), [350.0, 500.0, 800.0])
    assert "midpoint" in _ladder(results)["figure"].caption


# --- absent, malformed -----------------------------------------------------------------------


def test_no_section_without_a_ladder():
    results = make_classification_results()  # a single shifted set only
    assert _content(results) is None
    html = render_html(results)
    page = Page(html)
    assert "shift" not in page.section_ids and "shift" not in page.nav_targets
    assert 'id="shift"' not in html and "Shift ladders" not in html and "\n\n\n" not in html
    assert not any(key.startswith("shift/") for key, _ in figure_jobs(results))
    assert "rotated" in page.section("uncertainty")


def test_a_ladder_without_scores_renders_without_figure():
    results = make_ladder_results()
    results.summary["shifts"]["warming"]["levels"] = []
    results.summary["shifts"]["warming"]["holds"] = "x"
    page = Page(render_html(results))
    assert "shift" in page.section_ids and page.pngs("shift") == []


# --- REFORMS ---------------------------------------------------------------------------------


def _reforms(results: RunResults, sections=frozenset({"uncertainty", "shift"})) -> dict:
    out = crosswalk(results.summary, results.manifest, results.protocol_text, sections)
    return {r["id"]: r for r in out["rows"]}


def test_external_validity_items_come_from_the_ladders(page):
    rows = _reforms(make_ladder_results())
    assert rows["8a"]["status"] == "auto" and rows["8a"]["anchor"] == "shift"
    assert "warming (4 levels)" in rows["8a"]["where"]
    assert "1 single shifted test set(s)" in rows["8a"]["where"]
    assert rows["8b"]["status"] == "auto" and rows["8b"]["anchor"] == "shift"
    where = rows["8b"]["where"]
    assert "accuracy \u2265 0.7 stops holding for svi at warming 2" in where
    assert "ece \u2264 0.045 stops holding for ensemble at warming 3" in where
    assert "ece \u2264 0.045 fails for svi already at warming 0, the first level" in where
    assert "ece \u2264 0.1 fails for svi at warming 3" in where
    assert "ensemble at warming 2" not in where  # the ensemble keeps its accuracy
    checklist = rows_by_first_cell(page.table_with("checklist", "what to report"))
    assert checklist["8b"][3].text == "auto" and checklist["8b"][4].text == where


def test_external_validity_when_every_criterion_holds():
    good = {"ensemble": [0.01, 0.02, 0.03, 0.04], "svi": [0.01, 0.02, 0.03, 0.04]}
    accuracy = {m: [0.9] * 4 for m in good}
    results = make_ladder_results(ece=good, accuracy=accuracy)
    results.summary["acceptance"] = results.summary["acceptance"][:1]
    where = _reforms(results)["8b"]["where"]
    assert where.startswith("every acceptance criterion holds at every level tested (through ")
    assert "warming 3" in where


def test_single_shifts_keep_the_uncertainty_section_and_leave_8b_to_the_author():
    rows = _reforms(make_classification_results())
    assert rows["8a"]["status"] == "auto" and rows["8a"]["anchor"] == "uncertainty"
    assert rows["8a"]["where"] == "scores on distribution-shifted test sets"
    assert rows["8b"]["status"] != "auto"
    # Without the section on the page, the ladder covers nothing.
    ladder = _reforms(make_ladder_results(), sections=frozenset({"uncertainty"}))
    assert ladder["8a"]["anchor"] == "uncertainty" and ladder["8b"]["status"] != "auto"


# --- schema ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema")
    return jsonschema.Draft202012Validator(results_schema())


def _canonical(results: RunResults) -> dict:
    return json.loads(json_bytes(results.summary))


def test_schema_accepts_ladders_and_criteria_at_a_level(validator):
    summary = _canonical(make_ladder_results())
    assert [e.message for e in validator.iter_errors(summary)] == []
    ranges = _canonical(make_ladder_results(levels=[[0, 1], [1, 2], [2, 3], [3, 4]]))
    assert validator.is_valid(ranges)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("ladder", "kind"), "rotation"),
        (("ladder", "levels"), [[0, 1, 2]]),
        (("ladder", "labels"), [0, 1]),
        (("levels", 0, "methods", "svi", "metrics", "ece", "value"), "0.1"),
        (("holds", 0, "passed"), [1, 0]),
        (("holds", 0, "bound"), "between"),
        (("holds", 0, "holds_through"), 3),
    ],
)
def test_schema_rejects_a_malformed_ladder(validator, path, value):
    summary = _canonical(make_ladder_results())
    node = summary["shifts"]["warming"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert not validator.is_valid(summary)


def test_schema_rejects_a_single_shift_that_claims_a_ladder(validator):
    summary = _canonical(make_ladder_results())
    summary["shifts"]["rotated"]["ladder"] = "yes"
    assert not validator.is_valid(summary)


def test_schema_documents_the_ladder_arrays():
    groups = results_schema()["$defs"]["arrays"]["x-groups"]
    assert "shifts/<name>/levels/<j>" in groups
    assert "shifts/<name>/levels/<j>/methods/<label>" in groups


# --- a regression ladder ---------------------------------------------------------------------


def test_regression_ladder_reads_nll_and_the_predicted_std():
    results = make_results()
    summary = results.summary
    first = next(iter(summary["methods"]))
    std = {"mean_std": [0.3, 0.4], "mean_epistemic_var": [0.01, 0.03]}
    summary["shifts"]["noise"] = {
        "ladder": {"kind": "corruption", "parameter": "noise", "unit": "channel std",
                   "source": "test split + noise", "levels": [0.1, 0.5], "labels": ["0.1", "0.5"]},
        "levels": [
            {"level": lv, "label": str(lv), "n": 40, "methods": {first: {
                "metrics": {"nll": _metric(0.5 + j), "rmse": _metric(0.2 + 0.1 * j)},
                "mean_std": std["mean_std"][j],
                "mean_epistemic_var": std["mean_epistemic_var"][j]}}}
            for j, lv in enumerate([0.1, 0.5])
        ],
        "holds": [],
    }  # fmt: skip
    part = _ladder(results, "noise")
    assert (
        part["reading"][0] == f"From noise 0.1 to noise 0.5, {first}'s nll goes 0.5 \u2192 1.5, +1."
    )
    assert "the mean predicted std rises for" in part["reading"][1]
    titles = [ax.get_title() for ax in part["figure"].draw().axes if ax.get_visible()]
    assert titles == ["nll \u2193", "rmse \u2193", "mean predicted std", "mean epistemic variance"]


# --- a real run ------------------------------------------------------------------------------

PROTOCOL = {
    "trustml": 1,
    "name": "tiny-ladder",
    "seed": 5,
    "device": "cpu",
    "data": {
        "builtin": "climate",
        "options": {"n": 120, "size": 16},
        "split": {"train": 0.6, "calibration": 0.2, "test": 0.2},
        "shifts": [
            {"name": "warming", "option": "shift", "levels": [0, 2, 4], "options": {"n": 40}},
            {"name": "noise", "corruption": "noise", "levels": [0.2, 0.8]},
        ],
    },
    "task": "classification",
    "model": {"builtin": "cnn", "options": {"channels": [4], "hidden": 8, "dropout": 0.1}},
    "uncertainty": [
        {
            "method": "deep_ensemble",
            "label": "ens",
            "members": 2,
            "train": {"epochs": 1, "batch_size": 32},
        },
        {
            "method": "mc_dropout",
            "label": "mcd",
            "samples": 5,
            "train": {"epochs": 1, "batch_size": 32},
        },
    ],  # fmt: skip
    "calibration": {"method": "temperature"},
    "metrics": ["accuracy", "nll", "ece"],
    "acceptance": {"accuracy": {"min": 0.0}, "ece@shift:warming:4": {"max": 1.0}},
}


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    from trustml.cli import main

    root = tmp_path_factory.mktemp("ladder")
    (root / "p.yaml").write_text(yaml.safe_dump(PROTOCOL, sort_keys=False))
    assert main(["evaluate", str(root / "p.yaml"), "--out", str(root / "run"), "--quiet"]) == 0
    return root / "run"


def test_a_real_run_renders_its_ladders(real_run, validator):
    results = RunResults.load(real_run)
    assert validator.is_valid(results.summary)
    page = Page(render_html(results))
    assert "shift" in page.section_ids
    assert sorted(page.alts("shift")) == ["Metrics along the noise shift ladder",
                                          "Metrics along the warming shift ladder"]  # fmt: skip
    assert len(page.pngs("shift")) == 2
    holds = page.tables_in("shift")
    # accuracy >= 0 holds everywhere, for both methods, on both ladders.
    for name in ("warming", "noise"):
        entry = results.summary["shifts"][name]
        assert {(h["method"], h["holds_through"]) for h in entry["holds"]} == {
            ("ens", entry["ladder"]["labels"][-1]),
            ("mcd", entry["ladder"]["labels"][-1]),
        }
    outcome = [r[-1].text for rows in holds if rows[0][-1].text == HOLDS_HEADER for r in rows[1:]]
    assert outcome == ["holds at every level (through 0.8)"] * 2 + [
        "holds at every level (through 4)"] * 2  # fmt: skip
    level_rows = rows_by_first_cell(page.table_with("shift", "bound"))
    assert level_rows["ece@shift:warming:4"][5].text == "pass"
    checklist = rows_by_first_cell(page.table_with("checklist", "what to report"))
    assert checklist["8a"][3].text == "auto" and "warming (3 levels)" in checklist["8a"][4].text
