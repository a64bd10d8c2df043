"""A stand-in for SAP's HANA driver ``hdbcli``, so Gen2 scripts written for SAP HANA run unchanged.

SAP's Gen2 scripts talk to HANA with ``from hdbcli import dbapi`` and ``dbapi.connect(address=...,
port=..., user=..., password=..., sslValidateCertificate=False, ...)``, passing the properties of their
managed connection. Inside a snapgraph run that import finds the package in :data:`IMPORT_FOLDER`
(``hdbcli/``, whose ``dbapi`` is :mod:`.dbapi`) — unless SAP's real ``hdbcli`` is installed, which always
wins: the runtime appends the folder at the end of ``sys.path``, and only when no ``hdbcli`` is importable
(:mod:`snapgraph.runtime.scripts`).

* :mod:`.registry`: which managed connection a ``connect`` means (by host, port and user), and which
  database serves it (a ``HANA_DB`` connection's ``snapgraphDatabase``, or a database connection itself);
* :mod:`.translate`: HANA SQL for SQLite, PostgreSQL and MariaDB, and what is refused;
* :mod:`.dbapi`: hdbcli's connection and cursor API over the serving database's driver.
"""

from pathlib import Path

from snapgraph.connectors.hdbcli_compat.registry import forget_connections, register_connections

#: the folder that holds the ``hdbcli`` package scripts import
IMPORT_FOLDER = str(Path(__file__).resolve().parent)

__all__ = ["IMPORT_FOLDER", "forget_connections", "register_connections"]
