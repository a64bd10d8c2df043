"""Managed connections: a local stand-in for DI's Connection Management.

In DI an operator config names a connection (``{"connectionID": "PG"}``) and
the runtime hands the script the connection's properties. snapgraph reads the
connections from a file given with ``--connections`` (YAML or JSON)::

    PG:
      connectionType: POSTGRES
      connectionProperties: {host: localhost, port: 5432, user: demo, password: secret}

and replaces every ``{"connectionID": ...}`` config value with
``{"connectionID", "connectionType", "connectionProperties", ...}``.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from snapgraph.model.problems import Problem
from snapgraph.model.yaml_lines import MarkedDict, load_marked_yaml, plain, yaml_error_location, yaml_error_reason


@dataclass
class ConnectionStore:
    """Connections by id, each ``{"connectionType": str, "connectionProperties": dict}``."""

    path: Path | None = None
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get(self, connection_id: str) -> dict[str, Any] | None:
        """The connection with that id, or None."""
        return self.connections.get(connection_id)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self.connections


def _line_of(container: Any, key: Any) -> int | None:
    if isinstance(container, MarkedDict):
        return container.key_lines.get(key, container.line)
    return None


def load_connections(path: Path, problems: list[Problem]) -> ConnectionStore:
    """Read a connections file; each malformed entry becomes a Problem naming file and line.

    ``.json`` files are parsed as JSON (errors give line and column); any other
    extension as YAML, which also accepts JSON.
    """
    store = ConnectionStore(path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(Problem(str(path), f"cannot read connections file: {exc.strerror or exc}"))
        return store
    if path.suffix.lower() == ".json":
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            problems.append(
                Problem(f"{path}:{exc.lineno}:{exc.colno}", f"invalid JSON in connections file: {exc.msg}")
            )
            return store
    try:
        data = load_marked_yaml(text)
    except yaml.YAMLError as exc:
        problems.append(Problem(yaml_error_location(path, exc), f"invalid connections file: {yaml_error_reason(exc)}"))
        return store
    if data is None:
        return store
    if not isinstance(data, dict):
        problems.append(
            Problem(str(path), "a connections file must map connection ids to "
                    "{connectionType, connectionProperties}")
        )
        return store
    for conn_id, entry in data.items():
        line = _line_of(data, conn_id)
        where = f"{path}:{line}" if line else str(path)
        if not isinstance(entry, dict):
            problems.append(
                Problem(where, f"connection '{conn_id}' must be a mapping with connectionType "
                        f"and connectionProperties, got {_kind(entry)}")
            )
            continue
        unknown = sorted(set(map(str, entry)) - {"connectionType", "connectionProperties", "description"})
        if unknown:
            problems.append(
                Problem(where, f"connection '{conn_id}' has unknown key(s) {', '.join(unknown)} "
                        "(expected connectionType and connectionProperties)")
            )
            continue
        conn_type = entry.get("connectionType", "")
        props = entry.get("connectionProperties", {})
        if not isinstance(conn_type, str):
            problems.append(Problem(where, f"connection '{conn_id}': connectionType must be a string"))
            continue
        if not isinstance(props, dict):
            line = _line_of(entry, "connectionProperties") or line
            problems.append(
                Problem(f"{path}:{line}" if line else str(path),
                        f"connection '{conn_id}': connectionProperties must be a mapping")
            )
            continue
        store.connections[str(conn_id)] = {
            "connectionType": conn_type,
            "connectionProperties": plain(props),
        }
    return store


def _kind(value: Any) -> str:
    """A YAML-ish name for a value's type, for messages."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "nothing"
    return type(value).__name__


def resolve_connections(
    config: dict[str, Any],
    store: ConnectionStore | None,
    where: str,
    problems: list[Problem],
) -> dict[str, Any]:
    """A copy of ``config`` with every ``{"connectionID": id}`` value resolved from ``store``.

    The resolved value is ``{"connectionID", "connectionType",
    "connectionProperties"}`` plus the original's other keys (minus
    ``configurationType``). Inline ``{"connectionProperties": ...}`` values and
    an empty ``connectionID`` pass through untouched. An unknown id is a Problem
    naming ``where`` (the process), the config key and the connections file.
    """
    return {key: _resolve(value, str(key), store, where, problems) for key, value in config.items()}


def _resolve(value: Any, key: str, store: ConnectionStore | None, where: str,
             problems: list[Problem]) -> Any:
    if isinstance(value, list):
        return [_resolve(v, f"{key}[{i}]", store, where, problems) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    conn_id = value.get("connectionID")
    if isinstance(conn_id, str) and conn_id.strip():
        conn_id = conn_id.strip()
        entry = store.get(conn_id) if store is not None else None
        if entry is None:
            if store is None or store.path is None:
                reason = "no --connections file was given"
            else:
                known = ", ".join(sorted(store.connections)) or "none"
                reason = f"it is not in the connections file {store.path} (known: {known})"
            problems.append(
                Problem(where, f"config '{key}' uses connection '{conn_id}', but {reason}")
            )
            return value
        resolved = {k: copy.deepcopy(v) for k, v in value.items() if k != "configurationType"}
        resolved["connectionID"] = conn_id
        resolved["connectionType"] = entry["connectionType"]
        resolved["connectionProperties"] = copy.deepcopy(entry["connectionProperties"])
        return resolved
    if "connectionProperties" in value:
        return value
    return {k: _resolve(v, f"{key}.{k}", store, where, problems) for k, v in value.items()}
