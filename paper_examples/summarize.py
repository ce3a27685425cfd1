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


# -- per case ---------------------------------------------------------------------------------
def climate(run: Run, figs: Path | None) -> None:
    r = run.results
    print(run_info(run), "\n")
    rows = [("test, present climate (600)", r["metrics"])]
    for name, s in r["shifts"].items():
        rows.append((f"test, {name} ({s['n']})", s["metrics"]))
    rows.append(("class-frequency reference", r["reference"]["class_frequency"]["metrics"]))
    print(metric_table(rows, ["accuracy", "nll", "brier", "ece"]))
    p_raw, y = run.arr("test/probs_raw"), run.arr("test/labels")
    print(f"ECE before temperature scaling: {ece_of(p_raw, y):.4f} (15 bins, recomputed from "
          f"arrays.h5 test/probs_raw); temperature {r['calibration']['temperature']:.3f}")
    for name, s in r["shifts"].items():
        print(f"mean entropy test {r['methods'][next(iter(r['methods']))]['uncertainty']['mean_entropy']:.4f}"
              f" vs {name} {s['mean_entropy']:.4f}; MI {s['mean_mutual_information']:.4f}")
    for key, lab in [("test", "present climate")] + [(f"shifts/{n}", n) for n in r["shifts"]]:
        p, yy = run.arr(f"{key}/probs"), run.arr(f"{key}/labels")
        pred = p.argmax(1)
        print(f"{lab}: cyclone recall {np.mean(pred[yy == 1] == 1):.3f}, false-alarm rate "
              f"{np.mean(pred[yy == 0] == 1):.3f}, mean p(cyclone) {p[:, 1].mean():.3f} vs "
              f"cyclone fraction {np.mean(yy == 1):.3f}")
    print()
    print(checks_table(run))
    print(acceptance_table(run))
    if figs:
        fig_binary_reliability(
            run,
            [("present climate", "test/probs", "test/labels")]
            + [(n, f"shifts/{n}/probs", f"shifts/{n}/labels") for n in r["shifts"]],
            figs / "reliability_shift.png", "Temperature-scaled ensemble",
        )
        save_report_image(run, "Uncertainty under distribution shift", figs / "entropy_shift.png")
        fig_attribution_maps(run, figs / "attribution_cyclones.png",
                             ["sea-level pressure", "wind speed", "precipitable water"], target=1,
                             title="IG for the predicted class 'cyclone' (green: cyclone mask r <= 2R)")
        save_report_image(run, "integrated_gradients: check curves", figs / "randomization.png")


def hep(run: Run, figs: Path | None) -> None:
    r = run.results
    print(run_info(run), "\n")
    rows = []
    for name, m in r["methods"].items():
        rows.append((f"{name} ({m['method']})", m["metrics"]))
    for name, s in r["shifts"].items():
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
                 for n in r["shifts"]]
        fig_binary_reliability(run, sets, figs / "reliability.png", "Temperature-scaled taggers")
        fig_attribution_maps(run, figs / "attribution_second_prong.png",
                             ["ECAL", "HCAL", "tracks"], crop=6, total_input=True, target=1, saturate=4,
                             title="IG for the boson class on boson jets, central 1.5 x 1.5 in "
                                   "(eta, phi)\n(green: dR < 0.2 around the second prong)")
        fig_localization(run, figs / "localization.png", "boson-jet")


def cosmology(run: Run, figs: Path | None) -> None:
    r = run.results
    names = r["data"]["target_names"]
    print(run_info(run), "\n")
    print(metric_table([("ensemble + conformal, test", r["metrics"]),
                        ("climatology reference", r["reference"]["climatology"]["metrics"])]
                       + [(f"shift {n} ({s['n']})", s["metrics"]) for n, s in r["shifts"].items()],
                       ["rmse", "crps", "nll", "coverage", "interval_width"]))
    cc = r["coverage_curve"]
    print("| nominal | " + " | ".join(f"{v:.2f}" for v in cc["nominal"]) + " |")
    print("|---|" + "---|" * len(cc["nominal"]))
    print("| empirical, raw ensemble | " + " | ".join(f"{v:.3f}" for v in cc["empirical_raw"]) + " |")
    print("| empirical, conformal | " + " | ".join(f"{v:.3f}" for v in cc["empirical"]) + " |")
    # per-target coverage at the calibrated level
    y = run.arr("test/targets")
    lo, hi = run.arr("test/lower"), run.arr("test/upper")
    cov = ((y >= lo) & (y <= hi)).mean(axis=0)
    print("\nper-target 90 % coverage (test):", {n: round(float(c), 3) for n, c in zip(names, cov, strict=False)})
    ev = run.arr("test/epistemic_var")
    print("in-distribution mean epistemic var per target:",
          {n: float(v) for n, v in zip(names, ev.mean(axis=0), strict=False)}, "overall", float(ev.mean()))
    for n, s in r["shifts"].items():
        yy = run.arr(f"shifts/{n}/targets")
        l2, h2 = run.arr(f"shifts/{n}/lower"), run.arr(f"shifts/{n}/upper")
        ev2 = run.arr(f"shifts/{n}/epistemic_var")
        print(f"shift {n}: mean_epistemic_var {s['mean_epistemic_var']:.4g} ratio "
              f"{s['mean_epistemic_var'] / float(ev.mean()):.2f}; per-target ratio "
              f"{ {k: round(float(a / b), 2) for k, a, b in zip(names, ev2.mean(0), ev.mean(0), strict=False)} }; "
              f"per-target coverage { {k: round(float(c), 3) for k, c in zip(names, ((yy >= l2) & (yy <= h2)).mean(0), strict=False)} }; "
              f"mean std {s['mean_std']:.4g}")
    print()
    print(checks_table(run))
    print(acceptance_table(run))
    if figs:
        fig_coverage(run, figs / "coverage_curve.png")
        fig_epistemic(run, figs / "epistemic_vs_parameters.png")
        fig_pred_vs_true(run, figs / "predicted_vs_true.png")


def fig_coverage(run: Run, dest: Path) -> None:
    plt = _plt()
    cc = run.results["coverage_curve"]
    fig, ax = plt.subplots(figsize=(3.4, 3.2))
    ax.plot([0.45, 1], [0.45, 1], "--", color="0.6", lw=0.8)
    ax.plot(cc["nominal"], cc["empirical_raw"], "s-", ms=3, label="raw ensemble")
    ax.plot(cc["nominal"], cc["empirical"], "o-", ms=3, label="conformal")
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("empirical coverage (test)")
    ax.legend(fontsize=7)
    ax.set_title("Central-interval coverage")
    fig.tight_layout()
    fig.savefig(dest, dpi=110)
    plt.close(fig)


def fig_epistemic(run: Run, dest: Path) -> None:
    plt = _plt()
    names = run.results["data"]["target_names"]
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 2.9))
    sets = [("test (in prior)", "test")] + [(n, f"shifts/{n}") for n in run.results["shifts"]]
    for j, (ax, name) in enumerate(zip(axes, names, strict=False)):
        for label, key in sets:
            y = run.arr(f"{key}/targets")[:, j]
            ev = run.arr(f"{key}/epistemic_var")[:, j]
            ax.scatter(y, ev, s=5, alpha=0.6, label=label)
        ax.set_yscale("log")
        ax.set_xlabel(f"true {name}")
        ax.set_ylabel(f"epistemic variance of {name}")
    axes[0].legend(fontsize=6)
    fig.suptitle("Ensemble disagreement inside and outside the training prior", fontsize=8)
    fig.tight_layout()
    fig.savefig(dest, dpi=100)
    plt.close(fig)


def fig_pred_vs_true(run: Run, dest: Path) -> None:
    plt = _plt()
    names = run.results["data"]["target_names"]
    fig, axes = plt.subplots(1, 2, figsize=(6.4, 3.0))
    sets = [("test (in prior)", "test")] + [(n, f"shifts/{n}") for n in run.results["shifts"]]
    for j, (ax, name) in enumerate(zip(axes, names, strict=False)):
        for label, key in sets:
            y = run.arr(f"{key}/targets")[:, j]
            m, lo, hi = (run.arr(f"{key}/{q}")[:, j] for q in ("mean", "lower", "upper"))
            ax.errorbar(y, m, yerr=[m - lo, hi - m], fmt="o", ms=2, lw=0.4, alpha=0.6, label=label)
        lims = ax.get_xlim()
        ax.plot(lims, lims, "--", color="0.4", lw=0.8)
        ax.set_xlabel(f"true {name}")
        ax.set_ylabel(f"predicted {name} (90 % conformal)")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(dest, dpi=100)
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
