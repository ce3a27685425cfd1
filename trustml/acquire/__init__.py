"""Acquisition functions: which unlabeled samples to label next (layer 1).

Pure functions of the member or posterior samples a trustml method produces: class
probabilities ``(K, N, C[, *spatial])`` for classification, member means and aleatoric
variances ``(K, N, D[, *spatial])`` for regression. Scores are per sample (higher = more worth
labeling), so a pool can be scored in chunks; :func:`select` turns them into picks, by a
strategy named in :data:`STRATEGIES`.

Examples
--------
>>> import numpy as np
>>> import trustml.acquire as acq
>>> probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(5, 100))  # (K, N, C)
>>> acq.select(probs, 10, strategy="batchbald", seed=0).shape
(10,)
"""

from trustml.acquire.batch import STOCHASTIC_MODES, batchbald, stochastic_select, top_k
from trustml.acquire.classification import (
    bald,
    expected_entropy,
    least_confidence,
    margin,
    mutual_information,
    predictive_entropy,
)
from trustml.acquire.regression import (
    aleatoric_variance,
    epistemic_variance,
    expected_interval_width,
    mixture_quantile,
    predictive_variance,
)
from trustml.acquire.spatial import REDUCTIONS, reduce
from trustml.acquire.strategies import STRATEGIES, Strategy, select

__all__ = [
    "REDUCTIONS",
    "STOCHASTIC_MODES",
    "STRATEGIES",
    "Strategy",
    "aleatoric_variance",
    "bald",
    "batchbald",
    "epistemic_variance",
    "expected_entropy",
    "expected_interval_width",
    "least_confidence",
    "margin",
    "mixture_quantile",
    "mutual_information",
    "predictive_entropy",
    "predictive_variance",
    "reduce",
    "select",
    "stochastic_select",
    "top_k",
]
