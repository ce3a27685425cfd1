"""report.html: self-contained, escaped, complete, in order, and tolerant of missing sections."""

from __future__ import annotations

import numpy as np
import pytest
from _page import PNG_MAGIC, Page, rows_by_first_cell
from _report_data import (
    CLAIMS,
    LIMITATIONS,
    make_arrays,
    make_classification_results,
    make_legacy_results,
    make_manifest,
    make_results,
    make_summary,
)

from trustml.exceptions import DataError
from trustml.report import RunResults, rebuild_report, render_html
from trustml.report.html import MAX_DIAGNOSTIC_ROWS, SECTIONS, format_number
from trustml.report.reforms import ITEMS

ALL_SECTIONS = [
    "verdict", "data", "model", "performance", "calibration", "uncertainty", "attribution",
    "bayes", "reproducibility", "checklist",
]  # fmt: skip


@pytest.fixture(scope="module")
def full() -> Page:
    return Page(render_html(make_results(), outdir="reports/synthetic"))


@pytest.fixture(scope="module")
def clf() -> Page:
    return Page(render_html(make_classification_results()))


# --- the page as a whole ---------------------------------------------------------------------


def test_report_is_self_contained(quickstart_html):
    page = Page(quickstart_html)
    srcs = page.attr_values("img", "src")
    assert srcs and all(s.startswith("data:") for s in srcs)
    for tag, attrs in page.tags:
        for name in ("src", "href", "action", "data", "poster"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("http://", "https://", "//")), (tag, name, value)
        assert tag != "script", attrs
        rel = (attrs.get("rel") or "").lower()
        assert not (tag == "link" and "stylesheet" in rel), attrs
    assert "@import" not in quickstart_html
    assert "url(" not in quickstart_html


def test_internal_links_point_at_ids_on_the_page(full):
    ids = {a.get("id") for _, a in full.tags if a.get("id")}
    hrefs = [h for h in full.attr_values("a", "href") if h.startswith("#")]
    assert hrefs
    assert {h[1:] for h in hrefs} <= ids


def test_quickstart_report_is_under_5_mb(quickstart_html):
    assert len(quickstart_html.encode("utf-8")) < 5 * 1024 * 1024


def test_largest_supported_report_is_under_5_mb():
    """Every section, 16 examples of 4 channels, 8 members, three attribution methods."""
    res = make_results(n_examples=16, members=8, channels=4, n_test=2000,
                       attribution_methods=("integrated_gradients", "saliency", "occlusion"))  # fmt: skip
    res.summary["attribution"]["methods"]["occlusion"] = {"n_examples": 16}
    page = render_html(res)
    assert page.count("data:image/png;base64,") == 11
    assert len(page.encode("utf-8")) < 5 * 1024 * 1024


def test_sections_appear_in_order(full):
    assert full.section_ids == ALL_SECTIONS
    assert full.nav_targets == ALL_SECTIONS
    # the fixture has no labeling campaign, shift ladder or search: every other section, in order
    absent = {"acquisition", "shift", "search"}
    assert [sid for sid, _ in SECTIONS if sid not in absent][: len(ALL_SECTIONS)] == ALL_SECTIONS


def test_every_figure_is_an_embedded_png_in_its_section(full):
    expected = {
        "model": ["Training loss curves"],
        "calibration": [
            "Coverage against nominal level",
            "PIT histograms",
            "Predicted against true values",
        ],  # fmt: skip
        "uncertainty": [
            "Aleatoric against epistemic uncertainty",
            "Spread-skill plot",
            "Uncertainty under distribution shift",
        ],  # fmt: skip
        "attribution": [
            "integrated_gradients: check curves",
            "integrated_gradients: examples: input and attribution",
            "saliency: examples: input and attribution",
        ],  # fmt: skip
    }
    for sid in ALL_SECTIONS:
        assert full.alts(sid) == expected.get(sid, []), sid
        assert all(png.startswith(PNG_MAGIC) for png in full.pngs(sid))


def test_legacy_results_render_their_sections():
    page = Page(render_html(make_legacy_results()))
    assert page.section_ids == [s for s in ALL_SECTIONS if s != "bayes"]
    assert "Training loss curves" in page.alts("model")
    assert page.alts("calibration") == [
        "Coverage against nominal level", "Predicted against true values",
    ]  # fmt: skip
    assert page.alts("uncertainty") == ["Spread-skill plot"]
    # The old single-attribution layout: maps under attribution/maps, the method at top level.
    assert page.alts("attribution") == ["integrated_gradients: examples: input and attribution"]
    assert all(png.startswith(PNG_MAGIC) for png in page.pngs())


def test_classification_report(clf):
    assert clf.section_ids == [s for s in ALL_SECTIONS if s != "attribution"]
    assert clf.alts("calibration") == ["Reliability diagram"]
    assert clf.alts("uncertainty") == [
        "Entropy of right and wrong predictions", "Uncertainty under distribution shift",
    ]  # fmt: skip
    assert "PIT" not in clf.section("calibration")
    counts = clf.table_with("data", "zero")
    assert [c.text for c in counts[0]] == ["split", "zero", "one", "two"]
    test_row = rows_by_first_cell(counts)["test"]
    assert [c.text for c in test_row[1:]] == ["80 33.3%", "82 34.2%", "78 32.5%"]


def test_arrays_without_a_summary_still_give_their_figures():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 3))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    arrays = {"test/probs": probs, "test/labels": rng.integers(0, 3, size=200)}
    page = Page(render_html(RunResults(summary={"task": "classification"}, arrays=arrays)))
    assert page.alts("calibration") == ["Reliability diagram"]
    assert page.alts("uncertainty") == ["Entropy of right and wrong predictions"]
    arrays = {
        k: v for k, v in make_arrays().items() if k in ("test/targets", "test/mean", "test/std")
    }
    page = Page(render_html(RunResults(summary={}, arrays=arrays)))
    assert page.alts("calibration") == ["Predicted against true values"]
    assert page.alts("uncertainty") == ["Spread-skill plot"]


# --- 1. verdict ------------------------------------------------------------------------------


def test_verdict_lists_each_criterion_with_method_value_ci_and_result(full):
    assert "PASS: every acceptance criterion holds" in full.section("verdict")
    rows = full.table_with("verdict", "criterion")
    assert [c.text for c in rows[0]] == [
        "metric",
        "method",
        "value",
        "95% CI",
        "criterion",
        "result",
    ]
    body = [[c.text for c in r] for r in rows[1:]]
    assert body == [
        ["coverage", "deep_ensemble", "0.9012", "[0.87, 0.93]", "\u2265 0.85", "pass"],
        ["nll", "deep_ensemble", "-0.5678", "[-0.6128, -0.5228]", "\u2264 1", "pass"],
        # The CI of a criterion naming a method comes from that method's metrics.
        ["rmse", "mc_dropout", "0.1456", "[0.1326, 0.1586]", "\u2264 0.2", "pass"],
    ]


def test_failing_run_shows_fail_banner_and_failing_criterion():
    res = make_results(n_examples=1)
    res.summary = make_summary(verdict="fail")
    page = Page(render_html(res))
    text = page.section("verdict")
    assert "FAIL: at least one acceptance criterion does not hold" in text
    assert "PASS" not in text and "disagrees" not in text
    nll = rows_by_first_cell(page.table_with("verdict", "criterion"))["nll"]
    assert nll[-1].text == "FAIL" and "fail-cell" in nll[-1].classes


def test_verdict_contradicting_criteria_is_flagged():
    res = RunResults(summary=make_summary())
    res.summary["acceptance"][0]["passed"] = False
    assert "disagrees with the acceptance criteria" in render_html(res)


def test_acceptance_ci_comes_from_the_criterion_when_given():
    summary = make_summary()
    summary["acceptance"][0]["ci"] = [0.8123, 0.9456]
    rows = rows_by_first_cell(Page(render_html(RunResults(summary=summary))).table_with(
        "verdict", "criterion"))  # fmt: skip
    assert rows["coverage"][3].text == "[0.8123, 0.9456]"


# --- 2. data ---------------------------------------------------------------------------------


def test_data_section_reports_splits_duplicates_groups_and_target_statistics(full):
    text = full.section("data")
    assert "ab" * 32 in text
    assert "omega_m, sigma_8" in text and "1 \u00d7 32 \u00d7 32" in text
    assert "yes: no group has samples in two splits" in text
    dup = rows_by_first_cell(full.table_with("data", "duplicates"))
    assert {k: v[1].text for k, v in dup.items()} == {
        "train \u2194 test": "0", "train \u2194 calibration": "1", "calibration \u2194 test": "0",
    }  # fmt: skip
    assert "fail-cell" in dup["train \u2194 calibration"][1].classes
    assert "fail-cell" not in dup["train \u2194 test"][1].classes
    assert "may be optimistic" not in text  # no test sample is duplicated
    stats = full.table_with("data", "target")
    assert [c.text for c in stats[0]] == ["split", "target", "mean", "std", "min", "max"]
    assert [c.text for c in stats[5]] == ["test", "omega_m", "0.32", "0.05", "0.1", "0.5"]


def test_duplicates_shared_with_the_test_split_raise_a_warning(clf):
    assert "the test scores may be optimistic" in clf.section("data")
    assert "no groups given" in clf.section("data")


def test_groups_that_are_not_disjoint_are_flagged():
    summary = make_summary()
    summary["data"]["groups_disjoint"] = False
    page = Page(render_html(RunResults(summary=summary)))
    assert "NO: some group has samples in more than one split" in page.section("data")


# --- 3. model and 4. performance -------------------------------------------------------------


def test_model_section_compares_method_settings(full):
    text = full.section("model")
    assert "23,456" in text and "Conv2d(16, 32)" in text
    settings = full.table_with("model", "setting")
    assert [c.text for c in settings[0]] == ["setting", "deep_ensemble", "mc_dropout", "bayes_nuts"]
    rows = rows_by_first_cell(settings)
    assert [c.text for c in rows["members"][1:]] == ["3", "\u2014", "\u2014"]
    assert [c.text for c in rows["train.epochs"][1:]] == ["20", "20", "\u2014"]
    assert [c.text for c in rows["chains"][1:]] == ["\u2014", "\u2014", "2"]


def test_one_performance_table_compares_every_method_and_reference(full):
    tables = full.tables_in("performance")
    assert len(tables) == 1
    rows = tables[0]
    assert [c.text for c in rows[0]] == ["predictor", "rmse \u2193", "nll \u2193", "coverage"]
    labels = [r[0].text.split(" ")[0] for r in rows[1:]]
    assert labels == ["deep_ensemble", "mc_dropout", "bayes_nuts", "climatology", "persistence"]
    summary = make_summary()
    predictors = {**summary["methods"], **summary["reference"]}
    for row, label in zip(rows[1:], labels, strict=True):
        for cell, name in zip(row[1:], ["rmse", "nll", "coverage"], strict=True):
            metric = predictors[label]["metrics"].get(name)
            if metric is None:
                assert cell.text == "\u2014"
            else:
                lo, hi = metric["ci"]
                value = format_number(metric["value"])
                assert cell.text == f"{value} [{format_number(lo)}, {format_number(hi)}]"
    # The best rmse (lowest) is marked, in the primary row; coverage has no direction.
    best = [(i, j) for i, r in enumerate(rows[1:]) for j, c in enumerate(r) if "best" in c.classes]
    assert best == [(0, 1), (0, 2)]
    assert (
        "(reference)" in rows[4][0].text
        and "training mean and standard deviation" in rows[4][0].text
    )


def test_methods_keep_the_protocol_order_from_their_index():
    summary = make_summary()
    summary["methods"]["mc_dropout"]["index"], summary["methods"]["bayes_nuts"]["index"] = 2, 1
    # results.json sorts keys: the dict order is alphabetical, the index is the protocol's.
    summary["methods"] = dict(sorted(summary["methods"].items()))
    page = Page(render_html(RunResults(summary=summary)))
    rows = page.tables_in("performance")[0]
    assert [r[0].text.split(" ")[0] for r in rows[1:4]] == [
        "deep_ensemble",
        "bayes_nuts",
        "mc_dropout",
    ]
    settings = page.table_with("model", "setting")
    assert [c.text for c in settings[0][1:]] == ["deep_ensemble", "bayes_nuts", "mc_dropout"]


def test_best_value_follows_the_metric_direction():
    summary = make_summary()
    summary["methods"]["mc_dropout"]["metrics"]["rmse"]["value"] = 0.01
    page = Page(render_html(RunResults(summary=summary)))
    rows = page.tables_in("performance")[0]
    assert "best" in rows[2][1].classes and "best" not in rows[1][1].classes


def test_legacy_baseline_is_the_reference_row():
    page = Page(render_html(make_legacy_results()))
    rows = page.tables_in("performance")[0]
    assert [r[0].text.split(" ")[0] for r in rows[1:]] == ["deep_ensemble", "baseline"]


# --- 5. calibration and 6. uncertainty -------------------------------------------------------


def test_calibration_settings_per_method(full):
    rows = rows_by_first_cell(full.table_with("calibration", "calibration"))
    assert [c.text for c in rows["quantile"][1:]] == ["1.64", "1.92", "1.21"]
    assert [c.text for c in rows["std_multiplier"][1:]] == ["[1.5, 2.125]", "\u2014", "\u2014"]
    assert [c.text for c in rows["method"][1:]] == ["conformal"] * 3


def test_pit_values_outside_the_unit_interval_are_a_data_error():
    arrays = make_arrays(n_examples=1)
    arrays["methods/mc_dropout/test/pit"] = arrays["test/pit"] + 1.5
    with pytest.raises(DataError, match="mc_dropout: PIT after calibration"):
        render_html(RunResults(summary=make_summary(), arrays=arrays))


def test_uncertainty_section_numbers_come_from_the_arrays(full):
    arrays = make_arrays()
    rows = rows_by_first_cell(full.table_with("uncertainty", "epistemic share"))
    for j, name in enumerate(["omega_m", "sigma_8"]):
        al = float(np.mean(arrays["test/aleatoric_var"][:, j], dtype=np.float64))
        ep = float(np.mean(arrays["test/epistemic_var"][:, j], dtype=np.float64))
        cells = [c.text for c in rows[name][1:]]
        assert cells == [format_number(al), format_number(ep), f"{100 * ep / (al + ep):.1f}%"]


def test_distribution_shift_table(full):
    rows = rows_by_first_cell(full.table_with("uncertainty", "test set"))
    assert list(rows) == ["test (in distribution)", "noise_0.5"]
    shifted = [c.text for c in rows["noise_0.5"]]
    assert shifted[:4] == ["noise_0.5", "300", "0.41", "0.0321"]
    assert shifted[4] == "0.3456 [0.3156, 0.3756]"
    in_dist = [c.text for c in rows["test (in distribution)"]]
    assert in_dist[2] == format_number(float(np.mean(make_arrays()["test/std"], dtype=np.float64)))


# --- 7. attribution and 8. Bayesian diagnostics ----------------------------------------------


def test_attribution_lists_every_method_and_every_check(full):
    text = full.section("attribution")
    assert "integrated_gradients" in text and "saliency" in text
    ig, saliency = full.tables_in("attribution")[1], full.tables_in("attribution")[3]
    checks = rows_by_first_cell(ig)
    assert list(checks) == [
        "completeness", "randomization", "deletion", "insertion", "infidelity", "sensitivity",
        "localization",
    ]  # fmt: skip
    assert [checks["deletion"][i].text for i in (1, 2, 3)] == ["0.27", "0", "pass"]
    assert checks["localization"][1].text == "0.71"
    assert "area_share = 0.25" in checks["localization"][4].text
    assert checks["sensitivity"][3].text == "FAIL"
    assert "fail-cell" in checks["sensitivity"][3].classes
    assert list(rows_by_first_cell(saliency)) == ["localization"]


def test_the_first_attribution_method_leads_whatever_the_key_order():
    summary = make_summary()
    summary["attribution"]["method"] = "saliency"
    arrays = make_arrays(n_examples=1)
    arrays["attribution/maps"] = arrays.pop("attribution/saliency/maps")
    page = Page(render_html(RunResults(summary=summary, arrays=arrays)))
    assert page.alts("attribution") == [
        "saliency: examples: input and attribution",  # its maps only at attribution/maps
        "integrated_gradients: check curves",
        "integrated_gradients: examples: input and attribution",
    ]


def test_bayesian_diagnostics_flag_bad_convergence(full):
    summary_rows = rows_by_first_cell(full.table_with("bayes", "max R-hat"))
    nuts = summary_rows["bayes_nuts"]
    assert [c.text for c in nuts[1:]] == ["1.116", "360", "2"]
    assert all("fail-cell" in c.classes for c in nuts[1:])
    detail = full.table_with("bayes", "quantity")
    assert len(detail) - 1 == MAX_DIAGNOSTIC_ROWS
    assert detail[1][0].text == "w[29]"  # worst R-hat first
    assert "5 more quantities" in full.section("bayes")


def test_posterior_moments_are_listed_when_recorded():
    summary = make_summary()
    for i, row in enumerate(summary["methods"]["bayes_nuts"]["diagnostics"]["table"]):
        row["mean"], row["sd"] = 0.5 + i, 0.01
    page = Page(render_html(RunResults(summary=summary)))
    detail = page.table_with("bayes", "quantity")
    assert [c.text for c in detail[0]] == [
        "quantity", "posterior mean", "posterior sd", "R-hat", "bulk ESS", "tail ESS",
    ]  # fmt: skip
    assert [c.text for c in detail[1][:3]] == ["w[29]", "29.5", "0.01"]


def test_converged_svi_has_no_flags_and_no_divergences(clf):
    svi = rows_by_first_cell(clf.table_with("bayes", "max R-hat"))["svi (bayes_svi)"]
    assert [c.text for c in svi[1:]] == ["1.004", "1800", "n/a"]
    assert not any("fail-cell" in c.classes for c in svi)


# --- 9. reproducibility and 10. checklist ----------------------------------------------------


def test_reproducibility_section(full):
    text = full.section("reproducibility")
    manifest = make_manifest()
    facts = {r[0].text: r[1].text for r in full.table_with("reproducibility", "protocol sha256")}
    assert facts["protocol sha256"] == manifest["protocol_sha256"]
    assert facts["data fingerprint (sha256)"] == manifest["data_fingerprint"]
    assert facts["trustml version"] == "0.1.0"
    assert facts["trustml git commit"] == manifest["git_commit"]
    assert facts["seeds"] == "7" and facts["device"] == "cpu"
    assert facts["MPI world size"] == "2" and facts["wall time"] == "42.5 s"
    assert "trustml evaluate protocol.yaml" in text
    assert "trustml verify reports/synthetic" in text and "trustml report reports/synthetic" in text
    versions = rows_by_first_cell(full.table_with("reproducibility", "version"))
    assert versions["numpy"][1].text == np.__version__
    assert "builtin: cosmology2d" in text


def test_checklist_covers_all_32_items(full):
    rows = full.table_with("checklist", "status")[1:]
    assert [r[0].text for r in rows] == [item.id for item in ITEMS]
    assert len(rows) == 32
    status = {r[0].text: r[3].text for r in rows}
    assert set(status.values()) == {"auto", "author"}  # claims and limitations are given
    for item in ("2a", "2b", "2c", "2d", "2e", "3d", "3e", "5a", "5f", "6b", "7a", "7b", "8a"):
        assert status[item] == "auto", item
    assert status["1a"] == "author" and status["8b"] == "author"
    text = full.section("checklist")
    assert CLAIMS in text and LIMITATIONS in text


def test_checklist_marks_unanswered_items_missing_and_auto_only_when_covered():
    summary = make_summary()
    for key in ("claims", "limitations", "shifts"):
        del summary[key]
    del summary["data"]["duplicates"], summary["data"]["groups_disjoint"]
    page = Page(render_html(RunResults(summary=summary)))
    status = {r[0].text: r[3].text for r in page.table_with("checklist", "status")[1:]}
    assert status["1a"] == "missing" and status["8b"] == "missing"
    assert status["8a"] == "missing"  # no shift results: nothing covers external validity
    assert status["6b"] == "missing"  # no duplicate or group check recorded
    assert status["7b"] == "auto"


def test_empty_results_render_verdict_reproducibility_and_checklist():
    page = Page(render_html(RunResults(summary={})))
    assert page.section_ids == ["verdict", "reproducibility", "checklist"]
    assert "No verdict recorded" in page.visible_text
    status = {r[3].text for r in page.table_with("checklist", "status")[1:]}
    assert status == {"missing"}


# --- robustness ------------------------------------------------------------------------------

EVIL = '<script>alert("x")</script>'


def test_user_strings_are_escaped():
    summary = make_summary(name=EVIL)
    summary["data"]["target_names"] = [EVIL, "b"]
    summary["model"]["summary"] = EVIL
    summary["attribution"]["checks"]["completeness"]["detail"] = EVIL
    summary["methods"][EVIL] = {"method": EVIL, "metrics": {EVIL: {"value": 1.0}}}
    summary["claims"] = EVIL
    summary[EVIL] = EVIL
    res = RunResults(summary=summary, manifest={"command": [EVIL]}, protocol_text=EVIL)
    page_html = render_html(res, outdir=EVIL)
    assert "<script" not in page_html.lower()
    assert EVIL in Page(page_html).visible_text  # shown as text, not run


def test_rebuilt_report_equals_the_original(tmp_path):
    out = make_results(n_examples=2).write(tmp_path / "run")
    original = (out / "report.html").read_bytes()
    (out / "report.html").unlink()
    assert rebuild_report(out) == out / "report.html"
    assert (out / "report.html").read_bytes() == original


@pytest.mark.parametrize("missing", sorted(make_summary()))
def test_missing_summary_key_renders(missing):
    summary = make_summary()
    del summary[missing]
    page = Page(render_html(RunResults(summary=summary)))
    assert page.section_ids[0] == "verdict"
    assert page.section_ids[-2:] == ["reproducibility", "checklist"]


@pytest.mark.parametrize(
    "path",
    [
        ("data", "duplicates"), ("data", "target_stats"), ("data", "groups_disjoint"),
        ("methods", "mc_dropout", "history"), ("methods", "deep_ensemble", "metrics"),
        ("methods", "bayes_nuts", "diagnostics"), ("attribution", "methods"),
        ("attribution", "checks"), ("shifts", "noise_0.5", "metrics"),
    ],
)  # fmt: skip
def test_missing_nested_key_renders(path):
    summary = make_summary()
    node = summary
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    page = Page(render_html(RunResults(summary=summary)))
    assert page.section_ids[-2:] == ["reproducibility", "checklist"]


@pytest.mark.parametrize(
    "missing", ["test/lower", "test/std", "test/pit", "test/pit_raw", "test/aleatoric_var",
                "attribution/target_index", "attribution/saliency/maps", "shifts/noise_0.5/std"]
)  # fmt: skip
def test_missing_optional_array_renders(missing):
    arrays = make_arrays(n_examples=1)
    del arrays[missing]
    page = Page(render_html(RunResults(summary=make_summary(), arrays=arrays)))
    assert all(png.startswith(PNG_MAGIC) for png in page.pngs())


def test_unknown_and_malformed_keys_do_not_break_rendering():
    summary = make_summary()
    summary["future_section"] = {"ood_auroc": 0.97}
    summary["metrics"]["odd"] = {"value": "n/a", "ci": None}
    summary["methods"]["mc_dropout"]["history"]["loss"] = [[1.0, 0.5], [2.0, 1.0, 0.4]]
    summary["methods"]["broken"] = "not a dict"
    summary["attribution"]["methods"]["saliency"]["checks"]["odd"] = [1, 2]
    summary["acceptance"].append("not a dict")
    summary["data"]["splits"]["extra"] = None
    summary["data"]["target_stats"]["test"] = "garbage"
    summary["shifts"]["bad"] = None
    page = Page(render_html(RunResults(summary=summary)))
    assert page.section_ids[-1] == "other"
    text = page.section("other")
    assert "future_section" in text and "0.97" in text
    assert "n/a" in page.section("performance")


@pytest.mark.parametrize(
    ("spatial", "channels", "grid", "slice_note"),
    [
        ((), 12, False, None),  # tabular features
        ((64,), 2, False, None),  # 1D sequences
        ((16, 16), 1, True, None),  # 2D images
        ((6, 16, 16), 2, True, "Central slice: z = 3 of 6"),  # 3D volumes
        ((5, 4, 8, 8), 1, True, "Central slice: t = 2 of 5, z = 2 of 4"),  # 4D
    ],
)
@pytest.mark.parametrize("members", [1, 3])
def test_attribution_of_any_dimension_renders(spatial, channels, grid, slice_note, members):
    arrays = make_arrays(spatial=spatial, n_examples=2, members=members, channels=channels,
                         attribution_methods=("integrated_gradients",))  # fmt: skip
    arrays = {k: v for k, v in arrays.items() if k.startswith("attribution/")}
    summary = make_summary()
    summary = {"data": summary["data"], "attribution": summary["attribution"]}
    del summary["attribution"]["methods"]
    page = Page(render_html(RunResults(summary=summary, arrays=arrays)))
    images = page.pngs("attribution")
    assert len(images) == (1 if grid else 2) + 1  # + the check curves
    assert all(img.startswith(PNG_MAGIC) for img in images)
    text = page.section("attribution")
    assert "Example 1, target omega_m (index 0)" in text
    if grid:
        assert ("standard deviation over them" in text) == (members > 1)
    if slice_note:
        assert slice_note in text


def test_more_examples_than_shown_are_counted(monkeypatch):
    from trustml.report.sections import attribution

    monkeypatch.setattr(attribution, "MAX_EXAMPLES", 2)
    arrays = make_arrays(n_test=10, spatial=(8,), n_examples=5, attribution_methods=("ig",))
    page = Page(render_html(RunResults(summary={}, arrays=arrays)))
    assert "2 of 5 examples shown; all are in arrays.h5 (attribution/maps)" in page.visible_text
    assert len(page.pngs("attribution")) == 2


@pytest.mark.parametrize(
    ("key", "bad", "match"),
    [
        ("attribution/integrated_gradients/maps", np.zeros((3, 4, 1, 8, 9)),
         r"attribution/integrated_gradients/maps'\] has shape"),
        ("attribution/inputs", np.zeros(4), r"attribution/inputs'\] has shape"),
        ("test/mean", np.zeros((7, 2)), r"test/mean'\] has shape \(7, 2\)"),
        ("test/lower", np.zeros((300, 3)), r"test/lower'\] has shape"),
        ("methods/mc_dropout/test/std", np.zeros((300, 3)), r"mc_dropout: std'\] has shape"),
    ],
)  # fmt: skip
def test_inconsistent_arrays_raise_a_data_error_naming_them(key, bad, match):
    arrays = make_arrays(spatial=(8, 8))
    arrays[key] = bad
    with pytest.raises(DataError, match=match):
        render_html(RunResults(summary=make_summary(), arrays=arrays))


# --- figures drawn elsewhere (MPI ranks) --------------------------------------------------------


def test_figures_drawn_in_shares_give_the_same_page():
    from trustml.report.html import draw_figures, figure_jobs

    res = make_results(n_examples=3)
    whole = render_html(res, outdir="x")
    jobs = figure_jobs(res)
    keys = [key for key, _ in jobs]
    assert len(keys) == len(set(keys))
    # A grid of attribution examples is weighed above a one-panel plot.
    assert max(w for _, w in jobs) > 1.0 and min(w for _, w in jobs) == 1.0
    shares = [draw_figures(res, keys[r::3]) for r in range(3)]
    assert [sorted(s) for s in shares] == [sorted(keys[r::3]) for r in range(3)]
    drawn = {k: v for s in shares for k, v in s.items()}
    # Every figure listed is on the page, once: a figure with nothing to draw is not listed.
    assert all(v.startswith("data:image/png;base64,") for v in drawn.values())
    assert len(drawn) == whole.count("data:image/png;base64,") > 5
    assert render_html(res, outdir="x", drawn=drawn) == whole


def test_figures_missing_or_foreign_in_drawn_are_drawn_here():
    from trustml.report.html import draw_figures, figure_jobs

    res = make_results(n_examples=2)
    whole = render_html(res)
    keys = [key for key, _ in figure_jobs(res)]
    some = draw_figures(res, keys[:2])
    # A key for a figure this page does not have (another run's) is ignored, not used.
    foreign = {"attribution/not_a_method/checks": "data:image/png;base64,AAAA"}
    assert render_html(res, drawn={**some, **foreign}) == whole


def test_figure_keys_are_stable_names_in_page_order():
    from trustml.report.html import figure_jobs

    keys = [key for key, _ in figure_jobs(make_results(n_examples=2))]
    assert keys == [
        "model/training_curves",
        "calibration/coverage",
        "calibration/pit",
        "calibration/predicted_vs_true",
        "uncertainty/aleatoric_epistemic",
        "uncertainty/spread_skill",
        "uncertainty/shift",
        "attribution/integrated_gradients/checks",
        "attribution/integrated_gradients/examples",
        "attribution/saliency/examples",  # saliency has no check with a curve
    ]
    clf = [key for key, _ in figure_jobs(make_classification_results())]
    assert clf == [
        "model/training_curves",
        "calibration/reliability",
        "uncertainty/entropy",
        "uncertainty/shift",
    ]
    tabular = make_results(spatial=(), channels=5, n_examples=3)
    examples = [k for k, _ in figure_jobs(tabular) if "/examples" in k]
    assert examples[:3] == [f"attribution/integrated_gradients/examples/{m}" for m in range(3)]
