"""A store in PostgreSQL (psycopg 3): one store every machine of a cluster reaches.

``--store postgresql://USER@HOST:PORT/DATABASE?schema=NAME`` keeps the
store's tables in schema ``NAME`` (default ``snapgraph``) of that database.
The schema is created with its tables on first use; an existing schema is
used only if it carries snapgraph's mark (rule 5 of :mod:`.base`), so a
schema of another application is refused before anything is written.

* State bytes go into ``bytea`` columns in chunks of :data:`CHUNK` bytes (a
  ``bytea`` value is limited to 1 GB, and one large value is slow to send).
* Every write is one transaction; a fenced write reads the lease row
  ``FOR SHARE`` inside it, and taking a lease locks the lease table, so a
  takeover and a write of the old holder are serialized.
* State rows commit with ``synchronous_commit = off``: they count only once
  the epoch's completion record commits, and that synchronous commit flushes
  the write-ahead log with everything before it (rule 3).
* Times come from the database server's clock (its offset to this machine
  is measured when the store is opened), so leases and heartbeats written by
  engines on different machines compare on one clock.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from snapgraph.snapshot.store.base import (
    COPIES,
    DEFAULT_KEEP,
    FORMAT,
    CompletionRow,
    Copy,
    DeleteRun,
    DropLease,
    DropRunCopy,
    Fence,
    LeaseHolder,
    LeaseLost,
    PruneEpochs,
    PutCompletion,
    PutRun,
    PutState,
    RenewLease,
    RunRecord,
    SnapshotStore,
    StateIndex,
    StoredRun,
    StoreError,
    StoreMissing,
    StoreUnusable,
    Write,
    progress_key,
    progress_record,
)

CHUNK = 16 * 1024 * 1024  # bytes of state per row
DEFAULT_SCHEMA = "snapgraph"
APPLICATION = "snapgraph"
URL_SCHEMES = ("postgresql", "postgres")

_TABLES: dict[str, dict[Copy, str]] = {
    "runs": {"primary": "runs", "mirror": "runs_mirror"},
    "states": {"primary": "states", "mirror": "states_mirror"},
    "epochs": {"primary": "epochs", "mirror": "epochs_mirror"},
}
_RUN_COLUMNS = "run_id, graph_key, graph_name, status, created, updated, attempts, last_epoch"
_EPOCH_COLUMNS = "run_id, epoch, graph_key, started, completed, checksums, digest, sum"
_LEASE_COLUMNS = "token, pid, host, host_id, proc_start, started, heartbeat"


def _schema_sql(schema: str) -> list[str]:
    statements = [
        f"CREATE SCHEMA {schema}",
        f"CREATE TABLE {schema}.meta (key text PRIMARY KEY, value text NOT NULL)",
        f"CREATE TABLE {schema}.leases (graph_key text PRIMARY KEY, token text NOT NULL, pid integer NOT NULL, "
        "host text NOT NULL, host_id text NOT NULL, proc_start text NOT NULL, started double precision NOT NULL, "
        "heartbeat double precision NOT NULL)",
    ]
    for copy in COPIES:
        statements += [
            f"CREATE TABLE {schema}.{_TABLES['runs'][copy]} (run_id text PRIMARY KEY, graph_key text NOT NULL, "
            "graph_name text NOT NULL, status text NOT NULL, created double precision NOT NULL, "
            "updated double precision NOT NULL, attempts integer NOT NULL, last_epoch text, sum text NOT NULL)",
            f"CREATE TABLE {schema}.{_TABLES['states'][copy]} (run_id text NOT NULL, epoch text NOT NULL, "
            "process text NOT NULL, chunk integer NOT NULL, checksum text NOT NULL, size bigint NOT NULL, "
            "data bytea NOT NULL, PRIMARY KEY (run_id, epoch, process, chunk))",
            f"CREATE TABLE {schema}.{_TABLES['epochs'][copy]} (run_id text NOT NULL, epoch text NOT NULL, "
            "graph_key text NOT NULL, started double precision NOT NULL, completed double precision NOT NULL, "
            "checksums text NOT NULL, digest text NOT NULL, sum text NOT NULL, PRIMARY KEY (run_id, epoch))",
        ]
    return statements


def is_postgres_url(location: str) -> bool:
    return urlsplit(location).scheme in URL_SCHEMES


def split_url(url: str) -> tuple[str, str, str]:
    """(the connection string for psycopg, the schema, the URL to show: without its password)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((value for key, value in query if key == "schema"), DEFAULT_SCHEMA)
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", schema):
        raise StoreUnusable(f"snapshot store {url}: schema {schema!r} is not a plain lower-case SQL name "
                            "(letters, digits, _)")
    rest = urlencode([(k, v) for k, v in query if k != "schema"])
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, ""))
    shown_netloc = parts.netloc
    if parts.password is not None:
        shown_netloc = shown_netloc.replace(f":{parts.password}@", ":***@")
    shown = urlunsplit((parts.scheme, shown_netloc, parts.path, parts.query, ""))
    return conninfo, schema, shown


class PostgresStore(SnapshotStore):
    """The store in a PostgreSQL schema. ``create=False``/``read_only=True`` as for SQLite."""

    def __init__(self, url: str, keep: int = DEFAULT_KEEP, *, create: bool = True, read_only: bool = False,
                 clock: Callable[[], float] | None = None) -> None:
        try:
            import psycopg
        except ImportError:
            raise StoreUnusable(f"snapshot store {url}: a PostgreSQL store needs psycopg; install it with "
                                "pip install 'snapgraph[postgres]'") from None
        self._psycopg = psycopg
        self._url = url
        self._conninfo, self.schema, shown = split_url(url)
        super().__init__(shown, keep=keep, clock=clock or time.time)
        self.read_only = read_only
        self._lock = threading.RLock()
        self._conn: Any = self._connect()
        try:
            self._open(create=create and not read_only)
        except BaseException:
            self._conn.close()
            raise
        if clock is None:
            self.clock = self._server_clock()

    def shared_location(self) -> str:
        """Every process that reaches the server can open it: group processes write their states."""
        return self._url

    # -- opening -------------------------------------------------------------------------------
    def _connect(self) -> Any:
        try:
            conn = self._psycopg.connect(self._conninfo, autocommit=True, connect_timeout=10)
        except self._psycopg.Error as exc:
            raise StoreUnusable(f"snapshot store {self.location} cannot be reached: {exc}".strip()) from None
        if self.read_only:
            conn.read_only = True
        return conn

    def _open(self, *, create: bool) -> None:
        psycopg = self._psycopg
        schema = self.schema
        try:
            with self._conn.transaction():
                # one creator at a time: a second engine waits, then finds the schema made
                if create:
                    self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"snapgraph-store:{schema}",))
                exists = self._conn.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                                            (schema,)).fetchone()
                if exists is None:
                    if not create:
                        raise StoreMissing(f"no snapshot store at {self.location} (the database has no schema "
                                            f"{schema})")
                    for statement in _schema_sql(schema):
                        self._conn.execute(statement)
                    self._conn.execute(f"INSERT INTO {schema}.meta (key, value) VALUES ('application', %s), "
                                       "('format', %s)", (APPLICATION, str(FORMAT)))
                    return
                self._check_mark()
        except psycopg.Error as exc:
            raise StoreUnusable(f"snapshot store {self.location} cannot be opened: {exc}".strip()) from None

    def _check_mark(self) -> None:
        schema = self.schema
        has_meta = self._conn.execute("SELECT 1 FROM information_schema.tables WHERE table_schema = %s AND "
                                      "table_name = 'meta'", (schema,)).fetchone()
        marks = dict(self._conn.execute(f"SELECT key, value FROM {schema}.meta").fetchall()) if has_meta else {}
        if marks.get("application") != APPLICATION:
            raise StoreUnusable(f"{self.location}: schema {schema} is not a snapgraph store (it exists without "
                                "snapgraph's mark: another application's schema); nothing was written to it. "
                                "Use another schema (?schema=NAME) or --store")
        if marks.get("format") != str(FORMAT):
            raise StoreUnusable(f"snapshot store {self.location} has format {marks.get('format')}, this snapgraph "
                                f"reads format {FORMAT}; use the snapgraph that wrote it, or another --store")
        for table in ("leases", *(name for names in _TABLES.values() for name in names.values())):
            self._conn.execute(f"SELECT 1 FROM {schema}.{table} LIMIT 1").fetchall()

    def _server_clock(self) -> Callable[[], float]:
        before = time.time()
        [(server,)] = self._read("SELECT extract(epoch FROM clock_timestamp())::float8")
        offset = float(server) - (before + time.time()) / 2
        return lambda: time.time() + offset

    # -- primitives ----------------------------------------------------------------------------
    def _table(self, kind: str, copy: Copy) -> str:
        return f"{self.schema}.{_TABLES[kind][copy]}"

    def _run_sql(self, write: Write) -> list[tuple[str, tuple[object, ...]]]:
        schema = self.schema
        match write:
            case PutRun(copy, r, digest):
                return [(f"INSERT INTO {self._table('runs', copy)} ({_RUN_COLUMNS}, sum) VALUES "
                         "(%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_id) DO UPDATE SET "
                         "graph_key = EXCLUDED.graph_key, graph_name = EXCLUDED.graph_name, status = EXCLUDED.status, "
                         "created = EXCLUDED.created, updated = EXCLUDED.updated, attempts = EXCLUDED.attempts, "
                         "last_epoch = EXCLUDED.last_epoch, sum = EXCLUDED.sum",
                         (r.run_id, r.graph_key, r.graph_name, str(r.status), r.created, r.updated, r.attempts,
                          r.last_epoch, digest))]
            case PutState(copy, run_id, epoch, process, digest, data):
                table = self._table("states", copy)
                statements: list[tuple[str, tuple[object, ...]]] = [
                    (f"DELETE FROM {table} WHERE run_id = %s AND epoch = %s AND process = %s",
                     (run_id, epoch, process))]
                view = memoryview(data)
                for number, start in enumerate(range(0, max(len(data), 1), CHUNK)):
                    statements.append((f"INSERT INTO {table} (run_id, epoch, process, chunk, checksum, size, data) "
                                       "VALUES (%s, %s, %s, %s, %s, %s, %b)",
                                       (run_id, epoch, process, number, digest, len(data),
                                        bytes(view[start:start + CHUNK]))))
                return statements
            case PutCompletion(copy, row):
                return [(f"INSERT INTO {self._table('epochs', copy)} ({_EPOCH_COLUMNS}) VALUES "
                         "(%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_id, epoch) DO UPDATE SET "
                         "graph_key = EXCLUDED.graph_key, started = EXCLUDED.started, completed = EXCLUDED.completed, "
                         "checksums = EXCLUDED.checksums, digest = EXCLUDED.digest, sum = EXCLUDED.sum",
                         (row.run_id, row.epoch, row.graph_key, row.started, row.completed, row.checksums,
                          row.digest, row.sum))]
            case PruneEpochs(run_id, before):
                return [(f"DELETE FROM {self._table(kind, copy)} WHERE run_id = %s AND epoch < %s", (run_id, before))
                        for kind in ("epochs", "states") for copy in COPIES]
            case DeleteRun(run_id):
                return [(f"DELETE FROM {self._table(kind, copy)} WHERE run_id = %s", (run_id,))
                        for kind in ("states", "epochs", "runs") for copy in COPIES]
            case DropRunCopy(copy, key):
                return [(f"DELETE FROM {self._table('runs', copy)} WHERE run_id = %s", (key,))]
            case RenewLease(graph_key, token, heartbeat, progress):
                renew: list[tuple[str, tuple[object, ...]]] = [(
                    f"UPDATE {schema}.leases SET heartbeat = %s WHERE graph_key = %s AND token = %s",
                    (heartbeat, graph_key, token))]
                if progress:
                    renew.append((f"INSERT INTO {schema}.meta (key, value) SELECT %s, %s WHERE EXISTS (SELECT 1 "
                                  f"FROM {schema}.leases WHERE graph_key = %s AND token = %s) ON CONFLICT (key) "
                                  "DO UPDATE SET value = EXCLUDED.value",
                                  (progress_key(graph_key), progress_record(token, heartbeat, progress), graph_key,
                                   token)))
                return renew
            case DropLease(graph_key, token):
                return [(f"DELETE FROM {schema}.meta WHERE key = %s AND EXISTS (SELECT 1 FROM {schema}.leases "
                         "WHERE graph_key = %s AND token = %s)", (progress_key(graph_key), graph_key, token)),
                        (f"DELETE FROM {schema}.leases WHERE graph_key = %s AND token = %s", (graph_key, token))]
        raise TypeError(f"not a store write: {write!r}")

    def _usable_connection(self) -> Any:
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()
        return self._conn

    def _apply(self, writes: Sequence[Write], *, fence: Fence | None, durable: bool) -> None:
        with self._lock:
            try:
                conn = self._usable_connection()
                with conn.transaction():
                    if not durable:
                        conn.execute("SET LOCAL synchronous_commit = off")
                    if fence is not None:
                        refusal = self.fence_refusal(self._lease_row(conn, fence.graph_key, lock="FOR SHARE"))
                        if refusal is not None:
                            raise refusal
                    with conn.cursor() as cursor:
                        for write in writes:
                            for sql, args in self._run_sql(write):
                                cursor.execute(sql, args)
            except LeaseLost:
                raise
            except self._psycopg.Error as exc:
                raise StoreError(f"snapshot store {self.location}: write failed: {exc}".strip()) from None

    def _lease_row(self, conn: Any, graph_key: str, lock: str = "") -> LeaseHolder | None:
        row = conn.execute(f"SELECT {_LEASE_COLUMNS} FROM {self.schema}.leases WHERE graph_key = %s {lock}",
                           (graph_key,)).fetchone()
        return LeaseHolder(*row) if row is not None else None

    def _swap_lease(self, graph_key: str, holder: LeaseHolder,
                    alive: Callable[[LeaseHolder], bool]) -> LeaseHolder | None:
        with self._lock:
            try:
                conn = self._usable_connection()
                with conn.transaction():
                    conn.execute(f"LOCK TABLE {self.schema}.leases IN EXCLUSIVE MODE")
                    current = self._lease_row(conn, graph_key)
                    if current is not None and alive(current):
                        return current
                    conn.execute(
                        f"INSERT INTO {self.schema}.leases (graph_key, {_LEASE_COLUMNS}) VALUES "
                        "(%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (graph_key) DO UPDATE SET "
                        "token = EXCLUDED.token, pid = EXCLUDED.pid, host = EXCLUDED.host, "
                        "host_id = EXCLUDED.host_id, proc_start = EXCLUDED.proc_start, started = EXCLUDED.started, "
                        "heartbeat = EXCLUDED.heartbeat",
                        (graph_key, holder.token, holder.pid, holder.host, holder.host_id, holder.proc_start,
                         holder.started, holder.heartbeat))
            except self._psycopg.Error as exc:
                raise StoreError(f"snapshot store {self.location}: taking the lease failed: {exc}".strip()) from None
        return None

    def _read(self, sql: str, args: tuple[object, ...] = (), *, binary: bool = False) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                conn = self._usable_connection()
                with conn.cursor(binary=binary) as cursor:
                    return list(cursor.execute(sql, args).fetchall())
            except self._psycopg.Error as exc:
                raise StoreError(f"snapshot store {self.location}: read failed: {exc}".strip()) from None

    def _lease(self, graph_key: str) -> LeaseHolder | None:
        rows = self._read(f"SELECT {_LEASE_COLUMNS} FROM {self.schema}.leases WHERE graph_key = %s", (graph_key,))
        return LeaseHolder(*rows[0]) if rows else None

    def _progress(self, graph_key: str) -> str | None:
        rows = self._read(f"SELECT value FROM {self.schema}.meta WHERE key = %s", (progress_key(graph_key),))
        return str(rows[0][0]) if rows else None

    @staticmethod
    def _where(run_id: str | None, graph_key: str | None) -> tuple[str, tuple[object, ...]]:
        if run_id is not None:
            return "WHERE run_id = %s", (run_id,)
        if graph_key is not None:
            return "WHERE graph_key = %s", (graph_key,)
        return "", ()

    def _runs(self, copy: Copy, *, run_id: str | None = None, graph_key: str | None = None) -> list[StoredRun]:
        where, args = self._where(run_id, graph_key)
        rows = self._read(f"SELECT {_RUN_COLUMNS}, sum FROM {self._table('runs', copy)} {where}", args)
        return [StoredRun(RunRecord(*row[:-1]), row[-1]) for row in rows]

    def _completions(self, copy: Copy, *, run_id: str | None = None,
                     graph_key: str | None = None) -> list[CompletionRow]:
        where, args = self._where(run_id, graph_key)
        return [CompletionRow(*row) for row in
                self._read(f"SELECT {_EPOCH_COLUMNS} FROM {self._table('epochs', copy)} {where}", args)]

    def _state_index(self, copy: Copy, run_id: str, epoch: str) -> list[StateIndex]:
        rows = self._read(f"SELECT process, checksum, size FROM {self._table('states', copy)} "
                          "WHERE run_id = %s AND epoch = %s AND chunk = 0", (run_id, epoch))
        return [StateIndex(process, digest, int(size)) for process, digest, size in rows]

    def _state_data(self, copy: Copy, run_id: str, epoch: str, process: str) -> bytes | None:
        rows = self._read(f"SELECT chunk, data FROM {self._table('states', copy)} WHERE run_id = %s AND epoch = %s "
                          "AND process = %s ORDER BY chunk", (run_id, epoch, process), binary=True)
        if not rows or [number for number, _ in rows] != list(range(len(rows))):
            return None  # missing, or a chunk is lost
        return b"".join(bytes(data) for _, data in rows)

    def close(self) -> None:
        with self._lock:
            self._conn.close()
