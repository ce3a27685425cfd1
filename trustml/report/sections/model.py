"""Model and training: the architecture, each method's settings and its loss curves."""

from __future__ import annotations

from typing import Any

from trustml.report import figures
from trustml.report._format import as_dict, flatten, pretty, rows
from trustml.report.sections._base import Content, FigureSpec, ReportInput, Section

__all__ = ["SECTION", "build"]

_TRAINING_CAPTION = (
    "Loss per epoch of each network, one panel per method (solid: training, dashed: "
    "validation when recorded). An ensemble has one curve per member."
)


def build(run: ReportInput) -> Content | None:
    """Architecture, settings per method and training curves; ``None`` without a model."""
    s, methods = run.summary, run.methods
    if "model" not in s and not methods:
        return None
    m = as_dict(s.get("model"))
    settings: dict[str, dict[str, Any]] = {}
    for meth in methods:
        flat: dict[str, Any] = {"method": meth.method}
        flatten("", meth.settings, flat)
        settings[meth.label] = flat
    keys: list[str] = []
    for flat in settings.values():
        keys += [k for k in flat if k not in keys]
    table = [(k, [pretty(settings[lbl].get(k)) for lbl in settings]) for k in keys]
    histories = {meth.label: meth.history for meth in methods if meth.history}
    figure = None
    if figures.has_training_curves(histories):
        figure = FigureSpec(
            "model/training_curves",
            lambda: figures.training_curves(histories),
            _TRAINING_CAPTION,
            "Training loss curves",
        )
    context = {
        "name": m.get("name"),
        "n_parameters": m.get("n_parameters"),
        "summary": m.get("summary"),
        "extra": rows(m, {"name", "n_parameters", "summary"}),
        "labels": list(settings),
        "settings": table,
        "training_figure": figure,
    }
    return Content(context, (figure,) if figure else ())


SECTION = Section("model", "Model & training", build, reads=frozenset({"model"}))
