import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from trustml.distributed import (
    MemberCheckpoints,
    SerialComm,
    block_range,
    get_comm,
    greedy_owners,
    run_key,
    shard_batches,
)


@given(n=st.integers(0, 200), size=st.integers(1, 17))
def test_blocks_partition_and_balance(n, size):
    blocks = [block_range(n, size, r) for r in range(size)]
    assert [i for b in blocks for i in b] == list(range(n))
    lengths = [len(b) for b in blocks]
    assert max(lengths) - min(lengths) <= 1


@given(n=st.integers(0, 300), batch=st.integers(1, 64), size=st.integers(1, 5))
def test_batch_shards_partition_on_batch_boundaries(n, batch, size):
    idx = np.arange(n) * 3
    shards = [shard_batches(idx, batch, size, r) for r in range(size)]
    np.testing.assert_array_equal(np.concatenate(shards) if shards else idx, idx)
    offset = 0
    for s in shards[:-1]:
        offset += len(s)
        assert offset % batch == 0 or offset == n


def test_serial_comm_is_the_default_outside_mpi(monkeypatch):
    for var in (
        "PMI_SIZE",
        "PMIX_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "MV2_COMM_WORLD_SIZE",
        "TRUSTML_MPI",
    ):
        monkeypatch.delenv(var, raising=False)
    comm = get_comm()
    assert isinstance(comm, SerialComm)
    assert comm.allgather(3) == [3] and comm.bcast("x") == "x"


def test_checkpoints_round_trip_and_reject_foreign_or_truncated(tmp_path):
    store = MemberCheckpoints(tmp_path / "ck", key=run_key({"seed": 1}))
    state = {"weights": {"w": torch.arange(6.0).reshape(2, 3)}, "loss": [0.5, 0.25]}
    store.save(3, state)
    back = store.load(3)
    assert torch.equal(back["weights"]["w"], state["weights"]["w"]) and back["loss"] == [0.5, 0.25]
    assert store.finished(range(5)) == [3]
    other = MemberCheckpoints(tmp_path / "ck", key=run_key({"seed": 2}))
    assert other.load(3) is None
    path = tmp_path / "ck" / "member-00003.pt"
    path.write_bytes(path.read_bytes()[:20])
    assert store.load(3) is None
    assert not list((tmp_path / "ck").glob(".*"))  # no temporary files left behind


@pytest.mark.mpi
def test_collectives_under_mpiexec(mpirun):
    code = (
        "from trustml.distributed import get_comm\n"
        "c = get_comm()\n"
        "assert c.size == 2, c\n"
        "got = c.allgather(c.rank * 10)\n"
        "assert got == [0, 10], got\n"
        "assert c.bcast('hello' if c.rank == 0 else None) == 'hello'\n"
        "g = c.gather(c.rank)\n"
        "assert (g == [0, 1]) if c.rank == 0 else g is None\n"
        "lines = c.gather(f'ok {c.rank} {c.local_rank}')\n"
        "if c.rank == 0:\n"
        "    print('\\n'.join(lines))  # one writer: two ranks' stdout would interleave\n"
    )
    out = mpirun(2, "-c", code, timeout=120)
    assert out.returncode == 0, out.stderr
    assert sorted(line for line in out.stdout.splitlines() if line.startswith("ok")) == [
        "ok 0 0",
        "ok 1 1",
    ]


@pytest.mark.mpi
def test_an_error_on_rank_1_aborts_every_rank_promptly(mpirun):
    code = (
        "import time\n"
        "from trustml.distributed import abort_on_error, get_comm\n"
        "c = get_comm()\n"
        "with abort_on_error(c):\n"
        "    if c.rank == 1:\n"
        "        raise ValueError('bad shard on rank 1')\n"
        "    c.barrier()  # rank 0 would wait here forever without the abort\n"
        "    time.sleep(60)\n"
    )
    out = mpirun(2, "-c", code, timeout=60)
    assert out.returncode != 0
    assert "rank 1 of 2 failed: ValueError: bad shard on rank 1" in out.stderr


@given(
    weights=st.lists(st.floats(0.0, 10.0, allow_nan=False), max_size=40),
    size=st.integers(1, 6),
)
def test_greedy_owners_balance_within_one_item(weights, size):
    owners = greedy_owners(weights, size)
    assert len(owners) == len(weights) and all(0 <= r < size for r in owners)
    load = [sum(w for w, r in zip(weights, owners, strict=True) if r == k) for k in range(size)]
    # Each item went to the least-loaded rank, so no rank ends more than one item ahead.
    assert max(load) - min(load) <= max(weights, default=0.0) + 1e-9


def test_greedy_owners_load_the_preloaded_rank_last():
    # rank 0 starts 0.5 ahead: the heavy item goes to rank 1, ties go to the highest rank.
    assert greedy_owners([3, 1, 1, 1, 1, 1, 1], 2, preload=[0.5, 0]) == [1, 0, 0, 0, 1, 0, 1]
    assert greedy_owners([1, 1, 1], 3) == [2, 1, 0]
    with pytest.raises(ValueError, match="preload"):
        greedy_owners([1], 2, preload=[0.0])
