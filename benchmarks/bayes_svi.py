"""One SVI step of ``tm.BayesianNN`` vs one plain optimizer step of the same network.

    python -m benchmarks.bayes_svi [--steps 30] [--repeats 5] [--device cpu]

Networks: the MLP 100 -> 256 -> 256 -> 2 (a regression head: mean and raw scale) at batch 512,
and the tiny 10 -> 50 -> 2, where per-step overhead dominates. The plain step is Adam (fused kernel
where available, as in ``fit``) on the Gaussian NLL of one minibatch. The SVI steps are those ``BayesianNN.fit`` takes (Adam on the
negative ELBO, likelihood scaled by N / batch): with the engine ``fit`` picks (``auto``), with
Pyro's own ``TraceMeanField_ELBO`` in the same loop (``pyro``), and, for reference, stock
``pyro.infer.SVI`` (``AutoNormal``, ``Trace_ELBO``, ``pyro.optim.Adam``). Steps of all
variants are timed in turns and the best of ``--repeats`` rounds is kept, which tames other
processes on a shared machine. Writes ``benchmarks/results/bayes_svi.json``.

Target (issue 4): ``overhead_x = plain / svi <= 3.0`` on a CPU for the MLP.
"""

from __future__ import annotations

import argparse
import copy
import os
import time
import warnings
from collections.abc import Callable
from typing import Any

from benchmarks._harness import report

NETWORKS = {"mlp 100-256-256-2": (100, 256, 256, 2), "tiny 10-50-2": (10, 50, 2)}


def _per_step(step: Callable[[], Any], steps: int, sync: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - t0) / steps


def _stepper(bnn: Any, optim: Any, batch: tuple, n: int, step: Callable) -> Callable[[], Any]:
    """One ``fit`` step of ``bnn`` (its engine's loss, Adam) on ``batch`` out of ``n``."""
    return lambda: step(bnn._svi_loss, optim, batch, n)


def _case(name: str, sizes: tuple[int, ...], batch: int, steps: int, repeats: int, device: str):
    import numpy as np
    import pyro
    import torch
    from torch import nn

    from trustml.uq import BayesianNN
    from trustml.uq._bayes_svi import adam, scoped, svi_step
    from trustml.uq._heads import HeadSpec

    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    net = nn.Sequential(*layers[:-1])
    n = batch * 8
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, sizes[0])).astype(np.float32)
    y = (x[:, :1] + 0.1 * rng.normal(size=(n, 1))).astype(np.float32)
    dev = torch.device(device)
    xb, yb = torch.as_tensor(x[:batch], device=dev), torch.as_tensor(y[:batch], device=dev)
    idx = torch.arange(batch, device=dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    plain = copy.deepcopy(net).to(dev)
    optim = adam(list(plain.parameters()), 1e-3)  # the same optimizer as the SVI steps
    head = HeadSpec("regression", 1, True)

    def plain_step() -> None:
        loss = head.loss_sums(plain(xb)[None], yb[None])[0] / batch
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()

    steppers: dict[str, Callable[[], Any]] = {}
    fitted = {}
    for engine in ("auto", "pyro"):
        bnn = BayesianNN(net, seed=0, device=device)
        bnn.fit(x, y, epochs=1, batch_size=batch, engine=engine, progress=False)
        fitted[engine] = bnn
        steppers[engine] = _stepper(bnn, adam(bnn._svi_params, 1e-3), (xb, yb, idx), n, svi_step)
    stock_store: dict = {"params": {}, "constraints": {}}
    model = fitted["pyro"].pyro_model_
    with scoped(stock_store):
        guide = pyro.infer.autoguide.AutoNormal(model, init_scale=0.01)
        svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), pyro.infer.Trace_ELBO())
        svi.step(xb, yb, idx, size=n)

    def stock_step() -> None:
        svi.step(xb, yb, idx, size=n)

    best = {k: float("inf") for k in ("plain", "auto", "pyro", "stock")}
    for _ in range(repeats):  # in turns, so a busy moment hits every variant alike
        best["plain"] = min(best["plain"], _per_step(plain_step, steps, sync))
        for engine in ("auto", "pyro"):
            with scoped(fitted[engine]._store):
                best[engine] = min(best[engine], _per_step(steppers[engine], steps, sync))
        with scoped(stock_store):
            best["stock"] = min(best["stock"], _per_step(stock_step, steps, sync))
    labels = {
        "auto": f"BayesianNN ({fitted['auto'].svi_engine_})",
        "pyro": "BayesianNN (pyro: TraceMeanField_ELBO)",
        "stock": "pyro.infer.SVI (Trace_ELBO)",
    }
    rows = []
    for key, label in labels.items():
        rows.append(
            {
                "network": name,
                "svi": label,
                "batch": batch,
                "device": device,
                "plain_steps_per_s": round(1.0 / best["plain"], 1),
                "svi_steps_per_s": round(1.0 / best[key], 1),
                "overhead_x": round(best[key] / best["plain"], 2),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", FutureWarning)
    load_before = os.getloadavg()[0]
    rows = []
    for name, sizes in NETWORKS.items():
        rows += _case(name, sizes, args.batch_size, args.steps, args.repeats, args.device)
    head = rows[0]  # the MLP with the engine BayesianNN.fit picks
    report(
        "bayes_svi",
        rows,
        device=head["device"],
        plain_steps_per_s=head["plain_steps_per_s"],
        svi_steps_per_s=head["svi_steps_per_s"],
        overhead_x=head["overhead_x"],
        target={"cpu_overhead_x_max": 3.0},
        load_average_1min={"before": load_before, "after": os.getloadavg()[0]},
    )


if __name__ == "__main__":
    main()
