"""The protocol file, version 1: load, override and validate it.

Every model forbids unknown keys, so a typo is an error that names the key path and suggests the
closest valid key. Errors are raised as :class:`trustml.exceptions.ProtocolError` with one line.

The parts live in their own modules and are re-exported here: the pydantic models
(:mod:`~trustml.protocol._models`), the names they accept (:mod:`~trustml.protocol._names`),
the YAML loader (:mod:`~trustml.protocol._yaml`), the error formatter
(:mod:`~trustml.protocol._errors`) and the JSON Schema (:mod:`~trustml.protocol._jsonschema`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from trustml.exceptions import ProtocolError
from trustml.protocol._errors import format_error
from trustml.protocol._fields import KeyedError
from trustml.protocol._jsonschema import SCHEMA_FILE, build_json_schema, protocol_schema
from trustml.protocol._models import (
    DEFAULT_SAMPLES,
    UNCERTAINTY_KEYS,
    AcquisitionSpec,
    AttributionSpec,
    Bound,
    CalibrationSpec,
    DataSpec,
    HDF5Source,
    ModelSpec,
    ParallelSpec,
    Protocol,
    ReportSpec,
    ShiftSpec,
    Split,
    TrainSpec,
    UncertaintySpec,
)
from trustml.protocol._names import (
    ACQUISITION_STRATEGIES,
    ATTRIBUTION_CHECKS,
    ATTRIBUTION_METHODS,
    CALIBRATION_METHODS,
    CLASSIFICATION_METRICS,
    REGRESSION_METRICS,
    UNCERTAINTY_METHODS,
)
from trustml.protocol._yaml import MAX_YAML_NODES, apply_override, load_yaml, overridden_text

__all__ = [
    "ACQUISITION_STRATEGIES",
    "ATTRIBUTION_CHECKS",
    "AcquisitionSpec",
    "ATTRIBUTION_METHODS",
    "AttributionSpec",
    "Bound",
    "CALIBRATION_METHODS",
    "CLASSIFICATION_METRICS",
    "CalibrationSpec",
    "DEFAULT_SAMPLES",
    "DataSpec",
    "HDF5Source",
    "MAX_YAML_NODES",
    "ModelSpec",
    "ParallelSpec",
    "Protocol",
    "REGRESSION_METRICS",
    "ReportSpec",
    "SCHEMA_FILE",
    "ShiftSpec",
    "Split",
    "TrainSpec",
    "UNCERTAINTY_KEYS",
    "UNCERTAINTY_METHODS",
    "UncertaintySpec",
    "build_json_schema",
    "load_protocol",
    "load_yaml",
    "parse_protocol",
    "protocol_schema",
]


def parse_protocol(raw: Any) -> Protocol:
    """Validate an already-loaded mapping (e.g. from YAML) into a :class:`Protocol`."""
    if not isinstance(raw, dict):
        raise ProtocolError(f"expected a mapping at the top level, got {type(raw).__name__}")
    if "trustml" not in raw:
        raise ProtocolError(
            "required key is missing (the schema version, 'trustml: 1')", key="trustml"
        )
    try:
        return Protocol.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        # Cross-field errors raised with KeyedError carry a better key than pydantic's loc.
        for e in errors:
            ctx_err = (e.get("ctx") or {}).get("error")
            if isinstance(ctx_err, KeyedError):
                raise ProtocolError(str(ctx_err), key=ctx_err.key) from None
        # Report unknown keys first: a typo often causes a 'missing' error too.
        errors.sort(key=lambda e: e["type"] != "extra_forbidden")
        key, msg = format_error(errors[0])
        if isinstance(raw.get("uncertainty"), dict) and key.startswith("uncertainty[0]"):
            key = "uncertainty" + key[len("uncertainty[0]") :]  # it was given as one mapping
        more = (
            f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
            if len(errors) > 1
            else ""
        )
        raise ProtocolError(msg + more, key=key) from None


def load_protocol(path: str | Path, overrides: list[str] | None = None) -> tuple[Protocol, str]:
    """Read, override and validate a protocol file.

    Parameters
    ----------
    path : str or Path
        The protocol YAML file.
    overrides : list of str, optional
        ``"key.path=value"`` items applied before validation (``value`` is parsed as YAML).

    Returns
    -------
    protocol : Protocol
    text : str
        What to save with the run (``protocol.yaml``) so that it reproduces: without overrides
        the file's text, byte for byte; with overrides a YAML document of the overridden
        protocol (a comment line naming the file and the ``--set`` items, then the mapping),
        which loads to an equal :class:`Protocol`.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProtocolError(f"{p}: protocol file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{p}: cannot read protocol file ({exc.__class__.__name__})") from None
    raw = load_yaml(text, source=str(p))
    for item in overrides or []:
        raw = apply_override(raw, item)
    protocol = parse_protocol(raw)
    if overrides:
        text = overridden_text(p, overrides, raw)
    return protocol, text


if __name__ == "__main__":  # pragma: no cover - regenerates the shipped schema
    import json
    import sys

    sys.stdout.write(json.dumps(build_json_schema(), indent=2, sort_keys=True) + "\n")
