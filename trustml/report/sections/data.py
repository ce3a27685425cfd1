"""Data and splits: where the data come from, how they were split, and what leaks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trustml.report._format import as_dict, rows
from trustml.report.sections._base import Content, ReportInput, Section

__all__ = ["SECTION", "build"]

_SPLIT_ORDER = ("train", "validation", "calibration", "test")
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


def build(run: ReportInput) -> Content | None:
    """Source, sample counts, splits, duplicates and target statistics; ``None`` without data."""
    s = run.summary
    if "data" not in s:
        return None
    d = as_dict(s["data"])
    shape = d.get("input_shape")
    splits = as_dict(d.get("splits"))
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
    return Content(
        {
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
                duplicates
                and any(isinstance(n, int) and n > 0 for t, n in duplicates if "test" in t)
            ),
            "target_stats": _target_stats(d),
            "extra": rows(d, _DATA_KEYS),
        }
    )


def _target_stats(d: Mapping[str, Any]) -> dict[str, Any] | None:
    stats = as_dict(d.get("target_stats"))
    if not stats:
        return None
    splits = sorted(stats, key=_split_rank)
    if any("class_counts" in as_dict(stats[k]) for k in splits):
        n_classes = max(len(as_dict(stats[k]).get("class_counts") or []) for k in splits)
        class_rows = []
        for k in splits:
            counts = list(as_dict(stats[k]).get("class_counts") or [])
            total = sum(c for c in counts if isinstance(c, int | float)) or None
            cells = [
                (c, c / total if total and isinstance(c, int | float) else None) for c in counts
            ]
            class_rows.append((k, cells + [(None, None)] * (n_classes - len(cells))))
        names = [str(t) for t in d.get("target_names") or []]
        classes = [names[i] if i < len(names) else f"class {i}" for i in range(n_classes)]
        return {"kind": "classes", "classes": classes, "rows": class_rows}
    reg_rows: list[tuple[str, str, list[Any]]] = []
    for k in splits:
        for target, st in as_dict(stats[k]).items():
            st = as_dict(st)
            reg_rows.append((k, str(target), [st.get(q) for q in ("mean", "std", "min", "max")]))
    return {"kind": "regression", "rows": reg_rows} if reg_rows else None


SECTION = Section("data", "Data & splits", build, reads=frozenset({"data"}))
