"""The protocol file, version 1: a pydantic schema and a strict YAML loader.

Every model forbids unknown keys, so a typo is an error that names the key path and suggests the
closest valid key. Errors are raised as :class:`trustml.exceptions.ProtocolError` with one line.
"""

from __future__ import annotations

import difflib
import math
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from trustml.exceptions import ProtocolError

__all__ = [
    "Protocol",
    "build_json_schema",
    "protocol_schema",
    "load_protocol",
    "parse_protocol",
    "REGRESSION_METRICS",
    "CLASSIFICATION_METRICS",
]

REGRESSION_METRICS = ("rmse", "mae", "nll", "crps", "coverage", "interval_width")
CLASSIFICATION_METRICS = ("accuracy", "nll", "brier", "ece")
_ALL_METRICS = tuple(dict.fromkeys(REGRESSION_METRICS + CLASSIFICATION_METRICS))


def _no_bool(value: Any) -> Any:
    # YAML's true/false are Python bools, and bool is an int: pydantic's lax float would take
    # `lr: true` as 1.0. A number key never takes a bool.
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"must be a number, got {str(bool(value)).lower()} (a bool)")
    return value


def _integer(value: Any) -> Any:
    # Strict int below takes Python ints only: not a bool (YAML's true/false), 5.0 or "5".
    # numpy integers (a protocol built in Python) are ints too.
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"must be an integer, got {str(bool(value)).lower()} (a bool)")
    if isinstance(value, np.integer):
        return int(value)
    return value


# Integer keys. The checks wrap the constrained int, so the JSON Schema keeps its bounds.
PositiveInt = Annotated[int, Strict(), Field(ge=1), BeforeValidator(_integer)]
NonNegativeInt = Annotated[int, Strict(), Field(ge=0), BeforeValidator(_integer)]
AtLeastTwo = Annotated[int, Strict(), Field(ge=2), BeforeValidator(_integer)]
Seed = Annotated[int, Strict(), Field(ge=0, lt=2**63), BeforeValidator(_integer)]
# Number keys: an int or a float (or a YAML 1.1 string such as ``1e-3``), finite, not a bool.
# The bool check comes last so that it wraps the constrained float (and the JSON Schema keeps
# its exclusiveMinimum/exclusiveMaximum).
Float = Annotated[float, Field(allow_inf_nan=False), BeforeValidator(_no_bool)]
PositiveFloat = Annotated[float, Field(gt=0.0, allow_inf_nan=False), BeforeValidator(_no_bool)]
NonNegativeFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False), BeforeValidator(_no_bool)]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0, allow_inf_nan=False), BeforeValidator(_no_bool)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class HDF5Source(_Strict):
    """``data.hdf5``: where the arrays are inside an HDF5 file."""

    path: str
    inputs: str = "/x"
    targets: str = "/y"
    groups: str | None = None


class Split(_Strict):
    """Fractions of the samples for each split; they must sum to 1."""

    train: Fraction = 0.7
    calibration: Fraction = 0.15
    test: Fraction = 0.15
    order: Literal["random", "temporal"] = "random"
    gap: NonNegativeInt = 0

    @model_validator(mode="after")
    def _sums_to_one(self) -> Split:
        total = self.train + self.calibration + self.test
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"train + calibration + test must sum to 1, got {total:.6g}")
        return self


class ShiftSpec(_Strict):
    """``data.shifts.NAME``: a distribution-shifted test set, scored with the trained model.

    ``builtin`` defaults to the main dataset's, and ``options`` are merged over its options
    (e.g. ``{options: {shift: 1.0}}``); or give an ``hdf5`` source.
    """

    builtin: str | None = None
    hdf5: HDF5Source | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _at_most_one_source(self) -> ShiftSpec:
        if self.builtin is not None and self.hdf5 is not None:
            raise ValueError("give at most one of 'builtin' or 'hdf5'")
        if self.hdf5 is not None and self.options:
            raise ValueError("'options' apply to builtin datasets only")
        return self


class DataSpec(_Strict):
    builtin: str | None = None
    hdf5: HDF5Source | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    split: Split = Field(default_factory=Split)
    shifts: dict[Annotated[str, Field(pattern=_LABEL)], ShiftSpec] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.builtin is None) == (self.hdf5 is None):
            raise ValueError("give exactly one of 'builtin' or 'hdf5'")
        if self.hdf5 is not None and self.options:
            raise ValueError("'options' apply to builtin datasets only")
        return self


class ModelSpec(_Strict):
    builtin: Literal["cnn", "mlp", "lstm"] | None = None
    factory: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_model(self) -> ModelSpec:
        if (self.builtin is None) == (self.factory is None):
            raise ValueError("give exactly one of 'builtin' or 'factory'")
        if self.factory is not None and ":" not in self.factory:
            raise ValueError(f"factory must look like 'pkg.module:function', got {self.factory!r}")
        return self


class TrainSpec(_Strict):
    epochs: PositiveInt = 20
    batch_size: PositiveInt = 64
    lr: PositiveFloat = 1e-3
    weight_decay: NonNegativeFloat = 0.0


UNCERTAINTY_METHODS = ("deep_ensemble", "bayes_svi", "bayes_nuts", "mc_dropout")
ATTRIBUTION_METHODS = (
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
ATTRIBUTION_CHECKS = (
    "completeness",
    "randomization",
    "deletion",
    "insertion",
    "infidelity",
    "sensitivity",
    "localization",
)

#: Which optional keys of ``uncertainty`` apply to which method (``method`` and ``label``
#: apply to all). Setting a key that does not apply is an error, never silently ignored.
UNCERTAINTY_KEYS: dict[str, tuple[str, ...]] = {
    "members": ("deep_ensemble",),
    "samples": ("bayes_svi", "bayes_nuts", "mc_dropout"),
    "train": ("deep_ensemble", "bayes_svi", "mc_dropout"),
    "prior_scale": ("bayes_svi", "bayes_nuts"),
    "guide": ("bayes_svi",),
    "bayesian_layers": ("bayes_svi",),
    "num_samples": ("bayes_nuts",),
    "warmup": ("bayes_nuts",),
    "chains": ("bayes_nuts",),
}
#: Posterior-predictive draws when ``samples`` is not given (NUTS: every kept draw).
DEFAULT_SAMPLES = {"bayes_svi": 100, "mc_dropout": 50, "bayes_nuts": None}

_LABEL = r"^[A-Za-z][A-Za-z0-9_\-]*$"


class UncertaintySpec(_Strict):
    """One uncertainty method. Keys that do not apply to ``method`` are rejected."""

    method: Literal["deep_ensemble", "bayes_svi", "bayes_nuts", "mc_dropout"] = "deep_ensemble"
    label: Annotated[str, Field(min_length=1, max_length=40, pattern=_LABEL)] | None = None
    # deep_ensemble
    members: AtLeastTwo = 5
    # bayes_svi, bayes_nuts, mc_dropout: posterior-predictive draws
    samples: AtLeastTwo | None = None
    # deep_ensemble, bayes_svi, mc_dropout
    train: TrainSpec = Field(default_factory=TrainSpec)
    # bayes_svi, bayes_nuts
    prior_scale: PositiveFloat = 1.0
    guide: Literal["normal", "lowrank"] = "normal"
    bayesian_layers: list[Annotated[str, Field(min_length=1)]] | None = None
    # bayes_nuts
    num_samples: PositiveInt = 200
    warmup: PositiveInt = 200
    chains: PositiveInt = 2

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
                out[key] = value.model_dump() if isinstance(value, BaseModel) else value
        if self.method in DEFAULT_SAMPLES:
            out["samples"] = self.draws
        return out


class CalibrationSpec(_Strict):
    method: Literal["temperature", "isotonic", "conformal", "none"] = "none"
    alpha: Fraction = 0.1


class AttributionSpec(_Strict):
    methods: list[Literal[ATTRIBUTION_METHODS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["integrated_gradients"], min_length=1
    )
    n_examples: PositiveInt = 8
    target: NonNegativeInt = 0
    n_steps: PositiveInt = 50
    checks: list[Literal[ATTRIBUTION_CHECKS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["completeness"]
    )

    @field_validator("methods", "checks")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("an item is listed more than once")
        return v

    @model_validator(mode="after")
    def _completeness_needs_ig(self) -> AttributionSpec:
        if "completeness" in self.checks and "integrated_gradients" not in self.methods:
            raise _KeyedError(
                "attribution.checks",
                "'completeness' checks integrated gradients; add 'integrated_gradients' to "
                "attribution.methods or drop the check",
            )
        return self


class Bound(_Strict):
    min: Float | None = None
    max: Float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("give 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class ReportSpec(_Strict):
    out: str | None = None


def _version_is_int(value: Any) -> Any:
    # Literal[1] alone would take `true` and `1.0` (both == 1); the version is an integer.
    if isinstance(value, bool):
        raise ValueError(f"must be 1 (the schema version, an integer), got {str(value).lower()}")
    if not isinstance(value, int):
        raise ValueError(f"must be 1 (the schema version, an integer), got {value!r}")
    return value


class Protocol(_Strict):
    """A validated protocol (version 1). See ``trustml init`` for a commented example."""

    trustml: Annotated[Literal[1], BeforeValidator(_version_is_int)]
    name: Annotated[
        str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    ]
    seed: Seed = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    data: DataSpec
    task: Literal["regression", "classification"]
    model: ModelSpec
    uncertainty: Annotated[list[UncertaintySpec], Field(min_length=1)] = Field(
        default_factory=lambda: [UncertaintySpec()]
    )
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)
    metrics: list[Literal[_ALL_METRICS]] | None = None  # type: ignore[valid-type]
    attribution: AttributionSpec | None = None
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
        allowed = REGRESSION_METRICS if self.task == "regression" else CLASSIFICATION_METRICS
        for i, m in enumerate(self.metric_names):
            if m not in allowed:
                raise _KeyedError(
                    f"metrics[{i}]",
                    f"{m!r} does not apply to task {self.task!r}; valid: {', '.join(allowed)}",
                )
        many = len(self.uncertainty) > 1
        labels: dict[str, int] = {}
        for i, spec in enumerate(self.uncertainty):
            where = f"uncertainty[{i}]" if many else "uncertainty"
            for key in sorted(spec.model_fields_set & set(UNCERTAINTY_KEYS)):
                if spec.method not in UNCERTAINTY_KEYS[key]:
                    raise _KeyedError(
                        f"{where}.{key}",
                        f"does not apply to method {spec.method!r} (it applies to "
                        f"{', '.join(UNCERTAINTY_KEYS[key])})",
                    )
            if spec.name in labels:
                raise _KeyedError(
                    f"{where}.label",
                    f"two methods are labelled {spec.name!r} (uncertainty[{labels[spec.name]}] "
                    "too); give each a distinct 'label'",
                )
            labels[spec.name] = i
        for key in self.acceptance:
            metric, _, label = key.partition("@")
            if metric not in self.metric_names:
                raise _KeyedError(
                    f"acceptance.{key}",
                    f"not a metric of this protocol; metrics: {', '.join(self.metric_names)}",
                )
            if "@" in key and label not in labels:
                raise _KeyedError(
                    f"acceptance.{key}",
                    f"no uncertainty method is labelled {label!r}; labels: {', '.join(labels)}",
                )
        if self.data.split.order == "random" and "gap" in self.data.split.model_fields_set:
            raise _KeyedError("data.split.gap", "applies to order: temporal only")
        return self

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
        """The metrics to compute: those listed, or every metric of the task."""
        if self.metrics is not None:
            return list(self.metrics)
        return list(REGRESSION_METRICS if self.task == "regression" else CLASSIFICATION_METRICS)


class _KeyedError(ValueError):
    """A cross-field error that knows which key it is about."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


class _StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys instead of keeping the last one."""


def _construct_mapping(loader: _StrictSafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *defaults`: merged keys may be overridden, never duplicates
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ProtocolError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                f"(first at line {seen[key] + 1})"
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictSafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def _format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the mapping at ``loc`` (for 'did you mean')."""
    ann: Any = Protocol
    for part in loc:
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            field = ann.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            ann = field.annotation
        elif typing.get_origin(ann) in (dict, list):
            ann = typing.get_args(ann)[-1]  # a dict's values or a list's items
        else:
            return None
        # Optional[Model] and other unions: take the model branch.
        if typing.get_origin(ann) in (types.UnionType, typing.Union):
            ann = next((a for a in typing.get_args(ann) if a is not type(None)), ann)
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


_BOUND_WORDS = {
    "greater_than_equal": ">=",
    "greater_than": ">",
    "less_than_equal": "<=",
    "less_than": "<",
}


def _pretty(err: dict[str, Any]) -> tuple[str, str]:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    # pydantic inserts the Literal/union branch name into loc; drop such parts.
    loc = tuple(
        p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("literal")))
    )
    key = _format_loc(loc) or "protocol"
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        valid = sorted(parent.model_fields) if parent is not None else []
        hint = difflib.get_close_matches(str(loc[-1]), valid, n=1)
        msg = "unknown key"
        if hint:
            msg += f"; did you mean '{hint[0]}'?"
        if valid:
            msg += f" (valid here: {', '.join(valid)})"
        return key, msg
    if kind == "missing":
        return key, "required key is missing"
    ctx = err.get("ctx") or {}
    got = f", got {err['input']!r}" if "input" in err else ""
    if kind in _BOUND_WORDS:
        (bound,) = (ctx[k] for k in ("ge", "gt", "le", "lt") if k in ctx)
        return key, f"must be {_BOUND_WORDS[kind]} {bound}{got}"
    if kind == "literal_error":
        return key, f"must be one of {ctx.get('expected', '')}{got}"
    if kind == "int_type":
        return key, f"must be an integer{got}"
    if kind == "finite_number":
        return key, f"must be a finite number{got}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        # Our own validators' messages already say what came.
        return key, msg[len("Value error, ") :]
    if kind in ("model_type", "dict_type"):
        return key, f"expected a mapping, got {type(err.get('input')).__name__}"
    return key, msg[0].lower() + msg[1:] + got


def parse_protocol(raw: Any) -> Protocol:
    """Validate an already-loaded mapping (e.g. from YAML) into a :class:`Protocol`."""
    if not isinstance(raw, dict):
        raise ProtocolError(f"expected a mapping at the top level, got {type(raw).__name__}")
    if "trustml" not in raw:
        raise ProtocolError(
            "required key is missing (the schema version, 'trustml: 1')", key="trustml"
        )
    try:
        return Protocol.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        # Cross-field errors raised with _KeyedError carry a better key than pydantic's loc.
        for e in errors:
            ctx_err = (e.get("ctx") or {}).get("error")
            if isinstance(ctx_err, _KeyedError):
                raise ProtocolError(str(ctx_err), key=ctx_err.key) from None
        # Report unknown keys first: a typo often causes a 'missing' error too.
        errors.sort(key=lambda e: e["type"] != "extra_forbidden")
        key, msg = _pretty(errors[0])
        if isinstance(raw.get("uncertainty"), dict) and key.startswith("uncertainty[0]"):
            key = "uncertainty" + key[len("uncertainty[0]") :]  # it was given as one mapping
        more = (
            f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
            if len(errors) > 1
            else ""
        )
        raise ProtocolError(msg + more, key=key) from None


#: Most nodes (scalars, sequences, mappings) a YAML document may expand to once its aliases are
#: resolved. A protocol has a few hundred; nine levels of nine aliases (the "billion laughs")
#: would have hundreds of millions.
MAX_YAML_NODES = 100_000


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes of the document under ``root`` with every alias expanded, counted on the composed
    graph (an alias is the anchored node object itself): each node once, memoised, so the cost
    is linear in the text however large the expansion. Stops counting past ``limit``.

    Raises ProtocolError (no source prefix) for an alias that refers to its own ancestor.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            if isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            else:
                children = node.value
            sizes[key] = min(limit + 1, 1 + sum(sizes[id(c)] for c in children))
            continue
        if key in sizes:
            continue
        if not isinstance(node, yaml.SequenceNode | yaml.MappingNode):
            sizes[key] = 1
            continue
        if key in on_path:
            raise ProtocolError(
                f"a YAML alias at line {node.start_mark.line + 1} refers to a node that contains "
                "it (a recursive structure)"
            )
        on_path.add(key)
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = node.value
        for child in children:
            if id(child) in on_path:
                raise ProtocolError(
                    f"a YAML alias at line {child.start_mark.line + 1} refers to a node that "
                    "contains it (a recursive structure)"
                )
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _load_document(text: str) -> Any:
    """``yaml.load`` in two steps: compose the node graph, check its expanded size, construct."""
    loader = _StrictSafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise ProtocolError(
                f"YAML aliases expand to more than {MAX_YAML_NODES:,} nodes (an alias bomb?); "
                "write the protocol without such nested aliases"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_yaml(text: str, *, source: str = "protocol") -> Any:
    """Safely load YAML text; syntax errors name the line, duplicate keys are rejected.

    Aliases are checked before they are expanded: a document that would expand to more than
    :data:`MAX_YAML_NODES` nodes, or an alias to its own ancestor, is an error.
    """
    try:
        return _load_document(text)
    except ProtocolError as exc:
        raise ProtocolError(f"{source}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ProtocolError(f"{source}: YAML syntax error{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ProtocolError(f"{source}: invalid YAML: {exc}".splitlines()[0]) from None


def load_protocol(path: str | Path, overrides: list[str] | None = None) -> tuple[Protocol, str]:
    """Read, override and validate a protocol file.

    Parameters
    ----------
    path : str or Path
        The protocol YAML file.
    overrides : list of str, optional
        ``"key.path=value"`` items applied before validation (``value`` is parsed as YAML).

    Returns
    -------
    protocol : Protocol
    text : str
        What to save with the run (``protocol.yaml``) so that it reproduces: without overrides
        the file's text, byte for byte; with overrides a YAML document of the overridden
        protocol (a comment line naming the file and the ``--set`` items, then the mapping),
        which loads to an equal :class:`Protocol`.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProtocolError(f"{p}: protocol file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{p}: cannot read protocol file ({exc.__class__.__name__})") from None
    raw = load_yaml(text, source=str(p))
    for item in overrides or []:
        raw = _apply_override(raw, item)
    protocol = parse_protocol(raw)
    if overrides:
        text = _overridden_text(p, overrides, raw)
    return protocol, text


class _ExpandingDumper(yaml.SafeDumper):
    """SafeDumper that writes shared objects out in full instead of as anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _overridden_text(path: Path, overrides: list[str], raw: Any) -> str:
    """The protocol after ``--set``: a header comment, then the mapping as YAML."""
    applied = " ".join(f"--set {item}" for item in overrides)
    header = f"# trustml: this protocol is {path} with {applied} applied"
    header = " ".join(header.split())  # one comment line, whatever the items held
    body = yaml.dump(
        raw, Dumper=_ExpandingDumper, sort_keys=False, default_flow_style=None, allow_unicode=True
    )
    return f"{header}\n{body}"


def _apply_override(raw: Any, item: str) -> Any:
    """Apply one ``--set key.path=value``; a numeric part indexes a list
    (``uncertainty.1.members=8``)."""
    if "=" not in item:
        raise ProtocolError(f"--set expects key.path=value, got {item!r}")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts) or not isinstance(raw, dict):
        raise ProtocolError(f"--set: invalid key path {key!r}")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ProtocolError(
                    f"--set: {key!r}: {part!r} must index the list of {len(node)} items there"
                )
            if last:
                node[int(part)] = load_yaml(value, source=f"--set {key}")
            else:
                node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ProtocolError(
                f"--set: {key!r} goes through {parts[i - 1]!r}, which is not a mapping"
            )
        if last:
            node[part] = load_yaml(value, source=f"--set {key}")
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
    return raw


SCHEMA_FILE = "protocol.schema.json"


def build_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of protocol v1, generated from the pydantic models.

    Editors and CI can validate a protocol with it (e.g. the YAML language server's
    ``# yaml-language-server: $schema=...``). Cross-field rules (keys that apply to one
    uncertainty method only, metrics per task, acceptance keys) are checked by trustml itself.
    Regenerate the shipped copy with ``python -m trustml.protocol.schema > trustml/protocol/protocol.schema.json``.
    """
    schema = Protocol.model_json_schema(mode="validation")
    # A single method may be given as one mapping instead of a list.
    one = schema["properties"]["uncertainty"]
    schema["properties"]["uncertainty"] = {
        "title": "Uncertainty",
        "description": "One uncertainty method, or a list of them compared side by side "
        "(the first is the primary one).",
        "anyOf": [one["items"], {k: v for k, v in one.items() if k not in ("title", "default")}],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://trustml.dev/schemas/protocol-v1.json",
        **schema,
    }


def protocol_schema() -> dict[str, Any]:
    """The JSON Schema of protocol v1 shipped with the package (see :func:`build_json_schema`)."""
    import json
    from importlib import resources

    text = resources.files("trustml.protocol").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


if __name__ == "__main__":  # pragma: no cover - regenerates the shipped schema
    import json
    import sys

    sys.stdout.write(json.dumps(build_json_schema(), indent=2, sort_keys=True) + "\n")
