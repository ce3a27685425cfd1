"""The predictive distribution every trustml method returns, and how calibration changes it."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import special

from trustml.exceptions import NotFittedError

if TYPE_CHECKING:  # pragma: no cover
    import arviz

__all__ = ["CalibrationMap", "Predictive"]

SeedLike = int | np.random.SeedSequence | None


class CalibrationMap:
    """How a fitted calibrator changes a :class:`Predictive`; this base class changes nothing.

    A calibrator in :mod:`trustml.calibration` returns a new ``Predictive`` whose
    ``calibration`` field holds a subclass of this. The subclass overrides only what it
    calibrates; everything else falls through to the members' mixture:

    - temperature scaling rescales the member logits themselves and keeps this base class only
      as a record (``in_members = True``);
    - isotonic recalibration overrides :meth:`cdf` and :meth:`quantile` (so ``interval`` and
      ``sample`` follow);
    - split conformal overrides :meth:`interval` (regression) or :meth:`predict_set`
      (classification).

    Moments (``mean``, ``std``, ``aleatoric_var``, ``epistemic_var``) and ``members`` always
    describe the members, so the law of total variance holds for every ``Predictive``.

    Parameters
    ----------
    method : str
        Name of the calibration method, e.g. ``"temperature"``.
    params : dict, optional
        Fitted numbers worth reporting (``{"temperature": 1.7}``); JSON-serialisable.
    """

    #: True when the calibration lives in the member arrays, so another calibrator may be
    #: fitted on top of the result.
    in_members: bool = False

    def __init__(self, method: str, params: dict[str, Any] | None = None) -> None:
        self.method = method
        self.params = dict(params or {})

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.method!r}, params={self.params!r})"

    def cdf(self, pred: Predictive, y: np.ndarray) -> np.ndarray:
        """Calibrated CDF at ``y`` of shape ``(N, D)``."""
        return pred.mixture_cdf(y)

    def quantile(self, pred: Predictive, q: Any) -> np.ndarray:
        """Calibrated quantile; ``q`` a float or an array broadcastable to ``(..., N, D)``."""
        return pred.mixture_quantile(q)

    def interval(self, pred: Predictive, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Central ``level`` interval, two arrays ``(N, D)``."""
        a = (1.0 - level) / 2.0
        return self.quantile(pred, a), self.quantile(pred, 1.0 - a)

    def sample(self, pred: Predictive, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draws ``(n, N, D)``: from the mixture unless :meth:`quantile` is overridden."""
        if type(self).quantile is CalibrationMap.quantile:
            return pred._mixture_sample(n, rng)
        u = rng.uniform(size=(n, *pred._means.shape[1:]))
        return self.quantile(pred, np.clip(u, 1e-12, 1.0 - 1e-12))

    def predict_set(self, pred: Predictive, level: float | None) -> np.ndarray:
        """Boolean prediction sets ``(N, C)``; only conformal calibration defines them."""
        raise NotFittedError(
            "predict_set needs a conformally calibrated predictive: fit "
            "trustml.calibration.SplitConformal on a calibration split and transform this one"
        )


_NONE = CalibrationMap("none")


@dataclass(frozen=True, eq=False)
class Predictive:
    """A predictive distribution built from K members (ensemble members or posterior draws).

    Regression: member k predicts ``Normal(member_means[k], member_stds[k]**2)``; the predictive
    is their equal-weight mixture. Classification: member k predicts class probabilities
    ``member_probs[k]`` (optionally from ``member_logits[k]``); the predictive is their average.

    The object is immutable (its arrays are read-only copies). Calibrators return a new one
    whose ``calibration`` (a :class:`CalibrationMap`) says what changed; ``calibration is None``
    means the members' own, uncalibrated, predictive.

    Parameters
    ----------
    task : {"regression", "classification"}
    member_means, member_stds : ndarray of shape (K, N, D), regression only
    member_probs : ndarray of shape (K, N, C), classification only
    member_logits : ndarray of shape (K, N, C) or None, classification only
        Kept when known, so temperature scaling is exact.
    calibration : CalibrationMap or None

    Examples
    --------
    >>> p = Predictive.regression(np.zeros((3, 4, 1)), np.ones((3, 4, 1)))
    >>> p.mean.shape, float(p.std[0, 0])
    ((4, 1), 1.0)
    >>> lo, hi = p.interval(0.9)
    >>> round(float(hi[0, 0]), 4)
    1.6449
    """

    task: str
    member_means: np.ndarray | None = None
    member_stds: np.ndarray | None = None
    member_probs: np.ndarray | None = None
    member_logits: np.ndarray | None = None
    calibration: CalibrationMap | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    # -- constructors ---------------------------------------------------------------------
    @classmethod
    def regression(cls, member_means: Any, member_stds: Any) -> Predictive:
        """Mixture of K Gaussians per output; both arrays ``(K, N, D)``, stds > 0."""
        mu, sd = _frozen(member_means), _frozen(member_stds)
        if mu.ndim != 3 or mu.shape != sd.shape:
            raise ValueError(
                f"Expected member_means and member_stds of equal shape (K, N, D), got {mu.shape} and {sd.shape}"
            )
        if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sd))):
            raise ValueError("Expected finite member_means and member_stds")
        if np.any(sd <= 0):
            raise ValueError("Expected member_stds > 0")
        return cls("regression", member_means=mu, member_stds=sd)

    @classmethod
    def classification(cls, member_probs: Any = None, *, member_logits: Any = None) -> Predictive:
        """Average of K categorical predictions; ``member_probs`` and/or ``member_logits``
        ``(K, N, C)``. Given logits alone, the probabilities are their softmax."""
        if member_probs is None and member_logits is None:
            raise ValueError("Expected member_probs or member_logits, got neither")
        logits = None
        if member_logits is not None:
            logits = _frozen(member_logits)
            if logits.ndim != 3 or not np.all(np.isfinite(logits)):
                raise ValueError(
                    f"Expected finite member_logits of shape (K, N, C), got shape {logits.shape}"
                )
        if member_probs is None:
            probs = _frozen(special.softmax(logits, axis=-1))
        else:
            probs = _frozen(member_probs)
            if probs.ndim != 3:
                raise ValueError(f"Expected member_probs of shape (K, N, C), got {probs.shape}")
            if not np.all((probs >= 0) & (probs <= 1)) or np.any(
                np.abs(probs.sum(-1) - 1.0) > 1e-3
            ):
                raise ValueError("Expected member_probs in [0, 1] with rows summing to 1")
            if logits is not None and (
                logits.shape != probs.shape
                or not np.allclose(special.softmax(logits, axis=-1), probs, atol=1e-4)
            ):
                raise ValueError("Expected member_probs == softmax(member_logits)")
        return cls("classification", member_probs=probs, member_logits=logits)

    def with_calibration(self, calibration: CalibrationMap, **members: Any) -> Predictive:
        """A copy carrying ``calibration``, with member arrays optionally replaced.

        For calibrators: ``pred.with_calibration(m, member_probs=p, member_logits=z)``.
        """
        allowed = {"member_means", "member_stds", "member_probs", "member_logits"}
        if set(members) - allowed:
            raise TypeError(f"Unexpected members {sorted(set(members) - allowed)}")
        # Any: mypy checks **new against every field, task (str) included.
        new: dict[str, Any] = {k: None if v is None else _frozen(v) for k, v in members.items()}
        return replace(self, calibration=calibration, **new)

    def member_subset(self, idx: Any) -> Predictive:
        """The predictive of members ``idx`` only (in that order, repeats allowed: an ensemble
        selected with replacement), with every member array and the calibration kept.

        Parameters
        ----------
        idx : sequence of int
            Member indices into ``0..K-1``.
        """
        ix = np.asarray(idx, dtype=np.int64)
        arrays = ("member_means", "member_stds", "member_probs", "member_logits")
        new: dict[str, Any] = {}
        for name in arrays:
            a = getattr(self, name)
            new[name] = None if a is None else _frozen(a[ix])
        return replace(self, **new)

    # -- shared ---------------------------------------------------------------------------
    @property
    def n_members(self) -> int:
        return int(self.members.shape[0])

    @property
    def members(self) -> np.ndarray:
        """Per-member predictions: means ``(K, N, D)`` or probabilities ``(K, N, C)``."""
        return self.member_means if self.task == "regression" else self.member_probs  # type: ignore[return-value]

    @property
    def _means(self) -> np.ndarray:
        return _required(self.member_means, "member_means", self.task)

    @property
    def _stds(self) -> np.ndarray:
        return _required(self.member_stds, "member_stds", self.task)

    @property
    def _probs(self) -> np.ndarray:
        return _required(self.member_probs, "member_probs", self.task)

    @property
    def _map(self) -> CalibrationMap:
        return self.calibration if self.calibration is not None else _NONE

    def _need(self, task: str, what: str) -> None:
        if self.task != task:
            raise AttributeError(
                f"{what} is defined for {task} predictives, this one is {self.task}"
            )

    def to_inference_data(self, y: Any = None, *, seed: SeedLike = 0) -> arviz.InferenceData:
        """The members as an ArviZ ``InferenceData`` (``posterior_predictive`` group).

        Dims: ``chain`` (1), ``draw`` (the K members), ``obs`` (the N inputs; not ``sample``,
        which ``arviz.extract`` uses for stacked chain and draw), then ``target`` (D) or
        ``class`` (C). Variables: regression ``y`` (one draw from each member's Gaussian),
        ``mean`` and ``std``; classification ``y`` (one label drawn from each member),
        ``probs`` and, when known, ``logits``. Members are those of this object: for
        isotonic or conformal calibration, the model's (``attrs["calibration"]`` says which).

        Parameters
        ----------
        y : array_like, optional
            Observed targets ``(N, D)`` / ``(N,)`` or labels ``(N,)``: adds ``observed_data``.
        seed : int, SeedSequence or None, default 0
            Seeds the ``y`` draws.

        Examples
        --------
        >>> p = Predictive.regression(np.zeros((3, 4, 2)), np.ones((3, 4, 2)))
        >>> dict(p.to_inference_data().posterior_predictive["mean"].sizes)
        {'chain': 1, 'draw': 3, 'obs': 4, 'target': 2}
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # arviz's refactor notice
            import arviz as az
        rng = np.random.default_rng(seed)
        k, n = self.members.shape[:2]
        if self.task == "regression":
            last = "target"
            mu, sd = self._means, self._stds
            pp = {"y": mu + sd * rng.standard_normal(mu.shape), "mean": mu, "std": sd}
            dims = {name: ["obs", last] for name in pp}
            obs_dims = ["obs", last]
            observed = None if y is None else self._targets(y)
        else:
            last = "class"
            cum = np.cumsum(self._probs, axis=-1)
            u = rng.uniform(size=(k, n, 1)) * cum[..., -1:]
            pp = {"y": (u > cum).sum(-1), "probs": self._probs}
            if self.member_logits is not None:
                pp["logits"] = self.member_logits
            dims = {name: ["obs", last] for name in pp}
            dims["y"] = obs_dims = ["obs"]
            observed = None if y is None else self._labels(y)
        coords = {"obs": np.arange(n), last: np.arange(self.members.shape[2])}
        idata = az.from_dict(
            posterior_predictive={name: v[None] for name, v in pp.items()},
            observed_data=None if observed is None else {"y": observed},
            dims={**dims, **({} if observed is None else {"y": obs_dims})},
            coords=coords,
        )
        attrs = {
            "task": self.task,
            "n_members": int(k),
            "calibration": self._map.method,
            "trustml_version": _version(),
        }
        for group in idata.groups():
            idata[group].attrs.update(attrs)
        return idata

    def _targets(self, y: Any) -> np.ndarray:
        """``y`` as ``(N, D)`` (``(N,)`` accepted when ``D == 1``)."""
        shape = self._means.shape[1:]
        a = np.asarray(y, dtype=np.float64)
        if a.shape == shape[:1] and shape[1] == 1:
            a = a[:, None]
        if a.shape != shape:
            raise ValueError(f"Expected y of shape {shape} to match the predictive, got {a.shape}")
        return a

    def _labels(self, labels: Any) -> np.ndarray:
        a = np.asarray(labels)
        n, c = self._probs.shape[1:]
        if a.shape != (n,) or np.any(a != np.round(a)) or np.any((a < 0) | (a >= c)):
            raise ValueError(f"Expected integer labels in [0, {c}) of shape ({n},)")
        return a.astype(np.int64)

    # -- regression: moments (always the members') ----------------------------------------
    @property
    def mean(self) -> np.ndarray:
        """Mixture mean, shape ``(N, D)``."""
        self._need("regression", "mean")
        return self._means.mean(axis=0)

    @property
    def aleatoric_var(self) -> np.ndarray:
        """Mean of the members' variances (noise the members predict), shape ``(N, D)``."""
        self._need("regression", "aleatoric_var")
        return (self._stds**2).mean(axis=0)

    @property
    def epistemic_var(self) -> np.ndarray:
        """Variance of the members' means (their disagreement), shape ``(N, D)``."""
        self._need("regression", "epistemic_var")
        return self._means.var(axis=0)

    @property
    def var(self) -> np.ndarray:
        """Total variance, ``aleatoric_var + epistemic_var`` (law of total variance)."""
        return self.aleatoric_var + self.epistemic_var

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)

    # -- regression: probabilities (calibrated when a calibration map says so) ------------
    def mixture_cdf(self, y: Any) -> np.ndarray:
        """CDF of the members' mixture at ``y`` ``(N, D)``, ignoring any calibration."""
        self._need("regression", "cdf")
        z = (self._targets(y)[None] - self._means) / self._stds
        return special.ndtr(z).mean(axis=0)

    def mixture_quantile(self, q: Any, *, tol: float = 1e-10) -> np.ndarray:
        """Quantile of the members' mixture, ignoring any calibration.

        ``q`` is a float or an array broadcastable to ``(..., N, D)``; the result has the
        broadcast shape. Bisection on the (monotone) mixture CDF.
        """
        self._need("regression", "quantile")
        q = np.asarray(q, dtype=np.float64)
        if not np.all((q > 0.0) & (q < 1.0)):
            raise ValueError(f"Expected q in (0, 1), got values in [{q.min()}, {q.max()}]")
        base = self._means.shape[1:]
        shape = np.broadcast_shapes(q.shape, base)
        lead = (1,) * (len(shape) - len(base))
        mu = self._means.reshape(-1, *lead, *base)
        sd = self._stds.reshape(-1, *lead, *base)
        # Every member's own q-quantile brackets the mixture's.
        member_q = mu + special.ndtri(q) * sd
        lo = np.broadcast_to(member_q.min(axis=0), shape)
        hi = np.broadcast_to(member_q.max(axis=0), shape)
        for _ in range(200):
            if np.max(hi - lo, initial=0.0) < tol:
                break
            mid = 0.5 * (lo + hi)
            below = special.ndtr((mid - mu) / sd).mean(axis=0) < q
            lo = np.where(below, mid, lo)
            hi = np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def cdf(self, y: Any) -> np.ndarray:
        """Predictive CDF at ``y`` ``(N, D)`` (``(N,)`` when ``D == 1``); shape ``(N, D)``."""
        self._need("regression", "cdf")
        return self._map.cdf(self, self._targets(y))

    def quantile(self, q: float) -> np.ndarray:
        """Predictive ``q``-quantile, shape ``(N, D)``."""
        self._need("regression", "quantile")
        if not 0.0 < q < 1.0:
            raise ValueError(f"Expected q in (0, 1), got {q}")
        return self._map.quantile(self, q)

    def interval(self, level: float) -> tuple[np.ndarray, np.ndarray]:
        """Central ``level`` interval of the predictive (mixture quantiles, not mean ± z·std;
        conformal after :class:`~trustml.calibration.SplitConformal`): two arrays ``(N, D)``."""
        self._need("regression", "interval")
        if not 0.0 < level < 1.0:
            raise ValueError(f"Expected level in (0, 1), got {level}")
        key = ("interval", float(level))
        if key not in self._cache:
            self._cache[key] = self._map.interval(self, float(level))
        return self._cache[key]

    def sample(self, n: int, *, seed: SeedLike = None) -> np.ndarray:
        """``n`` draws from the predictive, shape ``(n, N, D)``."""
        self._need("regression", "sample")
        return self._map.sample(self, n, np.random.default_rng(seed))

    def _mixture_sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        k = rng.integers(0, self.n_members, size=(n, *self._means.shape[1:]))
        mu = np.take_along_axis(self._means[None], k[:, None], axis=1)[:, 0]
        sd = np.take_along_axis(self._stds[None], k[:, None], axis=1)[:, 0]
        return mu + sd * rng.standard_normal(mu.shape)

    # -- classification -------------------------------------------------------------------
    @property
    def probs(self) -> np.ndarray:
        """Averaged class probabilities, shape ``(N, C)``."""
        self._need("classification", "probs")
        return self._probs.mean(axis=0)

    @property
    def entropy(self) -> np.ndarray:
        """Predictive entropy (total uncertainty, nats), shape ``(N,)``."""
        p = self.probs
        return -(special.xlogy(p, p)).sum(axis=-1)

    @property
    def mutual_information(self) -> np.ndarray:
        """Entropy minus expected member entropy (the epistemic part), shape ``(N,)``."""
        pk = self._probs
        expected = -(special.xlogy(pk, pk)).sum(axis=-1).mean(axis=0)
        return np.maximum(self.entropy - expected, 0.0)

    def predict_set(self, level: float | None = None) -> np.ndarray:
        """Conformal prediction sets, boolean ``(N, C)`` (``True``: class in the set).

        Needs a predictive returned by ``SplitConformal(alpha).fit(...).transform(...)``;
        ``level`` defaults to its ``1 - alpha``.
        """
        self._need("classification", "predict_set")
        if level is not None and not 0.0 < level < 1.0:
            raise ValueError(f"Expected level in (0, 1), got {level}")
        return self._map.predict_set(self, level)


def _version() -> str:
    try:
        return metadata.version("trustml")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0+unknown"


def _required(a: np.ndarray | None, name: str, task: str) -> np.ndarray:
    """``a``, which a well-formed ``task`` predictive always has (the constructors set it)."""
    if a is None:
        raise AttributeError(f"this {task} predictive has no {name}")
    return a


def _frozen(a: Any) -> np.ndarray:
    """A read-only float64 copy (tensors are detached and moved to the CPU first)."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().double().numpy()
    out = np.array(a, dtype=np.float64)
    out.setflags(write=False)
    return out
