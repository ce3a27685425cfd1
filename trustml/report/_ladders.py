"""Reading shift ladders from the results: the entries, their levels, where criteria stop holding.

A shift ladder is an entry of ``summary["shifts"]`` with a ``ladder`` description, a score per
level and method (``levels``) and, per acceptance criterion of the test split and method, the
levels where it holds (``holds``); single shifted sets have no ``ladder`` key. Shared by the
report's shift section and the REFORMS cross-walk, so both say the same thing in the same words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trustml.report._format import as_dict, bound_sign, format_number, number

__all__ = [
    "Holds",
    "criterion_text",
    "holds_rows",
    "ladders",
    "level_labels",
    "names",
    "not_holding",
    "single_shifts",
]


def ladders(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The shift ladders of ``summary`` by name, in their order in the results."""
    return {
        str(k): as_dict(v)
        for k, v in as_dict(summary.get("shifts")).items()
        if isinstance(as_dict(v).get("ladder"), Mapping)
    }


def single_shifts(summary: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The single shifted test sets of ``summary`` (the entries that are no ladder)."""
    return {
        str(k): as_dict(v)
        for k, v in as_dict(summary.get("shifts")).items()
        if isinstance(v, Mapping) and "ladder" not in v
    }


def level_labels(entry: Mapping[str, Any]) -> list[str]:
    """Each level's label: the ladder's ``labels``, else each scored level's ``label``, else
    the level as written."""
    levels = [as_dict(v) for v in entry.get("levels") or ()]
    labels = as_dict(entry.get("ladder")).get("labels")
    if isinstance(labels, list) and len(labels) == len(levels):
        return [str(v) for v in labels]
    return [str(v.get("label", format_number(v.get("level")))) for v in levels]


def criterion_text(criterion: Any, bound: Any, threshold: Any) -> str:
    """A criterion as the report writes it: ``accuracy ≥ 0.6``."""
    return f"{criterion} {bound_sign(bound)} {format_number(threshold)}"


@dataclass(frozen=True)
class Holds:
    """One acceptance criterion checked for one method at every level of a ladder.

    ``passed`` has one entry per level (``None`` where unknown); ``first_fail`` is the index of
    the first level where it fails, ``None`` when it never does.
    """

    criterion: str
    method: str
    metric: str
    bound: str
    threshold: float | None
    passed: tuple[bool | None, ...]
    first_fail: int | None

    @property
    def text(self) -> str:
        """``accuracy ≥ 0.6``."""
        return criterion_text(self.criterion, self.bound, self.threshold)

    def outcome(self, labels: Sequence[str]) -> str:
        """Where it holds, in words: ``holds through 2; fails at 4``."""
        if self.first_fail is None:
            if self.passed and all(p is True for p in self.passed):
                return f"holds at every level (through {labels[-1]})"
            return "holds at every level scored"
        if self.first_fail == 0:
            return f"fails already at the first level ({labels[0]})"
        return f"holds through {labels[self.first_fail - 1]}; fails at {labels[self.first_fail]}"


def holds_rows(entry: Mapping[str, Any]) -> list[Holds]:
    """The ``holds`` rows of a ladder entry, read from each row's ``passed`` per level."""
    labels = level_labels(entry)
    out = []
    for raw in entry.get("holds") or ():
        row = as_dict(raw)
        passed_raw = row.get("passed")
        passed = tuple(
            p if isinstance(p, bool) else None
            for p in (passed_raw if isinstance(passed_raw, list) else [])
        )[: len(labels)]
        passed += (None,) * (len(labels) - len(passed))
        first_fail = passed.index(False) if False in passed else None
        out.append(
            Holds(
                criterion=str(row.get("criterion") or row.get("metric") or "?"),
                method=str(row.get("method") or ""),
                metric=str(row.get("metric") or ""),
                bound=str(row.get("bound") or ""),
                threshold=number(row.get("threshold")),
                passed=passed,
                first_fail=first_fail,
            )
        )
    return out


def names(methods: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(methods) <= 2:
        return " and ".join(methods)
    return ", ".join(methods[:-1]) + f" and {methods[-1]}"


def not_holding(summary: Mapping[str, Any]) -> list[str]:
    """Every place a criterion stops holding along a ladder, one clause each.

    ``accuracy ≥ 0.9 stops holding for ensemble at warming 3`` (it held at the levels before),
    ``... fails for ensemble already at warming 0, the first level``; then the failed criteria
    of a ladder level (``ece ≤ 0.2 fails for ensemble at warming 4``). Methods
    that fail the same criterion at the same level share a clause.
    """
    clauses: dict[tuple[str, str, bool], list[str]] = {}
    for name, entry in ladders(summary).items():
        labels = level_labels(entry)
        for h in holds_rows(entry):
            if h.first_fail is not None:
                key = (h.text, f"{name} {labels[h.first_fail]}", h.first_fail == 0)
                clauses.setdefault(key, []).append(h.method)
    out = []
    for (text, where, first), methods in clauses.items():
        if first:
            out.append(f"{text} fails for {names(methods)} already at {where}, the first level")
        else:
            out.append(f"{text} stops holding for {names(methods)} at {where}")
    found = ladders(summary)
    for raw in summary.get("acceptance") or ():
        row = as_dict(raw)
        if row.get("shift") in found and row.get("passed") is False:
            text = criterion_text(row.get("metric"), row.get("bound"), row.get("threshold"))
            out.append(f"{text} fails for {row.get('method')} at {row['shift']} {row.get('level')}")
    return out
