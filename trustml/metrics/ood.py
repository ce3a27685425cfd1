"""Out-of-distribution detection quality of an uncertainty score."""

from __future__ import annotations

import numpy as np
from scipy import stats

from trustml.exceptions import TrustmlInputError
from trustml.metrics._arrays import ArrayLike, as_array

__all__ = ["auroc_ood"]


def auroc_ood(scores_in: ArrayLike, scores_out: ArrayLike) -> float:
    """Area under the ROC curve for telling out-of-distribution inputs from in-distribution.

    Scores are uncertainties, higher meaning "more likely out of distribution" (predictive
    entropy, mutual information, predictive std). The AUROC is the probability that a random
    OOD input scores higher than a random in-distribution one, ties counting one half
    (Mann-Whitney U / (n_in n_out)): 1 separates perfectly, 0.5 is chance.

    Parameters
    ----------
    scores_in : array_like, shape (N_in,)
        Scores of in-distribution inputs (the negatives).
    scores_out : array_like, shape (N_out,)
        Scores of out-of-distribution inputs (the positives).

    Examples
    --------
    >>> auroc_ood([0.1, 0.2, 0.3], [0.25, 0.9])
    0.8333333333333334
    """
    s_in = as_array(scores_in, "scores_in", min_ndim=1)
    s_out = as_array(scores_out, "scores_out", min_ndim=1)
    for name, a in (("scores_in", s_in), ("scores_out", s_out)):
        if a.ndim != 1:
            raise TrustmlInputError(f"array {name!r}: expected shape (N,), got {a.shape}")
    ranks = stats.rankdata(np.concatenate([s_in, s_out]))  # average ranks on ties
    n_in, n_out = s_in.size, s_out.size
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2.0
    return float(u / (n_in * n_out))
