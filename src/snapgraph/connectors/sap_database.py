"""SAP's built-in database operators, run on the SQL connectors (descriptors and config checks:
:mod:`snapgraph.model.sap_database_builtins`; the config keys and what each promises: docs/connectors.md).

Each operator reads its SAP config, opens the database its connection is served by, and hands the work
to the SQL reader's or writer's parts (:mod:`snapgraph.connectors.sql`), so the protocols, the state and
the crash points (``sql_reader_published``, ``sql_writer_committed``) are the SQL connectors':

* **Table Consumer V3** reads the table of its ``source`` dataset (the schema's columns, else all), in the
  order of the schema's unique key, else of the table's only unique key, else of every column; **SQL
  Consumer V3** reads its ``native_sql_statement`` in the order of every column. Each page of ``fetchSize``
  rows is one table message on ``outTable`` with a ``com.sap.headers.batch`` header; with ``inTrigger``
  connected, reading starts at the first message there. With ``partitionType`` Logical both read SAP's
  partitions (:func:`partition_conditions`) as the SQL reader reads its own: one after the other, each
  in the same order, the state naming the current partition; the instances of a group with
  multiplicity N read every N-th partition each.
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
* **Initialize HANA Table V2** (Static mode) prepares ``tableName`` by its ``initMode`` once, when a run
  starts fresh (never after a restore), and forwards its input (:func:`setup_init_hana_table`). A writer
  downstream whose table it prepares, missing at load or created again by a Drop mode, checks the table at the
  first message instead of at load (:class:`TableCheck`).

Run HANA SQL V2 is :mod:`snapgraph.connectors.sap_hana_sql`.

The connection: a ``HANA_DB`` connection is served by the database its ``snapgraphDatabase`` property
names (the hdbcli stand-in's convention, :mod:`snapgraph.connectors.hdbcli_compat.registry`); a SQL
connection is that database. A HANA table owner (schema) is not used: the table is found by its name in
that database (for PostgreSQL, on the connection's ``schema`` search path). ``tableName`` is a HANA name,
``TABLE`` or ``SCHEMA.TABLE`` with each part plain or quoted (:func:`configured_table`): the table part
is used, quoted as read (its case kept), and a schema part is logged as not used.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from typing import Any, Generic, TypeVar

from snapgraph.api.operator_api import Api
from snapgraph.connectors.base import ConnectorConfigError, ConnectorContext, Setup, config_of
from snapgraph.connectors.databases import (
    DIALECTS,
    MARIADB,
    SQLITE,
    Dialect,
    dialect_of,
    open_connection,
    result_columns,
    transaction,
    unique_keys,
)
from snapgraph.connectors.hdbcli_compat.registry import HANA_TYPES, LookupFailed, served_by
from snapgraph.connectors.sql import (
    BATCH_HEADER,
    DEFAULT_BATCH,
    PagedQuery,
    Target,
    columns_of,
    instance_partitions,
    pick_columns,
    query_source,
    register_reader,
    sql_literal,
)
from snapgraph.model.builtin_operator import BuiltinOperator, config_switch
from snapgraph.model.sap_database_builtins import (
    DEFAULT_INIT_MODE,
    DEFAULT_PRODUCER_MODE,
    FIXED_SIZE,
    HANA_CONNECTION_TYPE,
    INIT_HANA_TABLE_V2,
    READ_HANA_TABLE_V2,
    SQL_CONSUMER_V3,
    TABLE_CONSUMER_V3,
    TABLE_PRODUCER_V3,
    TABLE_PRODUCER_V4,
    WRITE_HANA_TABLE_V2,
    LogicalPartitions,
    attribute_mappings,
    column_list,
    hana_columns,
    hana_table_name,
    logical_partitions,
    mapped_column,
    partition_number,
    remote_table_name,
    schema_attributes,
    schema_unique_key,
)
from snapgraph.model.types import DataTypeReference, VTypeTable

HANA_TABLE_HEADER = "com.sap.headers.hana.table"
#: Where SQL Consumer's statement takes a partition's condition (SAP's placeholder).
PARTITION_PLACEHOLDER = "$partition_specification"
DEFAULT_HANA_BATCH = 100
if HANA_CONNECTION_TYPE not in HANA_TYPES:  # pragma: no cover - the model's name and the stand-in's disagree
    raise ImportError(f"{HANA_CONNECTION_TYPE} is not a HANA connection type of the hdbcli stand-in ({HANA_TYPES})")


class SapConfigError(ConnectorConfigError):
    """One of SAP's operators that cannot run as configured: names the operator and the config key."""


def checked_config(api: Api, context: ConnectorContext, descriptor: BuiltinOperator) -> dict[str, Any]:
    """The operator's config, refused (naming the operator and each key) when the descriptor's checks fail."""
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


def configured_table(api: Api, config: Mapping[str, Any]) -> str:
    """The table a HANA operator's ``tableName`` names (its config check refused a name that does not
    parse): the last part of a qualified name. Its schema is not used, and the log says so: the table is
    found by its name in the database that serves the connection."""
    name = hana_table_name(config["tableName"])
    assert name is not None, "checked_config refuses a tableName that is no HANA table name"
    if name.schema is not None:
        api.logger.info("config 'tableName' %r: schema %r is not used: table %r is found in the database that "
                        "serves the connection", config["tableName"], name.schema, name.table)
    return name.table


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

def partition_conditions(dialect: Dialect, partitions: LogicalPartitions | None) -> list[str] | None:
    """The SQL condition of each of SAP's Logical partitions, in SAP's order (None without partitions).

    Each condition of the specification gives one filter per element — ``= element`` (LIST), or
    ``< e1``, ``>= e1 AND < e2``, ... (RANGE, its elements the ascending bounds) — and a default filter
    of the rest: the values equal to no element (LIST), the values from the last bound on (RANGE), and
    NULL. The partitions are the product of the conditions' filters, the first condition's varying
    slowest, then (with ``defaultPartition``) the rows that any condition's default filter holds: every
    row in exactly one partition. A column expression that names a column is quoted (names keep their
    case); STRING elements are string literals, NUMBER elements numbers, EXPRESSION elements SQL as written.
    """
    if partitions is None:
        return None
    filters: list[list[str]] = []
    defaults: list[str] = []
    for condition in partitions.conditions:
        name = mapped_column(condition.column_expression)
        column = dialect.quote(name) if name is not None else condition.column_expression
        values = [_partition_value(dialect, condition.datatype, element) for element in condition.elements]
        if condition.kind == "LIST":
            filters.append([f"{column} = {value}" for value in values])
            defaults.append(f"({' AND '.join(f'{column} <> {value}' for value in values)}) OR {column} IS NULL")
        else:
            bounds = [f"{column} < {values[0]}", *(f"{column} >= {low} AND {column} < {high}"
                                                   for low, high in zip(values, values[1:]))]
            filters.append(bounds)
            defaults.append(f"{column} >= {values[-1]} OR {column} IS NULL")
    conditions = [" AND ".join(f"({part})" for part in combination) for combination in itertools.product(*filters)]
    if partitions.default:
        conditions.append(" OR ".join(f"({default})" for default in defaults))
    return conditions


def _partition_value(dialect: Dialect, datatype: str, element: str) -> str:
    if datatype == "STRING":
        return sql_literal(dialect, element)
    if datatype == "NUMBER":
        return repr(partition_number(element))
    return f"({element})"  # EXPRESSION: SQL of the source database, as written


def _consumer_partitions(config: Mapping[str, Any], dialect: Dialect) -> list[str] | None:
    return partition_conditions(dialect, logical_partitions(config)[0])


def setup_table_consumer(api: Api, context: ConnectorContext) -> None:
    """Table Consumer V3: the table of ``source``, in pages of ``fetchSize`` rows on ``outTable``; with
    Logical partitions, this instance's share of them, one after the other."""
    operator = context.operator
    config = checked_config(api, context, TABLE_CONSUMER_V3)
    database = served_connection(operator, "serviceConnection", config["serviceConnection"])
    connection, dialect = open_connection(database), dialect_of(database)
    table = str(remote_table_name(config))
    source, what = dialect.quote(table), f"table {table!r}"
    available = columns_of(operator, connection, dialect, source, "source", what)
    columns = [str(attribute["name"]) for attribute in schema_attributes(config)] or available
    pick_columns(operator, "source", columns, available, what)
    key = schema_unique_key(config) or _table_key(connection, dialect, table)
    pick_columns(operator, "source", key, columns, f"the columns read from {what}")
    batch = int(config.get("fetchSize", DEFAULT_BATCH))

    def make(where: str, number: int | None) -> PagedQuery:
        return PagedQuery(connection, dialect, source, columns, key, batch, where=where, partition=number)

    queries = instance_partitions(operator, api, _consumer_partitions(config, dialect), "partitionSpecification", make)
    register_reader(api, context, queries, port="outTable", table_of=named_tables(api, columns),
                    trigger_port="inTrigger")


def setup_sql_consumer(api: Api, context: ConnectorContext) -> None:
    """SQL Consumer V3: the result of ``native_sql_statement``, ordered by every column, on ``outTable``;
    with Logical partitions, a partition's condition replaces ``$partition_specification`` in the
    statement as ``WHERE condition`` or, without that placeholder, filters the statement's result."""
    operator = context.operator
    config = checked_config(api, context, SQL_CONSUMER_V3)
    database = served_connection(operator, "serviceConnection", config["serviceConnection"])
    connection, dialect = open_connection(database), dialect_of(database)
    statement = str(config["native_sql_statement"])
    source = query_source(dialect, statement.replace(PARTITION_PLACEHOLDER, ""))
    columns = columns_of(operator, connection, dialect, source, "native_sql_statement", "the statement")
    batch = int(config.get("fetchSize", DEFAULT_BATCH))

    def make(where: str, number: int | None) -> PagedQuery:
        if PARTITION_PLACEHOLDER in statement:
            placed = statement.replace(PARTITION_PLACEHOLDER, f"WHERE ({where})" if where else "")
            return PagedQuery(connection, dialect, query_source(dialect, placed), columns, [], batch, partition=number)
        return PagedQuery(connection, dialect, source, columns, [], batch, where=where, partition=number)

    queries = instance_partitions(operator, api, _consumer_partitions(config, dialect), "partitionSpecification", make)
    register_reader(api, context, queries, port="outTable", table_of=named_tables(api, columns),
                    trigger_port="inTrigger")


def setup_read_hana_table(api: Api, context: ConnectorContext) -> None:
    """Read HANA Table V2 (Static): ``tableName`` in pages of ``batchSize`` rows (or all at once) on
    ``success``, each with a ``com.sap.headers.hana.table`` header."""
    operator = context.operator
    config = checked_config(api, context, READ_HANA_TABLE_V2)
    database = served_connection(operator, "connection", config["connection"])
    connection, dialect = open_connection(database), dialect_of(database)
    table = configured_table(api, config)
    source, what = dialect.quote(table), f"table {table!r}"
    available = columns_of(operator, connection, dialect, source, "tableName", what)
    columns = column_list(config.get("columns") or []) or available
    pick_columns(operator, "columns", columns, available, what)
    key = _table_key(connection, dialect, table)
    order = key if set(key) <= set(columns) else []
    batch = int(config.get("batchSize", DEFAULT_HANA_BATCH)) if config.get("batching") == FIXED_SIZE else None
    query = PagedQuery(connection, dialect, source, columns, order, batch)
    register_reader(api, context, [query], port="success", table_of=named_tables(api, columns),
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


def create_table_statement(operator: str, dialect: Dialect, table: str, attributes: Sequence[Mapping[str, Any]],
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


def initializers_upstream(context: ConnectorContext, database: dict[str, Any], table: str) -> list[str]:
    """The Initialize HANA Table V2 operators upstream of a writer that prepare its ``table`` (the same
    ``tableName``) while the table is not yet what the writer will find: it is missing now, or a Drop mode
    creates it again. [] when there is none: the writer checks its table at load."""
    modes = {process.name: str(process.config.get("initMode", DEFAULT_INIT_MODE)) for process in context.upstream
             if process.component == INIT_HANA_TABLE_V2.component
             and (name := hana_table_name(process.config.get("tableName"))) is not None and name.table == table}
    if not modes or any(mode.startswith("Drop") for mode in modes.values()):
        return sorted(modes)
    with closing(open_connection(database)) as connection:
        return [] if _table_exists(connection, dialect_of(database), table) else sorted(modes)


Checked = TypeVar("Checked")


class TableCheck(Generic[Checked]):
    """What a writer learns of its target table, and may refuse it for (``check``: its columns, its key, …):
    found at load, or, when an Initialize HANA Table V2 upstream prepares the table
    (:func:`initializers_upstream`), when the first message arrives. That message comes after the table is
    prepared: the initializer forwards its input only from its port callback, after its prestart ran the
    statements; after a restore it does not run again, and the table it prepared before is there. A check
    that fails then fails the operator with the message it gives at load."""

    def __init__(self, api: Api, table: str, initializers: list[str], check: Callable[[], Checked]) -> None:
        self.deferred = bool(initializers)
        self._check = check
        self._result: Checked | None = None
        if self.deferred:
            api.logger.info("table %r is prepared by Initialize HANA Table V2 upstream (%s): it is checked when the "
                            "first message arrives", table, ", ".join(initializers))
        else:
            self._result = check()

    def result(self) -> Checked:
        """The check's result, running the check the first time when it was deferred."""
        if self._result is None:
            self._result = self._check()
        return self._result

    def if_done(self) -> Checked | None:
        """The check's result when it ran (None: deferred, and no message came)."""
        return self._result


def _producer_setup(descriptor: BuiltinOperator) -> Setup:
    def setup(api: Api, context: ConnectorContext) -> None:
        """Table Producer: each message on ``inTable`` into the table of ``source``, committed per message.

        The table is checked (and with ``overwrite`` created when missing) at load, or at the first message
        when an Initialize HANA Table V2 upstream prepares it (:class:`TableCheck`); ``truncate`` and
        ``overwrite`` prepare it in prestart of a fresh run, or then at the first message, before the check."""
        operator, checkpoint = context.operator, context.checkpoint
        config = checked_config(api, context, descriptor)
        database = served_connection(operator, "serviceConnection", config["serviceConnection"])
        dialect = dialect_of(database)
        mode = str(config.get("mode", DEFAULT_PRODUCER_MODE))
        upsert = mode == "append" and config_switch(config.get("upsert")) is True
        table = str(remote_table_name(config))
        attributes = schema_attributes(config)
        create = create_table_statement(operator, dialect, table, attributes, schema_unique_key(config)) \
            if mode == "overwrite" else ""
        mappings = attribute_mappings(config)

        def check() -> Target:
            with closing(open_connection(database)) as connection:
                if create and not _table_exists(connection, dialect, table):
                    _in_transaction(connection, create)
                key = (schema_unique_key(config) or _table_key(connection, dialect, table)) if upsert else []
            if upsert and not key:
                raise SapConfigError(f"operator {operator!r}: config 'upsert': updating records by primary key "
                                     f"needs the key of {table!r}: declare it in the schema's uniqueKeys of config "
                                     "'source' (the table has no single unique key)")
            return Target(operator, api, database, table, [target for _, target in mappings] or None, key,
                          upsert=upsert, config_keys=("source", "attributeMappings", "upsert"))

        checked = TableCheck(api, table, initializers_upstream(context, database, table), check)
        projection = _Projection(operator, "inTable", mappings)
        if mode == "append":
            api.logger.info("mode append%s", " with upsert: rows overwrite rows of the same key" if upsert else
                            ": plain INSERTs; a replay after a recovery inserts its rows again (at-least-once)")
        prepare_pending = False

        def prepare() -> None:
            if mode == "append":
                return
            statements = [f"DROP TABLE {dialect.quote(table)}", create] if mode == "overwrite" \
                else [f"DELETE FROM {dialect.quote(table)}"]
            with closing(open_connection(database)) as connection:
                _in_transaction(connection, *statements)

        def prepare_on_fresh_run() -> None:
            nonlocal prepare_pending
            if checked.deferred:
                prepare_pending = True
            else:
                prepare()

        def on_input(msg_id: bytes, header: Any, body: Any) -> None:
            nonlocal prepare_pending
            if prepare_pending:
                prepare()
                prepare_pending = False
            target = checked.result()
            rows = projection.rows(api, target, body)
            with target.transaction() as cursor:
                target.insert(cursor, rows)
            checkpoint("sql_writer_committed")
            if api.is_outport_connected["out"]:
                batch = header.get(BATCH_HEADER) if header is not None else None
                api.outputs.out.publish(table, {BATCH_HEADER: list(batch)} if batch is not None else None)

        def shutdown() -> None:
            target = checked.if_done()
            if target is not None:
                target.connection.close()

        on_fresh_run(api, context, prepare_on_fresh_run)
        api.set_port_callback("inTable", on_input)
        api.set_shutdown(shutdown)

    return setup


def on_fresh_run(api: Api, context: ConnectorContext, action: Callable[[], None]) -> None:
    """Run ``action`` in prestart when the run starts fresh, never after a restore (a table prepared then
    holds the rows of the completed epochs, which are not replayed). With snapshots the operator is
    stateful only to learn of a restore: its state is empty."""
    restored = False

    def restore(epoch: str, state: bytes) -> None:
        nonlocal restored
        restored = True

    def prestart() -> None:
        if not restored:
            action()

    if context.snapshots_on:
        api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))
        api.set_serialize_callback(lambda epoch: b"")
        api.set_restore_callback(restore)
    api.set_prestart(prestart)


def _in_transaction(connection: Any, *statements: str) -> None:
    with transaction(connection) as cursor:
        for statement in statements:
            cursor.execute(statement)


def setup_write_hana_table(api: Api, context: ConnectorContext) -> None:
    """Write HANA Table V2 (Static): each message on ``input`` into ``tableName`` by INSERT or UPSERT. The
    table (its columns; for UPSERT its primary key) is checked at load, or at the first message when an
    Initialize HANA Table V2 upstream prepares it (:class:`TableCheck`)."""
    operator, checkpoint = context.operator, context.checkpoint
    config = checked_config(api, context, WRITE_HANA_TABLE_V2)
    database = served_connection(operator, "connection", config["connection"])
    table = configured_table(api, config)
    upsert = str(config.get("statementType", "INSERT")).upper() == "UPSERT"

    def check() -> tuple[Target, list[str]]:
        key: list[str] = []
        if upsert:
            with closing(open_connection(database)) as connection:
                dialect = dialect_of(database)
                columns_of(operator, connection, dialect, dialect.quote(table), "tableName",
                           f"the target table {table!r}")
                key = _table_key(connection, dialect, table)
            if not key:
                raise SapConfigError(f"operator {operator!r}: config 'statementType': UPSERT writes by the primary "
                                     f"key of {table!r}, but it has none (or several unique keys)")
        return Target(operator, api, database, table, None, key, upsert=upsert,
                      config_keys=("tableName", "tableName", "statementType")), key

    checked = TableCheck(api, table, initializers_upstream(context, database, table), check)
    if not upsert:
        api.logger.info("statementType INSERT: a replay after a recovery inserts its rows again (at-least-once)")
    affected = named_tables(api, ["received", "affected"])

    def on_input(msg_id: bytes, header: Any, body: Any) -> None:
        target, key = checked.result()
        rows = target.rows_of(body)
        with target.transaction() as cursor:
            target.insert(cursor, rows)
        checkpoint("sql_writer_committed")
        if api.is_outport_connected["success"]:
            # The input's batch header goes on, so a Graph Terminator after it waits for the last batch
            # (a message without one would end the graph at the first write).
            out: dict[str, Any] = {HANA_TABLE_HEADER: [table, target.columns, key]}
            batch = header.get(BATCH_HEADER) if header is not None else None
            if batch is not None:
                out[BATCH_HEADER] = list(batch)
            api.outputs.success.publish(affected([[len(rows), len(rows)]]), out)

    def shutdown() -> None:
        done = checked.if_done()
        if done is not None:
            done[0].connection.close()

    api.set_port_callback("input", on_input)
    api.set_shutdown(shutdown)


def init_statements(dialect: Dialect, table: str, mode: str, create: str, exists: bool) -> list[str]:
    """What Initialize HANA Table's ``initMode`` runs on ``table``: a missing table is only created; an
    existing one is left as it is (Create), emptied (Truncate: ``TRUNCATE TABLE``, on SQLite ``DELETE``;
    Delete: ``DELETE``) or dropped — ``RESTRICT`` or ``CASCADE`` where the database takes them, not on
    SQLite — and created again (the Drop modes)."""
    quoted = dialect.quote(table)
    if not exists:
        return [create]
    if mode == "Truncate":
        return [f"DELETE FROM {quoted}" if dialect is SQLITE else f"TRUNCATE TABLE {quoted}"]
    if mode == "Delete":
        return [f"DELETE FROM {quoted}"]
    if mode.startswith("Drop"):
        option = "" if dialect is SQLITE else " CASCADE" if "Cascade" in mode else " RESTRICT"
        return [f"DROP TABLE {quoted}{option}", create]
    return []


def setup_init_hana_table(api: Api, context: ConnectorContext) -> None:
    """Initialize HANA Table V2 (Static), in this order:

    1. *Load*: the statements of ``initMode`` are chosen (:func:`init_statements`); an existing table
       is compared with ``tableColumns`` (except for the Drop modes, which create it again), and a table
       that differs, or a missing one without ``tableColumns``, is refused naming the key.
    2. *Prestart of a fresh run* (never after a restore, :func:`on_fresh_run`): the statements run in one
       transaction; with ``outputInitializedTable`` an empty table with the ``com.sap.headers.hana.table``
       header ``[table, [columns], [primary key]]`` goes out on ``success``.
    3. *Port callback*: each message on ``input`` is forwarded on ``success`` as it came (the table is
       initialized before any input is delivered).
    """
    operator = context.operator
    config = checked_config(api, context, INIT_HANA_TABLE_V2)
    database = served_connection(operator, "connection", config["connection"])
    dialect = dialect_of(database)
    table = configured_table(api, config)
    mode = str(config.get("initMode", DEFAULT_INIT_MODE))
    attributes, _ = hana_columns(config.get("tableColumns"))
    key = column_list(config.get("primaryKey") or []) or []
    create = create_table_statement(operator, dialect, table, attributes, key) if attributes else ""
    with closing(open_connection(database)) as connection:
        exists = _table_exists(connection, dialect, table)
        existing = result_columns(connection, dialect, dialect.quote(table)) if exists else []
    if not exists and not create:
        raise SapConfigError(f"operator {operator!r}: config 'tableColumns' is empty, but table {table!r} does not "
                             "exist: the columns are needed to create it")
    wanted = [str(attribute["name"]) for attribute in attributes]
    if exists and wanted and not mode.startswith("Drop") and sorted(wanted) != sorted(existing):
        raise SapConfigError(f"operator {operator!r}: config 'tableColumns': table {table!r} exists with other "
                             f"columns ({', '.join(existing)}) than configured ({', '.join(wanted)}); initMode "
                             f"{mode!r} keeps the table (a Drop mode creates it again)")
    statements = init_statements(dialect, table, mode, create, exists)
    header = {HANA_TABLE_HEADER: [table, wanted or existing, key]}
    announce = config_switch(config.get("outputInitializedTable")) is True

    def initialize() -> None:
        if statements:
            with closing(open_connection(database)) as connection:
                _in_transaction(connection, *statements)
        api.logger.info("table %r initialized (%s)", table, "; ".join(statements) or "it exists: nothing to do")
        if announce:
            api.outputs.success.publish(named_tables(api, wanted or existing)([]), header)

    def on_input(msg_id: bytes, header: Any, body: Any) -> None:
        api.outputs.success.publish(body.get(), header)

    on_fresh_run(api, context, initialize)
    api.set_port_callback("input", on_input)


__all__ = ["HANA_TABLE_HEADER", "PARTITION_PLACEHOLDER", "SapConfigError", "TableCheck", "checked_config",
           "configured_table", "create_table_statement", "init_statements", "initializers_upstream", "named_tables",
           "on_fresh_run", "partition_conditions", "served_connection", "setup_init_hana_table",
           "setup_read_hana_table", "setup_sql_consumer", "setup_table_consumer", "setup_write_hana_table"]

#: component id -> setup (collected by snapgraph.connectors.registry)
BEHAVIOURS: dict[str, Setup] = {
    TABLE_CONSUMER_V3.component: setup_table_consumer,
    SQL_CONSUMER_V3.component: setup_sql_consumer,
    TABLE_PRODUCER_V3.component: _producer_setup(TABLE_PRODUCER_V3),
    TABLE_PRODUCER_V4.component: _producer_setup(TABLE_PRODUCER_V4),
    READ_HANA_TABLE_V2.component: setup_read_hana_table,
    WRITE_HANA_TABLE_V2.component: setup_write_hana_table,
    INIT_HANA_TABLE_V2.component: setup_init_hana_table,
}
