"""The delivery guarantee of each writer by SAP's table (model/guarantees.py): every row, which operators
are writers and sources, fan-out, fan-in, snapshots off, cycles, and the project's examples."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from snapgraph.model.delivery import DeliveryTraits, WriterKind
from snapgraph.model.graph import (
    GRAPH_TERMINATOR_V2,
    PYTHON3_V2,
    TERMINAL_V2,
    WIRETAP_V2,
    Connection,
    Endpoint,
    Graph,
    Group,
    Process,
)
from snapgraph.model.guarantees import (
    REQUIRABLE,
    ROW_GUARANTEES,
    Guarantee,
    WriterGuarantee,
    compute_guarantees,
    table_row,
    unmet,
    writer_kind,
)
from snapgraph.model.loader import LoadOptions, load_graph

EO, ALO, AMO, NONE = Guarantee.EXACTLY_ONCE, Guarantee.AT_LEAST_ONCE, Guarantee.AT_MOST_ONCE, Guarantee.NONE
IDEMPOTENT, TRANSACTIONAL, PLAIN = WriterKind.IDEMPOTENT, WriterKind.TRANSACTIONAL, WriterKind.PLAIN
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def graph_of(operators: dict[str, DeliveryTraits | str | None], *connections: str) -> Graph:
    """A graph of script operators with these declarations (a string: a built-in's component id) and
    connections written ``a -> b`` (every operator has ports ``in`` and ``out``)."""
    graph = Graph(name="g", path=Path("g.yaml"))
    for name, spec in operators.items():
        component = spec if isinstance(spec, str) else PYTHON3_V2
        graph.processes[name] = Process(name, component, delivery=spec if isinstance(spec, DeliveryTraits) else None)
    for text in connections:
        src, tgt = (part.strip() for part in text.split("->"))
        graph.connections.append(Connection(Endpoint(src, "out"), Endpoint(tgt, "in")))
    return graph


def by_writer(graph: Graph, *, snapshots: bool = True, recovery: bool = False) -> dict[str, WriterGuarantee]:
    return {g.writer: g for g in compute_guarantees(graph, snapshots=snapshots, recovery=recovery)}


REPLAYS = DeliveryTraits(replayable=True)
REPLAYS_IN_BATCHES = DeliveryTraits(replayable=True, batches=True)
DETERMINISTIC = DeliveryTraits(deterministic=True)


# -- SAP's table --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("row", "replayable", "batches", "writer", "deterministic", "discarded"), [
    (1, True, False, IDEMPOTENT, True, False),
    (2, True, True, IDEMPOTENT, True, True),
    (3, False, False, TRANSACTIONAL, False, False),
    (3, True, False, TRANSACTIONAL, False, False),
    (4, True, True, TRANSACTIONAL, False, False),
    (5, False, False, PLAIN, True, False),
    (5, False, False, IDEMPOTENT, True, False),  # not in SAP's table: read as row 5 (docs/guarantees.md)
    (6, False, True, PLAIN, True, True),
    (6, False, True, IDEMPOTENT, True, True),
    (6, False, True, TRANSACTIONAL, True, True),
    (7, True, False, PLAIN, True, False),
    (7, True, False, IDEMPOTENT, False, False),
    (7, True, True, IDEMPOTENT, True, False),
    (7, True, True, IDEMPOTENT, False, True),
    (7, True, True, PLAIN, True, True),
])
def test_each_row_of_sap_s_table(row: int, replayable: bool, batches: bool, writer: WriterKind,
                                 deterministic: bool, discarded: bool) -> None:
    assert table_row(replayable=replayable, batches=batches, writer=writer, deterministic=deterministic,
                     discarded=discarded) == row


def test_every_combination_falls_into_a_row_that_agrees_with_its_conditions() -> None:
    for replayable, batches, deterministic, discarded, writer in itertools.product(
            (False, True), (False, True), (False, True), (False, True), (PLAIN, IDEMPOTENT, TRANSACTIONAL)):
        row = table_row(replayable=replayable, batches=batches, writer=writer, deterministic=deterministic,
                        discarded=discarded)
        conditions = {
            1: replayable and not batches and writer is IDEMPOTENT and deterministic,
            2: replayable and batches and writer is IDEMPOTENT and deterministic and discarded,
            3: not batches and writer is TRANSACTIONAL,
            4: replayable and batches and writer is TRANSACTIONAL,
            5: not replayable and not batches and writer is not TRANSACTIONAL,
            6: not replayable and batches,
            7: replayable,
        }
        assert conditions[row], (row, replayable, batches, deterministic, discarded, writer)
        # The exactly-once rows win wherever they apply, as SAP's table lists them first.
        assert ROW_GUARANTEES[row] is EO or not any(conditions[r] for r in (1, 2, 3, 4))


def test_meet_is_the_weaker_and_mixed_kinds_are_no_guarantee() -> None:
    assert EO.meet(EO) is EO
    assert EO.meet(ALO) is ALO and ALO.meet(EO) is ALO
    assert AMO.meet(EO) is AMO
    assert ALO.meet(AMO) is NONE and AMO.meet(ALO) is NONE
    assert NONE.meet(EO) is NONE and ALO.meet(NONE) is NONE
    assert [g for g in Guarantee if g.satisfies(ALO)] == [EO, ALO]
    assert [g for g in Guarantee if g.satisfies(EO)] == [EO]
    assert REQUIRABLE == (EO, ALO, AMO)


# -- every row through a graph, with its reasons -------------------------------------------------------

def test_row_1_the_brief_s_example() -> None:
    graph = graph_of({"gen": REPLAYS, "proc": DETERMINISTIC, "writer": DeliveryTraits(writer=IDEMPOTENT)},
                     "gen -> proc", "proc -> writer")
    (found,) = compute_guarantees(graph, snapshots=True, recovery=False)
    assert found.rows == (1,)
    assert found.describe() == ("writer 'writer': exactly-once: source 'gen' replays from its snapshot, "
                                "'proc' is declared deterministic, 'writer' is idempotent")


def test_row_7_names_the_operator_that_is_not_deterministic() -> None:
    graph = graph_of({"gen": REPLAYS, "proc": None, "sink": DeliveryTraits(writer=IDEMPOTENT)},
                     "gen -> proc", "proc -> sink")
    assert by_writer(graph)["sink"].describe() == "writer 'sink': at-least-once: 'proc' is not declared deterministic"


def test_row_7_a_plain_writer_and_every_other_failing_condition() -> None:
    graph = graph_of({"gen": REPLAYS_IN_BATCHES, "proc": None, "sink": None}, "gen -> proc", "proc -> sink")
    found = by_writer(graph)["sink"]
    assert (found.guarantee, found.rows) == (ALO, (7,))
    assert found.reasons == ("'sink' is a plain writer (neither idempotent nor transactional)",
                             "'proc' is not declared deterministic",
                             "source 'gen' sends batches and nothing right after it discards duplicates")


def test_row_2_duplicates_discarded_right_after_the_source() -> None:
    graph = graph_of({"gen": REPLAYS_IN_BATCHES, "log": DeliveryTraits(deterministic=True, discards_duplicates=True),
                      "w": DeliveryTraits(writer=IDEMPOTENT)}, "gen -> log", "log -> w")
    found = by_writer(graph)["w"]
    assert (found.guarantee, found.rows) == (EO, (2,))
    assert "its duplicate batches are discarded by 'log'" in found.reasons


def test_row_2_the_source_itself_may_discard_and_the_writer_may_be_right_after_it() -> None:
    itself = graph_of({"gen": DeliveryTraits(replayable=True, batches=True, discards_duplicates=True),
                       "w": DeliveryTraits(writer=IDEMPOTENT)}, "gen -> w")
    writer_right_after = graph_of({"gen": REPLAYS_IN_BATCHES,
                                   "w": DeliveryTraits(writer=IDEMPOTENT, discards_duplicates=True)}, "gen -> w")
    assert by_writer(itself)["w"].rows == by_writer(writer_right_after)["w"].rows == (2,)


def test_discarding_further_down_does_not_count() -> None:
    graph = graph_of({"gen": REPLAYS_IN_BATCHES, "proc": DETERMINISTIC,
                      "log": DeliveryTraits(deterministic=True, discards_duplicates=True),
                      "w": DeliveryTraits(writer=IDEMPOTENT)}, "gen -> proc", "proc -> log", "log -> w")
    assert by_writer(graph)["w"].reasons == (
        "source 'gen' sends batches and nothing right after it discards duplicates",)


@pytest.mark.parametrize(("source", "row", "reasons"), [
    (DeliveryTraits(), 3, ("'w' is transactional", "source 'gen' sends no batches")),
    (REPLAYS_IN_BATCHES, 4, ("source 'gen' replays from its snapshot", "'w' is transactional")),
])
def test_rows_3_and_4_a_transactional_writer_needs_no_determinism(source: DeliveryTraits, row: int,
                                                                   reasons: tuple[str, ...]) -> None:
    graph = graph_of({"gen": source, "proc": None, "w": DeliveryTraits(writer=TRANSACTIONAL)},
                     "gen -> proc", "proc -> w")
    found = by_writer(graph)["w"]
    assert (found.guarantee, found.rows, found.reasons) == (EO, (row,), reasons)


@pytest.mark.parametrize(("source", "writer", "row", "reason"), [
    (DeliveryTraits(), None, 5, "source 'gen' is not declared replayable"),
    (DeliveryTraits(), DeliveryTraits(writer=IDEMPOTENT), 5, "source 'gen' is not declared replayable"),
    (DeliveryTraits(batches=True), DeliveryTraits(writer=TRANSACTIONAL), 6,
     "source 'gen' is not declared replayable and sends batches"),
])
def test_rows_5_and_6_a_source_that_does_not_replay(source: DeliveryTraits, writer: DeliveryTraits | None,
                                                     row: int, reason: str) -> None:
    graph = graph_of({"gen": source, "w": writer}, "gen -> w")
    found = by_writer(graph)["w"]
    assert (found.guarantee, found.rows, found.reasons) == (AMO, (row,), (reason,))


# -- writers and sources -------------------------------------------------------------------------------

def test_built_ins_are_no_writers_and_are_deterministic() -> None:
    graph = graph_of({"gen": REPLAYS, "tap": WIRETAP_V2, "w": DeliveryTraits(writer=IDEMPOTENT),
                      "show": TERMINAL_V2, "stop": GRAPH_TERMINATOR_V2},
                     "gen -> tap", "tap -> w", "gen -> show", "gen -> stop")
    found = by_writer(graph)
    assert list(found) == ["w"]
    assert found["w"].guarantee is EO and "'tap' is declared deterministic" in found["w"].reasons


def test_which_script_operators_are_writers() -> None:
    graph = graph_of({"gen": None, "sink": None, "logger": DeliveryTraits(writer=WriterKind.NONE),
                      "forwarder": DeliveryTraits(writer=IDEMPOTENT), "after": DeliveryTraits(writer=WriterKind.NONE),
                      "alone": None},
                     "gen -> sink", "gen -> logger", "gen -> forwarder", "forwarder -> after")
    kinds = {name: writer_kind(graph, process) for name, process in graph.processes.items()}
    assert kinds == {"gen": None, "sink": PLAIN, "logger": None, "forwarder": IDEMPOTENT, "after": None,
                     "alone": None}


def test_a_writer_without_inputs_is_its_own_source() -> None:
    graph = graph_of({"poller": DeliveryTraits(replayable=True, writer=IDEMPOTENT)})
    found = by_writer(graph)["poller"]
    assert (found.guarantee, found.rows) == (EO, (1,))
    assert found.reasons == ("source 'poller' replays from its snapshot", "'poller' is idempotent")


def test_fan_out_each_writer_by_its_own_path() -> None:
    graph = graph_of({"gen": REPLAYS, "a": DETERMINISTIC, "b": None, "w1": DeliveryTraits(writer=IDEMPOTENT),
                      "w2": DeliveryTraits(writer=IDEMPOTENT)}, "gen -> a", "a -> w1", "gen -> b", "b -> w2")
    found = by_writer(graph)
    assert found["w1"].guarantee is EO
    assert found["w2"].reasons == ("'b' is not declared deterministic",)


def test_a_diamond_names_only_the_branch_that_breaks_it() -> None:
    graph = graph_of({"gen": REPLAYS, "a": DETERMINISTIC, "b": None, "c": None, "w": DeliveryTraits(writer=IDEMPOTENT)},
                     "gen -> a", "gen -> b", "a -> w", "b -> w", "gen -> c")
    assert by_writer(graph)["w"].reasons == ("'b' is not declared deterministic",)


def test_batches_discarded_on_one_first_hop_of_two_is_not_enough() -> None:
    log = DeliveryTraits(deterministic=True, discards_duplicates=True)
    graph = graph_of({"gen": REPLAYS_IN_BATCHES, "log": log, "other": DETERMINISTIC,
                      "w": DeliveryTraits(writer=IDEMPOTENT)}, "gen -> log", "gen -> other", "log -> w", "other -> w")
    assert by_writer(graph)["w"].guarantee is ALO
    graph.processes["other"].delivery = log
    assert by_writer(graph)["w"].guarantee is EO


def test_fan_in_the_weakest_source_wins() -> None:
    graph = graph_of({"a": REPLAYS, "b": None, "w": DeliveryTraits(writer=IDEMPOTENT)}, "a -> w", "b -> w")
    found = by_writer(graph)["w"]
    assert (found.guarantee, found.rows, found.reasons) == (AMO, (1, 5), ("source 'b' is not declared replayable",))


def test_fan_in_duplicates_from_one_source_and_losses_from_another_are_no_guarantee() -> None:
    graph = graph_of({"a": REPLAYS, "b": None, "w": None}, "a -> w", "b -> w")
    found = by_writer(graph)["w"]
    assert (found.guarantee, found.rows) == (NONE, (7, 5))
    assert found.describe() == ("writer 'w': no guarantee: 'w' is a plain writer (neither idempotent nor "
                                "transactional), source 'b' is not declared replayable")


def test_fan_in_of_replaying_sources_lists_each() -> None:
    graph = graph_of({"a": REPLAYS, "b": REPLAYS, "w": DeliveryTraits(writer=IDEMPOTENT)}, "a -> w", "b -> w")
    assert by_writer(graph)["w"].reasons == ("source 'a' replays from its snapshot", "'w' is idempotent",
                                             "source 'b' replays from its snapshot")


def test_a_cycle_has_no_guarantee() -> None:
    graph = graph_of({"gen": REPLAYS, "a": DETERMINISTIC, "b": DETERMINISTIC, "w": DeliveryTraits(writer=IDEMPOTENT)},
                     "gen -> a", "a -> b", "b -> a", "b -> w")
    found = by_writer(graph)["w"]
    assert found.guarantee is NONE
    assert found.reasons == ("the graph has the cycle a -> b -> a, and SAP's table excludes cycles",)


# -- snapshots off ----------------------------------------------------------------------------------------

UPSERT_PIPELINE = {"gen": REPLAYS, "proc": DETERMINISTIC, "w": DeliveryTraits(writer=IDEMPOTENT)}


def test_without_snapshots_and_recovery_a_failure_ends_the_run() -> None:
    graph = graph_of(UPSERT_PIPELINE, "gen -> proc", "proc -> w")
    assert by_writer(graph, snapshots=False)["w"].describe() == (
        "writer 'w': at-most-once: snapshots are off and there is no automatic recovery: a failure ends the "
        "run (with snapshots: exactly-once)")


def test_without_snapshots_a_recovery_starts_from_scratch() -> None:
    graph = graph_of(UPSERT_PIPELINE, "gen -> proc", "proc -> w")
    found = by_writer(graph, snapshots=False, recovery=True)["w"]
    assert (found.guarantee, found.with_snapshots) == (ALO, EO)
    graph.processes["gen"].delivery = None
    found = by_writer(graph, snapshots=False, recovery=True)["w"]
    assert found.guarantee is NONE
    assert found.describe() == (
        "writer 'w': no guarantee: snapshots are off: a recovery starts the graph from scratch and writes "
        "everything again, and source 'gen' is not declared replayable (with snapshots: at-most-once)")


def test_without_snapshots_a_transactional_writer_commits_nothing() -> None:
    graph = graph_of({"gen": REPLAYS, "w": DeliveryTraits(writer=TRANSACTIONAL)}, "gen -> w")
    for recovery in (False, True):
        found = by_writer(graph, snapshots=False, recovery=recovery)["w"]
        assert found.guarantee is AMO and "epoch_complete runs only after a snapshot" in found.reasons[0]


def test_without_snapshots_a_writer_that_commits_at_the_end_writes_once_or_again() -> None:
    """snapgraph's transactional writers commit everything once at the last batch when there are no epochs:
    without recovery a failure before it loses the rows (at-most-once), with recovery one after it writes
    them again (at-least-once); the built-in SQL writer says so by its mode."""
    at_end = DeliveryTraits(writer=TRANSACTIONAL, commits_at_end=True)
    graph = graph_of({"gen": REPLAYS, "w": at_end}, "gen -> w")
    alone = by_writer(graph, snapshots=False)["w"]
    assert alone.guarantee is AMO and "'w' commits only when the last batch arrives" in alone.reasons[0]
    retried = by_writer(graph, snapshots=False, recovery=True)["w"]
    assert retried.guarantee is ALO and retried.describe() == (
        "writer 'w': at-least-once: snapshots are off: 'w' commits once when the last batch arrives, and a "
        "recovery starts the graph from scratch: a failure after that commit, before the run ends, writes "
        "everything again (with snapshots: exactly-once)")
    sql = graph_of({"gen": REPLAYS, "w": "snapgraph.sql.writer"}, "gen -> w")
    sql.processes["w"].config = {"connection": {"connectionID": "DB"}, "table": "t", "mode": "transactional"}
    assert by_writer(sql, snapshots=False, recovery=True)["w"].guarantee is ALO


def test_without_snapshots_a_writer_that_commits_at_the_end_behind_a_streaming_source_writes_nothing() -> None:
    graph = graph_of({"gen": "snapgraph.sql.reader", "w": DeliveryTraits(writer=TRANSACTIONAL, commits_at_end=True)},
                     "gen -> w")
    graph.processes["gen"].config = {"connection": {"connectionID": "DB"}, "table": "t", "key": "id",
                                     "streaming": True}
    for recovery in (False, True):
        found = by_writer(graph, snapshots=False, recovery=recovery)["w"]
        assert found.guarantee is AMO and found.reasons[0] == (
            "snapshots are off, so 'w' commits only when a last batch arrives, but source 'gen' streams (no "
            "last batch ever comes): it writes nothing"), found.reasons


def test_no_snapshot_hint_where_a_group_has_multiplicity() -> None:
    """Snapshots are refused with a group of multiplicity > 1, so the line does not promise them."""
    graph = graph_of(UPSERT_PIPELINE, "gen -> proc", "proc -> w")
    graph.groups["wide"] = Group("wide", ["proc"], multiplicity=2)
    assert by_writer(graph, snapshots=False)["w"].describe().endswith("a failure ends the run")


def test_the_hint_is_left_out_when_snapshots_would_give_the_same() -> None:
    graph = graph_of({"gen": None, "w": None}, "gen -> w")
    assert by_writer(graph, snapshots=False)["w"].describe().endswith("a failure ends the run")


# -- --require ----------------------------------------------------------------------------------------------

def test_unmet_names_the_weakest_writer() -> None:
    graph = graph_of({"gen": REPLAYS, "proc": None, "good": DeliveryTraits(writer=TRANSACTIONAL),
                      "dup": DeliveryTraits(writer=IDEMPOTENT), "other": None, "lossy": None},
                     "gen -> good", "gen -> proc", "proc -> dup", "other -> lossy")
    found = compute_guarantees(graph, snapshots=True, recovery=False)
    weakest = unmet(found, EO)
    assert weakest is not None and weakest.writer == "lossy" and weakest.guarantee is AMO
    assert weakest.weakest_link == "source 'other' is not declared replayable"
    at_least = unmet(found, ALO)
    assert at_least is not None and at_least.writer == "lossy"
    at_most = unmet(found, AMO)
    assert at_most is not None and at_most.writer == "dup"
    assert unmet([g for g in found if g.writer == "good"], EO) is None


# -- the project's examples ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("example", "rows"), [
    ("seed_upsert.yaml", {"writer": (1,)}),
    ("seed_wal.yaml", {"writer": (2,)}),
    ("tour.yaml", {"total": (3,)}),
])
def test_the_examples_are_exactly_once(example: str, rows: dict[str, tuple[int, ...]]) -> None:
    graph = load_graph(EXAMPLES / example, LoadOptions(connections_file=EXAMPLES / "connections-sqlite.yaml"))
    assert graph.settings.period is not None
    found = by_writer(graph)
    assert {name: g.rows for name, g in found.items()} == rows
    assert all(g.guarantee is EO for g in found.values())


# -- docs/guarantees.md ------------------------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "guarantees.md"


def doc_block(language: str) -> str:
    (block,) = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return block


def test_the_documented_declarations_load_and_give_what_the_doc_says(tmp_path: Path) -> None:
    (tmp_path / "gen.py").write_text("api.add_timer(lambda: -1)\n")
    for name in ("proc", "writer"):
        (tmp_path / f"{name}.py").write_text("api.set_port_callback('in', lambda msg_id, header, body: None)\n")
    (tmp_path / "graph.yaml").write_text(doc_block("yaml"))
    (found,) = compute_guarantees(load_graph(tmp_path / "graph.yaml"), snapshots=True, recovery=False)
    first_line = DOC.read_text(encoding="utf-8").split("```\n", 1)[1].splitlines()[0]
    assert first_line == f"snapgraph: delivery: {found.describe()}"

    writer = json.loads(doc_block("json"))
    writer["metadata"]["additionalinports"] = [{"name": "in", "type": "scalar", "vtype-ID": "com.sap.core.int64"}]
    gen = {"component": PYTHON3_V2, "metadata": {
        "config": {"script": "file://gen.py"}, "snapgraph": {"delivery": {"replayable": True}},
        "additionaloutports": [{"name": "out", "type": "scalar", "vtype-ID": "com.sap.core.int64"}]}}
    (tmp_path / "graph.json").write_text(json.dumps({
        "processes": {"gen": gen, "writer": writer},
        "connections": [{"src": {"process": "gen", "port": "out"}, "tgt": {"process": "writer", "port": "in"}}]}))
    (found,) = compute_guarantees(load_graph(tmp_path / "graph.json"), snapshots=True, recovery=False)
    assert (found.writer, found.guarantee, found.rows) == ("writer", EO, (1,))
