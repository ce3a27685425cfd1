"""Uncertainty wrappers: every method returns a :class:`Predictive`."""

from trustml.uq.ensemble import DeepEnsemble
from trustml.uq.predictive import Predictive

__all__ = ["DeepEnsemble", "Predictive"]

# Pyro is imported only when a Bayesian wrapper is first used.
_LAZY = {"BayesianNN": "trustml.uq.bayes", "MCDropout": "trustml.uq.mc_dropout"}
__all__ += ["BayesianNN", "MCDropout"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trustml.uq' has no attribute {name!r}")
