"""The examples' database driver: SQLite (the embedded default) or PostgreSQL.

Gen2 scripts on SAP DI talk to HANA through hdbcli; here the managed
connection's ``connectionType`` picks the driver. Scripts import this module
because it sits beside the graph file.
"""

import sqlite3
from pathlib import Path


def connect(connection):
    """A DB-API connection for a resolved managed connection (``api.config.connection``)."""
    kind = connection.get("connectionType", "SQLITE").upper()
    props = connection["connectionProperties"]
    if kind == "SQLITE":
        path = Path(props["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        return conn
    if kind == "POSTGRES":
        import psycopg

        schema = props.get("schema")
        return psycopg.connect(host=props["host"], port=props["port"], user=props["user"],
                               password=props.get("password") or None, dbname=props["database"],
                               options=f"-c search_path={schema}" if schema else None)
    raise ValueError(f"unknown connectionType {kind!r} (expected SQLITE or POSTGRES)")


def sql(conn, statement):
    """``?`` placeholders (hdbcli and sqlite3 style) in the driver's own style."""
    if isinstance(conn, sqlite3.Connection):
        return statement
    return statement.replace("?", "%s")
