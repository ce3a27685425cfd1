"""1 and 2 MPI ranks run the same search: the same trials, members and numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

MPIEXEC = Path(sys.executable).parent / "mpiexec"

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from conftest import OPTIONS, SPACE, make_build, strip_times
    from trustml.data import load_builtin
    from trustml.distributed import get_comm
    from trustml.search import EnsembleSearch

    ds = load_builtin("cosmology2d", n=120, size=8, seed=0)
    train, val, test = ds.subset(range(72)), ds.subset(range(72, 104)), ds.subset(range(104, 120))
    comm = get_comm()
    options = {{**OPTIONS, "trials": 8, "generation": 4}}
    est = EnsembleSearch(make_build(train), SPACE, folder=sys.argv[1], comm=comm, **options)
    est.fit(train, val)
    pred = est.predict(test)
    trained = comm.allgather(est.trained_)
    if comm.rank == 0:
        out = {{"record": strip_times(est.record_), "means": pred.member_means.tolist(),
               "stds": pred.member_stds.tolist(), "trained": trained}}
        with open(sys.argv[2], "w") as f:
            json.dump(out, f)
    """
)


@pytest.mark.mpi
@pytest.mark.determinism
@pytest.mark.skipif(not MPIEXEC.exists(), reason="mpiexec not found next to the interpreter")
def test_one_and_two_ranks_give_the_same_search(tmp_path):
    script = tmp_path / "search.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    got = {}
    for n in (1, 2):
        out = tmp_path / f"out{n}.json"
        run = subprocess.run(
            [str(MPIEXEC), "-n", str(n), sys.executable, str(script), str(tmp_path / f"f{n}"), str(out)],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        got[n] = json.loads(out.read_text())
    assert got[2]["record"] == got[1]["record"]
    assert got[2]["means"] == got[1]["means"] and got[2]["stds"] == got[1]["stds"]
    # both ranks trained trials, and together every trial once
    assert all(got[2]["trained"]) and sorted(sum(got[2]["trained"], [])) == list(range(8))
