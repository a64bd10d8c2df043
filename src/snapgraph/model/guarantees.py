"""The end-to-end delivery guarantee of each writer of a graph, by SAP's table (docs/guarantees.md).

SAP states the guarantee of a snapshot-enabled graph for one source and one writer from the source's
traits (replayable? batches?), the processing between them (deterministic? duplicate batches
discarded right after the source?) and the writer's kind (idempotent, transactional, plain), and says
the table "also applies to any other configuration, excluding cycles". This module reads it so:

* **Writers** are the operators whose traits name a writer kind (a built-in's descriptor, a script
  operator's declaration), and the script or custom operators that declare none but have connected
  inputs and no connected output (a sink). Built-ins without a writer kind (Terminal, Wiretap, Graph
  Terminator) and operators declaring ``writer: none`` are not writers.
* **Sources** of a writer are the operators without connected inputs upstream of it (the writer
  itself, if it has no connected input).
* For each source of a writer the table gives one row (:func:`table_row`) from the source's traits,
  the writer's kind, whether **every** operator on a path between them is deterministic and whether
  the source discards duplicate batches or **every** operator right after it on such a path does.
  Conditions on all paths at once are what the weakest path needs, so fan-out and fan-in are covered
  without listing paths.
* A writer's guarantee is the weakest over its sources (:meth:`Guarantee.meet`): exactly-once only if
  every source gives it; one source's duplicates (at-least-once) and another's losses (at-most-once)
  together are no guarantee.

With snapshots off SAP's table does not apply (:func:`compute_guarantees`): a failure either ends the
run (at-most-once) or, with automatic recovery, restarts the graph from scratch (at-least-once when
every source replays, else no guarantee); a transactional writer commits in ``epoch_complete``, which
runs only after snapshots, so it writes nothing (at-most-once) — unless it ``commits_at_end`` (once, at
the input's last batch, as snapgraph's do): then it is like any other writer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from snapgraph.model.builtin_operator import config_switch
from snapgraph.model.builtins import BUILTINS
from snapgraph.model.delivery import UNDECLARED, DeliveryTraits, WriterKind
from snapgraph.model.graph import Flow, Graph, Process
from snapgraph.model.validate import find_cycle


class Guarantee(enum.Enum):
    """What a writer's output is after failures, compared with a failure-free run's."""

    EXACTLY_ONCE = "exactly-once"  # the same as a failure-free run
    AT_LEAST_ONCE = "at-least-once"  # nothing lost, duplicates possible
    AT_MOST_ONCE = "at-most-once"  # no duplicates, losses possible
    NONE = "no guarantee"  # losses and duplicates possible

    def meet(self, other: Guarantee) -> Guarantee:
        """The guarantee of a writer that gets what both give: the weaker, or none when they differ in kind."""
        if self is other or other is Guarantee.EXACTLY_ONCE:
            return self
        if self is Guarantee.EXACTLY_ONCE:
            return other
        return Guarantee.NONE

    def satisfies(self, required: Guarantee) -> bool:
        """Whether a writer with this guarantee gives what ``required`` asks (exactly-once gives all)."""
        return self is required or self is Guarantee.EXACTLY_ONCE


#: What ``--require`` accepts.
REQUIRABLE = (Guarantee.EXACTLY_ONCE, Guarantee.AT_LEAST_ONCE, Guarantee.AT_MOST_ONCE)

#: SAP's table (gen2-api.md §4.6), row by row: the guarantee of each row.
ROW_GUARANTEES: dict[int, Guarantee] = {
    1: Guarantee.EXACTLY_ONCE,  # replayable, no batches, idempotent, deterministic
    2: Guarantee.EXACTLY_ONCE,  # replayable, batches, idempotent, deterministic and duplicates discarded
    3: Guarantee.EXACTLY_ONCE,  # any source, no batches, transactional
    4: Guarantee.EXACTLY_ONCE,  # replayable, batches, transactional
    5: Guarantee.AT_MOST_ONCE,  # not replayable, no batches, a writer that is not transactional
    6: Guarantee.AT_MOST_ONCE,  # not replayable, batches, any writer
    7: Guarantee.AT_LEAST_ONCE,  # replayable, anything else
}


def table_row(*, replayable: bool, batches: bool, writer: WriterKind, deterministic: bool,
              discarded: bool) -> int:
    """The row of SAP's table a source and a writer fall into (1-7, in SAP's order).

    ``deterministic``: every operator between them is; ``discarded``: duplicate batches are dropped
    right after the source. SAP's row 5 names a writer of kind "none"; an idempotent writer after a
    source that is not replayable falls into it too (writing again cannot bring back what was lost).
    """
    if writer is WriterKind.TRANSACTIONAL:
        if not batches:
            return 3
        return 4 if replayable else 6
    if not replayable:
        return 6 if batches else 5
    if writer is WriterKind.IDEMPOTENT and deterministic and (discarded or not batches):
        return 2 if batches else 1
    return 7


@dataclass(frozen=True)
class WriterGuarantee:
    """One writer's guarantee and why, naming the operators.

    ``rows``: the table row of each of its sources, in source order (empty with snapshots off);
    ``with_snapshots``: with snapshots off, what snapshots would give (None with snapshots on).
    """

    writer: str
    guarantee: Guarantee
    reasons: tuple[str, ...]
    rows: tuple[int, ...] = ()
    with_snapshots: Guarantee | None = None

    def describe(self) -> str:
        """One line: ``writer 'w': exactly-once: source 'gen' replays from its snapshot, ...``."""
        hint = ""
        if self.with_snapshots is not None and self.with_snapshots is not self.guarantee:
            hint = f" (with snapshots: {self.with_snapshots.value})"
        return f"writer '{self.writer}': {self.guarantee.value}: {', '.join(self.reasons)}{hint}"

    @property
    def weakest_link(self) -> str:
        """What keeps it from a stronger guarantee, first (its first reason)."""
        return self.reasons[0]


def traits_of(process: Process) -> DeliveryTraits:
    """A built-in's traits from its descriptor (for its config), a script or custom operator's from the graph."""
    builtin = BUILTINS.get(process.component)
    if builtin is not None:
        return builtin.delivery_of(process.config)
    return process.delivery or UNDECLARED


def writer_kind(graph: Graph, process: Process) -> WriterKind | None:
    """How ``process`` writes, or None if it is no writer (see the module's docstring)."""
    declared = traits_of(process).writer
    if declared is WriterKind.NONE:
        return None
    if declared is not None or process.component in BUILTINS:
        return declared
    if graph.connections_to(process.name) and not graph.connections_from(process.name):
        return WriterKind.PLAIN
    return None


def compute_guarantees(graph: Graph, *, snapshots: bool, recovery: bool) -> list[WriterGuarantee]:
    """The guarantee of every writer of ``graph``, in the graph's order of operators.

    ``snapshots``: the run takes snapshots; ``recovery``: it recovers automatically (``--max-retries``),
    which only matters without snapshots (with them a failed run resumes from its newest complete
    epoch, automatically or with ``--resume``).
    """
    flow = Flow(graph)
    cycle = find_cycle(graph)
    found: list[WriterGuarantee] = []
    for process in graph.processes.values():
        kind = writer_kind(graph, process)
        if kind is None:
            continue
        if cycle is not None:
            table = WriterGuarantee(process.name, Guarantee.NONE,
                                    (f"the graph has the cycle {' -> '.join(cycle)}, and SAP's table "
                                     "excludes cycles",))
        else:
            table = _by_the_table(graph, flow, process.name, kind)
        found.append(table if snapshots else _without_snapshots(graph, flow, process.name, kind, recovery, table))
    return found


def unmet(guarantees: list[WriterGuarantee], required: Guarantee) -> WriterGuarantee | None:
    """The weakest writer that does not give ``required``, or None if every writer does."""
    rank = {Guarantee.NONE: 0, Guarantee.AT_MOST_ONCE: 1, Guarantee.AT_LEAST_ONCE: 2, Guarantee.EXACTLY_ONCE: 3}
    failing = [g for g in guarantees if not g.guarantee.satisfies(required)]
    return min(failing, key=lambda g: rank[g.guarantee]) if failing else None


def _names(names: list[str]) -> str:
    return ", ".join(f"'{name}'" for name in names)


def _verb(names: list[str], one: str, many: str) -> str:
    return f"{_names(names)} {one if len(names) == 1 else many}"


def _by_the_table(graph: Graph, flow: Flow, writer: str, kind: WriterKind) -> WriterGuarantee:
    upstream = flow.reach(writer, flow.predecessors)
    order = list(graph.processes)
    guarantee = Guarantee.EXACTLY_ONCE
    rows: list[int] = []
    supporting: list[str] = []
    failing: list[str] = []
    for source in flow.sources_of(writer):
        traits = traits_of(graph.processes[source])
        between = [n for n in order if n in flow.reach(source, flow.successors) & upstream]
        first_hops = [n for n in order if n in flow.successors[source] & (upstream | {writer})]
        not_deterministic = [n for n in between if not traits_of(graph.processes[n]).deterministic]
        discarding = [source] if traits.discards_duplicates else first_hops
        discarded = bool(discarding) and all(traits_of(graph.processes[n]).discards_duplicates for n in discarding)
        row = table_row(replayable=traits.replayable, batches=traits.batches, writer=kind,
                        deterministic=not not_deterministic, discarded=discarded)
        rows.append(row)
        guarantee = guarantee.meet(ROW_GUARANTEES[row])
        replays = f"source '{source}' replays from its snapshot"
        if row in (1, 2):
            supporting += [replays]
            if row == 2:
                supporting.append(f"its duplicate batches are discarded by {_names(discarding)}")
            if between:
                supporting.append(f"{_verb(between, 'is', 'are')} declared deterministic")
            supporting.append(f"'{writer}' is idempotent")
        elif row == 3:
            supporting += [f"'{writer}' is transactional", f"source '{source}' sends no batches"]
        elif row == 4:
            supporting += [replays, f"'{writer}' is transactional"]
        elif row == 5:
            failing.append(f"source '{source}' is not declared replayable")
        elif row == 6:
            failing.append(f"source '{source}' is not declared replayable and sends batches")
        else:
            if kind is WriterKind.PLAIN:
                failing.append(f"'{writer}' is a plain writer (neither idempotent nor transactional)")
            if not_deterministic:
                failing.append(f"{_verb(not_deterministic, 'is', 'are')} not declared deterministic")
            if traits.batches and not discarded:
                failing.append(f"source '{source}' sends batches and nothing right after it discards duplicates")
    reasons = supporting if guarantee is Guarantee.EXACTLY_ONCE else failing
    return WriterGuarantee(writer, guarantee, tuple(dict.fromkeys(reasons)), tuple(rows))


def _streams(process: Process) -> bool:
    """A built-in source configured to keep reading (``streaming: true``): it never sends a last batch."""
    return process.component in BUILTINS and config_switch(process.config.get("streaming", False)) is True


def _without_snapshots(graph: Graph, flow: Flow, writer: str, kind: WriterKind, recovery: bool,
                       table: WriterGuarantee) -> WriterGuarantee:
    at_end = kind is WriterKind.TRANSACTIONAL and traits_of(graph.processes[writer]).commits_at_end
    # Snapshots are impossible with a group of multiplicity > 1 (validate refuses them): no "with snapshots".
    possible = table.guarantee if all(g.multiplicity <= 1 for g in graph.groups.values()) else None
    streaming = [src for src in flow.sources_of(writer) if _streams(graph.processes[src])]
    if kind is WriterKind.TRANSACTIONAL and not at_end:
        guarantee = Guarantee.AT_MOST_ONCE
        reason = (f"snapshots are off, so '{writer}' commits nothing: epoch_complete runs only after a "
                  "snapshot")
    elif at_end and streaming:
        guarantee = Guarantee.AT_MOST_ONCE
        reason = (f"snapshots are off, so '{writer}' commits only when a last batch arrives, but "
                  f"{'source' if len(streaming) == 1 else 'sources'} {_verb(streaming, 'streams', 'stream')} "
                  "(no last batch ever comes): "
                  "it writes nothing")
    elif not recovery:
        guarantee = Guarantee.AT_MOST_ONCE
        reason = ("snapshots are off and there is no automatic recovery: a failure ends the run"
                  + (f" (and '{writer}' commits only when the last batch arrives: a failure before it writes "
                     "nothing)" if at_end else ""))
    else:
        not_replayable = [s for s in flow.sources_of(writer) if not traits_of(graph.processes[s]).replayable]
        reason = ("snapshots are off: a recovery starts the graph from scratch and writes everything again"
                  if not at_end else
                  f"snapshots are off: '{writer}' commits once when the last batch arrives, and a recovery "
                  "starts the graph from scratch: a failure after that commit, before the run ends, writes "
                  "everything again")
        guarantee = Guarantee.AT_LEAST_ONCE
        if not_replayable:
            guarantee = Guarantee.NONE
            sources = "source" if len(not_replayable) == 1 else "sources"
            reason += f", and {sources} {_verb(not_replayable, 'is', 'are')} not declared replayable"
    return WriterGuarantee(writer, guarantee, (reason,), with_snapshots=possible)
