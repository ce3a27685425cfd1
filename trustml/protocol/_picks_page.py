"""The files of ``trustml acquire``'s picks: ``picks.h5``, ``picks.csv``, the manifest, the page.

``picks.html`` draws each of the first :data:`PAGE_PICKS` picks is drawn as a thumbnail of its input (images: the
first channel; 3D and 4D grids: the central slice, named on the page; sequences and 1D grids:
lines; feature vectors: bars) next to its uncertainty map when the model predicts per pixel or
voxel, and captioned with its rank, pool index, score, prediction and uncertainty split
(a stacked bar, aleatoric + epistemic = total, on one scale for the page). A table lists every
pick. PNGs are embedded as base64 and written without metadata, so the same picks give the
same bytes.
"""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from trustml.protocol.schema import Protocol
from trustml.report.figures import (
    BLUE,
    MAX_LINE_CHANNELS,
    OKABE_ITO,
    ORANGE,
    slice_note,
    to_data_uri,
)

__all__ = [
    "COLUMNS",
    "PAGE_PICKS",
    "canonical_text",
    "map_name",
    "picks_csv",
    "picks_manifest",
    "picks_page",
    "write_picks_h5",
]

#: Picks drawn on the page (the table lists them all).
PAGE_PICKS = 64
COLUMNS = ("index", "score", "prediction", "total_uncertainty", "aleatoric", "epistemic")
_THUMB_IN = 1.45  # inches per panel
_STYLE = (
    "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
    ".picks{display:flex;flex-wrap:wrap;gap:10px;margin-bottom:2em}"
    ".pick{margin:0;padding:6px;border:1px solid #ddd;font-size:12px;width:min-content}"
    ".pick figcaption{min-width:150px}"
    ".bar{display:flex;height:8px;background:#eee;margin:3px 0;width:150px}"
    f".ale{{background:{ORANGE}}}.epi{{background:{BLUE}}}"
    ".key span{display:inline-block;width:10px;height:10px;margin:0 3px 0 10px}"
)


def write_picks_h5(
    path: Path, picks: np.ndarray, scores: np.ndarray, attrs: dict[str, Any]
) -> None:
    """``picks.h5``: ``indices`` (int64) and ``scores`` (float64), most wanted first."""
    with h5py.File(path, "w") as f:
        f.create_dataset("indices", data=picks.astype(np.int64))
        f.create_dataset("scores", data=scores.astype(np.float64))
        for key, value in attrs.items():
            f.attrs[key] = value


def picks_csv(picks: np.ndarray, rows: np.ndarray) -> str:
    """``picks.csv``: one line of :data:`COLUMNS` per pick (floats as shortest round trip)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for i, r in zip(picks.tolist(), rows.tolist(), strict=True):
        w.writerow([i, *(repr(float(v)) for v in r)])
    return buf.getvalue()


def canonical_text(protocol: Protocol) -> str:
    """The validated protocol as canonical JSON: what is hashed when its text is not known."""
    return json.dumps(protocol.model_dump(mode="json"), sort_keys=True)


def picks_manifest(
    provenance: dict[str, Any],
    protocol: Protocol,
    *,
    pool: dict[str, Any],
    strategy: str,
    budget: int,
    text_given: bool,
) -> dict[str, Any]:
    """``picks.manifest.json``: a run manifest's provenance (:mod:`._provenance`: versions,
    ``protocol_sha256``, seed, ranks, ``timings_s``) plus what was picked from which pool
    (``pool`` as :meth:`trustml.data.pool.PoolReader.fingerprint` describes it)."""
    return {
        **provenance,
        "trustml_command": "acquire",
        "protocol": protocol.name,
        "protocol_hashed": "the protocol file's text"
        if text_given
        else "the validated protocol as canonical JSON",
        "methods": [protocol.primary.name],  # acquire fits the primary method only
        "task": protocol.task,
        "strategy": strategy,
        "budget": int(budget),
        "pool": pool,
        "pool_fingerprint": pool["sha256"],
        "picks_on_page": min(int(budget), PAGE_PICKS),
    }


def map_name(task: str) -> str:
    """What the per-pixel uncertainty map of ``task`` shows."""
    if task == "classification":
        return "epistemic uncertainty per pixel (mutual information, BALD)"
    return "epistemic uncertainty per pixel (variance of the member means, first output)"


def picks_page(
    picks: np.ndarray,
    rows: np.ndarray,
    attrs: dict[str, Any],
    *,
    samples: np.ndarray,
    layout: str | None,
    maps: np.ndarray | None = None,
) -> str:
    """The HTML page of the picks.

    Parameters
    ----------
    picks : ndarray of shape (B,)
        Pool indices, most wanted first.
    rows : ndarray of shape (B, 5)
        Per pick: score, prediction, total, aleatoric and epistemic uncertainty.
    attrs : dict
        What the run was (strategy, budget, pool, ..., ``protocol`` and ``task``); shown.
    samples : ndarray of shape (m, *input_shape)
        The inputs of the first ``m <= B`` picks, drawn.
    layout : str or None
        The inputs' layout (``"NCHW"``, ``"NTF"``...; see :class:`trustml.data.BaseDataset`).
    maps : ndarray of shape (m, *spatial), optional
        Per-pixel epistemic uncertainty of the drawn picks, shown next to their inputs on one
        colour scale.
    """
    esc = html.escape
    m, n = len(samples), len(picks)
    scale = float(np.max(rows[:m, 2])) if m else 0.0
    vmax = float(np.max(maps)) if maps is not None and maps.size else 0.0
    cards = "\n".join(
        _card(k, int(picks[k]), rows[k], samples[k], layout, maps, vmax, scale) for k in range(m)
    )
    shown = f"first {m} of {n} picks" if m < n else f"all {n} picks"
    what = _input_note(samples.shape[1:], layout)
    if maps is not None:
        what += (
            f"; right: {map_name(str(attrs.get('task')))}"
            f"{_note(slice_note((1, *maps.shape[1:])))}, colour scale 0 to {vmax:.3g} for all"
        )
    key = (
        f"<p class='key'>Uncertainty split (bar length: total, on one scale up to {scale:.3g}):"
        "<span class='ale'></span>aleatoric<span class='epi'></span>epistemic</p>"
    )
    head = "".join(f"<th>{esc(c)}</th>" for c in ("rank", *COLUMNS))
    body = "\n".join(
        f"<tr><td>{k + 1}</td><td>{i}</td>" + "".join(f"<td>{v:.4g}</td>" for v in r) + "</tr>"
        for k, (i, r) in enumerate(zip(picks.tolist(), rows.tolist(), strict=True))
    )
    meta = ", ".join(f"{esc(str(k))}: {esc(str(v))}" for k, v in attrs.items())
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>trustml picks: {esc(str(attrs.get('protocol')))}</title>"
        f"<style>{_STYLE}</style></head><body>\n"
        f"<h1>Samples to label next</h1><p>{meta}</p>\n"
        f"<h2>Picked samples ({esc(shown)})</h2><p>{esc(what)}</p>{key}\n"
        f"<div class='picks'>\n{cards}\n</div>\n"
        f"<h2>All picks</h2><table><thead><tr>{head}</tr></thead><tbody>\n{body}\n"
        "</tbody></table></body></html>\n"
    )


def _card(
    k: int,
    index: int,
    row: np.ndarray,
    sample: np.ndarray,
    layout: str | None,
    maps: np.ndarray | None,
    vmax: float,
    scale: float,
) -> str:
    score, prediction, total, aleatoric, epistemic = (float(v) for v in row)
    uri = to_data_uri(_thumbnail(sample, layout, None if maps is None else maps[k], vmax))
    width = (lambda v: 100.0 * max(v, 0.0) / scale) if scale > 0 else (lambda v: 0.0)
    bar = (
        f"<div class='bar' title='total {total:.4g}'>"
        f"<span class='ale' style='width:{width(aleatoric):.1f}%'></span>"
        f"<span class='epi' style='width:{width(epistemic):.1f}%'></span></div>"
    )
    return (
        f"<figure class='pick'><img src='{uri}' alt='pick {k + 1}: pool sample {index}'>"
        f"<figcaption><b>#{k + 1}</b> index {index} &middot; score {score:.4g}<br>"
        f"prediction {prediction:.4g}{bar}total {total:.3g} = aleatoric {aleatoric:.3g} + "
        f"epistemic {epistemic:.3g}</figcaption></figure>"
    )


def _note(text: str) -> str:
    return f" ({text})" if text else ""


def _input_note(shape: tuple[int, ...], layout: str | None) -> str:
    """What the input thumbnails show, for inputs of ``shape`` (one sample's)."""
    kind = _kind(shape, layout)
    if kind == "features":
        return "Left: the input's features"
    if kind == "sequence":
        return f"Left: the input sequence, {_lines(shape[1], 'feature')} over {shape[0]} steps"
    if kind == "lines":
        return f"Left: the input, {_lines(shape[0], 'channel')}"
    first = "channel 0 of " + str(shape[0]) if shape[0] > 1 else "its one channel"
    return f"Left: the input, {first}{_note(slice_note(shape))}"


def _lines(n: int, what: str) -> str:
    shown = min(n, MAX_LINE_CHANNELS)
    if n == 1:
        return f"one {what}"
    return f"{what}s 0-{shown - 1} of {n}" if shown < n else f"{n} {what}s"


def _kind(shape: tuple[int, ...], layout: str | None) -> str:
    """``features`` (bars), ``sequence`` ((T, F) lines), ``lines`` ((C, L)) or ``grid``."""
    if len(shape) == 1:
        return "features"
    if len(shape) == 2:
        if layout == "NTF" or (layout is None and shape[0] > shape[1]):
            return "sequence"  # undeclared rank 3: channels are usually fewer than positions
        return "lines"
    return "grid"


def _thumbnail(
    sample: np.ndarray, layout: str | None, umap: np.ndarray | None, vmax: float
) -> Figure:
    """The input (left) and, when given, its uncertainty map (right) on one small figure."""
    panels = 1 if umap is None else 2
    fig = Figure(figsize=(_THUMB_IN * panels, _THUMB_IN), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    x = np.asarray(sample, dtype=float)
    kind = _kind(x.shape, layout)
    if kind == "features":
        axes[0].bar(np.arange(len(x)), x, color=OKABE_ITO[0], width=0.9)
    elif kind in ("sequence", "lines"):
        lines = x.T if kind == "sequence" else x
        for c in range(min(len(lines), MAX_LINE_CHANNELS)):
            axes[0].plot(lines[c], color=OKABE_ITO[c], lw=0.9)
    else:
        axes[0].imshow(_central(x[0]), cmap="cividis", interpolation="nearest")
    if umap is not None:
        u = np.asarray(umap, dtype=float)
        if u.ndim == 1:
            axes[1].plot(u, color=BLUE, lw=0.9)
            axes[1].set_ylim(0.0, vmax or 1.0)
        else:
            axes[1].imshow(
                _central(u), cmap="viridis", vmin=0.0, vmax=vmax or 1.0, interpolation="nearest"
            )
    for ax in axes:
        ax.tick_params(labelsize=5, length=2)
        if ax.images:
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


def _central(a: np.ndarray) -> np.ndarray:
    """A 2D view of ``a`` (one channel): leading axes cut at their central index."""
    while a.ndim > 2:
        a = a[a.shape[0] // 2]
    return a
