"""Building an ensemble from trained candidates: Caruana's greedy selection, or the top K.

Both score the equally weighted mixture of the chosen members on a validation split, the way
the protocol scores an ensemble on its test split: regression through the mixture's mean and
total standard deviation (law of total variance, :class:`trustml.uq.Predictive`), classification
through the members' mean probabilities; the objective is a registered metric
(:data:`OBJECTIVES`), lower is better.

Greedy selection (Caruana et al., ICML 2004) starts from the best single candidate and, until
it has ``members`` members, adds the candidate (with replacement: one may be taken again) whose
addition gives the lowest objective; ties go to the lowest candidate index.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from trustml.exceptions import TrustmlInputError
from trustml.metrics import METRICS
from trustml.uq import Predictive

__all__ = [
    "OBJECTIVES",
    "STRATEGIES",
    "Selection",
    "candidate_scores",
    "mixture_score",
    "select_members",
]

#: Objectives by task: the metric of the validation mixture that selection minimises.
OBJECTIVES: dict[str, tuple[str, ...]] = {
    "regression": ("nll", "crps"),
    "classification": ("nll", "brier"),
}
#: Selection strategies.
STRATEGIES: tuple[str, ...] = ("greedy", "top_k")


@dataclass(frozen=True)
class Selection:
    """Which candidates an ensemble takes.

    Attributes
    ----------
    indices : tuple of int
        Candidate positions, in the order chosen, with repeats (length ``members``).
    trace : tuple of float
        The objective of the mixture after each addition (``trace[j]``: members ``0..j``).
    strategy, objective : str
    """

    indices: tuple[int, ...]
    trace: tuple[float, ...]
    strategy: str
    objective: str

    @property
    def counts(self) -> dict[int, int]:
        """How often each chosen candidate was taken, by candidate position (ascending)."""
        return dict(sorted(Counter(self.indices).items()))


def _check_objective(task: str, objective: str) -> None:
    if task not in OBJECTIVES:
        raise TrustmlInputError(f"task {task!r}: expected one of {', '.join(OBJECTIVES)}")
    if objective not in OBJECTIVES[task]:
        raise TrustmlInputError(
            f"objective {objective!r} does not apply to {task}; "
            f"expected one of {', '.join(OBJECTIVES[task])}"
        )


def mixture_score(pred: Predictive, y: np.ndarray, objective: str) -> float:
    """The objective of the mixture ``pred`` on targets ``y``.

    Parameters
    ----------
    pred : Predictive
        Members ``(K, N, D)`` (regression) or ``(K, N, C)`` (classification).
    y : ndarray of shape (N, D) or (N,)
    objective : {"nll", "crps", "brier"}

    Returns
    -------
    float
    """
    _check_objective(pred.task, objective)
    if pred.task == "classification":
        return METRICS.get(objective).compute(pred.task, y, probs=pred.probs)
    return METRICS.get(objective).compute(pred.task, y, mean=pred.mean, std=pred.std)


def candidate_scores(candidates: Predictive, y: np.ndarray, objective: str) -> np.ndarray:
    """Each candidate's own objective, shape ``(C,)``.

    Parameters
    ----------
    candidates : Predictive
        One "member" per candidate: ``(C, N, D)`` or ``(C, N, n_classes)``.
    y : ndarray of shape (N, D) or (N,)
    objective : {"nll", "crps", "brier"}
    """
    return np.array(
        [
            mixture_score(candidates.member_subset([c]), y, objective)
            for c in range(candidates.n_members)
        ]
    )


def select_members(
    candidates: Predictive,
    y: Any,
    *,
    members: int,
    strategy: str = "greedy",
    objective: str = "nll",
) -> Selection:
    """Choose ``members`` candidates for an ensemble.

    Parameters
    ----------
    candidates : Predictive
        The candidates' validation predictions, one "member" per candidate: means and stds
        ``(C, N, D)`` (regression) or probabilities ``(C, N, n_classes)`` (classification).
    y : array of shape (N, D) or (N,)
        Validation targets.
    members : int
        Ensemble size K (>= 1; ``top_k`` needs ``K <= C``).
    strategy : {"greedy", "top_k"}, default "greedy"
        ``greedy``: Caruana's forward selection with replacement. ``top_k``: the K best
        single candidates, best first (ties to the lower index).
    objective : {"nll", "crps", "brier"}, default "nll"
        ``crps`` for regression, ``brier`` for classification only.

    Returns
    -------
    Selection

    Examples
    --------
    >>> mu = np.array([[[0.0]], [[1.0]], [[3.0]]])
    >>> pred = Predictive.regression(mu, np.ones_like(mu))
    >>> select_members(pred, np.array([[1.0]]), members=2, objective="crps").indices
    (1, 1)
    """
    if strategy not in STRATEGIES:
        raise TrustmlInputError(f"strategy {strategy!r}: expected one of {', '.join(STRATEGIES)}")
    _check_objective(candidates.task, objective)
    n = candidates.n_members
    if isinstance(members, bool) or not isinstance(members, int) or members < 1:
        raise TrustmlInputError(f"members: expected an int >= 1, got {members!r}")
    if strategy == "top_k" and members > n:
        raise TrustmlInputError(f"top_k needs members <= candidates ({n}), got {members}")
    y = np.asarray(y)
    single = candidate_scores(candidates, y, objective)
    if strategy == "top_k":
        order = [int(i) for i in np.argsort(single, kind="stable")[:members]]
        trace = [
            mixture_score(candidates.member_subset(order[: j + 1]), y, objective)
            for j in range(members)
        ]
        return Selection(tuple(order), tuple(trace), strategy, objective)
    chosen = [int(np.argmin(single))]
    trace = [float(single[chosen[0]])]
    while len(chosen) < members:
        scores = [
            mixture_score(candidates.member_subset([*chosen, c]), y, objective) for c in range(n)
        ]
        best = int(np.argmin(scores))  # first minimum: ties go to the lower index
        chosen.append(best)
        trace.append(float(scores[best]))
    return Selection(tuple(chosen), tuple(trace), strategy, objective)
