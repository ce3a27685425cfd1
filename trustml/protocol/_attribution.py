"""The attribution stage of a run: every protocol attribution method over the primary
uncertainty method's members (sharded over ranks), then the checks (rank 0)."""

from __future__ import annotations

from typing import Any

import numpy as np

from trustml.data import BaseDataset
from trustml.distributed import Comm
from trustml.explain import (
    completeness_check,
    deletion_curve,
    infidelity,
    insertion_curve,
    localization,
    randomization_test,
    sensitivity,
)
from trustml.protocol._parallel import attribute_sharded
from trustml.protocol.schema import Protocol
from trustml.utils.seeding import child

__all__ = ["attribute_and_check", "RANDOMIZATION_STAGES"]

#: Cascading randomization groups the layers into at most this many stages.
RANDOMIZATION_STAGES = 4


def _options(method: str, n_steps: int) -> dict[str, Any]:
    # Only integrated gradients has a path to integrate along; other methods reject n_steps.
    return {"n_steps": n_steps} if method == "integrated_gradients" else {}


def attribute_and_check(
    protocol: Protocol,
    ds: BaseDataset,
    test_indices: np.ndarray,
    model: Any,
    targets: np.ndarray,
    *,
    comm: Comm,
    arrays: dict[str, np.ndarray] | None,
    target_names: list[str],
) -> dict[str, Any] | None:
    """Attribute the first ``len(targets)`` test examples with every method of
    ``protocol.attribution`` and run its checks.

    Maps go into ``arrays`` (rank 0) as ``attribution/<method>/maps`` ``(K, N, *input_shape)``
    float32, with ``attribution/maps`` the first method's; returns the summary on rank 0 and
    ``None`` elsewhere.
    """
    spec = protocol.attribution
    assert spec is not None
    idx = test_indices[: len(targets)]
    target: int | np.ndarray = int(targets[0]) if protocol.task == "regression" else targets
    results = {}
    for method in spec.methods:
        results[method] = attribute_sharded(
            model, ds, idx, target, method=method, comm=comm, **_options(method, spec.n_steps)
        )
    if comm.rank != 0:
        return None
    assert arrays is not None
    x = ds.read(idx)[0]
    arrays["attribution/inputs"] = x
    arrays["attribution/target_index"] = np.asarray(targets)
    masks = ds.read_masks(idx) if "localization" in spec.checks else None
    if masks is not None:
        arrays["attribution/masks"] = np.asarray(masks)
    if protocol.task == "regression":
        target_text = f"predicted mean of {target_names[spec.target]}"
    else:
        target_text = "logit of the predicted class"
    seed = child(protocol.seed, "attribution")
    per_method: dict[str, Any] = {}
    for j, (method, attr) in enumerate(results.items()):
        assert attr is not None
        maps = attr.members.astype(np.float32)
        arrays[f"attribution/{method}/maps"] = maps
        if j == 0:
            arrays["attribution/maps"] = maps
        checks = _checks(spec.checks, method, attr, model, x, target, masks, seed, spec.n_steps)
        per_method[method] = {
            "n_examples": int(len(idx)),
            "members": int(maps.shape[0]),
            "target": target_text,
            "mean_sign_agreement": float(np.mean(attr.sign_agreement)),
            "mean_rank_stability": float(np.mean(attr.rank_stability)),
            "checks": checks,
        }
    first = spec.methods[0]
    return {
        "method": first,
        "n_examples": int(len(idx)),
        "target": target_text,
        "checks": per_method[first]["checks"],
        "methods": per_method,
    }


def _checks(
    names: list[str],
    method: str,
    attr: Any,
    model: Any,
    x: np.ndarray,
    target: Any,
    masks: np.ndarray | None,
    seed: Any,
    n_steps: int,
) -> dict[str, Any]:
    """The protocol's checks of one attribution method, as JSON dicts."""
    opts = _options(method, n_steps)
    out: dict[str, Any] = {}
    for name in names:
        s = child(seed, f"{method}/{name}")
        if name == "completeness":
            if method != "integrated_gradients":
                continue  # a property of integrated gradients only
            result = completeness_check(attr)
        elif name == "randomization":
            result = randomization_test(
                model, x, method=method, target=target, max_stages=RANDOMIZATION_STAGES,
                seed=s, **opts,
            )  # fmt: skip
        elif name == "deletion":
            result = deletion_curve(model, x, attr, target=target, seed=s)
        elif name == "insertion":
            result = insertion_curve(model, x, attr, target=target, seed=s)
        elif name == "infidelity":
            result = infidelity(model, x, attr, target=target, seed=s)
        elif name == "sensitivity":
            result = sensitivity(model, x, method=method, target=target, seed=s, **opts)
        elif name == "localization":
            assert masks is not None
            result = localization(attr, _broadcast_mask(masks, x.shape))
        else:  # pragma: no cover - the schema lists the checks
            raise AssertionError(name)
        out[name] = result.as_dict()
    return out


def _broadcast_mask(masks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``(N, *spatial)`` masks as ``(N, 1, *spatial)`` for channel-first inputs."""
    m = np.asarray(masks).astype(bool)
    if m.ndim == len(shape) - 1:
        m = m[:, None]
    return np.broadcast_to(m, shape)
