"""``trustml verify OUTDIR``: re-run a finished evaluation and check that it reproduces.

The saved protocol is re-run in memory (nothing in ``OUTDIR`` is touched) and every number of
``results.json`` and every array of ``arrays.h5`` is compared with the re-run. Before any
training, the data is fingerprinted again; if it is not the data the run used, verification is
refused with a :class:`~trustml.exceptions.DataError` (CLI exit status 2).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trustml.exceptions import DataError
from trustml.protocol import runner
from trustml.protocol.schema import load_yaml, parse_protocol
from trustml.report import RunResults, json_bytes

__all__ = ["Difference", "VerifyReport", "compare_results", "verify_run"]

_MAX_TEXT = 48


@dataclass(frozen=True)
class Difference:
    """One value that differs between the saved results and the re-run.

    Attributes
    ----------
    path : str
        Where: ``results.metrics.rmse.value`` for ``results.json``, ``arrays:test/mean[3, 1]``
        (the worst element) for ``arrays.h5``.
    saved, rerun : object
        The saved and the re-run value (``None`` where one side lacks it).
    rel_diff : float or None
        ``|saved - rerun| / max(|saved|, |rerun|)`` for two numbers, else ``None``.
    note : str
        What else to know (``"37 of 600 elements differ"``, ``"only in the saved run"``).
    """

    path: str
    saved: Any
    rerun: Any
    rel_diff: float | None = None
    note: str = ""

    def __str__(self) -> str:
        rel = f" (relative difference {self.rel_diff:.3g})" if self.rel_diff is not None else ""
        note = f"; {self.note}" if self.note else ""
        return f"{self.path}: saved {_text(self.saved)}, re-run {_text(self.rerun)}{rel}{note}"


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_run`.

    Attributes
    ----------
    reproduced : bool
        Every compared value matched within ``rtol``.
    differences : list of Difference
        What did not match, in key order.
    rtol : float
        The relative tolerance used (0: exact).
    compared : int
        How many numbers, strings and array elements were compared.
    """

    reproduced: bool
    differences: list[Difference] = field(default_factory=list)
    rtol: float = 0.0
    compared: int = 0

    def table(self, limit: int | None = 50) -> str:
        """The differences as an aligned text table: key path, saved, re-run, rel. difference."""
        rows = [("key path", "saved", "re-run", "rel. diff")]
        shown = self.differences if limit is None else self.differences[:limit]
        for d in shown:
            rel = f"{d.rel_diff:.3g}" if d.rel_diff is not None else "-"
            path = d.path + (f"  ({d.note})" if d.note else "")
            rows.append((path, _text(d.saved), _text(d.rerun), rel))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if len(shown) < len(self.differences):
            lines.append(f"... and {len(self.differences) - len(shown)} more")
        return "\n".join(lines)


def _text(value: Any) -> str:
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, np.ndarray):
        text = f"array{list(value.shape)}"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "\u2026"


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _rel(a: float, b: float) -> float:
    if a == b:
        return 0.0
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b))


def _diff(a: Any, b: Any, path: str, rtol: float, out: list[Difference]) -> int:
    """Append what differs between ``a`` and ``b`` to ``out``; return how many values compared."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        n = 0
        for key in sorted(set(a) | set(b)):
            sub = f"{path}.{key}"
            if key not in b:
                out.append(Difference(sub, a[key], None, note="only in the saved run"))
                n += 1
            elif key not in a:
                out.append(Difference(sub, None, b[key], note="only in the re-run"))
                n += 1
            else:
                n += _diff(a[key], b[key], sub, rtol, out)
        return n
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(Difference(path, a, b, note=f"length {len(a)} vs {len(b)}"))
            return 1
        return sum(
            _diff(x, y, f"{path}[{i}]", rtol, out)
            for i, (x, y) in enumerate(zip(a, b, strict=True))
        )
    if _is_number(a) and _is_number(b):
        rel = _rel(float(a), float(b))
        if rel > rtol:
            out.append(Difference(path, a, b, rel))
        return 1
    if type(a) is not type(b) or a != b:
        out.append(Difference(path, a, b))
    return 1


_BLOCK_BYTES = 64 << 20
"""Arrays are compared this many bytes of rows at a time: a stored array is never read whole."""


def _row_blocks(a: Any, b: Any) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``(first row, rows of a, rows of b)`` in blocks of about :data:`_BLOCK_BYTES`; works for
    arrays and for :class:`~trustml.report.StoredArray` (read block by block)."""
    if not a.shape:
        yield 0, np.asarray(a[()]), np.asarray(b[()])
        return
    row = max(1, a.dtype.itemsize * int(np.prod(a.shape[1:], dtype=np.int64)))
    step = max(1, _BLOCK_BYTES // row)
    for start in range(0, a.shape[0], step):
        yield start, np.asarray(a[start : start + step]), np.asarray(b[start : start + step])


def _relative(x: np.ndarray, y: np.ndarray, text: bool) -> np.ndarray:
    """Per element: the relative difference (0 where equal or both NaN, inf where one is
    NaN); for text, 1.0 where the strings differ."""
    if text:
        return (x.astype(str) != y.astype(str)).astype(np.float64)
    xf, yf = x.astype(np.float64), y.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.maximum(np.abs(xf), np.abs(yf))
        rel = np.where(xf == yf, 0.0, np.abs(xf - yf) / np.where(scale > 0, scale, 1.0))
    both_nan = np.isnan(xf) & np.isnan(yf)
    return np.asarray(np.where(both_nan, 0.0, np.where(np.isnan(rel), np.inf, rel)))


def _diff_arrays(
    saved: Mapping[str, Any],
    rerun: Mapping[str, Any],
    rtol: float,
    out: list[Difference],
) -> int:
    n = 0
    for key in sorted(set(saved) | set(rerun)):
        path = f"arrays:{key}"
        if key not in rerun:
            out.append(Difference(path, saved[key], None, note="only in the saved run"))
            continue
        if key not in saved:
            out.append(Difference(path, None, rerun[key], note="only in the re-run"))
            continue
        a, b = saved[key], rerun[key]
        if tuple(a.shape) != tuple(b.shape):
            out.append(Difference(path, a, b, note=f"shape {list(a.shape)} vs {list(b.shape)}"))
            continue
        size = int(np.prod(a.shape, dtype=np.int64))
        n += max(size, 1)
        text = a.dtype.kind in "US" or b.dtype.kind in "US"
        n_bad, worst, at, pair = 0, -1.0, 0, (None, None)
        for start, x, y in _row_blocks(a, b):
            rel = _relative(x, y, text)
            bad = rel > 0 if text else rel > rtol
            if not np.any(bad):
                continue
            n_bad += int(np.sum(bad))
            i = int(np.argmax(rel))
            if rel.flat[i] > worst:  # the worst element (text: the first that differs)
                worst, at = float(rel.flat[i]), start * (x.size // max(len(x), 1)) + i
                pair = (x.flat[i].item(), y.flat[i].item())
        if not n_bad:
            continue
        index = np.unravel_index(at, tuple(a.shape)) if a.shape else ()
        where = f"[{', '.join(map(str, index))}]" if index else ""
        out.append(
            Difference(
                f"{path}{where}",
                pair[0],
                pair[1],
                None if text else worst,
                note=f"{n_bad} of {size} elements differ",
            )
        )
    return n


def compare_results(saved: RunResults, rerun: RunResults, *, rtol: float = 0.0) -> VerifyReport:
    """Compare every number of two runs' results.

    Parameters
    ----------
    saved, rerun : RunResults
        The stored results and those of the re-run. Summaries are compared as ``results.json``
        holds them (canonical JSON); arrays element by element.
    rtol : float
        Relative tolerance: two numbers match when ``|a - b| <= rtol * max(|a|, |b|)``.
        0 asks for identical numbers. Strings, booleans and missing values always compare
        exactly.

    Returns
    -------
    VerifyReport
    """
    if not (rtol >= 0 and math.isfinite(rtol)):
        raise ValueError(f"rtol must be a finite number >= 0, got {rtol}")
    before = json.loads(json_bytes(saved.summary))
    after = json.loads(json_bytes(rerun.summary))
    differences: list[Difference] = []
    compared = _diff(before, after, "results", rtol, differences)
    compared += _diff_arrays(saved.arrays, rerun.arrays, rtol, differences)
    return VerifyReport(not differences, differences, rtol, compared)


def _describe_data(protocol: Any, base_dir: Path) -> str:
    spec = protocol.data
    if getattr(spec, "builtin", None) is not None:
        options = getattr(spec, "options", None) or {}
        extra = f" with options {json.dumps(options, sort_keys=True)}" if options else ""
        return f"builtin dataset {spec.builtin!r}{extra}"
    if spec.hdf5.path is None:  # many files: the glob or the list, as the protocol gives it
        files = spec.hdf5.files
        return f"HDF5 files {files!r} (relative to {base_dir})"
    path = Path(spec.hdf5.path)
    return str(path if path.is_absolute() else base_dir / path)


def _with_fingerprint_mode(protocol: Any, recorded: Any) -> Any:
    """``protocol`` fingerprinting the data as the saved run did: its recorded mode (``full``
    or ``sampled``), or ``full`` for a run that recorded none (every byte, as runs always did).

    Not the protocol's own ``auto``, which could resolve otherwise if the data changed size.
    """
    mode = recorded if recorded in ("full", "sampled") else "full"
    data = protocol.data.model_copy(update={"fingerprint": mode})
    return protocol.model_copy(update={"data": data})


def _refuse(what: str, current: str, recorded: str) -> DataError:
    return DataError(
        f"{what}: the data changed since this run was made (fingerprint {current[:16]}..., "
        f"recorded {recorded[:16]}...); refusing to verify against different data"
    )


def verify_run(
    outdir: str | Path, *, rtol: float = 0.0, progress: bool | None = None
) -> VerifyReport:
    """Re-run the protocol saved in ``outdir`` and compare every number with the saved results.

    Parameters
    ----------
    outdir : path
        A results directory written by ``trustml evaluate``. Nothing in it is changed.
        Relative HDF5 paths resolve against the folder the original protocol was in (recorded
        in the manifest as ``protocol_dir``).
    rtol : float
        Relative tolerance for numbers (0: identical), e.g. ``1e-6`` for a run on other
        hardware; see :func:`compare_results`.
    progress : bool, optional
        Progress bars while re-running.

    Returns
    -------
    VerifyReport

    Raises
    ------
    DataError
        If ``outdir`` is not a results directory, or the data no longer has the fingerprint
        recorded in ``manifest.json`` (checked before re-running when the runner offers
        ``dataset_fingerprint``, else right after the re-run and before comparing). The data
        is fingerprinted as the run recorded (``data_fingerprint_mode``: ``full`` or
        ``sampled``; ``full`` when absent).
    """
    if not (rtol >= 0 and math.isfinite(rtol)):
        raise ValueError(f"rtol must be a finite number >= 0, got {rtol}")
    saved = RunResults.load(outdir)
    protocol = parse_protocol(load_yaml(saved.protocol_text, source=f"{outdir}/protocol.yaml"))
    base_dir = Path(saved.manifest.get("protocol_dir") or ".")
    protocol = _with_fingerprint_mode(protocol, saved.manifest.get("data_fingerprint_mode"))
    recorded = saved.manifest.get("data_fingerprint") or (
        saved.summary.get("data", {}).get("fingerprint")
        if isinstance(saved.summary.get("data"), Mapping)
        else None
    )
    # The runner's cheap fingerprint-only entry point; older runners lack it, and then the
    # re-run's own fingerprint is checked below instead (same refusal, after training).
    fingerprint = getattr(runner, "dataset_fingerprint", None)
    if recorded and fingerprint is not None:
        current = fingerprint(protocol, base_dir)
        if current != recorded:
            raise _refuse(_describe_data(protocol, base_dir), current, recorded)
    fresh = runner.run_protocol(
        protocol, saved.protocol_text, base_dir=base_dir, write=False, progress=progress
    )
    assert fresh.results is not None  # one process: rank 0 holds the results
    current = fresh.results.manifest.get("data_fingerprint")
    if recorded and current and current != recorded:
        raise _refuse(_describe_data(protocol, base_dir), current, recorded)
    return compare_results(saved, fresh.results, rtol=rtol)
