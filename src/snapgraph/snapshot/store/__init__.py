"""Snapshot stores: the rules in :mod:`.base`, one backend per module, opened by :func:`open_store`.

=====================================  =============================================
``--store PATH`` (default)             :class:`SQLiteStore`, one file on this machine
``--store postgresql://…?schema=NAME``  :class:`PostgresStore`, shared by machines
(library and tests only)               :class:`MemoryStore`, nothing survives the process
=====================================  =============================================
"""

from __future__ import annotations

from pathlib import Path

from snapgraph.snapshot.store.base import (
    ABANDONED,
    COMPLETED,
    COPIES,
    DEFAULT_KEEP,
    FAILED,
    FORMAT,
    HEARTBEAT,
    LEASE_TTL,
    NEEDS_DECISION,
    RUNNING,
    STOPPED,
    EpochRecord,
    Fence,
    Lease,
    LeaseHeld,
    LeaseHolder,
    LeaseLost,
    Progress,
    RestorePoint,
    RunRecord,
    RunStatus,
    SnapshotStore,
    StoreDamage,
    StoreError,
    StoreMissing,
    StoreUnusable,
    checksum,
    epoch_digest,
    holder_alive,
    process_start,
    this_host_id,
)
from snapgraph.snapshot.store.memory import MemorySpace, MemoryStore
from snapgraph.snapshot.store.postgres import PostgresStore, is_postgres_url
from snapgraph.snapshot.store.sqlite import (
    APPLICATION_ID,
    EPOCH_TABLES,
    RUN_TABLES,
    STATE_TABLES,
    SQLiteStore,
)


def open_store(location: str | Path, *, keep: int = DEFAULT_KEEP, create: bool = True,
               read_only: bool = False) -> SnapshotStore:
    """The store at ``location``: a PostgreSQL URL, or the path of an SQLite file."""
    if isinstance(location, str) and is_postgres_url(location):
        return PostgresStore(location, keep, create=create, read_only=read_only)
    if isinstance(location, str) and "://" in location:
        raise StoreUnusable(f"snapshot store {location}: unknown kind of store (a path of an SQLite file, or "
                            "postgresql://USER@HOST:PORT/DATABASE[?schema=NAME])")
    return SQLiteStore(Path(location), keep, create=create, read_only=read_only)


__all__ = [
    "ABANDONED", "APPLICATION_ID", "COMPLETED", "COPIES", "DEFAULT_KEEP", "EPOCH_TABLES", "FAILED", "FORMAT",
    "HEARTBEAT", "LEASE_TTL", "NEEDS_DECISION", "RUNNING", "RUN_TABLES", "STATE_TABLES", "STOPPED",
    "EpochRecord", "Fence", "Lease", "LeaseHeld", "LeaseHolder", "LeaseLost", "MemorySpace", "MemoryStore",
    "PostgresStore", "Progress", "RestorePoint", "RunRecord", "RunStatus", "SQLiteStore", "SnapshotStore",
    "StoreDamage", "StoreError", "StoreMissing", "StoreUnusable", "checksum", "epoch_digest", "holder_alive",
    "open_store", "process_start", "this_host_id",
]
