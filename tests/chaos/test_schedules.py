"""The plans of snapgraph chaos: a pure function of the seed and the graph's shape, and every fault one that
can fire in that graph; every crash point a connector reaches is declared by its built-ins' descriptors, so
chaos injects faults at it without being told."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import snapgraph.connectors
from snapgraph.chaos.schedules import GraphShape, Schedule, Step, crash_points_of_graph, make_schedule, random_fault
from snapgraph.model.builtin_operator import CrashPoint
from snapgraph.model.builtins import BUILTINS
from snapgraph.model.loader import LoadOptions, load_graph
from snapgraph.snapshot.faults import FAULT_POINTS, FaultPlan
from tests.chaos.graphs import write_sql_copy

SHAPE = GraphShape(("gen", "proc", "writer"), {"gen": 0, "proc": 40, "writer": 40}, stateful=("gen",),
                   epochs=3, groups_as_processes=True, extra_points=("between_write_and_wal",))


def _faults(plans: list[Schedule]) -> list[tuple[int, str]]:
    return [(index, item) for plan in plans for index, step in enumerate(plan.steps) if step.kind == "fault"
            for item in str(step.params["faults"]).split(",")]


def test_a_plan_is_a_function_of_its_seed_and_the_shape() -> None:
    assert make_schedule(7, SHAPE) == make_schedule(7, SHAPE)
    assert len({make_schedule(seed, SHAPE).label() for seed in range(30)}) > 25
    other = GraphShape(("a", "b"), {"b": 5}, groups_as_processes=False)
    assert [make_schedule(seed, other) for seed in range(10)] != [make_schedule(seed, SHAPE) for seed in range(10)]
    assert all(1 <= len(make_schedule(seed, SHAPE).steps) <= 3 for seed in range(50))


def test_faults_name_points_and_operators_that_can_fire() -> None:
    plans = [make_schedule(seed, SHAPE) for seed in range(400)]
    seen_points = set()
    for index, item in _faults(plans):
        fault = FaultPlan.parse(item).faults[0]  # every item is one SNAPGRAPH_FAULTS understands
        seen_points.add(fault.point)
        assert fault.point != "drain"  # only reached by a stop
        if fault.point == "port_callback":
            assert fault.process in ("proc", "writer", "*")  # never the generator: it receives nothing
            assert fault.nth <= (80 if fault.process == "*" else 40)
        if fault.point in ("after_serialize", "restore"):
            assert fault.process in ("gen", "*")  # the only operator with state
        if fault.point == "restore":
            assert index > 0 and fault.nth == 1  # restore runs only when a later step resumes
        if fault.point in ("before_complete", "between_write_and_wal"):
            assert fault.process == "*"  # counted for '*' only
    assert seen_points == {*FAULT_POINTS} - {"drain"} | {"between_write_and_wal"}
    actions = {item.rsplit(":", 1)[1] for _, item in _faults(plans)}
    assert actions == {"raise", "exit", "kill"}


def test_every_kind_of_step_occurs_and_group_kills_only_with_group_processes() -> None:
    kinds = {step.kind for seed in range(200) for step in make_schedule(seed, SHAPE).steps}
    assert kinds == {"fault", "kill-group", "sigkill-engine", "signal", "double-signal"}
    in_process = GraphShape(SHAPE.operators, SHAPE.messages_in, SHAPE.stateful, groups_as_processes=False)
    assert all(step.kind != "kill-group" for seed in range(200) for step in make_schedule(seed, in_process).steps)


def test_a_graph_without_receivers_or_state_gets_epoch_faults_only() -> None:
    import random

    lone = GraphShape(("poller",), {}, groups_as_processes=True)
    points = {random_fault(random.Random(seed), lone, resumed=True).split(":")[0] for seed in range(300)}
    assert points == {"before_serialize", "after_persist", "before_complete", "epoch_complete"}


def test_step_labels_name_what_strikes_and_when() -> None:
    assert Step("fault", {"faults": "restore:*:1:kill"}).label() == "fault(restore:*:1:kill)"
    assert Step("signal", {"signal": "SIGTERM", "target": "group", "timing": "early", "delay": 0.25}).label() \
        == "signal(SIGTERM->group,early+0.25s)"
    assert Step("sigkill-engine", {"target": "engine", "timing": "work", "delay": 0.5}).label() \
        == "sigkill-engine(engine,work@0.50)"
    assert Step("kill-group", {"which": 3, "timing": "work", "delay": 0.1}).label() == "kill-group(#3,work@0.10)"
    schedule = Schedule(4, (Step("fault", {"faults": "a:*:1:raise"}), Step("double-signal", {
        "signal": "SIGINT", "target": "engine", "timing": "work", "delay": 0.3})))
    assert schedule.label() == "fault(a:*:1:raise) -> double-signal(SIGINT->engine,work@0.30)"


WRITER_POINTS = (CrashPoint("sql_writer_staged", "epoch"), CrashPoint("sql_writer_moved", "epoch"))
BUILTIN_SHAPE = GraphShape(
    ("reader", "pace", "writer", "sink"), {"reader": 0, "pace": 30, "writer": 30, "sink": 0},
    stateful=("reader",), epochs=4, extra_points=("my_point",), groups=2,
    messages_out={"reader": 30, "pace": 30, "writer": 0, "sink": 0},
    crash_points={"reader": (CrashPoint("sql_reader_published", "output"),), "writer": WRITER_POINTS,
                  "sink": (CrashPoint("nats_sink_published", "input"), CrashPoint("hana_sql_committed", "once"))})


def test_the_crash_points_of_the_builtins_are_drawn_by_how_often_they_are_reached() -> None:
    faults = [FaultPlan.parse(item).faults[0] for _, item in _faults(
        [make_schedule(seed, BUILTIN_SHAPE) for seed in range(600)])]
    drawn: dict[str, set[tuple[str, int]]] = {}
    for fault in faults:
        drawn.setdefault(fault.point, set()).add((fault.process, fault.nth))
    assert {(process, nth) for process, nth in drawn["sql_reader_published"]} <= {("reader", n) for n in range(1, 31)}
    assert max(nth for _, nth in drawn["sql_reader_published"]) > 20  # below the messages it sent
    for point in ("sql_writer_staged", "sql_writer_moved"):  # per epoch: below the failure-free run's epochs
        assert drawn[point] == {("writer", nth) for nth in range(1, 5)}
    assert drawn["hana_sql_committed"] == {("sink", 1)}
    assert "nats_sink_published" not in drawn, "the sink received nothing: its per-input point is never reached"
    user = {nth for process, nth in drawn["my_point"]}  # unknown frequency: an epoch's nth or a message's
    assert {process for process, _ in drawn["my_point"]} == {"*"} and min(user) == 1 and max(user) > 4


def test_only_the_nth_of_per_epoch_points_depends_on_the_epochs() -> None:
    longer = GraphShape(**{**BUILTIN_SHAPE.__dict__, "epochs": 9})
    for seed in range(100):
        plan, other = make_schedule(seed, BUILTIN_SHAPE), make_schedule(seed, longer)
        assert [s.kind for s in plan.steps] == [s.kind for s in other.steps]
        for step, again in zip(plan.steps, other.steps, strict=True):
            if step.kind != "fault":
                assert step == again
                continue
            for item, item_again in zip(str(step.params["faults"]).split(","),
                                        str(again.params["faults"]).split(","), strict=True):
                fault, fault_again = FaultPlan.parse(item).faults[0], FaultPlan.parse(item_again).faults[0]
                assert (fault.point, fault.process, fault.action) == (
                    fault_again.point, fault_again.process, fault_again.action)
                if fault.point not in ("sql_writer_staged", "sql_writer_moved", "my_point"):
                    assert fault.nth == fault_again.nth


def test_a_group_kill_strikes_one_of_the_groups() -> None:
    whiches = {step.params["which"] for seed in range(300) for step in make_schedule(seed, BUILTIN_SHAPE).steps
               if step.kind == "kill-group"}
    assert whiches == {0, 1}


def test_the_crash_points_of_a_graph_follow_each_builtins_config(tmp_path: Path) -> None:
    copy = write_sql_copy(tmp_path / "tx", mode="transactional")
    graph = load_graph(copy.graph, LoadOptions(connections_file=copy.connections))
    assert _names(crash_points_of_graph(graph)) == {  # pace, a script, declares none
        "reader": [("sql_reader_published", "output")],
        "writer": [("sql_writer_staged", "epoch"), ("sql_writer_moved", "epoch"), ("sql_writer_committed", "epoch")]}
    append = write_sql_copy(tmp_path / "append", mode="append")
    graph = load_graph(append.graph, LoadOptions(connections_file=append.connections))
    assert _names(crash_points_of_graph(graph)) == {"reader": [("sql_reader_published", "output")],
                                                    "writer": [("sql_writer_committed", "input")]}


def _names(points: Mapping[str, tuple[CrashPoint, ...]]) -> dict[str, list[tuple[str, str]]]:
    return {operator: [(point.name, point.per) for point in declared] for operator, declared in points.items()}


CHECKPOINT_CALL = re.compile(r"checkpoint\(\"([a-z_]+)\"\)")


def test_every_checkpoint_of_the_connectors_is_declared() -> None:
    folder = Path(snapgraph.connectors.__file__).parent
    reached = {name for source in folder.rglob("*.py") for name in CHECKPOINT_CALL.findall(source.read_text())}
    declared = {point.name for descriptor in BUILTINS.values() for point in descriptor.crash_points}
    assert reached, "the connectors' checkpoint calls are found"
    assert reached == declared


def test_a_builtins_crash_points_follow_its_config() -> None:
    writer = BUILTINS["snapgraph.sql.writer"]
    connection = {"connectionID": "DB"}

    def names(config: dict[str, object]) -> list[tuple[str, str]]:
        return [(point.name, point.per) for point in writer.crash_points_of({"connection": connection, "table": "t",
                                                                            **config})]

    assert names({}) == names({"mode": "append"}) == [("sql_writer_committed", "input")]
    assert names({"mode": "transactional"}) == [("sql_writer_staged", "epoch"), ("sql_writer_moved", "epoch"),
                                               ("sql_writer_committed", "epoch")]
    assert writer.crash_points_of({"mode": "append"}) == (), "a config with problems runs nothing"
