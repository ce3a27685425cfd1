"""Result containers: :class:`Attribution` (maps per member) and :class:`CheckResult`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trustml.explain._stats import pairwise_spearman

__all__ = ["Attribution", "CheckResult"]


@dataclass(frozen=True)
class Attribution:
    """Attributions of K members (K = 1 for a plain module) for N examples.

    Attributes
    ----------
    members : ndarray of shape (K, N, *input_shape), float32
        One map per member (or posterior sample) and example.
    outputs : ndarray of shape (K, N), float64
        The attributed output ``F_k(x)`` of every member.
    baseline_outputs : ndarray of shape (K, N)
        ``F_k(baseline)`` (for ``gradient_shap``: the mean over the baseline distribution).
    convergence_delta : ndarray of shape (K, N) or None
        Captum's completeness gap ``sum(attr) - (F(x) - F(baseline))`` for the methods that
        have one (``integrated_gradients``, ``deeplift``).
    method : str
    strategy : {"vmap", "loop"}
        How the members were evaluated: stacked into one vectorized pass, or one by one.

    Examples
    --------
    >>> a = Attribution(np.ones((2, 3, 4)), np.zeros((2, 3)), np.zeros((2, 3)), None, "saliency")
    >>> a.mean.shape, a.std.shape, a.rank_stability.shape
    ((3, 4), (3, 4), (3,))
    """

    members: np.ndarray
    outputs: np.ndarray
    baseline_outputs: np.ndarray
    convergence_delta: np.ndarray | None
    method: str
    strategy: str = "loop"

    @property
    def n_members(self) -> int:
        """K, the number of members or posterior samples."""
        return int(self.members.shape[0])

    @property
    def mean(self) -> np.ndarray:
        """Member-mean attribution, shape ``(N, *input_shape)``."""
        return self.members.mean(axis=0)

    @property
    def std(self) -> np.ndarray:
        """Spread over members (explanation uncertainty, ``ddof=0``), ``(N, *input_shape)``."""
        return self.members.std(axis=0)

    @property
    def sign_agreement(self) -> np.ndarray:
        """Share of members whose sign equals the sign of the mean, ``(N, *input_shape)``."""
        return (np.sign(self.members) == np.sign(self.mean)[None]).mean(axis=0)

    @property
    def rank_stability(self) -> np.ndarray:
        """Mean pairwise Spearman correlation between the members' maps, shape ``(N,)``.

        1 when all members rank the features alike; NaN for a single member.
        """
        return pairwise_spearman(self.members)

    def summary(self) -> dict[str, Any]:
        """JSON-friendly scalars: members, examples, mean rank stability and sign agreement."""
        stability = self.rank_stability
        scale = float(np.abs(self.mean).mean())
        return {
            "method": self.method,
            "strategy": self.strategy,
            "n_members": self.n_members,
            "n_examples": int(self.members.shape[1]),
            "rank_stability": _finite(float(np.mean(stability))) if self.n_members > 1 else None,
            "sign_agreement": float(self.sign_agreement.mean()),
            "relative_std": float(self.std.mean() / scale) if scale > 0 else None,
        }


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


@dataclass(frozen=True)
class CheckResult:
    """A sanity or faithfulness check: its number, the threshold and whether it passed.

    Attributes
    ----------
    name : str
    value : float
        The check's number (NaN where it could not be computed; ``as_dict`` gives ``None``).
    threshold : float
    passed : bool
        ``value <comparison> threshold``.
    detail : str
        One sentence saying what ``value`` is.
    comparison : {"<=", "<", ">=", ">"}
        How ``value`` is compared with ``threshold``.
    extra : dict
        JSON-friendly curves and per-stage numbers (lists of floats, strings).
    """

    name: str
    value: float
    threshold: float
    passed: bool
    detail: str
    comparison: str = "<="
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON types only (NaN becomes ``None``)."""
        return {
            "name": self.name,
            "value": _finite(float(self.value)),
            "threshold": float(self.threshold),
            "comparison": self.comparison,
            "passed": bool(self.passed),
            "detail": self.detail,
            "extra": _jsonable(self.extra),
        }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return _finite(float(obj))
    return obj


def compare(value: float, threshold: float, comparison: str) -> bool:
    """``value <comparison> threshold``; NaN never passes."""
    if not math.isfinite(value):
        return False
    return {
        "<=": value <= threshold,
        "<": value < threshold,
        ">=": value >= threshold,
        ">": value > threshold,
    }[comparison]
