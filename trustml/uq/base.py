"""The estimator contract every uncertainty method of trustml follows.

:class:`UncertaintyEstimator` holds what the methods used to repeat: the constructor only
stores its arguments; ``fit`` checks them against one declared table
(``_parameter_constraints``) and returns ``self``; fitted state ends in ``_``; using an
unfitted estimator raises :class:`~trustml.exceptions.NotFittedError`; and
``explain_modules(*, output, samples)`` hands attribution one module per member or posterior
draw. A new method (Laplace, say) subclasses it, declares its constraints and implements
``fit``, ``predict`` and ``_explain_modules``; the common contract tests
(``tests/uq/test_contract.py``) then cover it by being listed.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from trustml.exceptions import NotFittedError
from trustml.uq._constraints import (
    DEVICE,
    Constraint,
    Interval,
    Options,
    validate_parameter,
)
from trustml.uq._heads import EXPLAIN_OUTPUTS
from trustml.uq._train_settings import TrainSettings, check_fit_options, train_settings
from trustml.uq.predictive import Predictive

__all__ = ["UncertaintyEstimator"]

#: Regression or classification, for every method.
TASKS = ("regression", "classification")


class UncertaintyEstimator(ABC):
    """Base class of the uncertainty methods (``DeepEnsemble``, ``BayesianNN``, ``MCDropout``).

    Subclasses declare ``_parameter_constraints``: for every constructor parameter, the list
    of constraints (from :mod:`trustml.uq._constraints`; ``None`` accepts ``None``) one of
    which a valid value satisfies. :meth:`_validate_params` checks them all, then
    :meth:`_check_param_combinations` (a hook for rules that tie parameters together).

    Attributes
    ----------
    n_outputs_ : int
        Set by ``fit``: targets ``D`` (regression) or classes ``C``. Its presence is what
        "fitted" means.
    """

    _parameter_constraints: ClassVar[dict[str, list[Constraint | None]]] = {}
    #: Constraints of the method's own ``fit`` keywords, beyond the shared training settings.
    _fit_constraints: ClassVar[dict[str, list[Constraint | None]]] = {}
    _fitted_attribute: ClassVar[str] = "n_outputs_"
    device: str | torch.device  # every method takes one

    # -- parameters -----------------------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        """The constructor's parameter names, in order."""
        sig = inspect.signature(cls.__init__)
        return [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, as stored.

        Returns
        -------
        dict of str to object
        """
        return {name: getattr(self, name) for name in self._param_names()}

    def _validate_params(self) -> None:
        """Check every declared parameter, then the rules that tie them together.

        Raises
        ------
        InvalidParameterError
            (a ``ValueError`` and a ``TypeError``) naming the first invalid parameter.
        """
        owner = type(self).__name__
        for name, constraints in self._parameter_constraints.items():
            validate_parameter(name, getattr(self, name), constraints, owner=owner)
        self._check_param_combinations()

    def _check_param_combinations(self) -> None:  # noqa: B027 - an optional hook
        """Rules between parameters (override; each raises ``ValueError``)."""

    def _device(self) -> torch.device:
        """The ``device`` parameter as a ``torch.device`` (checked)."""
        value = validate_parameter("device", self.device, [DEVICE], owner=type(self).__name__)
        return torch.device(value)

    def _check_argument(
        self, method: str, name: str, value: Any, constraints: Sequence[Constraint | None]
    ) -> Any:
        """Check one argument of ``method`` (``"predict"``); return it unchanged."""
        return validate_parameter(name, value, constraints, owner=f"{type(self).__name__}.{method}")

    # -- fit options ----------------------------------------------------------------------
    def _train_settings(self, **options: Any) -> TrainSettings:
        """The shared training keywords of ``fit``, validated (see ``TrainSettings``)."""
        return train_settings(f"{type(self).__name__}.fit", **options)

    def _check_fit_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The method's own ``fit`` keywords, validated against ``_fit_constraints``."""
        return check_fit_options(f"{type(self).__name__}.fit", options, self._fit_constraints)

    # -- fitted state ---------------------------------------------------------------------
    def _check_fitted(self) -> None:
        """Raise ``NotFittedError`` unless ``fit`` (or ``load``) has run."""
        if not hasattr(self, self._fitted_attribute):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' before using it."
            )

    # -- the contract ---------------------------------------------------------------------
    @abstractmethod
    def fit(self, *args: Any, **kwargs: Any) -> UncertaintyEstimator:
        """Fit on ``(x, y)``; return ``self``."""

    @abstractmethod
    def predict(self, *args: Any, **kwargs: Any) -> Predictive:
        """The predictive distribution at ``x``: member (or draw) predictions ``(S, N, ...)``."""

    def explain_modules(
        self, *, output: str = "mean", samples: int | None = None
    ) -> list[nn.Module]:
        """One module per member or posterior draw, for attribution.

        Parameters
        ----------
        output : {"mean", "std"}, default "mean"
            Each module maps inputs ``(N, *input_shape)`` to the predicted mean in data units
            ``(N, D)`` (logits ``(N, C)`` for classification), or with ``"std"`` to the
            predicted aleatoric std in data units ``(N, D)`` (regression only).
        samples : int, optional
            How many members or draws: the first ``samples`` of those :meth:`predict` uses
            (the method's docstring says which by default).

        Returns
        -------
        list of nn.Module
            In eval mode; module ``s`` computes member (draw) ``s`` of :meth:`predict`.

        Raises
        ------
        NotFittedError
            Before ``fit``.
        ValueError
            ``output="std"`` for classification, or more samples than the method has.
        """
        self._check_fitted()
        self._check_argument("explain_modules", "output", output, [Options(EXPLAIN_OUTPUTS)])
        self._check_argument("explain_modules", "samples", samples, [None, Interval(int, 1, None)])
        return self._explain_modules(output, samples)

    @abstractmethod
    def _explain_modules(self, output: str, samples: int | None) -> list[nn.Module]:
        """:meth:`explain_modules` after its checks."""
