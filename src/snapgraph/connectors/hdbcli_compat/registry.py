"""The managed connections of a run, and which database serves a ``dbapi.connect(address, port, user)``.

Gen2 scripts connect with the properties of their managed connection
(``api.config.connection['connectionProperties']['host']``, ``['port']``, ``['user']``,
``['password']``), never with its id. So the stand-in looks the connection up by those properties
among the connections of the operators loaded in this process: the runtime registers each
operator's resolved config as its script loads (:func:`register_connections`) and forgets them when
the run ends (:func:`forget_connections`). A connection matches when its ``host`` equals the address
(case-insensitively), its ``port`` the port (as numbers) and its ``user`` the user, and it is served by:

* a ``HANA_DB`` connection (DI's type for SAP HANA): the database its ``snapgraphDatabase`` property
  names, written like any snapgraph database connection
  (``{connectionType: SQLITE|POSTGRES|MARIADB, connectionProperties: {...}}``);
* a ``SQLITE``, ``POSTGRES``, ``MARIADB`` or ``MYSQL`` connection: that database itself (useful for a
  PostgreSQL server, whose host, port and user are real).

Two matching connections served by different databases are an error, and so are no match and a
password that differs from the connection's (HANA's ``authentication failed``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from snapgraph.connectors.databases import DIALECTS

HANA_TYPES = frozenset({"HANA_DB"})
SERVED_BY = "snapgraphDatabase"


class LookupFailed(Exception):
    """No connection, or more than one, or a wrong password: ``code`` is the HANA error code to report."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Served:
    """The database behind a matched connection: ``database`` is what ``open_connection`` takes."""

    connection_id: str
    database: dict[str, Any]


_lock = threading.Lock()
_connections: dict[str, dict[str, Any]] = {}


def register_connections(values: Iterable[Any]) -> None:
    """Register every resolved managed connection found in ``values`` (an operator's config values,
    searched through nested mappings and lists). A connection registered again under its id replaces
    the earlier one; one without an id (an inline ``connectionProperties``) counts by its content."""
    found: list[dict[str, Any]] = []
    for value in values:
        _collect(value, found)
    with _lock:
        for connection in found:
            key = str(connection.get("connectionID") or json.dumps(connection, sort_keys=True, default=str))
            _connections[key] = json.loads(json.dumps(connection, default=str))


def forget_connections() -> None:
    """Forget every registered connection (a run ended)."""
    with _lock:
        _connections.clear()


def _collect(value: Any, found: list[dict[str, Any]]) -> None:
    if isinstance(value, dict):
        if isinstance(value.get("connectionProperties"), dict) and "connectionType" in value:
            found.append(value)
            return
        for inner in value.values():
            _collect(inner, found)
    elif isinstance(value, list):
        for inner in value:
            _collect(inner, found)


def serving_database(address: str, port: Any, user: str, password: str | None) -> Served:
    """The database that serves the connection with these properties (see the module doc)."""
    with _lock:
        connections = dict(_connections)
    wanted = f"address {address!r}, port {port!r}, user {user!r}"
    if not connections:
        raise LookupFailed(-10709, f"hdbcli stand-in: no managed connection is known for {wanted}; it serves "
                                   "the connections of the operators of a snapgraph run (--connections)")
    matches: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for key, connection in sorted(connections.items()):
        props = connection["connectionProperties"]
        if _same_host(props.get("host"), address) and _same_port(props.get("port"), port) \
                and str(props.get("user", "")) == str(user):
            served = served_by(key, connection)
            if served is not None:
                matches.append((key, props, served))
    if not matches:
        known = "; ".join(f"{key}: {_describe(c['connectionProperties'])}" for key, c in sorted(connections.items()))
        raise LookupFailed(-10709, f"hdbcli stand-in: no managed connection has {wanted} (known: {known})")
    databases = {json.dumps(served, sort_keys=True) for _, _, served in matches}
    if len(databases) > 1:
        ids = ", ".join(key for key, _, _ in matches)
        raise LookupFailed(-10709, f"hdbcli stand-in: connections {ids} all have {wanted} but are served by "
                                   "different databases; give each HANA_DB connection a host or port of its own")
    key, props, served = matches[0]
    expected = props.get("password")
    if expected is not None and str(expected) != str(password if password is not None else ""):
        raise LookupFailed(10, f"authentication failed (hdbcli stand-in: the password differs from the one of "
                               f"connection {key})")
    via_hana = str(connections[key].get("connectionType", "")).upper() in HANA_TYPES
    return Served(key, {"connectionID": f"{key} ({SERVED_BY})" if via_hana else key, **served})


def served_by(key: str, connection: dict[str, Any]) -> dict[str, Any] | None:
    """The database connection that serves the managed connection ``key``: a SQL database connection is its
    own; a HANA connection names it in ``connectionProperties.snapgraphDatabase``; anything else: None."""
    kind = str(connection.get("connectionType", "")).upper()
    if kind in DIALECTS:
        return {"connectionType": kind, "connectionProperties": connection["connectionProperties"]}
    if kind not in HANA_TYPES:
        return None
    served = connection["connectionProperties"].get(SERVED_BY)
    if not (isinstance(served, dict) and isinstance(served.get("connectionProperties"), dict)
            and str(served.get("connectionType", "")).upper() in DIALECTS):
        raise LookupFailed(-10709, f"hdbcli stand-in: HANA_DB connection {key} has no usable {SERVED_BY} "
                                   f"property: it must name the database that serves it, e.g. {SERVED_BY}: "
                                   "{connectionType: SQLITE, connectionProperties: {path: hana.db}} (connection "
                                   f"types: {', '.join(sorted(DIALECTS))})")
    return {"connectionType": str(served["connectionType"]).upper(),
            "connectionProperties": served["connectionProperties"]}


def _same_host(configured: Any, given: Any) -> bool:
    return configured is not None and str(configured).strip().lower() == str(given).strip().lower()


def _same_port(configured: Any, given: Any) -> bool:
    try:
        return configured is not None and int(str(configured)) == int(str(given))
    except ValueError:
        return str(configured) == str(given)


def _describe(props: dict[str, Any]) -> str:
    return f"host {props.get('host')!r}, port {props.get('port')!r}, user {props.get('user')!r}"


__all__ = ["HANA_TYPES", "SERVED_BY", "LookupFailed", "Served", "forget_connections", "register_connections",
           "served_by", "serving_database"]
