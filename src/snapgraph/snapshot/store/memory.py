"""An in-memory store: the contract's reference implementation, for tests and for library use.

Two :class:`MemoryStore` objects on the same :class:`MemorySpace` behave like
two engines on one store file: they share runs, epochs and leases. Nothing
survives the process, so it is not offered for ``snapgraph run``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from snapgraph.snapshot.store.base import (
    COPIES,
    DEFAULT_KEEP,
    CompletionRow,
    Copy,
    DeleteRun,
    DropLease,
    DropRunCopy,
    Fence,
    LeaseHolder,
    PruneEpochs,
    PutCompletion,
    PutRun,
    PutState,
    RenewLease,
    SnapshotStore,
    StateIndex,
    StoredRun,
    Write,
    progress_record,
)


@dataclass
class StoredState:
    checksum: str
    data: bytes | None  # None: what a damaged copy holds instead of bytes


@dataclass
class MemorySpace:
    """The rows of one in-memory store, per copy; tests reach in here to damage them."""

    runs: dict[Copy, dict[str, StoredRun]] = field(default_factory=lambda: {c: {} for c in COPIES})
    states: dict[Copy, dict[tuple[str, str, str], StoredState]] = field(
        default_factory=lambda: {c: {} for c in COPIES})
    epochs: dict[Copy, dict[tuple[str, str], CompletionRow]] = field(default_factory=lambda: {c: {} for c in COPIES})
    leases: dict[str, LeaseHolder] = field(default_factory=dict)
    progress: dict[str, str] = field(default_factory=dict)  # graph key -> progress record of its lease holder
    lock: threading.Lock = field(default_factory=threading.Lock)


class MemoryStore(SnapshotStore):
    def __init__(self, space: MemorySpace | None = None, *, keep: int = DEFAULT_KEEP,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__("memory", keep=keep, clock=clock)
        self.space = space if space is not None else MemorySpace()

    def _apply(self, writes: Sequence[Write], *, fence: Fence | None, durable: bool) -> None:
        space = self.space
        with space.lock:
            if fence is not None:
                refusal = self.fence_refusal(space.leases.get(fence.graph_key))
                if refusal is not None:
                    raise refusal
            for write in writes:
                self._apply_one(write)

    def _apply_one(self, write: Write) -> None:
        space = self.space
        match write:
            case PutRun(copy, record, digest):
                space.runs[copy][record.run_id] = StoredRun(record, digest)
            case PutState(copy, run_id, epoch, process, digest, data):
                space.states[copy][(run_id, epoch, process)] = StoredState(digest, bytes(data))
            case PutCompletion(copy, row):
                space.epochs[copy][(row.run_id, row.epoch)] = row
            case PruneEpochs(run_id, before):
                for copy in COPIES:
                    for table in (space.states[copy], space.epochs[copy]):
                        for key in [k for k in table if k[0] == run_id and k[1] < before]:
                            del table[key]  # type: ignore[arg-type]
            case DeleteRun(run_id):
                for copy in COPIES:
                    space.runs[copy].pop(run_id, None)
                    for table in (space.states[copy], space.epochs[copy]):
                        for key in [k for k in table if k[0] == run_id]:
                            del table[key]  # type: ignore[arg-type]
            case DropRunCopy(copy, stored_as):
                if isinstance(stored_as, str):
                    space.runs[copy].pop(stored_as, None)
            case RenewLease(graph_key, token, heartbeat, progress):
                current = space.leases.get(graph_key)
                if current is not None and current.token == token:
                    space.leases[graph_key] = replace(current, heartbeat=heartbeat)
                    if progress:
                        space.progress[graph_key] = progress_record(token, heartbeat, progress)
            case DropLease(graph_key, token):
                current = space.leases.get(graph_key)
                if current is not None and current.token == token:
                    del space.leases[graph_key]
                    space.progress.pop(graph_key, None)
            case _:
                raise TypeError(f"not a store write: {write!r}")

    def _swap_lease(self, graph_key: str, holder: LeaseHolder,
                    alive: Callable[[LeaseHolder], bool]) -> LeaseHolder | None:
        with self.space.lock:
            current = self.space.leases.get(graph_key)
            if current is not None and alive(current):
                return current
            self.space.leases[graph_key] = holder
            return None

    def _lease(self, graph_key: str) -> LeaseHolder | None:
        with self.space.lock:
            return self.space.leases.get(graph_key)

    def _progress(self, graph_key: str) -> str | None:
        with self.space.lock:
            return self.space.progress.get(graph_key)

    def _runs(self, copy: Copy, *, run_id: str | None = None, graph_key: str | None = None) -> list[StoredRun]:
        with self.space.lock:
            rows = list(self.space.runs[copy].values())
        return [r for r in rows if (run_id is None or r.record.run_id == run_id)
                and (graph_key is None or r.record.graph_key == graph_key)]

    def _completions(self, copy: Copy, *, run_id: str | None = None,
                     graph_key: str | None = None) -> list[CompletionRow]:
        with self.space.lock:
            rows = list(self.space.epochs[copy].values())
        return [r for r in rows if (run_id is None or r.run_id == run_id)
                and (graph_key is None or r.graph_key == graph_key)]

    def _state_index(self, copy: Copy, run_id: str, epoch: str) -> list[StateIndex]:
        with self.space.lock:
            return [StateIndex(key[2], state.checksum, len(state.data or b""))
                    for key, state in self.space.states[copy].items() if key[:2] == (run_id, epoch)]

    def _state_data(self, copy: Copy, run_id: str, epoch: str, process: str) -> bytes | None:
        with self.space.lock:
            state = self.space.states[copy].get((run_id, epoch, process))
        return state.data if state is not None else None

    def close(self) -> None:
        pass
