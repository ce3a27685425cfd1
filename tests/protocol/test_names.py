"""Every name a protocol may use has one definition, and everything that dispatches on it agrees.

The schema's enums (pydantic models and the shipped JSON Schema), the registries of the layers
below (metrics, attribution methods, builtin models) and the runner's dispatch tables
(uncertainty methods, memory estimates, calibrators, attribution checks) are compared here.
"""

from __future__ import annotations

import json

import pytest

from trustml.metrics import METRICS, TASKS, metric_names
from trustml.protocol import (
    _attribution,
    _calibrate,
    _methods,
    _names,
    _sizes,
    parse_protocol,
    starter_protocol,
)
from trustml.protocol.schema import (
    DEFAULT_SAMPLES,
    UNCERTAINTY_KEYS,
    build_json_schema,
    protocol_schema,
)

BASE = {
    "trustml": 1,
    "name": "names",
    "data": {"builtin": "cosmology2d"},
    "task": "regression",
    "model": {"builtin": "cnn"},
}


def _enum(schema: dict, *path: str) -> list[str]:
    """The enum of the property at ``path``, following ``$ref`` and lists' ``items``."""
    node: dict = schema
    for part in path:
        node = node["properties"][part]
        node = next((b for b in node.get("anyOf", [node]) if b.get("type") != "null"), node)
        node = node.get("items", node)
        if "$ref" in node:
            node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node["enum"]


def _method_enum(schema: dict) -> list[str]:
    spec = schema["$defs"]["UncertaintySpec"]
    return spec["properties"]["method"]["enum"]


# -- metrics: the METRICS registry -------------------------------------------------------------


def test_the_schema_accepts_exactly_the_registered_metrics():
    assert list(_names.ALL_METRICS) == metric_names()
    assert _enum(build_json_schema(), "metrics") == metric_names()


@pytest.mark.parametrize("task", TASKS)
def test_default_metrics_are_every_registered_metric_of_the_task(task):
    raw = {**BASE, "task": task}
    if task == "classification":
        raw["data"] = {"builtin": "digits"}
    assert parse_protocol(raw).metric_names == metric_names(task)
    assert list(_names.task_metrics(task)) == metric_names(task)


def test_a_metric_of_the_other_task_is_refused_naming_the_registered_ones():
    wrong = next(n for n in metric_names() if not METRICS.get(n).applies_to("regression"))
    with pytest.raises(Exception, match=rf"metrics\[0\]: '{wrong}' does not apply") as info:
        parse_protocol({**BASE, "metrics": [wrong]})
    assert ", ".join(metric_names("regression")) in str(info.value)


# -- uncertainty methods: one tuple, three tables keyed by it ------------------------------------


def test_uncertainty_methods_have_a_runner_and_a_memory_estimate_each():
    names = list(_names.UNCERTAINTY_METHODS)
    assert _method_enum(build_json_schema()) == names
    assert list(_methods.METHODS) == names
    assert list(_sizes.METHOD_BYTES) == names


def test_per_method_keys_and_defaults_name_only_known_methods():
    known = set(_names.UNCERTAINTY_METHODS)
    for key, methods in UNCERTAINTY_KEYS.items():
        assert set(methods) <= known, key
    assert set(DEFAULT_SAMPLES) <= known
    # Methods that draw posterior-predictive samples at predict time take the samples key.
    for name, method in _methods.METHODS.items():
        if method.predict_samples:
            assert name in UNCERTAINTY_KEYS["samples"]


# -- calibration methods: the calibrator table plus "none" ---------------------------------------


def test_calibration_methods_are_none_and_the_calibrator_table():
    names = _names.CALIBRATION_METHODS
    assert _enum(build_json_schema(), "calibration", "method") == list(names)
    assert set(names) == {*_calibrate.CALIBRATORS, _names.NO_CALIBRATION}
    for name, entry in _calibrate.CALIBRATORS.items():
        assert set(entry.calibrator.tasks) <= set(TASKS), name


@pytest.mark.parametrize("task", TASKS)
def test_every_task_has_some_calibration_besides_none(task):
    available = _calibrate.available(task)
    assert available[-1] == _names.NO_CALIBRATION and len(available) > 1


# -- attribution: the explain layer's method registry, the stage's check table -------------------


def test_attribution_methods_are_the_explain_registry():
    from trustml.explain import METHODS  # imports Captum: compared here, not in the schema

    assert sorted(_names.ATTRIBUTION_METHODS) == METHODS.names()
    assert _enum(build_json_schema(), "attribution", "methods") == list(_names.ATTRIBUTION_METHODS)


def test_attribution_checks_are_the_stage_dispatch_table():
    assert list(_attribution.CHECKS) == list(_names.ATTRIBUTION_CHECKS)
    assert _enum(build_json_schema(), "attribution", "checks") == list(_names.ATTRIBUTION_CHECKS)


# -- builtin models: the models registry ---------------------------------------------------------


def test_builtin_models_are_the_models_registry():
    from trustml.models import model_names

    assert sorted(_names.MODEL_BUILTINS) == sorted(model_names())
    assert _enum(build_json_schema(), "model", "builtin") == list(_names.MODEL_BUILTINS)


def test_explainable_uncertainty_quantities_are_the_explain_packages():
    from trustml.explain import UNCERTAINTY_QUANTITIES

    assert _names.UNCERTAINTY_QUANTITIES == tuple(UNCERTAINTY_QUANTITIES)


def test_ladder_corruptions_are_the_corruptions_registry():
    from trustml.data import CORRUPTIONS

    assert sorted(_names.CORRUPTION_NAMES) == sorted(CORRUPTIONS.names())


def test_the_shipped_json_schema_carries_the_same_names():
    assert protocol_schema() == json.loads(json.dumps(build_json_schema())), (
        "regenerate: python -m trustml.protocol.schema > trustml/protocol/protocol.schema.json"
    )


def _listed_in_comment(text: str, line_start: str) -> set[str]:
    """The ``a | b | c`` names in the comment of the starter protocol's line ``line_start``."""
    line = next(x for x in text.splitlines() if x.strip().startswith(line_start))
    return set(line.split("#", 1)[1].replace("|", " ").split())


def test_the_starter_protocol_lists_every_method():
    text = starter_protocol()
    assert _listed_in_comment(text, "method: deep_ensemble") == set(_names.UNCERTAINTY_METHODS)
    assert _listed_in_comment(text, "calibration:") == set(_names.CALIBRATION_METHODS)


def test_campaign_strategies_are_the_acquire_strategies_that_score_predictions():
    from trustml import acquire

    scoring = {
        name: acquire.STRATEGIES.get(name).input
        for name in acquire.STRATEGIES.in_order()
        if acquire.STRATEGIES.get(name).input != "scores"
    }
    assert set(_names.ACQUISITION_STRATEGIES) == set(scoring)
    takes = {"classification": ("probs", "any"), "regression": ("gaussian", "any")}
    for task in TASKS:
        want = [n for n, kind in scoring.items() if kind in takes[task]]
        assert sorted(_names.acquisition_strategies(task)) == sorted(want)
    schema = build_json_schema()
    assert sorted(_enum(schema, "acquisition", "strategies")) == sorted(
        _names.ACQUISITION_STRATEGIES
    )
