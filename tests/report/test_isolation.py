"""Importing and using trustml.report loads no model, training or attribution code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

FORBIDDEN = (
    "trustml.uq", "trustml.models", "trustml.calibration", "trustml.explain",
    "trustml.protocol", "trustml.distributed", "captum", "pyro", "matplotlib.pyplot",
)  # fmt: skip

SCRIPT = """
import json, sys
import trustml.utils.atomic
torch_from_layer0 = "torch" in sys.modules
from _report_data import make_results
from trustml.report import RunResults
RunResults.load(make_results(n_examples=1).write("run")).write("run")
print(json.dumps({"torch_from_layer0": torch_from_layer0, "modules": sorted(sys.modules)}))
"""


def test_rendering_a_report_loads_no_model_code(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parent), *filter(None, [env.get("PYTHONPATH")])]
    )
    env.pop("MPLBACKEND", None)  # the report must choose Agg by itself
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)],
        capture_output=True, text=True, check=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    loaded = set(result["modules"])
    assert "trustml.report.html" in loaded
    assert (tmp_path / "run" / "report.html").is_file()
    bad = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert not bad, f"trustml.report loaded {bad}"
    # torch may arrive only through layer 0 (trustml.utils imports it), never via the report.
    if not result["torch_from_layer0"]:
        assert "torch" not in loaded


CLI_SCRIPT = """
import json, sys
from _report_data import make_results
import trustml.report.html
trustml.report.html.render_html = lambda results, **kw: "<html></html>"
make_results(n_examples=1).write("run")
for name in [m for m in sys.modules if m.startswith(("trustml", "matplotlib", "jinja2"))]:
    del sys.modules[name]  # start 'trustml report' from a clean slate
from trustml.cli import main
status = main(["report", "run"])
print(json.dumps({"status": status, "modules": sorted(sys.modules)}))
"""


def test_report_command_loads_no_model_code(tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parent), *filter(None, [env.get("PYTHONPATH")])]
    )
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CLI_SCRIPT)],
        capture_output=True, text=True, check=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == 0
    assert "<section" in (tmp_path / "run" / "report.html").read_text()  # really re-rendered
    loaded = set(result["modules"])
    bad = sorted(m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert not bad, f"trustml report loaded {bad}"
