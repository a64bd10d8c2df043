"""Where snapshots live: runs, epochs, per-operator state bytes, and the lease on a graph's run.

:class:`SnapshotStore` owns every rule exactly-once depends on; a backend
(:mod:`.sqlite`, :mod:`.postgres`, :mod:`.memory`) implements only the
storage primitives at the bottom of the class: one atomic batch of
:data:`Write` operations, a lease swap, and a handful of reads. The rules:

1. **A complete epoch is written twice.** Every state, every completion
   record and every run record goes into a primary and a mirror copy in one
   transaction; each copy is verified on read (a SHA-256 per state, the
   per-process checksums and a digest inside the completion record, a
   checksum over every record's own fields), so one damaged copy is healed
   from the other.
2. **The newest complete epoch is the only automatic restore point.** Its
   ``epoch_complete`` may already have run (a WAL writer deleted its guard
   rows there), so restoring anything older would repeat side effects. The
   run record names its newest complete epoch (written in the completion's
   transaction), so a lost completion record is noticed too. When that epoch
   cannot be read intact from either copy, :meth:`SnapshotStore.restore_point`
   refuses with :class:`StoreDamage`; only ``accept_older=True`` (the CLI's
   ``--accept-older-epoch``) restores the newest older intact epoch, with the
   at-least-once consequence spelled out.
3. **Durable before anything depends on it.** Writes marked ``durable`` (run
   records, leases, completion records) are on stable storage when
   :meth:`_apply` returns; state rows of an epoch that never completed may be
   lost.
4. **One engine per graph.** :meth:`SnapshotStore.acquire_lease` takes an
   exclusive lease on the graph (holder pid, host, start time, heartbeat)
   before any run or epoch is written; every later write checks, inside its
   own transaction, that this engine still holds it (a fencing token), so an
   engine that lost its lease cannot write. A lease whose holder is dead (a
   process on this host that no longer exists, or a heartbeat older than
   :data:`LEASE_TTL` from another host) is taken over.
5. **Never write into what is not ours.** Each backend refuses a file or a
   database schema that does not carry snapgraph's mark before a single byte
   is written, and names damage as damage, never as a format mismatch.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal


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
LEASE_TTL = 15.0  # seconds without a heartbeat after which a holder on another host counts as dead
HEARTBEAT = 3.0  # seconds between heartbeats of a held lease

Copy = Literal["primary", "mirror"]
COPIES: tuple[Copy, Copy] = ("primary", "mirror")


class StoreError(Exception):
    """The store failed (a write failed, the disk is full): the attempt fails (exit 1)."""

    exit_code = 1


class StoreUnusable(StoreError):
    """The store cannot be used: not a snapgraph store, damaged, another format, unreachable (exit 2)."""

    exit_code = 2


class StoreMissing(StoreUnusable):
    """There is no store at the location, and it was not to be created (exit 2)."""


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

    def sum(self) -> str:
        return _record_sum(self.run_id, self.graph_key, self.graph_name, str(self.status), self.created,
                           self.updated, self.attempts, self.last_epoch)


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
    """What an attempt restores, and each group of it its share: an epoch and the state bytes of its
    stateful operators. The one shape of restore data, from the store to the operators."""

    epoch: str
    states: dict[str, bytes]
    record: EpochRecord | None = None  # the epoch's completion record (as the store returned it)
    notes: list[str] = field(default_factory=list)  # healed copies, an accepted older epoch

    def share(self, members: Iterable[str]) -> RestorePoint:
        """What the group of operators ``members`` restores."""
        wanted = set(members)
        return RestorePoint(self.epoch, {name: data for name, data in self.states.items() if name in wanted})


@dataclass(frozen=True)
class Progress:
    """A running engine's report, renewed with its heartbeat: ``at`` (its clock), ``report`` (JSON data:
    the attempt, epochs, rows moved per operator — what ``snapgraph status`` shows)."""

    at: float
    report: dict[str, object]


def progress_key(graph_key: str) -> str:
    """Where a store keeps a graph's progress report (in its ``meta`` records)."""
    return f"progress {graph_key}"


def progress_record(token: str, at: float, report: str) -> str:
    """The stored form of a progress report: the holder's token, the time, the report (JSON text)."""
    return json.dumps({"token": token, "at": at, "report": json.loads(report)})


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


# -- stored rows and the writes a backend applies ---------------------------------------------

@dataclass(frozen=True)
class StoredRun:
    """One copy of a run record as read back: the record and the checksum stored beside it."""

    record: RunRecord
    sum: str


@dataclass(frozen=True)
class StateIndex:
    """What a copy says about one saved state, without its bytes."""

    process: str
    checksum: str
    size: int


@dataclass(frozen=True)
class CompletionRow:
    """One copy of an epoch's completion record, as stored (``checksums`` is JSON text)."""

    run_id: str
    epoch: str
    graph_key: str
    started: float
    completed: float
    checksums: str
    digest: str
    sum: str


@dataclass(frozen=True)
class PutRun:
    copy: Copy
    record: RunRecord
    sum: str


@dataclass(frozen=True)
class PutState:
    copy: Copy
    run_id: str
    epoch: str
    process: str
    checksum: str
    data: bytes


@dataclass(frozen=True)
class PutCompletion:
    copy: Copy
    row: CompletionRow


@dataclass(frozen=True)
class PruneEpochs:
    """Drop every completion record and state of ``run_id`` older than ``before``, in both copies."""

    run_id: str
    before: str


@dataclass(frozen=True)
class DeleteRun:
    run_id: str


@dataclass(frozen=True)
class DropRunCopy:
    """Delete one copy's run row stored under ``key`` (a damaged row whose key may be garbled)."""

    copy: Copy
    key: object


@dataclass(frozen=True)
class RenewLease:
    """Renew the lease of ``token``; with ``progress`` (JSON text), also record what its engine reports."""

    graph_key: str
    token: str
    heartbeat: float
    progress: str = ""


@dataclass(frozen=True)
class DropLease:
    graph_key: str
    token: str


Write = PutRun | PutState | PutCompletion | PruneEpochs | DeleteRun | DropRunCopy | RenewLease | DropLease


@dataclass(frozen=True)
class Fence:
    """The lease this engine holds: every fenced write checks it inside its own transaction."""

    graph_key: str
    token: str


# -- checksums and liveness -------------------------------------------------------------------

def checksum(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def epoch_digest(checksums: dict[str, str]) -> str:
    joined = "\n".join(f"{name}={checksums[name]}" for name in sorted(checksums))
    return hashlib.sha256(joined.encode()).hexdigest()


def _record_sum(*fields: object) -> str:
    # default=repr: a field that came back as another type (a blob for a text) no longer matches
    return hashlib.sha256(json.dumps(list(fields), default=repr).encode()).hexdigest()


def completion_sum(run_id: str, epoch: str, graph_key: str, started: float, completed: float,
                   checksums: dict[str, str], digest: str) -> str:
    return _record_sum(run_id, epoch, graph_key, started, completed, sorted(checksums.items()), digest)


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
    """The start time of process ``pid`` (clock ticks since boot), or '' if there is none.

    A zombie (exited, not yet reaped by its parent) counts as none: it will never write again.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return ""
    if len(fields) < 20 or fields[0] == "Z":
        return ""
    return fields[19]


def holder_alive(holder: LeaseHolder, now: float) -> bool:
    """On this host: the holder's process still exists. Elsewhere: its heartbeat is recent."""
    if holder.host_id == this_host_id():
        if holder.pid == os.getpid() and holder.proc_start == process_start(os.getpid()):
            return True
        start = process_start(holder.pid)
        if start:
            return start == holder.proc_start
        if Path("/proc/self/stat").exists():
            return False  # /proc shows no such process (or only its zombie)
        try:
            os.kill(holder.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not holder.proc_start  # no /proc: trust the pid
    return now - holder.heartbeat < LEASE_TTL


@dataclass(frozen=True)
class _Completion:
    """A verified completion record."""

    run_id: str
    epoch: str
    graph_key: str
    started: float
    completed: float
    checksums: dict[str, str]
    digest: str

    def row(self) -> CompletionRow:
        return CompletionRow(self.run_id, self.epoch, self.graph_key, self.started, self.completed,
                             json.dumps(self.checksums, sort_keys=True), self.digest,
                             completion_sum(self.run_id, self.epoch, self.graph_key, self.started,
                                            self.completed, self.checksums, self.digest))

    @classmethod
    def verified(cls, row: CompletionRow) -> _Completion | None:
        """The record if this copy is intact, else None."""
        try:
            checksums = dict(json.loads(row.checksums))
            record = cls(row.run_id, row.epoch, row.graph_key, row.started, row.completed, checksums, row.digest)
            intact = row.sum == record.row().sum and epoch_digest(checksums) == row.digest
        except (ValueError, TypeError):
            return None
        return record if intact else None


class SnapshotStore(ABC):
    """Runs, their complete epochs, operator state bytes, and one lease per graph.

    ``location`` names the store in every message (a path, a URL without its
    password); ``clock`` gives the time written into records and leases.
    """

    def __init__(self, location: str, *, keep: int = DEFAULT_KEEP,
                 clock: Callable[[], float] = time.time) -> None:
        self.location = location
        self.keep = keep
        self.clock = clock
        self._fence: Fence | None = None

    # -- sharing with group processes ------------------------------------------------------------
    def shared_location(self) -> str | None:
        """Where another process can open this same store to write states itself (None: it cannot,
        and states go through the engine)."""
        return None

    @property
    def fence(self) -> Fence | None:
        """The lease this store object writes under (None: no lease taken)."""
        return self._fence

    def write_under(self, fence: Fence) -> None:
        """Write under a lease another store object took (a group process writing its states):
        every fenced write checks that lease, as the engine's own writes do."""
        self._fence = fence

    # -- the lease -------------------------------------------------------------------------------
    def acquire_lease(self, graph_key: str) -> Lease:
        """Take the graph's lease, or raise :class:`LeaseHeld` naming the live holder."""
        now = self.clock()
        holder = LeaseHolder(uuid.uuid4().hex, os.getpid(), socket.gethostname(), this_host_id(),
                             process_start(os.getpid()), now, now)
        blocking = self._swap_lease(graph_key, holder, lambda current: holder_alive(current, now))
        if blocking is not None:
            raise self._held(graph_key, blocking, now)
        self._fence = Fence(graph_key, holder.token)
        return Lease(self, graph_key, holder.token)

    def _held(self, graph_key: str, holder: LeaseHolder, now: float) -> LeaseHeld:
        return LeaseHeld(f"graph {graph_key} is being run by another engine ({holder.describe(now)}) with store "
                         f"{self.location}; wait for it to end or stop it first", holder)

    def check_lease_free(self, graph_key: str) -> None:
        """Raise :class:`LeaseHeld` if a live engine holds the graph, without writing anything."""
        holder = self.live_holder(graph_key)
        if holder is not None:
            raise self._held(graph_key, holder, self.clock())

    def renew_lease(self, lease: Lease) -> None:
        self._write([RenewLease(lease.graph_key, lease.token, self.clock(), lease.progress_report())], durable=False)

    def progress(self, graph_key: str) -> Progress | None:
        """What the engine that holds the graph's lease reported at its last heartbeat (None: nothing,
        or the report is not the current holder's)."""
        stored = self._progress(graph_key)
        holder = self._lease(graph_key)
        if stored is None or holder is None:
            return None
        try:
            record = json.loads(stored)
        except ValueError:
            return None
        if not isinstance(record, dict) or record.get("token") != holder.token:
            return None
        report = record.get("report")
        return Progress(float(record.get("at", 0.0)), report if isinstance(report, dict) else {})

    def release_lease(self, lease: Lease) -> None:
        self._write([DropLease(lease.graph_key, lease.token)], fenced=False)
        if self._fence == Fence(lease.graph_key, lease.token):
            self._fence = None

    def lease_holder(self, graph_key: str) -> LeaseHolder | None:
        return self._lease(graph_key)

    def live_holder(self, graph_key: str) -> LeaseHolder | None:
        holder = self._lease(graph_key)
        return holder if holder is not None and holder_alive(holder, self.clock()) else None

    def fence_refusal(self, holder: LeaseHolder | None) -> LeaseLost | None:
        """For a backend, inside a fenced write: the error to raise when ``holder`` is not this engine."""
        assert self._fence is not None
        if holder is not None and holder.token == self._fence.token:
            return None
        now_held = f" (now held by pid {holder.pid} on host {holder.host})" if holder else ""
        return LeaseLost(f"this engine lost its lease on graph {self._fence.graph_key}{now_held}: another engine "
                         "took the run over; this one stops without writing")

    # -- runs ------------------------------------------------------------------------------------
    def _put_run(self, record: RunRecord) -> list[Write]:
        return [PutRun(copy, record, record.sum()) for copy in COPIES]

    def _run_records(self, *, run_id: str | None = None,
                     graph_key: str | None = None) -> dict[str, RunRecord | None]:
        """run id -> its record from whichever copy verifies (None: both copies damaged)."""
        copies: dict[str, list[RunRecord]] = {}
        verified: dict[Copy, set[str]] = {copy: set() for copy in COPIES}
        failing: dict[Copy, list[str]] = {copy: [] for copy in COPIES}
        for copy in COPIES:
            for stored in self._runs(copy, run_id=run_id, graph_key=graph_key):
                record = stored.record
                if record.sum() == stored.sum:
                    copies.setdefault(record.run_id, []).append(record)
                    verified[copy].add(record.run_id)
                else:
                    failing[copy].append(record.run_id if isinstance(record.run_id, str) else repr(record.run_id))
        bad: set[str] = set()
        for copy, other in zip(COPIES, reversed(COPIES)):
            # a run verified only in the other copy explains one failing row here (its key may be garbled)
            if len(failing[copy]) > len(verified[other] - verified[copy]):
                bad.update(failing[copy])
        bad -= set(copies)
        found: dict[str, RunRecord | None] = {bad_id: None for bad_id in bad}
        for good_id, records in copies.items():
            found[good_id] = max(records, key=lambda r: r.updated)
        return found

    def _run(self, run_id: str) -> RunRecord:
        record = self._run_records(run_id=run_id).get(run_id)
        if record is None:
            raise StoreDamage(f"snapshot store {self.location}: the record of run {run_id} is damaged or lost")
        return record

    def begin_run(self, graph_key: str, graph_name: str) -> RunRecord:
        now = self.clock()
        run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + uuid.uuid4().hex[:6]
        record = RunRecord(run_id, graph_key, graph_name, RUNNING, now, now, 1)
        self._write(self._put_run(record))
        return record

    def newest_run(self, graph_key: str) -> RunRecord | None:
        """The graph's newest run, whatever its status; :class:`StoreDamage` if its record is damaged."""
        records = self._run_records(graph_key=graph_key)
        damaged = sorted(run_id for run_id, record in records.items() if record is None)
        if damaged:
            raise StoreDamage(f"snapshot store {self.location}: the record of run {damaged[-1]} of graph "
                              f"{graph_key} is damaged in both copies; whether it may start anew cannot be told")
        for copy in COPIES:
            for row in self._completions(copy, graph_key=graph_key):
                if row.run_id not in records:
                    raise StoreDamage(f"snapshot store {self.location}: run {row.run_id} of graph {graph_key} has "
                                      "complete epochs but its run record is lost")
        live = [r for r in records.values() if r is not None]
        return max(live, key=lambda r: (r.created, r.run_id)) if live else None

    def _update_run(self, run_id: str, **changes: object) -> list[Write]:
        current = self._run(run_id)
        return self._put_run(replace(current, updated=self.clock(), **changes))  # type: ignore[arg-type]

    def reopen_run(self, run_id: str) -> RunRecord:
        """Continue a run (``--resume``): running again, one more attempt."""
        current = self._run(run_id)
        self._write(self._update_run(run_id, status=RUNNING, attempts=current.attempts + 1))
        return self._run(run_id)

    def note_attempt(self, run_id: str) -> None:
        self._write(self._update_run(run_id, attempts=self._run(run_id).attempts + 1))

    def finish_run(self, run_id: str, status: str) -> None:
        self._write(self._update_run(run_id, status=RunStatus(status)))

    # -- epochs ----------------------------------------------------------------------------------
    def save_state(self, run_id: str, epoch: str, process: str, data: bytes) -> None:
        digest = checksum(data)
        self._write([PutState(copy, run_id, epoch, process, digest, data) for copy in COPIES], durable=False)

    def complete_epoch(self, run_id: str, epoch: str, started: float, processes: list[str]) -> None:
        sums: dict[str, str] = {}
        for copy in COPIES:
            for index in self._state_index(copy, run_id, epoch):
                if index.process in processes:
                    sums.setdefault(index.process, index.checksum)
        missing = sorted(set(processes) - set(sums))
        if missing:
            raise StoreError(f"epoch {epoch}: no state saved for {', '.join(missing)}")
        run = self._run(run_id)
        record = _Completion(run_id, epoch, run.graph_key, started, self.clock(), sums, epoch_digest(sums))
        writes: list[Write] = [PutCompletion(copy, record.row()) for copy in COPIES]
        writes += self._update_run(run_id, last_epoch=epoch)
        writes += self._prune(run_id, epoch)
        self._write(writes)

    def _prune(self, run_id: str, newest: str) -> list[Write]:
        """Keep the newest ``keep`` complete epochs; drop older ones and abandoned partial states."""
        complete = sorted({row.epoch for row in self._completions("primary", run_id=run_id)
                           if isinstance(row.epoch, str)}, reverse=True)
        oldest_kept = min(complete[: self.keep - 1] + [newest])
        return [PruneEpochs(run_id, oldest_kept)]

    def _completion_records(self, run_id: str) -> dict[str, tuple[_Completion | None, list[Copy]]]:
        """epoch -> (a verified completion record or None, the copies that are damaged or missing)."""
        copies: dict[str, dict[Copy, _Completion | None]] = {}
        for copy in COPIES:
            for row in self._completions(copy, run_id=run_id):
                if not isinstance(row.epoch, str):
                    continue  # a garbled key: the epoch's record in this copy counts as missing
                copies.setdefault(row.epoch, {})[copy] = _Completion.verified(row)
        found: dict[str, tuple[_Completion | None, list[Copy]]] = {}
        for epoch, by_copy in copies.items():
            good = next((r for r in by_copy.values() if r is not None), None)
            found[epoch] = (good, [c for c in COPIES if by_copy.get(c) is None])
        return found

    def _intact_states(self, record: _Completion) -> tuple[dict[str, bytes], list[str], list[Write]]:
        """(states that verify, problems, writes that heal a damaged copy from the good one)."""
        states: dict[str, bytes] = {}
        problems: list[str] = []
        heal: list[Write] = []
        for process, expected in sorted(record.checksums.items()):
            good: bytes | None = None
            damaged: list[Copy] = []
            for copy in COPIES:
                data = self._state_data(copy, record.run_id, record.epoch, process)
                if data is not None and checksum(data) == expected:
                    good = good if good is not None else data
                else:
                    damaged.append(copy)
            if good is None:
                problems.append(f"the state of operator {process!r} fails its checksum in both copies")
                continue
            states[process] = good
            heal += [PutState(copy, record.run_id, record.epoch, process, expected, good) for copy in damaged]
        return states, problems, heal

    def restore_point(self, run_id: str, *, accept_older: bool = False, heal: bool = True) -> RestorePoint | None:
        """The run's newest complete epoch with its states (None: no epoch completed yet).

        Raises :class:`StoreDamage` when that epoch cannot be read intact, unless
        ``accept_older``: then the newest older intact epoch, with a note saying so.
        ``heal=False`` reads without writing anything.
        """
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
            record, bad_copies = records.get(epoch, (None, list(COPIES)))
            if record is None:
                lost = epoch not in records
                how = "lost" if lost else "damaged in both copies"
                problems.append(f"epoch {epoch}: its completion record is {how}")
                continue
            states, state_problems, healing = self._intact_states(record)
            if state_problems:
                problems += [f"epoch {epoch}: {p}" for p in state_problems]
                continue
            if epoch != newest and not accept_older:
                raise StoreDamage(self._refusal(run_id, newest, problems, epoch))  # before healing: nothing written
            if heal:
                writes = healing + self._run_copies_to_heal(run)
                writes += [PutCompletion(copy, record.row()) for copy in bad_copies]
                if writes:
                    self._write(writes)
                    notes.append(f"epoch {epoch} of run {run_id}: {len(writes)} damaged or missing cop"
                                 f"{'y' if len(writes) == 1 else 'ies'} healed from the intact mirror")
            sizes = {name: len(data) for name, data in states.items()}
            point = EpochRecord(run_id, epoch, record.started, record.completed, sum(sizes.values()), sizes)
            if epoch != newest:
                notes.append(f"restoring the older epoch {epoch} of run {run_id} as --accept-older-epoch asked "
                             f"({'; '.join(problems)}): whatever epoch_complete did for the newer epochs will be "
                             "done again (at-least-once)")
            return RestorePoint(epoch, states, point, notes)
        raise StoreDamage(self._refusal(run_id, newest, problems, None))

    def _run_copies_to_heal(self, run: RunRecord) -> list[Write]:
        """Writes rewriting the copies of ``run``'s record that are damaged or missing.

        A copy that has no row under ``run``'s id may hold it under a garbled key: a row that fails
        its checksum and whose key the other copy does not know at all. Such rows, as many as the
        runs the other copy verifies and this one lacks, are the damaged copies of those runs, each
        intact in the other copy: they are dropped, or they would count as runs damaged in both
        copies once ``run`` is healed.
        """
        writes: list[Write] = []
        for copy, other in zip(COPIES, reversed(COPIES), strict=True):
            rows = self._runs(copy, run_id=run.run_id)
            if rows and rows[0].sum == run.sum() and rows[0].record == run:
                continue
            writes.append(PutRun(copy, run, run.sum()))
            if rows:
                continue  # the row is there under its own key: PutRun replaces it
            here, there = self._runs(copy), self._runs(other)
            known_there = {stored.record.run_id for stored in there}
            verified_here = {s.record.run_id for s in here if s.record.sum() == s.sum}
            missing_here = {s.record.run_id for s in there if s.record.sum() == s.sum} - verified_here
            strays = [s.record.run_id for s in here
                      if s.record.sum() != s.sum and s.record.run_id not in known_there]
            if strays and len(strays) <= len(missing_here):
                writes += [DropRunCopy(copy, key) for key in strays]
        return writes

    def _refusal(self, run_id: str, newest: str, problems: list[str], older: str | None) -> str:
        alternative = (f"--resume --accept-older-epoch restores the older intact epoch {older} instead, and "
                       "repeats what epoch_complete of the newer epochs did (at-least-once)" if older else
                       "no older intact epoch is left either; only --fresh (start over) remains")
        return (f"snapshot store {self.location}: the newest complete epoch {newest} of run {run_id} cannot be "
                f"restored: {'; '.join(problems)}. Restoring from it is the only exactly-once choice, so "
                f"recovery is refused and nothing was written. {alternative}")

    # -- listing ---------------------------------------------------------------------------------
    def shown_status(self, run: RunRecord) -> str:
        """How ``run`` is shown to people: its recorded status, except that a ``running`` run is
        ``running`` only while an engine holds its graph's lease, and ``unfinished`` once it died."""
        if run.status != RunStatus.RUNNING:
            return str(run.status)
        return "running" if self.live_holder(run.graph_key) is not None else "unfinished"

    def runs(self) -> list[RunRecord]:
        records = self._run_records()
        damaged = [run_id for run_id, record in records.items() if record is None]
        if damaged:
            raise StoreDamage(f"snapshot store {self.location}: the record of run {damaged[0]} is damaged in "
                              "both copies")
        return sorted((r for r in records.values() if r is not None), key=lambda r: (r.created, r.run_id))

    def epochs(self, run_id: str) -> list[EpochRecord]:
        result = []
        for epoch, (record, _) in sorted(self._completion_records(run_id).items()):
            if record is None:
                continue
            sizes: dict[str, int] = {}
            for copy in COPIES:
                for index in self._state_index(copy, run_id, epoch):
                    if index.process in record.checksums:
                        sizes.setdefault(index.process, index.size)
            result.append(EpochRecord(run_id, epoch, record.started, record.completed, sum(sizes.values()), sizes))
        return result

    def delete_run(self, run_id: str) -> bool:
        if run_id not in self._run_records(run_id=run_id):
            return False
        self._write([DeleteRun(run_id)], fenced=False)
        return True

    # -- writing -------------------------------------------------------------------------------
    def _write(self, writes: Sequence[Write], *, durable: bool = True, fenced: bool = True) -> None:
        self._apply(writes, fence=self._fence if fenced else None, durable=durable)

    # -- primitives: what a backend implements --------------------------------------------------
    @abstractmethod
    def _apply(self, writes: Sequence[Write], *, fence: Fence | None, durable: bool) -> None:
        """Apply ``writes`` in one transaction, all or nothing.

        With a ``fence``, first read the graph's lease inside the same transaction and raise what
        :meth:`fence_refusal` returns for it, writing nothing. ``durable``: on stable storage
        before returning. Failures raise :class:`StoreError` (or :class:`LeaseLost`).
        """

    @abstractmethod
    def _swap_lease(self, graph_key: str, holder: LeaseHolder,
                    alive: Callable[[LeaseHolder], bool]) -> LeaseHolder | None:
        """Atomically: if the graph has a lease and ``alive(current)``, return ``current`` and write
        nothing; else store ``holder`` as the lease (durably) and return None."""

    @abstractmethod
    def _lease(self, graph_key: str) -> LeaseHolder | None: ...

    @abstractmethod
    def _progress(self, graph_key: str) -> str | None:
        """The stored progress record of the graph (:func:`progress_record`), if any."""

    @abstractmethod
    def _runs(self, copy: Copy, *, run_id: str | None = None, graph_key: str | None = None) -> list[StoredRun]:
        """Every run record of ``copy`` (filtered by run id or graph key), as stored, damage and all."""

    @abstractmethod
    def _completions(self, copy: Copy, *, run_id: str | None = None,
                     graph_key: str | None = None) -> list[CompletionRow]: ...

    @abstractmethod
    def _state_index(self, copy: Copy, run_id: str, epoch: str) -> list[StateIndex]: ...

    @abstractmethod
    def _state_data(self, copy: Copy, run_id: str, epoch: str, process: str) -> bytes | None:
        """The stored bytes of one state in ``copy``; None if missing or not bytes."""

    @abstractmethod
    def close(self) -> None: ...


class Lease:
    """A held lease: a heartbeat thread renews it until :meth:`release`."""

    def __init__(self, store: SnapshotStore, graph_key: str, token: str) -> None:
        self.store = store
        self.graph_key = graph_key
        self.token = token
        self.lost: LeaseLost | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._report: Callable[[], dict[str, object]] | None = None

    def report_progress(self, report: Callable[[], dict[str, object]]) -> None:
        """Send ``report()`` (JSON data) with every heartbeat, for ``snapgraph status`` to read."""
        self._report = report

    def progress_report(self) -> str:
        """The JSON text of the next report ("" when none is reported or it cannot be made)."""
        if self._report is None:
            return ""
        try:
            return json.dumps(self._report())
        except Exception:  # noqa: BLE001 - a report must never cost the lease
            return ""

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
