"""The names a protocol may use, each taken from its one definition.

- metrics: the :data:`trustml.metrics.METRICS` registry, per task; nothing is listed here;
- uncertainty methods: :data:`UNCERTAINTY_METHODS`; the runner's dispatch tables
  (``_methods.METHODS``, ``_sizes.METHOD_BYTES``) are keyed by them;
- attribution methods: :data:`ATTRIBUTION_METHODS`, the names of the
  :data:`trustml.explain.METHODS` registry. That registry imports Captum, which the schema
  must not pay for, so the names are written out here and ``tests/protocol/test_names.py``
  checks that the two agree;
- attribution checks: :data:`ATTRIBUTION_CHECKS`; the attribution stage's dispatch table
  (``_attribution.CHECKS``) is keyed by them;
- calibration methods: :data:`CALIBRATION_METHODS`, ``"none"`` and the keys of the runner's
  calibrator table (``_calibrate.CALIBRATORS``);
- acquisition strategies of a simulated labeling campaign: :data:`ACQUISITION_STRATEGIES`, the
  strategies of :data:`trustml.acquire.STRATEGIES` that score a model's predictions, per task
  (that package imports scipy, which the schema must not pay for; the test checks that they
  agree);
- corruptions of a shift ladder: :data:`CORRUPTION_NAMES`, the names of
  :data:`trustml.data.CORRUPTIONS` (the test checks that they agree);
- builtin models: :data:`MODEL_BUILTINS`, the names of :func:`trustml.models.model_names`
  (which imports torch; the test checks that they agree).

Nothing here imports torch.
"""

from __future__ import annotations

from typing import Final

from trustml.metrics.specs import metric_names

__all__ = [
    "ACQUISITION_STRATEGIES",
    "ALL_METRICS",
    "ATTRIBUTION_CHECKS",
    "ATTRIBUTION_METHODS",
    "CALIBRATION_METHODS",
    "CLASSIFICATION_METRICS",
    "CORRUPTION_NAMES",
    "MODEL_BUILTINS",
    "NO_CALIBRATION",
    "REGRESSION_METRICS",
    "UNCERTAINTY_METHODS",
    "UNCERTAINTY_QUANTITIES",
    "acquisition_strategies",
    "task_metrics",
]


def task_metrics(task: str) -> tuple[str, ...]:
    """The registered metrics that apply to ``task`` (the default ``metrics`` of a protocol)."""
    return tuple(metric_names(task))


REGRESSION_METRICS: Final = task_metrics("regression")
CLASSIFICATION_METRICS: Final = task_metrics("classification")
#: Every registered metric: what the schema's ``metrics`` items may name.
ALL_METRICS: Final = tuple(metric_names())

UNCERTAINTY_METHODS: Final = ("deep_ensemble", "bayes_svi", "bayes_nuts", "mc_dropout", "laplace")

ATTRIBUTION_METHODS: Final = (
    "integrated_gradients",
    "saliency",
    "input_x_gradient",
    "smoothgrad",
    "gradient_shap",
    "deeplift",
    "occlusion",
    "feature_ablation",
    "gradcam",
)

ATTRIBUTION_CHECKS: Final = (
    "completeness",
    "randomization",
    "deletion",
    "insertion",
    "infidelity",
    "sensitivity",
    "localization",
)

NO_CALIBRATION: Final = "none"
CALIBRATION_METHODS: Final = ("temperature", "isotonic", "conformal", NO_CALIBRATION)

MODEL_BUILTINS: Final = ("cnn", "mlp", "lstm")

#: The uncertainty quantities ``attribution.explain`` may list: the names of
#: :data:`trustml.explain.UNCERTAINTY_QUANTITIES` (the test checks that they agree).
UNCERTAINTY_QUANTITIES: Final = ("total", "aleatoric", "epistemic")

#: The corruptions a shift ladder may apply: the names of :data:`trustml.data.CORRUPTIONS`.
CORRUPTION_NAMES: Final = ("noise", "blur", "mask", "resolution")

#: The acquisition strategies that score a model's predictions, by the task they apply to
#: (``random`` applies to both).
_STRATEGIES_BY_TASK: Final = {
    "classification": (
        "random", "entropy", "margin", "least_confidence", "bald", "power_bald", "batchbald",
    ),
    "regression": ("random", "variance", "epistemic_variance", "interval_width"),
}  # fmt: skip
ACQUISITION_STRATEGIES: Final = tuple(
    dict.fromkeys(_STRATEGIES_BY_TASK["classification"] + _STRATEGIES_BY_TASK["regression"])
)


def acquisition_strategies(task: str) -> tuple[str, ...]:
    """The acquisition strategies that apply to ``task``."""
    return _STRATEGIES_BY_TASK[task]
