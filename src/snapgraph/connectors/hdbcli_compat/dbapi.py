"""``hdbcli.dbapi`` for snapgraph runs: SAP HANA's Python driver API on SQLite, PostgreSQL or MariaDB.

``connect(address=..., port=..., user=..., password=..., **properties)`` finds the managed connection
with those properties (:mod:`.registry`) and opens the database that serves it
(:func:`snapgraph.connectors.databases.open_connection`). What differs from a PEP 249 driver is what
differs in hdbcli:

* **autocommit is on** after ``connect`` (SAP: "Autocommit is turned on by default"), so every
  statement commits at once unless ``setautocommit(False)``; ``getautocommit()`` tells which.
* ``Cursor.execute`` returns True; ``?`` and ``:name`` parameter markers; statements are HANA SQL,
  translated per :mod:`.translate` (an ``UPSERT`` runs as a look-up and an ``UPDATE`` or ``INSERT`` in
  one transaction), and what is not translated raises :class:`NotSupportedError` naming the statement.
* ``Cursor.close()`` releases the cursor's result set; a later ``execute`` on the same cursor opens a
  new one. SAP's own snapshot examples close a cursor after each statement and go on using it; whether
  the real driver allows that is not documented, so the stand-in lets those scripts run and says so
  (docs/connectors.md). Fetching from a closed cursor, or after a statement without a result set, raises
  :class:`ProgrammingError`.
* Errors are hdbcli's classes with ``errorcode`` and ``errortext``; an error of the serving database
  keeps its driver's message and class name in ``errortext`` and has ``errorcode`` 0.

Keyword properties of ``connect`` that only tune transport security or timeouts (:data:`IGNORED_PROPERTIES`)
are accepted and ignored; any other one is refused, since ignoring it could change what runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from snapgraph.connectors.databases import POSTGRES, SQLITE, Dialect, dialect_of, open_connection
from snapgraph.connectors.databases import DatabaseError as OpenFailed
from snapgraph.connectors.hdbcli_compat.registry import LookupFailed, Served, serving_database
from snapgraph.connectors.hdbcli_compat.translate import (
    Fragment,
    Plain,
    StatementError,
    Token,
    Transaction,
    Upsert,
    identifier_name,
    render,
    translate,
)
from snapgraph.connectors.hdbcli_compat.translate import Refused as _Refused

apilevel = "2.0"
threadsafety = 1
paramstyle = "qmark"

#: connect() properties about TLS, timeouts and the wire: no meaning for a local database
IGNORED_PROPERTIES = frozenset({
    "encrypt", "sslValidateCertificate", "sslHostNameInCertificate", "sslCryptoProvider", "sslTrustStore",
    "sslKeyStore", "sslUseDefaultTrustStore", "sslSNIHostname", "connectTimeout", "communicationTimeout",
    "reconnect", "compress", "packetSize",
})


class Warning(Exception):  # noqa: A001 - the PEP 249 name
    """PEP 249's warning class (never raised by the stand-in)."""


class Error(Exception):
    """hdbcli's base error: ``errorcode`` (HANA's number, 0 for an error of the serving database) and
    ``errortext``."""

    def __init__(self, errorcode: int, errortext: str) -> None:
        super().__init__(errorcode, errortext)
        self.errorcode = errorcode
        self.errortext = errortext

    def __str__(self) -> str:
        return f"({self.errorcode}, {self.errortext})"


class InterfaceError(Error):
    """Misuse of the driver interface (an unknown connect property, a closed connection)."""


class DatabaseError(Error):
    """An error of the database."""


class DataError(DatabaseError):
    """A value the database cannot take."""


class OperationalError(DatabaseError):
    """The database cannot be reached or used (no matching connection, a lock timeout)."""


class IntegrityError(DatabaseError):
    """A constraint was violated (a duplicate key, say)."""


class InternalError(DatabaseError):
    """The database's own internal error."""


class ProgrammingError(DatabaseError):
    """A wrong statement or wrong parameters, or a fetch without a result set."""


class NotSupportedError(DatabaseError):
    """HANA SQL that the stand-in does not translate (code 7, HANA's "feature not supported")."""


_DRIVER_ERROR_CLASSES: tuple[type[Error], ...] = (IntegrityError, DataError, OperationalError, ProgrammingError,
                                                  NotSupportedError, InternalError, InterfaceError, DatabaseError)


def _driver_error(err: Exception, statement: str) -> Error:
    """The hdbcli error for a PEP 249 error of the serving database's driver, by its class names."""
    names = {c.__name__ for c in type(err).__mro__}
    cls = next((c for c in _DRIVER_ERROR_CLASSES if c.__name__ in names), DatabaseError)
    return cls(0, f"{type(err).__module__}.{type(err).__name__}: {err} (statement: {statement.strip()!r})")


def _is_driver_error(err: Exception) -> bool:
    return not isinstance(err, Error) and any(c.__name__ == "Error" for c in type(err).__mro__)


def _statement_error(err: StatementError) -> Error:
    if isinstance(err, _Refused):
        return NotSupportedError(7, f"hdbcli stand-in: {err}")
    return ProgrammingError(257, f"hdbcli stand-in: {err}")  # 257: HANA's "sql syntax error"


def connect(address: str = "", port: int | str = 0, user: str = "", password: str = "",
            **properties: Any) -> Connection:
    """A connection to the database serving the managed connection with these properties."""
    unknown = sorted(set(properties) - IGNORED_PROPERTIES)
    if unknown:
        raise InterfaceError(-10000, f"hdbcli stand-in: connect() property {', '.join(unknown)} is not supported "
                                     f"(accepted and ignored: {', '.join(sorted(IGNORED_PROPERTIES))}; autocommit: "
                                     "call setautocommit(); a schema: the serving database's connection)")
    try:
        served = serving_database(address, port, user, password)
    except LookupFailed as err:
        raise (InterfaceError if err.code == 10 else OperationalError)(err.code, str(err)) from None
    try:
        raw = open_connection(served.database)
    except OpenFailed as err:
        raise OperationalError(-10709, f"hdbcli stand-in: {err}") from err
    return Connection(raw, dialect_of(served.database), served, address)


class Connection:
    """A connection in autocommit mode (hdbcli's default) to the database that serves a HANA connection."""

    def __init__(self, raw: Any, dialect: Dialect, served: Served, address: str) -> None:
        self._raw: Any = raw
        self.dialect = dialect
        self.served = served
        self._address = address
        self._autocommit = False
        self.setautocommit(True)

    @property
    def raw(self) -> Any:
        """The serving database's own DB-API connection (an error once closed)."""
        if self._raw is None:
            raise ProgrammingError(-10000, f"hdbcli stand-in: connection {self.served.connection_id} is closed")
        return self._raw

    def cursor(self) -> Cursor:
        return Cursor(self)

    def commit(self) -> None:
        self._call(self.raw.commit, "COMMIT")

    def rollback(self) -> None:
        self._call(self.raw.rollback, "ROLLBACK")

    def close(self) -> None:
        """Close it (with autocommit off, what was not committed is rolled back)."""
        if self._raw is not None:
            raw, self._raw = self._raw, None
            self._call(raw.close, "close")

    def isconnected(self) -> bool:
        return self._raw is not None

    def getaddress(self) -> str:
        return self._address

    def getautocommit(self) -> bool:
        return self._autocommit

    def setautocommit(self, auto: bool = True) -> None:
        """Autocommit on (each statement commits) or off (``commit()`` does); turning it on commits what
        is pending."""
        raw = self.raw
        if auto and not self._autocommit:
            self._call(raw.commit, "COMMIT")
        if self.dialect is SQLITE:
            raw.isolation_level = None if auto else ""
        elif self.dialect is POSTGRES:
            raw.autocommit = bool(auto)
        else:
            self._call(lambda: raw.autocommit(bool(auto)), "SET autocommit")
        self._autocommit = bool(auto)

    @contextlib.contextmanager
    def atomically(self) -> Iterator[None]:
        """One transaction around what the block runs (in autocommit mode; otherwise the open one)."""
        raw = self.raw
        if not self._autocommit:
            yield
            return
        if self.dialect is POSTGRES:
            with raw.transaction():
                yield
            return
        if self.dialect is SQLITE:
            raw.execute("BEGIN IMMEDIATE")
        else:
            raw.begin()
        try:
            yield
        except BaseException:
            raw.rollback()
            raise
        raw.commit()

    def _call(self, action: Any, what: str) -> Any:
        try:
            return action()
        except Exception as err:
            if _is_driver_error(err):
                raise _driver_error(err, what) from err
            raise


Parameters = Sequence[Any] | Mapping[str, Any] | None


class Cursor:
    """A cursor: ``execute`` / ``executemany`` HANA SQL, ``fetchone`` / ``fetchmany`` / ``fetchall`` its rows."""

    arraysize = 1

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._raw: Any = None
        self._has_result = False
        self.description: tuple[tuple[Any, ...], ...] | None = None
        self.rowcount = -1

    def _cursor(self) -> Any:
        if self._raw is None:
            self._raw = self.connection.raw.cursor()
        return self._raw

    def close(self) -> None:
        """Release the result set; the cursor stays usable for another ``execute`` (see the module doc)."""
        if self._raw is not None:
            raw, self._raw = self._raw, None
            raw.close()
        self._has_result = False
        self.description = None

    def execute(self, operation: str, parameters: Parameters = None) -> bool:
        """Run one HANA statement with ``?`` (a sequence) or ``:name`` (a mapping) parameters."""
        plan = self._plan(operation)
        if isinstance(plan, Transaction):
            (self.connection.commit if plan.action == "commit" else self.connection.rollback)()
            self._done(-1)
        elif isinstance(plan, Upsert):
            self._upsert(operation, plan, _checked(operation, plan.named, plan.markers, parameters))
        else:
            self._plain(operation, plan, _checked(operation, plan.named, plan.sql.markers, parameters))
        return True

    def executemany(self, operation: str, seq_of_parameters: Sequence[Parameters]) -> None:
        """Run one statement once per parameter set (an UPSERT row by row, each atomically)."""
        plan = self._plan(operation)
        if isinstance(plan, Plain):
            rows = [_checked(operation, plan.named, plan.sql.markers, p) for p in seq_of_parameters]
            sql = render([plan.sql], self.connection.dialect)
            if not plan.sql.has_parameters:
                raise ProgrammingError(-10000, f"hdbcli stand-in: executemany of a statement without parameter "
                                               f"markers: {operation.strip()!r}")
            self._send(operation, lambda cur: cur.executemany(sql, rows))
            return
        if isinstance(plan, Transaction):
            raise ProgrammingError(-10000, f"hdbcli stand-in: executemany of {operation.strip()!r}")
        total = 0
        for parameters in seq_of_parameters:
            self._upsert(operation, plan, _checked(operation, plan.named, plan.markers, parameters))
            total += 1
        self.rowcount = total

    def fetchone(self) -> tuple[Any, ...] | None:
        row = self._result().fetchone()
        return None if row is None else tuple(row)

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._result().fetchmany(self.arraysize if size is None else size)]

    def fetchall(self) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._result().fetchall()]

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return iter(self.fetchall())

    def callproc(self, procname: str, parameters: Sequence[Any] = ()) -> None:
        raise NotSupportedError(7, f"hdbcli stand-in: stored procedures are not translated (callproc "
                                   f"{procname!r})")

    # -- inside -----------------------------------------------------------------------------------
    def _plan(self, operation: str) -> Plain | Transaction | Upsert:
        if not isinstance(operation, str):
            raise ProgrammingError(-10000, f"hdbcli stand-in: a statement must be a str, got "
                                           f"{type(operation).__name__}")
        try:
            return translate(operation, self.connection.dialect)
        except StatementError as err:
            raise _statement_error(err) from None

    def _result(self) -> Any:
        if not self._has_result:
            raise ProgrammingError(-10000, "hdbcli stand-in: no result set to fetch from (the last statement "
                                           "returned none, or the cursor was closed since)")
        return self._raw

    def _done(self, rowcount: int) -> None:
        self._has_result = False
        self.description = None
        self.rowcount = rowcount

    def _send(self, statement: str, action: Any) -> Any:
        cur = self._cursor()
        try:
            outcome = action(cur)
        except Exception as err:
            if _is_driver_error(err):
                self._done(-1)
                raise _driver_error(err, statement) from err
            raise
        description = cur.description
        self._has_result = description is not None
        self.description = None if description is None else tuple(tuple(c)[:7] for c in description)
        self.rowcount = cur.rowcount if cur.rowcount is not None else -1
        return outcome

    def _plain(self, operation: str, plan: Plain, parameters: Parameters) -> None:
        self._send(operation, lambda cur: _run(cur, [plan.sql], parameters, self.connection.dialect))

    def _upsert(self, operation: str, plan: Upsert, parameters: Parameters) -> None:
        """``plan`` as one transaction: is there a row the condition (or the primary key) finds? Then
        ``UPDATE`` it (every listed column), else ``INSERT`` the values."""
        dialect = self.connection.dialect
        columns = plan.columns if plan.columns is not None else tuple(
            _column(name) for name in self._table_columns(operation, plan)[0])
        if len(columns) != len(plan.values):
            raise ProgrammingError(257, f"hdbcli stand-in: UPSERT gives {len(plan.values)} values for the "
                                        f"{len(columns)} columns of its table: {operation.strip()!r}")
        value_params, where_params = _split(plan, parameters)
        if plan.where is not None:
            condition: list[str | Fragment] = [plan.where]
            condition_params = where_params
        else:
            condition, condition_params = self._key_condition(operation, plan, columns, value_params, parameters)
        values_params = _joined(value_params, parameters)
        assignments: list[str | Fragment] = []
        for i, (column, value) in enumerate(zip(columns, plan.values)):
            assignments += ([", "] if i else []) + [column, " = ", value]
        exists = ["SELECT 1 FROM ", plan.table, " WHERE ", *condition, " LIMIT 1"]
        update = ["UPDATE ", plan.table, " SET ", *assignments, " WHERE ", *condition]
        insert = ["INSERT INTO ", plan.table, " (", *_commas(columns), ") VALUES (", *_commas(plan.values), ")"]
        with self._transaction(operation):
            self._send(operation, lambda cur: _run(cur, exists, condition_params, dialect))
            if self._raw.fetchone() is not None:
                both = _joined([values_params, condition_params], parameters)
                self._send(operation, lambda cur: _run(cur, update, both, dialect))
            else:
                self._send(operation, lambda cur: _run(cur, insert, values_params, dialect))
        self._done(1)

    @contextlib.contextmanager
    def _transaction(self, operation: str) -> Iterator[None]:
        try:
            with self.connection.atomically():
                yield
        except Exception as err:
            if _is_driver_error(err):
                raise _driver_error(err, operation) from err
            raise

    def _key_condition(self, operation: str, plan: Upsert, columns: tuple[Fragment, ...],
                       value_params: list[Parameters], parameters: Parameters
                       ) -> tuple[list[str | Fragment], Parameters]:
        """``key1 = <its value> AND ...`` for the primary-key form, with the parameters of those values."""
        key = self._table_columns(operation, plan)[1]
        if not key:
            raise ProgrammingError(257, f"hdbcli stand-in: UPSERT without WHERE needs a primary key, and table "
                                        f"{'.'.join(plan.table_names)} has none: {operation.strip()!r}")
        condition: list[str | Fragment] = []
        params: list[Parameters] = []
        for name in key:
            index = next((i for i, c in enumerate(columns) if _names_column(c.tokens[0], name)), None)
            if index is None:
                raise ProgrammingError(257, f"hdbcli stand-in: UPSERT gives no value for primary key column "
                                            f"{name!r}: {operation.strip()!r}")
            condition += ([" AND "] if condition else []) + [columns[index], " = ", plan.values[index]]
            params.append(value_params[index])
        return condition, _joined(params, parameters)

    def _table_columns(self, operation: str, plan: Upsert) -> tuple[list[str], list[str]]:
        """The table's columns in order, and its primary key's, from the serving database's catalog."""
        dialect = self.connection.dialect
        *schema, table = plan.table_names
        cur = self.connection.raw.cursor()
        try:
            if dialect is SQLITE:
                prefix = f"{SQLITE.quote(schema[0])}." if schema else ""
                cur.execute(f"PRAGMA {prefix}table_info({SQLITE.quote(table)})")
                rows = cur.fetchall()
                names = [r[1] for r in rows]
                key = [r[1] for r in sorted(rows, key=lambda r: r[5]) if r[5]]
            elif dialect is POSTGRES:
                relation = render([plan.table], POSTGRES)
                cur.execute("SELECT a.attname, a.attnum = ANY(coalesce((SELECT i.indkey::int2[] FROM pg_index i "
                            "WHERE i.indrelid = a.attrelid AND i.indisprimary), '{}')) FROM pg_attribute a "
                            "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped "
                            "ORDER BY a.attnum", (relation,))
                rows = cur.fetchall()
                names = [r[0] for r in rows]
                key = [r[0] for r in rows if r[1]]
            else:
                cur.execute("SELECT COLUMN_NAME, COLUMN_KEY FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
                            "COALESCE(%s, DATABASE()) AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                            (schema[0] if schema else None, table))
                rows = cur.fetchall()
                names = [r[0] for r in rows]
                key = [r[0] for r in rows if r[1] == "PRI"]
        except Exception as err:
            if _is_driver_error(err):
                raise _driver_error(err, operation) from err
            raise
        finally:
            cur.close()
        if not names:
            raise ProgrammingError(259, f"hdbcli stand-in: UPSERT into table {'.'.join(plan.table_names)}, which "
                                        f"does not exist: {operation.strip()!r}")  # 259: HANA's "invalid table name"
        return names, key


def _run(cur: Any, pieces: list[str | Fragment], parameters: Parameters, dialect: Dialect) -> None:
    """Render ``pieces`` and run them; the parameters go along only when a piece has markers."""
    sql = render(pieces, dialect)
    if any(isinstance(p, Fragment) and p.has_parameters for p in pieces):
        cur.execute(sql, parameters)
    else:
        cur.execute(sql)


def _checked(operation: str, named: bool, markers: int, parameters: Parameters) -> Parameters:
    """The parameters as the driver takes them (a tuple, or the mapping), checked against the markers."""
    if named:
        if not isinstance(parameters, Mapping):
            raise ProgrammingError(-10000, f"hdbcli stand-in: a statement with :name markers needs a mapping of "
                                           f"parameters, got {type(parameters).__name__}: {operation.strip()!r}")
        return dict(parameters)
    if parameters is None:
        parameters = ()
    if isinstance(parameters, Mapping | str | bytes):
        raise ProgrammingError(-10000, f"hdbcli stand-in: a statement with ? markers needs a sequence of "
                                       f"parameters, got {type(parameters).__name__}: {operation.strip()!r}")
    values = tuple(parameters)
    if len(values) != markers:
        raise ProgrammingError(-10000, f"hdbcli stand-in: the statement has {markers} parameter marker(s) but "
                                       f"{len(values)} parameter(s) were given: {operation.strip()!r}")
    return values


def _split(plan: Upsert, parameters: Parameters) -> tuple[list[Parameters], Parameters]:
    """The parameters of each value of an UPSERT and of its WHERE condition (a mapping goes to all)."""
    if isinstance(parameters, Mapping):
        return [parameters] * len(plan.values), parameters
    values = tuple(parameters or ())
    per_value: list[Parameters] = []
    at = 0
    for value in plan.values:
        per_value.append(values[at:at + value.markers])
        at += value.markers
    return per_value, values[at:]


def _joined(parts: Sequence[Parameters], like: Parameters) -> Parameters:
    """Positional parameter runs joined into one tuple; with named parameters, the one mapping."""
    if isinstance(like, Mapping):
        return like
    joined: list[Any] = []
    for part in parts:
        joined += list(part or ())
    return tuple(joined)


def _column(name: str) -> Fragment:
    """A catalog column name as a quoted identifier (rendered in the dialect's quoting)."""
    return Fragment((Token("quoted", '"' + name.replace('"', '""') + '"'),))


def _names_column(token: Token, name: str) -> bool:
    """Whether a listed column names catalog column ``name``: a quoted one exactly, a plain word in any case."""
    if token.kind == "quoted":
        return identifier_name(token) == name
    return token.text.casefold() == name.casefold()


def _commas(items: Sequence[Fragment]) -> list[str | Fragment]:
    out: list[str | Fragment] = []
    for i, item in enumerate(items):
        out += ([", "] if i else []) + [item]
    return out


__all__ = ["Connection", "Cursor", "DataError", "DatabaseError", "Error", "IGNORED_PROPERTIES", "IntegrityError",
           "InterfaceError", "InternalError", "NotSupportedError", "OperationalError", "ProgrammingError", "Warning",
           "apilevel", "connect", "paramstyle", "threadsafety"]
