import copy
import json

import pytest
import yaml

from trustml.exceptions import ProtocolError
from trustml.protocol import load_protocol, parse_protocol, starter_protocol
from trustml.protocol.schema import Protocol

BASE = {
    "trustml": 1,
    "name": "t",
    "data": {"builtin": "cosmology2d"},
    "task": "regression",
    "model": {"builtin": "cnn"},
}


def with_(path: str, value):
    raw = copy.deepcopy(BASE)
    node = raw
    *parents, last = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return raw


def error_of(raw) -> str:
    with pytest.raises(ProtocolError) as info:
        parse_protocol(raw)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def test_minimal_protocol_gets_defaults():
    p = parse_protocol(BASE)
    assert p.seed == 0 and p.primary.members == 5 and p.calibration.method == "none"
    assert p.metric_names == ["rmse", "mae", "nll", "crps", "coverage", "interval_width"]
    assert p.data.split.train == pytest.approx(0.7)


def test_misspelt_top_level_key_is_named_with_a_suggestion():
    msg = error_of(with_("uncertanity", {"members": 3}))
    assert msg.startswith("uncertanity: unknown key")
    assert "did you mean 'uncertainty'" in msg


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("uncertainty.members", 1, "uncertainty.members: must be >= 2, got 1"),
        (
            "uncertainty.train.epocs",
            3,
            "uncertainty.train.epocs: unknown key; did you mean 'epochs'?",
        ),
        ("uncertainty.method", "bayes", "uncertainty.method: must be one of"),
        ("calibration.alpha", 1.5, "calibration.alpha: must be < 1"),
        ("seed", -3, "seed: must be >= 0, got -3"),
        ("trustml", 2, "trustml: must be one of 1, got 2"),
        ("task", "segmentation", "task: must be one of"),
        (
            "data.split",
            {"train": 0.5, "calibration": 0.1, "test": 0.1},
            "data.split: train + calibration + test must sum to 1",
        ),
        ("data.hdf5", {"path": "f.h5"}, "data: give exactly one of 'builtin' or 'hdf5'"),
        ("model.factory", "pkg.mod.fn", "model: give exactly one of"),
        (
            "metrics",
            ["rmse", "accuracy"],
            "metrics[1]: 'accuracy' does not apply to task 'regression'",
        ),
        ("metrics", ["rmse", "rmse"], "metrics: metrics are listed more than once"),
        (
            "acceptance",
            {"nll": {"max": 1.0}, "ece": {"max": 0.1}},
            "acceptance.ece: not a metric of this protocol",
        ),
        (
            "acceptance",
            {"coverage": {"mni": 0.9}},
            "acceptance.coverage.mni: unknown key; did you mean 'min'?",
        ),
        (
            "acceptance",
            {"coverage": {"min": 0.9, "max": 0.8}},
            "acceptance.coverage: min (0.9) is greater than max (0.8)",
        ),
        ("name", "has space", "name: "),
        ("attribution", {"methods": ["lime"]}, "attribution.methods[0]: must be one of"),
    ],
)
def test_errors_name_the_key_and_the_expectation(path, value, expected):
    assert expected in error_of(with_(path, value))


def test_missing_required_key_and_version():
    raw = copy.deepcopy(BASE)
    del raw["task"]
    assert error_of(raw).startswith("task: required key is missing")
    raw = copy.deepcopy(BASE)
    del raw["trustml"]
    assert error_of(raw).startswith("trustml: required key is missing")
    assert "mapping" in error_of([1, 2])


def test_yaml_syntax_error_gives_the_line(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("trustml: 1\nname: x\ndata: {builtin: cosmology2d\ntask: regression\n")
    with pytest.raises(ProtocolError, match=r"YAML syntax error at line \d+"):
        load_protocol(f)


def test_duplicate_keys_are_rejected(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(BASE) + "seed: 1\nseed: 2\n")
    with pytest.raises(ProtocolError, match="duplicate key 'seed'"):
        load_protocol(f)


def test_yaml_tags_never_construct_objects(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("trustml: 1\nname: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ProtocolError, match="YAML"):
        load_protocol(f)


def test_missing_protocol_file(tmp_path):
    with pytest.raises(ProtocolError, match="protocol file not found"):
        load_protocol(tmp_path / "nope.yaml")


def test_overrides(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(BASE))
    p, _ = load_protocol(f, ["uncertainty.members=7", "uncertainty.train.lr=0.01", "seed=5"])
    assert (p.primary.members, p.primary.train.lr, p.seed) == (7, 0.01, 5)
    with pytest.raises(ProtocolError, match="uncertainty.members: must be >= 2"):
        load_protocol(f, ["uncertainty.members=1"])
    with pytest.raises(ProtocolError, match="key.path=value"):
        load_protocol(f, ["seed"])


def test_starter_and_quickstart_protocols_validate():
    assert isinstance(parse_protocol(yaml.safe_load(starter_protocol())), Protocol)
    p, _ = load_protocol("protocols/quickstart.yaml")
    assert p.primary.method == "deep_ensemble" and p.calibration.method == "conformal"


def test_the_shipped_json_schema_is_current_and_accepts_the_shipped_protocols():
    jsonschema = pytest.importorskip("jsonschema")
    from pathlib import Path

    from trustml.protocol.schema import build_json_schema, protocol_schema

    shipped = protocol_schema()
    assert shipped == json.loads(json.dumps(build_json_schema())), (
        "regenerate: python -m trustml.protocol.schema > trustml/protocol/protocol.schema.json"
    )
    jsonschema.Draft202012Validator.check_schema(shipped)
    validator = jsonschema.Draft202012Validator(shipped)
    root = Path(__file__).resolve().parents[2]
    texts = [starter_protocol()] + [f.read_text() for f in sorted((root / "protocols").glob("*.yaml"))]
    for text in texts:
        raw = yaml.safe_load(text)
        assert not list(validator.iter_errors(raw))
        parse_protocol(raw)  # and trustml agrees
    # A typo'd key and an out-of-range value fail the JSON Schema too.
    bad = with_("uncertainty.membres", 3)
    assert any("membres" in e.message for e in validator.iter_errors(bad))
    assert list(validator.iter_errors(with_("uncertainty.members", 1)))
    # Both spellings of the uncertainty key: one mapping, or a list.
    listed = copy.deepcopy(BASE)
    listed["uncertainty"] = [{"method": "deep_ensemble"}, {"method": "mc_dropout", "samples": 10}]
    assert not list(validator.iter_errors(listed))


@pytest.mark.parametrize(
    ("uncertainty", "expected"),
    [
        ({"method": "mc_dropout", "members": 3}, "uncertainty.members: does not apply to method 'mc_dropout'"),
        ({"method": "deep_ensemble", "chains": 2}, "uncertainty.chains: does not apply"),
        ({"method": "bayes_nuts", "train": {"epochs": 3}}, "uncertainty.train: does not apply"),
        ([{}, {"members": 1}], "uncertainty[1].members: must be >= 2, got 1"),
        ([{}, {"method": "bayes_svi", "guid": "lowrank"}], "uncertainty[1].guid: unknown key; did you mean 'guide'?"),
        ([{}, {}], "uncertainty[1].label: two methods are labelled 'deep_ensemble'"),
        ([], "uncertainty: list should have at least 1 item"),
        ({"method": "bayes_svi", "guide": "full"}, "uncertainty.guide: must be one of 'normal' or 'lowrank', got 'full'"),
    ],
)
def test_uncertainty_method_errors_name_the_key(uncertainty, expected):
    raw = copy.deepcopy(BASE)
    raw["uncertainty"] = uncertainty
    assert error_of(raw).startswith(expected)


def test_acceptance_and_attribution_cross_checks():
    raw = copy.deepcopy(BASE)
    raw["acceptance"] = {"rmse@mc": {"max": 1.0}}
    assert error_of(raw).startswith("acceptance.rmse@mc: no uncertainty method is labelled 'mc'")
    raw["uncertainty"] = [{}, {"method": "mc_dropout", "label": "mc"}]
    assert parse_protocol(raw).methods[1].name == "mc"
    raw = with_("attribution", {"methods": ["saliency"], "checks": ["completeness"]})
    assert error_of(raw).startswith("attribution.checks: 'completeness' checks integrated gradients")
    raw = with_("attribution", {"methods": ["saliency", "saliency"]})
    assert error_of(raw).startswith("attribution.methods: an item is listed more than once")
    raw = with_("data.split", {"gap": 3})
    assert error_of(raw).startswith("data.split.gap: applies to order: temporal only")


def test_set_overrides_reach_into_a_list_of_methods(tmp_path):
    raw = copy.deepcopy(BASE)
    raw["uncertainty"] = [{"members": 3}, {"method": "mc_dropout"}]
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(raw))
    p, _ = load_protocol(f, ["uncertainty.0.members=4", "uncertainty.1.samples=12"])
    assert (p.methods[0].members, p.methods[1].samples) == (4, 12)
    with pytest.raises(ProtocolError, match="must index the list of 2 items"):
        load_protocol(f, ["uncertainty.5.members=4"])
