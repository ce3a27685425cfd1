"""The uncertainty quantities that can be attributed, by name.

Dependency-free (no torch): the protocol schema takes its names from here.
"""

from __future__ import annotations

from typing import Final

__all__ = ["UNCERTAINTY_QUANTITIES"]

#: ``total``: predictive variance (regression) or predictive entropy (classification);
#: ``aleatoric``: mean member variance, or expected member entropy; ``epistemic``: variance of
#: the member means, or mutual information (``total - aleatoric``).
UNCERTAINTY_QUANTITIES: Final = ("total", "aleatoric", "epistemic")
