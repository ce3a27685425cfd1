"""Protocol YAML: a strict safe loader, the alias-bomb guard, and ``--set`` overrides.

Duplicate keys are errors (YAML would keep the last one); aliases are checked before they are
expanded; every error is a :class:`~trustml.exceptions.ProtocolError` of one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from trustml.exceptions import ProtocolError

__all__ = ["MAX_YAML_NODES", "apply_override", "load_yaml", "overridden_text"]


class _StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys instead of keeping the last one."""


def _construct_mapping(loader: _StrictSafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *defaults`: merged keys may be overridden, never duplicates
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise ProtocolError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                f"(first at line {seen[key] + 1})"
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictSafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)

#: Most nodes (scalars, sequences, mappings) a YAML document may expand to once its aliases are
#: resolved. A protocol has a few hundred; nine levels of nine aliases (the "billion laughs")
#: would have hundreds of millions.
MAX_YAML_NODES = 100_000


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes of the document under ``root`` with every alias expanded, counted on the composed
    graph (an alias is the anchored node object itself): each node once, memoised, so the cost
    is linear in the text however large the expansion. Stops counting past ``limit``.

    Raises ProtocolError (no source prefix) for an alias that refers to its own ancestor.
    """
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            if isinstance(node, yaml.MappingNode):
                children = [n for pair in node.value for n in pair]
            else:
                children = node.value
            sizes[key] = min(limit + 1, 1 + sum(sizes[id(c)] for c in children))
            continue
        if key in sizes:
            continue
        if not isinstance(node, yaml.SequenceNode | yaml.MappingNode):
            sizes[key] = 1
            continue
        if key in on_path:
            raise ProtocolError(
                f"a YAML alias at line {node.start_mark.line + 1} refers to a node that contains "
                "it (a recursive structure)"
            )
        on_path.add(key)
        stack.append((node, True))
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = node.value
        for child in children:
            if id(child) in on_path:
                raise ProtocolError(
                    f"a YAML alias at line {child.start_mark.line + 1} refers to a node that "
                    "contains it (a recursive structure)"
                )
            if id(child) not in sizes:
                stack.append((child, False))
    return sizes[id(root)]


def _load_document(text: str) -> Any:
    """``yaml.load`` in two steps: compose the node graph, check its expanded size, construct."""
    loader = _StrictSafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise ProtocolError(
                f"YAML aliases expand to more than {MAX_YAML_NODES:,} nodes (an alias bomb?); "
                "write the protocol without such nested aliases"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_yaml(text: str, *, source: str = "protocol") -> Any:
    """Safely load YAML text; syntax errors name the line, duplicate keys are rejected.

    Aliases are checked before they are expanded: a document that would expand to more than
    :data:`MAX_YAML_NODES` nodes, or an alias to its own ancestor, is an error.
    """
    try:
        return _load_document(text)
    except ProtocolError as exc:
        raise ProtocolError(f"{source}: {exc}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ProtocolError(f"{source}: YAML syntax error{where}: {problem}") from None
    except yaml.YAMLError as exc:
        raise ProtocolError(f"{source}: invalid YAML: {exc}".splitlines()[0]) from None


class _ExpandingDumper(yaml.SafeDumper):
    """SafeDumper that writes shared objects out in full instead of as anchors and aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def overridden_text(path: Path, overrides: list[str], raw: Any) -> str:
    """The protocol after ``--set``: a header comment, then the mapping as YAML."""
    applied = " ".join(f"--set {item}" for item in overrides)
    header = f"# trustml: this protocol is {path} with {applied} applied"
    header = " ".join(header.split())  # one comment line, whatever the items held
    body = yaml.dump(
        raw, Dumper=_ExpandingDumper, sort_keys=False, default_flow_style=None, allow_unicode=True
    )
    return f"{header}\n{body}"


def apply_override(raw: Any, item: str) -> Any:
    """Apply one ``--set key.path=value``; a numeric part indexes a list
    (``uncertainty.1.members=8``)."""
    if "=" not in item:
        raise ProtocolError(f"--set expects key.path=value, got {item!r}")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts) or not isinstance(raw, dict):
        raise ProtocolError(f"--set: invalid key path {key!r}")
    node: Any = raw
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ProtocolError(
                    f"--set: {key!r}: {part!r} must index the list of {len(node)} items there"
                )
            if last:
                node[int(part)] = load_yaml(value, source=f"--set {key}")
            else:
                node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise ProtocolError(
                f"--set: {key!r} goes through {parts[i - 1]!r}, which is not a mapping"
            )
        if last:
            node[part] = load_yaml(value, source=f"--set {key}")
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
    return raw
