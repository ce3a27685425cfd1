"""HDF5Dataset: round trips, fingerprints, every construction error, ranks and processes."""

from __future__ import annotations

import pickle

import h5py
import numpy as np
import pytest
import torch

from trustml.data import ArrayDataset, DataError, HDF5Dataset, export_builtin, load_builtin


def _one_line_error(excinfo: pytest.ExceptionInfo[DataError], *parts: str) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    for part in parts:
        assert part in msg, msg
    return msg


# -- round trip and fingerprints ------------------------------------------------------------
def test_export_round_trip_matches_builtin(tmp_path):
    mem = load_builtin("cosmology2d", seed=3, n=64, size=16)
    path = export_builtin("cosmology2d", tmp_path / "sub" / "c.h5", seed=3, n=64, size=16)
    ds = HDF5Dataset(path)
    x_mem, y_mem = mem.read(np.arange(64))
    x, y = ds.read(np.arange(64))
    np.testing.assert_array_equal(x, x_mem)
    np.testing.assert_array_equal(y, y_mem)
    assert ds.fingerprint() == mem.fingerprint()
    assert (ds.input_shape, ds.target_shape, ds.task_hint) == ((1, 16, 16), (2,), "regression")
    assert ds.target_names == ["log_A", "n"] and ds.layout == "NCHW"
    assert ds.source == f"hdf5:{path}"
    with h5py.File(path) as f:
        assert list(f["x"].attrs["dims"]) == ["sample", "channel", "y", "x"]
        assert "description" in f["y"].attrs and f.attrs["builtin"] == "cosmology2d"
    assert [p.name for p in path.parent.iterdir()] == ["c.h5"]  # no temp file left behind


def test_digits_round_trip_is_classification(tmp_path):
    path = export_builtin("digits", tmp_path / "d.h5", seed=0, n=50)
    ds = HDF5Dataset(path)
    assert ds.task_hint == "classification" and ds.target_shape == ()
    assert ds.n_classes == 10 and ds.target_names == [str(k) for k in range(10)]
    assert ds.fingerprint() == load_builtin("digits", seed=0, n=50).fingerprint()


@pytest.mark.parametrize("where", ["x", "y", "groups"])
def test_fingerprint_changes_when_one_value_changes(write_h5, arrays, where):
    path = write_h5("f.h5", arrays)
    before = HDF5Dataset(path, groups="/groups").fingerprint()
    with h5py.File(path, "r+") as f:
        ds = f[where]
        flat_index = np.unravel_index(37, ds.shape)
        ds[flat_index] = ds[flat_index] + 1
    assert HDF5Dataset(path, groups="/groups").fingerprint() != before


def test_fingerprint_ignores_chunking_compression_and_byte_order(write_h5, arrays, tmp_path):
    x, y = arrays["x"], arrays["y"]
    reference = ArrayDataset(x, y).fingerprint()
    paths = [
        write_h5("plain.h5", {"x": x, "y": y}),
        write_h5("gzip.h5", {"x": x, "y": y}, compression="gzip", compression_opts=9),
        write_h5("lzf.h5", {"x": x, "y": y}, compression="lzf", shuffle=True),
        write_h5("bigendian.h5", {"x": x.astype(">f4"), "y": y.astype(">f4")}),
    ]
    path = tmp_path / "odd_chunks.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x, chunks=(7, 1, 4, 3))
        f.create_dataset("y", data=y, chunks=(3, 1))
    paths.append(path)
    with h5py.File(paths[3]) as f:
        assert f["x"].dtype.byteorder == ">"
    for p in paths:
        ds = HDF5Dataset(p)
        ds._stream_bytes = 1000  # many small chunks: the hash must not depend on them
        assert ds.fingerprint() == reference, p.name


def test_fingerprint_includes_dtype_and_groups(arrays):
    x, y = arrays["x"], arrays["y"]
    base = ArrayDataset(x, y).fingerprint()
    assert ArrayDataset(x.astype(np.float64), y).fingerprint() != base
    assert ArrayDataset(x, y, arrays["groups"]).fingerprint() != base
    assert ArrayDataset(x.reshape(40, 1, 30), y).fingerprint() != base


def test_attributes_shapes_and_regression_vector_targets(write_h5):
    x = np.arange(10 * 2 * 7, dtype=np.int16).reshape(10, 2, 7)
    y = np.linspace(0, 1, 10)
    ds = HDF5Dataset(write_h5("f.h5", {"x": x, "y": y}))
    xb, yb = ds.read(np.array([3, 1]))
    assert xb.dtype == np.float32 and yb.dtype == np.float32
    np.testing.assert_array_equal(xb, x[[3, 1]].astype(np.float32))
    assert yb.shape == (2, 1) and ds.target_shape == (1,) and ds.target_names == ["y0"]
    assert ds.layout is None  # rank 3 without a declared layout: the model decides


def test_string_groups_are_loaded(write_h5, arrays):
    names = np.array([f"sim-{g}" for g in arrays["groups"]], dtype=object)
    path = write_h5("g.h5", {"x": arrays["x"], "y": arrays["y"]})
    with h5py.File(path, "r+") as f:
        f.create_dataset("sim", data=names, dtype=h5py.string_dtype())
    ds = HDF5Dataset(path, groups="sim")
    assert ds.groups.dtype.kind == "U" and ds.groups[6] == "sim-1"
    assert (
        ds.fingerprint() == ArrayDataset(arrays["x"], arrays["y"], names.astype(str)).fingerprint()
    )
    assert list(ds.subset([5, 39]).groups) == ["sim-1", "sim-7"]


@pytest.mark.parametrize("chunk_rows", [None, 16, 5])
def test_scattered_dense_and_sliced_reads_match_memory(tmp_path, chunk_rows):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((500, 3, 2))
    y = rng.integers(0, 4, size=500)
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as f:  # contiguous, chunked, chunked + compressed
        kw = {} if chunk_rows is None else {"compression": "gzip"} if chunk_rows == 5 else {}
        f.create_dataset("x", data=x, chunks=chunk_rows and (chunk_rows, 3, 2), **kw)
        f.create_dataset("y", data=y, chunks=chunk_rows and (chunk_rows,), **kw)
    ds = HDF5Dataset(path)
    for idx in (
        rng.choice(500, 40, replace=False),  # scattered: point selection or per-run slices
        np.r_[rng.choice(500, 30), [7, 8, 9, 10, 7]],  # unsorted, repeats, a run
        np.arange(100, 160)[::-1],  # dense span, reversed
        np.arange(200, 260),  # one slice
    ):
        xb, yb = ds.read(idx)
        np.testing.assert_array_equal(xb, x[idx].astype(np.float32))
        np.testing.assert_array_equal(yb, y[idx])


# -- ranks ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "layout", "expected_layout"),
    [
        ((12, 2, 9), None, None),  # [N, C, L] or [N, T, F]: undecided
        ((12, 2, 9), "NCL", "NCL"),  # 1D signals
        ((12, 9, 3), "ntf", "NTF"),  # sequences
        ((12, 1, 5, 6), None, "NCHW"),  # 2D
        ((12, 1, 4, 5, 6), None, "NCDHW"),  # 3D
        ((12, 1, 3, 4, 5, 2), None, "NCTDHW"),  # 4D: time series of volumes
    ],
)
def test_inputs_of_every_supported_rank(write_h5, shape, layout, expected_layout):
    x = np.random.default_rng(0).standard_normal(shape)
    attrs = {"x": {"layout": layout}} if layout else None
    ds = HDF5Dataset(write_h5("r.h5", {"x": x, "y": np.arange(12) % 3}, attrs=attrs))
    assert ds.input_shape == shape[1:] and ds.layout == expected_layout
    batches = list(ds.iter_batches(batch_size=5))
    assert [b[0].shape for b in batches] == [(5, *shape[1:]), (5, *shape[1:]), (2, *shape[1:])]
    np.testing.assert_allclose(np.concatenate([b[0] for b in batches]), x.astype(np.float32))


def test_layout_argument_overrides_attribute(write_h5):
    path = write_h5(
        "r.h5", {"x": np.zeros((4, 3, 5)), "y": np.zeros(4)}, attrs={"x": {"layout": "NCL"}}
    )
    assert HDF5Dataset(path, layout="NTF").layout == "NTF"


# -- construction errors --------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(DataError) as e:
        HDF5Dataset(tmp_path / "absent.h5")
    _one_line_error(e, "absent.h5", "not found")


def test_missing_key_lists_present_datasets(write_h5):
    path = write_h5("data.h5", {"x": np.zeros((3, 1, 4)), "inputs": np.zeros((3, 1, 4))})
    with pytest.raises(DataError) as e:
        HDF5Dataset(path)
    assert str(e.value) == f"{path}: dataset '/y' not found; present: /inputs, /x"


def test_key_naming_a_group(write_h5):
    path = write_h5("data.h5", {"x": np.zeros((3, 1, 4)), "sub/y": np.zeros(3)})
    with pytest.raises(DataError) as e:
        HDF5Dataset(path, targets="sub")
    _one_line_error(e, "data.h5", "'/sub' is a group", "/sub/y")


@pytest.mark.parametrize(
    ("datasets", "groups", "parts"),
    [
        (
            {"x": np.zeros((10, 1, 4)), "y": np.zeros(9)},
            None,
            ["'/x' has 10 samples", "'/y' has 9"],
        ),
        (
            {"x": np.zeros((10, 1, 4)), "y": np.zeros(10), "g": np.arange(8)},
            "g",
            ["'/g'", "(8,)", "[10]"],
        ),
        (
            {"x": np.zeros((4, 1, 4)), "y": np.array([b"a", b"b", b"c", b"d"])},
            None,
            ["'/y'", "dtype |S1", "expected float"],
        ),
        (
            {"x": np.zeros((4, 1, 4)), "y": np.zeros((4, 2), dtype=np.int64)},
            None,
            ["'/y'", "integer [N]"],
        ),
        ({"x": np.zeros((4, 1, 4)), "y": np.zeros((4, 2, 2))}, None, ["'/y'", "shape (4, 2, 2)"]),
        ({"x": np.zeros((4, 1, 4)), "y": np.zeros(4, dtype=bool)}, None, ["'/y'", "bool"]),
        (
            {"x": np.zeros((4, 1, 4), dtype=np.complex64), "y": np.zeros(4)},
            None,
            ["'/x'", "complex"],
        ),
        ({"x": np.zeros((4, 5)), "y": np.zeros(4)}, None, ["'/x'", "shape (4, 5)", "rank 3 to 6"]),
        ({"x": np.zeros((2,) * 7), "y": np.zeros(2)}, None, ["'/x'", "rank 3 to 6"]),
        ({"x": np.zeros((0, 1, 4)), "y": np.zeros(0)}, None, ["'/x'", "no samples"]),
        (
            {"x": np.zeros((4, 1, 4)), "y": np.array([0, 1, -1, 2])},
            None,
            ["'/y'", "1 negative class labels", "sample 2"],
        ),
        (
            {"x": np.zeros((4, 1, 4)), "y": np.zeros(4), "g": np.zeros(4)},
            "g",
            ["'/g'", "float64", "group ids"],
        ),
    ],
    ids=[
        "length",
        "groups-length",
        "string-targets",
        "int-2d-targets",
        "rank3-targets",
        "bool-targets",
        "complex-inputs",
        "rank2-inputs",
        "rank7-inputs",
        "empty",
        "negative-labels",
        "float-groups",
    ],
)
def test_invalid_contents(write_h5, datasets, groups, parts):
    path = write_h5("bad.h5", datasets)
    with pytest.raises(DataError) as e:
        HDF5Dataset(path, groups=groups)
    _one_line_error(e, "bad.h5", *parts)


def test_invalid_layout_attribute(write_h5):
    path = write_h5(
        "l.h5", {"x": np.zeros((4, 1, 4, 4)), "y": np.zeros(4)}, attrs={"x": {"layout": "NTF"}}
    )
    with pytest.raises(DataError) as e:
        HDF5Dataset(path)
    _one_line_error(e, "l.h5", "'/x'", "NTF", "NCHW")


def test_nan_reports_count_and_first_sample(write_h5, arrays):
    x = arrays["x"].copy()
    x[17, 0, 1, 1] = np.nan
    x[17, 0, 2, 2] = np.inf
    x[30, 0, 0, 0] = np.nan
    path = write_h5("f.h5", {"x": x, "y": arrays["y"]})
    with pytest.raises(DataError) as e:
        HDF5Dataset(path)
    assert str(e.value) == f"{path}: '/x' has 3 NaN/inf values, first at sample 17"


def test_inf_in_targets_found_across_stream_chunks(write_h5, arrays):
    y = arrays["y"].copy()
    y[33, 1] = -np.inf
    path = write_h5("f.h5", {"x": arrays["x"], "y": y})
    ds = HDF5Dataset(path, validate=False)  # construction without the value scan succeeds
    ds._stream_bytes = 500  # several chunks: the index must be global, not per chunk
    with pytest.raises(DataError) as e:
        ds.validate()
    assert str(e.value) == f"{path}: '/y' has 1 NaN/inf values, first at sample 33"


def test_labels_beyond_declared_class_names(write_h5):
    y = np.array([0, 1, 2, 3, 1])
    path = write_h5(
        "c.h5", {"x": np.zeros((5, 1, 3)), "y": y}, attrs={"y": {"target_names": ["a", "b", "c"]}}
    )
    with pytest.raises(DataError) as e:
        HDF5Dataset(path)
    assert str(e.value) == f"{path}: '/y' has 1 class labels outside 0..2, first at sample 3"


def test_corrupt_chunk_is_reported_when_read(tmp_path, arrays):
    path = tmp_path / "chunk.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=arrays["x"], chunks=(8, 1, 6, 5), compression="gzip")
        f.create_dataset("y", data=arrays["y"])
        info = f["x"].id.get_chunk_info(2)
    with open(path, "r+b") as raw:  # the metadata stays intact, one compressed chunk does not
        raw.seek(info.byte_offset)
        raw.write(b"\xff" * info.size)
    ds = HDF5Dataset(path, validate=False)
    with pytest.raises(DataError) as e:
        ds.validate()
    _one_line_error(e, "chunk.h5", "cannot read '/x'")


def test_corrupt_file(tmp_path):
    path = tmp_path / "random.h5"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataError) as e:
        HDF5Dataset(path)
    _one_line_error(e, "random.h5", "not an HDF5 file")


def test_truncated_file(tmp_path):
    path = export_builtin("cosmology2d", tmp_path / "full.h5", seed=0, n=64, size=16)
    cut = tmp_path / "cut.h5"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError) as e:
        HDF5Dataset(cut)
    _one_line_error(e, "cut.h5", "corrupt or truncated")


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(DataError) as e:
        HDF5Dataset(tmp_path)
    _one_line_error(e, str(tmp_path), "directory")


# -- processes --------------------------------------------------------------------------------
def test_pickle_after_reading_reopens(write_h5, arrays):
    ds = HDF5Dataset(write_h5("p.h5", arrays), groups="/groups")
    expected = ds.read(np.arange(10))
    clone = pickle.loads(pickle.dumps(ds.subset(np.arange(10))))
    np.testing.assert_array_equal(clone.read(np.arange(10))[0], expected[0])
    assert clone.fingerprint() == ds.subset(np.arange(10)).fingerprint()
    ds.close()
    np.testing.assert_array_equal(ds.read(np.arange(10))[1], expected[1])  # reopens lazily


def test_dataloader_workers_read_their_own_handles(write_h5, arrays):
    ds = HDF5Dataset(write_h5("w.h5", arrays))
    ds.read(np.arange(3))  # the parent holds an open handle when workers fork
    loader = torch.utils.data.DataLoader(
        ds, batch_size=8, shuffle=False, num_workers=2, multiprocessing_context="fork"
    )
    xs, ys = zip(*loader, strict=True)
    np.testing.assert_array_equal(torch.cat(xs).numpy(), arrays["x"])
    np.testing.assert_array_equal(torch.cat(ys).numpy(), arrays["y"])
