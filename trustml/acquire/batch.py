"""Batch-aware selection: BatchBALD and stochastic (power, softmax, soft-rank) acquisition.

Top-k of a per-sample score picks near-duplicates together: ten copies of the most uncertain
image are worth barely more than one. BatchBALD (Kirsch et al. 2019) picks greedily by the
joint mutual information of the batch; stochastic acquisition (Kirsch et al. 2021) samples
without replacement with probability proportional to ``score ** beta`` (or a softmax or soft
rank), which is about as good for large batches at the cost of one top-k.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import entr

from trustml.acquire._validation import check_budget, check_probs, check_scores
from trustml.exceptions import TrustmlInputError
from trustml.utils.seeding import SeedLike, as_seed_sequence

__all__ = ["STOCHASTIC_MODES", "batchbald", "stochastic_select", "top_k"]

STOCHASTIC_MODES = ("power", "softmax", "softrank")
"""Valid values of ``stochastic_select(mode=...)``."""

_CHUNK_ELEMENTS = 1 << 22
"""Joint-probability entries held at once while scoring candidates (32 MiB of float64)."""


def top_k(scores: ArrayLike, budget: int) -> np.ndarray:
    """Indices of the ``budget`` highest scores, highest first; ties go to the lowest index.

    Parameters
    ----------
    scores : array_like, shape (N,)
        One score per pool sample.
    budget : int
        How many to pick, in ``[0, N]``.

    Returns
    -------
    ndarray of int64, shape (budget,)

    Examples
    --------
    >>> top_k([0.1, 0.9, 0.5, 0.9], 3).tolist()
    [1, 3, 2]
    """
    s = check_scores(scores)
    if s.ndim != 1:
        raise TrustmlInputError(f"Expected scores of shape (N,), got {s.shape}; reduce() first")
    b = check_budget(budget, s.shape[0])
    return np.argsort(-s, kind="stable")[:b].astype(np.int64)


def stochastic_select(
    scores: ArrayLike,
    budget: int,
    *,
    mode: str = "power",
    beta: float = 1.0,
    seed: SeedLike = None,
) -> np.ndarray:
    """Sample ``budget`` indices without replacement, favouring high scores (Kirsch et al. 2021).

    Uses the Gumbel top-k trick: the ``budget`` largest ``log w_i + G_i`` with ``G_i`` iid
    standard Gumbel are a sample without replacement with probabilities proportional to
    ``w_i``: ``score ** beta`` (``"power"``, e.g. PowerBALD on BALD scores),
    ``exp(beta * score)`` (``"softmax"``) or ``rank ** -beta`` (``"softrank"``, rank 1 =
    highest score). ``beta -> inf`` approaches top-k; ``beta = 0`` is uniform random.

    Parameters
    ----------
    scores : array_like, shape (N,)
        One score per pool sample; ``>= 0`` for ``"power"`` (a 0 score is never picked while
        any positive one is left).
    budget : int
        How many to pick, in ``[0, N]``.
    mode : {"power", "softmax", "softrank"}, default "power"
    beta : float, default 1.0
        Inverse temperature, ``>= 0``.
    seed : int, SeedSequence or None
        The same seed gives the same picks; ``None`` draws fresh entropy.

    Returns
    -------
    ndarray of int64, shape (budget,)
        Picked indices, in order of their perturbed keys.

    Examples
    --------
    >>> a = stochastic_select([0.1, 2.0, 0.5, 1.0], 2, seed=0)
    >>> b = stochastic_select([0.1, 2.0, 0.5, 1.0], 2, seed=0)
    >>> bool((a == b).all())
    True
    """
    s = check_scores(scores)
    if s.ndim != 1:
        raise TrustmlInputError(f"Expected scores of shape (N,), got {s.shape}; reduce() first")
    b = check_budget(budget, s.shape[0])
    if mode not in STOCHASTIC_MODES:
        raise TrustmlInputError(
            f"The 'mode' parameter of stochastic_select must be one of "
            f"{{{', '.join(map(repr, STOCHASTIC_MODES))}}}. Got {mode!r} instead."
        )
    if not (np.isfinite(beta) and beta >= 0):
        raise TrustmlInputError(f"Expected beta >= 0, got {beta!r}")
    if mode == "power":
        if s.size and s.min() < 0:
            raise TrustmlInputError(
                f"Expected scores >= 0 for mode='power', got {s.min()}; use mode='softmax'"
            )
        with np.errstate(divide="ignore"):
            keys = beta * np.log(s) if beta > 0 else np.zeros_like(s)
    elif mode == "softmax":
        keys = beta * s
    else:
        rank = np.empty(s.shape[0])
        rank[np.argsort(-s, kind="stable")] = np.arange(1, s.shape[0] + 1)
        keys = -beta * np.log(rank)
    gumbel = np.random.default_rng(as_seed_sequence(seed)).gumbel(size=s.shape[0])
    return np.argsort(-(keys + gumbel), kind="stable")[:b].astype(np.int64)


def _sample_joint(p: np.ndarray, picked: list[int], samples: int, rng: np.random.Generator):
    """Joint probabilities ``(K, M)`` of ``M = K * (samples // K)`` label configurations of the
    picked samples, drawn stratified over members: ``samples // K`` from each member's
    predictive, so that together they are draws from the mixture."""
    k = p.shape[0]
    per_member = max(1, samples // k)
    member = np.repeat(np.arange(k), per_member)
    joint = np.ones((k, member.shape[0]))
    for i in picked:
        cdf = np.cumsum(p[member, i, :], axis=1)
        u = rng.random(member.shape[0])[:, None] * cdf[:, -1:]
        labels = np.minimum((cdf <= u).sum(axis=1), p.shape[2] - 1)
        joint *= p[:, i, labels]
    return joint


def _joint_entropies(joint: np.ndarray, p: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Entropy of (picked labels, y_n) for every candidate ``n``: ``(N,)``, chunked over N."""
    k, m = joint.shape
    n, c = p.shape[1], p.shape[2]
    out = np.empty(n)
    step = max(1, _CHUNK_ELEMENTS // (m * c))
    for start in range(0, n, step):
        stop = min(n, start + step)
        mix = np.einsum("km,knc->nmc", joint, p[:, start:stop], optimize=True) / k
        nats = entr(mix)
        if weights is None:
            out[start:stop] = nats.sum(axis=(1, 2))
        else:  # importance weights P(config) / q(config) of the sampled configurations
            out[start:stop] = (nats / weights[None, :, None]).sum(axis=(1, 2)) / m
    return out


def batchbald(
    probs: ArrayLike,
    budget: int,
    *,
    num_samples: int = 10_000,
    seed: SeedLike = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy BatchBALD (Kirsch et al. 2019): a batch of maximal joint mutual information.

    Step ``b`` adds the candidate ``n`` maximising ``I[y_1..y_{b-1}, y_n; w] =
    H[y_1..y_{b-1}, y_n] - sum_i mean_k H[p_k(y_i)]``. The joint entropy is exact while the
    ``C ** (b-1)`` label configurations of the picked samples fit in ``num_samples``: their
    probabilities under each member are a ``(K, C ** (b-1))`` product. Beyond, it is estimated
    from ``num_samples`` configurations drawn from the predictive mixture (importance-weighted,
    as ``batchbald_redux`` does), redrawn each step from ``seed``. Memory is bounded by
    ``K * num_samples * C`` plus fixed-size chunks of the pool, whatever ``N``.

    Parameters
    ----------
    probs : array_like, shape (K, N, C)
        Class probabilities of ``K >= 2`` members or posterior draws. Per-pixel outputs have no
        tractable joint over pixels: reduce BALD over pixels and use :func:`stochastic_select`.
    budget : int
        Batch size, in ``[0, N]``.
    num_samples : int, default 10000
        Largest number of exact configurations, and the number of sampled ones beyond.
    seed : int, SeedSequence or None
        Seeds the sampled configurations (exact steps use no randomness).

    Returns
    -------
    indices : ndarray of int64, shape (budget,)
        Picks in the order chosen; a tie goes to the lowest index.
    joint_mi : ndarray, shape (budget,)
        Joint mutual information (nats) of the first ``i + 1`` picks; ``joint_mi[0]`` is the
        BALD score of the first pick.

    Examples
    --------
    >>> import numpy as np
    >>> one = np.array([[0.9, 0.1], [0.1, 0.9]])  # (K=2, C=2): the members disagree
    >>> probs = np.stack([one, one, 0.5 * np.ones((2, 2))], axis=1)  # a copy, then a sure point
    >>> idx, mi = batchbald(probs, 2)
    >>> idx.tolist()
    [0, 1]
    """
    p = check_probs(probs, min_members=2)
    if p.ndim != 3:
        raise TrustmlInputError(
            f"Expected probs of shape (K, N, C) for batchbald, got {p.shape}; for per-pixel "
            "outputs reduce bald() over pixels and use stochastic_select()"
        )
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise TrustmlInputError(f"Expected num_samples to be an int >= 1, got {num_samples!r}")
    k, n, c = p.shape
    b = check_budget(budget, n)
    rng = np.random.default_rng(as_seed_sequence(seed))
    conditional = entr(p).sum(axis=2).mean(axis=0)
    picked: list[int] = []
    joint_mi = np.empty(b)
    joint: np.ndarray = np.ones((k, 1))
    for step in range(b):
        weights = None
        if step > 0:
            if c**step <= num_samples:
                joint = (joint[:, :, None] * p[:, picked[-1], None, :]).reshape(k, -1)
            else:
                joint = _sample_joint(p, picked, num_samples, rng)
                weights = joint.mean(axis=0)
        gain = _joint_entropies(joint, p, weights) - conditional - conditional[picked].sum()
        gain[picked] = -np.inf
        best = int(np.argmax(gain))  # the first maximum: ties go to the lowest index
        picked.append(best)
        joint_mi[step] = gain[best]
    return np.asarray(picked, dtype=np.int64), joint_mi
