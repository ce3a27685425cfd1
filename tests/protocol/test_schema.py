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
    # Every registered metric of the task, in the registry's order (as before the registry
    # became the one source of the names).
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


# -- numbers: no bool for an integer, nothing non-finite ------------------------------------
@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("trustml", True, "trustml: must be 1 (the schema version, an integer), got true"),
        ("trustml", 1.0, "trustml: must be 1 (the schema version, an integer), got 1.0"),
        ("seed", True, "seed: must be an integer, got true (a bool)"),
        ("seed", 5.0, "seed: must be an integer, got 5.0"),
        ("uncertainty.members", True, "uncertainty.members: must be an integer, got true (a bool)"),
        ("uncertainty.train.epochs", True, "uncertainty.train.epochs: must be an integer, got true (a bool)"),
        ("uncertainty.train.batch_size", False, "uncertainty.train.batch_size: must be an integer, got false (a bool)"),
        ("attribution.target", False, "attribution.target: must be an integer, got false (a bool)"),
        ("attribution.n_steps", True, "attribution.n_steps: must be an integer, got true (a bool)"),
        ("uncertainty.train.lr", True, "uncertainty.train.lr: must be a number, got true (a bool)"),
        ("calibration.alpha", False, "calibration.alpha: must be a number, got false (a bool)"),
    ],
)
def test_a_bool_is_not_a_number(path, value, expected):
    assert error_of(with_(path, value)) == expected


def test_bool_holes_in_nested_integer_keys():
    raw = with_("data.split", {"order": "temporal", "gap": True})
    assert error_of(raw) == "data.split.gap: must be an integer, got true (a bool)"
    raw = copy.deepcopy(BASE)
    raw["uncertainty"] = {"method": "bayes_nuts", "chains": True}
    assert error_of(raw) == "uncertainty.chains: must be an integer, got true (a bool)"
    raw["uncertainty"] = {"method": "mc_dropout", "samples": True}
    assert error_of(raw) == "uncertainty.samples: must be an integer, got true (a bool)"
    raw = with_("acceptance", {"coverage": {"min": True}})
    assert error_of(raw) == "acceptance.coverage.min: must be a number, got true (a bool)"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(
    "path",
    [
        "acceptance.coverage.min",
        "acceptance.coverage.max",
        "uncertainty.train.lr",
        "uncertainty.train.weight_decay",
        "calibration.alpha",
        "data.split.train",
        "data.split.test",
    ],
)
def test_non_finite_numbers_are_rejected_naming_the_key(path, bad):
    if path.startswith("acceptance."):
        _, metric, bound = path.split(".")
        raw = with_("acceptance", {metric: {bound: bad}})
    else:
        raw = with_(path, bad)
    assert error_of(raw) == f"{path}: must be a finite number, got {bad!r}"


def test_non_finite_prior_scale_and_yaml_spellings(tmp_path):
    raw = copy.deepcopy(BASE)
    raw["uncertainty"] = {"method": "bayes_svi", "prior_scale": float("inf")}
    assert error_of(raw) == "uncertainty.prior_scale: must be a finite number, got inf"
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(BASE) + "acceptance: {coverage: {min: .nan}}\n")
    with pytest.raises(ProtocolError) as info:
        load_protocol(f)
    assert str(info.value) == "acceptance.coverage.min: must be a finite number, got nan"
    f.write_text(yaml.safe_dump(BASE).replace("trustml: 1", "trustml: true"))
    with pytest.raises(ProtocolError, match="^trustml: must be 1 .*got true$"):
        load_protocol(f)


def test_plain_yaml_numbers_stay_valid(tmp_path):
    # Ints as plain YAML ints, floats in every YAML spelling (PyYAML reads `1e-3` as a string).
    f = tmp_path / "p.yaml"
    f.write_text(
        yaml.safe_dump(BASE)
        + "seed: 12\nuncertainty: {members: 3, train: {epochs: 2, batch_size: 8, lr: 1e-3, "
        "weight_decay: 0}}\ncalibration: {method: conformal, alpha: 0.1}\n"
        "acceptance: {coverage: {min: 0, max: 1}}\n"
    )
    p, _ = load_protocol(f)
    assert (p.seed, p.primary.members, p.primary.train.lr) == (12, 3, 0.001)
    assert p.primary.train.weight_decay == 0.0 and p.acceptance["coverage"].max == 1.0
    assert load_protocol(f, ["seed=7", "uncertainty.train.lr=2.0e-3"])[0].seed == 7
    # A protocol built in Python may hold numpy numbers; their bools are still bools.
    import numpy as np

    p = parse_protocol(with_("uncertainty", {"members": np.int64(4), "train": {"lr": np.float32(0.5)}}))
    assert p.primary.members == 4 and type(p.primary.members) is int
    assert error_of(with_("seed", np.bool_(True))) == "seed: must be an integer, got true (a bool)"


# -- YAML aliases -----------------------------------------------------------------------------
def _alias_bomb(levels: int = 9) -> str:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        prev, name = chr(96 + i), chr(97 + i)
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_before_it_is_expanded(tmp_path):
    f = tmp_path / "bomb.yaml"
    f.write_text("trustml: 1\nname: bomb\n" + _alias_bomb())  # 9**9 strings once expanded
    with pytest.raises(ProtocolError) as info:
        load_protocol(f)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{f}: YAML aliases expand to more than 100,000 nodes")
    # Just over the bound fails too, just under it loads.
    from trustml.protocol.schema import MAX_YAML_NODES, load_yaml

    with pytest.raises(ProtocolError, match="aliases"):
        load_yaml(_alias_bomb(6), source="six")  # 9**6 = 531441 leaves
    assert len(load_yaml(_alias_bomb(5), source="five")["e"]) == 9  # 9**5 = 59049 leaves
    assert MAX_YAML_NODES == 100_000


def test_recursive_aliases_are_refused(tmp_path):
    from trustml.protocol.schema import load_yaml

    for text in ("a: &a [1, *a]\n", "a: &a {b: {c: *a}}\n"):
        with pytest.raises(ProtocolError) as info:
            load_yaml(text, source="loop.yaml")
        assert str(info.value).startswith("loop.yaml: a YAML alias at line 1 refers to a node")


def test_ordinary_aliases_and_merge_keys_still_work(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(
        "trustml: 1\nname: aliases\ntask: regression\n"
        "data: {builtin: cosmology2d, options: {n: 200, size: 16}}\n"
        "model: {builtin: cnn}\n"
        "uncertainty:\n"
        "  - {method: deep_ensemble, members: 3, train: &train {epochs: 3, batch_size: 16}}\n"
        "  - {method: mc_dropout, label: mc, train: *train}\n"
        "  - {<<: {method: mc_dropout, samples: 10}, label: mc2, train: {<<: *train, epochs: 4}}\n"
    )
    p, text = load_protocol(f)
    assert text == f.read_text()
    assert p.methods[0].train == p.methods[1].train
    assert p.methods[1].train.epochs == 3 and p.methods[1].train.batch_size == 16
    assert (p.methods[2].method, p.methods[2].samples, p.methods[2].train.epochs) == (
        "mc_dropout",
        10,
        4,
    )
    assert p.methods[2].train.batch_size == 16
    # A merged key may be overridden; an explicit key given twice is still a duplicate.
    f.write_text(f.read_text() + "calibration: {<<: {method: none}, alpha: 0.2, alpha: 0.3}\n")
    with pytest.raises(ProtocolError, match="duplicate key 'alpha'"):
        load_protocol(f)


# -- --set overrides are carried by the saved text ----------------------------------------------
def test_overrides_are_in_the_returned_text_and_it_parses_to_the_same_protocol(tmp_path):
    from trustml.protocol import load_yaml

    raw = copy.deepcopy(BASE)
    raw["uncertainty"] = [{"members": 3, "train": {"lr": 0.01}}, {"method": "mc_dropout"}]
    raw["acceptance"] = {"rmse": {"max": 2.0}}
    f = tmp_path / "p.yaml"
    f.write_text("# my protocol\n" + yaml.safe_dump(raw, sort_keys=False))
    overrides = ["seed=5", "uncertainty.1.samples=12", "acceptance.rmse.max=1.5"]
    p, text = load_protocol(f, overrides)
    assert (p.seed, p.methods[1].samples, p.acceptance["rmse"].max) == (5, 12, 1.5)
    first, *rest = text.splitlines()
    assert first == (
        f"# trustml: this protocol is {f} with --set seed=5 --set uncertainty.1.samples=12 "
        "--set acceptance.rmse.max=1.5 applied"
    )
    again = parse_protocol(load_yaml("\n".join(rest)))
    assert again == p
    assert parse_protocol(load_yaml(text)) == p  # the header is a comment
    saved = yaml.safe_load(text)
    assert saved["seed"] == 5 and saved["uncertainty"][1]["samples"] == 12
    # Saved and loaded again (as 'trustml verify' does with protocol.yaml): same protocol, and
    # without overrides now the text is kept byte for byte.
    g = tmp_path / "protocol.yaml"
    g.write_bytes(text.encode("utf-8"))
    p2, text2 = load_protocol(g)
    assert p2 == p and text2 == text


def test_without_overrides_the_text_is_the_file_byte_for_byte(tmp_path):
    f = tmp_path / "p.yaml"
    original = (
        "# keep me\ntrustml:   1   # version\nname: t\n\n\ndata: {builtin: cosmology2d}\n"
        "task: 'regression'\nmodel:\n    builtin: cnn   \nseed: 0x10\n"
    )
    f.write_bytes(original.encode("utf-8"))
    for overrides in (None, []):
        _, text = load_protocol(f, overrides)
        assert text == original


def test_override_header_is_one_line_and_shared_values_are_written_out(tmp_path):
    from trustml.protocol import load_yaml

    f = tmp_path / "p.yaml"
    f.write_text(
        yaml.safe_dump(BASE)
        + "uncertainty:\n  - {train: &t {epochs: 2}}\n  - {method: mc_dropout, train: *t}\n"
    )
    p, text = load_protocol(f, ["claims=first line\n  second line", "seed=3"])
    assert text.splitlines()[0].startswith("# trustml: this protocol is")
    assert "--set claims=first line second line --set seed=3 applied" in text.splitlines()[0]
    assert "&" not in text and "*" not in text  # no anchors: shared values written in full
    assert parse_protocol(load_yaml(text)) == p and p.claims == "first line second line"
