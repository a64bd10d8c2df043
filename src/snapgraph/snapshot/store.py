"""Where snapshots live: runs, epochs, per-operator state bytes, and the lease on a graph's run.

:class:`SnapshotStore` is the interface the protocol, the supervisor and the
CLI use; :class:`SQLiteStore` is the embedded default
(``.snapgraph/snapshots.db``).

The rules a store keeps, because exactly-once depends on them:

1. **A complete epoch is written twice.** Every state row and every
   completion record goes into a table and its mirror in one transaction;
   each copy is verified on read (a SHA-256 per state, the per-process
   checksums and a digest inside the completion record, a checksum over every
   record's own fields), so one damaged copy is healed from the other.
2. **The newest complete epoch is the only automatic restore point.** Its
   ``epoch_complete`` may already have run (a WAL writer deleted its guard
   rows there), so restoring anything older would repeat side effects. The
   run record names its newest complete epoch (written in the completion's
   transaction), so a lost completion record is noticed too. When that epoch
   cannot be read intact from either copy, :meth:`SnapshotStore.restore_point`
   refuses with :class:`StoreDamage`; only ``accept_older=True`` (the CLI's
   ``--accept-older-epoch``) restores the newest older intact epoch, with the
   at-least-once consequence spelled out.
3. **Durable before anything depends on it.** Run records, leases and
   completion records are checkpointed into the main database file before the
   call returns, so losing or garbling SQLite's ``-wal`` file afterwards can
   only lose state rows of an epoch that never completed.
4. **One engine per graph.** :meth:`SnapshotStore.acquire_lease` takes an
   exclusive lease on the graph (holder pid, host, start time, heartbeat)
   before any run or epoch is written; every later write checks, inside its
   own transaction, that this engine still holds it (a fencing token), so an
   engine that lost its lease cannot write. A lease whose holder is dead (a
   process on this host that no longer exists, or a heartbeat older than
   :data:`LEASE_TTL` from another host) is taken over.
5. **Never write into a file that is not ours.** A file is a snapgraph store
   only if its SQLite header carries snapgraph's application id; anything
   else is refused before a single byte is written, and damage is named as
   damage, never as a format mismatch.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class RunStatus(enum.StrEnum):
    """How a run ended, as the store records it (``running``: unfinished, or still running)."""

    RUNNING = "running"
    COMPLETED = "completed"  # the graph finished
    STOPPED = "stopped"  # stopped on request (signal, --stop-after, a drain that timed out)
    FAILED = "failed"  # retries exhausted, or a failure without recovery
    ABANDONED = "abandoned"  # given up by --fresh


RUNNING = RunStatus.RUNNING
COMPLETED = RunStatus.COMPLETED
STOPPED = RunStatus.STOPPED
FAILED = RunStatus.FAILED
ABANDONED = RunStatus.ABANDONED

#: A plain ``run`` refuses while the newest run of the graph is in one of these: it has results
#: in the targets that a fresh start would write again.
NEEDS_DECISION = frozenset({RUNNING, STOPPED, FAILED})

DEFAULT_KEEP = 3  # complete epochs kept per run; older ones are pruned
FORMAT = 2  # the store's format; format 1 (snapgraph before leases and mirrors) is refused by name
APPLICATION_ID = 0x536E6770  # "Sngp" in SQLite's header: marks a file as a snapgraph store
LEASE_TTL = 15.0  # seconds without a heartbeat after which a holder on another host counts as dead
HEARTBEAT = 3.0  # seconds between heartbeats of a held lease
SQLITE_MAGIC = b"SQLite format 3\x00"


class StoreError(Exception):
    """The store failed (a write failed, the disk is full): the attempt fails (exit 1)."""

    exit_code = 1


class StoreUnusable(StoreError):
    """The file cannot be used as a store: not a snapgraph store, damaged, another format (exit 2)."""

    exit_code = 2


class StoreDamage(StoreUnusable):
    """What a restore needs is damaged in both copies or lost: refused, never guessed (exit 2)."""


class LeaseHeld(StoreError):
    """Another live engine holds the graph's lease (exit 2)."""

    exit_code = 2

    def __init__(self, message: str, holder: LeaseHolder) -> None:
        super().__init__(message)
        self.holder = holder


class LeaseLost(StoreError):
    """This engine's lease was taken over by another engine: it must not write any more."""


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    graph_key: str
    graph_name: str
    status: str
    created: float
    updated: float
    attempts: int
    last_epoch: str | None = None  # the newest epoch whose completion record was written


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


@dataclass(frozen=True)
class RestorePoint:
    """What an attempt restores: an epoch and the state bytes of its stateful operators."""

    epoch: EpochRecord
    states: dict[str, bytes]
    notes: list[str] = field(default_factory=list)  # healed copies, an accepted older epoch


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a graph's lease."""

    token: str
    pid: int
    host: str
    host_id: str  # hostname, boot and pid namespace: where ``pid`` means this process
    proc_start: str  # the holder's start time as its kernel reports it (tells a reused pid)
    started: float
    heartbeat: float

    def describe(self, now: float) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return (f"pid {self.pid} on host {self.host}, since {since}, "
                f"last heartbeat {max(0.0, now - self.heartbeat):.1f}s ago")


def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def epoch_digest(checksums: dict[str, str]) -> str:
    joined = "\n".join(f"{name}={checksums[name]}" for name in sorted(checksums))
    return hashlib.sha256(joined.encode()).hexdigest()


def _record_sum(*fields: object) -> str:
    # default=repr: a field that came back as another storage class (a blob for a text) no longer matches
    return hashlib.sha256(json.dumps(list(fields), default=repr).encode()).hexdigest()


def this_host_id() -> str:
    """This machine and pid namespace: two holders with the same id can see each other's pids."""
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(os.readlink(path) if path.endswith("/pid") else Path(path).read_text().strip())
        except OSError:
            parts.append("?")
    return "/".join(parts)


def process_start(pid: int) -> str:
    """The start time of process ``pid`` (clock ticks since boot), or '' if there is none."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def holder_alive(holder: LeaseHolder, now: float) -> bool:
    """On this host: the holder's process still exists. Elsewhere: its heartbeat is recent."""
    if holder.host_id == this_host_id():
        if holder.pid == os.getpid() and holder.proc_start == process_start(os.getpid()):
            return True
        start = process_start(holder.pid)
        if start:
            return start == holder.proc_start
        try:
            os.kill(holder.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not holder.proc_start  # no /proc: trust the pid
    return now - holder.heartbeat < LEASE_TTL


class SnapshotStore(ABC):
    """Runs, their complete epochs, operator state bytes, and one lease per graph."""

    @abstractmethod
    def acquire_lease(self, graph_key: str) -> Lease:
        """Take the graph's lease, or raise :class:`LeaseHeld` naming the live holder."""

    @abstractmethod
    def begin_run(self, graph_key: str, graph_name: str) -> RunRecord: ...

    @abstractmethod
    def newest_run(self, graph_key: str) -> RunRecord | None:
        """The graph's newest run, whatever its status; :class:`StoreDamage` if its record is damaged."""

    @abstractmethod
    def reopen_run(self, run_id: str) -> RunRecord:
        """Continue a run (``--resume``): running again, one more attempt."""

    @abstractmethod
    def note_attempt(self, run_id: str) -> None: ...

    @abstractmethod
    def finish_run(self, run_id: str, status: str) -> None: ...

    @abstractmethod
    def save_state(self, run_id: str, epoch: str, process: str, data: bytes) -> None: ...

    @abstractmethod
    def complete_epoch(self, run_id: str, epoch: str, started: float, processes: list[str]) -> None: ...

    @abstractmethod
    def restore_point(self, run_id: str, *, accept_older: bool = False, heal: bool = True) -> RestorePoint | None:
        """The run's newest complete epoch with its states (None: no epoch completed yet).

        Raises :class:`StoreDamage` when that epoch cannot be read intact, unless
        ``accept_older``: then the newest older intact epoch, with a note saying so.
        """

    @abstractmethod
    def runs(self) -> list[RunRecord]: ...

    @abstractmethod
    def epochs(self, run_id: str) -> list[EpochRecord]: ...

    @abstractmethod
    def delete_run(self, run_id: str) -> bool: ...

    @abstractmethod
    def close(self) -> None: ...


class Lease:
    """A held lease: a heartbeat thread renews it until :meth:`release`."""

    def __init__(self, store: SQLiteStore, graph_key: str, token: str) -> None:
        self.store = store
        self.graph_key = graph_key
        self.token = token
        self.lost: LeaseLost | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def keep_alive(self, on_lost: Callable[[LeaseLost], None], period: float = HEARTBEAT) -> None:
        """Renew every ``period`` seconds on a thread of its own; ``on_lost`` if it was taken over."""

        def beat() -> None:
            while not self._stop.wait(period):
                try:
                    self.store.renew_lease(self)
                except LeaseLost as lost:
                    self.lost = lost
                    on_lost(lost)
                    return
                except StoreError:
                    continue  # a busy or full store: the next beat tries again; the TTL is generous

        self._thread = threading.Thread(target=beat, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self.lost is None:
            self.store.release_lease(self)


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
_RUN_COLUMNS = "run_id, graph_key, graph_name, status, created, updated, attempts, last_epoch"

_Statement = tuple[str, tuple[object, ...]]


def _run_sum(record: RunRecord) -> str:
    return _record_sum(record.run_id, record.graph_key, record.graph_name, str(record.status), record.created,
                       record.updated, record.attempts, record.last_epoch)


@dataclass(frozen=True)
class _CompletionRecord:
    run_id: str
    epoch: str
    graph_key: str
    started: float
    completed: float
    checksums: dict[str, str]
    digest: str

    def sum(self) -> str:
        return _record_sum(self.run_id, self.epoch, self.graph_key, self.started, self.completed,
                           sorted(self.checksums.items()), self.digest)

    def intact(self, stored_sum: str) -> bool:
        return stored_sum == self.sum() and epoch_digest(self.checksums) == self.digest


class SQLiteStore(SnapshotStore):
    """The embedded default store: one SQLite file, WAL journal, fsync on commit.

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
        self.keep = keep
        self.clock = clock
        self._lock = threading.Lock()
        self._fence: tuple[str, str] | None = None  # (graph key, token) of the lease this engine holds
        self.read_only = read_only
        if not self.path.exists():
            if not create or read_only:
                raise StoreUnusable(f"no snapshot store at {self.path}")
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
    def _write(self, statements: list[_Statement], *, durable: bool = False, fenced: bool = True) -> None:
        """One transaction; checks the lease first (``fenced``); ``durable``: checkpoint into the main file."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                if fenced and self._fence is not None:
                    self._check_fence()
                for sql, args in statements:
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

    def _check_fence(self) -> None:
        assert self._fence is not None
        graph_key, token = self._fence
        row = self._db.execute("SELECT token, pid, host FROM leases WHERE graph_key = ?", (graph_key,)).fetchone()
        if row is None or row[0] != token:
            holder = f" (now held by pid {row[1]} on host {row[2]})" if row else ""
            raise LeaseLost(f"this engine lost its lease on graph {graph_key}{holder}: another engine took the "
                            "run over; this one stops without writing")

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple]:  # type: ignore[type-arg]
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:
                raise StoreUnusable(f"snapshot store {self.path} is damaged: read failed: {exc}") from None

    def _mirrored(self, tables: tuple[str, ...], columns: str, values: tuple[object, ...]) -> list[_Statement]:
        marks = ", ".join("?" * len(values))
        return [(f"INSERT OR REPLACE INTO {table} ({columns}) VALUES ({marks})", values) for table in tables]

    # -- the lease -----------------------------------------------------------------------------
    def acquire_lease(self, graph_key: str) -> Lease:
        now = self.clock()
        token = uuid.uuid4().hex
        holder = LeaseHolder(token, os.getpid(), socket.gethostname(), this_host_id(),
                             process_start(os.getpid()), now, now)
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                row = self._db.execute(
                    "SELECT token, pid, host, host_id, proc_start, started, heartbeat FROM leases "
                    "WHERE graph_key = ?", (graph_key,)).fetchone()
                if row is not None and holder_alive(LeaseHolder(*row), now):
                    self._db.execute("ROLLBACK")
                    raise self._held(graph_key, LeaseHolder(*row), now)
                self._db.execute(
                    "INSERT OR REPLACE INTO leases (graph_key, token, pid, host, host_id, proc_start, started, "
                    "heartbeat) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (graph_key, token, holder.pid, holder.host, holder.host_id, holder.proc_start, now, now))
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"snapshot store {self.path}: taking the lease failed: {exc}") from None
            self._checkpoint()
            self._fence = (graph_key, token)
        return Lease(self, graph_key, token)

    def _held(self, graph_key: str, holder: LeaseHolder, now: float) -> LeaseHeld:
        return LeaseHeld(f"graph {graph_key} is being run by another engine ({holder.describe(now)}) with store "
                         f"{self.path}; wait for it to end or stop it first", holder)

    def check_lease_free(self, graph_key: str) -> None:
        """Raise :class:`LeaseHeld` if a live engine holds the graph, without writing anything."""
        holder = self.live_holder(graph_key)
        if holder is not None:
            raise self._held(graph_key, holder, self.clock())

    def renew_lease(self, lease: Lease) -> None:
        self._write([("UPDATE leases SET heartbeat = ? WHERE graph_key = ? AND token = ?",
                      (self.clock(), lease.graph_key, lease.token))])

    def release_lease(self, lease: Lease) -> None:
        self._write([("DELETE FROM leases WHERE graph_key = ? AND token = ?", (lease.graph_key, lease.token))],
                    durable=True, fenced=False)
        if self._fence == (lease.graph_key, lease.token):
            self._fence = None

    def lease_holder(self, graph_key: str) -> LeaseHolder | None:
        rows = self._read("SELECT token, pid, host, host_id, proc_start, started, heartbeat FROM leases "
                          "WHERE graph_key = ?", (graph_key,))
        return LeaseHolder(*rows[0]) if rows else None

    def live_holder(self, graph_key: str) -> LeaseHolder | None:
        holder = self.lease_holder(graph_key)
        return holder if holder is not None and holder_alive(holder, self.clock()) else None

    # -- runs ------------------------------------------------------------------------------------
    def _put_run(self, record: RunRecord) -> list[_Statement]:
        values = (record.run_id, record.graph_key, record.graph_name, str(record.status), record.created,
                  record.updated, record.attempts, record.last_epoch, _run_sum(record))
        return self._mirrored(RUN_TABLES, _RUN_COLUMNS + ", sum", values)

    def _run_records(self, where: str = "", args: tuple[object, ...] = ()) -> dict[str, RunRecord | None]:
        """run id -> its record from whichever copy verifies (None: both copies damaged)."""
        copies: dict[str, list[RunRecord]] = {}
        verified: dict[str, set[str]] = {table: set() for table in RUN_TABLES}
        failing: dict[str, list[str]] = {table: [] for table in RUN_TABLES}
        for table in RUN_TABLES:
            for row in self._read(f"SELECT {_RUN_COLUMNS}, sum FROM {table} {where}", args):
                record = RunRecord(*row[:-1])
                if _run_sum(record) == row[-1]:
                    copies.setdefault(record.run_id, []).append(record)
                    verified[table].add(record.run_id)
                else:
                    failing[table].append(record.run_id if isinstance(record.run_id, str) else repr(record.run_id))
        bad: set[str] = set()
        for table, other in zip(RUN_TABLES, reversed(RUN_TABLES)):
            # a run verified only in the other table explains one failing row here (its key may be garbled)
            if len(failing[table]) > len(verified[other] - verified[table]):
                bad.update(failing[table])
        bad -= set(copies)
        found: dict[str, RunRecord | None] = {run_id: None for run_id in bad}
        for run_id, records in copies.items():
            found[run_id] = max(records, key=lambda r: r.updated)
        return found

    def _run(self, run_id: str) -> RunRecord:
        record = self._run_records("WHERE run_id = ?", (run_id,)).get(run_id)
        if record is None:
            raise StoreDamage(f"snapshot store {self.path}: the record of run {run_id} is damaged or lost")
        return record

    def begin_run(self, graph_key: str, graph_name: str) -> RunRecord:
        now = self.clock()
        run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + uuid.uuid4().hex[:6]
        record = RunRecord(run_id, graph_key, graph_name, RUNNING, now, now, 1)
        self._write(self._put_run(record), durable=True)
        return record

    def newest_run(self, graph_key: str) -> RunRecord | None:
        records = self._run_records("WHERE graph_key = ?", (graph_key,))
        damaged = sorted(run_id for run_id, record in records.items() if record is None)
        if damaged:
            raise StoreDamage(f"snapshot store {self.path}: the record of run {damaged[-1]} of graph {graph_key} "
                              "is damaged in both copies; whether it may start anew cannot be told")
        known = set(records)
        for table in EPOCH_TABLES:
            for (run_id,) in self._read(f"SELECT DISTINCT run_id FROM {table} WHERE graph_key = ?", (graph_key,)):
                if run_id not in known:
                    raise StoreDamage(f"snapshot store {self.path}: run {run_id} of graph {graph_key} has complete "
                                      "epochs but its run record is lost")
        live = [r for r in records.values() if r is not None]
        return max(live, key=lambda r: (r.created, r.run_id)) if live else None

    def _update_run(self, run_id: str, **changes: object) -> list[_Statement]:
        current = self._run(run_id)
        fields = {**current.__dict__, "updated": self.clock(), **changes}
        return self._put_run(RunRecord(**fields))  # type: ignore[arg-type]

    def reopen_run(self, run_id: str) -> RunRecord:
        current = self._run(run_id)
        self._write(self._update_run(run_id, status=RUNNING, attempts=current.attempts + 1), durable=True)
        return self._run(run_id)

    def note_attempt(self, run_id: str) -> None:
        self._write(self._update_run(run_id, attempts=self._run(run_id).attempts + 1), durable=True)

    def finish_run(self, run_id: str, status: str) -> None:
        self._write(self._update_run(run_id, status=RunStatus(status)), durable=True)

    # -- epochs ----------------------------------------------------------------------------------
    def save_state(self, run_id: str, epoch: str, process: str, data: bytes) -> None:
        values = (run_id, epoch, process, checksum(data), len(data), sqlite3.Binary(data))
        self._write(self._mirrored(STATE_TABLES, "run_id, epoch, process, checksum, size, data", values))

    def complete_epoch(self, run_id: str, epoch: str, started: float, processes: list[str]) -> None:
        sums: dict[str, str] = {}
        for table in STATE_TABLES:
            rows = self._read(f"SELECT process, checksum FROM {table} WHERE run_id = ? AND epoch = ?", (run_id, epoch))
            for name, digest in rows:
                if name in processes:
                    sums.setdefault(name, digest)
        missing = sorted(set(processes) - set(sums))
        if missing:
            raise StoreError(f"epoch {epoch}: no state saved for {', '.join(missing)}")
        run = self._run(run_id)
        record = _CompletionRecord(run_id, epoch, run.graph_key, started, self.clock(), sums, epoch_digest(sums))
        statements = self._mirrored(
            EPOCH_TABLES, "run_id, epoch, graph_key, started, completed, checksums, digest, sum",
            (run_id, epoch, run.graph_key, started, record.completed, json.dumps(sums, sort_keys=True),
             record.digest, record.sum()))
        statements += self._update_run(run_id, last_epoch=epoch)
        statements += self._prune_statements(run_id, epoch)
        self._write(statements, durable=True)

    def _prune_statements(self, run_id: str, newest: str) -> list[_Statement]:
        """Keep the newest ``keep`` complete epochs; drop older ones and abandoned partial states."""
        kept = [e for (e,) in self._read(
            "SELECT epoch FROM epochs WHERE run_id = ? ORDER BY epoch DESC LIMIT ?", (run_id, self.keep - 1))]
        oldest_kept = min(kept + [newest])
        return [(f"DELETE FROM {table} WHERE run_id = ? AND epoch < ?", (run_id, oldest_kept))
                for table in (*EPOCH_TABLES, *STATE_TABLES)]

    def _completion_records(self, run_id: str) -> dict[str, tuple[_CompletionRecord | None, list[str]]]:
        """epoch -> (a verified completion record or None, the tables whose copy is damaged or missing)."""
        copies: dict[str, dict[str, _CompletionRecord | None]] = {}
        for table in EPOCH_TABLES:
            rows = self._read(f"SELECT epoch, graph_key, started, completed, checksums, digest, sum FROM {table} "
                              "WHERE run_id = ?", (run_id,))
            for epoch, graph_key, started, completed, sums, digest, stored in rows:
                if not isinstance(epoch, str):
                    continue  # a garbled key: the epoch's copy in this table counts as missing
                try:
                    record: _CompletionRecord | None = _CompletionRecord(
                        run_id, epoch, graph_key, started, completed, dict(json.loads(sums)), digest)
                except (ValueError, TypeError):
                    record = None
                copies.setdefault(epoch, {})[table] = record if record is not None and record.intact(stored) else None
        found: dict[str, tuple[_CompletionRecord | None, list[str]]] = {}
        for epoch, by_table in copies.items():
            good = next((r for r in by_table.values() if r is not None), None)
            found[epoch] = (good, [t for t in EPOCH_TABLES if by_table.get(t) is None])
        return found

    def _intact_states(self, record: _CompletionRecord) -> tuple[dict[str, bytes], list[str], list[_Statement]]:
        """(states that verify, problems, statements that heal a damaged copy from the good one)."""
        states: dict[str, bytes] = {}
        problems: list[str] = []
        heal: list[_Statement] = []
        for process, expected in sorted(record.checksums.items()):
            good: bytes | None = None
            damaged: list[str] = []
            for table in STATE_TABLES:
                rows = self._read(f"SELECT data FROM {table} WHERE run_id = ? AND epoch = ? AND process = ?",
                                  (record.run_id, record.epoch, process))
                data = rows[0][0] if rows and isinstance(rows[0][0], bytes) else None
                if data is not None and checksum(data) == expected:
                    good = good if good is not None else data
                else:
                    damaged.append(table)
            if good is None:
                problems.append(f"the state of operator {process!r} fails its checksum in both copies")
                continue
            states[process] = good
            for table in damaged:
                heal.append((f"INSERT OR REPLACE INTO {table} (run_id, epoch, process, checksum, size, data) "
                             "VALUES (?, ?, ?, ?, ?, ?)",
                             (record.run_id, record.epoch, process, expected, len(good), sqlite3.Binary(good))))
        return states, problems, heal

    def restore_point(self, run_id: str, *, accept_older: bool = False, heal: bool = True) -> RestorePoint | None:
        run = self._run(run_id)
        records = self._completion_records(run_id)
        if run.last_epoch is None:
            return None
        # the verified run record names the newest epoch: a copy claiming a newer one has a garbled key
        epochs = sorted({e for e in records if e <= run.last_epoch} | {run.last_epoch}, reverse=True)
        newest = epochs[0]
        problems: list[str] = []
        notes: list[str] = []
        for epoch in epochs:
            record, bad_copies = records.get(epoch, (None, list(EPOCH_TABLES)))
            if record is None:
                lost = epoch not in records
                problems.append(f"epoch {epoch}: its completion record is {'lost' if lost else 'damaged in both copies'}")
                continue
            states, state_problems, healing = self._intact_states(record)
            if state_problems:
                problems += [f"epoch {epoch}: {p}" for p in state_problems]
                continue
            if epoch != newest and not accept_older:
                raise StoreDamage(self._refusal(run_id, newest, problems, epoch))  # before healing: nothing written
            run_heal = self._run_copies_to_heal(run) if heal else []
            if heal and (healing or bad_copies or run_heal):
                statements = list(healing) + run_heal
                if bad_copies:
                    statements += self._mirrored(
                        tuple(bad_copies), "run_id, epoch, graph_key, started, completed, checksums, digest, sum",
                        (run_id, epoch, record.graph_key, record.started, record.completed,
                         json.dumps(record.checksums, sort_keys=True), record.digest, record.sum()))
                self._write(statements, durable=True)
                notes.append(f"epoch {epoch} of run {run_id}: {len(statements)} damaged or missing cop"
                             f"{'y' if len(statements) == 1 else 'ies'} healed from the intact mirror")
            sizes = {name: len(data) for name, data in states.items()}
            point = EpochRecord(run_id, epoch, record.started, record.completed, sum(sizes.values()), sizes)
            if epoch != newest:
                notes.append(f"restoring the older epoch {epoch} of run {run_id} as --accept-older-epoch asked "
                             f"({'; '.join(problems)}): whatever epoch_complete did for the newer epochs will be "
                             "done again (at-least-once)")
            return RestorePoint(point, states, notes)
        raise StoreDamage(self._refusal(run_id, newest, problems, None))

    def _run_copies_to_heal(self, run: RunRecord) -> list[_Statement]:
        """Statements rewriting the copies of ``run``'s record that are damaged or missing."""
        statements = []
        for table, statement in zip(RUN_TABLES, self._put_run(run)):
            rows = self._read(f"SELECT {_RUN_COLUMNS}, sum FROM {table} WHERE run_id = ?", (run.run_id,))
            if not rows or rows[0][-1] != _run_sum(run) or RunRecord(*rows[0][:-1]) != run:
                statements.append(statement)
        return statements

    def _refusal(self, run_id: str, newest: str, problems: list[str], older: str | None) -> str:
        alternative = (f"--resume --accept-older-epoch restores the older intact epoch {older} instead, and "
                       "repeats what epoch_complete of the newer epochs did (at-least-once)" if older else
                       "no older intact epoch is left either; only --fresh (start over) remains")
        return (f"snapshot store {self.path}: the newest complete epoch {newest} of run {run_id} cannot be "
                f"restored: {'; '.join(problems)}. Restoring from it is the only exactly-once choice, so "
                f"recovery is refused and nothing was written. {alternative}")

    # -- listing ---------------------------------------------------------------------------------
    def runs(self) -> list[RunRecord]:
        records = self._run_records()
        damaged = [run_id for run_id, record in records.items() if record is None]
        if damaged:
            raise StoreDamage(f"snapshot store {self.path}: the record of run {damaged[0]} is damaged in both copies")
        return sorted((r for r in records.values() if r is not None), key=lambda r: (r.created, r.run_id))

    def epochs(self, run_id: str) -> list[EpochRecord]:
        result = []
        for epoch, (record, _) in sorted(self._completion_records(run_id).items()):
            if record is None:
                continue
            sizes = {}
            for table in STATE_TABLES:
                for name, size in self._read(f"SELECT process, size FROM {table} WHERE run_id = ? AND epoch = ?",
                                             (run_id, epoch)):
                    if name in record.checksums:
                        sizes.setdefault(name, size)
            result.append(EpochRecord(run_id, epoch, record.started, record.completed, sum(sizes.values()), sizes))
        return result

    def delete_run(self, run_id: str) -> bool:
        if run_id not in self._run_records("WHERE run_id = ?", (run_id,)):
            return False
        self._write([(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
                     for table in (*STATE_TABLES, *EPOCH_TABLES, *RUN_TABLES)], durable=True, fenced=False)
        return True

    def close(self) -> None:
        with self._lock:
            self._db.close()
