"""The hyper-parameter search section: trials, selection, the test-split comparison, REFORMS."""

from __future__ import annotations

import copy
import json

import pytest
from _page import Page, rows_by_first_cell
from _report_data import make_manifest, make_results, make_summary

from trustml.report import RunResults, json_bytes, render_html, results_schema
from trustml.report.figures import search_trials, to_data_uri
from trustml.report.figures.search import DIVERGED, OFF_SCALE, RUNNING_BEST, SELECTED, TRACE, TRIAL
from trustml.report.reforms import crosswalk
from trustml.report.sections import ReportInput, compared_methods
from trustml.report.sections.search import build

LABEL = "deep_ensemble"
SCORES = [0.9, 0.7, 0.8, 0.5, 0.6, None, 0.55, 1.2]  # trial 5 diverged
LRS = [1e-3, 3e-4, 2e-3, 5e-4, 1e-4, 9e-3, 6e-4, 8e-3]
HIDDEN = [32, 64, 32, 64, 64, 32, 64, 32]
CHOSEN = [3, 6, 3, 4]  # greedy, with replacement: trial 3 twice
TRACE_VALUES = [0.5, 0.45, 0.44, 0.43]
SECONDS = [1.5, 1.5, 2.0, 2.0, 2.0, 1.0, 3.0, 3.0]
CLOSE = {"nll": (-0.55, [-0.64, -0.46]), "rmse": (0.125, [0.11, 0.14])}  # overlaps searched
SEARCHED = {"nll": (-0.61, [-0.70, -0.52]), "rmse": (0.121, [0.11, 0.13])}
FAR_WORSE = {"nll": (0.2, [0.1, 0.3]), "rmse": (0.2, [0.18, 0.22])}
FAR_BETTER = {"nll": (-1.5, [-1.6, -1.4]), "rmse": (0.05, [0.04, 0.06])}
TRIALS_HEADER = "validation nll \u2193"


def _metrics(table: dict) -> dict:
    return {k: {"value": v, "ci": ci} for k, (v, ci) in table.items()}


def make_search(*, default=CLOSE, strategy="greedy", scores=SCORES, chosen=CHOSEN) -> dict:
    trials = [
        {
            "number": i,
            "params": {"lr": LRS[i], "hidden": HIDDEN[i]},
            "model_options": {"hidden": HIDDEN[i]},
            "training": {"lr": LRS[i], "weight_decay": 0.0, "batch_size": 64, "epochs": 20},
            "score": s,
            "state": "diverged" if s is None else "complete",
            "generation": i // 4,
            "group": 2 * (i // 4) + (HIDDEN[i] == 64),
        }
        for i, s in enumerate(scores)
    ]
    counts = {str(n): chosen.count(n) for n in sorted(set(chosen))}
    best = min(((s, i) for i, s in enumerate(scores) if s is not None), default=(None, None))
    return {
        "space": {"lr": {"log_uniform": [1e-4, 1e-2]}, "hidden": {"choice": [32, 64]}},
        "training_defaults": {"lr": 0.001, "weight_decay": 0.0, "batch_size": 64, "epochs": 20},
        "members": len(chosen),
        "generation": 4,
        "strategy": strategy,
        "objective": "nll",
        "sampler": "optuna.samplers.TPESampler",
        "optuna": "4.9.0",
        "key": "f" * 64,
        "trials": trials,
        "groups": [
            {
                "generation": g,
                "trials": [t["number"] for t in trials if t["group"] == j],
                "model_options": {"hidden": 64 if j % 2 else 32},
                "batch_size": 64,
                "epochs": 20,
            }
            for j, g in enumerate([0, 0, 1, 1])
        ],  # fmt: skip
        "candidates": [i for i, s in enumerate(scores) if s is not None],
        "selection": {
            "trials": chosen,
            "counts": counts,
            "trace": TRACE_VALUES[: len(chosen)],
            "best_single": best[1],
            "best_single_score": best[0],
        },
        "comparison": {
            "searched": {"metrics": _metrics(SEARCHED)},
            "best_single": {"trial": best[1], "metrics": _metrics(FAR_WORSE)},
            "default": {"members": len(chosen), "metrics": _metrics(default)},
        },
    }


def make_search_results(*, seconds=SECONDS, labels=(LABEL,), **options) -> RunResults:
    summary = make_summary()
    summary["data"]["splits"]["validation"] = 200
    for label in labels:
        summary["methods"][label]["search"] = make_search(**options)
    manifest = make_manifest()
    if seconds is not None:
        manifest["search_trial_s"] = {label: list(seconds) for label in labels}
    base = make_results()
    return RunResults(summary=summary, arrays=base.arrays, manifest=manifest,
                      protocol_text=base.protocol_text)  # fmt: skip


def _content(results: RunResults):
    return build(
        ReportInput(results=results, outdir="OUTDIR", methods=compared_methods(results.summary))
    )


def _part(results: RunResults) -> dict:
    return _content(results).context["parts"][0]


def _reforms(results: RunResults, sections=frozenset({"search"})) -> dict:
    out = crosswalk(results.summary, results.manifest, results.protocol_text, sections)
    return {r["id"]: r for r in out["rows"]}


@pytest.fixture(scope="module")
def page() -> Page:
    return Page(render_html(make_search_results()))


# --- on the page -----------------------------------------------------------------------------


def test_section_is_on_the_page_after_performance_with_one_figure(page):
    ids = page.section_ids
    assert ids.index("performance") < ids.index("search") < ids.index("calibration")
    assert "search" in page.nav_targets and "other" not in ids
    assert page.alts("search") == [f"Validation nll over trials of {LABEL}"]
    assert len(page.pngs("search")) == 1


def test_trials_table_follows_the_trials_with_times_and_selection(page):
    rows = page.table_with("search", TRIALS_HEADER)
    header = [c.text for c in rows[0]]
    assert header == ["trial", "lr", "hidden", TRIALS_HEADER, "state", "group", "time",
                      "selected"]  # fmt: skip
    body = rows_by_first_cell(rows)
    assert list(body) == [str(i) for i in range(len(SCORES))]
    for i, score in enumerate(SCORES):
        cells = [c.text for c in body[str(i)]]
        assert cells[1] == f"{LRS[i]:.4g}" and cells[2] == str(HIDDEN[i])
        assert cells[3] == ("\u2014" if score is None else f"{score:.4g}")
        assert cells[4] == ("diverged" if score is None else "complete")
        assert cells[6] == f"{SECONDS[i]:g} s"
        taken = CHOSEN.count(i)
        assert cells[7] == (f"\u00d7{taken}" if taken else "")
        # The selected trials, and only they, are highlighted.
        assert ("best" in body[str(i)][0].classes) == bool(taken)


def test_times_are_a_dash_without_the_manifest_entry():
    part = _part(make_search_results(seconds=None))
    assert {t["time"] for t in part["trials"]} == {"\u2014"}
    assert "Training the trials took" not in part["setup"]


def test_times_kept_in_the_record_are_read_without_the_manifest_entry():
    results = make_search_results(seconds=None)
    for t, s in zip(results.summary["methods"][LABEL]["search"]["trials"], SECONDS, strict=True):
        t["time_s"] = s * 100
    part = _part(results)
    assert [t["time"] for t in part["trials"][:3]] == ["2.5 min", "2.5 min", "3.3 min"]


def test_space_table_names_distributions_and_defaults(page):
    rows = rows_by_first_cell(page.table_with("search", "searched setting"))
    assert [c.text for c in rows["lr"][1:]] == ["log_uniform", "[0.0001, 0.01]", "0.001"]
    assert [c.text for c in rows["hidden"][1:]] == ["choice", "[32, 64]", "the model's"]


def test_comparison_rows_and_intervals_follow_the_data(page):
    rows = page.table_with("search", "model")
    assert [c.text for c in rows[0]] == ["model", "nll \u2193", "rmse \u2193"]
    body = rows[1:]
    assert [r[0].text.split(" ")[0:2] for r in body] == [
        ["searched", "ensemble"], ["best", "single"], ["default", "configuration"],
    ]  # fmt: skip
    assert "4 members: trials 3 \u00d72, 4, 6" in body[0][0].text
    assert "trial 3, validation NLL 0.5" in body[1][0].text
    assert "4 members, lr 0.001, weight decay 0, batch size 64, epochs 20" in body[2][0].text
    for row, table in zip(body, (SEARCHED, FAR_WORSE, CLOSE), strict=True):
        for cell, (value, ci) in zip(row[1:], table.values(), strict=True):
            assert cell.text == f"{value:.4g} [{ci[0]:.4g}, {ci[1]:.4g}]"
    # Lower is better for both: the searched ensemble is best in each column, in bold.
    assert ["best" in c.classes for c in body[0][1:]] == [True, True]
    assert not any("best" in c.classes for r in body[1:] for c in r[1:])


# --- the reading -----------------------------------------------------------------------------


def test_reading_says_overlapping_intervals_do_not_tell_them_apart():
    reading = _part(make_search_results(default=CLOSE))["reading"]
    assert reading.startswith("The searched ensemble's test nll is -0.61 [-0.7, -0.52]")
    assert "overlapping the default ensemble's -0.55 [-0.64, -0.46]" in reading
    assert "does not tell the searched and the default ensemble apart" in reading
    assert "took its 4 members from 3 distinct of the 8 trials (trials 3 \u00d72, 4, 6)" in reading


@pytest.mark.parametrize(("default", "word"), [(FAR_WORSE, "better"), (FAR_BETTER, "worse")])
def test_reading_says_which_way_when_the_intervals_separate(default, word):
    reading = _part(make_search_results(default=default))["reading"]
    assert f", {word} than the default ensemble's" in reading
    assert "non-overlapping 95% intervals" in reading and "overlapping the" not in reading


def test_reading_says_when_one_trial_makes_the_whole_ensemble():
    reading = _part(make_search_results(chosen=[3, 3]))["reading"]
    assert reading.endswith(
        "the selection took trial 3 \u00d72 of the 8 for all its members, so the searched "
        "ensemble predicts as that one trial does."
    )


# --- absent ----------------------------------------------------------------------------------


def test_section_is_absent_without_a_search():
    results = make_results()
    assert _content(results) is None
    html = render_html(results)
    assert 'id="search"' not in html and "Hyper-parameter search" not in html
    # No blank lines where the section would be: performance's end runs into calibration.
    assert "\n\n\n" not in html
    start = html.index('<section id="calibration">')
    assert html[:start].endswith("</section>\n\n") and "\n\n\n" not in html


# --- the figure ------------------------------------------------------------------------------


def _lines(ax) -> dict[str, list]:
    out: dict[str, list] = {}
    for line in ax.get_lines():
        out.setdefault(str(line.get_label()).split(" (")[0], []).append(line)
    return out


def _draw(results: RunResults):
    (spec,) = _content(results).figures
    return spec.draw()


def test_figure_draws_every_trial_the_running_best_and_the_selection():
    fig = _draw(make_search_results())
    left, right = fig.axes
    lines = _lines(left)
    (points,) = lines[TRIAL]
    complete = [(i, s) for i, s in enumerate(SCORES) if s is not None]
    assert list(points.get_xdata()) == [i for i, _ in complete]
    assert list(points.get_ydata()) == [s for _, s in complete]
    (best,) = lines[RUNNING_BEST]
    assert list(best.get_xdata()) == list(range(len(SCORES)))
    assert list(best.get_ydata()) == [0.9, 0.7, 0.7, 0.5, 0.5, 0.5, 0.5, 0.5]
    (chosen,) = lines[SELECTED]
    assert list(chosen.get_xdata()) == sorted(set(CHOSEN))
    assert sorted(t.get_text() for t in left.texts) == ["\u00d71", "\u00d71", "\u00d72"]
    (diverged,) = lines[DIVERGED]
    assert list(diverged.get_xdata()) == [5] and diverged.get_label() == f"{DIVERGED} (1)"
    assert OFF_SCALE not in lines
    (trace,) = _lines(right)[TRACE]
    assert list(trace.get_xdata()) == [1, 2, 3, 4] and list(trace.get_ydata()) == TRACE_VALUES


def test_a_runaway_trial_is_drawn_on_the_top_edge():
    scores = [0.5, 0.6, 0.55, 0.52, 500.0, 0.58, 0.51, 0.57]
    left = _draw(make_search_results(scores=scores, chosen=[3, 6, 3, 0])).axes[0]
    assert left.get_ylim()[1] < 10
    (off,) = _lines(left)[OFF_SCALE]
    assert list(off.get_xdata()) == [4]
    # A trial the ensemble took is always on the axis, however far off.
    left = _draw(make_search_results(scores=scores, chosen=[3, 4, 3, 0])).axes[0]
    assert left.get_ylim()[1] > 500 and OFF_SCALE not in _lines(left)


def test_figure_bytes_are_deterministic():
    results = make_search_results()
    assert to_data_uri(_draw(results)) == to_data_uri(_draw(results))


def test_no_finite_score_draws_nothing():
    assert search_trials([0, 1], [None, None], objective="nll") is None
    assert _content(make_search_results(scores=[None] * 8, chosen=[])).figures == ()


# --- REFORMS ---------------------------------------------------------------------------------


def test_reforms_model_selection_and_tuning_come_from_the_record():
    rows = _reforms(make_search_results())
    tuned, selected = rows["5e"], rows["5d"]
    assert tuned["status"] == selected["status"] == "auto"
    assert tuned["anchor"] == selected["anchor"] == "search"
    assert tuned["where"].startswith(
        "Optuna TPE (optuna 4.9.0) over 8 trials of lr and hidden (seeded from the protocol seed 7;"
    )
    assert "1 diverged" in tuned["where"]
    assert selected["where"] == (
        "Greedy (Caruana) selection, with replacement, of 4 members from 7 candidate trials on "
        "the validation NLL of their mixture (3 distinct trials); a validation split of 200 "
        "samples, separate from the calibration and test splits"
    )


def test_reforms_follow_a_top_k_selection_and_several_searched_methods():
    rows = _reforms(make_search_results(strategy="top_k", labels=(LABEL, "mc_dropout")))
    where = rows["5d"]["where"]
    assert where.startswith(f"{LABEL}: the 4 members among 7 candidate trials with the best")
    assert "; mc_dropout: the 4 members" in where and "Caruana" not in where


def test_reforms_without_a_search_or_its_section_are_left_to_the_author():
    for results, sections in [
        (make_results(), frozenset({"search"})),
        (make_search_results(), frozenset()),
    ]:
        rows = _reforms(results, sections)
        assert rows["5d"]["status"] == rows["5e"]["status"] == "author"


def test_the_page_checklist_links_to_the_section(page):
    rows = rows_by_first_cell(page.table_with("checklist", "item"))
    assert rows["5d"][3].text == rows["5e"][3].text == "auto"
    assert page.attr_values("a", "href").count("#search") == 3  # the nav, 5d and 5e


# --- schema ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def validator():
    jsonschema = pytest.importorskip("jsonschema")
    return jsonschema.Draft202012Validator(results_schema())


def _canonical(results: RunResults) -> dict:
    return json.loads(json_bytes(results.summary))


def test_schema_documents_and_accepts_the_search_record(validator):
    method = results_schema()["$defs"]["method"]["properties"]
    assert method["search"] == {"$ref": "#/$defs/search"}
    errors = [e.message for e in validator.iter_errors(_canonical(make_search_results()))]
    assert errors == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("strategy",), "random"),
        (("objective",), "rmse"),
        (("members",), 0),
        (("trials", 0, "state"), "failed"),
        (("trials", 0, "score"), "0.9"),
        (("selection", "counts", "3"), 0),
        (("comparison", "default", "metrics", "nll", "ci"), [0.1]),
    ],
)
def test_schema_rejects_a_malformed_search_record(validator, path, value):
    summary = _canonical(make_search_results())
    node = summary["methods"][LABEL]["search"]
    node = copy.deepcopy(node)
    summary["methods"][LABEL]["search"] = node
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert not validator.is_valid(summary)
