"""Predictive uncertainty and its decomposition as differentiable torch functions of the
outputs of K members or posterior samples.

Regression (law of total variance): ``total = aleatoric + epistemic`` with ``aleatoric`` the
mean of the members' predicted variances and ``epistemic`` the variance (``ddof=0``) of their
means. Classification (entropy decomposition): ``total`` the entropy of the mean probabilities,
``aleatoric`` the mean of the members' entropies, ``epistemic = total - aleatoric`` the mutual
information between the prediction and the member. Everything is computed in float64.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

__all__ = ["classification_quantities", "regression_quantities"]

#: Log-probabilities are clamped here (about ``log`` of float64's smallest normal number): a
#: class a member rules out with ``-inf`` logits contributes ``0 * log 0 = 0``, not NaN.
_LOG_FLOOR = -700.0


def regression_quantities(
    means: torch.Tensor, variances: torch.Tensor | None
) -> dict[str, torch.Tensor]:
    """Total, aleatoric and epistemic predictive variance of K Gaussian members.

    Parameters
    ----------
    means : tensor of shape (K, B, D)
        Every member's predicted mean.
    variances : tensor of shape (K, B, D) or None
        Every member's predicted (aleatoric) variance; ``None`` when the members predict no
        noise, and then only ``epistemic`` is returned.

    Returns
    -------
    dict of str to tensor of shape (B, D), float64
        ``epistemic`` and, with ``variances``, ``aleatoric`` and ``total``.

    Examples
    --------
    >>> mu = torch.tensor([[[0.0]], [[2.0]]]); var = torch.tensor([[[1.0]], [[3.0]]])
    >>> {k: float(v) for k, v in regression_quantities(mu, var).items()}
    {'epistemic': 1.0, 'aleatoric': 2.0, 'total': 3.0}
    """
    mu = means.double()
    centred = mu - mu.mean(dim=0, keepdim=True)
    out = {"epistemic": centred.square().mean(dim=0)}
    if variances is not None:
        out["aleatoric"] = variances.double().mean(dim=0)
        out["total"] = out["aleatoric"] + out["epistemic"]
    return out


def classification_quantities(logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Predictive entropy, expected entropy and mutual information of K members (nats).

    Parameters
    ----------
    logits : tensor of shape (K, B, C)

    Returns
    -------
    dict of str to tensor of shape (B,), float64
        ``total`` (entropy of the mean probabilities), ``aleatoric`` (mean member entropy) and
        ``epistemic`` (their difference, the mutual information; >= 0 up to rounding).

    Examples
    --------
    >>> q = classification_quantities(torch.tensor([[[9.0, -9.0]], [[-9.0, 9.0]]]))
    >>> round(float(q["total"][0]), 4), round(float(q["epistemic"][0]), 4)
    (0.6931, 0.6931)
    """
    log_p = F.log_softmax(logits.double(), dim=-1).clamp(min=_LOG_FLOOR)  # (K, B, C)
    # log of the mean probability, without leaving log space (stable for tiny probabilities)
    log_mean = (torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0])).clamp(min=_LOG_FLOOR)
    total = -(log_mean.exp() * log_mean).sum(dim=-1)
    aleatoric = -(log_p.exp() * log_p).sum(dim=-1).mean(dim=0)
    return {"total": total, "aleatoric": aleatoric, "epistemic": total - aleatoric}
