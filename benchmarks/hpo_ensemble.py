"""Hyper-parameter search that builds the ensemble: lane-batched trials, and what the search buys.

    python -m benchmarks.hpo_ensemble [--trials 16] [--members 5] [--epochs 8] [--n 2048] [--repeats 3] [--generation 16]

On ``cosmology2d`` (split 60/20/20 into train, validation, test) a ``trustml.search``
``EnsembleSearch`` over learning rate, weight decay and the CNN's hidden width runs ``--trials``
trials, several at a time as lanes of the vectorized engine. The same trials (the record's
settings and seeds) are then trained one at a time, each as a plain single network
(``DeepEnsemble(vectorize=False)`` for one member: no padding lanes, one optimizer), and its
validation predictions made, as a search without lanes would. ``trials_speedup`` is trials per
minute lane-batched over one at a time; the lane-batched time includes everything the search
does (Optuna's proposals, validation predictions, selection).

Then the searched ensemble is compared on the test split with a default ensemble of the same
K (the model's default width, ``lr=1e-3``, no weight decay, the same epochs): Gaussian NLL and
CRPS of the mixture (mean and total std), with 95 % bootstrap CIs.

Targets (issue 18): ``trials_speedup >= 1.5`` on CPU; the searched ensemble no worse than the
default one. Writes ``benchmarks/results/hpo_ensemble.json``.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks._harness import report

SPACE = {
    "lr": {"log_uniform": [3e-4, 1e-2]},
    "weight_decay": {"log_uniform": [1e-6, 1e-3]},
    "hidden": {"choice": [32, 64]},
}


def _scores(pred: Any, y: np.ndarray, seed: int) -> dict[str, Any]:
    from trustml.metrics import bootstrap_ci, crps_gaussian, nll_gaussian

    out = {}
    for name, fn in (("nll", nll_gaussian), ("crps", crps_gaussian)):
        value = float(fn(pred.mean, pred.std, y))
        lo, hi = bootstrap_ci(fn, pred.mean, pred.std, y, n_boot=1000, seed=seed)
        out[name] = {"value": value, "ci": [float(lo), float(hi)]}
    return out


def run(
    trials: int,
    members: int,
    epochs: int,
    n: int,
    size: int,
    device: str,
    repeats: int,
    generation: int,
) -> None:
    import trustml.models as tmm
    from trustml.data import load_builtin, split_indices
    from trustml.search import EnsembleSearch
    from trustml.uq import DeepEnsemble

    ds = load_builtin("cosmology2d", seed=0, n=n, size=size)
    parts = split_indices(ds.n_samples, {"train": 0.6, "validation": 0.2, "test": 0.2}, seed=0)
    train, val, test = (ds.subset(parts[k]) for k in ("train", "validation", "test"))
    d = ds.target_shape[0]
    build = functools.partial(
        tmm.build_model, "cnn", input_shape=tuple(ds.input_shape), output_dim=2 * d,
        channels=(8, 16),
    )  # fmt: skip
    training = {"epochs": epochs, "batch_size": 64}

    def lanes() -> EnsembleSearch:
        with tempfile.TemporaryDirectory() as folder:
            return EnsembleSearch(
                build, SPACE, members=members, trials=trials, seed=0, training=training,
                folder=folder, device=device, progress=False, generation=generation,
            ).fit(train, val)  # fmt: skip

    def one_at_a_time(record: dict[str, Any]) -> None:
        """The record's trials, each a plain network (no lanes, no padding), with its
        validation predictions."""
        for t in record["trials"]:
            make = functools.partial(build, **t["model_options"])
            ens = DeepEnsemble(make, members=trials, seed=_trial_seed(0), device=device,
                               vectorize=False)  # fmt: skip
            tr = t["training"]
            part = ens._fit_members(
                [t["number"]], train, epochs=tr["epochs"], batch_size=tr["batch_size"],
                lr=tr["lr"], weight_decay=tr["weight_decay"], progress=False, nonfinite="stop",
            )  # fmt: skip
            one = DeepEnsemble(make, members=1, device=device, vectorize=False)
            one._assemble([{**part, "member_indices": [0]}]).predict(val)

    # Alternate the variants, so a busy spell on a shared machine hits them alike.
    t_lanes = t_single = float("inf")
    search = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        search = lanes()
        t_lanes = min(t_lanes, time.perf_counter() - t0)
        t0 = time.perf_counter()
        one_at_a_time(search.record_)
        t_single = min(t_single, time.perf_counter() - t0)
    assert search is not None
    record = search.record_

    default = DeepEnsemble(build, members=members, seed=0, device=device).fit(
        train, epochs=epochs, batch_size=64, lr=1e-3, progress=False
    )
    y = test.read(np.arange(test.n_samples))[1]
    searched_scores = _scores(search.predict(test), y, seed=1)
    default_scores = _scores(default.predict(test), y, seed=1)
    speedup = t_single / t_lanes
    rows = [
        {
            "variant": "lane-batched search",
            "trials": trials,
            "seconds": t_lanes,
            "trials_per_minute": 60 * trials / t_lanes,
        },
        {
            "variant": "one trial at a time",
            "trials": trials,
            "seconds": t_single,
            "trials_per_minute": 60 * trials / t_single,
        },
    ]
    quality = [
        {
            "ensemble": name,
            **{f"{m}": s[m]["value"] for m in s},
            **{f"{m}_ci": s[m]["ci"] for m in s},
        }
        for name, s in (("searched", searched_scores), ("default", default_scores))
    ]
    for row in quality:
        print(row)
    report(
        "hpo_ensemble",
        rows,
        trials_speedup=speedup,
        goal_trials_speedup=1.5,
        quality=quality,
        settings={
            "trials": trials, "members": members, "epochs": epochs, "n": n, "size": size,
            "device": device, "repeats": repeats, "generation": generation, "space": SPACE, "lane_groups": len(record["groups"]),
            "selection": record["selection"],
        },
    )  # fmt: skip


def _trial_seed(seed: int) -> Any:
    """The seed ``EnsembleSearch`` trains its trials from (trial i: its member i)."""
    from trustml.utils.seeding import as_seed_sequence, child

    return child(as_seed_sequence(seed), "search/trials")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--n", type=int, default=2048)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--generation", type=int, default=16, help="trials proposed (and laned) together")
    a = p.parse_args()
    run(a.trials, a.members, a.epochs, a.n, a.size, a.device, a.repeats, a.generation)


if __name__ == "__main__":
    main()
