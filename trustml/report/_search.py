"""Hyper-parameter search records, as the search section and the REFORMS cross-walk read them.

A deep ensemble built by a search (:mod:`trustml.search`) records under
``summary["methods"][label]["search"]`` its space, trials, selection and a test-split
comparison with the best single trial and a default ensemble. Per-trial wall times are kept
out of ``results.json`` (it must reproduce byte for byte) and read from the manifest's
``search_trial_s``. Every reader here is forgiving: a malformed record gives fewer words,
never an error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from trustml.report._format import as_dict, format_count, number, or_default

__all__ = [
    "MANIFEST_TIMES",
    "counts",
    "distinct_phrase",
    "objective_name",
    "sampler_name",
    "searches",
    "selection_phrase",
    "space_keys",
    "trial_seconds",
    "trials",
    "tuning_phrase",
]

MANIFEST_TIMES = "search_trial_s"
"""The manifest key of each searched method's per-trial wall times (seconds, by trial number)."""

_OBJECTIVES = {"nll": "NLL", "crps": "CRPS", "brier": "Brier score"}


def searches(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``label -> search record`` of every method that was built by a search, in protocol order."""
    methods = as_dict(summary.get("methods"))
    found = {
        str(label): as_dict(as_dict(entry).get("search"))
        for label, entry in methods.items()
        if as_dict(as_dict(entry).get("search"))
    }
    order = {k: number(as_dict(methods[k]).get("index")) for k in found}
    return dict(sorted(found.items(), key=lambda kv: or_default(order[kv[0]], math.inf)))


def trials(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The record's trials (mappings only), by trial number."""
    entries = [as_dict(t) for t in record.get("trials") or () if isinstance(t, Mapping)]
    return sorted(entries, key=lambda t: or_default(number(t.get("number")), math.inf))


def space_keys(record: Mapping[str, Any]) -> list[str]:
    """The searched settings: the space's keys, else every key some trial sampled."""
    keys = [str(k) for k in as_dict(record.get("space"))]
    for t in trials(record):
        keys += [str(k) for k in as_dict(t.get("params")) if str(k) not in keys]
    return keys


def counts(record: Mapping[str, Any]) -> dict[int, int]:
    """``trial number -> how often the selection took it`` (from ``selection.trials``, else
    ``selection.counts``)."""
    sel = as_dict(record.get("selection"))
    out: dict[int, int] = {}
    chosen = sel.get("trials")
    if isinstance(chosen, list | tuple):
        for n in chosen:
            v = number(n)
            if v is not None:
                out[int(v)] = out.get(int(v), 0) + 1
        return out
    for key, c in as_dict(sel.get("counts")).items():
        v, k = number(c), _int(key)
        if v is not None and k is not None and v > 0:
            out[k] = int(v)
    return out


def trial_seconds(
    manifest: Mapping[str, Any], label: str, record: Mapping[str, Any]
) -> dict[int, float]:
    """``trial number -> seconds``: the manifest's ``search_trial_s[label]`` (by position),
    else a trial's own ``time_s`` where an older record kept one."""
    stored = as_dict(as_dict(manifest).get(MANIFEST_TIMES)).get(label)
    if isinstance(stored, list | tuple):
        return {i: s for i, v in enumerate(stored) if (s := number(v)) is not None}
    out = {}
    for t in trials(record):
        n, s = _int(t.get("number")), number(t.get("time_s"))
        if n is not None and s is not None:
            out[n] = s
    return out


def objective_name(record: Mapping[str, Any]) -> str:
    """The selection objective as a sentence names it (``NLL``, ``CRPS``, ``Brier score``)."""
    objective = str(record.get("objective") or "objective")
    return _OBJECTIVES.get(objective, objective)


def sampler_name(record: Mapping[str, Any]) -> str:
    """``Optuna TPE (optuna 4.9.0)`` from ``optuna.samplers.TPESampler``; ``a sampler`` without."""
    sampler = record.get("sampler")
    if not isinstance(sampler, str) or not sampler:
        return "an unrecorded sampler"
    parts = sampler.split(".")
    cls = parts[-1].removesuffix("Sampler") or parts[-1]
    name = f"{parts[0].capitalize()} {cls}" if len(parts) > 1 else cls
    version = record.get(parts[0]) if len(parts) > 1 else None
    return f"{name} ({parts[0]} {version})" if isinstance(version, str) and version else name


def _and(words: list[str]) -> str:
    if len(words) <= 2:
        return " and ".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def tuning_phrase(record: Mapping[str, Any], seed: Any = None) -> str:
    """How the hyper-parameters were tuned, in one clause computed from the record."""
    entries = trials(record)
    keys = space_keys(record)
    diverged = sum(t.get("state") == "diverged" for t in entries)
    seeded = f"seeded from the protocol seed {seed}" if _int(seed) is not None else "seeded"
    out = f"{sampler_name(record)} over {len(entries)} trials of {_and(keys) or 'no setting'}"
    out += f" ({seeded}; each trial trained on the train split and scored on the validation split"
    return out + (f"; {diverged} diverged)" if diverged else ")")


def selection_phrase(record: Mapping[str, Any], validation_n: Any = None) -> str:
    """How the reported ensemble was selected, in one clause computed from the record."""
    k = _int(record.get("members"))
    members = f"{k} members" if k is not None else "the members"
    cands = record.get("candidates")
    pool = f"{len(cands)} candidate trials" if isinstance(cands, list | tuple) else "the trials"
    what = objective_name(record)
    if record.get("strategy") == "top_k":
        out = f"the {members} among {pool} with the best validation {what} (top-k)"
    else:
        out = (
            f"greedy (Caruana) selection, with replacement, of {members} from {pool} on "
            f"the validation {what} of their mixture"
        )
    out += distinct_phrase(record)
    n = format_count(_int(validation_n))
    split = f"a validation split of {n} samples" if n != "\u2014" else "a validation split"
    return f"{out}; {split}, separate from the calibration and test splits"


def distinct_phrase(record: Mapping[str, Any]) -> str:
    """`` (3 distinct trials)`` from the selection, or ``""`` without one."""
    c = counts(record)
    if not c:
        return ""
    return f" ({len(c)} distinct trial{'s' if len(c) != 1 else ''})"


def _int(value: Any) -> int | None:
    """An integer (also from a string such as a JSON key), else ``None``."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    v = number(value)
    return int(v) if v is not None and float(v).is_integer() else None
