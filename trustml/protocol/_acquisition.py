"""The ``acquisition`` mapping of a protocol: a simulated labeling campaign."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from trustml.protocol._fields import LABEL, Float, KeyedError, PositiveInt, StrictModel
from trustml.protocol._names import (
    ACQUISITION_STRATEGIES,
    ALL_METRICS,
    acquisition_strategies,
    task_metrics,
)

__all__ = ["DEFAULT_CAMPAIGN", "AcquisitionSpec"]

#: A campaign's strategies and recorded metric when the protocol does not name them.
DEFAULT_CAMPAIGN = {
    "classification": (("random", "entropy", "bald", "batchbald"), "accuracy"),
    "regression": (("random", "variance", "epistemic_variance"), "rmse"),
}


class AcquisitionSpec(StrictModel):
    """``acquisition``: a simulated labeling campaign on the training split.

    The training split's labels are hidden; ``initial`` random samples are labeled, then each
    of ``rounds`` rounds trains the method on the labeled samples, records ``metric`` on the
    test split and labels ``step`` more, chosen by each strategy; ``repeats`` campaigns with
    different initial sets give the band. ``target`` is the metric value the "labels to
    target" table refers to (default: what ``random`` reaches in its last round).
    """

    initial: PositiveInt = 50
    step: PositiveInt = 25
    rounds: PositiveInt = 10
    strategies: (
        Annotated[list[Literal[ACQUISITION_STRATEGIES]], Field(min_length=1)]  # type: ignore[valid-type]
        | None
    ) = None
    repeats: PositiveInt = 3
    metric: Literal[ALL_METRICS] | None = None  # type: ignore[valid-type]
    target: Float | None = None
    method: Annotated[str, Field(pattern=LABEL)] | None = None
    epochs: PositiveInt | None = None

    @field_validator("strategies")
    @classmethod
    def _unique(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("a strategy is listed more than once")
        return v

    @property
    def labels(self) -> list[int]:
        """Labels held when each round's model is trained (``rounds + 1`` of them)."""
        return [self.initial + t * self.step for t in range(self.rounds + 1)]

    def strategy_names(self, task: str) -> list[str]:
        """The strategies compared (the task's default when not given)."""
        return list(self.strategies or DEFAULT_CAMPAIGN[task][0])

    def metric_name(self, task: str) -> str:
        """The metric recorded per round (the task's default when not given)."""
        return self.metric or DEFAULT_CAMPAIGN[task][1]

    def check(self, task: str, labels: list[str]) -> None:
        """Cross-key rules: the strategies and the metric fit ``task``; the method is one of the
        protocol's method ``labels``; without ``random``, a target is given."""
        allowed = acquisition_strategies(task)
        for i, name in enumerate(self.strategies or ()):
            if name not in allowed:
                raise KeyedError(
                    f"acquisition.strategies[{i}]",
                    f"{name!r} does not apply to task {task!r}; valid: {', '.join(allowed)}",
                )
        if self.metric is not None and self.metric not in task_metrics(task):
            raise KeyedError(
                "acquisition.metric",
                f"{self.metric!r} does not apply to task {task!r}; valid: "
                + ", ".join(task_metrics(task)),
            )
        if self.target is None and "random" not in self.strategy_names(task):
            raise KeyedError(
                "acquisition.target",
                "give a target, or list 'random' in acquisition.strategies (the default target "
                "is what random reaches in its last round)",
            )
        if self.method is not None and self.method not in labels:
            raise KeyedError(
                "acquisition.method",
                f"no uncertainty method is labelled {self.method!r}; labels: {', '.join(labels)}",
            )
