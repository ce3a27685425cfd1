"""The layer rule of DESIGN.md: a module imports only from its own layer or below.

Every module under ``trustml/`` is parsed with ``ast`` (nothing is imported, so the test holds
while packages are still being written) and every ``trustml`` import is collected: absolute and
relative, at module level, inside functions and under ``if TYPE_CHECKING``, plus
``importlib.import_module("...")`` calls with a literal name.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "trustml"

LAYERS: dict[str, int] = {
    "exceptions": 0, "registry": 0, "utils": 0, "results_keys": 0,
    "data": 1, "models": 1, "metrics": 1, "distributed": 1, "acquire": 1,
    "uq": 2, "calibration": 2, "explain": 2, "search": 2,
    "protocol": 3, "report": 3,
    "cli": 4, "__init__": 4, "__main__": 4,
}  # fmt: skip
"""Layer of each top-level part of trustml; ``__init__`` is ``trustml/__init__.py`` itself."""

REPORT_FORBIDDEN_TRUSTML = ("uq", "models", "calibration", "explain", "search", "protocol", "distributed")
REPORT_FORBIDDEN_EXTERNAL = ("torch", "pyro", "captum")


@dataclass(frozen=True)
class Import:
    """One imported module, as a dotted name, and where it is imported."""

    module: str
    file: Path
    line: int

    def where(self, root: Path = PACKAGE_DIR) -> str:
        return f"{self.file.relative_to(root.parent)}:{self.line}"


def _module_name(path: Path, root: Path = PACKAGE_DIR) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_submodule(dotted: str, root: Path) -> bool:
    """Whether ``trustml.a.b`` names a module or package in the tree (vs. a name inside one)."""
    path = root.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _resolve_from(node: ast.ImportFrom, path: Path, root: Path) -> list[str]:
    if node.level:
        package = _module_name(path, root).split(".")
        if path.name != "__init__.py":
            package = package[:-1]  # a plain module's package is its parent
        base = package[: len(package) - (node.level - 1)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module or ""
    # "from trustml import data" imports the subpackage trustml.data, while
    # "from trustml import DeepEnsemble" imports from trustml/__init__.py (the public API).
    return [
        f"{prefix}.{alias.name}" if _is_submodule(f"{prefix}.{alias.name}", root) else prefix
        for alias in node.names
    ]


def collect_imports(path: Path, root: Path = PACKAGE_DIR) -> list[Import]:
    """Every module imported anywhere in the file at ``path`` of the package at ``root``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = _resolve_from(node, path, root)
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (
                    isinstance(node.func, ast.Name)
                    and node.func.id in ("import_module", "__import__")
                )
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names = [node.args[0].value]
        found += [Import(name, path, node.lineno) for name in names]
    return found


def layer_of(dotted: str) -> str:
    """The key of :data:`LAYERS` a ``trustml`` module belongs to."""
    parts = dotted.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _modules(root: Path) -> list[Path]:
    return sorted(root.rglob("*.py"))


def unassigned_modules(root: Path = PACKAGE_DIR) -> list[str]:
    """Modules whose top-level part has no layer in :data:`LAYERS`."""
    return [
        f"{path.relative_to(root.parent)}: '{layer_of(_module_name(path, root))}' is not in the "
        "layer table of DESIGN.md (add it to LAYERS in tests/test_layers.py)"
        for path in _modules(root)
        if layer_of(_module_name(path, root)) not in LAYERS
    ]


def layer_violations(root: Path = PACKAGE_DIR) -> list[str]:
    """``file:line: ...`` for every import of a higher layer."""
    violations = []
    for path in _modules(root):
        module = _module_name(path, root)
        own = layer_of(module)
        if own not in LAYERS:
            continue  # reported by unassigned_modules
        for imp in collect_imports(path, root):
            if imp.module != "trustml" and not imp.module.startswith("trustml."):
                continue
            target = layer_of(imp.module)
            if target not in LAYERS:
                violations.append(f"{imp.where(root)}: imports {imp.module}, which has no layer")
            elif LAYERS[target] > LAYERS[own]:
                violations.append(
                    f"{imp.where(root)}: {module} (L{LAYERS[own]}) imports {imp.module} "
                    f"(L{LAYERS[target]})"
                )
    return violations


def report_violations(root: Path = PACKAGE_DIR) -> list[str]:
    """``file:line: ...`` for every import of model, training or GPU code in trustml.report."""
    violations = []
    for path in sorted((root / "report").rglob("*.py")):
        for imp in collect_imports(path, root):
            parts = imp.module.split(".")
            if parts[0] in REPORT_FORBIDDEN_EXTERNAL or (
                parts[0] == "trustml" and len(parts) > 1 and parts[1] in REPORT_FORBIDDEN_TRUSTML
            ):
                violations.append(f"{imp.where(root)}: trustml.report must not import {imp.module}")
    return violations


def import_cycles(root: Path = PACKAGE_DIR) -> list[list[str]]:
    """Groups of trustml modules that import each other, directly or in a ring (any import:
    module level, inside functions, under TYPE_CHECKING). Each group is sorted."""
    modules = {_module_name(p, root): p for p in _modules(root)}
    graph = {
        m: sorted({i.module for i in collect_imports(p, root)} & modules.keys() - {m})
        for m, p in modules.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(cycles)


def private_imports(root: Path = PACKAGE_DIR) -> list[str]:
    """``file:line: ...`` for every import of another top-level package's private name or module
    (a ``_``-prefixed name or module path part; dunders such as ``__version__`` are public)."""

    def private(part: str) -> bool:
        return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))

    violations = []
    for path in _modules(root):
        module = _module_name(path, root)
        own = layer_of(module)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            pairs: list[tuple[str, str]] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                pairs = [(node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                pairs = [(alias.name, "") for alias in node.names]
            for target, name in pairs:
                parts = target.split(".")
                if parts[0] != "trustml" or layer_of(target) == own:
                    continue
                if any(private(p) for p in parts[2:]) or private(name):
                    shown = f"{target}.{name}" if name else target
                    violations.append(
                        f"{path.relative_to(root.parent)}:{node.lineno}: {module} imports the "
                        f"private {shown} of trustml.{layer_of(target)}"
                    )
    return violations


def test_the_package_is_found():
    assert (PACKAGE_DIR / "exceptions.py").is_file()
    assert (PACKAGE_DIR / "report").is_dir()


def test_every_module_belongs_to_a_layer():
    unknown = unassigned_modules()
    assert not unknown, "\n".join(unknown)


def test_modules_import_only_from_their_own_layer_or_below():
    violations = layer_violations()
    assert not violations, "layer rule broken:\n" + "\n".join(violations)


def test_report_reads_only_results():
    violations = report_violations()
    assert not violations, (
        "the report layer must rebuild any report without a model or GPU:\n" + "\n".join(violations)
    )


#: The packages that only orchestrate or present: each module stays small enough to read at once.
MAX_LINES = {"report": 400, "protocol": 400}
MAX_RUNNER_LINES = 300


def long_modules(root: Path = PACKAGE_DIR) -> dict[str, int]:
    """Modules of the packages in :data:`MAX_LINES` that are longer than their limit."""
    out = {}
    for package, limit in MAX_LINES.items():
        for path in sorted((root / package).rglob("*.py")):
            n = len(path.read_text(encoding="utf-8").splitlines())
            if n > limit:
                out[str(path.relative_to(root.parent))] = n
    return out


def test_report_and_protocol_modules_stay_short():
    assert long_modules() == {}
    runner = PACKAGE_DIR / "protocol" / "runner.py"
    assert len(runner.read_text(encoding="utf-8").splitlines()) < MAX_RUNNER_LINES


def test_no_import_cycles():
    cycles = import_cycles()
    assert not cycles, "modules that import each other:\n" + "\n".join(map(" <-> ".join, cycles))


def test_no_package_imports_another_packages_private_names():
    violations = private_imports()
    assert not violations, "\n".join(violations)


# The checker itself: each of these is a case it must catch or must let through.


def _imports_of(tmp_path: Path, relpath: str, source: str) -> list[str]:
    """Collect imports of ``source`` as if it lived at ``trustml/<relpath>``, sorted."""
    fake = tmp_path / "trustml"
    for sub in ("uq", "report", "data"):
        (fake / sub).mkdir(parents=True, exist_ok=True)
        (fake / sub / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "exceptions.py").write_text("")
    target = fake / relpath
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source)
    return sorted(imp.module for imp in collect_imports(target, fake))


def test_checker_sees_relative_nested_and_dynamic_imports(tmp_path):
    source = (
        "from .. import uq\n"
        "from ..data import load\n"
        "from . import figures\n"
        "import importlib\n"
        "def f():\n"
        "    from trustml.uq.ensemble import DeepEnsemble\n"
        "    import torch\n"
        "    importlib.import_module('trustml.models')\n"
        "from trustml import DeepEnsemble\n"
        "from trustml import exceptions\n"
    )
    assert _imports_of(tmp_path, "report/html.py", source) == [
        "importlib",
        "torch",
        "trustml",  # a name from the public API in trustml/__init__.py (L4)
        "trustml.data",
        "trustml.exceptions",
        "trustml.models",
        "trustml.report",
        "trustml.uq",
        "trustml.uq.ensemble",
    ]


def test_checker_resolves_relative_imports_in_a_package_init(tmp_path):
    assert _imports_of(
        tmp_path, "report/__init__.py", "from .html import x\nfrom .. import uq\n"
    ) == [
        "trustml.report.html",
        "trustml.uq",
    ]


def test_layer_of_maps_modules_to_their_top_level_part():
    assert layer_of("trustml") == "__init__"
    assert layer_of("trustml.report.html") == "report"
    assert LAYERS[layer_of("trustml.uq.ensemble")] > LAYERS[layer_of("trustml.data")]
    assert LAYERS[layer_of("trustml")] == LAYERS["cli"] == 4


def _write(root: Path, relpath: str, source: str = "") -> None:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)


def test_checker_reports_violations_with_file_and_line(tmp_path):
    root = tmp_path / "trustml"
    _write(root, "__init__.py", "from trustml.report import RunResults\n")  # L4 -> L3: fine
    _write(root, "exceptions.py")
    _write(root, "utils/__init__.py", "\n\nfrom trustml.data import load\n")  # L0 -> L1
    _write(root, "data/__init__.py", "def f():\n    from ..uq import x\n")  # L1 -> L2
    _write(root, "uq/__init__.py", "from trustml.exceptions import DataError\n")  # fine
    _write(root, "report/__init__.py", "from . import html\n")
    _write(root, "report/html.py", "import torch\nimport trustml.cli\nfrom ..models import m\n")
    _write(root, "models/__init__.py")
    _write(root, "gadgets.py", "import trustml\n")
    assert layer_violations(root) == [
        "trustml/data/__init__.py:2: trustml.data (L1) imports trustml.uq (L2)",
        "trustml/report/html.py:2: trustml.report.html (L3) imports trustml.cli (L4)",
        "trustml/utils/__init__.py:3: trustml.utils (L0) imports trustml.data (L1)",
    ]
    assert report_violations(root) == [
        "trustml/report/html.py:1: trustml.report must not import torch",
        "trustml/report/html.py:3: trustml.report must not import trustml.models",
    ]
    assert unassigned_modules(root) == [
        "trustml/gadgets.py: 'gadgets' is not in the layer table of DESIGN.md "
        "(add it to LAYERS in tests/test_layers.py)"
    ]


def test_cycle_and_private_checkers_catch_what_they_must(tmp_path):
    fake = tmp_path / "trustml"
    for sub in ("uq", "models", "report"):
        (fake / sub).mkdir(parents=True)
        (fake / sub / "__init__.py").write_text("")
    (fake / "__init__.py").write_text("")
    (fake / "report" / "a.py").write_text("def f():\n    from trustml.report import b\n")
    (fake / "report" / "b.py").write_text("from trustml.report.a import f\n")
    (fake / "models" / "cnn.py").write_text("class _ConvNet: ...\n")
    (fake / "models" / "_impl.py").write_text("")
    (fake / "uq" / "_own.py").write_text("")
    (fake / "uq" / "grouped.py").write_text(
        "from trustml.models.cnn import _ConvNet\n"
        "import trustml.models._impl\n"
        "from trustml.uq._own import x\n"  # its own package's private module: allowed
        "from trustml import __version__\n"  # a dunder is public
    )
    assert import_cycles(fake) == [["trustml.report.a", "trustml.report.b"]]
    found = private_imports(fake)
    assert len(found) == 2
    assert "trustml.models.cnn._ConvNet" in found[0] and "trustml.models._impl" in found[1]
