"""``hdbcli.dbapi``: the names of :mod:`snapgraph.connectors.hdbcli_compat.dbapi`, so that a script's
``from hdbcli import dbapi`` and snapgraph's own module share one implementation (and one registry)."""

from snapgraph.connectors.hdbcli_compat.dbapi import (
    IGNORED_PROPERTIES,
    Connection,
    Cursor,
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Warning,
    apilevel,
    connect,
    paramstyle,
    threadsafety,
)

__all__ = ["Connection", "Cursor", "DataError", "DatabaseError", "Error", "IGNORED_PROPERTIES", "IntegrityError",
           "InterfaceError", "InternalError", "NotSupportedError", "OperationalError", "ProgrammingError", "Warning",
           "apilevel", "connect", "paramstyle", "threadsafety"]
