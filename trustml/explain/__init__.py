"""Attribution (Captum) over ensemble members and posterior samples, with sanity and
faithfulness checks and figures.

>>> import trustml as tm
>>> attr = tm.explain.attribute(ensemble, x, method="integrated_gradients", target=0)  # doctest: +SKIP
>>> attr.mean.shape, attr.std.shape, attr.rank_stability.shape                          # doctest: +SKIP
>>> tm.explain.randomization_test(ensemble, x, method="saliency").passed               # doctest: +SKIP
>>> u = tm.explain.attribute_uncertainty(ensemble, x, quantity="epistemic")             # doctest: +SKIP
>>> tm.explain.uncertainty_deletion_curve(ensemble, x, u).value  # area ratio, < 1 faithful  # doctest: +SKIP

Names load lazily: ``trustml.explain.figures`` needs only numpy and matplotlib.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "Attribution": "trustml.explain._result",
    "CheckResult": "trustml.explain._result",
    "METHODS": "trustml.explain.methods",
    "MethodSpec": "trustml.explain.methods",
    "feature_mask": "trustml.explain.methods",
    "occlusion_window": "trustml.explain.methods",
    "attribute": "trustml.explain.attribution",
    "completeness_check": "trustml.explain.checks",
    "localization": "trustml.explain.checks",
    "randomization_test": "trustml.explain.randomization",
    "deletion_curve": "trustml.explain.faithfulness",
    "insertion_curve": "trustml.explain.faithfulness",
    "infidelity": "trustml.explain.faithfulness",
    "sensitivity": "trustml.explain.faithfulness",
    "UncertaintyAttribution": "trustml.explain.uncertainty",
    "UNCERTAINTY_QUANTITIES": "trustml.explain._uncertainty_names",
    "attribute_uncertainty": "trustml.explain.uncertainty",
    "uncertainty_quantities": "trustml.explain.uncertainty",
    "uncertainty_deletion_curve": "trustml.explain.uncertainty",
    "plot_attribution": "trustml.explain.figures",
    "plot_maps_2d": "trustml.explain.figures",
    "plot_volume": "trustml.explain.figures",
    "plot_sequence": "trustml.explain.figures",
    "plot_curves": "trustml.explain.figures",
    "plot_randomization": "trustml.explain.figures",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover - re-exports for type checkers of the lazy names
    from trustml.explain._result import Attribution, CheckResult  # noqa: F401
    from trustml.explain._uncertainty_names import UNCERTAINTY_QUANTITIES  # noqa: F401
    from trustml.explain.attribution import attribute  # noqa: F401
    from trustml.explain.checks import completeness_check, localization  # noqa: F401
    from trustml.explain.faithfulness import (  # noqa: F401
        deletion_curve,
        infidelity,
        insertion_curve,
        sensitivity,
    )
    from trustml.explain.figures import (  # noqa: F401
        plot_attribution,
        plot_curves,
        plot_maps_2d,
        plot_randomization,
        plot_sequence,
        plot_volume,
    )
    from trustml.explain.methods import (  # noqa: F401
        METHODS,
        MethodSpec,
        feature_mask,
        occlusion_window,
    )
    from trustml.explain.randomization import randomization_test  # noqa: F401
    from trustml.explain.uncertainty import (  # noqa: F401
        UncertaintyAttribution,
        attribute_uncertainty,
        uncertainty_deletion_curve,
        uncertainty_quantities,
    )


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'trustml.explain' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
