"""The ``METRICS`` registry: what each named metric needs and which way is better.

A protocol lists metrics by name (``metrics: [rmse, nll, ece]``); the runner looks each up with
``METRICS.get(name)`` and calls :meth:`MetricSpec.compute` with the task, the targets and every
predictive quantity it has. Implementations follow the functions' order: predictive quantities
first, the target last (``crps_gaussian(mean, std, y)``). ``nll`` applies to both tasks (Gaussian NLL for regression,
categorical NLL for classification); the other names apply to one task.

Predictive quantities (keyword names): ``mean``, ``std`` (Gaussian predictive, ``(N,)`` or
``(N, D)``), ``lower``, ``upper`` (prediction interval bounds, same shape), ``probs`` (class
probabilities ``(N, C)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from trustml.exceptions import TrustmlInputError
from trustml.metrics import classification as cls
from trustml.metrics import regression as reg
from trustml.registry import Registry

__all__ = ["METRICS", "TASKS", "MetricImpl", "MetricSpec", "metric_names"]

#: The tasks a metric can apply to.
TASKS: tuple[str, ...] = ("regression", "classification")


@dataclass(frozen=True)
class MetricImpl:
    """How one task computes a metric.

    Attributes
    ----------
    fn : callable
        ``fn(*quantities, y) -> float`` (``fn(*quantities)`` when ``uses_target`` is False).
    needs : tuple of str
        Predictive quantities passed before the target, in ``fn``'s argument order.
    uses_target : bool
        Whether ``fn`` takes the targets last (``interval_width`` does not).
    """

    fn: Callable[..., Any]
    needs: tuple[str, ...]
    uses_target: bool = True


@dataclass(frozen=True)
class MetricSpec:
    """A named metric: per-task implementations and its direction.

    Attributes
    ----------
    name : str
        Registry name (``"crps"``).
    higher_is_better : bool or None
        ``True`` (accuracy), ``False`` (errors, NLL, CRPS, Brier, ECE, width), or ``None`` when
        neither is better and a target value matters (``coverage`` should match its nominal
        level).
    impls : Mapping[str, MetricImpl]
        Task name -> implementation; read-only.
    description : str
        One line for reports.

    Examples
    --------
    >>> spec = METRICS.get("nll")
    >>> spec.tasks, spec.needs("regression")
    (('regression', 'classification'), ('mean', 'std'))
    >>> round(spec.compute("regression", [0.0], mean=[0.0], std=[1.0], probs=None), 4)
    0.9189
    """

    name: str
    higher_is_better: bool | None
    impls: Mapping[str, MetricImpl] = field(repr=False)
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "impls", MappingProxyType(dict(self.impls)))

    @property
    def tasks(self) -> tuple[str, ...]:
        """Tasks this metric applies to, in :data:`TASKS` order."""
        return tuple(t for t in TASKS if t in self.impls)

    def applies_to(self, task: str) -> bool:
        return task in self.impls

    def impl(self, task: str) -> MetricImpl:
        """The implementation for ``task``; raises :class:`TrustmlInputError` if none."""
        if task not in self.impls:
            raise TrustmlInputError(
                f"metric {self.name!r} does not apply to task {task!r}; "
                f"it applies to: {', '.join(self.tasks)}"
            )
        return self.impls[task]

    def needs(self, task: str) -> tuple[str, ...]:
        """Predictive quantities ``task``'s implementation needs, e.g. ``("mean", "std")``."""
        return self.impl(task).needs

    def compute(self, task: str, y: Any, **quantities: Any) -> float:
        """Evaluate on targets ``y`` and predictive ``quantities`` (extra ones are ignored).

        Raises
        ------
        TrustmlInputError
            The metric does not apply to ``task`` or a needed quantity is missing or ``None``.
        """
        impl = self.impl(task)
        missing = [q for q in impl.needs if quantities.get(q) is None]
        if missing:
            raise TrustmlInputError(
                f"metric {self.name!r} ({task}) needs {', '.join(map(repr, missing))}; "
                f"got {', '.join(k for k, v in quantities.items() if v is not None) or 'nothing'}"
            )
        args = [quantities[q] for q in impl.needs]
        return float(impl.fn(*args, y) if impl.uses_target else impl.fn(*args))


METRICS: Registry[MetricSpec] = Registry("metric")


def _add(spec: MetricSpec) -> None:
    METRICS.register(spec.name)(spec)


_R, _C = "regression", "classification"
_add(MetricSpec("rmse", False, {_R: MetricImpl(reg.rmse, ("mean",))}, "root mean squared error"))
_add(MetricSpec("mae", False, {_R: MetricImpl(reg.mae, ("mean",))}, "mean absolute error"))
# Registration order is each task's default order in a protocol (accuracy before nll).
_add(MetricSpec("accuracy", True, {_C: MetricImpl(cls.accuracy, ("probs",))}, "top-1 accuracy"))
_add(
    MetricSpec(
        "nll",
        False,
        {
            _R: MetricImpl(reg.nll_gaussian, ("mean", "std")),
            _C: MetricImpl(cls.nll_categorical, ("probs",)),
        },
        "mean negative log-likelihood (Gaussian for regression, categorical for classification)",
    )
)
_add(
    MetricSpec("crps", False, {_R: MetricImpl(reg.crps_gaussian, ("mean", "std"))}, "Gaussian CRPS")
)
_add(
    MetricSpec(
        "coverage",
        None,
        {_R: MetricImpl(reg.coverage, ("lower", "upper"))},
        "fraction of targets inside the prediction interval (compare with the nominal level)",
    )
)
_add(
    MetricSpec(
        "interval_width",
        False,
        {_R: MetricImpl(reg.interval_width, ("lower", "upper"), uses_target=False)},
        "mean prediction interval width",
    )
)
_add(MetricSpec("brier", False, {_C: MetricImpl(cls.brier, ("probs",))}, "multi-class Brier score"))
_add(
    MetricSpec(
        "ece",
        False,
        {_C: MetricImpl(cls.ece, ("probs",))},
        "top-label expected calibration error, 15 equal-width bins",
    )
)


def metric_names(task: str | None = None) -> list[str]:
    """Registered metric names in registration order; only those applying to ``task`` when given.

    The order is a protocol's default ``metrics`` and the order of the report's tables.

    Examples
    --------
    >>> metric_names("classification")
    ['accuracy', 'nll', 'brier', 'ece']
    """
    if task is not None and task not in TASKS:
        raise TrustmlInputError(f"task {task!r}: expected one of {', '.join(TASKS)}")
    return [n for n in METRICS.in_order() if task is None or METRICS.get(n).applies_to(task)]
