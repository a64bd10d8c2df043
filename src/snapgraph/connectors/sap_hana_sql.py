"""SAP's Run HANA SQL V2 on the database that serves its connection (descriptor and config checks:
:data:`snapgraph.model.sap_database_builtins.RUN_HANA_SQL_V2`; the keys and the guarantee: docs/connectors.md).

Its statements are HANA SQL: each goes through the hdbcli stand-in (:mod:`snapgraph.connectors.hdbcli_compat`),
so what the stand-in translates runs (``UPSERT``, ``FROM DUMMY``, ``CREATE COLUMN TABLE``, quoted names, ...)
and what it refuses is refused here by the same reason, naming the statement. ``transactionLevel`` groups
them into *units*, one transaction each: every statement alone (Per statement) or all the statements of
the SQL text (Per input). Each statement gives results on ``success``: a query its rows, in batches of
``batchSize`` (``batching`` Fixed size) or all in one message; any other statement one table
``[[affected]]`` (-1 for DDL, as SAP sends it). Every message carries a ``com.sap.headers.hana.table``
header ``[None, [columns], []]`` (a result has no table of its own) and a ``com.sap.headers.batch``
header ``[index, isLast, 0, batchSize, "rows"]``.

**Static mode** (the statements of ``sql``), step by step on a timer, in this order:

1. *Load*: the SQL text is split into statements and each is translated for the serving database; one the
   stand-in refuses (or one with parameter markers, which nothing fills) fails the load naming config
   ``sql`` and the statement's number.
2. *Run a unit*: its statements in one transaction, committed (crash point ``hana_sql_committed``: the
   unit committed, the position not yet advanced); the affected counts are kept in the position.
3. *Publish*: one batch per timer call (crash point ``hana_sql_published``: a batch published, the
   position not yet advanced); after the unit's last result, the next unit (step 2); after the last, the
   timer ends. The last message of the last unit has isLast true.
4. *serialize / restore*: the state is the position: the unit, whether it was committed and its affected
   counts, the result and the row offset within it, and the message index. A restore resumes there: the
   units before it, and a committed current one, are not run again; the rows of its queries still to send
   are read again by running those queries alone (reads only) and skipping the rows sent. A unit committed
   after the restored snapshot runs again (SAP's at-least-once).

**Dynamic mode** (the statements of each input string): the units of each message run and all their
results are published in its callback; nothing is kept, so a replayed input runs its statements again.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from snapgraph.api.operator_api import Api
from snapgraph.connectors.base import ConnectorContext, Setup
from snapgraph.connectors.databases import Dialect, dialect_of, open_connection, transaction
from snapgraph.connectors.hdbcli_compat.dbapi import Connection
from snapgraph.connectors.hdbcli_compat.registry import Served
from snapgraph.connectors.hdbcli_compat.translate import StatementError, Transaction, Upsert, translate
from snapgraph.connectors.sap_database import (
    HANA_TABLE_HEADER,
    SapConfigError,
    checked_config,
    named_tables,
    served_connection,
)
from snapgraph.connectors.sql import BATCH_HEADER
from snapgraph.model.sap_database_builtins import (
    FIXED_SIZE,
    PER_INPUT,
    PER_STATEMENT,
    QUERY_KINDS,
    RUN_HANA_SQL_V2,
    run_sql_is_static,
    sql_statements,
    statement_kind,
)

DEFAULT_BATCH = 100
#: Statements whose affected count SAP sends as -1.
DDL_KINDS = frozenset({"CREATE", "DROP", "ALTER", "TRUNCATE"})
AFFECTED_COLUMNS = ["affected"]


@dataclass
class Result:
    """What one statement gave: the rows of a query (``columns`` set) or an affected count."""

    statement: str
    columns: list[str] | None
    rows: list[list[Any]]
    affected: int


def checked_statements(operator: str, dialect: Dialect, text: str, where: str) -> list[str]:
    """The statements of ``text``, each one the stand-in translates for ``dialect`` and without parameter
    markers; else :class:`SapConfigError` naming ``where`` (config ``sql``, or an input) and the statement."""
    statements = sql_statements(text)
    for number, statement in enumerate(statements, 1):
        try:
            plan = translate(statement, dialect)
        except StatementError as err:
            raise SapConfigError(f"operator {operator!r}: {where}: statement {number} is not run: {err}") from None
        if isinstance(plan, Upsert):
            parameters = plan.named or plan.markers > 0
        else:
            parameters = not isinstance(plan, Transaction) and plan.sql.has_parameters
        if parameters:
            raise SapConfigError(f"operator {operator!r}: {where}: statement {number} has parameter markers, which "
                                 f"nothing fills here: {statement!r}")
    return statements


class _Runner:
    """The units of statements, run in their transactions on the stand-in's connection to the database."""

    def __init__(self, operator: str, connection: Connection, per_statement: bool) -> None:
        self.operator = operator
        self.connection = connection
        self.per_statement = per_statement

    def units(self, statements: list[str]) -> list[list[str]]:
        return [[statement] for statement in statements] if self.per_statement else [statements]

    def run(self, unit: Sequence[str]) -> list[Result]:
        """Every statement of ``unit`` in one transaction, committed; a failing one rolls the unit back and
        fails the operator naming it."""
        with transaction(self.connection) as cursor:
            return [self._execute(cursor, statement) for statement in unit]

    def read_again(self, unit: Sequence[str], affected: list[int]) -> list[Result]:
        """The results of a committed unit without running it again: its queries run alone (reads), the
        other statements' counts are the kept ``affected``."""
        cursor = self.connection.cursor()
        try:
            return [self._execute(cursor, statement) if statement_kind(statement) in QUERY_KINDS
                    else Result(statement, None, [], count) for statement, count in zip(unit, affected, strict=True)]
        finally:
            cursor.close()
            self.connection.rollback()

    def _execute(self, cursor: Any, statement: str) -> Result:
        try:
            cursor.execute(statement)
        except Exception as err:
            raise RuntimeError(f"operator {self.operator!r}: Run HANA SQL V2: statement failed: {err}") from err
        if cursor.description is not None:
            return Result(statement, [str(column[0]) for column in cursor.description],
                          [list(row) for row in cursor.fetchall()], -1)
        return Result(statement, None, [], -1 if statement_kind(statement) in DDL_KINDS else int(cursor.rowcount))


class _Publisher:
    """The messages of results on ``success``: a query's rows in batches, an affected count as one table."""

    def __init__(self, api: Api, batch: int | None) -> None:
        self.api = api
        self.batch = batch
        self.affected = named_tables(api, AFFECTED_COLUMNS)
        self.tables: dict[tuple[str, ...], Callable[[list[list[Any]]], Any]] = {}

    def pages(self, result: Result) -> int:
        """How many messages ``result`` gives (an empty query result gives one)."""
        if result.columns is None or self.batch is None:
            return 1
        return max(1, -(-len(result.rows) // self.batch))

    def publish(self, result: Result, page: int, index: int, is_last: bool) -> None:
        if result.columns is None:
            body, columns = self.affected([[result.affected]]), AFFECTED_COLUMNS
        else:
            columns = result.columns
            rows = result.rows if self.batch is None else result.rows[page * self.batch:(page + 1) * self.batch]
            table_of = self.tables.get(tuple(columns))
            if table_of is None:
                table_of = self.tables[tuple(columns)] = named_tables(self.api, columns)
            body = table_of(rows)
        header = {BATCH_HEADER: [index, is_last, 0, self.batch or 0, "rows"], HANA_TABLE_HEADER: [None, columns, []]}
        self.api.outputs.success.publish(body, header)


def setup_run_hana_sql(api: Api, context: ConnectorContext) -> None:
    """Run HANA SQL V2: Static mode on a timer with its position as state, Dynamic mode per input (see the
    module docstring for the steps)."""
    operator = context.operator
    config = checked_config(api, context, RUN_HANA_SQL_V2)
    database = served_connection(operator, "connection", config["connection"])
    dialect = dialect_of(database)
    connection = Connection(open_connection(database), dialect, Served(str(database["connectionID"]), database), "")
    connection.setautocommit(False)
    runner = _Runner(operator, connection, config.get("transactionLevel", PER_INPUT) == PER_STATEMENT)
    batch = int(config.get("batchSize", DEFAULT_BATCH)) if config.get("batching") == FIXED_SIZE else None
    publisher = _Publisher(api, batch)
    api.set_shutdown(connection.close)
    if run_sql_is_static(config):
        units = runner.units(checked_statements(operator, dialect, str(config["sql"]), "config 'sql'"))
        _register_static(api, context, runner, publisher, units)
        return
    index = 0

    def on_input(msg_id: bytes, header: Any, body: Any) -> None:
        nonlocal index
        statements = checked_statements(operator, dialect, str(body.get()), "an input on port 'input'")
        for unit in runner.units(statements):
            for result in runner.run(unit):
                for page in range(publisher.pages(result)):
                    publisher.publish(result, page, index, False)
                    index += 1

    api.set_port_callback("input", on_input)


def _register_static(api: Api, context: ConnectorContext, runner: _Runner, publisher: _Publisher,
                     units: list[list[str]]) -> None:
    checkpoint = context.checkpoint
    position: dict[str, Any] = {"unit": 0, "committed": False, "affected": [], "result": 0, "page": 0, "index": 0,
                                "units": len(units)}
    results: list[Result] | None = None

    def step() -> float:
        nonlocal results
        if position["unit"] == len(units):
            return -1
        unit = units[position["unit"]]
        if not position["committed"]:
            results = runner.run(unit)
            checkpoint("hana_sql_committed")
            position.update(committed=True, affected=[result.affected for result in results], result=0, page=0)
            return 0
        if results is None:  # restored inside a committed unit
            results = runner.read_again(unit, position["affected"])
        result = results[position["result"]]
        pages = publisher.pages(result)
        final = position["unit"] == len(units) - 1 and position["result"] == len(results) - 1 \
            and position["page"] == pages - 1
        publisher.publish(result, position["page"], position["index"], final)
        checkpoint("hana_sql_published")
        position["index"] += 1
        if position["page"] < pages - 1:
            position["page"] += 1
        elif position["result"] < len(results) - 1:
            position.update(result=position["result"] + 1, page=0)
        else:
            position.update(unit=position["unit"] + 1, committed=False, affected=[], result=0, page=0)
            results = None
        return 0 if position["unit"] < len(units) else -1

    def serialize(epoch: str) -> bytes:
        return pickle.dumps(position)

    def restore(epoch: str, state: bytes) -> None:
        nonlocal results
        restored = pickle.loads(state)
        if restored["units"] != len(units):
            raise SapConfigError(f"operator {context.operator!r}: the snapshot of epoch {epoch} was taken with "
                                 f"{restored['units']} transaction units in config 'sql', this run has {len(units)}: "
                                 "the SQL changed since; start a new run")
        position.update(restored)
        results = None

    api.set_initial_snapshot_info(api.InitialProcessInfo(
        is_stateful=True, outports_info={"success": api.OutportInfo(is_generator=True)}))
    api.add_timer(step)
    api.set_serialize_callback(serialize)
    api.set_restore_callback(restore)


__all__ = ["DDL_KINDS", "Result", "checked_statements", "setup_run_hana_sql"]

#: component id -> setup (collected by snapgraph.connectors.registry)
BEHAVIOURS: dict[str, Setup] = {RUN_HANA_SQL_V2.component: setup_run_hana_sql}
