"""The SQL family of built-ins: the SQL reader and writer's descriptors and config checks (behaviour:
:mod:`snapgraph.connectors.sql`; the config keys and what each promises: docs/connectors.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from snapgraph.model.builtin_operator import (
    BuiltinOperator,
    CrashPoint,
    column_names,
    config_number,
    config_switch,
)
from snapgraph.model.delivery import DeliveryTraits, WriterKind

#: The connectionType values the SQL connectors open (snapgraph.connectors.databases has a dialect each).
SQL_CONNECTION_TYPES = ("MARIADB", "MYSQL", "POSTGRES", "SQLITE")
#: The SQL writer's modes -> how each makes a replay harmless.
SQL_WRITER_MODES: dict[str, WriterKind] = {
    "append": WriterKind.PLAIN,  # plain INSERT: a replay inserts again (at-least-once)
    "upsert": WriterKind.IDEMPOTENT,  # INSERT ... ON CONFLICT by key: a replay overwrites with the same rows
    "transactional": WriterKind.TRANSACTIONAL,  # staged per epoch, moved once in epoch_complete
}


def sql_column_list(config: Mapping[str, Any], key: str) -> list[str]:
    """The column names under config ``key`` (a list or a comma-separated string; [] when absent)."""
    value = config.get(key)
    return [] if value is None else (column_names(value) or [])


def connection_problems(config: Mapping[str, Any], key: str = "connection",
                        types: tuple[str, ...] = SQL_CONNECTION_TYPES, what: str = "a SQL database") -> list[str]:
    """The problems of the managed connection under config ``key``: missing, not ``{connectionID: ID}``, or
    (once resolved) of a connectionType not in ``types`` (``what`` says what those are)."""
    connection = config.get(key)
    if connection is None:
        return [f"config '{key}' is missing: it names the database, {{connectionID: ID}} of --connections"]
    if not isinstance(connection, Mapping):
        return [f"config '{key}' must be {{connectionID: ID}}, got {connection!r}"]
    kind = connection.get("connectionType")
    if kind is None:
        return []  # not resolved (yet): an unknown connectionID is reported by the connection resolution
    if str(kind).upper() not in types:
        return [f"config '{key}': connection {connection.get('connectionID', '?')!r} has connectionType "
                f"{kind!r}, which is not {what} (one of {', '.join(types)})"]
    return []


def _check_columns(config: Mapping[str, Any], key: str, required: bool, why: str = "") -> list[str]:
    if config.get(key) is None:
        return [f"config '{key}' is missing: {why}"] if required else []
    if column_names(config[key]) is None:
        return [f"config '{key}' must be a column name or a list of column names, got {config[key]!r}"]
    return []


def reader_partitions(config: Mapping[str, Any]) -> int | list[str] | None:
    """The SQL reader's ``partitions``: a count (with ``partition_by``), a list of SQL conditions, or None
    (no partitions, or a malformed value: :func:`partition_problems` names it)."""
    value = config.get("partitions")
    if isinstance(value, list):
        conditions = [item.strip() for item in value if isinstance(item, str) and item.strip()]
        return conditions if value and len(conditions) == len(value) else None
    count = config_number(value, integer=True) if value is not None else None
    return int(count) if count is not None and count >= 1 else None


def partition_problems(config: Mapping[str, Any]) -> list[str]:
    """The SQL reader's ``partitions`` and ``partition_by``: a count N >= 1 with an integer column to split
    by (partition i holds the rows whose column is i modulo N), or a non-empty list of SQL conditions
    (without ``partition_by``); never with ``streaming``."""
    value, column = config.get("partitions"), config.get("partition_by")
    if value is None:
        return [] if column is None else ["config 'partition_by' applies with a count of 'partitions'"]
    problems = []
    if reader_partitions(config) is None:
        problems.append("config 'partitions' must be a whole number of partitions >= 1 (with 'partition_by') or a "
                        f"non-empty list of SQL conditions, got {value!r}")
    elif isinstance(value, list) and column is not None:
        problems.append("config 'partition_by' applies to a count of 'partitions'; a list of conditions names its "
                        "columns itself")
    elif not isinstance(value, list) and column is None:
        problems.append("config 'partition_by' is missing: a count of 'partitions' splits the rows by the remainder "
                        "of this integer column")
    elif not isinstance(value, list) and (not isinstance(column, str) or not column.strip()):
        problems.append(f"config 'partition_by' must be a column name, got {column!r}")
    if config_switch(config.get("streaming", False)) is True:
        problems.append("config 'streaming': a partitioned reader reads each partition once and ends, it does not "
                        "poll; remove 'partitions' or 'streaming'")
    return problems


def sql_reader_config_problems(config: Mapping[str, Any]) -> list[str]:
    """The SQL reader's config: a connection, exactly one of ``table`` / ``query``, a ``key`` to order by;
    optional ``columns`` (table only), ``batch`` (rows per message, >= 1), ``streaming`` (keep polling),
    ``poll`` (seconds between polls when streaming, > 0) and ``partitions`` / ``partition_by``."""
    problems = connection_problems(config)
    table, query = config.get("table"), config.get("query")
    if (table is None) == (query is None):
        problems.append("config 'table' or 'query' (exactly one of them) names what to read"
                        + ("" if table is None else ", not both"))
    for key, value in (("table", table), ("query", query)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            problems.append(f"config '{key}' must be a non-empty string, got {value!r}")
    if query is not None and config.get("columns") is not None:
        problems.append("config 'columns' applies to a 'table'; a 'query' selects its columns itself")
    problems += _check_columns(config, "key", True, "the column(s) the reader orders by and resumes after "
                               "(unique, increasing for new rows)")
    problems += _check_columns(config, "columns", False)
    if "batch" in config and ((n := config_number(config["batch"], integer=True)) is None or n < 1):
        problems.append(f"config 'batch' must be a whole number of rows >= 1, got {config['batch']!r}")
    if "streaming" in config and config_switch(config["streaming"]) is None:
        problems.append(f"config 'streaming' must be true or false, got {config['streaming']!r}")
    if "poll" in config and ((s := config_number(config["poll"], integer=False)) is None or s <= 0):
        problems.append(f"config 'poll' must be a number of seconds > 0, got {config['poll']!r}")
    return problems + partition_problems(config)


def sql_writer_config_problems(config: Mapping[str, Any]) -> list[str]:
    """The SQL writer's config: a connection, the target ``table``, a ``mode`` (append, upsert or
    transactional; default append), ``key`` (required for upsert) and optional ``columns``."""
    problems = connection_problems(config)
    table = config.get("table")
    if not isinstance(table, str) or not table.strip():
        problems.append("config 'table' is missing: the target table to write into" if table is None
                        else f"config 'table' must be a non-empty string, got {table!r}")
    mode = config.get("mode", "append")
    if mode not in SQL_WRITER_MODES:
        problems.append(f"config 'mode' must be one of {', '.join(SQL_WRITER_MODES)}, got {mode!r}")
    problems += _check_columns(config, "key", mode == "upsert", "upsert mode writes by key: the column(s) of "
                               "the target's primary key or a unique key")
    problems += _check_columns(config, "columns", False)
    return problems


def _sql_writer_delivery(config: Mapping[str, Any]) -> DeliveryTraits:
    kind = SQL_WRITER_MODES[str(config.get("mode", "append"))]
    # without snapshots the transactional mode commits the pending rows at the reader's last batch
    return DeliveryTraits(writer=kind, commits_at_end=kind is WriterKind.TRANSACTIONAL)


SQL_READER = BuiltinOperator(
    "snapgraph.sql.reader", "SQL Reader", aliases=("sql-reader",),
    outports=("output",), table_ports=("output",),
    # Replays message by message: each message is a page read again from the key restored with it, so no
    # batch is ever half sent at a snapshot (SAP's "batches" condition does not arise).
    delivery=DeliveryTraits(replayable=True, deterministic=True),
    config_check=sql_reader_config_problems,
    crash_points=(CrashPoint("sql_reader_published", "output"),),
    config_keys=("connection", "table", "query", "key", "columns", "batch", "streaming", "poll", "partitions",
                 "partition_by"),
)
SQL_WRITER = BuiltinOperator(
    "snapgraph.sql.writer", "SQL Writer", aliases=("sql-writer",),
    inports=("input",), table_ports=("input",),
    delivery=DeliveryTraits(writer=WriterKind.PLAIN),  # the weakest mode, append
    config_check=sql_writer_config_problems,
    delivery_by_config=_sql_writer_delivery,
    # append and upsert commit each message; transactional stages an epoch's rows in serialize and moves
    # them into the table in epoch_complete
    crash_points=(
        CrashPoint("sql_writer_committed", "input", when=lambda config: config.get("mode") != "transactional"),
        *(CrashPoint(name, "epoch", when=lambda config: config.get("mode") == "transactional")
          for name in ("sql_writer_staged", "sql_writer_moved", "sql_writer_committed")),
    ),
    config_keys=("connection", "table", "mode", "key", "columns"),
)

#: the family, in the order the registry lists them
SQL_BUILTINS = (SQL_READER, SQL_WRITER)
