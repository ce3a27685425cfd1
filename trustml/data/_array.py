"""Datasets held in memory as numpy arrays (builtins, tests, small user data)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from trustml.data._base import BaseDataset
from trustml.data._checks import (
    check_groups,
    check_input_meta,
    check_layout,
    check_mask_meta,
    check_target_meta,
)

__all__ = ["ArrayDataset"]


class ArrayDataset(BaseDataset):
    """A dataset over in-memory arrays (numpy arrays or CPU tensors; not copied).

    Parameters
    ----------
    inputs : array of shape (N, *input_shape)
        Float or integer values; rank 3 to 6 (``[N, C, L]`` or ``[N, T, F]``,
        ``[N, C, H, W]``, ``[N, C, D, H, W]``, ``[N, C, T, D, H, W]``), or rank 2 ``[N, F]``
        for tabular features (accepted in memory only, not from HDF5).
    targets : array of shape (N,) or (N, D)
        Float for regression, integer ``[N]`` class labels for classification.
    groups : array of shape (N,), optional
        Integer or string group ids.
    source : str
        Human-readable origin, used in error messages and provenance.
    layout : str, optional
        ``"NCL"`` or ``"NTF"`` to declare how rank-3 inputs are meant; other ranks have one
        layout, which is filled in.
    target_names : sequence of str, optional
        One per target column (regression) or per class (classification).
    validate : bool
        Run :meth:`validate` (finite values, labels >= 0) now.
    masks : array of shape (N, *input_shape), optional
        Ground-truth masks (bool, or numeric with non-zero = inside), served by
        :meth:`~BaseDataset.read_masks`. Any axis may be 1 (shared), and channel-first inputs
        also accept ``(N, *spatial)`` (one mask for all channels, e.g. ``(N, H, W)``).

    Raises
    ------
    DataError
        On a wrong dtype or rank, mismatched lengths or non-finite values; the message names
        ``source`` and the array (``'inputs'``, ``'targets'``, ``'groups'``, ``'masks'``).

    Examples
    --------
    >>> ds = ArrayDataset(np.zeros((10, 1, 8, 8)), np.arange(10) % 2)
    >>> ds.input_shape, ds.task_hint
    ((1, 8, 8), 'classification')
    """

    def __init__(
        self,
        inputs: Any,
        targets: Any,
        groups: Any = None,
        *,
        source: str = "arrays",
        layout: str | None = None,
        target_names: Sequence[str] | None = None,
        validate: bool = True,
        masks: Any = None,
    ) -> None:
        x, y = np.asarray(inputs), np.asarray(targets)
        check_input_meta(x.shape, x.dtype, prefix=source, name="'inputs'", min_rank=2)
        n = x.shape[0]
        check_target_meta(
            y.shape, y.dtype, n, prefix=source, name="'targets'", input_name="'inputs'"
        )
        g = None if groups is None else check_groups(groups, n, prefix=source, name="'groups'")
        self._x, self._y = x, y
        self._init_meta(
            n_samples=n,
            input_shape=x.shape[1:],
            input_dtype=x.dtype,
            target_shape=y.shape[1:],
            target_dtype=y.dtype,
            groups=g,
            source=source,
            layout=check_layout(layout, x.ndim, prefix=source, name="'inputs'"),
            names=target_names,
            prefix=source,
            input_name="'inputs'",
            target_name="'targets'",
        )
        self._m: np.ndarray | None = None
        if masks is not None:
            m = np.asarray(masks)
            self.mask_shape = check_mask_meta(
                m.shape, m.dtype, n, self.input_shape, self.layout, prefix=source, name="'masks'"
            )
            self._m = m
        if validate:
            self.validate()

    def _raw_mask_rows(self, idx: np.ndarray) -> np.ndarray:
        assert self._m is not None
        if idx[-1] - idx[0] + 1 == idx.size:
            return self._m[int(idx[0]) : int(idx[-1]) + 1]
        return self._m[idx]

    def _raw_rows(
        self, idx: np.ndarray, *, inputs: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray]:
        return (self._x[idx] if inputs else None), self._y[idx]

    def _raw_slice(
        self, start: int, stop: int, *, inputs: bool = True
    ) -> tuple[np.ndarray | None, np.ndarray]:
        return (self._x[start:stop] if inputs else None), self._y[start:stop]
