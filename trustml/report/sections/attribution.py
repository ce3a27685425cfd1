"""Attribution: per method, its checks (table and curves) and maps of a few test examples;
with attributed uncertainty, maps of where the model is unsure next to the prediction maps and
the uncertainty-deletion check's verdict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from trustml import results_keys as rk
from trustml.exceptions import DataError
from trustml.report import figures
from trustml.report._format import as_dict, format_number, number, rows
from trustml.report.figures.attribution import uncertainty_maps, uncertainty_panel_note
from trustml.report.sections._base import Content, FigureSpec, ReportInput, Section

__all__ = ["MAX_EXAMPLES", "MAX_GRID_ROWS", "SECTION", "build"]

MAX_EXAMPLES = 8
"""Most attribution examples drawn per attribution method; the rest stay in ``arrays.h5``."""
MAX_GRID_ROWS = 12
"""Most image rows (example x channel) drawn per attribution method, which bounds the page size."""

_CHECK_KEYS = frozenset({"name", "value", "threshold", "passed", "comparison", "detail", "extra"})
_CHECK_VALUE_KEYS = ("value", "score", "similarity", "mass_in_mask")
_CHECKS_CAPTION = (
    "Attribution checks with a curve. Randomization: similarity of the attribution "
    "to the original one as the model's layers are randomized, from the output "
    "down (an explanation that depends on the learned weights falls to zero). "
    "Deletion/insertion: model output as features are removed from, or inserted "
    "into, the input in attribution order against random order."
)


def build(run: ReportInput) -> Content | None:
    """One block per attribution method; ``None`` without attribution results or maps."""
    s, arrays = run.summary, run.arrays
    info = as_dict(s.get("attribution"))
    has_arrays = rk.ATTRIBUTION_INPUTS in arrays and any(map(rk.is_attribution_maps, arrays))
    if not info and not has_arrays:
        return None
    per_method = as_dict(info.get("methods"))
    first = str(info.get("method") or next(iter(per_method), "attribution"))
    if not per_method:
        per_method = {first: {k: v for k, v in info.items() if k not in ("method", "methods")}}
    # results.json sorts keys: the first method (the top-level "method") leads, as in the protocol.
    order = sorted(per_method, key=lambda name: str(name) != first)
    blocks, specs = [], []
    for name in order:
        block, block_specs = _method_block(s, arrays, str(name), as_dict(per_method[name]), first)
        blocks.append(block)
        specs += block_specs
    uncertainty, uncertainty_specs = _uncertainty_block(s, arrays, info, first)
    content = {"methods": blocks, "uncertainty": uncertainty, "examples_from": info.get("examples_from")}
    return Content(content, (*specs, *uncertainty_specs))


_UNCERTAINTY_CAPTION = (
    "Where the model is unsure: for each example, the input, the attribution of the "
    "prediction ({first}, member mean) and the attribution of each uncertainty quantity "
    "({method}, one function of all {members} members or posterior samples), each map divided "
    "by its largest absolute value. Red features raise the output or the uncertainty relative "
    "to the baseline, blue ones lower it."
)
_DELETION_CAPTION = (
    "Uncertainty deletion: the {quantity} uncertainty as features are set to the baseline, most "
    "relevant first (attribution order) against random order, normalised to fall from 1 to 0. "
    "The value is the ratio of the areas under the two curves: below 1 the attribution finds "
    "what the uncertainty depends on faster than chance."
)


def _drawer(checks: Mapping[str, Any]) -> Any:
    """``draw()`` of the check curves of ``checks`` (bound now, not when the loop ends)."""
    return lambda: figures.check_curves(checks)


def _uncertainty_block(
    s: Mapping[str, Any], arrays: Mapping[str, np.ndarray], info: Mapping[str, Any], first: str
) -> tuple[dict[str, Any] | None, list[FigureSpec]]:
    """The uncertainty-attribution part of the section: a table per quantity, the deletion
    curves and one figure of the maps next to the prediction maps (None without it)."""
    per_quantity = as_dict(info.get("uncertainty"))
    if not per_quantity:
        return None, []
    quantities, specs = [], []
    maps: dict[str, np.ndarray] = {}
    for quantity, entry in per_quantity.items():
        e = as_dict(entry)
        checks = as_dict(e.get("checks"))
        figure = None
        if figures.has_check_curves(checks):
            figure = FigureSpec(
                f"{rk.ATTRIBUTION}/uncertainty/{quantity}/checks",
                _drawer(checks),
                _DELETION_CAPTION.format(quantity=quantity),
                f"{quantity} uncertainty: deletion curve",
            )
            specs.append(figure)
        quantities.append(
            {
                "name": str(quantity),
                "target": e.get("target"),
                "method": e.get("method"),
                "members": e.get("members"),
                "mean_value": e.get("mean_value"),
                "checks": [_check_row(str(k), as_dict(c)) for k, c in checks.items()],
                "check_figure": figure,
            }
        )
        where = rk.uncertainty_maps(str(quantity))
        if where in arrays:
            maps[str(quantity)] = arrays[where]
    block: dict[str, Any] = {"quantities": quantities, "figure": None, "note": None}
    inputs = arrays.get(rk.ATTRIBUTION_INPUTS)
    if inputs is None or not maps:
        return block, specs
    prediction = arrays.get(rk.attribution_maps(first), arrays.get(rk.attribution_maps()))
    target_index = arrays.get(rk.ATTRIBUTION_TARGET_INDEX)
    names = [str(t) for t in as_dict(s.get("data")).get("target_names") or []]
    n = int(inputs.shape[0])
    shown = min(n, MAX_EXAMPLES)
    titles = [_title(m, target_index, names) for m in range(shown)]
    for name, m in maps.items():
        figures.check_member_maps(inputs, m, rk.uncertainty_maps(name))
    entry = as_dict(next(iter(per_quantity.values())))
    note = uncertainty_panel_note(inputs.shape[1:])
    block["figure"] = FigureSpec(
        f"{rk.ATTRIBUTION}/uncertainty/examples",
        lambda: uncertainty_maps(
            inputs[:shown],
            None if prediction is None else prediction[:, :shown],
            {k: v[:, :shown] for k, v in maps.items()},
            titles=[t.replace(", target ", "\n") for t in titles],
        ),
        _UNCERTAINTY_CAPTION.format(
            first=first, method=entry.get("method"), members=entry.get("members")
        )
        + (f" {note.capitalize()}." if note else ""),
        "where the model is unsure: uncertainty maps next to prediction maps",
        weight=1.0 + shown * (1 + len(maps)) / 4,
    )
    specs.append(block["figure"])
    if shown < n:
        block["note"] = f"{shown} of {n} examples shown; all are in arrays.h5."
    return block, specs


def _method_block(
    s: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    name: str,
    e: Mapping[str, Any],
    first: str,
) -> tuple[dict[str, Any], list[FigureSpec]]:
    """The context of one attribution method and its figures."""
    maps = arrays.get(rk.attribution_maps(name)) if name else None
    if maps is None and name == first:
        maps = arrays.get(rk.attribution_maps())
    checks = as_dict(e.get("checks"))
    check_figure = None
    if figures.has_check_curves(checks):
        check_figure = FigureSpec(
            f"{rk.ATTRIBUTION}/{name}/checks",
            lambda: figures.check_curves(checks),
            _CHECKS_CAPTION,
            f"{name}: check curves",
        )
    block = {
        "name": name,
        "n_examples": e.get("n_examples"),
        "target": e.get("target"),
        "extra": rows(e, {"n_examples", "target", "checks"}),
        "checks": [_check_row(str(k), as_dict(c)) for k, c in checks.items()],
        "check_figure": check_figure,
        "examples": [],
        "note": None,
        "n_members": None,
    }
    specs = [check_figure] if check_figure else []
    inputs = arrays.get(rk.ATTRIBUTION_INPUTS)
    if maps is not None and inputs is not None:
        examples, block["note"], block["n_members"] = _examples(s, arrays, inputs, maps, name)
        block["examples"] = examples
        specs += examples
    return block, specs


def _check_row(name: str, c: Mapping[str, Any]) -> dict[str, Any]:
    value_key = next((k for k in _CHECK_VALUE_KEYS if number(c.get(k)) is not None), None)
    numbers = []
    for source in (c, as_dict(c.get("extra"))):
        for k, v in source.items():
            if source is c and (k in _CHECK_KEYS or k == value_key):
                continue
            if number(v) is not None:
                numbers.append(f"{k} = {format_number(v)}")
    return {
        "name": name,
        "value": c.get(value_key) if value_key else None,
        "threshold": c.get("threshold"),
        "comparison": c.get("comparison"),
        "passed": c.get("passed"),
        "detail": c.get("detail"),
        "numbers": "; ".join(numbers),
    }


def _examples(
    s: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    inputs: np.ndarray,
    maps: np.ndarray,
    name: str,
) -> tuple[list[FigureSpec], str | None, int]:
    """Figures of the first examples, a note on how many are shown, the number of members."""
    own = rk.attribution_maps(name)
    where = own if own in arrays else rk.attribution_maps()
    _check_shapes(inputs, maps, where)
    target_index = arrays.get(rk.ATTRIBUTION_TARGET_INDEX)
    names = [str(t) for t in as_dict(s.get("data")).get("target_names") or []]
    n = inputs.shape[0]
    shown = min(n, MAX_EXAMPLES)
    rows_per_example = 1
    if inputs.ndim >= 4:  # image rows: one per example and channel drawn
        rows_per_example = min(inputs.shape[1], figures.MAX_CHANNEL_ROWS)
        shown = min(shown, max(1, MAX_GRID_ROWS // rows_per_example))
    titles = [_title(m, target_index, names) for m in range(shown)]
    key = f"{rk.ATTRIBUTION}/{name}/examples"
    if inputs.ndim >= 4:  # image-like: one grid for all shown examples
        examples = [_grid(inputs, maps, shown, titles, name, key, rows_per_example)]
    else:
        examples = [_example(inputs, maps, m, titles[m], f"{key}/{m}") for m in range(shown)]
    note = f"{shown} of {n} examples shown; all are in arrays.h5 ({where})." if shown < n else None
    return examples, note, int(maps.shape[0])


def _check_shapes(inputs: np.ndarray, maps: np.ndarray, where: str) -> None:
    if inputs.ndim < 2:
        raise DataError(
            f"arrays[{rk.ATTRIBUTION_INPUTS!r}] has shape {inputs.shape}, "
            "expected (n_examples, n_channels, *spatial)"
        )
    figures.check_member_maps(inputs, maps, where)


def _title(m: int, target_index: np.ndarray | None, names: list[str]) -> str:
    target = None
    if target_index is not None and target_index.ndim == 1 and m < target_index.shape[0]:
        t = int(target_index[m])
        target = f"{names[t]} (index {t})" if 0 <= t < len(names) else f"index {t}"
    return f"Example {m}" + (f", target {target}" if target else "")


def _grid(
    inputs: np.ndarray,
    maps: np.ndarray,
    shown: int,
    titles: list[str],
    name: str,
    key: str,
    rows_per_example: int,
) -> FigureSpec:
    slice_note = figures.slice_note(inputs.shape[1:])
    caption = (
        f"{name}: for each example, the input, the attribution averaged over "
        f"{maps.shape[0]} members or samples and its standard deviation over them, both "
        "divided by the example's largest absolute mean attribution. "
        + "; ".join(titles)
        + "."
        + (f" {slice_note.capitalize()}." if slice_note else "")
    )
    if maps.shape[0] == 1:
        caption = caption.replace(" and its standard deviation over them, both", ",")
    return FigureSpec(
        key,
        lambda: figures.attribution_grid(
            inputs[:shown],
            maps[:, :shown],
            titles=[t.replace(", target ", "\n") for t in titles],
        )[0],
        caption,
        f"{name}: examples: input and attribution",
        weight=1.0 + shown * rows_per_example / 4,  # a grid of 8 rows draws in ~3x a plot
    )


def _example(inputs: np.ndarray, maps: np.ndarray, m: int, title: str, key: str) -> FigureSpec:
    slice_note = figures.slice_note(inputs.shape[1:])
    return FigureSpec(
        key,
        lambda: figures.attribution_example(inputs[m], maps[:, m], title=title)[0],
        title + (f"; {slice_note}" if slice_note else "") + ".",
        f"{title}: input and attribution",
    )


SECTION = Section("attribution", "Attribution", build, reads=frozenset({"attribution"}))
