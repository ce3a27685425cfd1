"""DeepEnsemble inputs (DataLoader, HDF5, torch Dataset), validation, early stopping, save/load."""

import h5py
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import trustml.uq._source as source_module
from trustml.data import HDF5Dataset
from trustml.uq import DeepEnsemble


def _mlp(d_out=2, width=32):
    return nn.Sequential(nn.Linear(1, width), nn.Tanh(), nn.Linear(width, d_out))


@pytest.fixture(scope="module")
def line():
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(200, 1)).astype(np.float32)
    y = (np.sin(x) + 0.1 * rng.normal(size=(200, 1))).astype(np.float32)
    return x, y


def _loader(x, y, seed=0):
    g = torch.Generator().manual_seed(seed)
    return DataLoader(
        TensorDataset(torch.as_tensor(x), torch.as_tensor(y)), 32, shuffle=True, generator=g
    )


@pytest.mark.parametrize("vectorize", [True, False])
def test_dataloader_batches_serve_every_member(line, vectorize):
    x, y = line
    ens = DeepEnsemble(_mlp, members=3, seed=0, vectorize=vectorize)
    ens.fit(_loader(x, y), epochs=15, lr=1e-2, progress=False)
    assert all(h[-1] < h[0] for h in ens.history_["loss"])
    p = ens.predict(x)
    assert np.sqrt(np.mean((p.mean - y) ** 2)) < 0.4
    # the loader fixes the data order, so a loader seeded alike gives the same ensemble
    again = DeepEnsemble(_mlp, members=3, seed=0, vectorize=not vectorize)
    again.fit(_loader(x, y), epochs=15, lr=1e-2, progress=False)
    np.testing.assert_allclose(again.predict(x).member_means, p.member_means, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="validation needs arrays or a dataset"):
        DeepEnsemble(_mlp, members=2).fit(_loader(x, y), validation=0.2)


def test_hdf5_dataset_is_read_in_batches_and_equals_arrays(line, tmp_path, monkeypatch):
    x, y = line
    x = x[:, :, None]  # HDF5 inputs are (N, C, L) or richer
    path = tmp_path / "line.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x, chunks=(16, 1, 1))
        f.create_dataset("y", data=y, chunks=(16, 1))
    ds = HDF5Dataset(path, inputs="/x", targets="/y")
    largest = []
    read = HDF5Dataset.read

    def spy(self, indices):
        largest.append(len(np.asarray(indices)))
        return read(self, indices)

    monkeypatch.setattr(HDF5Dataset, "read", spy)
    monkeypatch.setattr(source_module, "_MOMENT_CHUNK", 64)  # target moments, streamed

    def flat_mlp():
        return nn.Sequential(nn.Flatten(), _mlp())

    kw = {"epochs": 3, "batch_size": 16, "progress": False}
    from_h5 = DeepEnsemble(flat_mlp, members=2, seed=4).fit(ds, **kw)
    from_arrays = DeepEnsemble(flat_mlp, members=2, seed=4).fit(x, y, **kw)
    p_h5 = from_h5.predict(ds, batch_size=50).member_means
    # equal up to the float64 rounding of chunked target moments
    np.testing.assert_allclose(p_h5, from_arrays.predict(x).member_means, rtol=1e-12)
    assert max(largest) == 64  # chunks and minibatches (2 x 16), never the whole set


def test_torch_map_style_dataset_of_pairs(line):
    x, y = line
    pairs = TensorDataset(torch.as_tensor(x), torch.as_tensor(y))
    a = DeepEnsemble(_mlp, members=2, seed=1).fit(pairs, epochs=2, progress=False)
    b = DeepEnsemble(_mlp, members=2, seed=1).fit(x, y, epochs=2, progress=False)
    np.testing.assert_array_equal(a.predict(pairs).member_means, b.predict(x).member_means)


def test_early_stopping_restores_each_members_best_weights():
    rng = np.random.default_rng(3)
    x = rng.uniform(-2, 2, size=(60, 1)).astype(np.float32)
    y = np.sin(x) + 0.3 * rng.normal(size=(60, 1))
    ens = DeepEnsemble(lambda: _mlp(width=128), members=3, seed=0)
    ens.fit(x, y, epochs=300, lr=2e-2, validation=0.3, patience=10, progress=False)
    val = ens.validation_indices_
    assert len(val) == 18 and len(np.intersect1d(val, np.arange(60))) == 18
    history = ens.history_["val_loss"]
    assert any(len(h) < 300 for h in history)  # somebody stopped early
    assert [len(h) for h in history] == [len(h) for h in ens.history_["loss"]]
    p = ens.predict(x[val])
    # validation loss of the returned members, in the standardised units of the history
    z = (y[val][None] - p.member_means) / p.member_stds
    nll = np.log(p.member_stds / ens.target_scale_) + 0.5 * z**2 + 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(nll.mean(axis=(1, 2)), [min(h) for h in history], rtol=1e-5)
    for h in history:
        assert len(h) == 300 or int(np.argmin(h)) == len(h) - 1 - 10


def test_save_load_round_trip(line, tmp_path):
    x, y = line
    ens = DeepEnsemble(_mlp, members=3, seed=0, heteroscedastic=True)
    ens.fit(x, 5.0 + 3.0 * y, epochs=3, validation=0.2, progress=False)
    path = ens.save(tmp_path / "sub" / "ens.pt")
    loaded = DeepEnsemble.load(path, _mlp)
    np.testing.assert_array_equal(loaded.predict(x).member_means, ens.predict(x).member_means)
    np.testing.assert_array_equal(loaded.predict(x).member_stds, ens.predict(x).member_stds)
    assert loaded.history_ == ens.history_
    np.testing.assert_array_equal(loaded.target_scale_, ens.target_scale_)
    np.testing.assert_array_equal(loaded.validation_indices_, ens.validation_indices_)
    assert (loaded.members, loaded.seed, loaded.task) == (3, 0, "regression")
    torch.load(path, weights_only=True)  # plain tensors and containers only
    with pytest.raises(ValueError, match="different architecture.*member 0.*shape"):
        DeepEnsemble.load(path, lambda: _mlp(width=8))
    with pytest.raises(ValueError, match="different architecture.*missing"):
        DeepEnsemble.load(path, lambda: nn.Sequential(nn.Linear(1, 2)))
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a saved DeepEnsemble"):
        DeepEnsemble.load(tmp_path / "junk.pt", _mlp)


def test_save_load_homoscedastic_classification_and_seed_sequence(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 1)).astype(np.float32)
    labels = (x[:, 0] > 0).astype(np.int64)
    seed = np.random.SeedSequence(2**70 + 5)
    clf = DeepEnsemble(_mlp, members=2, task="classification", seed=seed)
    clf.fit(x, labels, epochs=2, progress=False)
    back = DeepEnsemble.load(clf.save(tmp_path / "clf.pt"), _mlp)
    np.testing.assert_array_equal(back.predict(x).member_probs, clf.predict(x).member_probs)
    assert back.seed.entropy == seed.entropy
    homo = DeepEnsemble(lambda: _mlp(1), members=2, seed=0, heteroscedastic=False)
    homo.fit(x, x**2, epochs=2, progress=False)
    back = DeepEnsemble.load(homo.save(tmp_path / "homo.pt"), lambda: _mlp(1))
    np.testing.assert_array_equal(back.predict(x).member_stds, homo.predict(x).member_stds)
