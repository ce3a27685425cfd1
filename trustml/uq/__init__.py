"""Uncertainty wrappers: every method returns a :class:`Predictive`."""

from trustml.uq.ensemble import DeepEnsemble
from trustml.uq.predictive import Predictive

__all__ = ["DeepEnsemble", "Predictive"]
