"""``method: laplace`` next to a deep ensemble: its cost on the quickstart model, its
calibration on digits.

    python -m benchmarks.laplace [--epochs N]

1. Quickstart (``protocols/quickstart.yaml``: cosmology2d, the CNN, its training settings and
   training split): one ``DeepEnsemble`` member's training against ``tm.Laplace`` (last layer,
   Kronecker GGN, marginal likelihood, GLM predictive, 50 draws). ``fit_time_ratio`` =
   Laplace's fit (which trains its MAP network exactly like one member) plus its prediction of
   the test split, over one member's training. ``posthoc_time_ratio`` leaves the MAP training
   out: the price of Laplace on top of a trained network.
2. Digits (``protocols/digits.yaml``: the same CNN, epochs and split for both methods): ECE,
   NLL and accuracy on the test split of the deep ensemble (4 members) and of Laplace.

Writes ``benchmarks/results/laplace.json``. One run each (the machine may be shared, so the
ratios are rough).
"""

from __future__ import annotations

import argparse
import copy
import os
import warnings
from pathlib import Path
from typing import Any

from benchmarks._harness import report

ROOT = Path(__file__).resolve().parents[1]
LAPLACE = {"method": "laplace", "subset_of_weights": "last_layer", "hessian": "kron"}


def _run(raw: dict[str, Any]) -> Any:
    from trustml.protocol import parse_protocol, run_protocol

    return run_protocol(parse_protocol(raw), "", write=False, progress=False).results


def _load(name: str, epochs: int | None) -> dict[str, Any]:
    import yaml

    raw = yaml.safe_load((ROOT / "protocols" / f"{name}.yaml").read_text())
    raw.pop("attribution", None)
    raw.pop("acceptance", None)
    raw["report"] = {}
    if epochs is not None:
        raw["uncertainty"]["train"]["epochs"] = epochs
    return raw


def quickstart(epochs: int | None) -> dict[str, Any]:
    import time

    import numpy as np

    from trustml.data import load_builtin, split_indices
    from trustml.models import build_model
    from trustml.uq import DeepEnsemble, Laplace

    raw = _load("quickstart", epochs)
    data, model, train = raw["data"], raw["model"], dict(raw["uncertainty"]["train"])
    ds = load_builtin(data["builtin"], seed=raw["seed"], **data["options"])
    parts = split_indices(len(ds), data["split"], seed=raw["seed"])
    x, y = ds.read(parts["train"])
    x_test, _ = ds.read(parts["test"])
    d = int(np.prod(ds.target_shape))

    def net(outputs: int) -> Any:
        return build_model(
            model["builtin"], input_shape=tuple(ds.input_shape), output_dim=outputs,
            **model["options"],
        )  # fmt: skip

    t0 = time.perf_counter()
    DeepEnsemble(net(2 * d), members=1, seed=0).fit(x, y, progress=False, **train)
    member = time.perf_counter() - t0
    t0 = time.perf_counter()
    la = Laplace(net(d), seed=0, **{k: v for k, v in LAPLACE.items() if k != "method"})
    la.fit(x, y, progress=False, **train)
    lap_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    la.predict(x_test)
    lap_predict = time.perf_counter() - t0
    return {
        "model": "quickstart cnn (cosmology2d 32x32, channels [16, 32], hidden 64)",
        "train_samples": len(x),
        "test_samples": len(x_test),
        "epochs": train["epochs"],
        "member_fit_s": round(member, 2),
        "laplace_fit_s": round(lap_fit, 2),
        "laplace_predict_s": round(lap_predict, 2),
        "fit_time_ratio": round((lap_fit + lap_predict) / member, 3),
        "posthoc_time_ratio": round((max(lap_fit - member, 0.0) + lap_predict) / member, 3),
        "prior_precision": round(la.tuning_["prior_precision"], 4),
        "sigma_noise": round(la.tuning_["sigma_noise"], 4),
    }


def digits(epochs: int | None) -> list[dict[str, Any]]:
    raw = _load("digits", epochs)
    ens = raw["uncertainty"]
    raw["uncertainty"] = [ens, {**LAPLACE, "train": copy.deepcopy(ens["train"])}]
    raw["metrics"] = ["accuracy", "nll", "ece", "brier"]
    res = _run(raw)
    rows = []
    for label, part in res.summary["methods"].items():
        m = part["metrics"]
        rows.append(
            {
                "dataset": "digits",
                "method": label,
                "members_or_draws": ens["members"] if label == "deep_ensemble" else 50,
                "accuracy": round(m["accuracy"]["value"], 4),
                "nll": round(m["nll"]["value"], 4),
                "ece": round(m["ece"]["value"], 4),
                "brier": round(m["brier"]["value"], 4),
                "fit_s": res.manifest["timings_s"][f"{label}.fit"],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="override both protocols'")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    load_before = os.getloadavg()[0]
    cost = quickstart(args.epochs)
    rows = digits(args.epochs)
    report(
        "laplace",
        rows,
        quickstart=cost,
        fit_time_ratio=cost["fit_time_ratio"],
        posthoc_time_ratio=cost["posthoc_time_ratio"],
        laplace_config=LAPLACE | {"prior_precision": "marglik", "pred": "glm", "samples": 50},
        load_average_1min={"before": load_before, "after": os.getloadavg()[0]},
    )


if __name__ == "__main__":
    main()
