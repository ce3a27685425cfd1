"""The attribution stage of a run: every protocol attribution method over the primary
uncertainty method's members (sharded over ranks), then the checks (rank 0); with
``attribution.explain`` listing uncertainty quantities, also their attribution (with the first
method that can explain a function of all members) and its uncertainty-deletion check.

:data:`CHECKS` is the dispatch table of the checks, keyed by the schema's names
(:data:`trustml.protocol._names.ATTRIBUTION_CHECKS`). Arrays are named only through
:mod:`trustml.results_keys`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from trustml import results_keys as rk
from trustml.data import BaseDataset
from trustml.distributed import Comm
from trustml.explain import (
    UncertaintyAttribution,
    attribute_uncertainty,
    completeness_check,
    deletion_curve,
    infidelity,
    insertion_curve,
    localization,
    randomization_test,
    sensitivity,
    uncertainty_deletion_curve,
)
from trustml.protocol._parallel import attribute_sharded
from trustml.protocol.schema import Protocol
from trustml.utils.seeding import child

__all__ = ["CHECKS", "RANDOMIZATION_STAGES", "Attributed", "attribute_and_check"]

#: Cascading randomization groups the layers into at most this many stages.
RANDOMIZATION_STAGES = 4


def _options(method: str, n_steps: int) -> dict[str, Any]:
    # Only integrated gradients has a path to integrate along; other methods reject n_steps.
    return {"n_steps": n_steps} if method == "integrated_gradients" else {}


@dataclass(frozen=True)
class Attributed:
    """What attribution hands on (rank 0): the summary and the arrays (inputs, maps, ...)."""

    summary: dict[str, Any]
    arrays: dict[str, np.ndarray]


def attribute_and_check(
    protocol: Protocol,
    ds: BaseDataset,
    test_indices: np.ndarray,
    model: Any,
    targets: np.ndarray,
    *,
    comm: Comm,
    target_names: list[str],
) -> Attributed | None:
    """Attribute the first ``len(targets)`` examples (``test_indices`` of ``ds``: the test
    split, or a shifted test set with ``attribution.examples_from``) with every method of
    ``protocol.attribution`` and run its checks.

    Returns, on rank 0, the summary and the arrays: the explained inputs, the target of each
    example, the masks (for ``localization``) and, per method, the maps of every member
    ``(K, N, *input_shape)`` float32 (see :func:`trustml.results_keys.attribution_maps`;
    the maps without a method are the first method's); ``None`` on the other ranks.
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
    uncertain = _attribute_uncertainty(protocol, ds, idx, model, comm)
    if comm.rank != 0:
        return None
    x = ds.read(idx)[0]
    arrays: dict[str, np.ndarray] = {
        rk.ATTRIBUTION_INPUTS: x,
        rk.ATTRIBUTION_TARGET_INDEX: np.asarray(targets),
    }
    masks = ds.read_masks(idx) if "localization" in spec.checks else None
    if masks is not None:
        arrays[rk.ATTRIBUTION_MASKS] = np.asarray(masks)
    if protocol.task == "regression":
        target_text = f"predicted mean of {target_names[spec.target]}"
    else:
        target_text = "logit of the predicted class"
    seed = child(protocol.seed, "attribution")
    per_method: dict[str, Any] = {}
    for j, (method, attr) in enumerate(results.items()):
        assert attr is not None
        maps = attr.members.astype(np.float32)
        arrays[rk.attribution_maps(method)] = maps
        if j == 0:
            arrays[rk.attribution_maps()] = maps
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
    summary: dict[str, Any] = {
        "method": first,
        "n_examples": int(len(idx)),
        "target": target_text,
        "checks": per_method[first]["checks"],
        "methods": per_method,
    }
    if spec.examples_from != "test":  # examples of a shifted test set (the test split's by default)
        summary["examples_from"] = spec.examples_from
    if uncertain:
        names = target_names[spec.target] if protocol.task == "regression" else None
        summary["uncertainty"] = _uncertainty_summary(uncertain, model, x, names, arrays, seed)
    return Attributed(summary, arrays)


#: What each uncertainty quantity is, per task (the ``target`` text of the summary).
_QUANTITY_TEXT = {
    "regression": {
        "total": "predictive variance of {name} (aleatoric + epistemic)",
        "aleatoric": "aleatoric variance of {name} (mean of the members' noise variances)",
        "epistemic": "epistemic variance of {name} (variance of the members' means)",
    },
    "classification": {
        "total": "predictive entropy (nats)",
        "aleatoric": "expected entropy of the members (nats)",
        "epistemic": "mutual information between prediction and member (nats)",
    },
}


def _attribute_uncertainty(
    protocol: Protocol, ds: BaseDataset, idx: np.ndarray, model: Any, comm: Comm
) -> dict[str, UncertaintyAttribution]:
    """Every uncertainty quantity of ``attribution.explain``, attributed on all ranks; the
    results on rank 0 (empty elsewhere, and without uncertainty items)."""
    spec = protocol.attribution
    assert spec is not None
    method = spec.uncertainty_method
    target = spec.target if protocol.task == "regression" else None
    out: dict[str, UncertaintyAttribution] = {}
    for quantity in spec.uncertainty:
        assert method is not None  # the schema refuses uncertainty items without a method
        attr = attribute_sharded(
            model, ds, idx, target, method=method, comm=comm, explainer=attribute_uncertainty,
            quantity=quantity, seed=child(protocol.seed, f"attribution/uncertainty/{quantity}"),
            **_options(method, spec.n_steps),
        )  # fmt: skip
        if attr is not None:
            assert isinstance(attr, UncertaintyAttribution)
            out[quantity] = attr
    return out


def _uncertainty_summary(
    attrs: dict[str, UncertaintyAttribution],
    model: Any,
    x: np.ndarray,
    target_name: str | None,
    arrays: dict[str, np.ndarray],
    seed: Any,
) -> dict[str, Any]:
    """Per quantity: what it is, its mean value and its deletion check; the maps and values
    go into ``arrays``."""
    out: dict[str, Any] = {}
    for quantity, attr in attrs.items():
        arrays[rk.uncertainty_maps(quantity)] = attr.members.astype(np.float32)
        arrays[rk.uncertainty_values(quantity)] = attr.values.astype(np.float64)
        check = uncertainty_deletion_curve(
            model, x, attr, seed=child(seed, f"uncertainty/{quantity}/deletion")
        )
        out[quantity] = {
            "method": attr.method,
            "n_examples": int(attr.members.shape[1]),
            "members": attr.n_samples,
            "target": _QUANTITY_TEXT[attr.task][quantity].format(name=target_name),
            "mean_value": float(np.mean(attr.values)),
            "checks": {"deletion": check.as_dict()},
        }
    return out


@dataclass(frozen=True)
class _CheckInput:
    """What a check of one attribution method reads."""

    method: str
    attr: Any
    model: Any
    x: np.ndarray
    target: Any
    masks: np.ndarray | None
    options: dict[str, Any]
    seed: Any = None


def _completeness(c: _CheckInput) -> Any:
    # A property of integrated gradients only: other methods are not checked.
    return completeness_check(c.attr) if c.method == "integrated_gradients" else None


def _randomization(c: _CheckInput) -> Any:
    return randomization_test(
        c.model, c.x, method=c.method, target=c.target, max_stages=RANDOMIZATION_STAGES,
        seed=c.seed, **c.options,
    )  # fmt: skip


def _localization(c: _CheckInput) -> Any:
    assert c.masks is not None  # planning refuses localization without masks
    return localization(c.attr, _broadcast_mask(c.masks, c.x.shape))


#: The attribution checks, keyed by the schema's names (``attribution.checks``): each returns
#: a ``CheckResult``, or ``None`` where the check does not apply to the method.
CHECKS: dict[str, Callable[[_CheckInput], Any]] = {
    "completeness": _completeness,
    "randomization": _randomization,
    "deletion": lambda c: deletion_curve(c.model, c.x, c.attr, target=c.target, seed=c.seed),
    "insertion": lambda c: insertion_curve(c.model, c.x, c.attr, target=c.target, seed=c.seed),
    "infidelity": lambda c: infidelity(c.model, c.x, c.attr, target=c.target, seed=c.seed),
    "sensitivity": lambda c: sensitivity(
        c.model, c.x, method=c.method, target=c.target, seed=c.seed, **c.options
    ),
    "localization": _localization,
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
    given = _CheckInput(method, attr, model, x, target, masks, _options(method, n_steps))
    out: dict[str, Any] = {}
    for name in names:
        result = CHECKS[name](replace(given, seed=child(seed, f"{method}/{name}")))
        if result is not None:
            out[name] = result.as_dict()
    return out


def _broadcast_mask(masks: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``(N, *spatial)`` masks as ``(N, 1, *spatial)`` for channel-first inputs."""
    m = np.asarray(masks).astype(bool)
    if m.ndim == len(shape) - 1:
        m = m[:, None]
    return np.broadcast_to(m, shape)
