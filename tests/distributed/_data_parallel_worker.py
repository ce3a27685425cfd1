"""Run under ``mpiexec -n 2``: train members in one data-parallel group of 2, save what each rank got.

    mpiexec -n 2 python tests/distributed/_data_parallel_worker.py OUTDIR

Each configuration trains 3 members for 3 epochs of minibatches of 16 on 65 samples: the last
minibatch of every epoch has 1 sample, so rank 1's share of it is empty. ``OUTDIR/rankR.pt``
holds, per configuration, the state dicts, the loss history and the engine of rank R.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from trustml.distributed import data_groups, free_group, get_comm
from trustml.models import build_model
from trustml.uq import DataShare, DeepEnsemble

N, BATCH, EPOCHS, MEMBERS, SEED = 65, 16, 3, 3, 11


def data(n: int = N) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    y = (x[:, :2] @ np.array([1.0, -2.0]) + 0.1 * rng.normal(size=n)).astype(np.float32)
    return x, y[:, None]


def grouped_mlp() -> nn.Module:
    return build_model("mlp", input_shape=(6,), output_dim=2, hidden=(16,), dropout=0.2)


class PlainMLP(nn.Module):
    """A model class of its own (no grouped forward): the vmap engine, or the loop."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.drop, self.b = nn.Linear(6, 16), nn.Dropout(0.2), nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.drop(torch.tanh(self.a(x))))


def batchnorm_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 2))


#: name -> (model factory, vectorize, samples). BatchNorm needs 2+ samples per share: 68
#: samples end every epoch with a minibatch of 4 (shares of 2).
CONFIGS = {
    "grouped": (grouped_mlp, "auto", N),
    "vmap": (PlainMLP, "auto", N),
    "loop": (PlainMLP, False, N),
    "batchnorm": (batchnorm_mlp, False, 68),
}


def fit(name: str, group: object = None) -> dict:
    make, vectorize, n = CONFIGS[name]
    x, y = data(n)
    ens = DeepEnsemble(make, members=MEMBERS, task="regression", seed=SEED, vectorize=vectorize)
    part = ens._fit_members(
        range(MEMBERS), x, y, epochs=EPOCHS, batch_size=BATCH, progress=False, group=group
    )
    return {"state": part["state_dicts"], "history": part["history"], "engine": part["engine"]}


def main(out: Path) -> None:
    comm = get_comm()
    assert comm.size == 2, comm.size
    got = {}
    for backend in ("mpi", "torch"):
        for name in CONFIGS if backend == "mpi" else ("grouped",):
            _, _, group = data_groups(comm, 2, allreduce=backend, share=DataShare)
            assert group is not None and group.size == 2 and group.rank == comm.rank
            got[f"{name}/{backend}"] = fit(name, group)
            free_group(group)
    torch.save(got, out / f"rank{comm.rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
