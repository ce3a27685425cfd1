"""report.html: self-contained, escaped, complete, and tolerant of missing or unknown sections."""

from __future__ import annotations

import base64
from html.parser import HTMLParser

import numpy as np
import pytest
from _report_data import make_arrays, make_manifest, make_results, make_summary

from trustml.exceptions import DataError
from trustml.report import RunResults, rebuild_report, render_html

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Collect tags, attributes, section ids and visible text of a page."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def attr_values(self, tag: str, attr: str) -> list[str]:
        return [a[attr] or "" for t, a in self.tags if t == tag and attr in a]

    @property
    def section_ids(self) -> list[str]:
        return [a.get("id") or "" for t, a in self.tags if t == "section"]

    @property
    def visible_text(self) -> str:
        return " ".join(" ".join(self.text).split())


def _images(page: _Page) -> list[bytes]:
    srcs = page.attr_values("img", "src")
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    return [base64.b64decode(s.split(",", 1)[1]) for s in srcs]


def test_report_is_self_contained(quickstart_html):
    page = _Page(quickstart_html)
    srcs = page.attr_values("img", "src")
    assert srcs and all(s.startswith("data:") for s in srcs)
    for tag, attrs in page.tags:
        for name in ("src", "href", "action", "data", "poster"):
            value = (attrs.get(name) or "").strip().lower()
            assert not value.startswith(("http://", "https://", "//")), (tag, name, value)
        assert not (tag == "script" and "src" in attrs), attrs
        rel = (attrs.get("rel") or "").lower()
        assert not (tag == "link" and "stylesheet" in rel), attrs
    assert "@import" not in quickstart_html
    assert "url(" not in quickstart_html


def test_quickstart_report_is_under_5_mb(quickstart_html):
    assert len(quickstart_html.encode("utf-8")) < 5 * 1024 * 1024


def test_every_figure_is_a_png(quickstart_html):
    images = _images(_Page(quickstart_html))
    # training curves + coverage curve + predicted-vs-true + 16 attribution examples
    assert len(images) == 3 + 16
    assert all(img.startswith(PNG_MAGIC) for img in images)


def test_sections_appear_in_order(quickstart_html):
    assert _Page(quickstart_html).section_ids == [
        "verdict", "data", "model", "performance", "calibration", "attribution", "reproduce",
    ]  # fmt: skip


def test_report_states_verdict_metrics_and_criteria(quickstart_html):
    text = _Page(quickstart_html).visible_text
    assert "PASS" in text
    summary = make_summary()
    for name, metric in summary["metrics"].items():
        assert name in text
        assert f"{metric['value']:.4g}" in text
        assert f"[{metric['ci'][0]:.4g}, {metric['ci'][1]:.4g}]" in text
    for metric in summary["baseline_metrics"].values():
        assert f"{metric['value']:.4g}" in text
    assert "\u2265 0.85" in text and "\u2264 1" in text
    for check in summary["attribution"]["checks"]:
        assert check in text


def test_report_states_data_model_and_provenance(quickstart_html):
    text = _Page(quickstart_html).visible_text
    summary, manifest = make_summary(), make_manifest()
    assert summary["data"]["fingerprint"] in text
    assert "omega_m, sigma_8" in text
    assert "1 \u00d7 32 \u00d7 32" in text
    assert "23,456" in text
    assert "trustml verify reports/quickstart" in text
    assert manifest["protocol_sha256"] in text
    assert "trustml evaluate protocol.yaml" in text
    assert "builtin: cosmology2d" in text


def test_failing_run_shows_fail_banner_and_failing_criterion():
    res = make_results(n_examples=1)
    res.summary = make_summary(verdict="fail")
    page = _Page(render_html(res))
    text = page.visible_text
    assert "FAIL: at least one acceptance criterion does not hold" in text
    assert "PASS" not in text
    assert "disagrees" not in text
    assert any("banner fail" in (a.get("class") or "") for _, a in page.tags)


def test_verdict_contradicting_criteria_is_flagged():
    res = RunResults(summary=make_summary())
    res.summary["acceptance"][0]["passed"] = False
    assert "disagrees with the acceptance criteria" in render_html(res)


def test_acceptance_ci_comes_from_the_criterion_when_given():
    summary = make_summary()
    summary["acceptance"][0]["ci"] = [0.8123, 0.9456]
    page_html = render_html(RunResults(summary=summary))
    verdict = _Page(page_html.split('<section id="data"')[0]).visible_text
    assert "[0.8123, 0.9456]" in verdict  # the criterion's own interval
    assert "[0.87, 0.93]" not in verdict
    assert "[-0.61, -0.52]" in verdict  # the nll criterion falls back to metrics.nll.ci


EVIL = '<script>alert("x")</script>'


def test_user_strings_are_escaped():
    summary = make_summary(name=EVIL)
    summary["data"]["target_names"] = [EVIL, "b"]
    summary["model"]["summary"] = EVIL
    summary["attribution"]["checks"]["completeness"]["detail"] = EVIL
    summary[EVIL] = EVIL
    res = RunResults(summary=summary, manifest={"command": [EVIL]}, protocol_text=EVIL)
    page_html = render_html(res, outdir=EVIL)
    assert "<script" not in page_html.lower()
    assert EVIL in _Page(page_html).visible_text  # shown as text, not run
    assert not any(tag == "script" for tag, _ in _Page(page_html).tags)


def test_rebuilt_report_equals_the_original(tmp_path):
    out = make_results(n_examples=2).write(tmp_path / "run")
    original = (out / "report.html").read_bytes()
    (out / "report.html").unlink()
    assert rebuild_report(out) == out / "report.html"
    assert (out / "report.html").read_bytes() == original


def test_empty_results_render_verdict_and_reproduce_only():
    page = _Page(render_html(RunResults(summary={})))
    assert page.section_ids == ["verdict", "reproduce"]
    assert "No verdict recorded" in page.visible_text


@pytest.mark.parametrize(
    "missing",
    [
        "metrics", "baseline_metrics", "acceptance", "data", "model", "uncertainty",
        "calibration", "coverage_curve", "attribution", "verdict", "seed", "task", "name",
    ],
)  # fmt: skip
def test_missing_optional_summary_key_renders(missing):
    summary = make_summary()
    del summary[missing]
    page = _Page(render_html(RunResults(summary=summary)))
    assert page.section_ids[0] == "verdict" and page.section_ids[-1] == "reproduce"


@pytest.mark.parametrize(
    "missing", ["test/lower", "test/upper", "test/std", "attribution/target_index"]
)
def test_missing_optional_array_renders(missing):
    arrays = make_arrays(n_examples=1)
    del arrays[missing]
    page = _Page(render_html(RunResults(summary=make_summary(), arrays=arrays)))
    assert len(_images(page)) == 4


def test_baseline_column_only_when_present():
    summary = make_summary()
    assert "baseline 95% CI" in render_html(RunResults(summary=summary))
    del summary["baseline_metrics"]
    assert "baseline 95% CI" not in render_html(RunResults(summary=summary))


def test_unknown_and_malformed_keys_do_not_break_rendering():
    summary = make_summary()
    summary["future_section"] = {"ood_auroc": 0.97}
    summary["metrics"]["odd"] = {"value": "n/a", "ci": None}
    summary["uncertainty"]["history"]["loss"] = [[1.0, 0.5], [2.0, 1.0, 0.4]]  # ragged members
    summary["acceptance"].append("not a dict")
    summary["data"]["splits"]["extra"] = None
    text = _Page(render_html(RunResults(summary=summary))).visible_text
    assert "future_section" in text and "0.97" in text
    assert "odd" in text and "n/a" in text


def test_classification_arrays_give_a_reliability_diagram():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 3))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    arrays = {"test/probs": probs, "test/labels": rng.integers(0, 3, size=200)}
    summary = {"name": "clf", "task": "classification", "verdict": "pass"}
    page = _Page(render_html(RunResults(summary=summary, arrays=arrays)))
    assert len(_images(page)) == 1
    assert "Reliability" in page.visible_text or "confidence" in page.visible_text


@pytest.mark.parametrize(
    ("spatial", "channels", "slice_note"),
    [
        ((), 12, None),  # tabular features
        ((64,), 2, None),  # 1D sequences
        ((16, 16), 1, None),  # 2D images
        ((6, 16, 16), 2, "central slice: z = 3 of 6"),  # 3D volumes
        ((5, 4, 8, 8), 1, "central slice: t = 2 of 5, z = 2 of 4"),  # 4D time series of volumes
    ],
)
@pytest.mark.parametrize("members", [1, 3])
def test_attribution_of_any_dimension_renders(spatial, channels, slice_note, members):
    arrays = make_arrays(spatial=spatial, n_examples=2, members=members, channels=channels)
    arrays = {k: v for k, v in arrays.items() if k.startswith("attribution/")}
    summary = {k: v for k, v in make_summary().items() if k in ("data", "attribution")}
    page = _Page(render_html(RunResults(summary=summary, arrays=arrays)))
    images = _images(page)
    assert len(images) == 2 and all(img.startswith(PNG_MAGIC) for img in images)
    text = page.visible_text
    assert "Example 1, target omega_m (index 0)" in text
    assert ("standard deviation over the 3 members" in text) == (members > 1)
    if slice_note:
        assert slice_note in text


def test_more_examples_than_shown_are_counted(monkeypatch):
    import trustml.report.html as report_html

    monkeypatch.setattr(report_html, "MAX_EXAMPLES", 2)
    arrays = make_arrays(n_test=10, spatial=(8,), n_examples=5)
    page = _Page(render_html(RunResults(summary={}, arrays=arrays)))
    assert "2 of 5 examples shown" in page.visible_text
    assert len(_images(page)) == 1 + 2  # predicted-vs-true + 2 examples


@pytest.mark.parametrize(
    ("key", "bad", "match"),
    [
        ("attribution/maps", np.zeros((3, 4, 1, 8, 9)), r"attribution/maps'\] has shape"),
        ("attribution/inputs", np.zeros(4), r"attribution/inputs'\] has shape"),
        ("test/mean", np.zeros((7, 2)), r"test/mean'\] has shape \(7, 2\)"),
        ("test/lower", np.zeros((300, 3)), r"test/lower'\] has shape"),
    ],
)
def test_inconsistent_arrays_raise_a_data_error_naming_them(key, bad, match):
    arrays = make_arrays(spatial=(8, 8))
    arrays[key] = bad
    with pytest.raises(DataError, match=match):
        render_html(RunResults(summary=make_summary(), arrays=arrays))
