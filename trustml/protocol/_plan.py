"""Planning: everything resolved and checked from the protocol before any training.

An invalid protocol fails here, in seconds, on every rank alike, and nothing is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trustml.data import (
    BaseDataset,
    HDF5Dataset,
    ShardedHDF5Dataset,
    check_targets_vary,
    load_builtin,
    split_indices,
)
from trustml.distributed import Comm
from trustml.exceptions import ProtocolError, TrustmlInputError
from trustml.protocol import _methods, _sizes
from trustml.protocol._calibrate import check_available
from trustml.protocol._loader import check_stage, stage_folder
from trustml.protocol._network import model_factory
from trustml.protocol._parallel_spec import check_data_parallel
from trustml.protocol._search import check_search
from trustml.protocol._shifts import Ladder, check_like_main, load_ladders, shift_builtin
from trustml.protocol._stages import run_stage
from trustml.protocol.schema import HDF5Source, Protocol
from trustml.utils.seeding import child

__all__ = ["Plan", "dataset_fingerprint", "make_plan"]


@dataclass(frozen=True)
class Plan:
    """Everything resolved from the protocol before any training.

    Attributes
    ----------
    dataset : BaseDataset
        The main dataset.
    splits : dict
        ``train``, ``calibration``, ``test`` -> sample indices.
    make_model : callable
        A new, untrained network of the protocol's model.
    output_dim : int
        The network's outputs: ``2 * n_targets`` (regression) or ``n_targets`` (classes).
    n_targets : int
        Regression targets, or classes.
    target_names : list of str
    device : torch.device
    shifts : dict
        Shifted test set name -> its dataset (single shifts).
    ladders : dict
        Shift ladder name -> its :class:`~trustml.protocol._shifts.Ladder` (one test set per
        level).
    staging : dict or None
        With ``data.stage``, what was copied (see :func:`trustml.protocol._loader.prepared_data`);
        the manifest records it.
    """

    dataset: BaseDataset
    splits: dict[str, np.ndarray]
    make_model: Callable[[], torch.nn.Module]
    output_dim: int
    n_targets: int
    target_names: list[str]
    device: torch.device
    shifts: dict[str, BaseDataset]
    ladders: dict[str, Ladder] = field(default_factory=dict)
    staging: dict[str, Any] | None = None


def _device(protocol: Protocol, comm: Comm) -> torch.device:
    if protocol.device == "cuda" and not torch.cuda.is_available():
        raise ProtocolError("'cuda' was asked for but no CUDA device is available", key="device")
    if protocol.device == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    # One GPU per rank: rank r on a node uses local GPU r mod n_gpus.
    return torch.device("cuda", comm.local_rank % torch.cuda.device_count())


def _open_hdf5(h: HDF5Source, base_dir: Path, index_cache: Path | None = None) -> BaseDataset:
    if h.files is not None:
        # The index cache is only read here: nothing is written before the output folder is
        # claimed (trustml.protocol._loader.prepared_data writes it then).
        files = [h.files] if isinstance(h.files, str) else h.files
        paths = [str(p if Path(p).is_absolute() else base_dir / p) for p in files]
        return ShardedHDF5Dataset(
            paths[0] if isinstance(h.files, str) else paths,
            inputs=h.inputs,
            targets=h.targets,
            groups=h.groups,
            index_cache=index_cache,
            validate=True,
            write_index=False,
        )
    assert h.path is not None  # HDF5Source holds exactly one of path or files
    path = Path(h.path)
    if not path.is_absolute():
        path = base_dir / path
    return HDF5Dataset(path, inputs=h.inputs, targets=h.targets, groups=h.groups, validate=True)


def _load_dataset(
    protocol: Protocol, base_dir: Path, index_cache: Path | None = None
) -> BaseDataset:
    spec = protocol.data
    if spec.builtin is not None:
        return load_builtin(spec.builtin, seed=child(protocol.seed, "data"), **spec.options)
    assert spec.hdf5 is not None  # DataSpec holds exactly one source
    return _open_hdf5(spec.hdf5, base_dir, index_cache)


def _load_shifts(protocol: Protocol, base_dir: Path, main: BaseDataset) -> dict[str, BaseDataset]:
    """The distribution-shifted test sets, checked against the main dataset's shapes."""
    out: dict[str, BaseDataset] = {}
    for name, spec in protocol.data.shifts.items():
        if spec.is_ladder:
            continue  # see _shifts.load_ladders
        key = f"data.shifts.{name}"
        if spec.hdf5 is not None:
            ds = _open_hdf5(spec.hdf5, base_dir)
        else:
            builtin, options = shift_builtin(
                protocol, name, "give 'builtin' or 'hdf5' (the main data is not a builtin)"
            )
            try:
                ds = load_builtin(builtin, seed=child(protocol.seed, f"shift/{name}"), **options)
            except TrustmlInputError as exc:
                raise ProtocolError(str(exc), key=key) from None
        check_like_main(ds, main, key)
        out[name] = ds
    return out


def dataset_fingerprint(protocol: Protocol, base_dir: str | Path = ".") -> str:
    """The fingerprint of the protocol's main dataset (what ``trustml verify`` checks first),
    in the protocol's ``data.fingerprint`` mode."""
    return _load_dataset(protocol, Path(base_dir)).fingerprint(protocol.data.fingerprint)


def _split(protocol: Protocol, ds: BaseDataset) -> dict[str, np.ndarray]:
    split = protocol.data.split
    fractions = split.fractions
    if split.order == "temporal":
        from trustml.data import temporal_split_indices

        return temporal_split_indices(len(ds), fractions, gap=split.gap, groups=ds.groups)
    return split_indices(len(ds), fractions, seed=child(protocol.seed, "split"), groups=ds.groups)


#: More classes than this and than samples means the labels are not 0..C-1 class indices.
_MAX_CLASSES = 100_000


def _count_classes(ds: BaseDataset) -> int:
    top = -1
    for _, yb, _ in ds.iter_batches(batch_size=4096):
        if np.any(yb < 0):
            raise TrustmlInputError(f"{ds.source}: class labels must be >= 0")
        top = max(top, int(yb.max()))
    if top + 1 > max(_MAX_CLASSES, len(ds)):
        raise TrustmlInputError(
            f"{ds.source}: class labels run up to {top}, but there are only {len(ds)} samples; "
            "labels must be class indices 0..C-1"
        )
    return top + 1


def _targets(protocol: Protocol, ds: BaseDataset) -> tuple[int, int, list[str]]:
    """``(output_dim, n_targets, target_names)``, checked against the protocol's task."""
    if ds.task_hint != protocol.task:
        raise ProtocolError(
            f"the data's targets look like {ds.task_hint} ({ds.source}), but task is {protocol.task!r}",
            key="task",
        )
    if protocol.task == "regression":
        n_targets = int(np.prod(ds.target_shape)) if ds.target_shape else 1
        output_dim = 2 * n_targets
    else:
        n_targets = _count_classes(ds)
        output_dim = n_targets
    names = list(getattr(ds, "target_names", None) or [f"y{i}" for i in range(n_targets)])
    return output_dim, n_targets, names


def _check_attribution_data(protocol: Protocol, ds: BaseDataset, n_targets: int) -> None:
    spec = protocol.attribution
    if spec is not None and protocol.task == "regression" and spec.target >= n_targets:
        raise ProtocolError(
            f"must be < {n_targets} (the number of targets), got {spec.target}",
            key="attribution.target",
        )
    if spec is not None and "localization" in spec.checks and not getattr(ds, "has_masks", False):
        raise ProtocolError(
            f"'localization' needs ground-truth masks, and {ds.source} has none",
            key="attribution.checks",
        )


def _checked_splits(protocol: Protocol, ds: BaseDataset) -> dict[str, np.ndarray]:
    splits = _split(protocol, ds)
    for name, idx in splits.items():
        if len(idx) < 2:
            raise ProtocolError(
                f"the {name} split has {len(idx)} samples; use more data or a larger fraction",
                key="data.split",
            )
    if protocol.task == "regression":
        check_targets_vary(ds, splits["train"], split="train")
    return splits


def _check_model(
    protocol: Protocol,
    make_model: Callable[[], torch.nn.Module],
    ds: BaseDataset,
    train: np.ndarray,
    output_dim: int,
) -> torch.nn.Module:
    """Build one network and run it on two training inputs; return it (untrained)."""
    m = protocol.model
    try:
        with run_stage("building the model"):
            probe = make_model()
    except TrustmlInputError as exc:
        raise ProtocolError(str(exc), key="model") from None
    x0, _ = ds.read(train[:2])
    with torch.no_grad():
        try:
            out = probe(torch.as_tensor(x0, dtype=torch.float32))
        except Exception as exc:  # a user's model failing on the data is a protocol error
            raise ProtocolError(
                f"the model fails on inputs of shape {list(x0.shape)}: {exc}".splitlines()[0],
                key="model",
            ) from None
    if out.ndim != 2 or out.shape[1] != output_dim:
        expected = (
            f"2*D = {output_dim} (means, then raw scales)"
            if protocol.task == "regression"
            else f"{output_dim} logits"
        )
        raise ProtocolError(
            f"the model outputs shape {list(out.shape)}; expected [N, {expected}]", key="model"
        )
    spec = protocol.attribution
    if spec is not None and "gradcam" in spec.methods:
        if not any(isinstance(mod, torch.nn.modules.conv._ConvNd) for mod in probe.modules()):
            raise ProtocolError(
                f"'gradcam' explains a convolution layer, and the model "
                f"({m.builtin or m.factory}) has none; choose another attribution method",
                key="attribution.methods",
            )
    return probe


def make_plan(
    protocol: Protocol, base_dir: Path, comm: Comm, *, index_cache: Path | None = None
) -> Plan:
    """Resolve and check the protocol against its data and model, before any training.

    ``index_cache`` is where a many-file dataset's index may already be cached (read only).

    Raises
    ------
    ProtocolError
        The protocol does not fit its data, its model or this machine (naming the key).
    TrustmlInputError
        The data is invalid.
    """
    check_available(protocol)
    check_data_parallel(protocol.parallel.data, comm.size)  # before the data is read
    device = _device(protocol, comm)
    _sizes.check_data_size(protocol)
    stage = stage_folder(protocol, base_dir)
    if stage is not None:
        check_stage(stage)  # refused before anything is written
    ds = _load_dataset(protocol, base_dir, index_cache)
    output_dim, n_targets, names = _targets(protocol, ds)
    _check_attribution_data(protocol, ds, n_targets)
    splits = _checked_splits(protocol, ds)
    make_model = model_factory(protocol, ds, output_dim)
    _sizes.check_model_size(protocol, make_model, comm)
    probe = _check_model(protocol, make_model, ds, splits["train"], output_dim)
    for i in range(len(protocol.methods)):
        _methods.check_method(protocol, i, probe)
        check_search(protocol, i, tuple(ds.input_shape), output_dim)
    shifts = _load_shifts(protocol, base_dir, ds)
    ladders = load_ladders(protocol, ds, splits["test"])
    return Plan(ds, splits, make_model, output_dim, n_targets, names, device, shifts, ladders)
