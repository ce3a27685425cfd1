"""The predictive distribution every trustml method returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special, stats

__all__ = ["Predictive"]


@dataclass(frozen=True)
class Predictive:
    """A predictive distribution built from K members (ensemble members or posterior draws).

    Regression: each member k predicts a Gaussian ``N(member_means[k], member_stds[k]**2)``; the
    predictive is their equal-weight mixture. Classification: each member predicts class
    probabilities; the predictive is their average.

    Parameters
    ----------
    task : {"regression", "classification"}
    member_means : ndarray of shape (K, N, D), regression only
    member_stds : ndarray of shape (K, N, D), regression only
    member_probs : ndarray of shape (K, N, C), classification only

    Examples
    --------
    >>> p = Predictive.regression(np.zeros((3, 4, 1)), np.ones((3, 4, 1)))
    >>> p.mean.shape, float(p.std[0, 0])
    ((4, 1), 1.0)
    """

    task: str
    member_means: np.ndarray | None = None
    member_stds: np.ndarray | None = None
    member_probs: np.ndarray | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def regression(cls, member_means: np.ndarray, member_stds: np.ndarray) -> Predictive:
        mu = np.asarray(member_means, dtype=np.float64)
        sd = np.asarray(member_stds, dtype=np.float64)
        if mu.ndim != 3 or mu.shape != sd.shape:
            raise ValueError(
                f"Expected member_means and member_stds of equal shape (K, N, D), got {mu.shape} and {sd.shape}"
            )
        if np.any(sd <= 0):
            raise ValueError("Expected member_stds > 0")
        return cls("regression", member_means=mu, member_stds=sd)

    @classmethod
    def classification(cls, member_probs: np.ndarray) -> Predictive:
        p = np.asarray(member_probs, dtype=np.float64)
        if p.ndim != 3:
            raise ValueError(f"Expected member_probs of shape (K, N, C), got {p.shape}")
        return cls("classification", member_probs=p)

    # -- shared ---------------------------------------------------------------------------
    @property
    def n_members(self) -> int:
        return int(self.members.shape[0])

    @property
    def members(self) -> np.ndarray:
        """Per-member predictions: means ``(K, N, D)`` or probabilities ``(K, N, C)``."""
        return self.member_means if self.task == "regression" else self.member_probs  # type: ignore[return-value]

    def _need(self, task: str, what: str) -> None:
        if self.task != task:
            raise AttributeError(
                f"{what} is defined for {task} predictives, this one is {self.task}"
            )

    # -- regression -----------------------------------------------------------------------
    @property
    def mean(self) -> np.ndarray:
        """Mixture mean, shape ``(N, D)``."""
        self._need("regression", "mean")
        return self.member_means.mean(axis=0)

    @property
    def aleatoric_var(self) -> np.ndarray:
        """Mean of the members' variances (noise the members predict), shape ``(N, D)``."""
        self._need("regression", "aleatoric_var")
        return (self.member_stds**2).mean(axis=0)

    @property
    def epistemic_var(self) -> np.ndarray:
        """Variance of the members' means (their disagreement), shape ``(N, D)``."""
        self._need("regression", "epistemic_var")
        return self.member_means.var(axis=0)

    @property
    def var(self) -> np.ndarray:
        """Total variance, ``aleatoric_var + epistemic_var`` (law of total variance)."""
        return self.aleatoric_var + self.epistemic_var

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)

    def cdf(self, y: np.ndarray) -> np.ndarray:
        """Mixture CDF at ``y`` of shape ``(N, D)``."""
        self._need("regression", "cdf")
        z = (np.asarray(y)[None] - self.member_means) / self.member_stds
        return special.ndtr(z).mean(axis=0)

    def quantile(self, q: float, *, tol: float = 1e-10) -> np.ndarray:
        """Mixture quantile, shape ``(N, D)``, by bisection on the (monotone) mixture CDF."""
        self._need("regression", "quantile")
        if not 0.0 < q < 1.0:
            raise ValueError(f"Expected q in (0, 1), got {q}")
        z = stats.norm.ppf(q)
        # Every member's own q-quantile brackets the mixture's.
        member_q = self.member_means + z * self.member_stds
        lo, hi = member_q.min(axis=0), member_q.max(axis=0)
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            below = self.cdf(mid) < q
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
            if np.max(hi - lo) < tol:
                break
        return 0.5 * (lo + hi)

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Central ``level`` interval of the mixture predictive: two arrays ``(N, D)``."""
        if not 0.0 < level < 1.0:
            raise ValueError(f"Expected level in (0, 1), got {level}")
        key = ("interval", float(level))
        if key not in self._cache:
            a = (1.0 - level) / 2.0
            self._cache[key] = (self.quantile(a), self.quantile(1.0 - a))
        return self._cache[key]

    def sample(self, n: int, *, seed: int | np.random.SeedSequence | None = None) -> np.ndarray:
        """``n`` draws from the mixture, shape ``(n, N, D)``."""
        self._need("regression", "sample")
        rng = np.random.default_rng(seed)
        k = rng.integers(0, self.n_members, size=(n, *self.member_means.shape[1:]))
        mu = np.take_along_axis(self.member_means[None], k[:, None], axis=1)[:, 0]
        sd = np.take_along_axis(self.member_stds[None], k[:, None], axis=1)[:, 0]
        return mu + sd * rng.standard_normal(mu.shape)

    # -- classification -------------------------------------------------------------------
    @property
    def probs(self) -> np.ndarray:
        """Averaged class probabilities, shape ``(N, C)``."""
        self._need("classification", "probs")
        return self.member_probs.mean(axis=0)

    @property
    def entropy(self) -> np.ndarray:
        """Predictive entropy (total uncertainty, nats), shape ``(N,)``."""
        p = self.probs
        return -(special.xlogy(p, p)).sum(axis=-1)

    @property
    def mutual_information(self) -> np.ndarray:
        """Entropy minus expected member entropy (the epistemic part), shape ``(N,)``."""
        pk = self.member_probs
        expected = -(special.xlogy(pk, pk)).sum(axis=-1).mean(axis=0)
        return np.maximum(self.entropy - expected, 0.0)
