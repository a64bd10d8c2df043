"""Where snapshots live: runs, epochs and per-operator state bytes.

:class:`SnapshotStore` is the interface the protocol and the CLI use;
:class:`SQLiteStore` is the embedded default (``.snapgraph/snapshots.db``).
Other backends (PostgreSQL, object stores) implement the same methods.

Durability rules the protocol relies on:

* ``save_state`` is atomic per operator and epoch; state rows of an epoch
  that never completed are invisible to restore.
* ``complete_epoch`` writes the completion record in one transaction, after
  all state rows of the epoch are durable. A crash at any moment leaves the
  previous complete epoch intact.
* Every state row carries a SHA-256 of its bytes, and the completion record a
  digest over the epoch's (process, checksum) pairs. ``latest_intact_epoch``
  verifies both and falls back to an older complete epoch if anything is
  damaged.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
ABANDONED = "abandoned"

DEFAULT_KEEP = 3  # complete epochs kept per run; older ones are pruned
SCHEMA_VERSION = 1


class StoreError(Exception):
    """The snapshot store is unusable (unreadable file, corrupt database)."""


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    graph_key: str
    graph_name: str
    status: str
    created: float
    updated: float
    attempts: int


@dataclass(frozen=True)
class EpochRecord:
    run_id: str
    epoch: str
    started: float
    completed: float
    total_bytes: int
    operator_bytes: dict[str, int]

    @property
    def duration(self) -> float:
        return self.completed - self.started


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def epoch_digest(checksums: dict[str, str]) -> str:
    joined = "\n".join(f"{name}={checksums[name]}" for name in sorted(checksums))
    return hashlib.sha256(joined.encode()).hexdigest()


class SnapshotStore(ABC):
    """Runs, their complete epochs, and operator state bytes."""

    @abstractmethod
    def begin_run(self, graph_key: str, graph_name: str) -> RunRecord: ...

    @abstractmethod
    def unfinished_run(self, graph_key: str) -> RunRecord | None: ...

    @abstractmethod
    def note_attempt(self, run_id: str) -> None: ...

    @abstractmethod
    def finish_run(self, run_id: str, status: str) -> None: ...

    @abstractmethod
    def save_state(self, run_id: str, epoch: str, process: str, data: bytes) -> None: ...

    @abstractmethod
    def complete_epoch(self, run_id: str, epoch: str, started: float, processes: list[str]) -> None: ...

    @abstractmethod
    def latest_intact_epoch(self, run_id: str) -> tuple[EpochRecord, dict[str, bytes]] | None:
        """The newest complete epoch whose checksums verify, with its states."""

    @abstractmethod
    def runs(self) -> list[RunRecord]: ...

    @abstractmethod
    def epochs(self, run_id: str) -> list[EpochRecord]: ...

    @abstractmethod
    def delete_run(self, run_id: str) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    graph_key TEXT NOT NULL,
    graph_name TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS states (
    run_id TEXT NOT NULL,
    epoch TEXT NOT NULL,
    process TEXT NOT NULL,
    checksum TEXT NOT NULL,
    size INTEGER NOT NULL,
    data BLOB NOT NULL,  -- last: reading the other columns must not walk a large blob's overflow pages
    PRIMARY KEY (run_id, epoch, process)
);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL,
    epoch TEXT NOT NULL,
    started REAL NOT NULL,
    completed REAL NOT NULL,
    processes TEXT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
"""


class SQLiteStore(SnapshotStore):
    """The embedded default store: one SQLite file, WAL journal, fsync on commit."""

    def __init__(self, path: Path, keep: int = DEFAULT_KEEP) -> None:
        self.path = Path(path)
        self.keep = keep
        self.damage: list[str] = []  # epochs skipped by latest_intact_epoch, for the user to see
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            fresh = not self._db.execute("SELECT 1 FROM sqlite_master WHERE name = 'runs'").fetchone()
            if not fresh and version != SCHEMA_VERSION:
                raise StoreError(f"snapshot store {self.path} has format {version}, this snapgraph "
                                 f"reads format {SCHEMA_VERSION}; use another --store or delete it")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("SELECT count(*) FROM runs").fetchone()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StoreError(f"snapshot store {self.path} is unusable: {exc}") from None

    def _write(self, statements: list[tuple[str, tuple[object, ...]]]) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for sql, args in statements:
                    self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"snapshot store {self.path}: write failed: {exc}") from None

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple]:  # type: ignore[type-arg]
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"snapshot store {self.path}: read failed: {exc}") from None

    def begin_run(self, graph_key: str, graph_name: str) -> RunRecord:
        now = time.time()
        run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + uuid.uuid4().hex[:6]
        self._write([(
            "INSERT INTO runs (run_id, graph_key, graph_name, status, created, updated, attempts) "
            "VALUES (?, ?, ?, ?, ?, ?, 1)", (run_id, graph_key, graph_name, RUNNING, now, now))])
        return RunRecord(run_id, graph_key, graph_name, RUNNING, now, now, 1)

    def unfinished_run(self, graph_key: str) -> RunRecord | None:
        rows = self._read(
            "SELECT run_id, graph_key, graph_name, status, created, updated, attempts FROM runs "
            "WHERE graph_key = ? AND status = ? ORDER BY created DESC LIMIT 1", (graph_key, RUNNING))
        return RunRecord(*rows[0]) if rows else None

    def note_attempt(self, run_id: str) -> None:
        self._write([("UPDATE runs SET attempts = attempts + 1, updated = ? WHERE run_id = ?",
                      (time.time(), run_id))])

    def finish_run(self, run_id: str, status: str) -> None:
        self._write([("UPDATE runs SET status = ?, updated = ? WHERE run_id = ?", (status, time.time(), run_id))])

    def save_state(self, run_id: str, epoch: str, process: str, data: bytes) -> None:
        self._write([(
            "INSERT OR REPLACE INTO states (run_id, epoch, process, checksum, size, data) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, epoch, process, checksum(data), len(data), sqlite3.Binary(data)))])

    def complete_epoch(self, run_id: str, epoch: str, started: float, processes: list[str]) -> None:
        rows = self._read("SELECT process, checksum FROM states WHERE run_id = ? AND epoch = ?", (run_id, epoch))
        sums = {name: digest for name, digest in rows}
        missing = sorted(set(processes) - set(sums))
        if missing:
            raise StoreError(f"epoch {epoch}: no state saved for {', '.join(missing)}")
        statements: list[tuple[str, tuple[object, ...]]] = [(
            "INSERT INTO epochs (run_id, epoch, started, completed, processes, digest) VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, epoch, started, time.time(), ",".join(sorted(sums)), epoch_digest(sums)))]
        statements += self._prune_statements(run_id, epoch)
        self._write(statements)

    def _prune_statements(self, run_id: str, newest: str) -> list[tuple[str, tuple[object, ...]]]:
        """Keep the newest ``keep`` complete epochs; drop older ones and abandoned partial states."""
        kept = [e for (e,) in self._read(
            "SELECT epoch FROM epochs WHERE run_id = ? ORDER BY epoch DESC LIMIT ?", (run_id, self.keep - 1))]
        oldest_kept = min(kept + [newest])
        return [
            ("DELETE FROM epochs WHERE run_id = ? AND epoch < ?", (run_id, oldest_kept)),
            ("DELETE FROM states WHERE run_id = ? AND epoch < ?", (run_id, oldest_kept)),
        ]

    def latest_intact_epoch(self, run_id: str) -> tuple[EpochRecord, dict[str, bytes]] | None:
        epochs = self._read(
            "SELECT epoch, started, completed, processes, digest FROM epochs WHERE run_id = ? "
            "ORDER BY epoch DESC", (run_id,))
        for epoch, started, completed, processes, digest in epochs:
            names = [p for p in processes.split(",") if p]
            rows = self._read("SELECT process, data, checksum FROM states WHERE run_id = ? AND epoch = ?",
                              (run_id, epoch))
            states = {name: bytes(data) for name, data, _ in rows}
            stored_sums = {name: digest_ for name, _, digest_ in rows}
            actual_sums = {name: checksum(data) for name, data in states.items()}
            intact = (
                set(names) == set(states)
                and actual_sums == stored_sums
                and epoch_digest(stored_sums) == digest
            )
            if intact:
                record = EpochRecord(run_id, epoch, started, completed, sum(map(len, states.values())),
                                     {n: len(d) for n, d in states.items()})
                return record, states
            self.damage.append(f"epoch {epoch} of run {run_id} is damaged (checksum mismatch or missing "
                               "state); falling back to an older complete epoch")
        return None

    def runs(self) -> list[RunRecord]:
        rows = self._read("SELECT run_id, graph_key, graph_name, status, created, updated, attempts FROM runs "
                          "ORDER BY created")
        return [RunRecord(*row) for row in rows]

    def epochs(self, run_id: str) -> list[EpochRecord]:
        result = []
        for epoch, started, completed in self._read(
                "SELECT epoch, started, completed FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)):
            sizes = dict(self._read(
                "SELECT process, size FROM states WHERE run_id = ? AND epoch = ?", (run_id, epoch)))
            result.append(EpochRecord(run_id, epoch, started, completed, sum(sizes.values()), sizes))
        return result

    def delete_run(self, run_id: str) -> bool:
        if not self._read("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)):
            return False
        self._write([
            ("DELETE FROM states WHERE run_id = ?", (run_id,)),
            ("DELETE FROM epochs WHERE run_id = ?", (run_id,)),
            ("DELETE FROM runs WHERE run_id = ?", (run_id,)),
        ])
        return True

    def close(self) -> None:
        with self._lock:
            self._db.close()
