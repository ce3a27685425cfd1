"""Every shipped protocol, at test size, writes byte-identical results.json and arrays.h5.

The pins in ``tests/pins/byte_identity.json`` were written by this file (``python
tests/test_byte_identity.py --update``) and guard refactors that must not change a single
number. Float results depend on the host (CPU model and instruction set, torch version, thread
count), so pins are kept per host key; on a host without pins the test skips, saying so. The
lowered-capability run (``tests/test_lowered_cpu_capability.py``) checks the pins of the next
lower instruction set too. Update the pins only in a commit whose purpose is to change numbers,
and say why in its message.
"""

from __future__ import annotations

import copy
import hashlib
import json
import platform
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
PINS = Path(__file__).with_name("pins") / "byte_identity.json"
SHIPPED = sorted([*ROOT.glob("protocols/*.yaml"), *ROOT.glob("paper_examples/*/protocol.yaml")])

pytestmark = [pytest.mark.slow, pytest.mark.determinism]


def host_key() -> str:
    """CPU (name, family, model), instruction set, torch version and thread count."""
    fields = {"model name": platform.processor() or platform.machine()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model") and key not in fields.keys() - {"model name"}:
                fields[key] = value.strip()
            if not line.strip():
                break  # the first processor is enough
    except OSError:
        pass
    model = f"{fields['model name']} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"
    return (
        f"{model} | {torch.backends.cpu.get_cpu_capability()} | torch {torch.__version__} | "
        f"{torch.get_num_threads()} threads"
    )


def shrink(raw: dict[str, Any]) -> dict[str, Any]:
    """The protocol at test size: few samples, 2 members, 1 epoch, few attributions."""
    raw = copy.deepcopy(raw)
    data = raw["data"]
    options = data.setdefault("options", {})
    if data.get("builtin") not in ("enso",):
        options["n"] = 240
    shifts = data.get("shifts") or {}
    for shift in shifts.values() if isinstance(shifts, dict) else shifts:
        if "corruption" not in shift:  # a corruption ladder corrupts the (shrunk) test split
            shift.setdefault("options", {})["n"] = 60
    methods = raw["uncertainty"] if isinstance(raw["uncertainty"], list) else [raw["uncertainty"]]
    for m in methods:
        if "members" in m or m.get("method", "deep_ensemble") == "deep_ensemble":
            m["members"] = 2
        if "samples" in m:
            m["samples"] = 4
        m.setdefault("train", {})["epochs"] = 1
        if "search" in m:  # a short search: one generation of 4 trials
            m["search"].update(trials=4, generation=4)
    if raw.get("acquisition"):  # one short campaign per strategy
        raw["acquisition"].update(initial=10, step=5, rounds=1, repeats=1, epochs=1)
    if raw.get("attribution"):
        raw["attribution"]["n_examples"] = 4
        raw["attribution"]["n_steps"] = 8
    raw.pop("report", None)
    return raw


def digests(protocol_file: Path, tmp: Path) -> dict[str, str]:
    from trustml.protocol import parse_protocol, run_protocol

    raw = shrink(yaml.safe_load(protocol_file.read_text()))
    text = yaml.safe_dump(raw, sort_keys=False)
    out = tmp / protocol_file.parent.name / protocol_file.stem
    run_protocol(parse_protocol(raw), text, out=out, progress=False)
    return {name: hashlib.sha256((out / name).read_bytes()).hexdigest() for name in ("results.json", "arrays.h5")}


def name_of(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("protocol_file", SHIPPED, ids=name_of)
def test_shipped_protocol_results_are_byte_identical(protocol_file, tmp_path):
    pins = json.loads(PINS.read_text()) if PINS.exists() else {}
    mine = pins.get(host_key())
    if mine is None or name_of(protocol_file) not in mine:
        pytest.skip(f"no byte-identity pins for this host ({host_key()})")
    assert digests(protocol_file, tmp_path) == mine[name_of(protocol_file)]


def _update() -> None:
    import tempfile

    pins = json.loads(PINS.read_text()) if PINS.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        pins[host_key()] = {name_of(p): digests(p, Path(tmp)) for p in SHIPPED}
    PINS.write_text(json.dumps(pins, indent=1, sort_keys=True) + "\n")
    print(f"pinned {len(SHIPPED)} protocols for {host_key()}")


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/test_byte_identity.py --update")
    _update()
