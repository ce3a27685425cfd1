"""Render a :class:`~trustml.report.results.RunResults` as one self-contained HTML page.

The page has inline CSS, figures embedded as base64 PNG and no scripts or external URLs, so a
reviewer can read it offline. Every string from the results is HTML-escaped (jinja2 autoescape).
Sections whose summary keys are absent are skipped; unknown summary keys are listed at the end.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np

from trustml.exceptions import DataError
from trustml.report import figures
from trustml.report.results import json_bytes

if TYPE_CHECKING:
    from trustml.report.results import RunResults

__all__ = ["KNOWN_SUMMARY_KEYS", "MAX_EXAMPLES", "format_number", "render_html"]

KNOWN_SUMMARY_KEYS = frozenset(
    {
        "name", "task", "verdict", "seed", "metrics", "baseline_metrics", "acceptance", "data",
        "model", "uncertainty", "calibration", "coverage_curve", "attribution",
    }
)  # fmt: skip
MAX_EXAMPLES = 32
"""Most attribution examples drawn; the rest stay in ``arrays.h5``."""


def render_html(results: RunResults, *, outdir: str | None = None) -> str:
    """Render ``results`` as one self-contained HTML page.

    Parameters
    ----------
    results : RunResults
        What a run produced; only ``summary``, ``arrays``, ``manifest`` and ``protocol_text``
        are read.
    outdir : str, optional
        The results directory, shown in the reproduce commands (``OUTDIR`` when not given).

    Returns
    -------
    str
        The HTML page.

    Raises
    ------
    DataError
        If arrays that belong together have inconsistent shapes (the message names them).
    """
    s = results.summary
    a = results.arrays
    context = {
        "title": str(s.get("name") or "unnamed run"),
        "task": s.get("task"),
        "seed": s.get("seed"),
        "verdict": _verdict(s),
        "data": _data(s),
        "model": _model(s),
        "performance": _performance(s),
        "calibration": _calibration(s, a),
        "attribution": _attribution(s, a),
        "other": [(k, _pretty(s[k])) for k in sorted(s) if k not in KNOWN_SUMMARY_KEYS],
        "reproduce": _reproduce(results, outdir or "OUTDIR"),
    }
    return _environment().get_template("report.html.j2").render(**context)


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
    return env


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


def _pretty(value: Any) -> str:
    if isinstance(value, str | int | float) or value is None:
        return format_number(value)
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _rows(mapping: Mapping[str, Any], skip: set[str]) -> list[tuple[str, str]]:
    return [(str(k), _pretty(v)) for k, v in mapping.items() if k not in skip]


def _verdict(s: Mapping[str, Any]) -> dict[str, Any]:
    status = str(s.get("verdict", "")).lower() or None
    metrics = _dict(s.get("metrics"))
    rows = []
    for item in s.get("acceptance") or []:
        if not isinstance(item, Mapping):
            continue
        metric = str(item.get("metric", "?"))
        bound = item.get("bound")
        sign = {"min": "\u2265", "max": "\u2264"}.get(str(bound), str(bound or ""))
        rows.append(
            {
                "metric": metric,
                "value": item.get("value"),
                "ci": item.get("ci", _dict(metrics.get(metric)).get("ci")),
                "criterion": f"{sign} {format_number(item.get('threshold'))}",
                "passed": bool(item.get("passed")),
            }
        )
    any_failed = any(not r["passed"] for r in rows)
    inconsistent = (status == "pass" and any_failed) or (
        status == "fail" and rows and not any_failed
    )
    return {"status": status, "rows": rows, "inconsistent": bool(inconsistent)}


_SPLIT_ORDER = ("train", "calibration", "test")


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
        "extra": _rows(
            d, {"source", "n_samples", "input_shape", "target_names", "splits", "fingerprint"}
        ),
    }


def _model(s: Mapping[str, Any]) -> dict[str, Any] | None:
    if "model" not in s and "uncertainty" not in s:
        return None
    m, u = _dict(s.get("model")), _dict(s.get("uncertainty"))
    fig = figures.training_curves(_dict(u.get("history")))
    return {
        "name": m.get("name"),
        "n_parameters": m.get("n_parameters"),
        "summary": m.get("summary"),
        "extra": _rows(m, {"name", "n_parameters", "summary"}),
        "method": u.get("method"),
        "members": u.get("members"),
        "train": _rows(_dict(u.get("train")), set()),
        "uq_extra": _rows(u, {"method", "members", "train", "history"}),
        "training_figure": figures.to_data_uri(fig) if fig is not None else None,
    }


def _performance(s: Mapping[str, Any]) -> dict[str, Any] | None:
    metrics, baseline = _dict(s.get("metrics")), _dict(s.get("baseline_metrics"))
    if not metrics and not baseline:
        return None
    rows = []
    for name in list(metrics) + [k for k in baseline if k not in metrics]:
        own, base = _dict(metrics.get(name)), _dict(baseline.get(name))
        rows.append(
            {
                "name": name,
                "value": own.get("value"),
                "ci": own.get("ci"),
                "baseline": base.get("value"),
                "baseline_ci": base.get("ci"),
            }
        )
    return {"rows": rows, "has_baseline": bool(baseline)}


def _calibration(s: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, Any] | None:
    c = _dict(s.get("calibration"))
    figs = []
    curve = figures.coverage_curve(_dict(s.get("coverage_curve")))
    if curve is not None:
        figs.append(
            (
                figures.to_data_uri(curve),
                "Empirical coverage of central prediction intervals on the test split against "
                "their nominal level. Points below the diagonal mean over-confident intervals.",
            )
        )
    if "test/targets" in arrays and "test/mean" in arrays:
        d = _dict(s.get("data"))
        fig = figures.predicted_vs_true(
            arrays["test/targets"],
            arrays["test/mean"],
            lower=arrays.get("test/lower"),
            upper=arrays.get("test/upper"),
            std=arrays.get("test/std"),
            target_names=[str(t) for t in d.get("target_names") or []],
            units=d.get("target_units"),
        )
        figs.append(
            (
                figures.to_data_uri(fig),
                "Predicted mean against the true value on the test split, with prediction "
                "intervals; crosses mark intervals that miss the truth.",
            )
        )
    if "test/probs" in arrays and "test/labels" in arrays:
        fig = figures.reliability_diagram(arrays["test/probs"], arrays["test/labels"])
        figs.append(
            (
                figures.to_data_uri(fig),
                "Accuracy against confidence of the predicted class on the test split; bars "
                "below the diagonal mean over-confident probabilities.",
            )
        )
    if not c and not figs:
        return None
    return {
        "method": c.get("method"),
        "alpha": c.get("alpha"),
        "extra": _rows(c, {"method", "alpha"}),
        "figures": figs,
    }


def _attribution(s: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, Any] | None:
    info = _dict(s.get("attribution"))
    has_arrays = "attribution/inputs" in arrays and "attribution/maps" in arrays
    if not info and not has_arrays:
        return None
    checks = [
        {
            "name": str(name),
            "value": _dict(c).get("value"),
            "threshold": _dict(c).get("threshold"),
            "passed": _dict(c).get("passed"),
            "detail": _dict(c).get("detail"),
        }
        for name, c in _dict(info.get("checks")).items()
    ]
    examples: list[dict[str, Any]] = []
    note: str | None = None
    n_members: int | None = None
    if has_arrays:
        examples, note, n_members = _attribution_examples(s, arrays)
    return {
        "method": info.get("method"),
        "n_examples": info.get("n_examples"),
        "target": info.get("target"),
        "extra": _rows(info, {"method", "n_examples", "target", "checks"}),
        "checks": checks,
        "examples": examples,
        "note": note,
        "n_members": n_members,
    }


def _attribution_examples(
    s: Mapping[str, Any], arrays: Mapping[str, np.ndarray]
) -> tuple[list[dict[str, Any]], str | None, int]:
    inputs, maps = arrays["attribution/inputs"], arrays["attribution/maps"]
    if inputs.ndim < 2:
        raise DataError(
            f"arrays['attribution/inputs'] has shape {inputs.shape}, "
            "expected (n_examples, n_channels, *spatial)"
        )
    if maps.ndim != inputs.ndim + 1 or maps.shape[1:] != inputs.shape:
        raise DataError(
            f"arrays['attribution/maps'] has shape {maps.shape}, expected (n_members, *shape of "
            f"attribution/inputs) = (K, {', '.join(map(str, inputs.shape))})"
        )
    target_index = arrays.get("attribution/target_index")
    names = [str(t) for t in _dict(s.get("data")).get("target_names") or []]
    n = inputs.shape[0]
    shown = min(n, MAX_EXAMPLES)
    examples = []
    for m in range(shown):
        target = None
        if target_index is not None and target_index.ndim == 1 and m < target_index.shape[0]:
            t = int(target_index[m])
            target = f"{names[t]} (index {t})" if 0 <= t < len(names) else f"index {t}"
        title = f"Example {m}" + (f", target {target}" if target else "")
        fig, slice_note = figures.attribution_example(inputs[m], maps[:, m], title=title)
        examples.append({"title": title, "uri": figures.to_data_uri(fig), "slice": slice_note})
    note = f"{shown} of {n} examples shown; all are in arrays.h5." if shown < n else None
    return examples, note, int(maps.shape[0])


def _flatten(prefix: str, value: Any, out: list[tuple[str, str]]) -> None:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        out.append((prefix, shlex.join(value)))
    else:
        out.append((prefix, _pretty(value)))


def _reproduce(results: RunResults, outdir: str) -> dict[str, Any]:
    manifest: list[tuple[str, str]] = []
    _flatten("", results.manifest, manifest)
    return {
        "verify": f"trustml verify {shlex.quote(outdir)}",
        "rebuild": f"trustml report {shlex.quote(outdir)}",
        "results_sha256": hashlib.sha256(json_bytes(results.summary)).hexdigest(),
        "manifest": manifest,
        "arrays": [
            (k, " \u00d7 ".join(map(str, v.shape)) or "scalar", str(v.dtype))
            for k, v in sorted(results.arrays.items())
        ],
        "protocol": results.protocol_text,
    }
