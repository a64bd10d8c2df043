"""SAP's built-in database operators, run on the SQL connectors (descriptors and config checks:
:mod:`snapgraph.model.sap_database_builtins`; the config keys and what each promises: docs/connectors.md).

Each operator reads its SAP config, opens the database its connection is served by, and hands the work
to the SQL reader's or writer's parts (:mod:`snapgraph.connectors.sql`), so the protocols, the state and
the crash points (``sql_reader_published``, ``sql_writer_committed``) are the SQL connectors':

* **Table Consumer V3** reads the table of its ``source`` dataset (the schema's columns, else all), in the
  order of the schema's unique key, else of the table's only unique key, else of every column; **SQL
  Consumer V3** reads its ``native_sql_statement`` in the order of every column. Each page of ``fetchSize``
  rows is one table message on ``outTable`` with a ``com.sap.headers.batch`` header; with ``inTrigger``
  connected, reading starts at the first message there.
* **Read HANA Table V2** (Static mode) reads ``tableName`` in the same order, in pages of ``batchSize``
  rows (``batching`` Fixed size) or all at once (None), on ``success``, each message with a
  ``com.sap.headers.hana.table`` header ``[table, [columns], [primary key]]`` besides the batch header.
* **Table Producer V3/V4** writes each message on ``inTable`` into the table of its ``source`` dataset,
  committed per message: ``append`` inserts (with ``upsert``: overwrites by the key), ``truncate``
  empties the table and ``overwrite`` drops and creates it from the schema, both once, when a run starts
  fresh (never after a restore: the rows of completed epochs are not replayed). ``attributeMappings``
  picks the input column of each target column. After each message it sends the table's name on ``out``
  with the message's batch header.
* **Write HANA Table V2** (Static mode) writes each message on ``input`` into ``tableName``: ``INSERT``, or
  ``UPSERT`` by the table's primary key; on ``success`` it sends ``[[received, affected]]`` with a
  ``com.sap.headers.hana.table`` header.

The connection: a ``HANA_DB`` connection is served by the database its ``snapgraphDatabase`` property
names (the hdbcli stand-in's convention, :mod:`snapgraph.connectors.hdbcli_compat.registry`); a SQL
connection is that database. A HANA table owner (schema) is not used: the table is found by its name in
that database (for PostgreSQL, on the connection's ``schema`` search path).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import closing
from typing import Any

from snapgraph.api.operator_api import Api
from snapgraph.connectors.base import ConnectorConfigError, ConnectorContext, Setup, config_of
from snapgraph.connectors.databases import (
    DIALECTS,
    MARIADB,
    Dialect,
    dialect_of,
    open_connection,
    result_columns,
    unique_keys,
)
from snapgraph.connectors.hdbcli_compat.registry import HANA_TYPES, LookupFailed, served_by
from snapgraph.connectors.sql import (
    BATCH_HEADER,
    DEFAULT_BATCH,
    PagedQuery,
    Target,
    columns_of,
    pick_columns,
    query_source,
    register_reader,
)
from snapgraph.model.builtin_operator import BuiltinOperator, config_switch
from snapgraph.model.sap_database_builtins import (
    DEFAULT_PRODUCER_MODE,
    FIXED_SIZE,
    HANA_CONNECTION_TYPE,
    READ_HANA_TABLE_V2,
    SQL_CONSUMER_V3,
    TABLE_CONSUMER_V3,
    TABLE_PRODUCER_V3,
    TABLE_PRODUCER_V4,
    WRITE_HANA_TABLE_V2,
    attribute_mappings,
    column_list,
    remote_table_name,
    schema_attributes,
    schema_unique_key,
)
from snapgraph.model.types import DataTypeReference, VTypeTable

HANA_TABLE_HEADER = "com.sap.headers.hana.table"
DEFAULT_HANA_BATCH = 100
if HANA_CONNECTION_TYPE not in HANA_TYPES:  # pragma: no cover - the model's name and the stand-in's disagree
    raise ImportError(f"{HANA_CONNECTION_TYPE} is not a HANA connection type of the hdbcli stand-in ({HANA_TYPES})")


class SapConfigError(ConnectorConfigError):
    """One of SAP's operators that cannot run as configured: names the operator and the config key."""





def _checked_config(api: Api, context: ConnectorContext, descriptor: BuiltinOperator) -> dict[str, Any]:
    config = config_of(api)
    problems = descriptor.config_problems(config)
    if problems:
        raise SapConfigError(f"operator {context.operator!r} ({descriptor.title}): " + "; ".join(problems))
    return config


def served_connection(operator: str, key: str, connection: Mapping[str, Any]) -> dict[str, Any]:
    """The database connection behind the managed connection under config ``key``: a SQL connection
    itself, a ``HANA_DB`` connection the database its ``snapgraphDatabase`` property names."""
    connection_id = str(connection.get("connectionID", "?"))
    kind = str(connection.get("connectionType", "")).upper()
    if kind in DIALECTS:
        return dict(connection)
    try:
        served = served_by(connection_id, dict(connection)) if kind in HANA_TYPES else None
    except LookupFailed as err:
        raise SapConfigError(f"operator {operator!r}: config {key!r}: {err}") from err
    if served is None:
        raise SapConfigError(f"operator {operator!r}: config {key!r}: connection {connection_id!r} of type "
                             f"{kind or '(none)'!r} is no database snapgraph serves")
    return {"connectionID": f"{connection_id} (snapgraphDatabase)", **served}


def _table_key(connection: Any, dialect: Dialect, table: str) -> list[str]:
    """The table's only unique key ([] when it has none or several: then every column orders)."""
    keys = unique_keys(connection, dialect, table)
    return list(keys[0]) if len(keys) == 1 else []


def named_tables(api: Api, columns: list[str]) -> Callable[[list[list[Any]]], Any]:
    """``rows -> api.Table`` typed with a dynamic table type of ``columns`` (inferred from the first row's
    values; pages whose first rows hold values of the same Python types share one type)."""
    known: dict[tuple[type, ...], DataTypeReference] = {}

    def table_of(rows: list[list[Any]]) -> Any:
        first = rows[0] if rows else None
        kinds = tuple(map(type, first)) if first is not None else ()
        reference = known.get(kinds)
        if reference is None:
            reference = known[kinds] = api.type_context.infer_table_type(first, columns)
        return api.Table(rows, reference.type_id)

    return table_of


# -- the readers ------------------------------------------------------------------------------------------

def setup_table_consumer(api: Api, context: ConnectorContext) -> None:
    """Table Consumer V3: the table of ``source``, in pages of ``fetchSize`` rows on ``outTable``."""
    operator = context.operator
    config = _checked_config(api, context, TABLE_CONSUMER_V3)
    database = served_connection(operator, "serviceConnection", config["serviceConnection"])
    connection, dialect = open_connection(database), dialect_of(database)
    table = str(remote_table_name(config))
    source, what = dialect.quote(table), f"table {table!r}"
    available = columns_of(operator, connection, dialect, source, "source", what)
    columns = [str(attribute["name"]) for attribute in schema_attributes(config)] or available
    pick_columns(operator, "source", columns, available, what)
    key = schema_unique_key(config) or _table_key(connection, dialect, table)
    pick_columns(operator, "source", key, columns, f"the columns read from {what}")
    query = PagedQuery(connection, dialect, source, columns, key, int(config.get("fetchSize", DEFAULT_BATCH)))
    register_reader(api, context, query, port="outTable", table_of=named_tables(api, columns),
                    trigger_port="inTrigger")


def setup_sql_consumer(api: Api, context: ConnectorContext) -> None:
    """SQL Consumer V3: the result of ``native_sql_statement``, ordered by every column, on ``outTable``."""
    operator = context.operator
    config = _checked_config(api, context, SQL_CONSUMER_V3)
    database = served_connection(operator, "serviceConnection", config["serviceConnection"])
    connection, dialect = open_connection(database), dialect_of(database)
    source = query_source(dialect, str(config["native_sql_statement"]))
    columns = columns_of(operator, connection, dialect, source, "native_sql_statement", "the statement")
    query = PagedQuery(connection, dialect, source, columns, [], int(config.get("fetchSize", DEFAULT_BATCH)))
    register_reader(api, context, query, port="outTable", table_of=named_tables(api, columns),
                    trigger_port="inTrigger")


def setup_read_hana_table(api: Api, context: ConnectorContext) -> None:
    """Read HANA Table V2 (Static): ``tableName`` in pages of ``batchSize`` rows (or all at once) on
    ``success``, each with a ``com.sap.headers.hana.table`` header."""
    operator = context.operator
    config = _checked_config(api, context, READ_HANA_TABLE_V2)
    database = served_connection(operator, "connection", config["connection"])
    connection, dialect = open_connection(database), dialect_of(database)
    table = str(config["tableName"]).strip()
    source, what = dialect.quote(table), f"table {table!r}"
    available = columns_of(operator, connection, dialect, source, "tableName", what)
    columns = column_list(config.get("columns") or []) or available
    pick_columns(operator, "columns", columns, available, what)
    key = _table_key(connection, dialect, table)
    order = key if set(key) <= set(columns) else []
    batch = int(config.get("batchSize", DEFAULT_HANA_BATCH)) if config.get("batching") == FIXED_SIZE else None
    query = PagedQuery(connection, dialect, source, columns, order, batch)
    register_reader(api, context, query, port="success", table_of=named_tables(api, columns),
                    headers={HANA_TABLE_HEADER: [table, columns, key]})


# -- the writers ------------------------------------------------------------------------------------------

def _input_columns(api: Api, body: Any) -> list[str] | None:
    """The column names of a table message's type (None: untyped, or no table type)."""
    reference = body.get().get_type_reference()
    if reference is None:
        return None
    try:
        vtype = api.type_context.get_vtype(reference)
    except KeyError:
        return None
    return list(vtype.columns) if isinstance(vtype, VTypeTable) else None


class _Projection:
    """The input column feeding each target column, by ``attributeMappings`` (by position without it)."""

    def __init__(self, operator: str, port: str, mappings: list[tuple[str, str]]) -> None:
        self.operator = operator
        self.port = port
        self.mappings = mappings
        self.known: dict[tuple[str, ...], list[int]] = {}

    def rows(self, api: Api, target: Target, body: Any) -> list[list[Any]]:
        if not self.mappings:
            return target.rows_of(body, self.port)
        names = _input_columns(api, body)
        if names is None:
            raise ValueError(f"operator {self.operator!r}: a message on port {self.port!r} is a table without "
                             "column names (no table type), so config 'attributeMappings' cannot find its columns")
        positions = self.known.get(tuple(names))
        if positions is None:
            positions = self.known[tuple(names)] = [self._position(names, index, column)
                                                    for index, (column, _) in enumerate(self.mappings)]
        return [[row[i] for i in positions] for row in body.get()]

    def _position(self, names: list[str], index: int, column: str) -> int:
        if column in names:
            return names.index(column)
        folded = [i for i, name in enumerate(names) if name.lower() == column.lower()]
        if len(folded) == 1:
            return folded[0]
        raise ValueError(f"operator {self.operator!r}: config 'attributeMappings[{index}]': the tables on port "
                         f"{self.port!r} have no column {column!r} (their columns: {', '.join(names)})")


_SQL_TYPES = {  # SAP's dataset datatype -> column type (None: by length or precision)
    "STRING": None, "INTEGER": "INTEGER", "INT32": "INTEGER", "INT64": "BIGINT", "BIGINT": "BIGINT",
    "INT16": "SMALLINT", "INT8": "SMALLINT", "SMALLINT": "SMALLINT", "TINYINT": "SMALLINT",
    "DECIMAL": None, "FLOATING": "DOUBLE PRECISION", "FLOAT": "DOUBLE PRECISION", "DOUBLE": "DOUBLE PRECISION",
    "REAL": "REAL", "DATE": "DATE", "TIME": "TIME", "DATETIME": "TIMESTAMP", "TIMESTAMP": "TIMESTAMP",
    "BOOLEAN": "BOOLEAN", "BINARY": "BINARY", "BLOB": "BINARY", "CLOB": "TEXT",
}


def _column_type(operator: str, dialect: Dialect, index: int, attribute: Mapping[str, Any]) -> str:
    datatype = str(attribute.get("datatype") or attribute.get("templateType") or "").upper()
    if datatype not in _SQL_TYPES:
        raise SapConfigError(f"operator {operator!r}: config 'source': schema attribute {index} "
                             f"({attribute.get('name')!r}) has datatype {datatype or '(none)'!r}, which snapgraph "
                             f"cannot create a column of (known: {', '.join(sorted(_SQL_TYPES))})")
    known = _SQL_TYPES[datatype]
    if datatype == "STRING":
        length = attribute.get("length")
        return f"VARCHAR({int(length)})" if isinstance(length, int) and length > 0 else "TEXT"
    if datatype == "DECIMAL":
        precision, scale = attribute.get("precision"), attribute.get("scale")
        return f"DECIMAL({int(precision)}, {int(scale or 0)})" if isinstance(precision, int) else "DECIMAL(38, 10)"
    if known == "BINARY":
        return dialect.binary_type
    if known == "DOUBLE PRECISION" and dialect is MARIADB:
        return "DOUBLE"
    if known == "TIMESTAMP" and dialect is MARIADB:
        return "DATETIME(6)"
    assert known is not None
    return known


def create_table_statement(operator: str, dialect: Dialect, table: str, attributes: list[Mapping[str, Any]],
                           key: list[str]) -> str:
    """``CREATE TABLE`` of the dataset schema's ``attributes``, with ``key`` as its primary key."""
    columns = [f"{dialect.quote(str(a['name']))} {_column_type(operator, dialect, i, a)}"
               for i, a in enumerate(attributes)]
    if key:
        columns.append(f"PRIMARY KEY ({dialect.quote_all(key)})")
    return f"CREATE TABLE {dialect.quote(table)} ({', '.join(columns)})"


def _table_exists(connection: Any, dialect: Dialect, table: str) -> bool:
    try:
        result_columns(connection, dialect, dialect.quote(table))
        return True
    except Exception:  # the driver's error for an unknown table
        return False


def _producer_setup(descriptor: BuiltinOperator) -> Setup:
    def setup(api: Api, context: ConnectorContext) -> None:
        """Table Producer: each message on ``inTable`` into the table of ``source``, committed per message."""
        operator, checkpoint = context.operator, context.checkpoint
        config = _checked_config(api, context, descriptor)
        database = served_connection(operator, "serviceConnection", config["serviceConnection"])
        dialect = dialect_of(database)
        mode = str(config.get("mode", DEFAULT_PRODUCER_MODE))
        upsert = mode == "append" and config_switch(config.get("upsert")) is True
        table = str(remote_table_name(config))
        attributes = schema_attributes(config)
        create = create_table_statement(operator, dialect, table, attributes, schema_unique_key(config)) \
            if mode == "overwrite" else ""
        with closing(open_connection(database)) as connection:
            if create and not _table_exists(connection, dialect, table):
                _in_transaction(connection, create)
            key = (schema_unique_key(config) or _table_key(connection, dialect, table)) if upsert else []
        if upsert and not key:
            raise SapConfigError(f"operator {operator!r}: config 'upsert': updating records by primary key needs "
                                 f"the key of {table!r}: declare it in the schema's uniqueKeys of config 'source' "
                                 "(the table has no single unique key)")
        mappings = attribute_mappings(config)
        target = Target(operator, api, database, table, [target for _, target in mappings] or None, key,
                        upsert=upsert, config_keys=("source", "attributeMappings", "upsert"))
        projection = _Projection(operator, "inTable", mappings)
        restored = False
        if mode == "append":
            api.logger.info("mode append%s", " with upsert: rows overwrite rows of the same key" if upsert else
                            ": plain INSERTs; a replay after a recovery inserts its rows again (at-least-once)")

        def restore(epoch: str, state: bytes) -> None:
            nonlocal restored
            restored = True

        def prestart() -> None:
            if restored or mode == "append":
                return  # after a restore the target holds the completed epochs' rows, which are not replayed
            statements = [f"DROP TABLE {dialect.quote(table)}", create] if mode == "overwrite" \
                else [f"DELETE FROM {dialect.quote(table)}"]
            _in_transaction(target.connection, *statements)

        def on_input(msg_id: bytes, header: Any, body: Any) -> None:
            rows = projection.rows(api, target, body)
            with target.transaction() as cursor:
                target.insert(cursor, rows)
            checkpoint("sql_writer_committed")
            if api.is_outport_connected["out"]:
                batch = header.get(BATCH_HEADER) if header is not None else None
                api.outputs.out.publish(table, {BATCH_HEADER: list(batch)} if batch is not None else None)

        if context.snapshots_on:  # stateful only to learn of a restore: its state is empty
            api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))
            api.set_serialize_callback(lambda epoch: b"")
            api.set_restore_callback(restore)
        api.set_prestart(prestart)
        api.set_port_callback("inTable", on_input)
        api.set_shutdown(target.connection.close)

    return setup


def _in_transaction(connection: Any, *statements: str) -> None:
    cursor = connection.cursor()
    try:
        for statement in statements:
            cursor.execute(statement)
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    finally:
        cursor.close()


def setup_write_hana_table(api: Api, context: ConnectorContext) -> None:
    """Write HANA Table V2 (Static): each message on ``input`` into ``tableName`` by INSERT or UPSERT."""
    operator, checkpoint = context.operator, context.checkpoint
    config = _checked_config(api, context, WRITE_HANA_TABLE_V2)
    database = served_connection(operator, "connection", config["connection"])
    table = str(config["tableName"]).strip()
    upsert = str(config.get("statementType", "INSERT")).upper() == "UPSERT"
    key: list[str] = []
    if upsert:
        with closing(open_connection(database)) as connection:
            dialect = dialect_of(database)
            columns_of(operator, connection, dialect, dialect.quote(table), "tableName", f"the target table {table!r}")
            key = _table_key(connection, dialect, table)
        if not key:
            raise SapConfigError(f"operator {operator!r}: config 'statementType': UPSERT writes by the primary key "
                                 f"of {table!r}, but it has none (or several unique keys)")
    target = Target(operator, api, database, table, None, key, upsert=upsert,
                    config_keys=("tableName", "tableName", "statementType"))
    if not upsert:
        api.logger.info("statementType INSERT: a replay after a recovery inserts its rows again (at-least-once)")
    affected = named_tables(api, ["received", "affected"])

    def on_input(msg_id: bytes, header: Any, body: Any) -> None:
        rows = target.rows_of(body)
        with target.transaction() as cursor:
            target.insert(cursor, rows)
        checkpoint("sql_writer_committed")
        if api.is_outport_connected["success"]:
            api.outputs.success.publish(affected([[len(rows), len(rows)]]),
                                        {HANA_TABLE_HEADER: [table, target.columns, key]})

    api.set_port_callback("input", on_input)
    api.set_shutdown(target.connection.close)


__all__ = ["HANA_TABLE_HEADER", "SapConfigError", "create_table_statement", "named_tables", "served_connection",
           "setup_read_hana_table", "setup_sql_consumer", "setup_table_consumer", "setup_write_hana_table"]

#: component id -> setup (collected by snapgraph.connectors.registry)
BEHAVIOURS: dict[str, Setup] = {
    TABLE_CONSUMER_V3.component: setup_table_consumer,
    SQL_CONSUMER_V3.component: setup_sql_consumer,
    TABLE_PRODUCER_V3.component: _producer_setup(TABLE_PRODUCER_V3),
    TABLE_PRODUCER_V4.component: _producer_setup(TABLE_PRODUCER_V4),
    READ_HANA_TABLE_V2.component: setup_read_hana_table,
    WRITE_HANA_TABLE_V2.component: setup_write_hana_table,
}
