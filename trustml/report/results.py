"""The results of one evaluation run: the only thing a report is built from.

A :class:`RunResults` holds fixed groups (``summary``, ``arrays``, ``manifest``,
``protocol_text``), much like an ArviZ ``InferenceData``. It is written to, and read back from, a
results directory::

    OUTDIR/
        results.json    summary: every number (sorted keys, shortest round-trip floats)
        arrays.h5       arrays at the paths of trustml.results_keys, gzip-compressed
        manifest.json   provenance: versions, command line, hashes, created_at
        protocol.yaml   the protocol exactly as given
        report.html     the reviewer-facing report, rendered from the above

Nothing here imports a model or training code, so any report can be rebuilt without a GPU.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from trustml import results_keys as rk
from trustml.exceptions import DataError
from trustml.report import html as _html
from trustml.report._json import json_bytes
from trustml.report._stored import LAZY_ROWS, StoredArray
from trustml.utils.atomic import atomic_write_text
from trustml.utils.rundir import write_files

__all__ = [
    "FORMAT_VERSION",
    "RESULT_FILES",
    "RunResults",
    "json_bytes",
    "rebuild_report",
    "results_schema",
    "write_report",
]

FORMAT_VERSION = 1
"""Version of the results-directory layout, stored as an attribute of ``arrays.h5``."""

SCHEMA_FILE = "results.schema.json"
"""The JSON Schema of ``results.json``, shipped inside ``trustml.report``."""
RESULT_FILES = ("results.json", "manifest.json", "arrays.h5", "protocol.yaml", "report.html")
_REQUIRED = RESULT_FILES[:4]  # report.html can always be rebuilt from the other four
_FORMAT_ATTR = "trustml_results_format"
_KEY_RE = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")
_NUMERIC_KINDS = "biufc"
_EXTRA_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_EXAMPLE_KEY = rk.path(rk.PRIMARY_TEST, rk.MEAN)


@dataclass(eq=False)
class RunResults:
    """Everything one evaluation run produced.

    Parameters
    ----------
    summary : dict
        JSON-serialisable numbers and labels; written to ``results.json``. Holds no timestamps or
        hostnames, so the same protocol and seed give a byte-identical file. Non-finite floats are
        written as ``null``.
    arrays : dict of str to numpy.ndarray or StoredArray
        Arrays keyed by HDF5 path (:mod:`trustml.results_keys` names them), e.g. the primary
        method's test-split predictive mean of shape ``(n_test, n_targets)``. An array too
        large to hold is a :class:`~trustml.report._stored.StoredArray` (a dataset of an HDF5
        file, copied into ``arrays.h5`` in blocks of rows); :meth:`load` gives one for every
        dataset of more than :data:`~trustml.report._stored.LAZY_ROWS` rows.
    manifest : dict
        Provenance (``created_at``, library versions, command line, seed, hashes).
    protocol_text : str
        The protocol YAML exactly as given.
    extras : dict of str to bytes, optional
        Further files written with the others, e.g. ``"posterior_bayes_svi.nc"`` (the ArviZ
        ``InferenceData`` of a Bayesian method). Plain file names; not read back by :meth:`load`.

    Examples
    --------
    >>> res = RunResults(summary={"name": "demo", "verdict": "pass"})  # doctest: +SKIP
    >>> res.write("reports/demo")  # doctest: +SKIP
    >>> RunResults.load("reports/demo").summary["verdict"]  # doctest: +SKIP
    'pass'
    """

    summary: dict[str, Any]
    arrays: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    protocol_text: str = ""
    extras: dict[str, bytes] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("summary", "manifest", "arrays"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise TypeError(f"RunResults.{name} must be a dict, got {type(value).__name__}")
        if not isinstance(self.protocol_text, str):
            raise TypeError(
                f"RunResults.protocol_text must be a str, got {type(self.protocol_text).__name__}"
            )
        self.arrays = _checked_arrays(self.arrays)
        for name, data in self.extras.items():
            if not (
                _EXTRA_RE.match(name) and name.startswith("posterior_") and name.endswith(".nc")
            ):
                raise ValueError(
                    f"RunResults.extras: {name!r} is not an allowed file name (posterior_LABEL.nc)"
                )
            if not isinstance(data, bytes):
                raise TypeError(
                    f"RunResults.extras[{name!r}] must be bytes, got {type(data).__name__}"
                )

    def write(self, outdir: str | Path, *, drawn: Mapping[str, Any] | None = None) -> Path:
        """Write the results files into ``outdir`` and return its resolved path.

        The files are staged and moved into place one by one, ``results.json`` last, so an
        interrupted write never leaves a folder that looks complete; only trustml's own files
        are replaced (:func:`trustml.utils.rundir.write_files`). Callers check the folder first
        (:func:`trustml.utils.rundir.check_outdir`): the CLI refuses folders that are not
        trustml's. ``drawn`` holds report figures drawn beforehand, e.g. on other MPI ranks
        (:func:`trustml.report.html.draw_figures`); the others are drawn here.
        """
        summary_bytes, manifest_bytes, canonical = self._serialised()
        page = _html.render_html(canonical, outdir=str(outdir), drawn=drawn).encode("utf-8")
        files: dict[str, bytes | Callable[[Path], None]] = {
            "manifest.json": manifest_bytes,
            "protocol.yaml": self.protocol_text.encode("utf-8"),
            "arrays.h5": lambda path: _write_arrays(path, self.arrays),
            **self.extras,
            "report.html": page,
            "results.json": summary_bytes,
        }
        return write_files(
            outdir,
            {
                name: (data if callable(data) else _bytes_writer(data))
                for name, data in files.items()
            },
        )

    def canonical(self) -> RunResults:
        """These results as :meth:`load` will read them back once written (JSON-normalised).

        Reports are rendered from this form, so a rebuilt report equals the original.
        """
        return self._serialised()[2]

    def _serialised(self) -> tuple[bytes, bytes, RunResults]:
        """``results.json`` and ``manifest.json`` bytes, and :meth:`canonical`."""
        summary_bytes = json_bytes(self.summary, name="summary")
        manifest_bytes = json_bytes(self.manifest, name="manifest")
        canonical = RunResults(
            summary=json.loads(summary_bytes),
            arrays=self.arrays,
            manifest=json.loads(manifest_bytes),
            protocol_text=self.protocol_text,
        )
        return summary_bytes, manifest_bytes, canonical

    @classmethod
    def load(cls, outdir: str | Path) -> RunResults:
        """Read a results directory written by :meth:`write`.

        Raises
        ------
        DataError
            If ``outdir`` is not a complete trustml results directory, or a file in it is corrupt.
        """
        outdir = Path(outdir)
        if not outdir.is_dir():
            raise DataError(f"{outdir}: no such results directory (expected the OUTDIR of a run)")
        missing = [name for name in _REQUIRED if not (outdir / name).is_file()]
        if missing:
            raise DataError(
                f"{outdir} is not a trustml results directory: missing {', '.join(missing)}"
            )
        try:
            protocol_text = (outdir / "protocol.yaml").read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"{outdir / 'protocol.yaml'}: not UTF-8 text ({exc})") from None
        return cls(
            summary=_read_json(outdir / "results.json"),
            arrays=_read_arrays(outdir / "arrays.h5"),
            manifest=_read_json(outdir / "manifest.json"),
            protocol_text=protocol_text,
        )


def write_report(results: RunResults, outdir: str | Path) -> Path:
    """Write ``results`` and its report to ``outdir``; same as ``results.write(outdir)``."""
    return results.write(outdir)


def rebuild_report(outdir: str | Path) -> Path:
    """Re-render ``OUTDIR/report.html`` from the saved results, without re-running anything.

    Returns the path of the report. The other files are left untouched.
    """
    results = RunResults.load(outdir)
    _check_summary(results.summary, Path(outdir) / "results.json")
    path = Path(outdir) / "report.html"
    atomic_write_text(path, _html.render_html(results, outdir=str(outdir)))
    return path.resolve()


def _bytes_writer(data: bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_bytes(data)

    return write


def _check_summary(summary: Mapping[str, Any], path: Path) -> None:
    """Refuse a ``results.json`` that does not validate against the shipped schema."""
    import jsonschema

    errors = sorted(
        jsonschema.Draft202012Validator(results_schema()).iter_errors(summary),
        key=lambda e: list(map(str, e.absolute_path)),
    )
    if errors:
        first = errors[0]
        where = "/".join(map(str, first.absolute_path)) or "(top level)"
        message = " ".join(first.message.split())
        if len(message) > 160:
            message = message[:157] + "..."
        raise DataError(
            f"{path}: not a trustml results file ({where}: {message}); the report was not re-rendered"
        )


def results_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) that documents ``results.json``.

    Returns
    -------
    dict
        A fresh copy of the schema shipped with the package
        (``trustml/report/results.schema.json``); validate with any draft 2020-12 validator.

    Examples
    --------
    >>> import jsonschema  # doctest: +SKIP
    >>> jsonschema.validate(RunResults.load("reports/demo").summary, results_schema())  # doctest: +SKIP
    """
    from importlib import resources

    text = resources.files("trustml.report").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def _checked_arrays(arrays: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in arrays.items():
        if not isinstance(key, str) or not _KEY_RE.match(key):
            raise ValueError(
                f"RunResults.arrays key {key!r} must be a path like {_EXAMPLE_KEY!r} "
                "(letters, digits, '_', '.', '-', separated by '/')"
            )
        # A stored array (too large to load) stays in its file; it is copied in blocks.
        array = value if isinstance(value, StoredArray) else np.asarray(value)
        if isinstance(value, StoredArray) and array.dtype.kind not in _NUMERIC_KINDS:
            raise TypeError(
                f"RunResults.arrays[{key!r}] is stored: it must hold numbers or booleans, "
                f"got dtype {array.dtype}"
            )
        if array.dtype.kind not in _NUMERIC_KINDS + "U":
            raise TypeError(
                f"RunResults.arrays[{key!r}] must hold numbers, booleans or str, "
                f"got dtype {array.dtype}"
            )
        out[key] = array
    for key in out:
        parts = key.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in out:
                raise ValueError(
                    f"RunResults.arrays key {key!r} lies under the array {'/'.join(parts[:i])!r}"
                )
    return out


def _write_arrays(path: Path, arrays: Mapping[str, Any]) -> None:
    with h5py.File(path, "w") as f:
        f.attrs[_FORMAT_ATTR] = FORMAT_VERSION
        for key in sorted(arrays):
            array = arrays[key]
            # track_times=False keeps arrays.h5 byte-identical between identical runs.
            kwargs: dict[str, Any] = {"track_times": False}
            if array.ndim >= 1 and array.size > 0:
                kwargs.update(compression="gzip", compression_opts=4, shuffle=True)
            if isinstance(array, StoredArray):
                ds = f.create_dataset(key, shape=array.shape, dtype=array.dtype, **kwargs)
                for a, b in array.row_blocks():
                    ds[a:b] = array[a:b]
            elif array.dtype.kind == "U":
                data = np.asarray(array.astype(object))
                ds = f.create_dataset(key, data=data, dtype=h5py.string_dtype(), **kwargs)
                ds.attrs["numpy_dtype"] = array.dtype.str
            else:
                f.create_dataset(key, data=array, **kwargs)


def _read_arrays(path: Path) -> dict[str, Any]:
    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get(_FORMAT_ATTR)
            if version is None:
                raise DataError(f"{path}: not written by trustml (no '{_FORMAT_ATTR}' attribute)")
            if int(version) > FORMAT_VERSION:
                raise DataError(
                    f"{path}: results format {int(version)} is newer than this trustml "
                    f"understands ({FORMAT_VERSION}); upgrade trustml"
                )
            arrays: dict[str, Any] = {}
            lazy: list[str] = []

            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset):
                    if "numpy_dtype" in obj.attrs:
                        dtype = np.dtype(str(obj.attrs["numpy_dtype"]))
                        arrays[name] = np.asarray(obj.asstr()[()]).astype(dtype)
                    elif obj.ndim and obj.shape[0] > LAZY_ROWS:  # read in parts, when used
                        lazy.append(name)
                    else:
                        arrays[name] = np.asarray(obj[()])

            f.visititems(visit)
        arrays.update({name: StoredArray(path, name) for name in lazy})
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from None
    return dict(sorted(arrays.items()))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(value).__name__}")
    return value
