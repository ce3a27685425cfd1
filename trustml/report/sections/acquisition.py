"""Labeling campaign: learning curves per acquisition strategy and the labels each needs.

Reads ``summary["acquisition"]`` (a simulated campaign: the training split's labels hidden,
revealed round by round as each strategy picks samples) and, where the summary lacks a curve's
band, ``acquisition/<strategy>/curve`` of ``arrays.h5``. Without the key there is no section.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from trustml import results_keys as rk
from trustml.report import figures
from trustml.report._format import arrow, as_dict, format_number, number
from trustml.report.figures.acquisition import RANDOM as _RANDOM
from trustml.report.sections._base import Content, FigureSpec, ReportInput, Section

__all__ = ["SECTION", "build"]

KEY = "acquisition"
_MISSING = "\u2014"
_TIMES = "\u00d7"


def build(run: ReportInput) -> Content | None:
    """The campaign's setup, reading, learning-curve figure and table; ``None`` without one."""
    a = run.summary.get(KEY)
    if not isinstance(a, Mapping):
        return None
    strategies = {str(k): as_dict(v) for k, v in as_dict(a.get("strategies")).items()}
    order = [str(n) for n in a.get("order") or () if str(n) in strategies]
    if order:  # the protocol's order (results.json stores the keys sorted)
        strategies = {
            n: strategies[n] for n in [*order, *(n for n in strategies if n not in order)]
        }
    labels = _labels(a, run.arrays)
    final = int(round(labels[-1])) if labels else None
    metric = str(a.get("metric") or "metric")
    target = number(a.get("target"))
    repeats = _count(a.get("repeats"))
    colours = figures.strategy_colours(list(strategies))
    rows = [
        {
            "name": name,
            "colour": colours[name],
            "labels": _labels_to_target(st, final, target),
            "per_repeat": _per_repeat(st.get("labels_to_target_per_repeat")),
            "saving": "reference" if name == _RANDOM else _saving(st),
            "final": _final(st, repeats),
        }
        for name, st in strategies.items()
    ]
    figure = _figure(a, strategies, labels, run.arrays, metric, target, repeats)
    context = {
        "setup": _setup(a, metric, final, repeats, _seconds(run)),
        "reading": _reading(a, strategies, metric, target, final) if strategies else None,
        "metric": metric,
        "target": _target_name(a, metric, target),
        "direction": arrow(a.get("higher_is_better")),
        "show_per_repeat": repeats is None or repeats > 1,
        "rows": rows,
        "has_random": _RANDOM in strategies,
        "figure": figure,
    }
    return Content(context, (figure,) if figure is not None else ())


# -- numbers and words ------------------------------------------------------------------------


def _count(value: Any) -> int | None:
    """A non-negative integer count, or ``None``."""
    v = number(value)
    return int(v) if v is not None and v >= 0 and float(v).is_integer() else None


def _n(labels: float) -> str:
    """A (possibly interpolated) number of labels, rounded to a whole label."""
    return f"{round(labels):,}"


def _times(factor: float) -> str:
    return f"{factor:.2f}{_TIMES}"


def _labels(a: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> list[float]:
    """Labels held at each evaluation: the summary's, else ``acquisition/n_labels``."""
    raw = a.get("labels")
    if not isinstance(raw, list | tuple):
        stored = arrays.get(rk.ACQUISITION_N_LABELS)
        raw = np.asarray(stored).ravel().tolist() if stored is not None else []
    values = [number(v) for v in raw]
    return [v for v in values if v is not None] if None not in values else []


def _labels_to_target(st: Mapping[str, Any], final: int | None, target: float | None) -> str:
    at = number(st.get("labels_to_target"))
    if at is not None:
        return _n(at)
    if target is None:
        return _MISSING
    return f"not reached within {final:,} labels" if final is not None else "not reached"


def _per_repeat(value: Any) -> str:
    if not isinstance(value, list | tuple) or not value:
        return _MISSING
    values = [number(v) for v in value]
    return ", ".join(_MISSING if v is None else _n(v) for v in values)


def _saving(st: Mapping[str, Any]) -> str:
    """``1.62×``; ``≥ 1.40×`` when random never reached the target; ``—`` without one."""
    value = number(st.get("saving_vs_random"))
    if value is None:
        return _MISSING
    return f"\u2265 {_times(value)}" if st.get("saving_is_lower_bound") is True else _times(value)


def _last(value: Any) -> float | None:
    return number(value[-1]) if isinstance(value, list | tuple) and value else None


def _final(st: Mapping[str, Any], repeats: int | None) -> str:
    """The final mean, ``± std`` over repeats unless there is only one."""
    mean, std = _last(st.get("mean")), _last(st.get("std"))
    if mean is None:
        return _MISSING
    if std is None or repeats == 1:
        return format_number(mean)
    return f"{format_number(mean)} \u00b1 {format_number(std)}"


def _target_name(a: Mapping[str, Any], metric: str, target: float | None) -> str | None:
    """What the target is, for the table: ``accuracy 0.9 (set in the protocol)``."""
    if target is None:
        return None
    if a.get("target_source") == "random_final":
        return f"{metric} {format_number(target)} (random's final mean)"
    return f"{metric} {format_number(target)} (set in the protocol)"


def _target_phrase(a: Mapping[str, Any], metric: str, target: float) -> str:
    """The target in a sentence: ``accuracy 0.9`` or ``random's final accuracy (0.85)``."""
    if a.get("target_source") == "random_final":
        return f"random's final {metric} ({format_number(target)})"
    return f"{metric} {format_number(target)}"


def _reading(
    a: Mapping[str, Any],
    strategies: Mapping[str, Mapping[str, Any]],
    metric: str,
    target: float | None,
    final: int | None,
) -> str | None:
    """One sentence: the strategy that reaches the target first, against random."""
    if target is None:
        return None
    what = _target_phrase(a, metric, target)
    within = f"within {final:,} labels" if final is not None else "in the campaign"
    reach = {n: number(st.get("labels_to_target")) for n, st in strategies.items()}
    rand = reach.pop(_RANDOM, None)
    has_random = _RANDOM in strategies
    reached = {n: v for n, v in reach.items() if v is not None}
    if not reached:
        if rand is None:
            return f"No strategy reaches {what} {within}."
        if not reach:
            return f"random reaches {what} with {_n(rand)} labels."
        return f"No strategy but random reaches {what} {within}; random needs {_n(rand)} labels."
    best = min(reached, key=lambda n: reached[n])
    head = f"{best} reaches {what} with {_n(reached[best])} labels"
    saving = number(strategies[best].get("saving_vs_random"))
    if not has_random:
        return f"{head}; the campaign has no random strategy to compare it with."
    if rand is None:
        bound = f", a saving of at least {_times(saving)}" if saving is not None else ""
        return f"{head}; random does not reach it {within}{bound}."
    if saving is None or saving <= 0:
        return f"{head}; random needs {_n(rand)}."
    if round(saving, 2) == 1.0:
        return f"{head}, as many as random ({_n(rand)})."
    if saving > 1:
        return f"{head}, {_times(saving)} fewer than random ({_n(rand)})."
    return f"{head}, but random needs only {_n(rand)} ({_times(1 / saving)} fewer)."


def _seconds(run: ReportInput) -> float | None:
    """The campaign's wall time, from the manifest (results.json holds no timings)."""
    return number(as_dict(as_dict(run.results.manifest).get("timings_s")).get("acquisition"))


def _setup(
    a: Mapping[str, Any],
    metric: str,
    final: int | None,
    repeats: int | None,
    seconds: float | None,
) -> str:
    """The campaign in a few sentences, from the numbers the summary holds."""
    pool, initial = _count(a.get("pool_size")), _count(a.get("initial"))
    step, rounds = _count(a.get("step")), _count(a.get("rounds"))
    epochs, test = _count(a.get("epochs")), _count(a.get("test_size"))
    method = a.get("method")
    out = ["A simulated labeling campaign on the training split"]
    out.append(f": the labels of its {pool:,} samples are hidden" if pool is not None else "")
    out.append(". ")
    if initial is not None and step is not None and rounds is not None:
        each = (
            f"Each of {repeats} repeats" if repeats is not None and repeats > 1 else "A single run"
        )
        out.append(
            f"{each} starts from {initial:,} labels drawn at random, then adds {step:,} more "
            f"picked by the strategy in each of {rounds:,} rounds"
        )
        if final is not None:
            share = f", {final / pool:.0%} of the pool" if pool else ""
            out.append(f" ({final:,} labels in the end{share})")
        out.append(". ")
    out.append(
        "At the start and after every round, the model"
        + (f" ({method})" if method else "")
        + " is trained"
        + (f" for {epochs:,} epochs" if epochs is not None else "")
        + f" on the labels held and its {metric} recorded on the "
        + (f"{test:,} test samples." if test is not None else "test split.")
    )
    if seconds is not None:
        out.append(f" The campaign took {_duration(seconds)}.")
    return "".join(out)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


# -- the figure -------------------------------------------------------------------------------


def _band(name: str, st: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> tuple[Any, Any]:
    """The min-max band over repeats: the summary's, else from the per-repeat curves."""
    low, high = st.get("min"), st.get("max")
    if isinstance(low, list | tuple) and isinstance(high, list | tuple):
        return low, high
    curves = arrays.get(rk.acquisition_curve(name))
    if curves is None or np.ndim(curves) != 2 or np.shape(curves)[0] == 0:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN round: no band there
        c = np.asarray(curves, dtype=float)
        return np.nanmin(c, axis=0), np.nanmax(c, axis=0)


def _figure(
    a: Mapping[str, Any],
    strategies: Mapping[str, Mapping[str, Any]],
    labels: list[float],
    arrays: Mapping[str, np.ndarray],
    metric: str,
    target: float | None,
    repeats: int | None,
) -> FigureSpec | None:
    curves = {
        name: figures.Curve(st.get("mean"), *_band(name, st, arrays))
        for name, st in strategies.items()
    }
    if not figures.has_learning_curves(labels, curves):
        return None
    random_final = a.get("target_source") == "random_final"
    legend = None
    if target is not None:
        source = "random's final mean" if random_final else "protocol"
        legend = f"target {format_number(target)} ({source})"
    reached = {n: number(st.get("labels_to_target")) for n, st in strategies.items()}
    higher = a.get("higher_is_better")

    def draw() -> Any:
        return figures.learning_curves(
            labels,
            curves,
            metric=metric,
            higher_is_better=higher if isinstance(higher, bool) else None,
            target=target,
            target_label=legend,
            reached=reached,
        )

    spread = (
        f"the mean over {repeats} repeats (line) and the range from the worst to the best "
        "repeat (shaded)"
        if repeats is None or repeats > 1
        else "one repeat"
    )
    caption = (
        f"Test {metric} against the number of labelled training samples for each acquisition "
        f"strategy: {spread}"
        + ("; random sampling in dark grey" if _RANDOM in strategies else "")
        + (
            ". Dashed: the target; a triangle marks where a strategy's mean curve reaches it."
            if target is not None
            else "."
        )
    )
    return FigureSpec("acquisition/learning_curves", draw, caption, f"Learning curves of {metric}")


SECTION = Section("acquisition", "Labeling campaign", build, reads=frozenset({KEY}))
