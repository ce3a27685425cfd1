"""Shift ladders: every method's metrics and uncertainty along each ladder of distribution shift.

Reads the ladder entries of ``summary["shifts"]`` (:mod:`trustml.report._ladders`): per ladder
a figure of each metric and the mean uncertainty against the level, the numbers behind it,
where each method's acceptance criteria stop holding, and the criteria set at a level
(acceptance rows with a ``shift``). Single shifted sets stay in the uncertainty section; without
a ladder there is no section.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trustml import results_keys as rk
from trustml.report import _ladders, figures
from trustml.report._format import arrow, as_dict, bound_sign, format_number, metric_cell, number
from trustml.report.sections._base import Content, FigureSpec, ReportInput, Section
from trustml.report.sections._methods import Method
from trustml.report.sections.performance import direction

__all__ = ["SECTION", "build"]

KEY = "shifts"
_CHECK, _CROSS, _MISSING = "\u2713", "\u2717", "\u2014"
_UNCERTAINTY = {
    "mean_entropy": ("mean predictive entropy", "nats"),
    "mean_mutual_information": ("mean mutual information", "nats"),
    "mean_std": ("mean predicted std", None),
    "mean_epistemic_var": ("mean epistemic variance", None),
}
_READING_METRICS = ("ece", "nll", "crps", "brier", "rmse", "accuracy")
"""The metric the reading follows: the first of these the ladder scores (calibration first)."""


def build(run: ReportInput) -> Content | None:
    """One part per shift ladder; ``None`` when the results hold no ladder."""
    found = _ladders.ladders(run.summary)
    if not found:
        return None
    colours = {m.label: m.colour for m in run.methods}
    parts, specs = [], []
    for name, entry in found.items():
        part = _ladder(run, name, entry, colours)
        parts.append(part)
        if part["figure"] is not None:
            specs.append(part["figure"])
    return Content({"ladders": parts}, tuple(specs))


# -- one ladder -------------------------------------------------------------------------------


def _ladder(
    run: ReportInput, name: str, entry: Mapping[str, Any], colours: dict[str, str]
) -> dict[str, Any]:
    desc = as_dict(entry.get("ladder"))
    levels = [as_dict(v) for v in entry.get("levels") or ()]
    labels = _ladders.level_labels(entry)
    methods = _method_order(run.methods, levels)
    for label in methods:
        colours.setdefault(label, figures.method_colour(len(colours)))
    metrics = _union(
        as_dict(as_dict(lv.get("methods")).get(m)).get("metrics") for lv in levels for m in methods
    )
    quantities = [
        q
        for q in _UNCERTAINTY
        if any(number(_at(lv, m).get(q)) is not None for lv in levels for m in methods)
    ]
    holds = _ladders.holds_rows(entry)
    accepted = [
        as_dict(r) for r in run.summary.get("acceptance") or () if as_dict(r).get("shift") == name
    ]
    return {
        "name": name,
        "anchor": f"shift-{name}",
        "setup": _setup(desc, levels, labels),
        "reading": _reading(name, levels, labels, methods, metrics, quantities, holds),
        "figure": _figure(
            run, name, desc, levels, labels, methods, metrics, quantities, holds, accepted, colours
        ),
        "metric_names": [f"{m} {arrow(direction(m))}".strip() for m in metrics],
        "quantities": [_axis_label(*_UNCERTAINTY[q]) for q in quantities],
        "rows": [
            {
                "label": labels[j],
                "n": lv.get("n"),
                "span": len(methods),
                "methods": [
                    {
                        "label": m,
                        "colour": colours[m],
                        "cells": [
                            metric_cell(as_dict(_at(lv, m).get("metrics")).get(k)) for k in metrics
                        ],
                        "quantities": [_at(lv, m).get(q) for q in quantities],
                    }
                    for m in methods
                ],
            }
            for j, lv in enumerate(levels)
        ],
        "levels": labels,
        "holds": [
            {
                "criterion": h.text,
                "method": h.method,
                "colour": colours.get(h.method, "#555555"),
                "cells": list(h.passed),
                "outcome": h.outcome(labels),
            }
            for h in holds
        ],
        "acceptance": [
            {
                "criterion": str(r.get("criterion") or r.get("metric")),
                "bound": f"{bound_sign(r.get('bound'))} "
                f"{format_number(r.get('threshold'))}",
                "method": r.get("method"),
                "level": r.get("level"),
                "value": metric_cell(r),
                "passed": bool(r.get("passed")),
            }
            for r in accepted
        ],
    }


def _axis_label(name: str, unit: str | None) -> str:
    return f"{name} [{unit}]" if unit else name


def _at(level: Mapping[str, Any], method: str) -> dict[str, Any]:
    return as_dict(as_dict(level.get("methods")).get(method))


def _method_order(methods: tuple[Method, ...], levels: Sequence[Mapping[str, Any]]) -> list[str]:
    """The methods scored on the ladder: the report's order (primary first), then any other."""
    scored: list[str] = []
    for lv in levels:
        scored += [str(m) for m in as_dict(lv.get("methods")) if str(m) not in scored]
    known = [m.label for m in methods if m.label in scored]
    return known + [m for m in scored if m not in known]


def _union(dicts: Any) -> list[str]:
    out: list[str] = []
    for d in dicts:
        out += [str(k) for k in as_dict(d) if str(k) not in out]
    return out


def _setup(desc: Mapping[str, Any], levels: list[dict[str, Any]], labels: list[str]) -> str:
    """What the levels are and where their samples come from, in a sentence or two."""
    parameter, unit = desc.get("parameter") or "?", desc.get("unit")
    unit_text = f" ({unit})" if unit else ""
    if desc.get("kind") == "option":
        what = f"The dataset ({desc.get('source') or 'builtin'}) regenerated with its option "
        what += f"'{parameter}' set to each level{unit_text}"
    elif desc.get("kind") == "corruption":
        what = f"The test split corrupted by {parameter} at each level{unit_text}"
    else:
        what = f"Test sets at increasing levels of {parameter}{unit_text}"
    sizes = {lv.get("n") for lv in levels}
    n = sizes.pop() if len(sizes) == 1 else None
    count = f"{n:,} samples per level" if isinstance(n, int) else "samples per level in the table"
    return f"{what}: {', '.join(labels)}; {count}."


def _first_last(values: Sequence[float | None]) -> tuple[float, float] | None:
    finite = [v for v in values if v is not None]
    return (finite[0], finite[-1]) if len(finite) >= 2 else None


def _series(
    levels: Sequence[Mapping[str, Any]], method: str, metric: str | None, q: str = ""
) -> list[float | None]:
    if metric is None:
        return [number(_at(lv, method).get(q)) for lv in levels]
    return [
        number(as_dict(as_dict(_at(lv, method).get("metrics")).get(metric)).get("value"))
        for lv in levels
    ]


def _reading(
    name: str,
    levels: Sequence[Mapping[str, Any]],
    labels: list[str],
    methods: list[str],
    metrics: list[str],
    quantities: list[str],
    holds: list[_ladders.Holds],
) -> list[str]:
    """Sentences computed from the numbers, first level against last: the method whose metric
    degrades least (calibration metrics first), the mean uncertainty's trend per method, and
    where each criterion stops holding."""
    out = []
    span = f"From {name} {labels[0]} to {name} {labels[-1]}" if labels else ""
    ranked = [m for m in _READING_METRICS if m in metrics] + [
        m for m in metrics if direction(m) is not None and m not in _READING_METRICS
    ]
    if len(levels) >= 2 and ranked:
        sentence = _degradation(span, ranked[0], levels, methods)
        if sentence:
            out.append(sentence)
    if len(levels) >= 2 and quantities:
        q = quantities[0]
        trends: dict[str, list[str]] = {}
        for m in methods:
            fl = _first_last(_series(levels, m, None, q))
            if fl is not None:
                verb = "rises" if fl[1] > fl[0] else "falls" if fl[1] < fl[0] else "stays flat"
                trends.setdefault(verb, []).append(f"{m} ({_change(*fl)})")
        if trends:
            parts = [f"{verb} for {_ladders.names(ms)}" for verb, ms in trends.items()]
            lead = "Along the same levels" if out else span
            out.append(f"{lead}, the {_UNCERTAINTY[q][0]} {'; '.join(parts)}.")
    sentence = _holds_sentence(name, labels, holds)
    if sentence:
        out.append(sentence)
    return out


def _degradation(
    span: str, metric: str, levels: Sequence[Mapping[str, Any]], methods: list[str]
) -> str | None:
    """Which method's ``metric`` worsens least and which most from the first level to the last
    (a method improving is said so)."""
    ends = {m: fl for m in methods if (fl := _first_last(_series(levels, m, metric)))}
    if not ends:
        return None
    higher = direction(metric)
    if len(ends) == 1:
        ((m, (a, b)),) = ends.items()
        return f"{span}, {m}'s {metric} goes {_change(a, b)}."
    worse = {m: (b - a) * (-1 if higher else 1) for m, (a, b) in ends.items()}
    best, worst = min(worse, key=worse.__getitem__), max(worse, key=worse.__getitem__)
    what = f"{span}, {metric} ({'higher' if higher else 'lower'} is better)"
    b_text, w_text = f"{best} ({_change(*ends[best])})", f"{worst} ({_change(*ends[worst])})"
    if worse[best] == worse[worst]:
        return f"{span}, {metric} changes alike for every method ({_change(*ends[best])})."
    if worse[worst] <= 0:
        return f"{what} improves most for {b_text} and least for {w_text}."
    if worse[best] < 0:
        most = " most" if len(ends) > 2 else ""
        return f"{what} improves for {b_text} and worsens{most} for {w_text}."
    return f"{what} worsens least for {b_text} and most for {w_text}."


def _change(a: float, b: float) -> str:
    return f"{format_number(a)} \u2192 {format_number(b)}, {b - a:+.3g}"


def _holds_sentence(name: str, labels: list[str], holds: list[_ladders.Holds]) -> str | None:
    """``accuracy ≥ 0.6 holds through warming 2 (fails at warming 4) for ens; fails already at
    warming 0 for mcd.``: per criterion, the methods that share an outcome together."""
    if not holds or not labels:
        return None
    by_criterion: dict[str, dict[str, list[str]]] = {}
    for h in holds:
        if h.first_fail is None:
            what = "holds at every level"
        elif h.first_fail == 0:
            what = f"fails already at {name} {labels[0]}"
        else:
            what = (
                f"holds through {name} {labels[h.first_fail - 1]} "
                f"(fails at {name} {labels[h.first_fail]})"
            )
        by_criterion.setdefault(h.text, {}).setdefault(what, []).append(h.method)
    return " ".join(
        f"{text} "
        + "; ".join(f"{what} for {_ladders.names(ms)}" for what, ms in outcomes.items())
        + "."
        for text, outcomes in by_criterion.items()
    )


# -- the figure -------------------------------------------------------------------------------


def _reference(run: ReportInput, label: str, q: str) -> float | None:
    """Method ``label``'s in-distribution mean uncertainty ``q`` on the test split."""
    entry = as_dict(as_dict(as_dict(run.summary.get("methods")).get(label)).get("uncertainty"))
    value = entry.get(q)
    if isinstance(value, list):
        values = [number(v) for v in value]
        finite = [v for v in values if v is not None]
        return float(np.mean(finite)) if finite and len(finite) == len(values) else None
    if number(value) is not None:
        return number(value)
    array = {"mean_std": rk.STD, "mean_epistemic_var": rk.EPISTEMIC_VAR}.get(q)
    method = next((m for m in run.methods if m.label == label), None)
    stored = method.array(run.arrays, array) if method is not None and array else None
    return float(np.nanmean(stored)) if stored is not None and np.size(stored) else None


def _figure(
    run: ReportInput,
    name: str,
    desc: Mapping[str, Any],
    levels: list[dict[str, Any]],
    labels: list[str],
    methods: list[str],
    metrics: list[str],
    quantities: list[str],
    holds: list[_ladders.Holds],
    accepted: list[dict[str, Any]],
    colours: Mapping[str, str],
) -> FigureSpec | None:
    x = figures.ladder_positions([lv.get("level") for lv in levels])
    in_dist = {m.label: m.metrics for m in run.methods}
    panels = []
    for metric in metrics:
        lines = {}
        for m in methods:
            cells = [as_dict(as_dict(_at(lv, m).get("metrics")).get(metric)) for lv in levels]
            ci = [c.get("ci") if isinstance(c.get("ci"), list | tuple) else None for c in cells]
            lines[m] = figures.LadderLine(
                [number(c.get("value")) for c in cells],
                [number(c[0]) if c and len(c) == 2 else None for c in ci],
                [number(c[1]) if c and len(c) == 2 else None for c in ci],
                number(as_dict(as_dict(in_dist.get(m)).get(metric)).get("value")),
            )
        bounds = {
            (h.text, None): figures.LadderBound(h.threshold, h.text)
            for h in holds
            if h.metric == metric and h.threshold is not None
        }
        for r in accepted:
            thr = number(r.get("threshold"))
            if r.get("metric") == metric and thr is not None and r.get("level") in labels:
                text = f"{r.get('criterion')} {bound_sign(r.get('bound'))} {thr:g}"
                bounds[(text, r.get("level"))] = figures.LadderBound(
                    thr, text, labels.index(r["level"])
                )
        panels.append(
            figures.LadderPanel(
                f"{metric} {arrow(direction(metric))}".strip(), lines, tuple(bounds.values())
            )
        )
    for q in quantities:
        lines = {
            m: figures.LadderLine(_series(levels, m, None, q), reference=_reference(run, m, q))
            for m in methods
        }
        panels.append(figures.LadderPanel(_axis_label(*_UNCERTAINTY[q]), lines))
    if not figures.has_ladder_curves(x, panels):
        return None
    ranged = any(isinstance(lv.get("level"), list) for lv in levels)
    parameter = str(desc.get("parameter") or "level")
    unit = str(desc.get("unit") or "")
    xlabel = _axis_label(
        name if name == parameter else f"{name}: {parameter}",
        unit if unit and parameter not in unit else None,  # not "builtin option 'shift'"
    )
    order = {m: colours[m] for m in methods}

    def draw() -> Any:
        return figures.ladder_curves(x, labels, panels, colours=order, xlabel=xlabel)

    caption = (
        f"Every metric and the mean uncertainty of each method along the '{name}' ladder"
        + (" (a range level sits at its midpoint)" if ranged else "")
        + ": a line per method with its bootstrap 95% confidence interval; dashed, the same "
        "method on the in-distribution test split"
        + ("; dotted, an acceptance bound" if any(p.bounds for p in panels) else "")
        + ". Uncertainty that rises as the metrics worsen warns the user; uncertainty that "
        "stays flat while they worsen does not."
    )
    return FigureSpec(
        f"shift/{name}",
        draw,
        caption,
        f"Metrics along the {name} shift ladder",
        weight=float(len(panels)),
    )


SECTION = Section("shift", "Shift ladders", build, reads=frozenset({KEY}))
