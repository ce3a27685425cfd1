"""The part of ``results.schema.json`` that documents ``arrays.h5``, generated from its names.

``results.json`` holds the numbers of a run and ``arrays.h5`` its arrays; the results schema
documents both: ``$defs/arrays`` lists every group and array of ``arrays.h5`` with its shape
and meaning, built here from :mod:`trustml.results_keys` (nothing validates against it, so it
never changes which ``results.json`` files are valid). After changing the arrays, regenerate
the shipped schema with ``python -m trustml.report._schema``; a test checks that it is current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trustml import results_keys as rk

__all__ = ["SCHEMA_PATH", "arrays_schema", "main", "with_arrays"]

SCHEMA_PATH = Path(__file__).with_name("results.schema.json")
"""The results JSON Schema shipped with the package."""

_LABEL, _NAME, _METHOD = "<label>", "<name>", "<method>"
_J: Any = "<j>"  # a placeholder where the keys take a level index
_GROUPS = {
    rk.PRIMARY_TEST: "The primary method's calibrated predictions on the test split, plus the "
    "test targets (regression) or labels (classification).",
    rk.method_test(_LABEL, primary=False): "The same for every other compared method "
    f"({_LABEL} is its key in results.json 'methods').",
    rk.shift(_NAME): "The primary method on a distribution-shifted test set, with its targets "
    f"({_NAME} is its key in results.json 'shifts').",
    rk.ladder_level(_NAME, _J): f"Level {_J} (0-based, in the ladder's order) of shift ladder "
    f"{_NAME}: its test targets (regression) or labels (classification).",
    rk.ladder_method(_NAME, _J, _LABEL): f"Method {_LABEL}'s calibrated predictions at that "
    "level (probs; or mean, std, lower, upper, epistemic_var).",
    rk.ATTRIBUTION: "The explained test inputs and, per attribution method, the maps of every "
    f"member or posterior sample ({rk.attribution_maps(_METHOD)}; {rk.attribution_maps()} is "
    "the first method's).",
    rk.ACQUISITION: "A simulated labeling campaign: the labels held at each round "
    f"({rk.ACQUISITION_N_LABELS}) and, per strategy, the test metric of every repeat and round "
    f"({rk.acquisition_curve(_NAME)}) and the samples it labeled "
    f"({rk.acquisition_picked(_NAME)}).",
}


def arrays_schema() -> dict[str, Any]:
    """``$defs/arrays`` of the results schema: the groups and arrays of ``arrays.h5``.

    Returns
    -------
    dict
        ``x-groups`` maps each group (``<...>`` stands for a name) to what it holds;
        ``properties`` maps every name of :data:`trustml.results_keys.ARRAYS` to its
        ``description`` and ``x-shape`` (N samples, D targets, C classes, E explained examples,
        K members or posterior samples). A prediction group's array is at ``GROUP/NAME``.
    """
    return {
        "title": "arrays.h5",
        "description": "The arrays of a run, next to results.json in arrays.h5 (HDF5, one "
        "dataset per path GROUP/NAME). Documentation only: results.json holds none of them. "
        "Generated from trustml.results_keys.",
        "type": "object",
        "x-groups": dict(_GROUPS),
        "properties": {
            name: {"description": meaning, "x-shape": shape}
            for name, (shape, meaning) in rk.ARRAYS.items()
        },
    }


def with_arrays(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs/arrays`` replaced by :func:`arrays_schema`."""
    defs = dict(schema.get("$defs", {}))
    defs["arrays"] = arrays_schema()
    return {**schema, "$defs": defs}


def main() -> None:
    """Rewrite the shipped results schema with the current ``$defs/arrays``."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    text = json.dumps(with_arrays(schema), indent=2, ensure_ascii=False) + "\n"
    SCHEMA_PATH.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
