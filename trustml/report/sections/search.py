"""Hyper-parameter search: the trials, the members the selection took, and what the search bought.

Reads ``summary["methods"][label]["search"]`` of every method built by a search
(:mod:`trustml.report._search`) and the manifest's per-trial wall times. Per method: how the
search ran, the searched space, a figure of the validation objective over trials with the
selection trace, one row per trial, and the test-split comparison of the searched ensemble with
the best single trial and a plain ensemble of the default configuration of the same size.
Without a search there is no section.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trustml.report import _search, figures
from trustml.report._format import arrow, as_dict, format_ci, format_number, metric_cell, number
from trustml.report._format import pretty as _pretty
from trustml.report.sections._base import Content, FigureSpec, ReportInput, Section
from trustml.report.sections.performance import direction

__all__ = ["SECTION", "build"]

_MISSING, _TIMES = "\u2014", "\u00d7"
_READING_METRICS = ("nll", "crps", "brier", "rmse", "accuracy")
"""The metric the reading compares when the objective was not scored on the test split."""
_ROWS = (
    ("searched", "searched ensemble"),
    ("best_single", "best single trial"),
    ("default", "default configuration"),
)


def build(run: ReportInput) -> Content | None:
    """One part per method built by a search; ``None`` when no method was."""
    found = _search.searches(run.summary)
    if not found:
        return None
    colours = {m.label: m.colour for m in run.methods}
    seed = run.summary.get("seed")
    validation_n = as_dict(as_dict(run.summary.get("data")).get("splits")).get("validation")
    parts = []
    for label, record in found.items():
        colour = colours.get(label) or figures.method_colour(len(colours))
        seconds = _search.trial_seconds(run.results.manifest, label, record)
        parts.append(_part(label, record, colour, seconds, seed, validation_n))
    specs = tuple(p["figure"] for p in parts if p["figure"] is not None)
    return Content({"parts": parts, "several": len(parts) > 1}, specs)


def _part(
    label: str,
    record: Mapping[str, Any],
    colour: str,
    seconds: Mapping[int, float],
    seed: Any,
    validation_n: Any,
) -> dict[str, Any]:
    keys = _search.space_keys(record)
    counts = _search.counts(record)
    entries = _search.trials(record)
    objective = str(record.get("objective") or "objective")
    metrics, rows = _comparison(record, counts)
    return {
        "label": label,
        "anchor": f"search-{label}",
        "colour": colour,
        "setup": _setup(record, entries, seconds, seed, validation_n),
        "reading": _reading(record, entries, counts),
        "figure": _figure(label, record, entries, counts, colour),
        "space": _space(record, keys),
        "params": keys,
        "objective": objective,
        "trials": [_trial_row(t, keys, counts, seconds) for t in entries],
        "metric_headers": [(m, arrow(direction(m))) for m in metrics],
        "comparison": rows,
        "best": [_best(rows, j, direction(m)) for j, m in enumerate(metrics)],
    }


# -- tables -----------------------------------------------------------------------------------


def _space(record: Mapping[str, Any], keys: list[str]) -> list[dict[str, str]]:
    """One row per searched setting: its distribution, range, and the default configuration's."""
    space, defaults = as_dict(record.get("space")), as_dict(record.get("training_defaults"))
    out = []
    for key in keys:
        spec = as_dict(space.get(key))
        kinds = [str(k) for k in spec if k != "log"]
        kind = kinds[0] if kinds else _MISSING
        values = spec.get(kind) if kinds else None
        out.append(
            {
                "name": key,
                "distribution": f"{kind} (log)" if spec.get("log") is True else kind,
                "range": _pretty(values) if values is not None else _MISSING,
                "default": _pretty(defaults[key]) if key in defaults else "the model's",
            }
        )
    return out


def _trial_row(
    t: Mapping[str, Any], keys: list[str], counts: Mapping[int, int], seconds: Mapping[int, float]
) -> dict[str, Any]:
    n = number(t.get("number"))
    num = int(n) if n is not None else None
    params = as_dict(t.get("params"))
    taken = counts.get(num, 0) if num is not None else 0
    secs = seconds.get(num) if num is not None else None
    return {
        "number": _MISSING if num is None else str(num),
        "settings": [_pretty(params[k]) if k in params else _MISSING for k in keys],
        "score": t.get("score"),
        "state": str(t.get("state") or _MISSING),
        "group": t.get("group"),
        "time": _MISSING if secs is None else _duration(secs),
        "selected": f"{_TIMES}{taken}" if taken else "",
        "highlight": bool(taken),
    }


def _comparison(
    record: Mapping[str, Any], counts: Mapping[int, int]
) -> tuple[list[str], list[dict[str, Any]]]:
    """The metric names and the three rows (searched, best single, default) that were scored."""
    comp = as_dict(record.get("comparison"))
    entries = {key: as_dict(comp.get(key)) for key, _ in _ROWS}
    metrics: list[str] = []
    for e in entries.values():
        metrics += [str(k) for k in as_dict(e.get("metrics")) if str(k) not in metrics]
    rows = [
        {
            "key": key,
            "label": name,
            "detail": _detail(key, entries[key], record, counts),
            "cells": [metric_cell(as_dict(entries[key].get("metrics")).get(m)) for m in metrics],
        }
        for key, name in _ROWS
        if as_dict(entries[key].get("metrics"))
    ]
    return metrics, rows


def _detail(
    key: str, entry: Mapping[str, Any], record: Mapping[str, Any], counts: Mapping[int, int]
) -> str:
    k = number(record.get("members"))
    members = f"{int(k)} members" if k is not None else "the same number of members"
    if key == "searched":
        return f"{members}: {_listed(counts)}" if counts else members
    if key == "best_single":
        sel = as_dict(record.get("selection"))
        trial = entry.get("trial", sel.get("best_single"))
        score = sel.get("best_single_score")
        name = _search.objective_name(record)
        return f"trial {format_number(trial)}, validation {name} {format_number(score)}"
    defaults = as_dict(record.get("training_defaults"))
    m = number(entry.get("members"))
    size = f"{int(m)} members" if m is not None else members
    settings = ", ".join(f"{k.replace('_', ' ')} {_pretty(v)}" for k, v in defaults.items())
    return f"{size}, {settings}" if settings else size


def _listed(counts: Mapping[int, int]) -> str:
    """``trials 4 ×2, 7, 11``: the trials taken, with how often when more than once."""
    listed = ", ".join(f"{n} {_TIMES}{c}" if c > 1 else str(n) for n, c in sorted(counts.items()))
    return f"trial{'s' if len(counts) != 1 else ''} {listed}"


def _best(rows: list[dict[str, Any]], j: int, higher: bool | None) -> int | None:
    """The row of the best value in column ``j`` (the first of equals), if it can be ranked."""
    values = [
        (v, i) for i, r in enumerate(rows) if (v := number(r["cells"][j]["value"])) is not None
    ]
    if higher is None or len(values) < 2:
        return None
    return (max(values, key=lambda t: (t[0], -t[1])) if higher else min(values))[1]


# -- words ------------------------------------------------------------------------------------


def _setup(
    record: Mapping[str, Any],
    entries: list[dict[str, Any]],
    seconds: Mapping[int, float],
    seed: Any,
    validation_n: Any,
) -> str:
    """How the search ran, in a few sentences computed from the record."""
    out = [_capital(_search.tuning_phrase(record, seed)) + "."]
    groups = [as_dict(g) for g in record.get("groups") or ()]
    per = number(record.get("generation"))
    if groups:
        gens = len({str(g.get("generation")) for g in groups})
        batch = f" of up to {int(per)} proposals" if per is not None else ""
        out.append(
            f"Proposals came in {gens} generation{'s' if gens != 1 else ''}{batch}, each seeing "
            f"only the trials before it; the {len(entries)} trials trained in {len(groups)} "
            "lane groups (trials of a group share the architecture, batch size and epochs and "
            "train together, each with its own learning rate and weight decay)."
        )
    out.append(f"Members: {_search.selection_phrase(record, validation_n)}.")
    if seconds:
        out.append(
            f"Training the trials took {_duration(sum(seconds.values()))} in all (summed over "
            "trials and ranks, from the manifest)."
        )
    return " ".join(out)


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _reading_metric(record: Mapping[str, Any], searched: Mapping[str, Any]) -> str | None:
    objective = str(record.get("objective") or "")
    for m in (objective, *_READING_METRICS):
        if m in searched:
            return m
    return next(iter(searched), None)


def _reading(
    record: Mapping[str, Any], entries: list[dict[str, Any]], counts: Mapping[int, int]
) -> str | None:
    """One sentence: the searched against the default ensemble on the test split, and how many
    distinct trials the selection took."""
    comp = as_dict(record.get("comparison"))
    searched = as_dict(as_dict(comp.get("searched")).get("metrics"))
    default = as_dict(as_dict(comp.get("default")).get("metrics"))
    m = _reading_metric(record, searched)
    head = _versus(m, as_dict(searched.get(m)), as_dict(default.get(m))) if m else None
    tail = None
    k = sum(counts.values())
    if len(counts) == 1:
        tail = (
            f"the selection took {_listed(counts)} of the {len(entries)} for all its members, so "
            "the searched ensemble predicts as that one trial does"
        )
    elif counts:
        tail = (
            f"the selection took its {k} members from {len(counts)} distinct of the "
            f"{len(entries)} trials ({_listed(counts)})"
        )
    if head is None and tail is None:
        return None
    return _capital("; ".join(p for p in (head, tail) if p)) + "."


def _versus(m: str, a: Mapping[str, Any], c: Mapping[str, Any]) -> str | None:
    """The searched (``a``) against the default ensemble (``c``) on metric ``m``."""
    va, vc = number(a.get("value")), number(c.get("value"))
    if va is None:
        return None
    ours = f"the searched ensemble's test {m} is {format_number(va)} {format_ci(a.get('ci'))}"
    if vc is None:
        return f"{ours}, with no default ensemble scored to compare it with"
    theirs = f"the default ensemble's {format_number(vc)} {format_ci(c.get('ci'))}"
    ia, ic = _interval(a.get("ci")), _interval(c.get("ci"))
    if ia is None or ic is None:
        return f"{ours} against {theirs} (without both intervals the two are not compared)"
    if ia[0] <= ic[1] and ic[0] <= ia[1]:
        return (
            f"{ours}, overlapping {theirs} in their 95% intervals: this test split does not "
            "tell the searched and the default ensemble apart"
        )
    higher = direction(m)
    if higher is None:
        return f"{ours} and {theirs}: their 95% intervals do not overlap"
    better = (va > vc) == higher
    return (
        f"{ours}, {'better' if better else 'worse'} than {theirs}, with non-overlapping 95% "
        "intervals"
    )


def _interval(ci: Any) -> tuple[float, float] | None:
    if not isinstance(ci, list | tuple) or len(ci) != 2:
        return None
    lo, hi = number(ci[0]), number(ci[1])
    return (lo, hi) if lo is not None and hi is not None else None


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


# -- the figure -------------------------------------------------------------------------------


def _figure(
    label: str,
    record: Mapping[str, Any],
    entries: list[dict[str, Any]],
    counts: Mapping[int, int],
    colour: str,
) -> FigureSpec | None:
    numbers = [number(t.get("number")) for t in entries]
    scores = [number(t.get("score")) for t in entries]
    if None in numbers or not figures.has_search_trials(numbers, scores):  # type: ignore[arg-type]
        return None
    sel = as_dict(record.get("selection"))
    trace = sel.get("trace") if isinstance(sel.get("trace"), list | tuple) else None
    values = [number(v) for v in trace] if trace else None
    best = number(sel.get("best_single_score"))
    strategy = str(record.get("strategy") or "greedy")
    objective = str(record.get("objective") or "objective")

    def draw() -> Any:
        return figures.search_trials(
            numbers,  # type: ignore[arg-type]
            scores,
            objective=objective,
            selected=counts,
            trace=values,
            best_single=best,
            strategy=strategy,
            colour=colour,
        )

    how = "greedy selection (with replacement)" if strategy != "top_k" else "top-k selection"
    caption = (
        f"Left: the validation {objective} of each trial of {label} (points; lower is better), "
        "the best found so far (step line), and the trials the ensemble took (rings, with how "
        "often each was taken); on the top edge, crosses mark diverged trials and triangles "
        "scores beyond the axis."
        + (
            f" Right: the validation {objective} of the mixture as the {how} adds members; "
            "dashed, the best single trial."
            if values and any(v is not None for v in values)
            else ""
        )
    )
    return FigureSpec(
        f"search/{label}/trials", draw, caption, f"Validation {objective} over trials of {label}"
    )


SECTION = Section("search", "Hyper-parameter search", build, reads=frozenset({"methods"}))
