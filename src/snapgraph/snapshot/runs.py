"""The run model: which run an engine continues, or whether it may start a new one.

A run of a graph ends ``completed`` (the graph finished), ``stopped`` (on
request: a signal, ``--stop-after``), ``failed`` (retries exhausted), or stays
``running`` when the engine died. ``abandoned`` marks a run given up by
``--fresh``. What ``snapgraph run`` does with the graph's newest run in the
store:

============  ==============================  ======================================
newest run    ``run`` (no flag)               ``--resume``
============  ==============================  ======================================
none          a new run                       refused (exit 2): nothing to resume
completed     a new run                       continues it from its newest epoch
abandoned     a new run                       continues it from its newest epoch
running,      refused (exit 2), naming        continues it from its newest epoch
stopped,      ``--resume`` and ``--fresh``
failed
============  ==============================  ======================================

``--fresh`` marks a run that needs a decision ``abandoned`` and starts a new
one. Continuing a completed or stopped run is a savepoint resume (Flink's
``run -s``): the generators continue from their saved offsets, so only source
rows that are new since then flow. A run is continued from its newest
complete epoch and nothing older (see :meth:`SnapshotStore.restore_point`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from snapgraph.snapshot.store import (
    ABANDONED,
    NEEDS_DECISION,
    Lease,
    RestorePoint,
    RunRecord,
    SnapshotStore,
    StoreMissing,
    open_store,
)


class RunRefused(Exception):
    """The requested start cannot be done safely (exit 2); nothing was written."""


@dataclass
class RunPlan:
    """The run an engine works on and where its first attempt starts."""

    run: RunRecord
    restore: RestorePoint | None
    resumed: bool
    notes: list[str] = field(default_factory=list)


def plan_run(store: SnapshotStore, graph_key: str, graph_name: str, graph_label: str, *,
             resume: bool = False, fresh: bool = False, accept_older: bool = False) -> RunPlan:
    """Decide and record which run this engine works on (the caller holds the graph's lease).

    Raises :class:`RunRefused` or :class:`snapgraph.snapshot.store.StoreDamage`
    before anything is written when the start would not be safe; :func:`check_run`
    makes the same decision without a lease and without writing.
    """
    check_run(store, graph_key, graph_label, resume=resume, fresh=fresh, accept_older=accept_older)
    newest = store.newest_run(graph_key)
    if resume:
        assert newest is not None
        restore = store.restore_point(newest.run_id, accept_older=accept_older)
        run = store.reopen_run(newest.run_id)
        notes = list(restore.notes) if restore else []
        if restore is None:
            origin = "from the start (it has no complete epoch)"
        else:
            count = len(restore.states)
            origin = f"from epoch {restore.epoch} (state of {count} operator{'' if count == 1 else 's'})"
        notes.append(f"resuming run {run.run_id} ({newest.status}) {origin}")
        return RunPlan(run, restore, True, notes)
    if newest is not None and newest.status in NEEDS_DECISION:
        store.finish_run(newest.run_id, ABANDONED)
    return RunPlan(store.begin_run(graph_key, graph_name), None, False)


def check_run(store: SnapshotStore, graph_key: str, graph_label: str, *,
              resume: bool = False, fresh: bool = False, accept_older: bool = False) -> None:
    """Raise what :func:`plan_run` would refuse with, reading only (no lease, no write, no healing)."""
    if resume and fresh:
        raise RunRefused("--resume and --fresh exclude each other")
    newest = store.newest_run(graph_key)
    if resume:
        if newest is None:
            raise RunRefused(f"graph {graph_label} has no run in {_where(store)} to resume; "
                             "run it without --resume to start one")
        store.restore_point(newest.run_id, accept_older=accept_older, heal=False)
    elif newest is not None and newest.status in NEEDS_DECISION and not fresh:
        epoch = f"its last complete epoch is {newest.last_epoch}" if newest.last_epoch \
            else "it has no complete epoch yet"
        state = "an unfinished" if newest.status == "running" else f"a {newest.status}"
        raise RunRefused(
            f"graph {graph_label} has {state} run {newest.run_id} ({epoch}); use --resume to continue "
            "it or --fresh to abandon it and start over")


def _where(store: SnapshotStore) -> str:
    return f"the store {store.location}"


@dataclass
class OpenedRun:
    """A store, the graph's lease in it, and the run the engine works on."""

    store: SnapshotStore
    lease: Lease
    plan: RunPlan


def open_run(location: str | Path, graph_key: str, graph_name: str, graph_label: str, *,
             resume: bool = False, fresh: bool = False, accept_older: bool = False) -> OpenedRun:
    """Open the store, take the graph's lease and plan the run, or refuse having written nothing.

    Refusals are decided first through a read-only view of the store (so a refused start leaves
    its bytes as they were), then again under the lease, since another engine may have started
    meanwhile. Raises :class:`RunRefused` or :class:`snapgraph.snapshot.store.StoreError`.
    """
    try:
        checking = open_store(location, read_only=True)
    except StoreMissing:
        if resume:
            raise RunRefused(f"graph {graph_label} has no run to resume: there is no store at {location}; run "
                             "it without --resume to start one") from None
    else:
        try:
            checking.check_lease_free(graph_key)
            check_run(checking, graph_key, graph_label, resume=resume, fresh=fresh, accept_older=accept_older)
        finally:
            checking.close()
    store = open_store(location)
    try:
        lease = store.acquire_lease(graph_key)
    except BaseException:
        store.close()
        raise
    try:
        plan = plan_run(store, graph_key, graph_name, graph_label, resume=resume, fresh=fresh,
                        accept_older=accept_older)
    except BaseException:
        lease.release()
        store.close()
        raise
    return OpenedRun(store, lease, plan)


__all__ = ["OpenedRun", "RunPlan", "RunRefused", "check_run", "open_run", "plan_run"]
