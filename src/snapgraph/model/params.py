"""Graph parameters: ``${name}`` substitution in operator configs.

DI replaces ``${name}`` inside config values when a graph starts. snapgraph
does the same at load time, from ``--param name=value`` values and the
defaults the graph declares.

Typing rules (snapgraph's decision; DI passes strings):

* A config value that is exactly ``"${name}"`` takes the parameter's typed
  value: a declared number, bool, list or dict default stays that type, and a
  ``--param`` string is converted to the type of the default (or of the
  declared ``type``: string, integer, number, boolean). So ``rows: "${rows}"``
  with default ``1000`` gives the int 1000, and ``--param rows=50`` gives 50.
* A reference inside a longer string substitutes text: ``"n=${rows}"`` gives
  ``"n=1000"`` (bools as ``true``/``false``, dicts and lists as JSON).
* ``$${name}`` is an escape and yields the literal text ``${name}``.

A referenced parameter with no value (no default, no ``--param``) and a
``--param`` the graph neither declares nor references are both Problems.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from snapgraph.model.problems import Problem

# ``$${x}`` (escape) or ``${x}``; the name may carry surrounding spaces.
_REF = re.compile(r"\$(\$)?\{\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*\}")
_WHOLE = re.compile(r"^\$\{\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*\}$")

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_TYPE_ALIASES = {
    "string": "string", "str": "string",
    "integer": "integer", "int": "integer", "int64": "integer", "int32": "integer",
    "number": "number", "float": "number", "float64": "number", "double": "number",
    "boolean": "boolean", "bool": "boolean",
}


@dataclass
class GraphParameter:
    """A parameter a graph declares: its default (if any), type and description."""

    name: str
    default: Any = None
    has_default: bool = False
    type: str = ""  # declared type (string/integer/number/boolean) or "" = from the default
    description: str = ""

    @property
    def kind(self) -> str:
        """The type a ``--param`` string is converted to: string, integer, number, boolean, json."""
        if self.type:
            return _TYPE_ALIASES.get(self.type.lower(), "string")
        default = self.default
        if isinstance(default, bool):
            return "boolean"
        if isinstance(default, int):
            return "integer"
        if isinstance(default, float):
            return "number"
        if isinstance(default, (list, dict)):
            return "json"
        return "string"


def convert(param: GraphParameter, text: str) -> Any:
    """Convert a ``--param`` string to the parameter's type; raises ValueError."""
    kind = param.kind
    if kind == "integer":
        try:
            return int(text.strip())
        except ValueError:
            raise ValueError(f"expects an integer, got {text!r}") from None
    if kind == "number":
        try:
            number = float(text.strip())
        except ValueError:
            raise ValueError(f"expects a number, got {text!r}") from None
        return int(number) if number.is_integer() and "." not in text and "e" not in text.lower() else number
    if kind == "boolean":
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expects true or false, got {text!r}")
    if kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(f"expects a JSON {type(param.default).__name__}, got {text!r}") from None
    return text


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if value is None:
        return ""
    return str(value)


@dataclass
class _Use:
    where: str
    key: str


@dataclass
class ParamResolver:
    """Substitutes ``${name}`` references and collects what went wrong.

    Create it with the graph's declared parameters and the ``--param`` values,
    call :meth:`apply` on every config value, then :meth:`problems` once.
    ``source`` (the graph file) locates problems not tied to one process.
    """

    declared: Mapping[str, GraphParameter]
    given: Mapping[str, str]
    source: str = ""
    _referenced: set[str] = field(default_factory=set, init=False, repr=False)
    _missing: dict[str, list[_Use]] = field(default_factory=dict, init=False, repr=False)
    _bad: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    def value_of(self, name: str) -> tuple[bool, Any]:
        """(found, value) for ``name``: the ``--param`` value (typed) or the default."""
        param = self.declared.get(name)
        if name in self.given:
            text = self.given[name]
            if param is None:
                return True, text
            try:
                return True, convert(param, text)
            except ValueError as exc:
                self._bad.setdefault(name, str(exc))
                return True, text
        if param is not None and param.has_default and param.default is not None:
            return True, param.default
        return False, None

    def apply(self, value: Any, where: str, key: str) -> Any:
        """``value`` with every ``${name}`` replaced; recurses into dicts and lists.

        ``where`` (e.g. ``graph.json: process 'gen'``) and ``key`` (the config
        key path) are only used to say where a missing parameter is used.
        """
        if isinstance(value, str):
            return self._apply_str(value, where, key)
        if isinstance(value, dict):
            return {k: self.apply(v, where, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.apply(v, where, f"{key}[{i}]") for i, v in enumerate(value)]
        return value

    def _apply_str(self, text: str, where: str, key: str) -> Any:
        if "${" not in text:
            return text
        whole = _WHOLE.match(text)
        if whole:
            name = whole.group(1)
            self._referenced.add(name)
            found, value = self.value_of(name)
            if not found:
                self._missing.setdefault(name, []).append(_Use(where, key))
                return text
            return value

        def replace(match: re.Match[str]) -> str:
            if match.group(1):  # $${x} -> ${x}
                return match.group(0)[1:]
            name = match.group(2)
            self._referenced.add(name)
            found, value = self.value_of(name)
            if not found:
                self._missing.setdefault(name, []).append(_Use(where, key))
                return match.group(0)
            return _as_text(value)

        return _REF.sub(replace, text)

    @property
    def referenced(self) -> set[str]:
        """Every parameter name seen in a ``${}`` reference so far."""
        return set(self._referenced)

    def problems(self) -> list[Problem]:
        """Missing values, unconvertible ``--param`` values and unknown ``--param`` names."""
        found: list[Problem] = []
        for name, uses in self._missing.items():
            places = ", ".join(f"{_process_of(u.where)} config '{u.key}'" for u in uses)
            param = self.declared.get(name)
            reason = "it is declared without a default" if param is not None else "it is not declared"
            found.append(
                Problem(
                    uses[0].where,
                    f"parameter '{name}' has no value ({reason} and no --param {name}=... "
                    f"was given); used in {places}",
                )
            )
        for name, reason in self._bad.items():
            found.append(Problem(self.source, f"--param {name}: parameter '{name}' {reason}"))
        known = set(self.declared) | self._referenced
        for name in self.given:
            if name not in known:
                hint = ""
                close = _closest(name, known)
                if close:
                    hint = f" (did you mean '{close}'?)"
                elif known:
                    hint = f" (known parameters: {', '.join(sorted(known))})"
                found.append(
                    Problem(
                        self.source,
                        f"--param {name}: the graph neither declares nor uses a parameter "
                        f"'{name}'{hint}",
                    )
                )
        return found


def _process_of(where: str) -> str:
    """``process 'gen'`` from ``graph.json: process 'gen'`` (or the whole text)."""
    index = where.rfind("process '")
    return where[index:] if index >= 0 else where


def _closest(name: str, candidates: set[str]) -> str | None:
    import difflib

    matches = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.7)
    return matches[0] if matches else None


def parse_param_assignments(items: list[str]) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` -> ``{"a": "1", "b": "x=y"}`` (for CLI ``--param``); ValueError if no ``=``."""
    result: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected NAME=VALUE, got {item!r}")
        result[name.strip()] = value
    return result
