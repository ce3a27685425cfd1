"""Uncertainty methods: every one is an :class:`UncertaintyEstimator` whose ``predict``
returns a :class:`Predictive`.

``fit`` returns the estimator; ``explain_modules(*, output="mean" | "std", samples=None)``
gives attribution one module per member or posterior draw (outputs: :data:`EXPLAIN_OUTPUTS`);
invalid parameters raise :class:`InvalidParameterError` (a ``ValueError`` and a
``TypeError``) naming the parameter. :class:`DeepEnsemble` trains its members vectorized; a
model takes the fastest (grouped) engine through :class:`trustml.models.GroupedModule`.
:class:`Laplace` wraps laplace-torch around a trained network.
"""

from trustml.uq._block_order import BlockShuffle
from trustml.uq._constraints import InvalidParameterError
from trustml.uq._fit_loop import DataShare
from trustml.uq._heads import EXPLAIN_OUTPUTS
from trustml.uq.base import UncertaintyEstimator
from trustml.uq.ensemble import DeepEnsemble
from trustml.uq.predictive import Predictive

__all__ = [
    "EXPLAIN_OUTPUTS",
    "BlockShuffle",
    "DataShare",
    "DeepEnsemble",
    "InvalidParameterError",
    "Predictive",
    "UncertaintyEstimator",
]

# Pyro is imported only when a Bayesian wrapper is first used, laplace-torch only when a
# Laplace is fitted or loaded.
_LAZY = {
    "BayesianNN": "trustml.uq.bayes",
    "Laplace": "trustml.uq.laplace",
    "LaplaceInputError": "trustml.uq._laplace_fit",
    "MCDropout": "trustml.uq.mc_dropout",
}
__all__ += ["BayesianNN", "Laplace", "LaplaceInputError", "MCDropout"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trustml.uq' has no attribute {name!r}")
