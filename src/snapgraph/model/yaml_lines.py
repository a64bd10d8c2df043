"""A YAML loader that remembers line numbers, for files people write by hand.

:func:`load_marked_yaml` parses YAML into :class:`MarkedDict` / :class:`MarkedList` values that know
their line and the line of each key or item, so a problem can name ``file:line``; duplicate keys
(an easy way to lose an operator) are errors rather than silently overwritten. Used by the YAML
graph format (``yaml_format.py``) and the connections file (``connections.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MarkedDict",
    "MarkedList",
    "load_marked_yaml",
    "plain",
    "yaml_error_location",
    "yaml_error_reason",
]


class MarkedDict(dict[Any, Any]):
    """A dict from YAML that knows its line and the line of each key (1-based)."""

    line: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.key_lines: dict[Any, int] = {}
        # For values written as a literal block (``key: |``): the line its text starts on, which
        # maps one to one onto the text's lines.
        self.block_lines: dict[Any, int] = {}


class MarkedList(list[Any]):
    """A list from YAML that knows its line and the line of each item (1-based)."""

    line: int = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.item_lines: list[int] = []


class _MarkedLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type stubs
    """SafeLoader that builds MarkedDict/MarkedList and rejects duplicate keys."""


_MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_mapping(loader: _MarkedLoader, node: yaml.MappingNode) -> MarkedDict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                "found an unhashable key", key_node.start_mark) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"duplicate key {key!r} (first on line {seen[key]})", key_node.start_mark)
        seen[key] = key_node.start_mark.line + 1
    loader.flatten_mapping(node)
    result = MarkedDict()
    result.line = node.start_mark.line + 1
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
        if isinstance(value_node, yaml.ScalarNode) and value_node.style == "|":
            result.block_lines[key] = value_node.start_mark.line + 2  # the line after the "|"
    return result


def _construct_sequence(loader: _MarkedLoader, node: yaml.SequenceNode) -> MarkedList:
    result = MarkedList()
    result.line = node.start_mark.line + 1
    for child in node.value:
        result.append(loader.construct_object(child, deep=True))
        result.item_lines.append(child.start_mark.line + 1)
    return result


_MarkedLoader.add_constructor("tag:yaml.org,2002:map", _construct_mapping)
_MarkedLoader.add_constructor("tag:yaml.org,2002:seq", _construct_sequence)


def load_marked_yaml(text: str) -> Any:
    """Parse YAML text into MarkedDict/MarkedList values; raises yaml.YAMLError."""
    return yaml.load(text, Loader=_MarkedLoader)  # noqa: S506 - SafeLoader subclass


def yaml_error_location(path: Path | str, exc: yaml.YAMLError) -> str:
    """``file:line`` for a YAML error (the problem mark, else the context mark)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return f"{path}:{mark.line + 1}" if mark is not None else str(path)


def plain(value: Any) -> Any:
    """The same data as plain dicts and lists (no line-number attributes)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def yaml_error_reason(exc: yaml.YAMLError) -> str:
    """What is wrong, in the parser's words (its ``problem``, else the first line of the error)."""
    problem = getattr(exc, "problem", None)
    return str(problem) if problem else str(exc).splitlines()[0]
