"""The REFORMS checklist cross-walk of a report.

REFORMS (Kapoor et al., "REFORMS: Consensus-based recommendations for machine-learning-based
science", Science Advances 10, eadk3452, 2024) lists 32 items, in eight modules, that a paper
using machine learning as scientific evidence should report. Some of them a trustml run covers by
itself (data fingerprint, splits, metrics with intervals, reproduction commands, and how a
searched ensemble was tuned and selected, from its search record); the rest only
the author can supply, through the protocol's free-text ``claims:`` and ``limitations:``.

The item wording below is trustml's own paraphrase, not the checklist's text; the numbering
(``1a`` ... ``8b``) follows the paper, so a reviewer can look each item up there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from trustml.report import _ladders, _search

__all__ = ["ITEMS", "ChecklistItem", "crosswalk"]

#: Where an item is covered: (what, section id), or ``None`` when this run does not cover it.
Where = tuple[str, str] | None


@dataclass(frozen=True)
class ChecklistItem:
    """One REFORMS item: its number, module, a paraphrase and how a run can cover it.

    Parameters
    ----------
    id : str
        The item's number in the paper (``"6b"``).
    module : str
        The module it belongs to.
    text : str
        What the item asks for, paraphrased.
    source : {"claims", "limitations"}
        The protocol free-text field whose text answers the item when the run cannot.
    auto : callable, optional
        ``auto(summary, manifest, protocol_text, sections)`` returns ``(what, section id)`` when
        the report covers the item by itself, else ``None``.
    """

    id: str
    module: str
    text: str
    source: str
    auto: Callable[[Mapping[str, Any], Mapping[str, Any], str, frozenset[str]], Where] | None = None


def _data(s: Mapping[str, Any]) -> Mapping[str, Any]:
    d = s.get("data")
    return d if isinstance(d, Mapping) else {}


def _has(mapping: Mapping[str, Any], key: str) -> bool:
    return mapping.get(key) not in (None, {}, [], "")


def _fingerprint(s, m, p, sections) -> Where:
    if "data" in sections and (_has(_data(s), "fingerprint") or _has(m, "data_fingerprint")):
        return ("data source and its sha256 fingerprint", "data")
    return None


def _code(s, m, p, sections) -> Where:
    versions = m.get("versions") if isinstance(m.get("versions"), Mapping) else {}
    if p and (versions.get("trustml") or m.get("git_commit")):
        return ("trustml version, git commit when known, and the protocol file", "reproducibility")
    return None


def _infrastructure(s, m, p, sections) -> Where:
    if any(_has(m, k) for k in ("device", "platform", "versions")):
        return ("device, platform, package versions, MPI world size", "reproducibility")
    return None


def _instructions(s, m, p, sections) -> Where:
    if p:
        return ("the commands that re-run and verify this evaluation", "reproducibility")
    return None


def _script(s, m, p, sections) -> Where:
    if p:
        return ("protocol.yaml re-run by 'trustml verify', number by number", "reproducibility")
    return None


def _outcome_stats(s, m, p, sections) -> Where:
    if "data" in sections and _has(_data(s), "target_stats"):
        return ("target statistics per split", "data")
    return None


def _sample_size(s, m, p, sections) -> Where:
    if "data" in sections and _has(_data(s), "splits"):
        return ("sample sizes per split" + (
            ", class counts" if s.get("task") == "classification" else ""
        ), "data")  # fmt: skip
    return None


def _models(s, m, p, sections) -> Where:
    if "model" in sections:
        return ("architecture, parameter count, training settings and curves", "model")
    return None


def _evaluation(s, m, p, sections) -> Where:
    if "data" in sections and _has(_data(s), "splits") and "performance" in sections:
        return ("held-out test split; split sizes and seed", "data")
    return None


def _baselines(s, m, p, sections) -> Where:
    if "performance" in sections and (_has(s, "reference") or _has(s, "baseline_metrics")):
        return ("trivial reference predictors scored on the same test split", "performance")
    return None


def _per_search(s: Mapping[str, Any], clause: Callable[[Mapping[str, Any]], str]) -> str:
    """``clause`` of each searched method's record, prefixed with its label when several are."""
    found = _search.searches(s)
    if len(found) == 1:
        text = clause(next(iter(found.values())))
        return text[:1].upper() + text[1:]
    return "; ".join(f"{label}: {clause(record)}" for label, record in found.items())


def _selected(s, m, p, sections) -> Where:
    if "search" not in sections or not _search.searches(s):
        return None
    splits = _data(s).get("splits")
    n = splits.get("validation") if isinstance(splits, Mapping) else None
    return (_per_search(s, lambda r: _search.selection_phrase(r, n)), "search")


def _tuned(s, m, p, sections) -> Where:
    if "search" not in sections or not _search.searches(s):
        return None
    text = _per_search(s, lambda r: _search.tuning_phrase(r, s.get("seed")))
    return (f"{text}; every trial is listed", "search")


def _train_only(s, m, p, sections) -> Where:
    if "calibration" in sections and "data" in sections:
        return (
            "training on the train split, calibration on the calibration split only, scores "
            "on the test split (preprocessing before trustml is the author's to describe)",
            "calibration",
        )
    return None


def _duplicates(s, m, p, sections) -> Where:
    d = _data(s)
    if "data" in sections and (_has(d, "duplicates") or d.get("groups_disjoint") is not None):
        return ("exact duplicates between splits; group disjointness", "data")
    return None


def _metrics(s, m, p, sections) -> Where:
    if "performance" in sections:
        return ("every metric, for every method and reference", "performance")
    return None


def _intervals(s, m, p, sections) -> Where:
    metrics = s.get("metrics") if isinstance(s.get("metrics"), Mapping) else {}
    if "performance" in sections and any(
        isinstance(v, Mapping) and v.get("ci") is not None for v in metrics.values()
    ):
        return ("bootstrap 95% confidence intervals", "performance")
    return None


def _external(s, m, p, sections) -> Where:
    found = _ladders.ladders(s)
    if "shift" in sections and found:
        levels = ", ".join(
            f"{name} ({len(entry.get('levels') or ())} levels)" for name, entry in found.items()
        )
        singles = len(_ladders.single_shifts(s)) if "uncertainty" in sections else 0
        also = f", and {singles} single shifted test set(s) under Uncertainty" if singles else ""
        return (f"every method scored along the shift ladders {levels}{also}", "shift")
    if "uncertainty" in sections and _ladders.single_shifts(s):
        return ("scores on distribution-shifted test sets", "uncertainty")
    return None


_MAX_CLAUSES = 4


def _not_holding(s, m, p, sections) -> Where:
    """Where the ladders show the acceptance criteria stop holding, from their results."""
    found = _ladders.ladders(s)
    if "shift" not in sections or not found:
        return None
    clauses = _ladders.not_holding(s)
    if not clauses:
        if not any(entry.get("holds") for entry in found.values()):
            return None
        last = ", ".join(
            f"{name} {labels[-1]}"
            for name, entry in found.items()
            if (labels := _ladders.level_labels(entry))
        )
        return (
            f"every acceptance criterion holds at every level tested (through {last}); "
            "beyond those levels is untested",
            "shift",
        )
    more = len(clauses) - _MAX_CLAUSES
    text = "; ".join(clauses[:_MAX_CLAUSES]) + (f"; and {more} more" if more > 0 else "")
    return (text, "shift")


_C, _L = "claims", "limitations"
_M1, _M2, _M3, _M4 = (
    "Study goals",
    "Computational reproducibility",
    "Data quality",
    "Data preprocessing",
)
_M5, _M6, _M7 = ("Modeling", "Data leakage", "Metrics and uncertainty")
_M8 = "Generalizability and limitations"

ITEMS: tuple[ChecklistItem, ...] = (
    ChecklistItem("1a", _M1, "Name the population or distribution the scientific claim is about.", _C),
    ChecklistItem("1b", _M1, "Explain why that population or distribution was chosen.", _C),
    ChecklistItem("1c", _M1, "Explain why machine learning suits the question.", _C),
    ChecklistItem("2a", _M2, "Describe the training and evaluation data and identify them uniquely (link, DOI or hash).", _C, _fingerprint),
    ChecklistItem("2b", _M2, "Identify the exact code that trained and evaluated the model.", _C, _code),
    ChecklistItem("2c", _M2, "Describe the hardware and software the results were computed with.", _C, _infrastructure),
    ChecklistItem("2d", _M2, "Give instructions that regenerate the results from the data and code.", _C, _instructions),
    ChecklistItem("2e", _M2, "Provide one script that reproduces every reported result.", _C, _script),
    ChecklistItem("3a", _M3, "Document where the data come from (training and evaluation separately if they differ), when they were collected and how labels were obtained.", _C),
    ChecklistItem("3b", _M3, "State the sampling frame: the set or distribution the data were drawn from.", _C),
    ChecklistItem("3c", _M3, "Argue why this data set suits the modelling task.", _C),
    ChecklistItem("3d", _M3, "Define the outcome variable and give its descriptive statistics (per class when categorical).", _C, _outcome_stats),
    ChecklistItem("3e", _M3, "Report the sample size and how often each outcome occurs.", _C, _sample_size),
    ChecklistItem("3f", _M3, "Report how much data is missing (per class when categorical).", _C),
    ChecklistItem("3g", _M3, "Argue that the data represent the population the claim is about.", _L),
    ChecklistItem("4a", _M4, "Say which samples were excluded, and why.", _C),
    ChecklistItem("4b", _M4, "Say how impossible or corrupted samples were handled.", _C),
    ChecklistItem("4c", _M4, "Describe every transformation from raw data to model input (normalisation, imputation, ...).", _C),
    ChecklistItem("5a", _M5, "Describe every model that was trained.", _C, _models),
    ChecklistItem("5b", _M5, "Justify the choice of model types.", _C),
    ChecklistItem("5c", _M5, "Describe how the models were evaluated, including train/test splits or folds.", _C, _evaluation),
    ChecklistItem("5d", _M5, "Describe how the reported model was selected.", _C, _selected),
    ChecklistItem("5e", _M5, "Describe how hyperparameters were tuned.", _C, _tuned),
    ChecklistItem("5f", _M5, "Argue that the models are compared against appropriate baselines.", _C, _baselines),
    ChecklistItem("6a", _M6, "Show that preprocessing and modelling used only training data, never test data.", _C, _train_only),
    ChecklistItem("6b", _M6, "Describe how dependencies and duplicates between training and test data were handled.", _C, _duplicates),
    ChecklistItem("6c", _M6, "Argue that every input feature is legitimate for the task and does not leak the outcome.", _C),
    ChecklistItem("7a", _M7, "List every metric used to assess and compare models; justify the one used for selection.", _C, _metrics),
    ChecklistItem("7b", _M7, "Report uncertainty estimates of the results (e.g. confidence intervals) and how they were computed.", _C, _intervals),
    ChecklistItem("7c", _M7, "Justify any statistical tests used and check their assumptions.", _C),
    ChecklistItem("8a", _M8, "Give evidence of external validity, beyond the distribution the model was trained on.", _L, _external),
    ChecklistItem("8b", _M8, "Describe the contexts in which the findings are not expected to hold.", _L, _not_holding),
)  # fmt: skip


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def crosswalk(
    summary: Mapping[str, Any],
    manifest: Mapping[str, Any],
    protocol_text: str,
    sections: frozenset[str],
) -> dict[str, Any]:
    """Match every REFORMS item to where this report covers it, or to the author's text.

    Parameters
    ----------
    summary, manifest : mapping
        The run's ``results.json`` and ``manifest.json``.
    protocol_text : str
        The protocol file (empty when unknown).
    sections : frozenset of str
        Ids of the report sections that were rendered; an item is ``auto`` only when the
        section that covers it is there.

    Returns
    -------
    dict
        ``rows``: one dict per item with ``id``, ``module``, ``text``, ``status`` (``"auto"``,
        ``"author"`` or ``"missing"``), ``where`` and ``anchor``; ``counts`` per status;
        ``claims`` and ``limitations`` (the author's text or ``None``).
    """
    texts = {_C: _text(summary.get("claims")), _L: _text(summary.get("limitations"))}
    rows = []
    for item in ITEMS:
        found = item.auto(summary, manifest, protocol_text, sections) if item.auto else None
        if found is not None:
            status, where, anchor = "auto", found[0], found[1]
        elif texts[item.source] is not None:
            status, where, anchor = "author", f"author's {item.source} (below)", item.source
        else:
            status, where, anchor = (
                "missing",
                f"add it under '{item.source}:' in the protocol",
                None,
            )
        rows.append(
            {
                "id": item.id,
                "module": item.module,
                "text": item.text,
                "status": status,
                "where": where,
                "anchor": anchor,
            }
        )
    counts = {k: sum(r["status"] == k for r in rows) for k in ("auto", "author", "missing")}
    return {"rows": rows, "counts": counts, **texts}
