"""ArviZ views of posterior draws: ``InferenceData`` and R-hat / ESS summaries."""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from trustml.uq.predictive import Predictive, _version

if TYPE_CHECKING:  # pragma: no cover
    import arviz

__all__ = ["by_chain", "inference_data", "predictive_groups", "summarize"]


def _arviz() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # arviz's refactor notice
        import arviz as az
    return az


def by_chain(v: Any, chains: int) -> np.ndarray:
    """``(chains * draws, ...)`` as ``(chains, draws, ...)`` (chain-major), numpy."""
    a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
    return a.reshape(chains, -1, *a.shape[1:])


def predictive_groups(pred: Predictive, chains: int) -> dict[str, np.ndarray]:
    """Member arrays of ``pred`` by chain: ``mean`` and ``std`` or ``probs`` and ``logits``."""
    if pred.task == "regression":
        found = {"mean": pred.member_means, "std": pred.member_stds}
    else:
        found = {"probs": pred.member_probs, "logits": pred.member_logits}
    return {k: by_chain(v, chains) for k, v in found.items()}


def inference_data(
    posterior: dict[str, np.ndarray],
    predictive: dict[str, np.ndarray],
    x: np.ndarray,
    *,
    task: str,
    sample_stats: dict[str, np.ndarray] | None,
    attrs: dict[str, Any],
) -> arviz.InferenceData:
    """``posterior`` (weights), ``posterior_predictive`` at inputs ``x`` (``constant_data``)."""
    az = _arviz()
    last = "target" if task == "regression" else "class"
    idata = az.from_dict(
        posterior=posterior,
        posterior_predictive=predictive,
        sample_stats=sample_stats,
        constant_data={"x": x},
        dims={**{name: ["obs", last] for name in predictive}, "x": ["obs"]},
    )
    attrs = {**attrs, "task": task, "trustml_version": _version()}
    for group in idata.groups():
        idata[group].attrs.update(attrs)
    return idata


def summarize(values: np.ndarray, name: str, divergences: int) -> dict[str, Any]:
    """``arviz.summary`` of ``values`` ``(chains, draws, ...)`` and its worst rows.

    With one chain (SVI's independent draws) R-hat is undefined: NaN, without ArviZ's
    warning about it.
    """
    az = _arviz()
    idata = az.from_dict(posterior={name: values})
    logger = getattr(az, "_log", None) or logging.getLogger("arviz")  # arviz 0.x's own Logger
    level = logger.level
    if values.shape[0] < 2:
        logger.setLevel(logging.ERROR)
    try:
        summary = az.summary(idata, var_names=[name])
    finally:
        logger.setLevel(level)
    return {
        "summary": summary,
        "r_hat_max": float(summary["r_hat"].max()),
        "ess_bulk_min": float(summary["ess_bulk"].min()),
        "ess_tail_min": float(summary["ess_tail"].min()),
        "divergences": int(divergences),
        "chains": int(values.shape[0]),
        "draws": int(values.shape[1]),
    }
