"""The names inside ``arrays.h5``: every group and array a run writes, declared once.

The runner writes arrays only under paths built here, the report reads them only through
here, and the results JSON Schema documents them from :data:`ARRAYS`. A path is ``GROUP/NAME``:

- ``test``: the primary method's calibrated predictions on the test split, plus the test
  targets (``test/targets``, regression) or labels (``test/labels``, classification);
- ``methods/<label>/test``: the same for every other compared method;
- ``shifts/<name>``: the primary method on a distribution-shifted test set, with its targets;
- ``shifts/<name>/levels/<j>``: level ``j`` (0-based, in the protocol's order) of a shift
  ladder: its targets or labels, and every compared method's calibrated predictions in
  ``shifts/<name>/levels/<j>/methods/<label>``;
- ``attribution``: the explained test inputs and, per attribution method, the maps of every
  member or posterior sample (``attribution/<method>/maps``; ``attribution/maps`` is the
  first method's) and, per attributed uncertainty quantity, its maps and values
  (``attribution/uncertainty/<quantity>/uncertainty_maps``, ``.../uncertainty_values``);
- ``acquisition``: a simulated labeling campaign: the labels held after each round
  (``acquisition/n_labels``) and, per strategy, the test metric of every repeat and round
  (``acquisition/<strategy>/curve``) and the training-pool samples it labeled, in order
  (``acquisition/<strategy>/picked``).

Dependency-free (layer 0): nothing here imports numpy, torch or another trustml module.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACQUISITION",
    "ACQUISITION_N_LABELS",
    "ARRAYS",
    "ATTRIBUTION",
    "ATTRIBUTION_INPUTS",
    "ATTRIBUTION_MASKS",
    "ATTRIBUTION_TARGET_INDEX",
    "PRIMARY_TEST",
    "acquisition_curve",
    "acquisition_picked",
    "attribution_maps",
    "is_attribution_maps",
    "uncertainty_maps",
    "uncertainty_values",
    "ladder_level",
    "ladder_method",
    "method_test",
    "path",
    "shift",
]

# -- groups ---------------------------------------------------------------------------------
PRIMARY_TEST: Final = "test"
"""The primary method's test-split predictions and the test targets or labels."""
ATTRIBUTION: Final = "attribution"
"""Explained inputs and attribution maps."""
ACQUISITION: Final = "acquisition"
"""A simulated labeling campaign: learning curves and picks per strategy."""

# -- arrays of a prediction group (test, methods/<label>/test, shifts/<name>) ----------------
MEAN: Final = "mean"
STD: Final = "std"
LOWER: Final = "lower"
UPPER: Final = "upper"
EPISTEMIC_VAR: Final = "epistemic_var"
ALEATORIC_VAR: Final = "aleatoric_var"
PIT: Final = "pit"
PIT_RAW: Final = "pit_raw"
PROBS: Final = "probs"
PROBS_RAW: Final = "probs_raw"
MUTUAL_INFORMATION: Final = "mutual_information"
PREDICTION_SETS: Final = "prediction_sets"
TARGETS: Final = "targets"
LABELS: Final = "labels"

# -- arrays of the attribution group -------------------------------------------------------------
ATTRIBUTION_INPUTS: Final = "attribution/inputs"
ATTRIBUTION_TARGET_INDEX: Final = "attribution/target_index"
ATTRIBUTION_MASKS: Final = "attribution/masks"
_MAPS: Final = "maps"
_UNCERTAINTY_MAPS: Final = "uncertainty_maps"
_UNCERTAINTY_VALUES: Final = "uncertainty_values"

# -- arrays of the acquisition group -----------------------------------------------------------
ACQUISITION_N_LABELS: Final = "acquisition/n_labels"
_CURVE: Final = "curve"
_PICKED: Final = "picked"

#: Every array name with its shape and meaning; the results schema documents arrays.h5 from it.
ARRAYS: Final[dict[str, tuple[str, str]]] = {
    MEAN: ("(N, D)", "predictive mean (regression, data units)"),
    STD: ("(N, D)", "predictive standard deviation (calibrated)"),
    LOWER: ("(N, D)", "lower end of the central interval at the calibration level"),
    UPPER: ("(N, D)", "upper end of the central interval at the calibration level"),
    EPISTEMIC_VAR: ("(N, D)", "variance between members or posterior samples"),
    ALEATORIC_VAR: ("(N, D)", "mean within-member (noise) variance"),
    PIT: ("(N, D)", "probability integral transform of the targets (calibrated)"),
    PIT_RAW: ("(N, D)", "probability integral transform before calibration"),
    PROBS: ("(N, C)", "class probabilities (calibrated)"),
    PROBS_RAW: ("(N, C)", "class probabilities before calibration"),
    MUTUAL_INFORMATION: ("(N,)", "mutual information between prediction and model (epistemic)"),
    PREDICTION_SETS: ("(N, C) bool", "conformal prediction sets"),
    TARGETS: ("(N, D)", "regression targets"),
    LABELS: ("(N,) int", "class labels"),
    ATTRIBUTION_INPUTS: ("(E, *input_shape)", "the explained test inputs"),
    ATTRIBUTION_TARGET_INDEX: ("(E,) int", "the output (class or target) each map explains"),
    ATTRIBUTION_MASKS: ("(E, 1, *grid)", "ground-truth masks of the explained inputs"),
    _MAPS: ("(K, E, *input_shape)", "attribution maps of every member or posterior sample"),
    _UNCERTAINTY_MAPS: (
        "(1, E, *input_shape)",
        "attribution of an uncertainty quantity (total, aleatoric or epistemic), one function "
        "of all members or posterior samples",
    ),
    _UNCERTAINTY_VALUES: ("(E,)", "the attributed uncertainty quantity at each explained input"),
    ACQUISITION_N_LABELS: ("(T,) int", "labels held when each round's model was trained"),
    _CURVE: ("(R, T)", "a strategy's test metric per repeat and round"),
    _PICKED: (
        "(R, L) int",
        "dataset indices a strategy labeled per repeat, in order (the initial random set first)",
    ),
}


def path(group: str, name: str) -> str:
    """``group/name``, the HDF5 path of array ``name`` (one of :data:`ARRAYS`) in ``group``."""
    if name not in ARRAYS:
        raise KeyError(f"unknown array name {name!r}; known: {', '.join(sorted(ARRAYS))}")
    return f"{group}/{name}"


def method_test(label: str, *, primary: bool) -> str:
    """The group of a method's test-split predictions: ``test`` for the primary method."""
    return PRIMARY_TEST if primary else f"methods/{label}/{PRIMARY_TEST}"


def shift(name: str) -> str:
    """The group of the primary method's predictions on shifted test set ``name``."""
    return f"shifts/{name}"


def ladder_level(name: str, j: int) -> str:
    """The group of level ``j`` of shift ladder ``name`` (its targets or labels)."""
    return f"shifts/{name}/levels/{j}"


def ladder_method(name: str, j: int, label: str) -> str:
    """The group of method ``label``'s predictions at level ``j`` of shift ladder ``name``."""
    return f"{ladder_level(name, j)}/methods/{label}"


def attribution_maps(method: str | None = None) -> str:
    """``attribution/<method>/maps``; without a method, the first method's ``attribution/maps``."""
    return f"{ATTRIBUTION}/{method}/{_MAPS}" if method else f"{ATTRIBUTION}/{_MAPS}"


def uncertainty_maps(quantity: str) -> str:
    """``attribution/uncertainty/<quantity>/uncertainty_maps``: where ``quantity`` comes from."""
    return f"{ATTRIBUTION}/uncertainty/{quantity}/{_UNCERTAINTY_MAPS}"


def uncertainty_values(quantity: str) -> str:
    """``attribution/uncertainty/<quantity>/uncertainty_values``: ``quantity`` per example."""
    return f"{ATTRIBUTION}/uncertainty/{quantity}/{_UNCERTAINTY_VALUES}"


def is_attribution_maps(key: str) -> bool:
    """Whether ``key`` is a path built by :func:`attribution_maps`."""
    return key.startswith(f"{ATTRIBUTION}/") and key.endswith(f"/{_MAPS}")


def acquisition_curve(strategy: str) -> str:
    """``acquisition/<strategy>/curve``: the test metric of every repeat (rows) and round."""
    return f"{ACQUISITION}/{strategy}/{_CURVE}"


def acquisition_picked(strategy: str) -> str:
    """``acquisition/<strategy>/picked``: the samples labeled per repeat, in acquisition order."""
    return f"{ACQUISITION}/{strategy}/{_PICKED}"
