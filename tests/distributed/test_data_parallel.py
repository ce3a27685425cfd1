"""Data parallelism inside a member (``parallel: {data: D}``), under a real ``mpiexec -n 2``.

A group of 2 ranks trains members on halves of every minibatch and averages the gradients; the
members equal those one process trains on whole minibatches, to float rounding (the global
batches are the same sets of samples). Both ranks end with the same bits, with either
all-reduce engine (MPI or torch.distributed/gloo). A protocol's layout (P, D, seed)
reproduces its results.json exactly, and D = 1 and D = 2 agree within the bootstrap intervals.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from trustml.distributed import SerialComm, data_groups
from trustml.exceptions import ProtocolError
from trustml.protocol import parse_protocol
from trustml.protocol._parallel import check_data_parallel

HERE = Path(__file__).resolve().parent
MPIEXEC = Path(sys.executable).parent / "mpiexec"
sys.path.insert(0, str(HERE))
import _data_parallel_worker as worker  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _mpi(n: int, *args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    if not MPIEXEC.exists():
        pytest.skip("mpiexec not found next to the interpreter (install the mpich wheel)")
    cmd = [str(MPIEXEC), "-n", str(n), sys.executable, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ENV, cwd=cwd)


# -- members trained by a group of two ranks --------------------------------------------------


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """What each rank of ``mpiexec -n 2`` trained, per configuration (see the worker)."""
    out = tmp_path_factory.mktemp("data_parallel")
    done = _mpi(2, str(HERE / "_data_parallel_worker.py"), str(out), cwd=out)
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


@pytest.fixture(scope="module")
def alone():
    """The same members trained by one process on whole minibatches (one thread, as a rank)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return {name: worker.fit(name) for name in worker.CONFIGS}
    finally:
        torch.set_num_threads(threads)


def _states_equal(a: list[dict], b: list[dict]) -> bool:
    return all(torch.equal(sa[n], sb[n]) for sa, sb in zip(a, b, strict=True) for n in sa)


@pytest.mark.mpi
@pytest.mark.determinism
@pytest.mark.parametrize(
    "key", ["grouped/mpi", "vmap/mpi", "loop/mpi", "batchnorm/mpi", "grouped/torch"]
)
def test_the_ranks_of_a_group_end_with_the_same_bits(ranks, key):
    r0, r1 = ranks[0][key], ranks[1][key]
    assert _states_equal(r0["state"], r1["state"])
    assert r0["history"] == r1["history"]  # the loss sums are added over the group


@pytest.mark.mpi
@pytest.mark.parametrize(
    "name,engine", [("grouped", "grouped"), ("vmap", "vmap"), ("loop", "loop")]
)
def test_a_group_of_two_trains_the_members_one_rank_trains(ranks, alone, name, engine):
    # Dropout (p = 0.2) draws its masks by global sample index and the last minibatch of every
    # epoch (1 sample) leaves rank 1 an empty share: a mask offset or a gradient weighting
    # that ignored either would move the weights by far more than rounding.
    got, ref = ranks[0][f"{name}/mpi"], alone[name]
    assert got["engine"] == ref["engine"] == engine
    for k, (sg, sr) in enumerate(zip(got["state"], ref["state"], strict=True)):
        for n, t in sr.items():
            torch.testing.assert_close(sg[n], t, rtol=1e-5, atol=1e-6, msg=f"member {k} {n}")
    for lg, lr in zip(got["history"]["loss"], ref["history"]["loss"], strict=True):
        assert lg == pytest.approx(lr, rel=1e-6)
        assert len(lg) == worker.EPOCHS


@pytest.mark.mpi
@pytest.mark.determinism
def test_mpi_and_torch_distributed_average_to_the_same_bits(ranks):
    # Two ranks: each engine adds the same two float32 numbers per element.
    assert _states_equal(ranks[0]["grouped/mpi"]["state"], ranks[0]["grouped/torch"]["state"])


@pytest.mark.mpi
def test_batchnorm_running_statistics_are_averaged_over_the_group(ranks, alone):
    got = ranks[0]["batchnorm/mpi"]["state"]
    steps = worker.EPOCHS * -(-68 // worker.BATCH)
    for k, state in enumerate(got):
        # Every step updates the statistics once on every rank; the group keeps one count.
        assert int(state["1.num_batches_tracked"]) == steps
        # Each share is normalised with its own statistics (as DDP without SyncBatchNorm), so
        # the members differ from one process's, but they did train.
        assert not torch.equal(state["1.running_mean"], torch.zeros(16))
        assert not torch.equal(state["0.weight"], alone["batchnorm"]["state"][k]["0.weight"])


# -- the communicator split -------------------------------------------------------------------


def test_one_process_is_its_own_group():
    comm = SerialComm()
    assert comm.split(color=3, key=0) is comm
    assert data_groups(comm, 1) == (1, 0, None)
    with pytest.raises(ValueError, match="multiple of the data-parallel group size"):
        data_groups(comm, 2)
    with pytest.raises(ValueError, match="allreduce"):
        data_groups(comm, 1, allreduce="nccl-ish")


# -- the protocol key -------------------------------------------------------------------------

PROTOCOL = {
    "trustml": 1,
    "name": "dp",
    "seed": 21,
    "device": "cpu",
    "parallel": {"data": 2},
    "data": {"builtin": "cosmology2d", "options": {"n": 300, "size": 16}},
    "task": "regression",
    "model": {"builtin": "cnn", "options": {"channels": [4, 8], "hidden": 16, "dropout": 0.1}},
    # 3 members, one group: every member is trained on halves of every batch.
    "uncertainty": {"members": 3, "train": {"epochs": 2, "batch_size": 32}},
    "calibration": {"method": "conformal", "alpha": 0.2},
    "metrics": ["rmse", "nll", "crps", "coverage"],
}


def _error(raw: dict) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_protocol(raw)
    return info.value


def test_parallel_data_defaults_to_one_and_is_validated():
    assert parse_protocol({k: v for k, v in PROTOCOL.items() if k != "parallel"}).parallel.data == 1
    assert parse_protocol(PROTOCOL).parallel.data == 2
    for bad in (0, -2, 1.5, True, "2"):
        assert "parallel.data" in str(_error({**PROTOCOL, "parallel": {"data": bad}}))
    assert "parallel.daat" in str(_error({**PROTOCOL, "parallel": {"daat": 2}}))


def test_data_parallelism_is_refused_where_nothing_would_use_it():
    mc = {"method": "mc_dropout", "samples": 4, "train": {"epochs": 1}}
    err = _error({**PROTOCOL, "uncertainty": [PROTOCOL["uncertainty"], mc]})
    assert err.key == "parallel.data" and "uncertainty[1] is mc_dropout" in str(err)
    search = {"members": 2, "search": {"trials": 2, "space": {"lr": {"log_uniform": [1e-4, 1e-2]}}}}
    split = {"train": 0.6, "validation": 0.1, "calibration": 0.15, "test": 0.15}
    err = _error({**PROTOCOL, "data": {**PROTOCOL["data"], "split": split}, "uncertainty": search})
    assert err.key == "parallel.data" and "search" in str(err)
    # ... and allowed again with one rank per group.
    parse_protocol(
        {**PROTOCOL, "uncertainty": [PROTOCOL["uncertainty"], mc], "parallel": {"data": 1}}
    )


def test_the_group_size_must_divide_the_ranks():
    check_data_parallel(1, SerialComm().size)
    with pytest.raises(ProtocolError) as info:
        check_data_parallel(2, SerialComm().size)
    assert info.value.key == "parallel.data" and "this run has 1" in str(info.value)


def test_one_process_with_groups_of_two_exits_2_naming_the_key(tmp_path):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(PROTOCOL))
    done = subprocess.run(
        [sys.executable, "-m", "trustml.cli", "evaluate", "p.yaml", "--out", "out", "--quiet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=ENV,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("trustml: error")]
    assert len(errors) == 1 and "parallel.data" in errors[0]
    assert not (tmp_path / "out").exists()  # refused while planning: nothing written


def _evaluate(tmp_path: Path, raw: dict, out: str) -> dict:
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(raw))
    done = _mpi(
        2, "-m", "trustml.cli", "evaluate", str(path), "--out", out, "--quiet", cwd=tmp_path
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return json.loads((tmp_path / out / "results.json").read_text())


@pytest.mark.mpi
@pytest.mark.slow
def test_a_layout_reproduces_its_results_and_another_d_agrees_within_the_intervals(tmp_path):
    first = _evaluate(tmp_path, PROTOCOL, "d2a")
    again = _evaluate(tmp_path, PROTOCOL, "d2b")
    assert again == first  # P = 2, D = 2, seed 21: every number, bit for bit
    # The group's first rank checkpointed every member (the group trained all three).
    stored = sorted(p.name for p in (tmp_path / "d2a" / "checkpoints" / "deep_ensemble").iterdir())
    assert stored == ["member-00000.pt", "member-00001.pt", "member-00002.pt"]

    one = _evaluate(tmp_path, {**PROTOCOL, "parallel": {"data": 1}}, "d1")
    assert set(one["metrics"]) == set(first["metrics"]) == set(PROTOCOL["metrics"])
    for name, d2 in first["metrics"].items():
        d1 = one["metrics"][name]
        assert d2["ci"][0] <= d1["value"] <= d2["ci"][1], name
        assert d1["ci"][0] <= d2["value"] <= d1["ci"][1], name
        # The same global batches: the difference is rounding, far inside the intervals.
        assert d1["value"] == pytest.approx(d2["value"], rel=1e-4, abs=1e-6), name
