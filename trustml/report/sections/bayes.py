"""Bayesian diagnostics: R-hat, effective sample sizes and divergences of posterior methods."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from trustml.report._format import as_dict, number, or_default, rows
from trustml.report.sections._base import Content, ReportInput, Section
from trustml.report.sections._methods import Method

__all__ = ["ESS_MIN", "MAX_DIAGNOSTIC_ROWS", "RHAT_MAX", "SECTION", "build"]

MAX_DIAGNOSTIC_ROWS = 25
"""Most posterior quantities listed per method (worst R-hat first)."""
RHAT_MAX, ESS_MIN = 1.01, 400.0
"""Convergence thresholds of Vehtari et al. (2021): R-hat below 1.01, bulk and tail ESS >= 400."""


def build(run: ReportInput) -> Content | None:
    """One block per method with diagnostics; ``None`` when no method has any."""
    blocks = [_block(m) for m in run.methods if m.diagnostics]
    if not blocks:
        return None
    return Content({"methods": blocks, "rhat_limit": RHAT_MAX, "ess_limit": ESS_MIN})


def _rhat(r: Mapping[str, Any]) -> float:
    return or_default(number(r.get("rhat")), 0.0)


def _block(m: Method) -> dict[str, Any]:
    diag = m.diagnostics
    rhat, ess, div = diag.get("rhat_max"), diag.get("ess_bulk_min"), diag.get("divergences")
    table = [as_dict(r) for r in diag.get("table") or [] if isinstance(r, Mapping)]
    table.sort(key=lambda r: -_rhat(r))
    return {
        "label": m.label,
        "method": m.method,
        "rhat_max": rhat,
        "ess_bulk_min": ess,
        "divergences": div,
        "rhat_bad": or_default(number(rhat), 0.0) > RHAT_MAX,
        "ess_bad": or_default(number(ess), math.inf) < ESS_MIN,
        "div_bad": isinstance(div, int) and div > 0,
        "rows": [_row(r) for r in table[:MAX_DIAGNOSTIC_ROWS]],
        "moments": any("mean" in r or "sd" in r for r in table),
        "hidden": max(0, len(table) - MAX_DIAGNOSTIC_ROWS),
        "extra": rows(diag, {"rhat_max", "ess_bulk_min", "divergences", "table"}),
    }


def _row(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "quantity": r.get("quantity"),
        "rhat": r.get("rhat"),
        "ess_bulk": r.get("ess_bulk"),
        "ess_tail": r.get("ess_tail"),
        "mean": r.get("mean"),
        "sd": r.get("sd"),
        "rhat_bad": _rhat(r) > RHAT_MAX,
        "ess_bad": any(
            or_default(number(r.get(k)), math.inf) < ESS_MIN for k in ("ess_bulk", "ess_tail")
        ),
    }


SECTION = Section("bayes", "Bayesian diagnostics", build)
