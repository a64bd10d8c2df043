"""The in-memory store passes the store contract (its rows damaged in place, in the shared space)."""

from __future__ import annotations

import copy as copying
import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from snapgraph.snapshot.store import (
    DEFAULT_KEEP,
    LeaseHolder,
    MemorySpace,
    MemoryStore,
    RunRecord,
    SnapshotStore,
)
from snapgraph.snapshot.store.base import StoredRun
from snapgraph.snapshot.store.memory import StoredState

from .contract import Row, StoreContract, StoreUnderTest

_RUN_FIELDS = [f.name for f in dataclasses.fields(RunRecord)]


class MemoryUnderTest(StoreUnderTest):
    def __init__(self) -> None:
        self.space = MemorySpace()

    def open(self, *, keep: int = DEFAULT_KEEP, clock: Callable[[], float] | None = None) -> SnapshotStore:
        return MemoryStore(self.space, keep=keep, clock=clock or time.time)

    def _table(self, kind: str, copy: str) -> dict[Any, Any]:
        return getattr(self.space, kind)[copy]  # type: ignore[no-any-return]

    def _as_row(self, kind: str, key: Any, value: Any) -> Row:
        if kind == "runs":
            return {**dataclasses.asdict(value.record), "sum": value.sum}
        if kind == "states":
            run_id, epoch, process = key
            size = len(value.data) if value.data is not None else 0
            return {"run_id": run_id, "epoch": epoch, "process": process, "checksum": value.checksum,
                    "size": size, "data": value.data}
        return dataclasses.asdict(value)  # type: ignore[no-any-return]

    def _from_row(self, kind: str, row: Row) -> tuple[Any, Any]:
        if kind == "runs":
            record = RunRecord(**{name: row[name] for name in _RUN_FIELDS})
            return row["run_id"], StoredRun(record, row["sum"])
        if kind == "states":
            return (row["run_id"], row["epoch"], row["process"]), StoredState(row["checksum"], row["data"])
        from snapgraph.snapshot.store.base import CompletionRow
        return (row["run_id"], row["epoch"]), CompletionRow(**row)

    def rows(self, kind: str, copy: str, run_id: str | None = None) -> list[Row]:
        with self.space.lock:
            found = [self._as_row(kind, k, v) for k, v in self._table(kind, copy).items()]
        return [r for r in found if run_id is None or r["run_id"] == run_id]

    def _matching(self, kind: str, copy: str, key: Row) -> list[Any]:
        return [k for k, v in self._table(kind, copy).items()
                if all(self._as_row(kind, k, v)[name] == value for name, value in key.items())]

    def update(self, kind: str, copy: str, key: Row, **changes: Any) -> int:
        with self.space.lock:
            table = self._table(kind, copy)
            keys = self._matching(kind, copy, key)
            for k in keys:
                row = {**self._as_row(kind, k, table.pop(k)), **changes}
                new_key, value = self._from_row(kind, row)
                table[new_key] = value
            return len(keys)

    def delete(self, kind: str, copy: str, key: Row) -> int:
        with self.space.lock:
            keys = self._matching(kind, copy, key)
            for k in keys:
                del self._table(kind, copy)[k]
            return len(keys)

    def lease_rows(self) -> list[Row]:
        with self.space.lock:
            return [{"graph_key": key, **dataclasses.asdict(holder)} for key, holder in self.space.leases.items()]

    def put_lease(self, row: Row) -> None:
        with self.space.lock:
            self.space.leases[row["graph_key"]] = LeaseHolder(**{k: v for k, v in row.items() if k != "graph_key"})

    def update_leases(self, **changes: Any) -> int:
        with self.space.lock:
            for key, holder in list(self.space.leases.items()):
                self.space.leases[key] = dataclasses.replace(holder, **changes)
            return len(self.space.leases)

    def everything(self) -> object:
        with self.space.lock:
            return copying.deepcopy({"runs": self.space.runs, "states": self.space.states,
                                     "epochs": self.space.epochs, "leases": self.space.leases})


class TestMemoryStoreContract(StoreContract):
    @pytest.fixture
    def under_test(self) -> Iterator[StoreUnderTest]:
        yield MemoryUnderTest()
