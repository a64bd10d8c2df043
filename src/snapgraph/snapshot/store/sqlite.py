"""The embedded default store: one SQLite file (``.snapgraph/snapshots.db``), WAL journal, fsync on commit.

Durability (rule 3 of :mod:`.base`): a durable write checkpoints the ``-wal``
file into the main file before it returns, so losing or garbling the
``-wal`` file afterwards can only lose state rows of an epoch that never
completed. A file is a snapgraph store only if its SQLite header carries
snapgraph's application id (rule 5).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

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
    StoreDamage,
    StoredRun,
    StoreError,
    StoreMissing,
    StoreUnusable,
    Write,
    progress_key,
    progress_record,
)

APPLICATION_ID = 0x536E6770  # "Sngp" in SQLite's header: marks a file as a snapgraph store
SQLITE_MAGIC = b"SQLite format 3\x00"

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE leases (
    graph_key TEXT PRIMARY KEY,
    token TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    host_id TEXT NOT NULL,
    proc_start TEXT NOT NULL,
    started REAL NOT NULL,
    heartbeat REAL NOT NULL
);
"""
_RUNS = """
CREATE TABLE {name} (
    run_id TEXT PRIMARY KEY,
    graph_key TEXT NOT NULL,
    graph_name TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    attempts INTEGER NOT NULL,
    last_epoch TEXT,
    sum TEXT NOT NULL
);
"""
_STATES = """
CREATE TABLE {name} (
    run_id TEXT NOT NULL,
    epoch TEXT NOT NULL,
    process TEXT NOT NULL,
    checksum TEXT NOT NULL,
    size INTEGER NOT NULL,
    data BLOB NOT NULL,  -- last: reading the other columns must not walk a large blob's overflow pages
    PRIMARY KEY (run_id, epoch, process)
);
"""
_EPOCHS = """
CREATE TABLE {name} (
    run_id TEXT NOT NULL,
    epoch TEXT NOT NULL,
    graph_key TEXT NOT NULL,
    started REAL NOT NULL,
    completed REAL NOT NULL,
    checksums TEXT NOT NULL,  -- JSON: process -> SHA-256 of its state
    digest TEXT NOT NULL,
    sum TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
"""
RUN_TABLES = ("runs", "runs_mirror")
STATE_TABLES = ("states", "states_mirror")
EPOCH_TABLES = ("epochs", "epochs_mirror")
_TABLES: dict[str, dict[Copy, str]] = {kind: dict(zip(COPIES, names)) for kind, names in
                                       (("runs", RUN_TABLES), ("states", STATE_TABLES), ("epochs", EPOCH_TABLES))}
_RUN_COLUMNS = "run_id, graph_key, graph_name, status, created, updated, attempts, last_epoch"
_EPOCH_COLUMNS = "run_id, epoch, graph_key, started, completed, checksums, digest, sum"
_LEASE_COLUMNS = "token, pid, host, host_id, proc_start, started, heartbeat"

_Statement = tuple[str, tuple[object, ...]]


def _statements(write: Write) -> list[_Statement]:
    match write:
        case PutRun(copy, r, digest):
            return [(f"INSERT OR REPLACE INTO {_TABLES['runs'][copy]} ({_RUN_COLUMNS}, sum) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (r.run_id, r.graph_key, r.graph_name, str(r.status), r.created, r.updated, r.attempts,
                      r.last_epoch, digest))]
        case PutState(copy, run_id, epoch, process, digest, data):
            return [(f"INSERT OR REPLACE INTO {_TABLES['states'][copy]} (run_id, epoch, process, checksum, size, "
                     "data) VALUES (?, ?, ?, ?, ?, ?)",
                     (run_id, epoch, process, digest, len(data), sqlite3.Binary(data)))]
        case PutCompletion(copy, row):
            return [(f"INSERT OR REPLACE INTO {_TABLES['epochs'][copy]} ({_EPOCH_COLUMNS}) VALUES "
                     "(?, ?, ?, ?, ?, ?, ?, ?)", (row.run_id, row.epoch, row.graph_key, row.started, row.completed,
                                                  row.checksums, row.digest, row.sum))]
        case PruneEpochs(run_id, before):
            return [(f"DELETE FROM {table} WHERE run_id = ? AND epoch < ?", (run_id, before))
                    for table in (*EPOCH_TABLES, *STATE_TABLES)]
        case DeleteRun(run_id):
            return [(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
                    for table in (*STATE_TABLES, *EPOCH_TABLES, *RUN_TABLES)]
        case DropRunCopy(copy, key):
            return [(f"DELETE FROM {_TABLES['runs'][copy]} WHERE run_id = ?", (key,))]
        case RenewLease(graph_key, token, heartbeat, progress):
            renew: list[_Statement] = [("UPDATE leases SET heartbeat = ? WHERE graph_key = ? AND token = ?",
                                        (heartbeat, graph_key, token))]
            if progress:
                renew.append(("INSERT OR REPLACE INTO meta (key, value) SELECT ?, ? WHERE EXISTS "
                              "(SELECT 1 FROM leases WHERE graph_key = ? AND token = ?)",
                              (progress_key(graph_key), progress_record(token, heartbeat, progress), graph_key, token)))
            return renew
        case DropLease(graph_key, token):
            return [("DELETE FROM meta WHERE key = ? AND EXISTS (SELECT 1 FROM leases WHERE graph_key = ? AND "
                     "token = ?)", (progress_key(graph_key), graph_key, token)),
                    ("DELETE FROM leases WHERE graph_key = ? AND token = ?", (graph_key, token))]
    raise TypeError(f"not a store write: {write!r}")


def _where(run_id: str | None, graph_key: str | None) -> tuple[str, tuple[object, ...]]:
    if run_id is not None:
        return "WHERE run_id = ?", (run_id,)
    if graph_key is not None:
        return "WHERE graph_key = ?", (graph_key,)
    return "", ()


class SQLiteStore(SnapshotStore):
    """The embedded default store.

    ``create=False`` opens only an existing store (the ``snapshots`` commands);
    a new store is built under a temporary name and linked into place, so a
    store file is never seen half-made (an empty file is a truncated store).
    ``read_only=True`` (implies ``create=False``) never changes the file, not
    even by the checkpoint SQLite runs when the last writer closes: what
    decides to refuse a run reads through it, so a refusal leaves the store's
    bytes as they were.
    """

    def __init__(self, path: Path, keep: int = DEFAULT_KEEP, *, create: bool = True, read_only: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        super().__init__(str(self.path), keep=keep, clock=clock)
        self._lock = threading.Lock()
        self.read_only = read_only
        if not self.path.exists():
            if not create or read_only:
                raise StoreMissing(f"no snapshot store at {self.path}")
            self._create()
        self._check_file()
        mode = "ro" if read_only else "rw"
        try:
            self._db = sqlite3.connect(f"file:{self.path}?mode={mode}", uri=True, check_same_thread=False,
                                       isolation_level=None, timeout=10.0)
        except sqlite3.DatabaseError as exc:
            raise StoreUnusable(f"snapshot store {self.path} cannot be opened: {exc}") from None
        try:
            if not read_only:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
            self._check_contents()
        except StoreUnusable:
            self._db.close()
            raise
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreUnusable(f"snapshot store {self.path} is damaged ({exc}); its runs cannot be read. "
                                "Move it aside to keep it for inspection; a new run needs another --store "
                                "or the file deleted") from None

    # -- opening ----------------------------------------------------------------------------
    def _create(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnusable(f"snapshot store {self.path}: cannot create its folder: {exc}") from None
        temp = self.path.with_name(f".{self.path.name}.new-{os.getpid()}-{uuid.uuid4().hex[:6]}")
        try:
            db = sqlite3.connect(str(temp), isolation_level=None)
            try:
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("BEGIN")
                script = _SCHEMA + "".join(
                    template.format(name=name) for template, names in
                    ((_RUNS, RUN_TABLES), (_STATES, STATE_TABLES), (_EPOCHS, EPOCH_TABLES)) for name in names)
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute("INSERT INTO meta (key, value) VALUES ('format', ?)", (str(FORMAT),))
                db.execute("COMMIT")
            finally:
                db.close()  # the last connection checkpoints and removes the -wal file
            try:
                os.link(temp, self.path)  # never replaces a file another engine created meanwhile
            except FileExistsError:
                pass
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StoreUnusable(f"snapshot store {self.path} cannot be created: {exc}") from None
        finally:
            for leftover in (temp, Path(f"{temp}-wal"), Path(f"{temp}-shm")):
                leftover.unlink(missing_ok=True)

    def _check_file(self) -> None:
        """Refuse what is not a snapgraph store before SQLite (or we) write anything into it."""
        if self.path.is_dir():
            raise StoreUnusable(f"snapshot store {self.path} is a directory, not a store file")
        try:
            with open(self.path, "rb") as file:
                header = file.read(100)
        except OSError as exc:
            raise StoreUnusable(f"snapshot store {self.path} cannot be read: {exc}") from None
        if not header:
            raise StoreDamage(
                f"snapshot store {self.path} is empty: a snapgraph store never is, so it was truncated and "
                "its runs and epochs are lost; nothing was written to it. Resuming is impossible; delete "
                "the file (or use another --store) to start over")
        if not header.startswith(SQLITE_MAGIC) or len(header) < 100:
            raise StoreUnusable(
                f"{self.path} is not a snapgraph store (not an SQLite database, or its header is damaged); "
                "nothing was written to it. Use another --store")
        if int.from_bytes(header[68:72], "big") != APPLICATION_ID:
            raise StoreUnusable(
                f"{self.path} is not a snapgraph store (an SQLite database without snapgraph's application "
                "id: another program's database, a store of a snapgraph older than format 2, or a damaged "
                "header); nothing was written to it. Use another --store")

    def _check_contents(self) -> None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        if row is None:
            raise sqlite3.DatabaseError("its format record is missing")
        if row[0] != str(FORMAT):
            raise StoreUnusable(f"snapshot store {self.path} has format {row[0]}, this snapgraph reads format "
                                f"{FORMAT}; use the snapgraph that wrote it, or another --store")
        for table in ("leases", *RUN_TABLES, *STATE_TABLES, *EPOCH_TABLES):
            self._db.execute(f"SELECT * FROM {table} LIMIT 1").fetchall()

    # -- primitives ---------------------------------------------------------------------------
    def _apply(self, writes: Sequence[Write], *, fence: Fence | None, durable: bool) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if fence is not None:
                    refusal = self.fence_refusal(self._lease_row(fence.graph_key))
                    if refusal is not None:
                        raise refusal
                for write in writes:
                    for sql, args in _statements(write):
                        self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except LeaseLost:
                self._db.execute("ROLLBACK")
                raise
            except sqlite3.DatabaseError as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"snapshot store {self.path}: write failed: {exc}") from None
            if durable:
                self._checkpoint()

    def _checkpoint(self) -> None:
        """Copy the -wal file into the main file and empty it (readers can delay it briefly)."""
        for _ in range(100):
            try:
                busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"snapshot store {self.path}: checkpoint failed: {exc}") from None
            if not busy:
                return
            time.sleep(0.02)
        raise StoreError(f"snapshot store {self.path}: checkpoint kept failing (another process reads the "
                         "store without end?)")

    def _lease_row(self, graph_key: str) -> LeaseHolder | None:
        row = self._db.execute(f"SELECT {_LEASE_COLUMNS} FROM leases WHERE graph_key = ?", (graph_key,)).fetchone()
        return LeaseHolder(*row) if row is not None else None

    def _swap_lease(self, graph_key: str, holder: LeaseHolder,
                    alive: Callable[[LeaseHolder], bool]) -> LeaseHolder | None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                current = self._lease_row(graph_key)
                if current is not None and alive(current):
                    self._db.execute("ROLLBACK")
                    return current
                self._db.execute(
                    f"INSERT OR REPLACE INTO leases (graph_key, {_LEASE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (graph_key, holder.token, holder.pid, holder.host, holder.host_id, holder.proc_start,
                     holder.started, holder.heartbeat))
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"snapshot store {self.path}: taking the lease failed: {exc}") from None
            self._checkpoint()
        return None

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple]:  # type: ignore[type-arg]
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreUnusable(f"snapshot store {self.path} is damaged: read failed: {exc}") from None

    def _lease(self, graph_key: str) -> LeaseHolder | None:
        rows = self._read(f"SELECT {_LEASE_COLUMNS} FROM leases WHERE graph_key = ?", (graph_key,))
        return LeaseHolder(*rows[0]) if rows else None

    def _progress(self, graph_key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (progress_key(graph_key),))
        return str(rows[0][0]) if rows else None

    def _runs(self, copy: Copy, *, run_id: str | None = None, graph_key: str | None = None) -> list[StoredRun]:
        where, args = _where(run_id, graph_key)
        rows = self._read(f"SELECT {_RUN_COLUMNS}, sum FROM {_TABLES['runs'][copy]} {where}", args)
        return [StoredRun(RunRecord(*row[:-1]), row[-1]) for row in rows]

    def _completions(self, copy: Copy, *, run_id: str | None = None,
                     graph_key: str | None = None) -> list[CompletionRow]:
        where, args = _where(run_id, graph_key)
        return [CompletionRow(*row) for row in
                self._read(f"SELECT {_EPOCH_COLUMNS} FROM {_TABLES['epochs'][copy]} {where}", args)]

    def _state_index(self, copy: Copy, run_id: str, epoch: str) -> list[StateIndex]:
        rows = self._read(f"SELECT process, checksum, size FROM {_TABLES['states'][copy]} "
                          "WHERE run_id = ? AND epoch = ?", (run_id, epoch))
        return [StateIndex(*row) for row in rows]

    def _state_data(self, copy: Copy, run_id: str, epoch: str, process: str) -> bytes | None:
        rows = self._read(f"SELECT data FROM {_TABLES['states'][copy]} WHERE run_id = ? AND epoch = ? AND process = ?",
                          (run_id, epoch, process))
        return rows[0][0] if rows and isinstance(rows[0][0], bytes) else None

    def close(self) -> None:
        with self._lock:
            self._db.close()
