"""The attribution section's uncertainty part: maps of where the model is unsure next to the
prediction maps, and the uncertainty-deletion verdict, for inputs of every rank."""

from __future__ import annotations

import numpy as np
import pytest
from _page import Page

from trustml import results_keys as rk
from trustml.report import RunResults, render_html
from trustml.report.figures.attribution import uncertainty_maps, uncertainty_panel_note


def _deletion(ratio: float, passed: bool) -> dict:
    fraction = np.linspace(0, 1, 5).tolist()
    return {
        "name": "uncertainty_deletion",
        "value": ratio,
        "threshold": 0.8,
        "comparison": "<=",
        "passed": passed,
        "detail": "area under the epistemic-uncertainty deletion curve ...",
        "extra": {
            "fraction": fraction,
            "attribution": [1.0, 0.2, 0.1, 0.05, 0.0],
            "random": [1.0, 0.75, 0.5, 0.25, 0.0],
            "random_std": [0.0] * 5,
            "quantity": "epistemic",
        },
    }


def _results(sample_shape: tuple[int, ...], n: int = 3) -> RunResults:
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(n, *sample_shape)).astype(np.float32)
    arrays = {
        rk.ATTRIBUTION_INPUTS: inputs,
        rk.ATTRIBUTION_TARGET_INDEX: np.zeros(n, dtype=np.int64),
        rk.attribution_maps("integrated_gradients"): rng.normal(size=(2, *inputs.shape)),
        rk.attribution_maps(): rng.normal(size=(2, *inputs.shape)),
    }
    for q in ("epistemic", "total"):
        arrays[rk.uncertainty_maps(q)] = rng.normal(size=(1, *inputs.shape)).astype(np.float32)
        arrays[rk.uncertainty_values(q)] = rng.random(n)
    method = {"n_examples": n, "target": "predicted mean of y", "checks": {}}
    summary = {
        "task": "regression",
        "attribution": {
            "method": "integrated_gradients",
            "n_examples": n,
            "target": "predicted mean of y",
            "checks": {},
            "methods": {"integrated_gradients": method},
            "uncertainty": {
                "epistemic": {
                    "method": "integrated_gradients",
                    "n_examples": n,
                    "members": 2,
                    "target": "epistemic variance of y (variance of the members' means)",
                    "mean_value": 0.25,
                    "checks": {"deletion": _deletion(0.31, True)},
                },
                "total": {
                    "method": "integrated_gradients",
                    "n_examples": n,
                    "members": 2,
                    "target": "predictive variance of y (aleatoric + epistemic)",
                    "mean_value": 1.5,
                    "checks": {"deletion": _deletion(0.97, False)},
                },
            },
        },
    }
    return RunResults(summary=summary, arrays=arrays)


@pytest.mark.parametrize("shape", [(1, 8, 8), (2, 4, 6, 6), (2, 16), (10, 3), (5,)], ids=str)
def test_uncertainty_maps_sit_next_to_the_prediction_maps(shape):
    page = Page(render_html(_results(shape)))
    text = page.section("attribution")
    assert "Where the model is unsure" in text
    assert "epistemic uncertainty" in text and "total uncertainty" in text
    rows = page.table_with("attribution", "area ratio")
    assert [c.text for c in rows[1]][:4] == ["uncertainty deletion", "0.31", "<= 0.8", "pass"]
    verdicts = [r[3].text for t in page.tables_in("attribution") for r in t[1:]
                if t[0][1].text == "area ratio"]  # fmt: skip
    assert verdicts == ["pass", "FAIL"]
    alts = page.alts("attribution")
    assert "where the model is unsure: uncertainty maps next to prediction maps" in alts
    assert "epistemic uncertainty: deletion curve" in alts


def test_the_figure_has_one_row_per_example_and_a_column_per_map():
    res = _results((1, 8, 8), n=2)
    a = res.arrays
    quantities = {q: a[rk.uncertainty_maps(q)] for q in ("epistemic", "total")}
    fig = uncertainty_maps(a[rk.ATTRIBUTION_INPUTS], a[rk.attribution_maps()], quantities)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(panels) == 2 * 4
    assert [ax.get_title() for ax in panels[:4]] == [
        "input", "prediction attribution", "epistemic uncertainty", "total uncertainty",
    ]  # fmt: skip
    # every uncertainty map is drawn divided by its own largest magnitude
    drawn = panels[2].get_images()[0].get_array()
    assert float(np.abs(drawn).max()) == pytest.approx(1.0)


def test_a_run_without_uncertainty_attribution_shows_none():
    res = _results((1, 8, 8))
    del res.summary["attribution"]["uncertainty"]
    arrays = {k: v for k, v in res.arrays.items() if "uncertainty" not in k}
    page = Page(render_html(RunResults(summary=res.summary, arrays=arrays)))
    assert "Where the model is unsure" not in page.section("attribution")


def test_the_panel_note_says_what_is_drawn():
    assert uncertainty_panel_note((1, 8, 8)) == "input channel 0, maps summed over channels"
    assert "central slice: z = 2 of 4" in uncertainty_panel_note((2, 4, 6, 6))
    assert uncertainty_panel_note((10, 3)) == ""
