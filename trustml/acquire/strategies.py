"""Acquisition strategies by name, and :func:`select`, the one entry point that applies them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from trustml.acquire import classification, regression
from trustml.acquire._validation import check_budget, check_gaussian, check_probs, check_scores
from trustml.acquire.batch import batchbald, stochastic_select, top_k
from trustml.acquire.spatial import reduce as reduce_scores
from trustml.exceptions import TrustmlInputError
from trustml.registry import Registry
from trustml.utils.seeding import SeedLike, as_seed_sequence

__all__ = ["STRATEGIES", "Options", "Strategy", "select"]

Input = Literal["scores", "probs", "gaussian", "any"]


@dataclass(frozen=True)
class Options:
    """Per-call settings a strategy may use (see :func:`select`)."""

    seed: SeedLike
    reduce: str
    q: float
    beta: float
    num_samples: int
    level: float


@dataclass(frozen=True)
class Strategy:
    """One acquisition strategy.

    Attributes
    ----------
    input : {"scores", "probs", "gaussian", "any"}
        What :func:`select` passes to ``pick``: scores ``(N, *spatial)``, class probabilities
        ``(K, N, C, *spatial)``, a ``(mean, var)`` pair of ``(K, N, D, *spatial)`` arrays, or
        any of them (only the pool size is used).
    pick : callable
        ``pick(data, budget, options) -> indices`` of shape ``(budget,)``.
    score : callable or None
        ``score(data) -> (N, *spatial)`` per-sample scores the strategy ranks, computed on any
        chunk of the pool alone (so a pool larger than memory can be scored in blocks, then
        picked with :attr:`then`); ``None`` when the strategy needs the whole pool at once
        (``batchbald``) or only its size (``random``).
    then : str
        How :attr:`score` becomes picks: ``"topk"`` or a stochastic mode (``"power"``, ...).
    """

    input: Input
    pick: Callable[[Any, int, Options], np.ndarray]
    score: Callable[[Any], np.ndarray] | None = None
    then: str = "topk"


STRATEGIES: Registry[Strategy] = Registry("acquisition strategy")
"""Every strategy :func:`select` accepts, by name."""


def _scored(
    input: Input, score: Callable[[Any], np.ndarray], *, stochastic: str | None = None
) -> Strategy:
    """A strategy that ranks a per-sample ``score``: top-k, or sampled by ``stochastic``."""

    def pick(data: Any, budget: int, o: Options) -> np.ndarray:
        s = reduce_scores(score(data), how=o.reduce, q=o.q)
        if stochastic is None:
            return top_k(s, budget)
        return stochastic_select(s, budget, mode=stochastic, beta=o.beta, seed=o.seed)

    return Strategy(input, pick, score=score, then=stochastic or "topk")


def _identity(x: Any) -> np.ndarray:
    return check_scores(x)


def _gaussian(fn: Callable[[Any, Any], np.ndarray]) -> Callable[[Any], np.ndarray]:
    return lambda mv: fn(*mv)


def _random(data: Any, budget: int, o: Options) -> np.ndarray:
    n = _pool_size(data)
    rng = np.random.default_rng(as_seed_sequence(o.seed))
    return rng.permutation(n)[:budget].astype(np.int64)


def _batchbald(data: Any, budget: int, o: Options) -> np.ndarray:
    return batchbald(data, budget, num_samples=o.num_samples, seed=o.seed)[0]


def _interval(data: Any, budget: int, o: Options) -> np.ndarray:
    mean, var = data
    width = regression.expected_interval_width(mean, var, level=o.level)
    return top_k(reduce_scores(width, how=o.reduce, q=o.q), budget)


STRATEGIES.register("random")(Strategy("any", _random))
STRATEGIES.register("topk")(_scored("scores", _identity))
for _mode in ("power", "softmax", "softrank"):
    STRATEGIES.register(_mode)(_scored("scores", _identity, stochastic=_mode))
STRATEGIES.register("entropy")(_scored("probs", classification.predictive_entropy))
STRATEGIES.register("margin")(_scored("probs", classification.margin))
STRATEGIES.register("least_confidence")(_scored("probs", classification.least_confidence))
STRATEGIES.register("bald")(_scored("probs", classification.bald))
STRATEGIES.register("power_bald")(_scored("probs", classification.bald, stochastic="power"))
STRATEGIES.register("batchbald")(Strategy("probs", _batchbald))
STRATEGIES.register("variance")(_scored("gaussian", _gaussian(regression.predictive_variance)))
STRATEGIES.register("epistemic_variance")(
    _scored("gaussian", _gaussian(regression.epistemic_variance))
)
STRATEGIES.register("interval_width")(
    Strategy("gaussian", _interval, score=_gaussian(regression.expected_interval_width))
)


def _pool_size(data: Any) -> int:
    if isinstance(data, tuple):
        return int(check_gaussian(*data)[0].shape[1])
    a = np.asarray(data)
    if a.ndim == 0:
        raise TrustmlInputError("Expected scores (N, ...), probs (K, N, C, ...) or (mean, var)")
    return int(a.shape[1] if a.ndim >= 3 else a.shape[0])


def _check_input(data: Any, kind: Input, name: str) -> Any:
    if kind == "gaussian":
        if not (isinstance(data, tuple | list) and len(data) == 2):
            raise TrustmlInputError(
                f"Strategy {name!r} expects a (mean, var) pair of (K, N, D) arrays, "
                f"got {type(data).__name__}"
            )
        return check_gaussian(*data)
    if kind == "probs":
        return check_probs(
            data, min_members=2 if name in ("bald", "power_bald", "batchbald") else 1
        )
    if kind == "scores":
        return check_scores(data)
    return data


def select(
    data: Any,
    budget: int,
    *,
    strategy: str = "topk",
    seed: SeedLike = None,
    reduce: str = "mean",
    q: float = 0.9,
    beta: float = 1.0,
    num_samples: int = 10_000,
    level: float = 0.9,
) -> np.ndarray:
    """Pick ``budget`` pool samples to label next.

    Parameters
    ----------
    data : array_like or tuple
        What the strategy scores (see ``STRATEGIES.get(name).input``):

        - ``"topk"``, ``"power"``, ``"softmax"``, ``"softrank"``: scores, shape
          ``(N,)`` or ``(N, *spatial)``;
        - ``"entropy"``, ``"margin"``, ``"least_confidence"``, ``"bald"``, ``"power_bald"``,
          ``"batchbald"``: class probabilities, shape ``(K, N, C)`` or ``(K, N, C, *spatial)``;
        - ``"variance"``, ``"epistemic_variance"``, ``"interval_width"``: a ``(mean, var)``
          pair, shape ``(K, N, D)`` or ``(K, N, D, *spatial)`` each;
        - ``"random"``: any of these (only the pool size ``N`` is used; an array with
          ``ndim >= 3`` is read as probabilities).
    budget : int
        How many samples to pick, in ``[0, N]``.
    strategy : str, default "topk"
        A name in :data:`STRATEGIES`.
    seed : int, SeedSequence or None
        Seeds ``"random"``, the stochastic strategies and BatchBALD's sampled configurations:
        the same seed gives the same picks.
    reduce : {"mean", "max", "quantile"}, default "mean"
        Reduction of per-pixel scores to one per sample (:func:`trustml.acquire.reduce`).
    q : float, default 0.9
        Quantile for ``reduce="quantile"``.
    beta : float, default 1.0
        Inverse temperature of the stochastic strategies.
    num_samples : int, default 10000
        BatchBALD's exact/sampled configuration budget.
    level : float, default 0.9
        Central interval level of ``"interval_width"``.

    Returns
    -------
    ndarray of int64, shape (budget,)
        Distinct pool indices, most wanted first; ties go to the lowest index.

    Raises
    ------
    ValueError
        For an unknown strategy (listing the valid ones), a budget above ``N``, or input that
        does not fit the strategy.

    Examples
    --------
    >>> import numpy as np
    >>> probs = np.array([[[0.5, 0.5], [1.0, 0.0]], [[0.5, 0.5], [0.0, 1.0]]])  # (K=2, N=2, C=2)
    >>> select(probs, 1, strategy="entropy").tolist(), select(probs, 1, strategy="bald").tolist()
    ([0], [1])
    """
    try:
        chosen = STRATEGIES.get(strategy)
    except KeyError as err:
        raise TrustmlInputError(f"strategy: {err.args[0]}") from None
    checked = _check_input(data, chosen.input, strategy)
    check_budget(budget, _pool_size(checked))
    options = Options(
        seed=seed, reduce=reduce, q=q, beta=beta, num_samples=num_samples, level=level
    )
    return chosen.pick(checked, int(budget), options)
