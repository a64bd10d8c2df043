"""The plans of snapgraph chaos: a pure function of the seed and the graph's shape, and every fault one that
can fire in that graph."""

from __future__ import annotations

from snapgraph.chaos.schedules import GraphShape, Schedule, Step, make_schedule, random_fault
from snapgraph.snapshot.faults import FAULT_POINTS, FaultPlan

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
