import os
import subprocess
import sys
from pathlib import Path

import pytest

MPIEXEC = Path(sys.executable).parent / "mpiexec"


@pytest.fixture
def mpirun():
    """Run ``python -c CODE`` (or a module) under a real ``mpiexec -n P``, with a hard timeout."""
    if not MPIEXEC.exists():
        pytest.skip("mpiexec not found next to the interpreter (install the mpich wheel)")

    def run(
        n: int, *args: str, timeout: float = 120, cwd: Path | None = None
    ) -> subprocess.CompletedProcess:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
        return subprocess.run(
            [str(MPIEXEC), "-n", str(n), sys.executable, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=cwd,
        )

    return run
