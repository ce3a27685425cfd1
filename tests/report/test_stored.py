"""Arrays too large to load: written to arrays.h5 in blocks, loaded lazily, and read by the
report as a subsample of rows (the same page whether they were in memory or stored)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from _report_data import make_classification_results

from trustml.report import RunResults, rebuild_report, render_html
from trustml.report._stored import REPORT_ROWS, StoredArray, bounded_view, row_stride

N = 2 * REPORT_ROWS + 1234  # three rows in a stride, a partial last one


@pytest.fixture(scope="module")
def big():
    return make_classification_results(n_test=N)


def _stored(results: RunResults, path) -> RunResults:
    """``results`` with every array of ``N`` rows moved into the HDF5 file ``path``."""
    arrays = dict(results.arrays)
    with h5py.File(path, "w") as f:
        for key, value in results.arrays.items():
            if np.ndim(value) and len(value) == N:
                f.create_dataset(key, data=value)
    with h5py.File(path, "r") as f:
        moved = [k for k in arrays if k in f]
    for key in moved:
        arrays[key] = StoredArray(path, key)
    assert len(moved) >= 3  # labels and the methods' probabilities
    return RunResults(results.summary, arrays, results.manifest, results.protocol_text)


def test_view_reads_every_stride_th_row_of_large_arrays_only(tmp_path, big):
    stored = _stored(big, tmp_path / "src.h5")
    view = bounded_view(stored.arrays)
    s = row_stride(N)
    assert s == 3
    for key, value in big.arrays.items():
        if np.ndim(value) and len(value) == N:
            np.testing.assert_array_equal(view[key], value[::s])
            assert len(view[key]) <= REPORT_ROWS
        else:
            assert view[key] is value  # small arrays pass through untouched
    small = make_classification_results().arrays
    assert bounded_view(small) is small


@pytest.mark.slow
def test_stored_arrays_write_load_and_render_as_in_memory_ones(tmp_path, big):
    stored = _stored(big, tmp_path / "src.h5")
    page = render_html(big, outdir="OUT")
    assert "one test sample in 3 (" in page and f"of {N})" in page
    assert render_html(stored, outdir="OUT") == page  # the report cannot tell them apart
    out = stored.write(tmp_path / "run")
    with h5py.File(out / "arrays.h5", "r") as f:
        for key, value in big.arrays.items():
            np.testing.assert_array_equal(f[key][()], value, err_msg=key)
    loaded = RunResults.load(out)
    lazy = {k for k, v in loaded.arrays.items() if isinstance(v, StoredArray)}
    assert lazy == {k for k, v in stored.arrays.items() if isinstance(v, StoredArray)}
    written = render_html(stored.canonical(), outdir=str(tmp_path / "run"))
    assert (out / "report.html").read_text() == written
    rebuilt = rebuild_report(out)
    assert rebuilt.read_text() == (out / "report.html").read_text()
