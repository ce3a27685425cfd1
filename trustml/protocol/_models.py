"""The pydantic models of protocol version 1: one per mapping of the protocol file.

Names (metrics, methods, checks) come from :mod:`trustml.protocol._names`; field types from
:mod:`trustml.protocol._fields`. Cross-field rules raise :class:`KeyedError`, which names the key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, field_validator, model_validator

from trustml.protocol._acquisition import AcquisitionSpec
from trustml.protocol._data_spec import (
    DataSpec,
    HDF5Source,
    ShiftSpec,
    Split,
    check_criterion,
    check_examples_source,
)
from trustml.protocol._fields import (
    LABEL,
    AtLeastTwo,
    Float,
    Fraction,
    KeyedError,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Seed,
    StrictModel,
)
from trustml.protocol._names import (
    ALL_METRICS,
    ATTRIBUTION_CHECKS,
    ATTRIBUTION_METHODS,
    CALIBRATION_METHODS,
    MODEL_BUILTINS,
    NO_CALIBRATION,
    UNCERTAINTY_METHODS,
    UNCERTAINTY_QUANTITIES,
    task_metrics,
)
from trustml.protocol._parallel_spec import ParallelSpec
from trustml.protocol._search_spec import SearchSpec

__all__ = [
    "AcquisitionSpec",
    "AttributionSpec",
    "Bound",
    "CalibrationSpec",
    "DEFAULT_SAMPLES",
    "DataSpec",
    "HDF5Source",
    "ModelSpec",
    "ParallelSpec",
    "Protocol",
    "ReportSpec",
    "ShiftSpec",
    "Split",
    "TrainSpec",
    "UNCERTAINTY_KEYS",
    "UncertaintySpec",
]


class ModelSpec(StrictModel):
    builtin: Literal[MODEL_BUILTINS] | None = None  # type: ignore[valid-type]
    factory: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_model(self) -> ModelSpec:
        if (self.builtin is None) == (self.factory is None):
            raise ValueError("give exactly one of 'builtin' or 'factory'")
        if self.factory is not None and ":" not in self.factory:
            raise ValueError(f"factory must look like 'pkg.module:function', got {self.factory!r}")
        return self


class TrainSpec(StrictModel):
    epochs: PositiveInt = 20
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0


#: Which optional keys of ``uncertainty`` apply to which method (``method`` and ``label``
#: apply to all). Setting a key that does not apply is an error, never silently ignored.
UNCERTAINTY_KEYS: dict[str, tuple[str, ...]] = {
    "members": ("deep_ensemble",),
    "samples": ("bayes_svi", "bayes_nuts", "mc_dropout", "laplace"),
    "train": ("deep_ensemble", "bayes_svi", "mc_dropout", "laplace"),
    "prior_scale": ("bayes_svi", "bayes_nuts"),
    "guide": ("bayes_svi",),
    "bayesian_layers": ("bayes_svi",),
    "num_samples": ("bayes_nuts",),
    "warmup": ("bayes_nuts",),
    "chains": ("bayes_nuts",),
    "subset_of_weights": ("laplace",),
    "hessian": ("laplace",),
    "prior_precision": ("laplace",),
    "pred": ("laplace",),
    "search": ("deep_ensemble",),
}
#: Posterior-predictive draws when ``samples`` is not given (NUTS: every kept draw).
DEFAULT_SAMPLES = {"bayes_svi": 100, "mc_dropout": 50, "bayes_nuts": None, "laplace": 50}


class UncertaintySpec(StrictModel):
    """One uncertainty method. Keys that do not apply to ``method`` are rejected."""

    method: Literal[UNCERTAINTY_METHODS] = "deep_ensemble"  # type: ignore[valid-type]
    label: Annotated[str, Field(min_length=1, max_length=40, pattern=LABEL)] | None = None
    # deep_ensemble
    members: AtLeastTwo = 5
    # bayes_svi, bayes_nuts, mc_dropout, laplace: posterior-predictive draws
    samples: AtLeastTwo | None = None
    # deep_ensemble, bayes_svi, mc_dropout, laplace (its MAP network)
    train: TrainSpec = Field(default_factory=TrainSpec)
    # bayes_svi, bayes_nuts
    prior_scale: PositiveFloat = 1.0
    guide: Literal["normal", "lowrank"] = "normal"
    bayesian_layers: list[Annotated[str, Field(min_length=1)]] | None = None
    # bayes_nuts
    num_samples: PositiveInt = 200
    warmup: PositiveInt = 200
    chains: PositiveInt = 2
    # laplace (laplace-torch): weights covered, Hessian structure, prior precision, predictive
    subset_of_weights: Literal["last_layer", "all"] = "last_layer"
    hessian: Literal["kron", "diag", "full"] = "kron"
    prior_precision: Literal["marglik", "gridsearch"] | PositiveFloat = "marglik"
    pred: Literal["glm", "nn"] = "glm"
    # deep_ensemble: build the members by a hyper-parameter search (needs data.split.validation)
    search: SearchSpec | None = None

    @property
    def name(self) -> str:
        """The label in reports and acceptance criteria (default: the method)."""
        return self.label or self.method

    @property
    def draws(self) -> int | None:
        """Posterior-predictive draws (``samples``, else the method's default)."""
        return self.samples if self.samples is not None else DEFAULT_SAMPLES.get(self.method)

    def settings(self) -> dict[str, Any]:
        """The keys that apply to this method, with their values (for the report)."""
        out: dict[str, Any] = {"method": self.method}
        for key, methods in UNCERTAINTY_KEYS.items():
            if self.method in methods:
                value = getattr(self, key)
                if key == "search" and value is None:
                    continue  # a plain ensemble's settings are as before
                out[key] = value.model_dump() if isinstance(value, BaseModel) else value
        if self.method in DEFAULT_SAMPLES:
            out["samples"] = self.draws
        return out


class CalibrationSpec(StrictModel):
    method: Literal[CALIBRATION_METHODS] = NO_CALIBRATION  # type: ignore[valid-type]
    alpha: Fraction = 0.1


#: What ``attribution.explain`` may list: the prediction, and the uncertainty quantities.
EXPLAIN_ITEMS = ("prediction", *UNCERTAINTY_QUANTITIES)


class AttributionSpec(StrictModel):
    methods: list[Literal[ATTRIBUTION_METHODS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["integrated_gradients"], min_length=1
    )
    n_examples: PositiveInt = 8
    target: NonNegativeInt = 0
    n_steps: PositiveInt = 50
    checks: list[Literal[ATTRIBUTION_CHECKS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["completeness"]
    )
    # What is attributed: the prediction and/or uncertainty quantities (trustml.explain).
    explain: list[Literal[EXPLAIN_ITEMS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["prediction"], min_length=1
    )
    # Where the explained examples come from: the test split, or a shifted test set
    # ("shift:NAME") or a ladder level ("shift:NAME:LEVEL"); checked against data.shifts.
    examples_from: Annotated[str, Field(pattern=r"^(test|shift:.+)$")] = "test"

    @field_validator("methods", "checks", "explain")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("an item is listed more than once")
        return v

    @property
    def uncertainty(self) -> list[str]:
        """The uncertainty quantities of ``explain``, in protocol order."""
        return [item for item in self.explain if item != "prediction"]

    @property
    def uncertainty_method(self) -> str | None:
        """The method that attributes the uncertainty: the first listed one that explains a
        function of all members (not ``gradcam``); None without uncertainty items."""
        if not self.uncertainty:
            return None
        return next((m for m in self.methods if m != "gradcam"), None)

    @model_validator(mode="after")
    def _explain_is_possible(self) -> AttributionSpec:
        if "prediction" not in self.explain:
            raise KeyedError(
                "attribution.explain",
                "must list 'prediction': the uncertainty maps are shown next to the prediction "
                f"maps (e.g. [prediction, {', '.join(self.explain)}])",
            )
        if self.uncertainty and self.uncertainty_method is None:
            raise KeyedError(
                "attribution.explain",
                "uncertainty attribution needs a method other than gradcam in "
                "attribution.methods (gradcam explains a layer of one network)",
            )
        return self

    @model_validator(mode="after")
    def _completeness_needs_ig(self) -> AttributionSpec:
        if "completeness" in self.checks and "integrated_gradients" not in self.methods:
            raise KeyedError(
                "attribution.checks",
                "'completeness' checks integrated gradients; add 'integrated_gradients' to "
                "attribution.methods or drop the check",
            )
        return self


class Bound(StrictModel):
    min: Float | None = None
    max: Float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("give 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class ReportSpec(StrictModel):
    out: str | None = None


def _version_is_int(value: Any) -> Any:
    # Literal[1] alone would take `true` and `1.0` (both == 1); the version is an integer.
    if isinstance(value, bool):
        raise ValueError(f"must be 1 (the schema version, an integer), got {str(value).lower()}")
    if not isinstance(value, int):
        raise ValueError(f"must be 1 (the schema version, an integer), got {value!r}")
    return value


class Protocol(StrictModel):
    """A validated protocol (version 1). See ``trustml init`` for a commented example."""

    trustml: Annotated[Literal[1], BeforeValidator(_version_is_int)]
    name: Annotated[
        str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    ]
    seed: Seed = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    parallel: ParallelSpec = Field(default_factory=ParallelSpec)
    data: DataSpec
    task: Literal["regression", "classification"]
    model: ModelSpec
    uncertainty: Annotated[list[UncertaintySpec], Field(min_length=1)] = Field(
        default_factory=lambda: [UncertaintySpec()]
    )
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)
    metrics: list[Literal[ALL_METRICS]] | None = None  # type: ignore[valid-type]
    attribution: AttributionSpec | None = None
    acquisition: AcquisitionSpec | None = None
    acceptance: dict[str, Bound] = Field(default_factory=dict)
    claims: Annotated[str, Field(min_length=1)] | None = None
    limitations: Annotated[str, Field(min_length=1)] | None = None
    report: ReportSpec = Field(default_factory=ReportSpec)

    @field_validator("uncertainty", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        # One method (a mapping) or a list of them to compare; stored as a list.
        return [v] if isinstance(v, dict) else v

    @field_validator("metrics")
    @classmethod
    def _unique_metrics(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("metrics are listed more than once")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Protocol:
        allowed = task_metrics(self.task)
        for i, m in enumerate(self.metric_names):
            if m not in allowed:
                raise KeyedError(
                    f"metrics[{i}]",
                    f"{m!r} does not apply to task {self.task!r}; valid: {', '.join(allowed)}",
                )
        labels: dict[str, int] = {}
        for i, spec in enumerate(self.uncertainty):
            where = self.method_key(i)
            for key in sorted(spec.model_fields_set & set(UNCERTAINTY_KEYS)):
                if spec.method not in UNCERTAINTY_KEYS[key]:
                    raise KeyedError(
                        f"{where}.{key}",
                        f"does not apply to method {spec.method!r} (it applies to "
                        f"{', '.join(UNCERTAINTY_KEYS[key])})",
                    )
            if spec.search is not None:
                spec.search.check(where, self.task, spec.members)
                if self.data.split.validation is None:
                    raise KeyedError(
                        "data.split.validation",
                        f"{where}.search selects members on a validation split of its own (never "
                        "the calibration or test split); add e.g. validation: 0.1 to data.split "
                        "and lower the other fractions",
                    )
            if spec.name in labels:
                raise KeyedError(
                    f"{where}.label",
                    f"two methods are labelled {spec.name!r} (uncertainty[{labels[spec.name]}] "
                    "too); give each a distinct 'label'",
                )
            labels[spec.name] = i
        for key in self.acceptance:
            check_criterion(key, self.metric_names, list(labels), self.data.shifts)
        if self.attribution is not None and self.attribution.examples_from != "test":
            check_examples_source(self.attribution.examples_from, self.data.shifts)
        if self.acquisition is not None:
            self.acquisition.check(self.task, list(labels))
        self.parallel.check(self.uncertainty, self.method_key, self.acquisition is not None)
        if self.data.split.order == "random" and "gap" in self.data.split.model_fields_set:
            raise KeyedError("data.split.gap", "applies to order: temporal only")
        return self

    @property
    def campaign_method(self) -> int:
        """Index of the method a labeling campaign trains (``acquisition.method``, else 0)."""
        label = self.acquisition.method if self.acquisition is not None else None
        names = [m.name for m in self.uncertainty]
        return names.index(label) if label is not None else 0

    def method_key(self, i: int) -> str:
        """The key of method ``i`` in error messages: ``uncertainty[i]``, or ``uncertainty``
        when the protocol has one method."""
        return f"uncertainty[{i}]" if len(self.uncertainty) > 1 else "uncertainty"

    @property
    def methods(self) -> list[UncertaintySpec]:
        """The uncertainty methods to compare; the first is the primary one."""
        return list(self.uncertainty)

    @property
    def primary(self) -> UncertaintySpec:
        """The first uncertainty method: acceptance criteria without ``@label`` apply to it."""
        return self.uncertainty[0]

    @property
    def metric_names(self) -> list[str]:
        """The metrics to compute: those listed, or every registered metric of the task."""
        if self.metrics is not None:
            return list(self.metrics)
        return list(task_metrics(self.task))
