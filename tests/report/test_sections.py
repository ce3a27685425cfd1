"""The report's sections: one module and one template each, listed once, and reading names
only from where they are defined (the results schema, the metrics registry, results_keys)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import trustml.report
from trustml.metrics.specs import METRICS
from trustml.report import html, results_schema
from trustml.report.sections import KNOWN_SUMMARY_KEYS, SECTIONS
from trustml.report.sections.performance import direction

REPORT_DIR = Path(trustml.report.__file__).parent
MAX_LINES = 400


def test_every_section_is_one_module_with_one_template():
    ids = [s.id for s in SECTIONS]
    assert len(ids) == len(set(ids))
    modules = {p.stem for p in (REPORT_DIR / "sections").glob("*.py")}
    assert {m for m in modules if not m.startswith("_")} == set(ids)
    for section in SECTIONS:
        assert (REPORT_DIR / "templates" / section.template).is_file(), section.template
    assert html.SECTIONS == tuple((s.id, s.title) for s in SECTIONS)
    # A section's context is a template variable named after its id, next to the page's own.
    assert not set(ids) & {"title", "task", "seed", "sections", "page"}


def test_the_sections_read_exactly_the_summary_keys_the_schema_documents():
    assert KNOWN_SUMMARY_KEYS == set(results_schema()["properties"])


@pytest.mark.parametrize("name", METRICS.names())
def test_metric_direction_comes_from_the_registry(name):
    spec = METRICS.get(name)
    scores_predictions = any(impl.uses_target for impl in spec.impls.values())
    assert direction(name) == (spec.higher_is_better if scores_predictions else None)


def test_unranked_metrics_have_no_direction():
    assert direction("rmse") is False and direction("accuracy") is True
    assert direction("coverage") is None  # neither way: it should match its nominal level
    assert direction("interval_width") is None  # narrower is only better at equal coverage
    assert direction("auroc") is None  # not a registered metric


def _code_strings(path: Path) -> list[tuple[int, str]]:
    """Every string literal of ``path`` (f-string parts included) that is not documentation."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
    ]


def test_the_report_names_arrays_only_through_results_keys():
    array_path = re.compile(r"\b(test|methods|shifts|attribution)/")
    found = [
        f"{path.relative_to(REPORT_DIR.parent)}:{line}: {text!r}"
        for path in sorted(REPORT_DIR.rglob("*.py"))
        for line, text in _code_strings(path)
        if array_path.search(text)
    ]
    assert not found, "build array paths with trustml.results_keys:\n" + "\n".join(found)


