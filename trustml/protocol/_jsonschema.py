"""The JSON Schema of protocol v1: generated from the pydantic models, and the shipped copy."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from trustml.protocol._models import Protocol

__all__ = ["SCHEMA_FILE", "build_json_schema", "protocol_schema"]

SCHEMA_FILE = "protocol.schema.json"


def build_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of protocol v1, generated from the pydantic models.

    Editors and CI can validate a protocol with it (e.g. the YAML language server's
    ``# yaml-language-server: $schema=...``). Cross-field rules (keys that apply to one
    uncertainty method only, metrics per task, acceptance keys) are checked by trustml itself.
    Regenerate the shipped copy with ``python -m trustml.protocol.schema > trustml/protocol/protocol.schema.json``.
    """
    schema = Protocol.model_json_schema(mode="validation")
    # A single method may be given as one mapping instead of a list.
    one = schema["properties"]["uncertainty"]
    schema["properties"]["uncertainty"] = {
        "title": "Uncertainty",
        "description": "One uncertainty method, or a list of them compared side by side "
        "(the first is the primary one).",
        "anyOf": [one["items"], {k: v for k, v in one.items() if k not in ("title", "default")}],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://trustml.dev/schemas/protocol-v1.json",
        **schema,
    }


def protocol_schema() -> dict[str, Any]:
    """The JSON Schema of protocol v1 shipped with the package (see :func:`build_json_schema`)."""
    text = resources.files("trustml.protocol").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)
