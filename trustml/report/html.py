"""Render a :class:`~trustml.report.results.RunResults` as one self-contained HTML page.

The page has inline CSS, figures embedded as base64 PNG and no scripts or external URLs, so a
reviewer can read it offline. Every string from the results is HTML-escaped (jinja2 autoescape).

Sections, in order (ids in brackets): verdict [verdict], data and splits [data], model and
training [model], predictive performance [performance], calibration [calibration], uncertainty
[uncertainty], attribution [attribution], Bayesian diagnostics [bayes], reproducibility
[reproducibility], REFORMS checklist [checklist], and other results [other] for summary keys this
version does not know. Verdict, reproducibility and checklist are always there; every other
section appears when the results hold something for it, so results of older runs, of
classification or of regression all render.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import json
import math
import shlex
from collections.abc import Callable, Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np

from trustml.exceptions import DataError
from trustml.report import figures
from trustml.report.reforms import crosswalk
from trustml.report.results import json_bytes

if TYPE_CHECKING:
    from trustml.report.results import RunResults

__all__ = [
    "KNOWN_SUMMARY_KEYS",
    "MAX_DIAGNOSTIC_ROWS",
    "MAX_EXAMPLES",
    "MAX_GRID_ROWS",
    "SECTIONS",
    "draw_figures",
    "figure_jobs",
    "format_number",
    "render_html",
]

KNOWN_SUMMARY_KEYS = frozenset(
    {
        "name", "task", "verdict", "seed", "metrics", "baseline_metrics", "acceptance", "data",
        "model", "uncertainty", "calibration", "coverage_curve", "attribution", "methods",
        "reference", "shifts", "claims", "limitations",
    }
)  # fmt: skip
SECTIONS = (
    ("verdict", "Verdict"),
    ("data", "Data & splits"),
    ("model", "Model & training"),
    ("performance", "Predictive performance"),
    ("calibration", "Calibration"),
    ("uncertainty", "Uncertainty"),
    ("attribution", "Attribution"),
    ("bayes", "Bayesian diagnostics"),
    ("reproducibility", "Reproducibility"),
    ("checklist", "REFORMS checklist"),
    ("other", "Other results"),
)
"""Section ids and titles, in page order."""
MAX_EXAMPLES = 8
"""Most attribution examples drawn per attribution method; the rest stay in ``arrays.h5``."""
MAX_GRID_ROWS = 12
"""Most image rows (example x channel) drawn per attribution method, which bounds the page size."""
MAX_DIAGNOSTIC_ROWS = 25
"""Most posterior quantities listed per method (worst R-hat first)."""
RHAT_MAX, ESS_MIN = 1.01, 400.0
"""Convergence thresholds of Vehtari et al. (2021): R-hat below 1.01, bulk and tail ESS >= 400."""
LOWER_IS_BETTER = frozenset({"rmse", "mae", "nll", "crps", "ece", "mce", "brier"})
"""Metrics whose lowest value is best (interval width is not: narrow intervals are only better
at equal coverage)."""
HIGHER_IS_BETTER = frozenset({"accuracy", "auroc", "r2"})
_PRIMARY_ARRAYS = "test"


def render_html(
    results: RunResults, *, outdir: str | None = None, drawn: Mapping[str, Any] | None = None
) -> str:
    """Render ``results`` as one self-contained HTML page.

    Parameters
    ----------
    results : RunResults
        What a run produced; only ``summary``, ``arrays``, ``manifest`` and ``protocol_text``
        are read.
    outdir : str, optional
        The results directory, shown in the reproduce commands (``OUTDIR`` when not given).
    drawn : dict, optional
        Figures drawn beforehand by :func:`draw_figures` (e.g. on other MPI ranks), keyed as
        :func:`figure_jobs` lists them; figures missing from it are drawn here.

    Returns
    -------
    str
        The HTML page.

    Raises
    ------
    DataError
        If arrays that belong together have inconsistent shapes (the message names them).
    """
    with _figure_pass(_FigurePass(done=drawn)):
        context = _context(results, outdir)
    return _environment().get_template("report.html.j2").render(**context)


def figure_jobs(results: RunResults) -> list[tuple[str, float]]:
    """The figures the report of ``results`` holds, in page order, without drawing any.

    Returns
    -------
    list of (str, float)
        ``(key, weight)`` per figure: a key for :func:`draw_figures` and ``render_html(drawn=)``,
        and a rough relative drawing cost (1 for a one-panel plot) for sharing the work out.
    """
    listing = _FigurePass(listing=True)
    with _figure_pass(listing):
        _context(results, None)
    return listing.listed


def draw_figures(results: RunResults, keys: Collection[str]) -> dict[str, Any]:
    """Draw the figures named in ``keys`` (from :func:`figure_jobs`), and only those.

    The result, merged over the workers that drew the figures, is ``render_html``'s ``drawn``.
    """
    share = _FigurePass(only=frozenset(keys))
    with _figure_pass(share):
        _context(results, None)
    return share.drawn


def _context(results: RunResults, outdir: str | None) -> dict[str, Any]:
    s = results.summary
    a = results.arrays
    methods = _methods(s)
    context: dict[str, Any] = {
        "title": str(s.get("name") or "unnamed run"),
        "task": s.get("task"),
        "seed": s.get("seed"),
        "verdict": _verdict(s, methods),
        "data": _data(s),
        "model": _model(s, methods),
        "performance": _performance(s, methods),
        "calibration": _calibration(s, a, methods),
        "uncertainty": _uncertainty(s, a, methods),
        "attribution": _attribution(s, a),
        "bayes": _bayes(methods),
        "reproducibility": _reproducibility(results, outdir or "OUTDIR"),
        "other": [(k, _pretty(s[k])) for k in sorted(s) if k not in KNOWN_SUMMARY_KEYS],
    }
    present = frozenset(
        sid for sid, _ in SECTIONS if sid in ("verdict", "reproducibility") or context.get(sid)
    )
    context["checklist"] = crosswalk(s, results.manifest, results.protocol_text, present)
    present |= {"checklist"}
    context["sections"] = [(sid, title) for sid, title in SECTIONS if sid in present]
    return context


class _FigurePass:
    """How one pass over the sections gets its figures, numbered in the order they are asked for.

    By default every figure is drawn. ``listing`` records each figure's key and weight and draws
    none; ``only`` draws just the figures with those keys. Figures in ``done`` are taken as
    given. A figure that is not drawn in a pass stands in as ``None``: the sections' control
    flow never depends on a drawn figure, so every pass asks for the same figures in the same
    order, and a key (``index:label``) that does not match falls back to drawing.
    """

    def __init__(
        self,
        *,
        listing: bool = False,
        only: frozenset[str] | None = None,
        done: Mapping[str, Any] | None = None,
    ) -> None:
        self.listing, self.only, self.done = listing, only, dict(done or {})
        self.listed: list[tuple[str, float]] = []
        self.drawn: dict[str, Any] = {}
        self.count = 0

    def get(self, build: Callable[[], Any], label: str, weight: float, empty: Any) -> Any:
        key = f"{self.count}:{label}"
        self.count += 1
        if key in self.done:
            return self.done[key]
        if self.listing:
            self.listed.append((key, float(weight)))
            return empty
        if self.only is not None and key not in self.only:
            return empty
        built = build()
        if isinstance(built, tuple):  # (figure, note)
            out: Any = (_uri(built[0]), built[1])
        else:
            out = _uri(built)
        self.drawn[key] = out
        return out


_PASS: contextvars.ContextVar[_FigurePass | None] = contextvars.ContextVar(
    "trustml_report_figure_pass", default=None
)


@contextlib.contextmanager
def _figure_pass(figure_pass: _FigurePass) -> Iterator[None]:
    token = _PASS.set(figure_pass)
    try:
        yield
    finally:
        _PASS.reset(token)


def _png(build: Callable[[], Any], label: str, weight: float = 1.0) -> str | None:
    """The PNG data URI of the figure ``build()`` returns (``None`` for no figure)."""
    current = _PASS.get() or _FigurePass()
    return current.get(build, label, weight, None)


def _png_noted(
    build: Callable[[], tuple[Any, str | None]], label: str, weight: float = 1.0
) -> tuple[str | None, str | None]:
    """As :func:`_png` for a builder that returns ``(figure, note)``: ``(uri, note)``."""
    current = _PASS.get() or _FigurePass()
    return current.get(build, label, weight, (None, None))


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("trustml.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = format_number
    env.filters["ci"] = _format_ci
    env.filters["count"] = _format_count
    env.filters["pct"] = _format_pct
    return env


# ---------------------------------------------------------------------------------------------
# formatting


def format_number(value: Any) -> str:
    """Format a number for the report: 4 significant digits, ``—`` for missing values."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):.4g}" if math.isfinite(value) else str(float(value))
    return str(value)


def _format_ci(ci: Any) -> str:
    if isinstance(ci, list | tuple) and len(ci) == 2:
        return f"[{format_number(ci[0])}, {format_number(ci[1])}]"
    return "\u2014"


def _format_count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "\u2014"


def _format_pct(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return f"{100 * value:.1f}%"
    return "\u2014"


def _pretty(value: Any) -> str:
    if isinstance(value, str | int | float) or value is None:
        return format_number(value)
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return "[" + ", ".join(format_number(v) for v in value) + "]"
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) if math.isfinite(value) else None
    return None


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def _rows(mapping: Mapping[str, Any], skip: set[str] | frozenset[str]) -> list[tuple[str, str]]:
    return [(str(k), _pretty(v)) for k, v in mapping.items() if k not in skip]


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def _cell(metric: Any) -> dict[str, Any]:
    m = _dict(metric)
    return {"value": m.get("value"), "ci": m.get("ci")}


def _uri(fig: Any) -> str | None:
    return figures.to_data_uri(fig) if fig is not None else None


def _figure(
    build: Callable[[], Any], caption: str, alt: str | None = None
) -> dict[str, str] | None:
    uri = _png(build, alt or caption)
    return None if uri is None else {"uri": uri, "caption": caption, "alt": alt or caption}


# ---------------------------------------------------------------------------------------------
# compared methods


def _methods(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every compared uncertainty method, the primary one first.

    Reads ``summary["methods"]``; a result without it (or whose primary entry lacks a field)
    falls back to the top-level keys, which always describe the primary method.
    """
    u = _dict(s.get("uncertainty"))
    top = {
        "metrics": _dict(s.get("metrics")),
        "calibration": _dict(s.get("calibration")),
        "coverage_curve": _dict(s.get("coverage_curve")),
        "history": _dict(u.get("history")),
    }
    raw = _dict(s.get("methods"))
    out: list[dict[str, Any]] = []
    for label, entry in raw.items():
        e = _dict(entry)
        out.append(
            {
                "label": str(label),
                "method": e.get("method") or str(label),
                "primary": bool(e.get("primary")),
                "settings": _dict(e.get("settings")),
                "metrics": _dict(e.get("metrics")),
                "calibration": _dict(e.get("calibration")),
                "coverage_curve": _dict(e.get("coverage_curve")),
                "history": _dict(e.get("history")),
                "diagnostics": _dict(e.get("diagnostics")),
            }
        )
    # results.json sorts keys, so the protocol's order comes from each entry's "index".
    order = {str(k): _number(_dict(v).get("index")) for k, v in raw.items()}
    out.sort(key=lambda m: _or(order[m["label"]], math.inf))
    if out and not any(m["primary"] for m in out):
        out[0]["primary"] = True
    out.sort(key=lambda m: not m["primary"])  # stable: the primary first, the rest in order
    if not out and (u or top["metrics"] or top["calibration"] or top["coverage_curve"]):
        settings = {k: v for k, v in u.items() if k not in ("method", "history", "diagnostics")}
        out.append(
            {
                "label": str(u.get("method") or "model"),
                "method": u.get("method"),
                "primary": True,
                "settings": settings,
                "diagnostics": _dict(u.get("diagnostics")),
                **top,
            }
        )
    elif out:
        for key, value in top.items():
            if not out[0][key]:
                out[0][key] = value
    for i, m in enumerate(out):
        m["colour"] = figures.method_colour(i)
        m["prefix"] = _PRIMARY_ARRAYS if m["primary"] else f"methods/{m['label']}/test"
    return out


def _method_array(arrays: Mapping[str, np.ndarray], m: Mapping[str, Any], name: str) -> Any:
    return arrays.get(f"{m['prefix']}/{name}")


def _array_methods(methods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``methods``, or one unnamed primary method when the summary names none: its arrays at
    ``test/...`` are still drawn."""
    if methods:
        return methods
    empty: dict[str, Any] = {}
    return [{"label": "model", "method": None, "primary": True, "prefix": _PRIMARY_ARRAYS,
             "colour": figures.method_colour(0), "metrics": empty, "settings": empty,
             "calibration": empty, "coverage_curve": empty, "history": empty,
             "diagnostics": empty}]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# 1. verdict


def _verdict(s: Mapping[str, Any], methods: list[dict[str, Any]]) -> dict[str, Any]:
    status = str(s.get("verdict", "")).lower() or None
    by_label = {m["label"]: m for m in methods}
    primary_metrics = methods[0]["metrics"] if methods else _dict(s.get("metrics"))
    rows = []
    for item in s.get("acceptance") or []:
        if not isinstance(item, Mapping):
            continue
        metric = str(item.get("metric", "?"))
        label = item.get("method")
        source = by_label[label]["metrics"] if label in by_label else primary_metrics
        bound = item.get("bound")
        sign = {"min": "\u2265", "max": "\u2264"}.get(str(bound), str(bound or ""))
        rows.append(
            {
                "metric": metric,
                "method": label
                if label is not None
                else (methods[0]["label"] if methods else None),
                "value": item.get("value"),
                "ci": item.get("ci", _dict(source.get(metric)).get("ci")),
                "criterion": f"{sign} {format_number(item.get('threshold'))}",
                "passed": bool(item.get("passed")),
            }
        )
    any_failed = any(not r["passed"] for r in rows)
    inconsistent = (status == "pass" and any_failed) or (
        status == "fail" and rows and not any_failed
    )
    show_method = len(methods) > 1 or any(
        isinstance(i, Mapping) and "method" in i for i in s.get("acceptance") or []
    )
    return {
        "status": status,
        "rows": rows,
        "inconsistent": bool(inconsistent),
        "show_method": show_method,
    }


# ---------------------------------------------------------------------------------------------
# 2. data and splits

_SPLIT_ORDER = ("train", "calibration", "test")
_DATA_KEYS = frozenset(
    {
        "source", "n_samples", "input_shape", "target_names", "target_units", "splits",
        "fingerprint", "duplicates", "groups_disjoint", "target_stats",
    }
)  # fmt: skip
_DUPLICATE_PAIRS = (
    ("train_test", "train \u2194 test"),
    ("train_calibration", "train \u2194 calibration"),
    ("calibration_test", "calibration \u2194 test"),
)


def _split_rank(name: str) -> tuple[int, str]:
    return (_SPLIT_ORDER.index(name), "") if name in _SPLIT_ORDER else (len(_SPLIT_ORDER), name)


def _data(s: Mapping[str, Any]) -> dict[str, Any] | None:
    if "data" not in s:
        return None
    d = _dict(s["data"])
    shape = d.get("input_shape")
    splits = _dict(d.get("splits"))
    splits = {k: splits[k] for k in sorted(splits, key=_split_rank)}
    total = sum(v for v in splits.values() if isinstance(v, int | float)) or None
    duplicates = None
    if isinstance(d.get("duplicates"), Mapping):
        dup = d["duplicates"]
        duplicates = [(title, dup.get(key)) for key, title in _DUPLICATE_PAIRS if key in dup]
        duplicates += [(str(k), v) for k, v in dup.items() if k not in dict(_DUPLICATE_PAIRS)]
    groups = d.get("groups_disjoint", "absent")
    if groups == "absent":
        groups_text = None
    elif groups is None:
        groups_text = "no groups given (samples are split independently)"
    else:
        groups_text = (
            "yes: no group has samples in two splits"
            if groups
            else "NO: some group has samples in more than one split"
        )
    return {
        "source": d.get("source"),
        "n_samples": d.get("n_samples"),
        "input_shape": " \u00d7 ".join(map(str, shape)) if isinstance(shape, list) else shape,
        "target_names": ", ".join(map(str, d.get("target_names") or [])) or None,
        "splits": [
            (str(k), v, v / total if total and isinstance(v, int | float) else None)
            for k, v in splits.items()
        ],
        "fingerprint": d.get("fingerprint"),
        "groups": groups_text,
        "groups_bad": groups is False,
        "duplicates": duplicates,
        "leak": bool(
            duplicates and any(isinstance(n, int) and n > 0 for t, n in duplicates if "test" in t)
        ),
        "target_stats": _target_stats(d),
        "extra": _rows(d, _DATA_KEYS),
    }


def _target_stats(d: Mapping[str, Any]) -> dict[str, Any] | None:
    stats = _dict(d.get("target_stats"))
    if not stats:
        return None
    splits = sorted(stats, key=_split_rank)
    if any("class_counts" in _dict(stats[k]) for k in splits):
        n_classes = max(len(_dict(stats[k]).get("class_counts") or []) for k in splits)
        rows = []
        for k in splits:
            counts = list(_dict(stats[k]).get("class_counts") or [])
            total = sum(c for c in counts if isinstance(c, int | float)) or None
            cells = [
                (c, c / total if total and isinstance(c, int | float) else None) for c in counts
            ]
            rows.append((k, cells + [(None, None)] * (n_classes - len(cells))))
        names = [str(t) for t in d.get("target_names") or []]
        classes = [names[i] if i < len(names) else f"class {i}" for i in range(n_classes)]
        return {"kind": "classes", "classes": classes, "rows": rows}
    reg_rows: list[tuple[str, str, list[Any]]] = []
    for k in splits:
        for target, st in _dict(stats[k]).items():
            st = _dict(st)
            reg_rows.append((k, str(target), [st.get(q) for q in ("mean", "std", "min", "max")]))
    return {"kind": "regression", "rows": reg_rows} if reg_rows else None


# ---------------------------------------------------------------------------------------------
# 3. model and training


def _model(s: Mapping[str, Any], methods: list[dict[str, Any]]) -> dict[str, Any] | None:
    if "model" not in s and not methods:
        return None
    m = _dict(s.get("model"))
    settings: dict[str, dict[str, Any]] = {}
    for meth in methods:
        flat: dict[str, Any] = {"method": meth["method"]}
        _flat("", meth["settings"], flat)
        settings[meth["label"]] = flat
    keys: list[str] = []
    for flat in settings.values():
        keys += [k for k in flat if k not in keys]
    table = [(k, [_pretty(settings[lbl].get(k)) for lbl in settings]) for k in keys]
    histories = {meth["label"]: meth["history"] for meth in methods if meth["history"]}
    return {
        "name": m.get("name"),
        "n_parameters": m.get("n_parameters"),
        "summary": m.get("summary"),
        "extra": _rows(m, {"name", "n_parameters", "summary"}),
        "labels": list(settings),
        "settings": table,
        "training_figure": _figure(
            lambda: figures.training_curves(histories),
            "Loss per epoch of each network, one panel per method (solid: training, dashed: "
            "validation when recorded). An ensemble has one curve per member.",
            "Training loss curves",
        ),
    }


# ---------------------------------------------------------------------------------------------
# 4. predictive performance


def _references(s: Mapping[str, Any]) -> list[dict[str, Any]]:
    ref = _dict(s.get("reference"))
    if ref:
        return [
            {
                "label": str(name),
                "description": _dict(r).get("description"),
                "metrics": _dict(_dict(r).get("metrics")),
            }
            for name, r in ref.items()
        ]
    baseline = _dict(s.get("baseline_metrics"))
    if baseline:
        description = (
            "class frequencies of the training split"
            if s.get("task") == "classification"
            else "training mean and spread (climatology)"
        )
        return [{"label": "baseline", "description": description, "metrics": baseline}]
    return []


def _performance(s: Mapping[str, Any], methods: list[dict[str, Any]]) -> dict[str, Any] | None:
    refs = _references(s)
    if not any(m["metrics"] for m in methods) and not refs:
        return None
    names: list[str] = []
    for src in [m["metrics"] for m in methods] + [r["metrics"] for r in refs]:
        names += [k for k in src if k not in names]
    rows = []
    for m in methods:
        rows.append(
            {
                "label": m["label"],
                "kind": "method",
                "detail": m["method"] if m["method"] != m["label"] else None,
                "primary": m["primary"],
                "cells": [_cell(m["metrics"].get(n)) for n in names],
            }
        )
    for r in refs:
        rows.append(
            {
                "label": r["label"],
                "kind": "reference",
                "detail": r["description"],
                "primary": False,
                "cells": [_cell(r["metrics"].get(n)) for n in names],
            }
        )
    best: list[int | None] = []
    for j, name in enumerate(names):
        values = [_number(row["cells"][j].get("value")) for row in rows]
        candidates = [(v, i) for i, v in enumerate(values) if v is not None]
        if name in LOWER_IS_BETTER and len(candidates) > 1:
            best.append(min(candidates)[1])
        elif name in HIGHER_IS_BETTER and len(candidates) > 1:
            best.append(max(candidates, key=lambda t: (t[0], -t[1]))[1])
        else:
            best.append(None)
    headers = [
        (
            n,
            "\u2193" if n in LOWER_IS_BETTER else "\u2191" if n in HIGHER_IS_BETTER else "",
        )
        for n in names
    ]
    return {"headers": headers, "rows": rows, "best": best, "has_reference": bool(refs)}


# ---------------------------------------------------------------------------------------------
# 5. calibration


def _calibration(
    s: Mapping[str, Any], arrays: Mapping[str, np.ndarray], methods: list[dict[str, Any]]
) -> dict[str, Any] | None:
    methods = _array_methods(methods)
    cals = {m["label"]: _flat_dict(m["calibration"]) for m in methods if m["calibration"]}
    keys: list[str] = []
    for flat in cals.values():
        keys += [k for k in flat if k not in keys]
    table = [(k, [_pretty(cals[lbl].get(k)) for lbl in cals]) for k in keys]
    figs: list[dict[str, str] | None] = []
    curves = {m["label"]: m["coverage_curve"] for m in methods if m["coverage_curve"]}
    many = len(methods) > 1
    figs.append(
        _figure(
            lambda: figures.coverage_curves(curves),
            "Empirical coverage of central prediction intervals on the test split against "
            "their nominal level"
            + (", every method overlaid in its own colour" if len(curves) > 1 else "")
            + "; dashed: before calibration, solid: after. Points below the diagonal mean "
            "over-confident intervals.",
            "Coverage against nominal level",
        )
    )
    pits = {}
    for m in methods:
        after, before = _method_array(arrays, m, "pit"), _method_array(arrays, m, "pit_raw")
        if after is not None or before is not None:
            pits[m["label"]] = (after, before)
    figs.append(
        _figure(
            lambda: figures.pit_histograms(pits),
            "Histogram of probability integral transform (PIT) values on the test split, all "
            "targets pooled, before (dashed outline) and after (filled) calibration. A flat "
            "histogram at density 1 is calibrated; a U shape is over-confident, a hump "
            "under-confident, a slope biased.",
            "PIT histograms",
        )
    )
    if "test/targets" in arrays and "test/mean" in arrays:
        d = _dict(s.get("data"))
        figs.append(
            _figure(
                lambda: figures.predicted_vs_true(
                    arrays["test/targets"],
                    arrays["test/mean"],
                    lower=arrays.get("test/lower"),
                    upper=arrays.get("test/upper"),
                    std=arrays.get("test/std"),
                    target_names=[str(t) for t in d.get("target_names") or []],
                    units=d.get("target_units"),
                ),
                (f"{methods[0]['label']}: p" if many else "P")
                + "redicted mean against the true value on the test split, with calibrated "
                "prediction intervals; crosses mark intervals that miss the truth.",
                "Predicted against true values",
            )
        )
    labels = arrays.get("test/labels")
    if labels is not None:
        series: dict[str, np.ndarray] = {}
        styles: dict[str, tuple[str, str]] = {}
        for m in methods:
            probs, raw = _method_array(arrays, m, "probs"), _method_array(arrays, m, "probs_raw")
            prefix = f"{m['label']}, " if many else ""
            if raw is not None:
                key = f"{prefix}before calibration"
                series[key] = raw
                styles[key] = (m["colour"] if many else figures.ORANGE, "--")
            if probs is not None:
                key = f"{prefix}after calibration" if raw is not None or many else m["label"]
                series[key] = probs
                styles[key] = (m["colour"], "-")
        if series:
            figs.append(
                _figure(
                    lambda: figures.reliability_diagram(series, labels, styles=styles),
                    "Reliability diagram on the test split: accuracy against mean confidence of "
                    "the predicted class per confidence bin (dashed: before calibration). "
                    "Points below the diagonal mean over-confident probabilities; the lower "
                    "panel counts samples per bin.",
                    "Reliability diagram",
                )
            )
    figs_present = [f for f in figs if f is not None]
    if not table and not figs_present:
        return None
    return {"labels": list(cals), "settings": table, "figures": figs_present}


def _flat_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _flat("", value, out)
    return out


# ---------------------------------------------------------------------------------------------
# 6. uncertainty


def _uncertainty(
    s: Mapping[str, Any], arrays: Mapping[str, np.ndarray], methods: list[dict[str, Any]]
) -> dict[str, Any] | None:
    methods = _array_methods(methods)
    d = _dict(s.get("data"))
    names = [str(t) for t in d.get("target_names") or []]
    units = d.get("target_units")
    figs: list[dict[str, str] | None] = []
    variance_rows = []
    al, ep = arrays.get("test/aleatoric_var"), arrays.get("test/epistemic_var")
    if al is not None and ep is not None:
        figs.append(
            _figure(
                lambda: figures.aleatoric_epistemic(al, ep, target_names=names, units=units),
                "Aleatoric (expected noise in the data) against epistemic (disagreement of the "
                "model's members or posterior samples) standard deviation per test sample"
                + (f", {methods[0]['label']}" if len(methods) > 1 else "")
                + ". Epistemic uncertainty should shrink with more training data; aleatoric "
                "should not.",
                "Aleatoric against epistemic uncertainty",
            )
        )
        al2, ep2 = np.asarray(al, dtype=float), np.asarray(ep, dtype=float)
        al2 = al2.reshape(al2.shape[0], -1)
        ep2 = ep2.reshape(ep2.shape[0], -1)
        for j in range(min(al2.shape[1], ep2.shape[1])):
            a_mean, e_mean = float(np.nanmean(al2[:, j])), float(np.nanmean(ep2[:, j]))
            total = a_mean + e_mean
            variance_rows.append(
                (
                    names[j] if j < len(names) else f"target {j}",
                    a_mean,
                    e_mean,
                    e_mean / total if total > 0 else None,
                )
            )
    targets = arrays.get("test/targets")
    if targets is not None:
        series = {}
        for m in methods:
            mean, std = _method_array(arrays, m, "mean"), _method_array(arrays, m, "std")
            if mean is not None and std is not None:
                series[m["label"]] = (mean, std)
        if series:
            figs.append(
                _figure(
                    lambda: figures.spread_skill(series, targets, target_names=names, units=units),
                    "Spread-skill: test samples sorted by predicted standard deviation into "
                    "equal-count bins; root-mean-square predicted std of each bin against the "
                    "RMSE of its predictions. Reliable uncertainties follow the diagonal; "
                    "points above it are over-confident.",
                    "Spread-skill plot",
                )
            )
    labels, probs = arrays.get("test/labels"), arrays.get("test/probs")
    if labels is not None and probs is not None:
        figs.append(
            _figure(
                lambda: figures.entropy_histogram(probs, labels),
                "Predictive entropy of the test samples the model classifies correctly and "
                "wrongly; useful uncertainty separates the two.",
                "Entropy of right and wrong predictions",
            )
        )
    shifts = _shifts(s, arrays, methods)
    figs_present = [f for f in figs if f is not None]
    if not figs_present and not variance_rows and shifts is None:
        return None
    return {"figures": figs_present, "variance": variance_rows, "shifts": shifts}


def _shifts(
    s: Mapping[str, Any], arrays: Mapping[str, np.ndarray], methods: list[dict[str, Any]]
) -> dict[str, Any] | None:
    shifts = _dict(s.get("shifts"))
    if not shifts:
        return None
    classification = s.get("task") == "classification"
    metrics0 = methods[0]["metrics"] if methods else _dict(s.get("metrics"))
    names: list[str] = []
    for src in [metrics0] + [_dict(_dict(v).get("metrics")) for v in shifts.values()]:
        names += [k for k in src if k not in names]
    test_std = arrays.get("test/std")
    test_ep = arrays.get("test/epistemic_var")
    test_probs = arrays.get("test/probs")
    rows = [
        {
            "name": "test (in distribution)",
            "n": _dict(_dict(s.get("data")).get("splits")).get("test"),
            "mean_std": float(np.nanmean(test_std)) if test_std is not None else None,
            "mean_epistemic_var": float(np.nanmean(test_ep)) if test_ep is not None else None,
            "mean_entropy": (
                float(np.mean(figures.predictive_entropy(test_probs)))
                if test_probs is not None and np.ndim(test_probs) == 2
                else None
            ),
            "mean_mutual_information": None,
            "cells": [_cell(metrics0.get(n)) for n in names],
        }
    ]
    series: dict[str, np.ndarray] = {}
    if classification and test_probs is not None and np.ndim(test_probs) == 2:
        series["test (in distribution)"] = figures.predictive_entropy(test_probs)
    elif test_std is not None:
        series["test (in distribution)"] = _per_sample_mean(test_std)
    for name, shift in shifts.items():
        sh = _dict(shift)
        rows.append(
            {
                "name": str(name),
                "n": sh.get("n"),
                "mean_std": sh.get("mean_std"),
                "mean_epistemic_var": sh.get("mean_epistemic_var"),
                "mean_entropy": sh.get("mean_entropy"),
                "mean_mutual_information": sh.get("mean_mutual_information"),
                "cells": [_cell(_dict(sh.get("metrics")).get(n)) for n in names],
            }
        )
        probs, std = arrays.get(f"shifts/{name}/probs"), arrays.get(f"shifts/{name}/std")
        if classification and probs is not None and np.ndim(probs) == 2:
            series[str(name)] = figures.predictive_entropy(probs)
        elif std is not None:
            series[str(name)] = _per_sample_mean(std)
    columns = [
        c
        for c in ("mean_std", "mean_epistemic_var", "mean_entropy", "mean_mutual_information")
        if any(_number(r[c]) is not None for r in rows)
    ]
    quantity = "predictive entropy" if classification else "predicted std, mean over targets"
    unit = "nats" if classification else None
    return {
        "metric_names": names,
        "columns": columns,
        "rows": rows,
        "figure": _figure(
            lambda: figures.uncertainty_under_shift(series, quantity=quantity, unit=unit),
            f"Distribution of the {quantity} of the primary method on the in-distribution test "
            "split and on each shifted test set. Uncertainty that rises under shift warns the "
            "user; uncertainty that stays flat while errors grow does not.",
            "Uncertainty under distribution shift",
        ),
    }


def _per_sample_mean(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return v.reshape(v.shape[0], -1).mean(axis=1) if v.ndim >= 1 and v.size else v.ravel()


# ---------------------------------------------------------------------------------------------
# 7. attribution

_CHECK_KEYS = frozenset({"name", "value", "threshold", "passed", "comparison", "detail", "extra"})
_CHECK_VALUE_KEYS = ("value", "score", "similarity", "mass_in_mask")


def _attribution(s: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, Any] | None:
    info = _dict(s.get("attribution"))
    has_arrays = "attribution/inputs" in arrays and (
        "attribution/maps" in arrays
        or any(k.endswith("/maps") for k in arrays if k.startswith("attribution/"))
    )
    if not info and not has_arrays:
        return None
    per_method = _dict(info.get("methods"))
    first = str(info.get("method") or next(iter(per_method), "attribution"))
    if not per_method:
        per_method = {first: {k: v for k, v in info.items() if k not in ("method", "methods")}}
    # results.json sorts keys: the first method (the top-level "method") leads, as in the protocol.
    order = sorted(per_method, key=lambda name: str(name) != first)
    blocks = []
    for name in order:
        e = _dict(per_method[name])
        maps = arrays.get(f"attribution/{name}/maps")
        if maps is None and str(name) == first:
            maps = arrays.get("attribution/maps")
        checks = _dict(e.get("checks"))
        block = {
            "name": str(name),
            "n_examples": e.get("n_examples"),
            "target": e.get("target"),
            "extra": _rows(e, {"n_examples", "target", "checks"}),
            "checks": [_check_row(str(k), _dict(c)) for k, c in checks.items()],
            "check_figure": _figure(
                lambda checks=checks: figures.check_curves(checks),
                "Attribution checks with a curve. Randomization: similarity of the attribution "
                "to the original one as the model's layers are randomized, from the output "
                "down (an explanation that depends on the learned weights falls to zero). "
                "Deletion/insertion: model output as features are removed from, or inserted "
                "into, the input in attribution order against random order.",
                f"{name}: check curves",
            ),
            "examples": [],
            "note": None,
            "n_members": None,
        }
        if maps is not None and "attribution/inputs" in arrays:
            block["examples"], block["note"], block["n_members"] = _attribution_examples(
                s, arrays, arrays["attribution/inputs"], maps, str(name)
            )
        blocks.append(block)
    return {"methods": blocks}


def _check_row(name: str, c: Mapping[str, Any]) -> dict[str, Any]:
    value_key = next((k for k in _CHECK_VALUE_KEYS if _number(c.get(k)) is not None), None)
    numbers = []
    for source in (c, _dict(c.get("extra"))):
        for k, v in source.items():
            if source is c and (k in _CHECK_KEYS or k == value_key):
                continue
            if _number(v) is not None:
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


def _attribution_examples(
    s: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
    inputs: np.ndarray,
    maps: np.ndarray,
    name: str,
) -> tuple[list[dict[str, str]], str | None, int]:
    where = (
        f"attribution/{name}/maps" if f"attribution/{name}/maps" in arrays else "attribution/maps"
    )
    if inputs.ndim < 2:
        raise DataError(
            f"arrays['attribution/inputs'] has shape {inputs.shape}, "
            "expected (n_examples, n_channels, *spatial)"
        )
    if maps.ndim != inputs.ndim + 1 or maps.shape[1:] != inputs.shape:
        raise DataError(
            f"arrays[{where!r}] has shape {maps.shape}, expected (n_members, *shape of "
            f"attribution/inputs) = (K, {', '.join(map(str, inputs.shape))})"
        )
    target_index = arrays.get("attribution/target_index")
    names = [str(t) for t in _dict(s.get("data")).get("target_names") or []]
    n = inputs.shape[0]
    shown = min(n, MAX_EXAMPLES)
    if inputs.ndim >= 4:  # image rows: one per example and channel drawn
        rows_per_example = min(inputs.shape[1], figures.MAX_CHANNEL_ROWS)
        shown = min(shown, max(1, MAX_GRID_ROWS // rows_per_example))
    titles = []
    for m in range(shown):
        target = None
        if target_index is not None and target_index.ndim == 1 and m < target_index.shape[0]:
            t = int(target_index[m])
            target = f"{names[t]} (index {t})" if 0 <= t < len(names) else f"index {t}"
        titles.append(f"Example {m}" + (f", target {target}" if target else ""))
    examples = []
    if inputs.ndim >= 4:  # image-like: one grid for all shown examples
        uri, slice_note = _png_noted(
            lambda: figures.attribution_grid(
                inputs[:shown],
                maps[:, :shown],
                titles=[t.replace(", target ", "\n") for t in titles],
            ),
            f"{name}: examples",
            weight=1.0 + shown * rows_per_example / 4,  # a grid of 8 rows draws in ~3x a plot
        )
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
        examples.append({"title": f"{name}: examples", "uri": uri, "caption": caption})
    else:
        for m in range(shown):
            uri, slice_note = _png_noted(
                lambda m=m: figures.attribution_example(inputs[m], maps[:, m], title=titles[m]),
                titles[m],
            )
            caption = titles[m] + (f"; {slice_note}" if slice_note else "") + "."
            examples.append({"title": titles[m], "uri": uri, "caption": caption})
    note = f"{shown} of {n} examples shown; all are in arrays.h5 ({where})." if shown < n else None
    return examples, note, int(maps.shape[0])


# ---------------------------------------------------------------------------------------------
# 8. Bayesian diagnostics


def _bayes(methods: list[dict[str, Any]]) -> dict[str, Any] | None:
    blocks = []
    for m in methods:
        diag = m["diagnostics"]
        if not diag:
            continue
        rhat, ess, div = diag.get("rhat_max"), diag.get("ess_bulk_min"), diag.get("divergences")
        table = [_dict(r) for r in diag.get("table") or [] if isinstance(r, Mapping)]
        table.sort(key=lambda r: -_or(_number(r.get("rhat")), 0.0))
        rows = [
            {
                "quantity": r.get("quantity"),
                "rhat": r.get("rhat"),
                "ess_bulk": r.get("ess_bulk"),
                "ess_tail": r.get("ess_tail"),
                "mean": r.get("mean"),
                "sd": r.get("sd"),
                "rhat_bad": _or(_number(r.get("rhat")), 0.0) > RHAT_MAX,
                "ess_bad": any(
                    _or(_number(r.get(k)), math.inf) < ESS_MIN for k in ("ess_bulk", "ess_tail")
                ),
            }
            for r in table[:MAX_DIAGNOSTIC_ROWS]
        ]
        blocks.append(
            {
                "label": m["label"],
                "method": m["method"],
                "rhat_max": rhat,
                "ess_bulk_min": ess,
                "divergences": div,
                "rhat_bad": _or(_number(rhat), 0.0) > RHAT_MAX,
                "ess_bad": _or(_number(ess), math.inf) < ESS_MIN,
                "div_bad": isinstance(div, int) and div > 0,
                "rows": rows,
                "moments": any("mean" in r or "sd" in r for r in table),
                "hidden": max(0, len(table) - MAX_DIAGNOSTIC_ROWS),
                "extra": _rows(diag, {"rhat_max", "ess_bulk_min", "divergences", "table"}),
            }
        )
    if not blocks:
        return None
    return {"methods": blocks, "rhat_limit": RHAT_MAX, "ess_limit": ESS_MIN}


# ---------------------------------------------------------------------------------------------
# 9. reproducibility

_MANIFEST_SHOWN = frozenset(
    {
        "protocol_sha256", "data_fingerprint", "versions", "git_commit", "seed", "seeds",
        "device", "mpi_world_size", "wall_time_s", "command", "created_at", "python",
        "platform", "torch_threads",
    }
)  # fmt: skip


def _reproducibility(results: RunResults, outdir: str) -> dict[str, Any]:
    man = results.manifest
    s = results.summary
    versions = _dict(man.get("versions"))
    git = man.get("git_commit")
    if git is None and isinstance(man.get("git"), Mapping):
        git = man["git"].get("commit")
    seeds = man.get("seeds")
    if seeds is None:
        seeds = man.get("seed", s.get("seed"))
    wall = _number(man.get("wall_time_s"))
    command = man.get("command")
    if isinstance(command, list) and all(isinstance(c, str) for c in command):
        command = shlex.join(command)
    facts = [
        ("protocol sha256", man.get("protocol_sha256"), True),
        (
            "data fingerprint (sha256)",
            man.get("data_fingerprint") or _dict(s.get("data")).get("fingerprint"),
            True,
        ),  # fmt: skip
        ("trustml version", versions.get("trustml"), False),
        ("trustml git commit", git if git is not None else "not recorded", True),
        ("seeds", _pretty(seeds) if seeds is not None else None, True),
        ("device", man.get("device"), False),
        ("MPI world size", man.get("mpi_world_size"), False),
        ("torch threads", man.get("torch_threads"), False),
        ("wall time", f"{wall:.1f} s" if wall is not None else None, False),
        ("python", man.get("python"), False),
        ("platform", man.get("platform"), False),
        ("created at", man.get("created_at"), False),
    ]
    other: list[tuple[str, str]] = []
    for k in sorted(man):
        if k not in _MANIFEST_SHOWN:
            flat: dict[str, Any] = {}
            _flat(str(k), man[k], flat)
            other += [
                (
                    fk,
                    shlex.join(v)
                    if isinstance(v, list) and v and all(isinstance(x, str) for x in v)
                    else _pretty(v),
                )
                for fk, v in flat.items()
            ]
    return {
        "facts": [(k, format_number(v), mono) for k, v, mono in facts if v is not None],
        "versions": sorted((str(k), format_number(v)) for k, v in versions.items()),
        "command": command if isinstance(command, str) else None,
        "verify": f"trustml verify {shlex.quote(outdir)}",
        "rebuild": f"trustml report {shlex.quote(outdir)}",
        "results_sha256": hashlib.sha256(json_bytes(s)).hexdigest(),
        "other": other,
        "arrays": [
            (k, " \u00d7 ".join(map(str, v.shape)) or "scalar", str(v.dtype))
            for k, v in sorted(results.arrays.items())
        ],
        "protocol": results.protocol_text,
    }
