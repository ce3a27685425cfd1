"""Data layer: HDF5 (one file or many shards) and in-memory datasets, builtins, splits, fingerprints.

Datasets with a known ground truth (the ``climate`` and ``jets`` builtins) also serve masks of
where the signal is, ``read_masks(indices)``, for checking explanations.

Every dataset implements :class:`BaseDataset`: ``read(indices)`` and ``iter_batches`` return
float32 inputs ``(n, *input_shape)`` and targets ``(n, D)`` float32 or ``(n,)`` int64, read in
chunks; ``fingerprint()`` and ``validate()`` stream over the whole dataset with bounded memory.
Every problem with the data raises :class:`DataError` with a one-line message naming the file
(or source) and the array.

Examples
--------
>>> from trustml.data import load_builtin, split_indices
>>> ds = load_builtin("cosmology2d", seed=1234, n=200)
>>> parts = split_indices(ds.n_samples, {"train": 0.7, "calibration": 0.15, "test": 0.15}, seed=1234)
>>> x, y = ds.read(parts["test"])
>>> sst = load_builtin("enso", seed=0)  # time-ordered windows: split them in time
>>> parts = temporal_split_indices(sst.n_samples, {"train": 0.7, "calibration": 0.15, "test": 0.15}, gap=12)
"""

from __future__ import annotations

from trustml.data._array import ArrayDataset
from trustml.data._base import BaseDataset
from trustml.data._blocks import epoch_windows, read_ahead, share_range, share_schedule
from trustml.data._builtin import builtin_names, export_builtin, load_builtin
from trustml.data._hdf5 import HDF5Dataset
from trustml.data._sharded import ShardedHDF5Dataset
from trustml.data._splits import split_indices, temporal_split_indices
from trustml.data.corruptions import CORRUPTIONS, CorruptedDataset, channel_stats, corrupt
from trustml.exceptions import DataError

__all__ = [
    "CORRUPTIONS",
    "CorruptedDataset",
    "ArrayDataset",
    "BaseDataset",
    "DataError",
    "HDF5Dataset",
    "ShardedHDF5Dataset",
    "builtin_names",
    "check_targets_vary",
    "channel_stats",
    "corrupt",
    "epoch_windows",
    "export_builtin",
    "load_builtin",
    "read_ahead",
    "share_range",
    "share_schedule",
    "split_indices",
    "target_names",
    "temporal_split_indices",
]


def check_targets_vary(
    dataset: BaseDataset, indices: object = None, *, split: str | None = None
) -> None:
    """Raise :class:`DataError` when a regression target is constant over ``indices``.

    Same as :meth:`BaseDataset.check_targets_vary`. Run it on the training split before
    training a regression model: a constant target has zero spread, which nothing downstream
    (standardisation, the climatology baseline, Gaussian scores) can use. A constant target in
    a distribution-shifted test set is fine, so loading a dataset does not check it.

    Parameters
    ----------
    dataset : BaseDataset
    indices : array of int, optional
        The samples to check; default all.
    split : str, optional
        Their name in the message (``"train"``).

    Examples
    --------
    >>> check_targets_vary(ds, parts["train"], split="train")
    """
    dataset.check_targets_vary(indices, split=split)


def target_names(dataset: BaseDataset) -> list[str]:
    """Names of the targets of ``dataset`` (same as ``dataset.target_names``).

    Regression: one name per target column, from the dataset (``["log_A", "n"]`` for the
    cosmology builtins, the ``target_names`` attribute of an HDF5 targets dataset) or
    ``["y0", "y1", ...]``. Classification: one name per class ``0..n_classes-1`` (declared
    names, e.g. ``"0".."9"`` for digits, or the labels as strings, ``n_classes = max label + 1``).

    Parameters
    ----------
    dataset : BaseDataset

    Returns
    -------
    list of str
        Of length ``D`` (regression) or ``n_classes`` (classification).
    """
    return dataset.target_names
