"""The SQL reader and writer: built-in operators over SQLite, PostgreSQL and MariaDB.

Both are written against the Gen2 ``api`` object exactly as a user script is (their descriptors,
``snapgraph.sql.reader`` / ``snapgraph.sql.writer``, are in :mod:`snapgraph.model.builtins`; the config
keys and what each promises are in docs/connectors.md). The runtime calls :func:`setup_sql_reader` or
:func:`setup_sql_writer` where a script body would run, with a ``checkpoint(step)`` function that names
the crash points below for ``SNAPGRAPH_FAULTS`` (this package does not import the snapshot layer).

**The reader** reads a table or a query in the order of its ``key`` column(s), by keyset pagination:
``WHERE (key) > (last key read) ORDER BY key LIMIT batch + 1`` (never OFFSET: the position stays right
when rows before it are deleted, and a page costs the same at any depth). Each page of ``batch`` rows is
one ``api.Table`` message with a ``com.sap.headers.batch`` header ``[index, isLast, 0, batch, "rows"]``;
the one row beyond the page tells whether it is the last. Its state is the last key published and the
batch index, so after a restore it continues right after the rows its snapshot covered: replayable as
long as new rows arrive with greater keys. When the source is exhausted the timer ends (returns -1), or
with ``streaming: true`` it polls again every ``poll`` seconds. Crash point: ``sql_reader_published``
(a batch published, the position not yet advanced).

*Partitions* (``partitions``: a count N with ``partition_by``, or a list of SQL conditions) split the
rows; the reader reads them one after the other, each in key order as above, in this order:

1. *Load*: the conditions are made — with a count, partition i holds the rows whose integer
   ``partition_by`` is i modulo N (:func:`modulo_conditions`: a row's partition depends on its own value,
   never on what the table holds at load, so every instance of a group and every restart agree) — and
   this instance keeps partition n when n modulo ``api.multiplicity`` is its ``api.multiplicity_index``
   (:func:`instance_partitions`); each kept one is run for no row, so a bad condition fails the load.
2. *Timer*: a page of the current partition, keyset-paged within its condition; its last page moves the
   position to the next partition (key and offset reset). isLast is set on the last page of the last
   partition only; a partition that turns out empty after the last page of the one before publishes
   nothing, unless it is the last (then one empty last page ends the input).
3. *serialize / restore*: the state is the current partition and the position in it, with the list of
   partition numbers; a restore skips the completed partitions, resumes the current one after its last
   key, and refuses a state taken with other partitions.

**The writer** writes the rows of each message on ``input`` into the target table, in one of three modes:

* ``append``: a plain ``INSERT`` committed per message. A replay after a recovery inserts its rows again:
  at-least-once, and it says so when it starts.
* ``upsert``: ``INSERT ... ON CONFLICT (key) DO UPDATE`` (SQLite, PostgreSQL) / ``ON DUPLICATE KEY UPDATE``
  (MariaDB) committed per message; the key must be the target's primary key or a unique key. A replay
  writes the same rows over themselves: idempotent, exactly-once with a replayable source and
  deterministic processing.
* ``transactional``: the rows of an epoch reach the target exactly once, by this protocol (the code below
  follows it in this order). Two tables beside the target, created if missing and never others:
  ``<target>__sg_staged`` (writer, epoch, seq, a pickled chunk of rows) and ``<target>__sg_epochs`` (writer,
  newest epoch applied); "writer" is ``<graph>/<operator>``, so several writers can share a target.

  1. *Load*: check the config and the target's columns, create the two tables if missing.
  2. *Port callback*: the message's rows join the current epoch's pending rows, in memory; nothing is
     written.
  3. *serialize(E)*: the pending rows are inserted into the staging table tagged with E and committed
     before serialize returns, so they are durable before the operator acknowledges E (crash point
     ``sql_writer_staged``: staged, state not yet persisted).
  4. *epoch_complete(E)*: every staged epoch up to E that the marker does not cover yet, oldest first, is
     applied in ONE transaction each: its rows inserted into the target, the marker set to it, its staged
     rows deleted (crash point ``sql_writer_moved``: all done but the commit; ``sql_writer_committed``: just
     after it). An epoch the marker covers is skipped, so the second ``epoch_complete(E)`` after a recovery
     from E is a no-op.
  5. *restore(E)* (a recovery): staged rows of epochs after E are deleted, since they never completed and
     are replayed; then staged epochs up to E are applied as in step 4 — E completed, but the failed attempt
     may have died before its ``epoch_complete`` applied it (SAP's "transactional writer caveat": the marker
     is the log that tells whether it did). A marker beyond E (a restore of an older epoch, as
     ``--accept-older-epoch`` does) is reported: those rows are written again.
  6. *prestart without a restore* (a new run): this writer's staged rows and marker left by an earlier run
     are deleted; epochs of a new run are not comparable with them.
  7. *Without snapshots* there are no epochs: the pending rows are committed in one transaction when a
     message with ``isLast`` true in its ``com.sap.headers.batch`` header arrives (the reader's last batch),
     which is the end of the input. Shutdown cannot be the end: it also runs when the attempt failed,
     and a recovery without snapshots starts from scratch, so rows committed then would be written twice.
     A failure before the last batch commits nothing (the restart writes everything once); a failure after
     its commit, before the graph ends, writes it again. Rows still pending at shutdown are reported, not
     written.

**Parts other connectors reuse** (SAP's database operators, :mod:`snapgraph.connectors.sap_database`):
:class:`PagedQuery` (the pages of a table or query; without a key it pages by offset in the order of
every column), :func:`register_reader` (the reader's timer, state and crash point for any port and
table type), :class:`Target` (a target table's columns, statement and transactions, its errors naming
the caller's config keys), :func:`columns_of` and :func:`pick_columns`.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from snapgraph.api.operator_api import Api
from snapgraph.connectors.base import (
    Checkpoint,
    ConnectorConfigError,
    ConnectorContext,
    Setup,
    check_config,
    config_of,
    register_epoch_commits,
)
from snapgraph.connectors.databases import (
    MARIADB,
    DatabaseError,
    Dialect,
    companion_table,
    dialect_of,
    insert_statement,
    open_connection,
    result_columns,
    transaction,
    unique_keys,
    upsert_statement,
)
from snapgraph.model.builtin_operator import config_switch
from snapgraph.model.sql_builtins import SQL_READER, SQL_WRITER, reader_partitions, sql_column_list

BATCH_HEADER = "com.sap.headers.batch"
DEFAULT_BATCH = 1000
DEFAULT_POLL = 1.0
#: Seconds between two looks for the trigger message of a reader that waits for one.
TRIGGER_WAIT = 0.05
#: Rows per staged chunk (one row of the staging table) in transactional mode.
STAGED_CHUNK_ROWS = 1000

class SqlConfigError(ConnectorConfigError):
    """A reader or writer that cannot run as configured: names the operator and the config key."""


def _connect(config: Mapping[str, Any]) -> tuple[Any, Dialect]:
    connection = config["connection"]
    return open_connection(connection), dialect_of(connection)


def columns_of(operator: str, connection: Any, dialect: Dialect, source: str, key: str, what: str) -> list[str]:
    """The column names of ``source`` (see :func:`result_columns`); a driver error names config ``key``."""
    try:
        return result_columns(connection, dialect, source)
    except Exception as err:  # the driver's error for an unknown table or a bad query
        raise SqlConfigError(f"operator {operator!r}: config {key!r}: cannot read {what}: "
                             f"{type(err).__name__}: {str(err).strip()}") from err


def pick_columns(operator: str, key: str, wanted: list[str], available: list[str], what: str) -> None:
    """Refuse, naming config ``key``, any of ``wanted`` that is not among ``available``."""
    unknown = [name for name in wanted if name not in available]
    if unknown:
        raise SqlConfigError(f"operator {operator!r}: config {key!r}: no column {', '.join(map(repr, unknown))} "
                             f"in {what} (its columns: {', '.join(available)})")


# -- the reader ------------------------------------------------------------------------------------------

class PagedQuery:
    """The pages of a table or a query in one fixed order, each read by its own statement.

    With ``key`` columns the order is the key's and a page starts after the last key read (keyset
    pagination, see the module docstring); without, the order is every column's and a page starts at an
    offset (``ORDER BY 1, 2, ... LIMIT n OFFSET m``: identical rows are interchangeable, so the order is
    total; it replays as long as the result does not change between the reads). ``batch`` None reads
    everything in one page. ``where`` (SQL, values written as literals) keeps the rows of one partition,
    numbered ``partition`` (None: the reader has no partitions). A position is ``{"last": key tuple or
    None, "offset": rows read}``.
    """

    def __init__(self, connection: Any, dialect: Dialect, source: str, columns: list[str], key: list[str],
                 batch: int | None, *, where: str = "", partition: int | None = None) -> None:
        self.connection = connection
        self.batch = batch
        self.partition = partition
        self.key_positions = [columns.index(name) for name in key]
        self.select = _driver_text(dialect, f"SELECT {dialect.quote_all(columns)} FROM {source}")
        self.condition = f"({_driver_text(dialect, where)})" if where.strip() else ""
        order = dialect.quote_all(key) if key else ", ".join(str(i + 1) for i in range(len(columns)))
        self.order = _driver_text(dialect, f" ORDER BY {order}")
        self.after = f"({_driver_text(dialect, dialect.quote_all(key))}) > ({dialect.marks(len(key))})" if key else ""

    def statement(self, *conditions: str) -> str:
        """``SELECT ... FROM source WHERE`` (the partition's condition and ``conditions``) ``ORDER BY ...``."""
        kept = [condition for condition in (self.condition, *conditions) if condition]
        return self.select + (" WHERE " + " AND ".join(kept) if kept else "") + self.order

    def check(self) -> None:
        """Run the statement for no row: raises the driver's error for a source or condition that fails."""
        cursor = self.connection.cursor()
        try:
            cursor.execute(self.statement("1 = 0"), [])
        finally:
            cursor.close()
            self.connection.rollback()

    def page(self, position: Mapping[str, Any]) -> tuple[list[list[Any]], bool]:
        """The rows of the page at ``position`` and whether more rows follow it."""
        limit = "" if self.batch is None else f" LIMIT {self.batch + 1}"
        cursor = self.connection.cursor()
        try:
            if self.key_positions and position["last"] is not None:
                cursor.execute(self.statement(self.after) + limit, list(position["last"]))
            elif self.key_positions or not position["offset"]:
                cursor.execute(self.statement() + limit, [])
            else:
                cursor.execute(self.statement() + limit + f" OFFSET {int(position['offset'])}", [])
            rows = [list(row) for row in cursor.fetchall()]
        finally:
            cursor.close()
            self.connection.rollback()  # end the read transaction: the next poll sees rows committed since
        if self.batch is None or len(rows) <= self.batch:
            return rows, False
        return rows[:self.batch], True

    def advance(self, position: dict[str, Any], rows: list[list[Any]]) -> None:
        """Move ``position`` past ``rows`` (a page just published)."""
        if rows and self.key_positions:
            position["last"] = tuple(rows[-1][i] for i in self.key_positions)
        position["offset"] += len(rows)


def _driver_text(dialect: Dialect, sql: str) -> str:
    """SQL text as a statement with parameters must hold it: the %s drivers take a % as ``%%`` (the
    reader's statements always go with a parameter list, so a % in a query or a condition stays one)."""
    return sql.replace("%", "%%") if dialect.placeholder == "%s" else sql


def sql_literal(dialect: Dialect, value: str) -> str:
    """``value`` as an SQL string literal of ``dialect`` (quotes doubled; MariaDB's backslashes too)."""
    text = value.replace("\\", "\\\\") if dialect is MARIADB else value
    return "'" + text.replace("'", "''") + "'"


def modulo_conditions(dialect: Dialect, column: str, count: int) -> list[str]:
    """The conditions of ``count`` partitions by the integer ``column``: partition i holds the rows whose
    value is i modulo ``count`` (a negative value's remainder, negative in every dialect, counts as
    i - count), partition 0 also the NULLs. A row's partition depends on its own value only."""
    quoted = dialect.quote(column)
    return [f"{quoted} % {count} = 0 OR {quoted} IS NULL" if i == 0 else f"{quoted} % {count} IN ({i}, {i - count})"
            for i in range(count)]


def instance_partitions(operator: str, api: Api, conditions: list[str] | None, key: str,
                        make: Callable[[str, int | None], PagedQuery]) -> list[PagedQuery]:
    """The queries this instance of the operator reads: without ``conditions`` one, over the whole source;
    else partition n (``make(condition, n)``) for every n that is this instance's ``multiplicity_index``
    modulo ``multiplicity``, so the instances of a group read each partition once between them (an
    instance left without one reads no row). Each query is run for no row here: a condition the database
    refuses names config ``key``."""
    if conditions is None:
        if api.multiplicity > 1:
            api.logger.warning("operator %r runs in %d instances without partitions: each one reads the whole source",
                               operator, api.multiplicity)
        return [make("", None)]
    queries = [make(condition, number) for number, condition in enumerate(conditions)
               if number % api.multiplicity == api.multiplicity_index]
    if not queries:  # more instances than partitions: this one reads nothing (one empty last page)
        api.logger.info("operator %r: instance %d of %d has none of the %d partitions", operator,
                        api.multiplicity_index, api.multiplicity, len(conditions))
        queries = [make("1 = 0", None)]
    for query in queries:
        try:
            query.check()
        except Exception as err:  # the driver's error for a condition it cannot run
            raise SqlConfigError(f"operator {operator!r}: config {key!r}: partition {query.partition} cannot be read: "
                                 f"{type(err).__name__}: {str(err).strip()}") from err
    return queries


def register_reader(api: Api, context: ConnectorContext, queries: list[PagedQuery], *, port: str,
                    streaming: bool = False, poll: float = DEFAULT_POLL,
                    table_of: Callable[[list[list[Any]]], Any] | None = None,
                    headers: Mapping[str, Any] | None = None, trigger_port: str | None = None) -> None:
    """Register a replayable reader of ``queries`` (one, or this instance's partitions, read one after the
    other) on ``api``: a timer publishes one page per call on ``port`` as ``table_of(rows)`` (default
    ``api.Table(rows)``) with a ``com.sap.headers.batch`` header ``[index, isLast, 0, batch, "rows"]``
    and ``headers``; isLast marks the last page of the last query (a last query that is empty gives one
    empty last page). An exhausted partition that is not the last publishes nothing more. The state
    is the current query, every query's own position and the batch index, so a restore skips completed
    partitions and resumes the current one after its last key; a restore of a state that had read
    everything (``--resume`` after a completed run) starts a new pass over every query from its own
    position, numbering a new batch sequence from 0. With a connected ``trigger_port`` it
    waits for a first message there (its arrival is state too). Crash point: ``sql_reader_published`` (a
    page published, the position not yet advanced)."""
    checkpoint = context.checkpoint
    numbers = [query.partition for query in queries]
    size = queries[0].batch if queries[0].batch is not None else 0
    # "cursors": each query's own position ({"last": key, "offset": rows}), kept when it is exhausted, so a
    # new pass (``--resume`` after a completed run) reads in every partition only the rows added since.
    position: dict[str, Any] = {"partition": 0, "partitions": numbers,
                                "cursors": [{"last": None, "offset": 0} for _ in queries], "index": 0,
                                "ended": False,
                                "triggered": trigger_port is None or not api.is_inport_connected[trigger_port]}
    make_table = table_of or api.Table

    def next_partition() -> float:
        position["partition"] += 1
        return 0

    def read_batch() -> float:
        if not position["triggered"]:
            return TRIGGER_WAIT
        query = queries[position["partition"]]
        cursor = position["cursors"][position["partition"]]
        final = position["partition"] == len(queries) - 1
        rows, more = query.page(cursor)
        if not rows and not final:
            return next_partition()
        if not rows and (streaming or position["ended"]):
            return poll if streaming else -1
        if position["ended"]:  # the first page after an end begins a new batch sequence
            position["index"] = 0
        is_last = final and not more and not streaming
        header = {BATCH_HEADER: [position["index"], is_last, 0, size, "rows"], **(headers or {})}
        getattr(api.outputs, port).publish(make_table(rows), header)
        checkpoint("sql_reader_published")
        query.advance(cursor, rows)
        position["index"] += 1
        position["ended"] = is_last
        if more:
            return 0
        if not final:
            return next_partition()
        return poll if streaming else -1

    def on_trigger(msg_id: bytes, header: Any, body: Any) -> None:
        position["triggered"] = True

    def serialize(epoch: str) -> bytes:
        return pickle.dumps(position)

    def restore(epoch: str, state: bytes) -> None:
        restored = pickle.loads(state)
        if restored.get("partitions", numbers) != numbers:
            raise SqlConfigError(f"operator {context.operator!r}: the snapshot of epoch {epoch} holds a position in "
                                 f"partitions {restored['partitions']}, but this run reads partitions {numbers}: "
                                 "the partitions changed since; start a new run")
        if "cursors" not in restored:  # a state of an earlier version: one position, of the current query
            cursors = [{"last": None, "offset": 0} for _ in queries]
            cursors[restored.get("partition", 0)] = {"last": restored.pop("last"), "offset": restored.pop("offset")}
            restored["cursors"] = cursors
        position.update(restored)
        if position["ended"]:  # the run had read everything: a new pass looks at every partition again
            position["partition"] = 0

    api.set_initial_snapshot_info(api.InitialProcessInfo(
        is_stateful=True, outports_info={port: api.OutportInfo(is_generator=True)}))
    api.add_timer(read_batch)
    if trigger_port is not None and api.is_inport_connected[trigger_port]:
        api.set_port_callback(trigger_port, on_trigger)
    api.set_serialize_callback(serialize)
    api.set_restore_callback(restore)
    api.set_shutdown(queries[0].connection.close)


def setup_sql_reader(api: Api, context: ConnectorContext) -> None:
    """Register the SQL reader's callbacks on ``api`` (raises :class:`SqlConfigError` for a bad config,
    :class:`DatabaseError` when the database cannot be reached)."""
    operator = context.operator
    config = config_of(api)
    check_config(operator, SQL_READER, config, SqlConfigError)
    connection, dialect = _connect(config)
    key = sql_column_list(config, "key")
    if config.get("table") is not None:
        table = str(config["table"]).strip()
        source, source_key, what = dialect.quote(table), "table", f"table {table!r}"
    else:
        source, source_key, what = query_source(dialect, str(config["query"])), "query", "the query"
    available = columns_of(operator, connection, dialect, source, source_key, what)
    columns = sql_column_list(config, "columns") or available
    pick_columns(operator, "columns", columns, available, what)
    pick_columns(operator, "key", key, columns, f"the columns read from {what}")
    partitions = reader_partitions(config)
    conditions: list[str] | None = partitions if isinstance(partitions, list) else None
    if isinstance(partitions, int):
        column = str(config["partition_by"]).strip()
        pick_columns(operator, "partition_by", [column], available, what)
        conditions = modulo_conditions(dialect, column, partitions)
    batch = int(config.get("batch", DEFAULT_BATCH))

    def make(where: str, number: int | None) -> PagedQuery:
        return PagedQuery(connection, dialect, source, columns, key, batch, where=where, partition=number)

    queries = instance_partitions(operator, api, conditions, "partition_by" if isinstance(partitions, int)
                                  else "partitions", make)
    register_reader(api, context, queries, port="output",
                    streaming=config_switch(config.get("streaming", False)) is True,
                    poll=float(config.get("poll", DEFAULT_POLL)))


def query_source(dialect: Dialect, query: str) -> str:
    """A query as the source of a SELECT: ``(query) AS sg_source`` (a trailing semicolon dropped)."""
    return f"({query.strip().rstrip(';')}) AS {dialect.quote('sg_source')}"


# -- the writer ------------------------------------------------------------------------------------------

class Target:
    """The writer's side of the database: the target table, its statement, and the transactions.

    ``columns`` None writes every column of the table; ``key`` (with ``upsert``) must be its primary key
    or a unique key. ``config_keys`` names the config keys of the table, its columns and the key in
    messages (the SQL writer's ``table``, ``columns``, ``key``; SAP's operators have their own).
    """

    def __init__(self, operator: str, api: Api, connection: Mapping[str, Any], table: str, columns: list[str] | None,
                 key: list[str], *, upsert: bool, config_keys: tuple[str, str, str] = ("table", "columns", "key")
                 ) -> None:
        self.operator = operator
        self.connection, self.dialect = open_connection(dict(connection)), dialect_of(dict(connection))
        self.table = table
        table_key, columns_key, self.key_key = config_keys
        available = columns_of(operator, self.connection, self.dialect, self.dialect.quote(self.table), table_key,
                               f"the target table {self.table!r}")
        self.columns = columns or available
        pick_columns(operator, columns_key, self.columns, available, f"the target table {self.table!r}")
        pick_columns(operator, self.key_key, key, self.columns, f"the columns written to {self.table!r}")
        if upsert:
            self._check_unique(api, key)
            self.statement = upsert_statement(self.dialect, self.table, self.columns, key)
        else:
            self.statement = insert_statement(self.dialect, self.table, self.columns)

    def _check_unique(self, api: Api, key: list[str]) -> None:
        keys = unique_keys(self.connection, self.dialect, self.table)
        if not any(set(found) == set(key) for found in keys):
            shown = "; ".join(", ".join(found) for found in keys) or "none"
            raise SqlConfigError(
                f"operator {self.operator!r}: config {self.key_key!r}: ({', '.join(key)}) is not the primary key or a "
                f"unique key of {self.table!r}, so an upsert cannot find the row to overwrite "
                f"(its unique keys: {shown})")
        if self.dialect is MARIADB and len(keys) > 1:
            api.logger.warning("table %r has %d unique keys: MariaDB's ON DUPLICATE KEY UPDATE overwrites the row "
                               "that any of them matches, not only by (%s)", self.table, len(keys), ", ".join(key))

    def rows_of(self, body: Any, port: str = "input") -> list[list[Any]]:
        """The rows of one message on ``port``, each as long as the column list (else a clear error)."""
        rows = [list(row) for row in body.get()]
        for index, row in enumerate(rows):
            if len(row) != len(self.columns):
                raise ValueError(f"operator {self.operator!r}: row {index} of a message on port {port!r} has "
                                 f"{len(row)} values, but {len(self.columns)} columns are written to "
                                 f"{self.table!r} ({', '.join(self.columns)})")
        return rows

    def transaction(self) -> AbstractContextManager[Any]:
        """A cursor whose statements commit together at the end of the block, or roll back on any error."""
        return transaction(self.connection)

    def insert(self, cursor: Any, rows: list[list[Any]]) -> None:
        if rows:
            cursor.executemany(self.statement, rows)


def setup_sql_writer(api: Api, context: ConnectorContext) -> None:
    """Register the SQL writer's callbacks on ``api`` for its ``mode`` (raises :class:`SqlConfigError` for a
    bad config or target, :class:`DatabaseError` when the database cannot be reached)."""
    operator, snapshots_on, checkpoint = context.operator, context.snapshots_on, context.checkpoint
    config = config_of(api)
    check_config(operator, SQL_WRITER, config, SqlConfigError)
    mode = str(config.get("mode", "append"))
    target = Target(operator, api, config["connection"], str(config["table"]).strip(),
                    sql_column_list(config, "columns") or None, sql_column_list(config, "key"), upsert=mode == "upsert")
    if mode == "transactional":
        _TransactionalWriter(operator, api, target, snapshots_on, checkpoint).register()
        return
    if mode == "append":
        api.logger.info("mode append: plain INSERTs; a replay after a recovery inserts its rows again "
                        "(at-least-once)")

    def on_input(msg_id: bytes, header: Any, body: Any) -> None:
        with target.transaction() as cursor:
            target.insert(cursor, target.rows_of(body))
        checkpoint("sql_writer_committed")

    api.set_port_callback("input", on_input)
    api.set_shutdown(target.connection.close)


class _TransactionalWriter:
    """Transactional mode: the protocol of the module docstring, its steps in that order."""

    def __init__(self, operator: str, api: Api, target: Target, snapshots_on: bool, checkpoint: Checkpoint) -> None:
        self.api = api
        self.target = target
        self.snapshots_on = snapshots_on
        self.checkpoint = checkpoint
        self.writer = f"{api.graph_name}/{operator}"
        self.staged = companion_table(target.table, "sg_staged")
        self.markers = companion_table(target.table, "sg_epochs")
        self.pending: list[list[Any]] = []
        self.restored = False
        self.create_tables()

    def register(self) -> None:
        api = self.api
        register_epoch_commits(api, self, self.snapshots_on)
        if self.snapshots_on:
            api.set_prestart(self.prestart)
        api.set_port_callback("input", self.on_input)
        api.set_shutdown(self.shutdown)

    # 1. load
    def create_tables(self) -> None:
        d = self.target.dialect
        with self.target.transaction() as cursor:
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {d.quote(self.staged)} (writer VARCHAR(255) NOT NULL, "
                           f"epoch VARCHAR(64) NOT NULL, seq INTEGER NOT NULL, chunk {d.binary_type} NOT NULL, "
                           "PRIMARY KEY (writer, epoch, seq))")
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {d.quote(self.markers)} (writer VARCHAR(255) NOT NULL "
                           "PRIMARY KEY, epoch VARCHAR(64) NOT NULL)")

    # 2. port callback
    def on_input(self, msg_id: bytes, header: Any, body: Any) -> None:
        self.pending.extend(self.target.rows_of(body))
        if not self.snapshots_on and is_last_batch(header):
            self.commit_input()  # 7.

    # 3. serialize(E)
    def serialize(self, epoch: str) -> bytes:
        d, mark = self.target.dialect, self.target.dialect.placeholder
        chunks = [self.pending[i:i + STAGED_CHUNK_ROWS] for i in range(0, len(self.pending), STAGED_CHUNK_ROWS)]
        if chunks:
            with self.target.transaction() as cursor:
                cursor.executemany(f"INSERT INTO {d.quote(self.staged)} (writer, epoch, seq, chunk) VALUES "
                                   f"({mark}, {mark}, {mark}, {mark})",
                                   [(self.writer, epoch, seq, pickle.dumps(chunk)) for seq, chunk in enumerate(chunks)])
            self.checkpoint("sql_writer_staged")
        staged = len(self.pending)
        self.pending = []
        return json.dumps({"epoch": epoch, "staged_rows": staged}).encode()

    # 4. epoch_complete(E)
    def epoch_complete(self, epoch: str) -> None:
        self.apply_through(epoch)

    def apply_through(self, epoch: str) -> None:
        """Apply every staged epoch up to ``epoch`` that the marker does not cover, oldest first, each in
        one transaction with the marker; an epoch the marker covers is not applied again."""
        d, mark = self.target.dialect, self.target.dialect.placeholder
        applied = self.applied_epoch()
        for staged_epoch in self.staged_epochs():
            if staged_epoch > epoch or (applied is not None and staged_epoch <= applied):
                continue
            with self.target.transaction() as cursor:
                cursor.execute(f"SELECT chunk FROM {d.quote(self.staged)} WHERE writer = {mark} AND epoch = {mark} "
                               "ORDER BY seq", (self.writer, staged_epoch))
                for (chunk,) in cursor.fetchall():
                    self.target.insert(cursor, pickle.loads(bytes(chunk)))
                cursor.execute(f"DELETE FROM {d.quote(self.markers)} WHERE writer = {mark}", (self.writer,))
                cursor.execute(f"INSERT INTO {d.quote(self.markers)} (writer, epoch) VALUES ({mark}, {mark})",
                               (self.writer, staged_epoch))
                cursor.execute(f"DELETE FROM {d.quote(self.staged)} WHERE writer = {mark} AND epoch = {mark}",
                               (self.writer, staged_epoch))
                self.checkpoint("sql_writer_moved")
            self.checkpoint("sql_writer_committed")

    def staged_epochs(self) -> list[str]:
        """The epochs this writer has staged rows of, oldest first (compared here, not by the database's
        collation: epoch ids are ISO-8601 timestamps of one fixed format, so their text order is time order)."""
        d = self.target.dialect
        cursor = self.target.connection.cursor()
        try:
            cursor.execute(f"SELECT DISTINCT epoch FROM {d.quote(self.staged)} WHERE writer = {d.placeholder}",
                           (self.writer,))
            return sorted(str(row[0]) for row in cursor.fetchall())
        finally:
            cursor.close()
            self.target.connection.rollback()

    def applied_epoch(self) -> str | None:
        """The newest epoch this writer applied (its marker), None if none."""
        d = self.target.dialect
        cursor = self.target.connection.cursor()
        try:
            cursor.execute(f"SELECT epoch FROM {d.quote(self.markers)} WHERE writer = {d.placeholder}", (self.writer,))
            row = cursor.fetchone()
            return None if row is None else str(row[0])
        finally:
            cursor.close()
            self.target.connection.rollback()

    # 5. restore(E)
    def restore(self, epoch: str, state: bytes) -> None:
        self.restored = True
        d, mark = self.target.dialect, self.target.dialect.placeholder
        applied = self.applied_epoch()
        if applied is not None and applied > epoch:
            self.api.logger.warning("restoring epoch %s, but %r already holds the rows of epoch %s: the replay "
                                    "writes the rows of the epochs between them again", epoch, self.target.table,
                                    applied)
            with self.target.transaction() as cursor:
                cursor.execute(f"DELETE FROM {d.quote(self.markers)} WHERE writer = {mark}", (self.writer,))
        replayed = [staged for staged in self.staged_epochs() if staged > epoch]
        if replayed:
            with self.target.transaction() as cursor:
                cursor.executemany(f"DELETE FROM {d.quote(self.staged)} WHERE writer = {mark} AND epoch = {mark}",
                                   [(self.writer, staged) for staged in replayed])
        self.apply_through(epoch)

    # 6. prestart without a restore
    def prestart(self) -> None:
        if self.restored:
            return
        d, mark = self.target.dialect, self.target.dialect.placeholder
        with self.target.transaction() as cursor:
            cursor.execute(f"DELETE FROM {d.quote(self.staged)} WHERE writer = {mark}", (self.writer,))
            cursor.execute(f"DELETE FROM {d.quote(self.markers)} WHERE writer = {mark}", (self.writer,))

    # 7. without snapshots
    def commit_input(self) -> None:
        with self.target.transaction() as cursor:
            self.target.insert(cursor, self.pending)
            self.checkpoint("sql_writer_moved")
        self.pending = []  # committed: nothing is pending any more, even if the next step fails
        self.checkpoint("sql_writer_committed")

    def shutdown(self) -> None:
        if self.pending and not self.snapshots_on:
            self.api.logger.warning("%d rows were not written to %r: no message with isLast in its %s header "
                                    "ended the input", len(self.pending), self.target.table, BATCH_HEADER)
        self.target.connection.close()


def is_last_batch(header: Any) -> bool:
    batch = header.get(BATCH_HEADER) if header is not None else None
    return batch is not None and len(list(batch)) > 1 and config_switch(list(batch)[1]) is True


__all__ = ["BATCH_HEADER", "DatabaseError", "PagedQuery", "SqlConfigError", "Target", "columns_of",
           "instance_partitions", "is_last_batch", "modulo_conditions", "pick_columns", "query_source",
           "register_reader", "setup_sql_reader", "setup_sql_writer", "sql_literal"]


#: component id -> setup (collected by snapgraph.connectors.registry)
BEHAVIOURS: dict[str, Setup] = {SQL_READER.component: setup_sql_reader, SQL_WRITER.component: setup_sql_writer}
