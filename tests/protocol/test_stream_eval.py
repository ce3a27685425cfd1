"""A test split scored in chunks from staged predictions gives the numbers and arrays of the
in-memory scoring of the same predictions."""

import numpy as np
import pytest

from trustml import results_keys as rk
from trustml.protocol import parse_protocol
from trustml.protocol._fit import Predictions
from trustml.protocol._scoring import _score_method
from trustml.protocol._stream_eval import ArrayStore, score_staged, stream_bytes
from trustml.protocol._stream_predict import create_staged, member_arrays
from trustml.report._stored import StoredArray
from trustml.uq import Predictive


def _protocol(task, method, metrics=None):
    raw = {
        "trustml": 1,
        "name": "stream",
        "seed": 17,
        "device": "cpu",
        "data": {"builtin": "cosmology2d", "options": {"n": 100, "size": 16}},
        "task": task,
        "model": {"builtin": "mlp"},
        "uncertainty": {"members": 3},
        "calibration": {"method": method, "alpha": 0.2},
    }
    if metrics:
        raw["metrics"] = metrics
    return parse_protocol(raw)


def _regression(n, k, d, seed):
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, d))
    means = y[None] + rng.normal(scale=0.6, size=(k, n, d))
    stds = rng.uniform(0.2, 0.9, size=(k, n, d))
    return Predictive.regression(means, stds), y


def _classification(n, k, c, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, size=n)
    logits = rng.normal(scale=2.0, size=(k, n, c))
    logits[:, np.arange(n), labels] += 1.5
    return Predictive.classification(member_logits=logits), labels


def _stage(tmp_path, pred):
    arrays = member_arrays(pred)
    k, n, w = next(iter(arrays.values())).shape
    staged = create_staged(tmp_path / "staged.h5", pred.task, n, k, w, tuple(arrays))
    for a in range(0, n, 300):  # written in pieces, as ranks would
        staged.write(a, {key: v[:, a : a + 300] for key, v in arrays.items()})
    return staged


def _both(tmp_path, protocol, make, chunk_bytes):
    pred_cal, y_cal = make(600, 0)
    pred_test, y_test = make(2100, 1)
    spec = protocol.methods[0]
    part, arrays, _ = _score_method(
        protocol, spec, Predictions(pred_cal, pred_test), y_cal, y_test, rk.PRIMARY_TEST
    )
    store = ArrayStore(tmp_path / "arrays.h5")
    staged = _stage(tmp_path, pred_test)
    spart, sarrays, _ = score_staged(
        protocol, spec, pred_cal, y_cal, staged, y_test, rk.PRIMARY_TEST, store,
        targets=True, chunk_bytes=chunk_bytes,
    )  # fmt: skip
    assert all(isinstance(v, StoredArray) for v in sarrays.values())
    target = rk.path(rk.PRIMARY_TEST, rk.TARGETS if protocol.task == "regression" else rk.LABELS)
    np.testing.assert_array_equal(sarrays.pop(target)[()], y_test)
    assert sorted(sarrays) == sorted(arrays)
    return part, arrays, spart, sarrays


@pytest.mark.parametrize("method", ["conformal", "none", "isotonic"])
def test_regression_matches_in_memory_scoring(tmp_path, method):
    protocol = _protocol("regression", method)

    def make(n, seed):
        return _regression(n, 3, 2, seed)

    # ~10 kB chunks: about 100 samples of 3 members x 2 targets x (mean, std) at a time.
    part, arrays, spart, sarrays = _both(tmp_path, protocol, make, chunk_bytes=10_000)
    if method == "conformal":
        assert spart == part  # everything, bit for bit
        for key, value in arrays.items():
            np.testing.assert_array_equal(sarrays[key][()], value, err_msg=key)
        return
    # Mixture quantiles: bisected to 1e-10, with a stopping rule over the samples in a chunk.
    for key, value in arrays.items():
        np.testing.assert_allclose(sarrays[key][()], value, rtol=0, atol=1e-9, err_msg=key)
        if not key.endswith(("lower", "upper")):
            np.testing.assert_array_equal(sarrays[key][()], value, err_msg=key)
    assert spart["uncertainty"] == part["uncertainty"]
    assert spart["calibration"] == part["calibration"]
    assert spart["coverage_curve"] == part["coverage_curve"]
    for name, entry in part["metrics"].items():
        got = spart["metrics"][name]
        if name in ("rmse", "nll", "crps"):  # no interval in them: exact
            assert got == entry, name
        else:
            assert got["value"] == pytest.approx(entry["value"], abs=1e-9), name
            assert got["ci"] == pytest.approx(entry["ci"], abs=1e-9), name


@pytest.mark.parametrize("method", ["temperature", "conformal"])
def test_classification_matches_in_memory_scoring(tmp_path, method):
    protocol = _protocol("classification", method)

    def make(n, seed):
        return _classification(n, 4, 5, seed)

    part, arrays, spart, sarrays = _both(tmp_path, protocol, make, chunk_bytes=30_000)
    assert spart == part
    if method == "conformal":
        assert part["calibration"]["mean_set_size"] > 1.0
    for key, value in arrays.items():
        np.testing.assert_array_equal(sarrays[key][()], value, err_msg=key)


def test_threshold_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("TRUSTML_STREAM_BYTES", raising=False)
    assert stream_bytes() == 1 << 30
    monkeypatch.setenv("TRUSTML_STREAM_BYTES", "0")
    assert stream_bytes() == 0
    monkeypatch.setenv("TRUSTML_STREAM_BYTES", "lots")
    with pytest.raises(ValueError, match="TRUSTML_STREAM_BYTES='lots'"):
        stream_bytes()
