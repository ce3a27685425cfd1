"""Tables and figures for a paper example's README, from one finished run.

    python paper_examples/summarize.py CASE [--out reports/paper_examples/CASE] [--figures]

prints the markdown tables (every number read from that run's results.json, arrays.h5 and
manifest.json) and, with ``--figures``, writes small PNGs to ``paper_examples/CASE/figures/``:
some extracted from the run's report.html, some drawn here with matplotlib from the same
files. Nothing is trained or re-computed beyond simple summaries of the saved arrays.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent


# -- reading a run ----------------------------------------------------------------------------
class Run:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.results = json.loads((out / "results.json").read_text())
        self.manifest = json.loads((out / "manifest.json").read_text())
        self.h5 = h5py.File(out / "arrays.h5", "r")

    def arr(self, key: str) -> np.ndarray:
        return np.asarray(self.h5[key])

    def report_images(self) -> dict[str, bytes]:
        """The report's embedded PNGs by their alt text."""
        html = (self.out / "report.html").read_text()
        out = {}
        for tag in re.findall(r"<img[^>]*>", html):
            alt = re.search(r'alt="([^"]*)"', tag)
            src = re.search(r'src="data:image/png;base64,([^"]*)"', tag)
            if alt and src:
                out[alt.group(1)] = base64.b64decode(src.group(1))
        return out


def primary(run: Run) -> str:
    return next(n for n, m in run.results["methods"].items() if m["primary"])


def fmt(x: float, digits: int = 3) -> str:
    if x is None:
        return "n/a"
    if abs(x) >= 100 or (abs(x) < 1e-3 and x != 0):
        return f"{x:.3g}"
    return f"{x:.{digits}f}"


def ci(m: dict) -> str:
    lo, hi = m["ci"]
    return f"{fmt(m['value'])} [{fmt(lo)}, {fmt(hi)}]"


def metric_table(rows: list[tuple[str, dict]], metrics: list[str]) -> str:
    head = "| | " + " | ".join(metrics) + " |\n|---|" + "---|" * len(metrics) + "\n"
    body = ""
    for name, ms in rows:
        body += f"| {name} | " + " | ".join(ci(ms[m]) if m in ms else "" for m in metrics) + " |\n"
    return head + body


def ece_of(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def run_info(run: Run) -> str:
    m = run.manifest
    t = m.get("timings_s", {})
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in t.items() if isinstance(v, int | float))
    return (
        f"wall time {m['wall_time_s']:.0f} s (trustml's own clock; {stages}), "
        f"device {m.get('device')}, {m.get('torch_threads')} torch threads, "
        f"torch {m['versions'].get('torch')}, verdict **{run.results['verdict']}**"
    )


def acceptance_table(run: Run) -> str:
    s = "| criterion | value [95 % CI] | bound | passed |\n|---|---|---|---|\n"
    for a in run.results["acceptance"]:
        lo, hi = a["ci"] if a.get("ci") else (None, None)
        cis = f" [{fmt(lo)}, {fmt(hi)}]" if lo is not None else ""
        op = ">=" if a["bound"] == "min" else "<="
        s += (
            f"| {a['criterion']} | {fmt(a['value'])}{cis} | {op} {a['threshold']} | "
            f"{'yes' if a['passed'] else '**no**'} |\n"
        )
    return s


def checks_table(run: Run) -> str:
    att = run.results.get("attribution")
    if not att:
        return ""
    s = "| method | check | value | threshold | passed | detail |\n|---|---|---|---|---|---|\n"
    for meth, v in att["methods"].items():
        for name, c in v["checks"].items():
            extra = c.get("extra") or {}
            detail = c.get("detail", "")
            if name == "localization":
                # the check's value, area share and lift are over the examples with a
                # non-empty mask; add the absolute-relevance mass over the same examples
                detail += f"; lift (mass / area) {fmt(extra.get('lift'))}"
                masks = run.arr("attribution/masks")
                maps = np.abs(run.arr(f"attribution/{meth}/maps").mean(axis=0))
                mm = np.broadcast_to(masks.astype(bool), maps.shape).reshape(len(maps), -1)
                maps = maps.reshape(len(maps), -1)
                sel = mm.any(axis=1)
                absmass = (maps * mm).sum(1)[sel] / maps.sum(1)[sel]
                detail += (f"; absolute-relevance mass over the same "
                           f"{extra.get('examples_used', int(sel.sum()))} examples "
                           f"{absmass.mean():.3f}")
            if name == "randomization" and "spearman_abs" in extra:
                detail += "; after each stage: " + ", ".join(
                    f"{st} {v:.3f}" for st, v in zip(extra["stages"][1:], extra["spearman_abs"][1:],
                                                     strict=False))
            s += (
                f"| {meth} | {name} | {fmt(c['value'])} | {c['comparison']} {fmt(c['threshold'])} "
                f"| {'yes' if c['passed'] else '**no**'} | {detail.replace('|', '')} |\n"
            )
    return s


# -- figures ----------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "figure.dpi": 100})
    return plt


def save_report_image(run: Run, alt: str, dest: Path, max_px: int = 900) -> None:
    """Copy one of the report's figures, shrunk to at most ``max_px`` wide."""
    import io

    from PIL import Image

    images = run.report_images()
    if alt not in images:
        raise SystemExit(f"{run.out}/report.html has no figure {alt!r}; it has {sorted(images)}")
    im = Image.open(io.BytesIO(images[alt]))
    if im.width > max_px:
        im = im.resize((max_px, round(im.height * max_px / im.width)), Image.LANCZOS)
    im = im.convert("P", palette=Image.ADAPTIVE, colors=128)
    im.save(dest, optimize=True)


def reliability_panel(ax, probs, labels, label, bins=10, **kw):
    conf = probs[:, 1]  # binary: probability of the positive class
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    xs, ys = [], []
    for b in range(bins):
        sel = idx == b
        if sel.sum() >= 5:
            xs.append(conf[sel].mean())
            ys.append((labels[sel] == 1).mean())
    ax.plot(xs, ys, "o-", label=label, ms=3, **kw)


def fig_binary_reliability(run: Run, sets: list[tuple[str, str, str]], dest: Path, title: str):
    """Reliability (observed frequency of class 1 vs predicted probability) for test sets."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.6, 3.3))
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
    for label, pkey, lkey in sets:
        p, y = run.arr(pkey), run.arr(lkey)
        reliability_panel(ax, p, y, f"{label} (ECE {ece_of(p, y):.3f})")
    ax.set_xlabel("predicted probability of class 1")
    ax.set_ylabel("observed frequency")
    ax.set_title(title)
    ax.legend(fontsize=6.5, loc="upper left")
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)


def fig_attribution_maps(run: Run, dest: Path, channel_names: list[str], n: int = 3,
                         title: str = "", crop: int = 0, total_input: bool = False,
                         target: int | None = None, saturate: float = 1.0) -> None:
    """Input, member-mean attribution and its member std for examples with a mask
    (and, with ``target``, explained for that class)."""
    plt = _plt()
    sl = slice(crop, -crop) if crop else slice(None)
    x = run.arr("attribution/inputs")[..., sl, sl]
    maps = run.arr("attribution/maps")[..., sl, sl]  # (K, N, C, H, W)
    masks = run.arr("attribution/masks")[:, 0][..., sl, sl] if "attribution/masks" in run.h5 else None
    tgt = run.arr("attribution/target_index")
    keep = [i for i in range(len(x)) if (masks is None or masks[i].any())
            and (target is None or tgt[i] == target)][:n]
    fig, axes = plt.subplots(len(keep), 3, figsize=(6.0, 2.0 * len(keep)), squeeze=False)
    for r, i in enumerate(keep):
        mean = maps[:, i].mean(axis=0).sum(axis=0)
        std = maps[:, i].sum(axis=1).std(axis=0)
        scale = (np.abs(mean).max() or 1.0) / saturate
        # the channel with the largest attribution, as input
        ch = int(np.abs(maps[:, i].mean(axis=0)).sum(axis=(1, 2)).argmax())
        inp = (x[i].sum(axis=0), "input: sum of channels") if total_input else (
            x[i, ch], f"input: {channel_names[ch]}")
        panels = [
            (inp[0], inp[1], "viridis", None),
            (mean / scale, "mean attribution" + (
                f" (clip max/{saturate:g})" if saturate != 1 else ""), "RdBu_r", (-1, 1)),
            (std / scale, "member std, same scale", "magma", (0, 1)),
        ]
        for c, (img, t, cmap, lim) in enumerate(panels):
            ax = axes[r, c]
            kw = {} if lim is None else {"vmin": lim[0], "vmax": lim[1]}
            im = ax.imshow(img, cmap=cmap, origin="lower", interpolation="nearest", **kw)
            if masks is not None:
                ax.contour(masks[i], levels=[0.5], colors="lime", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(t, fontsize=7)
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    if title:
        fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(dest, dpi=90)
    plt.close(fig)


def fig_localization(run: Run, dest: Path, label: str) -> None:
    """Per-example relevance mass inside the mask vs the mask's area share."""
    plt = _plt()
    c = run.results["attribution"]["checks"]["localization"]
    masks = run.arr("attribution/masks")
    area = masks.reshape(len(masks), -1).mean(axis=1)
    area = area[area > 0]  # the check's per-example mass covers only examples with a mask
    mass = np.asarray(c["extra"]["mass"])
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.scatter(area, mass, s=14, label=f"{label} examples")
    top = max(0.05, float(mass.max()) * 1.1)
    xs = np.linspace(0, max(area.max() * 1.2, 0.01), 10)
    ax.plot(xs, xs, "--", color="0.5", lw=0.8, label="mass = area (no localization)")
    ax.set_xlim(0, xs[-1])
    ax.set_ylim(0, min(1.0, top))
    ax.set_xlabel("mask area share")
    ax.set_ylabel("positive IG relevance inside mask")
    ax.set_title(f"mean lift {np.mean(mass / area):.1f}x over area share")
    ax.legend(fontsize=6.5)
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)


# -- shift ladders ---------------------------------------------------------------------------
def ladders(run: Run) -> dict[str, dict]:
    """The shifts of ``data.shifts`` that are ladders (``{"ladder", "levels", "holds"}``)."""
    return {n: s for n, s in run.results.get("shifts", {}).items() if "ladder" in s}


def single_shifts(run: Run) -> dict[str, dict]:
    return {n: s for n, s in run.results.get("shifts", {}).items() if "ladder" not in s}


def level_name(lad: dict, j: int) -> str:
    """'+2 K', 'n 3-3.5': a level as the README writes it."""
    info = lad["ladder"]
    label, unit = info["labels"][j], info.get("unit") or ""
    prefix = {"index": "n"}.get(info["parameter"], info["parameter"])  # cosmology3d's index = n
    if unit:
        v = info["levels"][j]
        return f"+{v:g} {unit}" if isinstance(v, int | float) else f"{label} {unit}"
    return f"{prefix} {label}"


def ladder_table(run: Run, name: str, metrics: list[str], uncertainty: list[tuple[str, str]],
                 reference: tuple[str, dict] | None = None) -> str:
    """Rows: level x method; columns: the metrics as "value [CI]" and mean uncertainties.

    ``uncertainty`` lists (results key, column title); ``reference`` adds the in-distribution
    test split of each method first."""
    lad = run.results["shifts"][name]
    cols = metrics + [t for _, t in uncertainty]
    s = "| level | method | " + " | ".join(cols) + " |\n|---|---|" + "---|" * len(cols) + "\n"
    if reference:
        for meth, m in run.results["methods"].items():
            unc = m.get("uncertainty", {})
            vals = [ci(m["metrics"][k]) if k in m["metrics"] else "" for k in metrics]
            vals += [fmt(float(np.mean(unc[k]))) if k in unc else "" for k, _ in uncertainty]
            s += f"| {reference[0]} | {meth} | " + " | ".join(vals) + " |\n"
    for j, lev in enumerate(lad["levels"]):
        for i, (meth, v) in enumerate(lev["methods"].items()):
            vals = [ci(v["metrics"][k]) if k in v["metrics"] else "" for k in metrics]
            vals += [fmt(float(np.mean(v[k]))) if k in v else "" for k, _ in uncertainty]
            head = f"{level_name(lad, j)} ({lev['n']})" if i == 0 else ""
            s += f"| {head} | {meth} | " + " | ".join(vals) + " |\n"
    return s


def holds_table(run: Run, name: str) -> str:
    """Where each acceptance criterion holds along a ladder: one row per criterion and method."""
    lad = run.results["shifts"][name]
    levels = [level_name(lad, j) for j in range(len(lad["levels"]))]
    s = ("| criterion | method | " + " | ".join(levels) + " | holds through |\n|---|---|"
         + "---|" * (len(levels) + 1) + "\n")
    for h in lad["holds"]:
        op = ">=" if h["bound"] == "min" else "<="
        marks = ["✓" if p else "✗" for p in h["passed"]]
        through = h["holds_through"]
        if through is not None:
            through = level_name(lad, lad["ladder"]["labels"].index(through))
        s += (f"| {h['metric']} {op} {h['threshold']:g} | {h['method']} | " + " | ".join(marks)
              + f" | {through if through is not None else 'no level'} |\n")
    return s


# -- per case ---------------------------------------------------------------------------------
def storm_masses(run: Run) -> dict[str, dict[str, np.ndarray]]:
    """Per explained field with a cyclone: the share of the positive prediction-IG and
    epistemic-IG relevance (member mean, all channels) inside the cyclone mask, the mask's area
    share, whether the cyclone was detected, and the field's mutual information."""
    masks = run.arr("attribution/masks")
    pred = run.arr("attribution/integrated_gradients/maps").mean(axis=0)
    epi = run.arr("attribution/uncertainty/epistemic/uncertainty_maps").mean(axis=0)
    mm = np.broadcast_to(masks.astype(bool), pred.shape).reshape(len(pred), -1)
    sel = mm.any(axis=1)
    out = {"area": mm.mean(axis=1)[sel],
           "detected": run.arr("attribution/target_index")[sel] == 1,
           "mi": run.arr("attribution/uncertainty/epistemic/uncertainty_values")[sel]}
    for key, maps in (("prediction", pred), ("epistemic", epi)):
        r = np.maximum(maps.reshape(len(maps), -1), 0.0)
        out[key] = (r * mm).sum(1)[sel] / np.maximum(r.sum(1)[sel], 1e-30)
    out["mi_without"] = run.arr("attribution/uncertainty/epistemic/uncertainty_values")[~sel]
    return out


def storm_table(run: Run) -> str:
    m = storm_masses(run)
    s = ("| explained +4 K fields with a cyclone | n | mean MI (nats) | area share of the mask | "
         "prediction IG: mass inside (lift) | epistemic IG: mass inside (lift) |\n"
         "|---|---|---|---|---|---|\n")
    groups = [("all", np.ones_like(m["detected"])), ("detected (IG of 'cyclone')", m["detected"]),
              ("missed (IG of 'no cyclone')", ~m["detected"])]
    for name, g in groups:
        if not g.any():
            continue
        area = m["area"][g].mean()
        cells = [f"{m[k][g].mean():.3f} ({m[k][g].mean() / area:.1f}×)"
                 for k in ("prediction", "epistemic")]
        s += (f"| {name} | {int(g.sum())} | {m['mi'][g].mean():.4f} | {area:.3f} | "
              + " | ".join(cells) + " |\n")
    if len(m["mi_without"]):
        s += (f"| *fields without a cyclone (no mask)* | {len(m['mi_without'])} | "
              f"{m['mi_without'].mean():.4f} | — | — | — |\n")
    return s


def uncertainty_checks_table(run: Run) -> str:
    unc = run.results.get("attribution", {}).get("uncertainty", {})
    s = ("| quantity | mean value | check | value | threshold | passed | detail |\n"
         "|---|---|---|---|---|---|---|\n")
    for q, v in unc.items():
        for name, c in v["checks"].items():
            e = c.get("extra") or {}
            detail = c.get("detail", "")
            if "attribution" in e:
                detail += (f"; curves peak at {max(e['attribution']):.1f} (attribution order) and "
                           f"{max(e['random']):.1f} (random order) times the start")
            s += (f"| {q}: {v['target']} | {fmt(v['mean_value'])} | {name} | {fmt(c['value'])} | "
                  f"{c['comparison']} {fmt(c['threshold'])} | {'yes' if c['passed'] else '**no**'} "
                  f"| {detail.replace('|', '')} |\n")
    return s


def climate(run: Run, figs: Path | None) -> None:
    r = run.results
    print(run_info(run), "\n")
    rows = [(f"{n} ({m['method']}), test, present climate ({r['data']['splits']['test']})",
             m["metrics"]) for n, m in r["methods"].items()]
    for name, s in single_shifts(run).items():
        rows.append((f"test, {name} ({s['n']})", s["metrics"]))
    rows.append(("class-frequency reference", r["reference"]["class_frequency"]["metrics"]))
    print(metric_table(rows, ["accuracy", "nll", "brier", "ece"]))
    y = run.arr("test/labels")
    for n, m in r["methods"].items():
        p_raw = run.arr("test/probs_raw" if m["primary"] else f"methods/{n}/test/probs_raw")
        c = m["calibration"]
        print(f"{n}: ECE before temperature scaling {ece_of(p_raw, y):.4f} (15 bins, recomputed "
              f"from arrays.h5), after {m['metrics']['ece']['value']:.4f}; temperature "
              f"{c['temperature']:.3f} (calibration NLL {c['nll_calibration_before']:.4f} -> "
              f"{c['nll_calibration_after']:.4f}); test mean entropy "
              f"{m['uncertainty']['mean_entropy']:.4f}, MI {m['uncertainty']['mean_mutual_information']:.4f}")
    print()
    for name, lad in ladders(run).items():
        print(f"ladder {name}: {lad['ladder']}\n")
        print(ladder_table(run, name, ["accuracy", "nll", "ece"],
                           [("mean_entropy", "mean entropy"),
                            ("mean_mutual_information", "mean MI")]))
        print(holds_table(run, name))
        s = "| level | method | cyclone recall | false-alarm rate | mean p(cyclone) | cyclone fraction |\n"
        s += "|---|---|---|---|---|---|\n"
        for j, lev in enumerate(lad["levels"]):
            yy = run.arr(f"shifts/{name}/levels/{j}/labels")
            for i, meth in enumerate(lev["methods"]):
                p = run.arr(f"shifts/{name}/levels/{j}/methods/{meth}/probs")
                pred = p.argmax(1)
                s += (f"| {level_name(lad, j) if i == 0 else ''} | {meth} | "
                      f"{np.mean(pred[yy == 1] == 1):.3f} | {np.mean(pred[yy == 0] == 1):.3f} | "
                      f"{p[:, 1].mean():.3f} | {np.mean(yy == 1):.3f} |\n")
        print(s)
    for key, lab in [("test", "present climate")] + [(f"shifts/{n}", n) for n in single_shifts(run)]:
        p, yy = run.arr(f"{key}/probs"), run.arr(f"{key}/labels")
        pred = p.argmax(1)
        print(f"{lab} ({primary(run)}): cyclone recall {np.mean(pred[yy == 1] == 1):.3f}, "
              f"false-alarm rate {np.mean(pred[yy == 0] == 1):.3f}")
    att = r.get("attribution", {})
    print(f"\nattribution examples from {att.get('examples_from', 'test')}: "
          f"{att.get('n_examples')} fields\n")
    print(checks_table(run))
    if "uncertainty" in att:
        print(uncertainty_checks_table(run))
        print(storm_table(run))
    print(acceptance_table(run))
    if figs:
        for name in ladders(run):
            save_report_image(run, f"Metrics along the {name} shift ladder", figs / "ladder.png")
            fig_reliability_ladder(run, name, figs / "reliability_ladder.png")
        if "uncertainty" in att:
            save_report_image(run, "where the model is unsure: uncertainty maps next to "
                              "prediction maps", figs / "uncertainty_maps.png", max_px=560)
            fig_storm_masses(run, figs / "doubt_on_storms.png")


def fig_reliability_ladder(run: Run, name: str, dest: Path) -> None:
    """Reliability at the ladder's first and last level, one panel per method."""
    plt = _plt()
    lad = run.results["shifts"][name]
    meths = list(lad["levels"][0]["methods"])
    last = len(lad["levels"]) - 1
    fig, axes = plt.subplots(1, len(meths), figsize=(3.2 * len(meths), 3.1), squeeze=False)
    for ax, meth in zip(axes[0], meths, strict=True):
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
        for j in (0, last):
            p = run.arr(f"shifts/{name}/levels/{j}/methods/{meth}/probs")
            y = run.arr(f"shifts/{name}/levels/{j}/labels")
            ece = lad["levels"][j]["methods"][meth]["metrics"]["ece"]["value"]
            reliability_panel(ax, p, y, f"{level_name(lad, j)} (ECE {ece:.3f})")
        ax.set_xlabel("predicted probability of a cyclone")
        ax.set_title(f"{meth}, temperature-scaled")
        ax.legend(fontsize=6.5, loc="lower right")
    axes[0, 0].set_ylabel("observed cyclone frequency")
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)


def fig_storm_masses(run: Run, dest: Path) -> None:
    """Per field with a cyclone: positive relevance inside the mask vs the mask's area share,
    for the prediction and for the epistemic uncertainty."""
    plt = _plt()
    m = storm_masses(run)
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.0), sharey=True)
    top = max(m["area"].max() * 1.25, 0.05)
    for ax, key, title in ((axes[0], "prediction", "prediction (IG of the predicted class)"),
                           (axes[1], "epistemic", "epistemic uncertainty (IG of the MI)")):
        for sel, lab, mk in ((m["detected"], "detected cyclone", "o"),
                             (~m["detected"], "missed cyclone", "x")):
            ax.scatter(m["area"][sel], m[key][sel], s=16, marker=mk, label=lab)
        xs = np.linspace(0, top, 10)
        ax.plot(xs, xs, "--", color="0.5", lw=0.8, label="mass = area")
        ax.set_xlim(0, top)
        ax.set_ylim(0, 1)
        ax.set_xlabel("cyclone mask's area share")
        ax.set_title(f"{title}\nmean {m[key].mean():.2f} inside, lift "
                     f"{m[key].mean() / m['area'].mean():.1f}x", fontsize=7.5)
    axes[0].set_ylabel("positive relevance inside the mask")
    axes[1].legend(fontsize=6.5, loc="lower right")
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)


def hep(run: Run, figs: Path | None) -> None:
    r = run.results
    print(run_info(run), "\n")
    rows = []
    for name, m in r["methods"].items():
        rows.append((f"{name} ({m['method']})", m["metrics"]))
    for name, s in single_shifts(run).items():
        rows.append((f"{primary(run)}, shift {name} ({s['n']})", s["metrics"]))
    rows.append(("class-frequency reference", r["reference"]["class_frequency"]["metrics"]))
    print(metric_table(rows, ["accuracy", "nll", "brier", "ece"]))
    for name, m in r["methods"].items():
        p_raw = run.arr("test/probs_raw" if m["primary"] else f"methods/{name}/test/probs_raw")
        y = run.arr("test/labels")
        print(f"{name}: ECE before temperature scaling {ece_of(p_raw, y):.4f}; temperature "
              f"{m['calibration'].get('temperature', float('nan')):.3f}; mean MI "
              f"{m['uncertainty']['mean_mutual_information']:.4f}")
        d = m.get("diagnostics")
        if d:
            print(f"  ArviZ ({d['inference']}, {d['chains']} chains x {d['draws']} draws): "
                  f"rhat_max {d['rhat_max']}, ess_bulk_min {d['ess_bulk_min']}, "
                  f"ess_tail_min {d['ess_tail_min']}")
    print()
    print(checks_table(run))
    print(acceptance_table(run))
    if figs:
        sets = []
        for name, m in r["methods"].items():
            pk = "test/probs" if m["primary"] else f"methods/{name}/test/probs"
            sets.append((name, pk, "test/labels"))
        sets += [(f"{primary(run)}, {n}", f"shifts/{n}/probs", f"shifts/{n}/labels")
                 for n in single_shifts(run)]
        fig_binary_reliability(run, sets, figs / "reliability.png", "Temperature-scaled taggers")
        fig_attribution_maps(run, figs / "attribution_second_prong.png",
                             ["ECAL", "HCAL", "tracks"], crop=6, total_input=True, target=1, saturate=4,
                             title="IG for the boson class on boson jets, central 1.5 x 1.5 in "
                                   "(eta, phi)\n(green: dR < 0.2 around the second prong)")
        fig_localization(run, figs / "localization.png", "boson-jet")


def _reg_keys(run: Run, meth: str) -> str:
    """arrays.h5 prefix of a regression method's test predictions."""
    return "test" if run.results["methods"][meth]["primary"] else f"methods/{meth}/test"


def cosmology(run: Run, figs: Path | None) -> None:
    r = run.results
    names = r["data"]["target_names"]
    print(run_info(run), "\n")
    nt = r["data"]["splits"]["test"]
    rows = [(f"{n} ({m['method']}) + conformal, test ({nt})", m["metrics"])
            for n, m in r["methods"].items()]
    rows += [("climatology reference", r["reference"]["climatology"]["metrics"])]
    rows += [(f"{primary(run)}, shift {n} ({s['n']})", s["metrics"])
             for n, s in single_shifts(run).items()]
    print(metric_table(rows, ["rmse", "crps", "nll", "coverage", "interval_width"]))
    for meth, m in r["methods"].items():
        cc = m.get("coverage_curve") or r["coverage_curve"]
        print(f"{meth}: conformal std multiplier {m['calibration'].get('std_multiplier')}")
        print("| nominal | " + " | ".join(f"{v:.2f}" for v in cc["nominal"]) + " |")
        print("|---|" + "---|" * len(cc["nominal"]))
        print(f"| {meth}, raw | " + " | ".join(f"{v:.3f}" for v in cc["empirical_raw"]) + " |")
        print(f"| {meth}, conformal | " + " | ".join(f"{v:.3f}" for v in cc["empirical"]) + " |\n")
    ev_test = {}
    for meth in r["methods"]:
        key = _reg_keys(run, meth)
        y = run.arr("test/targets")
        lo, hi = run.arr(f"{key}/lower"), run.arr(f"{key}/upper")
        cov = ((y >= lo) & (y <= hi)).mean(axis=0)
        ev = run.arr(f"{key}/epistemic_var")
        ev_test[meth] = ev
        print(f"{meth}: per-target 90 % coverage (test)",
              {n: round(float(c), 3) for n, c in zip(names, cov, strict=False)},
              "; mean epistemic var per target",
              {n: float(f"{v:.4g}") for n, v in zip(names, ev.mean(axis=0), strict=False)},
              f"overall {float(ev.mean()):.4g}; mean aleatoric var",
              [float(f"{v:.4g}") for v in r["methods"][meth]["uncertainty"]["mean_aleatoric_var"]])
    for n, s in single_shifts(run).items():
        ev = ev_test[primary(run)]
        yy = run.arr(f"shifts/{n}/targets")
        l2, h2 = run.arr(f"shifts/{n}/lower"), run.arr(f"shifts/{n}/upper")
        ev2 = run.arr(f"shifts/{n}/epistemic_var")
        print(f"shift {n} ({primary(run)}): mean_epistemic_var {s['mean_epistemic_var']:.4g} ratio "
              f"{s['mean_epistemic_var'] / float(ev.mean()):.2f}; per-target ratio "
              f"{ {k: round(float(a / b), 2) for k, a, b in zip(names, ev2.mean(0), ev.mean(0), strict=False)} }; "
              f"per-target coverage { {k: round(float(c), 3) for k, c in zip(names, ((yy >= l2) & (yy <= h2)).mean(0), strict=False)} }; "
              f"mean std {s['mean_std']:.4g}")
    print()
    for name, lad in ladders(run).items():
        print(f"ladder {name}: {lad['ladder']}\n")
        print(ladder_table(run, name, ["rmse", "crps", "coverage", "interval_width"],
                           [("mean_epistemic_var", "mean epistemic var")],
                           reference=("test, in prior",)))
        print(holds_table(run, name))
        s = ("| level | method | " + " | ".join(f"coverage {n}" for n in names) + " | "
             + " | ".join(f"epistemic var {n} (× in prior)" for n in names)
             + " | mean predicted n |\n|---|---|" + "---|" * (2 * len(names) + 1) + "\n")
        for j, lev in enumerate(lad["levels"]):
            yy = run.arr(f"shifts/{name}/levels/{j}/targets")
            for i, meth in enumerate(lev["methods"]):
                k = f"shifts/{name}/levels/{j}/methods/{meth}"
                cov = ((yy >= run.arr(f"{k}/lower")) & (yy <= run.arr(f"{k}/upper"))).mean(0)
                ev = run.arr(f"{k}/epistemic_var").mean(0)
                ratio = ev / ev_test[meth].mean(0)
                s += (f"| {level_name(lad, j) if i == 0 else ''} | {meth} | "
                      + " | ".join(f"{c:.3f}" for c in cov) + " | "
                      + " | ".join(f"{v:.3g} ({q:.1f}×)" for v, q in zip(ev, ratio, strict=True))
                      + f" | {run.arr(f'{k}/mean')[:, -1].mean():.2f} |\n")
        print(s)
    print(checks_table(run))
    print(acceptance_table(run))
    if figs:
        fig_coverage(run, figs / "coverage_curve.png")
        for name in ladders(run):
            save_report_image(run, f"Metrics along the {name} shift ladder", figs / "ladder.png")
            fig_ladder_epistemic(run, name, figs / "epistemic_vs_index.png")
            fig_ladder_pred_vs_true(run, name, figs / "predicted_vs_true.png")


def prior_edge(run: Run, name: str) -> float:
    """The upper end of the training range of the option a ladder sweeps (the run's own
    protocol.yaml, ``data.options.<parameter>``)."""
    import yaml

    proto = yaml.safe_load((run.out / "protocol.yaml").read_text())
    value = proto["data"]["options"][run.results["shifts"][name]["ladder"]["parameter"]]
    return float(np.max(value))


def fig_ladder_epistemic(run: Run, name: str, dest: Path, target: int = -1) -> None:
    """Epistemic variance of the swept parameter against its true value, the in-prior test
    split and every level of the ladder, one panel per method."""
    plt = _plt()
    lad = run.results["shifts"][name]
    tname = run.results["data"]["target_names"][target]
    meths = list(run.results["methods"])
    fig, axes = plt.subplots(1, len(meths), figsize=(3.3 * len(meths), 3.0), squeeze=False,
                             sharey=True)
    for ax, meth in zip(axes[0], meths, strict=True):
        key = _reg_keys(run, meth)
        ax.scatter(run.arr("test/targets")[:, target], run.arr(f"{key}/epistemic_var")[:, target],
                   s=4, alpha=0.5, color="0.5", label="test, in prior")
        for j in range(len(lad["levels"])):
            k = f"shifts/{name}/levels/{j}/methods/{meth}/epistemic_var"
            ax.scatter(run.arr(f"shifts/{name}/levels/{j}/targets")[:, target],
                       run.arr(k)[:, target], s=4, alpha=0.6, label=level_name(lad, j))
        ax.axvline(prior_edge(run, name), color="k", lw=0.7, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel(f"true {tname} (dotted: edge of the training prior)")
        ax.set_title(meth)
    axes[0, 0].set_ylabel(f"epistemic variance of {tname}")
    axes[0, 0].legend(fontsize=6, markerscale=2)
    fig.tight_layout()
    fig.savefig(dest, dpi=100)
    plt.close(fig)


def fig_ladder_pred_vs_true(run: Run, name: str, dest: Path, target: int = -1) -> None:
    """Predicted swept parameter with its 90 % conformal interval against the truth."""
    plt = _plt()
    lad = run.results["shifts"][name]
    tname = run.results["data"]["target_names"][target]
    meths = list(run.results["methods"])
    fig, axes = plt.subplots(1, len(meths), figsize=(3.3 * len(meths), 3.1), squeeze=False,
                             sharey=True)
    for ax, meth in zip(axes[0], meths, strict=True):
        sets = [("test, in prior", "test/targets", _reg_keys(run, meth))]
        sets += [(level_name(lad, j), f"shifts/{name}/levels/{j}/targets",
                  f"shifts/{name}/levels/{j}/methods/{meth}") for j in range(len(lad["levels"]))]
        for label, tk, key in sets:
            y = run.arr(tk)[:, target]
            m, lo, hi = (run.arr(f"{key}/{q}")[:, target] for q in ("mean", "lower", "upper"))
            ax.errorbar(y, m, yerr=[m - lo, hi - m], fmt="o", ms=1.5, lw=0.3, alpha=0.5,
                        label=label)
        lims = (min(ax.get_xlim()[0], ax.get_ylim()[0]), max(ax.get_xlim()[1], ax.get_ylim()[1]))
        ax.plot(lims, lims, "--", color="0.3", lw=0.8)
        ax.axvline(prior_edge(run, name), color="k", lw=0.7, ls=":")
        ax.set_xlabel(f"true {tname} (dotted: edge of the training prior)")
        ax.set_title(meth)
    axes[0, 0].set_ylabel(f"predicted {tname} (90 % conformal)")
    axes[0, 0].legend(fontsize=6, markerscale=2)
    fig.tight_layout()
    fig.savefig(dest, dpi=100)
    plt.close(fig)


def fig_coverage(run: Run, dest: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.4, 3.2))
    ax.plot([0.45, 1], [0.45, 1], "--", color="0.6", lw=0.8)
    for n, m in run.results["methods"].items():
        cc = m.get("coverage_curve") or run.results["coverage_curve"]
        line, = ax.plot(cc["nominal"], cc["empirical"], "o-", ms=3, label=f"{n}, conformal")
        ax.plot(cc["nominal"], cc["empirical_raw"], "s:", ms=2, color=line.get_color(),
                label=f"{n}, raw")
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("empirical coverage (test, in prior)")
    ax.legend(fontsize=6.5)
    ax.set_title("Central-interval coverage")
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)


def enso(run: Run, figs: Path | None) -> None:
    r = run.results
    print(run_info(run), "\n")
    rows = [(f"{n} ({m['method']}) + conformal", m["metrics"]) for n, m in r["methods"].items()]
    rows += [(f"{n} reference", m["metrics"]) for n, m in r["reference"].items()]
    print(metric_table(rows, ["rmse", "mae", "crps", "nll", "coverage", "interval_width"]))
    for n, m in r["methods"].items():
        print(n, "conformal std multiplier", m["calibration"].get("std_multiplier"),
              "coverage curve", m.get("coverage_curve"))
    print()
    print(checks_table(run))
    print(acceptance_table(run))
    maps = run.arr("attribution/maps")  # (K, N, T, F)
    per_lag = np.abs(maps).sum(axis=-1)  # (K, N, T)
    share = per_lag / per_lag.sum(axis=-1, keepdims=True)
    mean_share = share.mean(axis=(0, 1))
    print("mean |IG| share per lag (oldest .. newest):", np.round(mean_share, 3).tolist())
    if figs:
        fig_enso_series(run, figs / "forecast_last_decade.png")
        fig_enso_lags(run, figs / "attribution_lags.png")
        fig_coverage_methods(run, figs / "coverage_curve.png")


def fig_enso_series(run: Run, dest: Path) -> None:
    plt = _plt()
    y = run.arr("test/targets")[:, 0]
    t = 2001 + np.arange(len(y)) / 12.0
    fig, ax = plt.subplots(figsize=(6.4, 2.6))
    ax.fill_between(t, run.arr("test/lower")[:, 0], run.arr("test/upper")[:, 0], alpha=0.3,
                    label="ensemble 90 % conformal interval")
    ax.plot(t, run.arr("test/mean")[:, 0], lw=1, label="ensemble mean forecast")
    ax.plot(t, y, "k.", ms=2.5, label="observed")
    out = (y < run.arr("test/lower")[:, 0]) | (y > run.arr("test/upper")[:, 0])
    ax.plot(t[out], y[out], "rx", ms=4, label="outside the interval")
    ax.set_xlabel("target month")
    ax.set_ylabel("Nino 1+2 SST anomaly (deg C)")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title("One-month-ahead forecasts, unseen decade 2001-2010")
    fig.tight_layout()
    fig.savefig(dest, dpi=100)
    plt.close(fig)


def fig_enso_lags(run: Run, dest: Path) -> None:
    plt = _plt()
    maps = run.arr("attribution/maps")[..., 0]  # (K, N, T)
    k, n, t = maps.shape
    share = np.abs(maps) / np.abs(maps).sum(axis=-1, keepdims=True)
    per_member = share.mean(axis=1)  # (K, T)
    lags = np.arange(t, 0, -1)  # oldest input = lag t months before the target
    fig, ax = plt.subplots(figsize=(3.8, 2.8))
    ax.bar(lags, per_member.mean(0), yerr=per_member.std(0), capsize=2, color="tab:blue",
           alpha=0.8)
    ax.set_xlabel("lag (months before the forecast month)")
    ax.set_ylabel("share of |IG| attribution")
    ax.set_title(f"IG over lags: {n} test months, {k} members", fontsize=8)
    ax.invert_xaxis()
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)


def fig_coverage_methods(run: Run, dest: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(3.4, 3.2))
    ax.plot([0.45, 1], [0.45, 1], "--", color="0.6", lw=0.8)
    for n, m in run.results["methods"].items():
        cc = m["coverage_curve"]
        line, = ax.plot(cc["nominal"], cc["empirical"], "o-", ms=3, label=f"{n}, conformal")
        ax.plot(cc["nominal"], cc["empirical_raw"], "s:", ms=2, color=line.get_color(),
                label=f"{n}, raw")
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("empirical coverage, 2001-2010")
    ax.legend(fontsize=6)
    ax.set_title("Coverage on the unseen decade")
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)


def campaign_table(run: Run) -> str:
    """Labels each strategy needs to reach the campaign's target, and the saving vs random."""
    a = run.results["acquisition"]
    order = a.get("order") or list(a["strategies"])
    s = (f"| strategy | labels to reach {a['metric']} {fmt(a['target'])} | per repeat | "
         f"saving vs random | final {a['metric']} (mean ± std, {a['labels'][-1]} labels) |\n"
         "|---|---|---|---|---|\n")  # fmt: skip
    for name in order:
        e = a["strategies"][name]
        reach = e["labels_to_target"]
        per = ", ".join("—" if v is None else f"{v:.0f}" for v in e["labels_to_target_per_repeat"])
        saving = e["saving_vs_random"]
        if name == "random":
            saving_text = "reference"
        elif saving is None:
            saving_text = "—"
        else:
            saving_text = ("≥ " if e["saving_is_lower_bound"] else "") + f"{saving:.2f}×"
        s += (f"| {name} | {'not reached' if reach is None else f'{reach:.0f}'} | {per} | "
              f"{saving_text} | {fmt(e['mean'][-1])} ± {fmt(e['std'][-1])} |\n")  # fmt: skip
    return s


def climate_campaign(run: Run, figs: Path | None) -> None:
    a = run.results["acquisition"]
    print(run_info(run), "\n")
    print(f"campaign: {a['initial']} random labels + {a['rounds']} rounds of {a['step']}, "
          f"{a['repeats']} repeats, {a['method']} trained {a['epochs']} epochs per round, pool "
          f"{a['pool_size']}, test {a['test_size']}, target {a['metric']} {fmt(a['target'])} "
          f"({a['target_source']}), campaign {a.get('time_s', 0):.0f} s\n")  # fmt: skip
    print(campaign_table(run))
    rows = [("full training split (1800 labels)", run.results["metrics"])]
    print(metric_table(rows, ["accuracy", "nll", "brier", "ece"]))
    if figs:
        save_report_image(run, f"Learning curves of {a['metric']}", figs / "learning_curves.png")
        save_report_image(run, "Reliability diagram", figs / "reliability.png")


CASES = {
    "climate_extreme_weather": climate,
    "climate_labeling_campaign": climate_campaign,
    "cosmology_parameters": cosmology,
    "hep_jet_images": hep,
    "enso_forecasting": enso,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--figures", action="store_true")
    a = ap.parse_args()
    out = a.out or Path("reports/paper_examples") / a.case
    figs = None
    if a.figures:
        figs = HERE / a.case / "figures"
        figs.mkdir(parents=True, exist_ok=True)
    CASES[a.case](Run(out), figs)


if __name__ == "__main__":
    main()
