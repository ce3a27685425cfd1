"""results.schema.json: a valid draft 2020-12 schema that accepts what runs write and rejects
what they must not."""

from __future__ import annotations

import copy
import json

import pytest
from _report_data import make_classification_results, make_legacy_summary, make_summary

from trustml.report import RunResults, results_schema

jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture(scope="module")
def validator():
    schema = results_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _canonical(summary: dict) -> dict:
    """The summary as results.json holds it (numpy values and NaN converted)."""
    from trustml.report import json_bytes

    return json.loads(json_bytes(summary))


def test_schema_is_draft_2020_12_and_documents_the_contract():
    schema = results_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    props = schema["properties"]
    for key in ("metrics", "methods", "verdict", "reference", "shifts", "attribution",
                "claims", "limitations", "acceptance", "data"):  # fmt: skip
        assert key in props, key
    assert props["verdict"]["enum"] == ["pass", "fail"]
    assert results_schema() is not results_schema()  # a fresh copy each time


@pytest.mark.parametrize(
    "summary",
    [make_summary(), make_summary(verdict="fail"), make_legacy_summary(),
     make_classification_results().summary],
    ids=["regression", "failing", "legacy", "classification"],
)  # fmt: skip
def test_fixture_summaries_are_valid(validator, summary):
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(_canonical(summary))
    ]
    assert errors == []


def test_written_results_json_is_valid(validator, tmp_path, monkeypatch):
    import trustml.report.html

    monkeypatch.setattr(trustml.report.html, "render_html", lambda r, **kw: "<html></html>")
    res = RunResults(summary=make_summary())
    res.summary["metrics"]["nll"]["ci"] = [float("nan"), 1.0]  # written as null
    out = res.write(tmp_path / "run")
    validator.validate(json.loads((out / "results.json").read_text()))


def _set(summary: dict, path: tuple, value) -> dict:
    s = copy.deepcopy(summary)
    node = s
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return s


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("verdict",), "maybe"),
        (("task",), "segmentation"),
        (("metrics", "rmse", "value"), "0.12"),
        (("metrics", "rmse", "ci"), [0.1]),
        (("metrics", "rmse"), 0.12),
        (("methods", "mc_dropout", "method"), "dropout"),
        (("methods", "mc_dropout", "primary"), "no"),
        (("methods", "bayes_nuts", "diagnostics", "divergences"), -1),
        (("reference", "median"), {"metrics": {}}),
        (("acceptance", 0, "bound"), "around"),
        (("acceptance", 0, "method"), 3),
        (("data", "fingerprint"), "not-a-sha"),
        (("data", "duplicates", "train_test"), -2),
        (("data", "groups_disjoint"), "yes"),
        (("data", "target_stats", "test", "omega_m"), {"mean": 1.0}),
        (("shifts", "noise_0.5", "n"), 2.5),
        (("attribution", "methods", "saliency", "checks", "localization", "passed"), "yes"),
        (("coverage_curve", "nominal"), [1.5]),
        (("claims",), ["a", "list"]),
    ],
)
def test_schema_rejects_malformed_results(validator, path, value):
    bad = _set(_canonical(make_summary()), path, value)
    assert not validator.is_valid(bad)


@pytest.mark.parametrize("key", ["name", "task", "verdict", "metrics"])
def test_schema_requires_the_core_keys(validator, key):
    summary = _canonical(make_summary())
    del summary[key]
    assert not validator.is_valid(summary)


def test_schema_ships_with_the_package():
    from importlib import resources

    assert resources.files("trustml.report").joinpath("results.schema.json").is_file()


def test_schema_documents_the_arrays_of_results_keys():
    from trustml import results_keys as rk
    from trustml.report._schema import arrays_schema

    arrays = results_schema()["$defs"]["arrays"]
    # Out of date? Regenerate with: python -m trustml.report._schema
    assert arrays == arrays_schema()
    documented = {k: (v["x-shape"], v["description"]) for k, v in arrays["properties"].items()}
    assert documented == rk.ARRAYS
    groups = {rk.PRIMARY_TEST, rk.method_test("<label>", primary=False), rk.shift("<name>")}
    groups |= {"shifts/<name>/levels/<j>", "shifts/<name>/levels/<j>/methods/<label>"}
    assert set(arrays["x-groups"]) == groups | {rk.ATTRIBUTION, rk.ACQUISITION}
    # Documentation only: nothing refers to it, so it validates nothing in results.json.
    assert "#/$defs/arrays" not in json.dumps(results_schema())
