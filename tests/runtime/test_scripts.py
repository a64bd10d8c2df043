"""Operator scripts run as modules of their own: classes defined in a script work as in any module
(dataclasses, enums, pickled snapshot state restored after a crash), in one process and in groups."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest
import yaml

from snapgraph.model.loader import LoadOptions, load_graph
from snapgraph.runtime.engine import COMPLETED, FAILED, RunOptions
from snapgraph.runtime.supervisor import RecoveryPolicy, Supervisor
from snapgraph.snapshot.faults import FaultPlan
from snapgraph.snapshot.store import SQLiteStore

# A generator whose snapshot state is an instance of a dataclass defined in the script itself.
GENERATOR = """
import dataclasses, enum, pickle

class Parity(enum.Enum):
    EVEN = 0
    ODD = 1

@dataclasses.dataclass
class Position:
    offset: int = 0
    restored_from: str = ""

state = Position()
api.set_initial_snapshot_info(api.InitialProcessInfo(
    is_stateful=True, outports_info={"out": api.OutportInfo(is_generator=True)}))

def tick():
    if state.offset >= 40:
        return -1
    api.outputs.out.publish([state.offset, Parity(state.offset % 2).name, state.restored_from])
    state.offset += 1
    return 0.005  # slow enough for a few epochs to complete before the fault

api.add_timer(tick)
api.set_serialize_callback(lambda epoch: pickle.dumps(state))

def restore(epoch, data):
    global state
    state = pickle.loads(data)
    assert type(state) is Position, type(state)   # the class of this attempt's script module
    state.restored_from = epoch

api.set_restore_callback(restore)
"""

SINK = """
import json, os, pickle
seen = []
api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))

def on_input(msg_id, header, body):
    seen.append(body.get())

api.set_port_callback("in", on_input)
api.set_serialize_callback(lambda epoch: pickle.dumps(seen))

def restore(epoch, data):
    seen[:] = pickle.loads(data)

api.set_restore_callback(restore)

def shutdown():
    with open(api.config.result, "w") as f:
        json.dump(seen, f)

api.set_shutdown(shutdown)
"""


def write_graph(tmp_path: Path, groups: bool) -> Path:
    graph = {
        "name": "script-classes",
        "operators": {
            "gen": {"code": GENERATOR, "outputs": {"out": "any"}},
            "sink": {"code": SINK, "inputs": {"in": "any"}, "config": {"result": str(tmp_path / "seen.json")}},
        },
        "connections": ["gen.out -> sink.in"],
    }
    if groups:
        graph["operators"]["gen"]["group"] = "a"
        graph["operators"]["sink"]["group"] = "b"
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump(graph))
    return path


@pytest.mark.parametrize("in_process", [True, False], ids=["one process", "groups as processes"])
def test_script_defined_classes_work_and_survive_snapshot_and_restore(tmp_path: Path, in_process: bool) -> None:
    path = write_graph(tmp_path, groups=not in_process)
    outcome = Supervisor(
        load_graph(path, LoadOptions(snapshots=True)), RunOptions(stdout=io.StringIO(), in_process=in_process),
        RecoveryPolicy(max_retries=3, retry_interval=0), store=SQLiteStore(tmp_path / "store.db"), period=0.02,
        faults=FaultPlan.parse("port_callback:sink:25"), say=lambda text: None,
    ).run()
    assert outcome.result.status == COMPLETED, outcome.result.reason
    assert outcome.attempts == 2
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert [x for x, _, _ in seen] == list(range(40))  # exactly once, in order
    assert [p for _, p, _ in seen] == ["EVEN", "ODD"] * 20
    assert any(restored for _, _, restored in seen), "the second attempt restored the dataclass state"


def test_a_script_class_sent_to_another_group_fails_clearly_instead_of_losing_the_message(tmp_path: Path) -> None:
    """The receiving group cannot import the sender's script module: the run fails, naming both operators."""
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump({
        "name": "script-class-across-groups",
        "operators": {
            "gen": {"group": "a", "outputs": {"out": "any"}, "code": textwrap.dedent("""
                import dataclasses
                @dataclasses.dataclass
                class Point:
                    x: int
                api.set_prestart(lambda: api.outputs.out.publish(Point(1)))
                """)},
            "sink": {"group": "b", "inputs": {"in": "any"},
                     "code": "api.set_port_callback('in', lambda m, h, b: None)\n"},
        },
        "connections": ["gen.out -> sink.in"],
    }))
    outcome = Supervisor(load_graph(path), RunOptions(stdout=io.StringIO()), RecoveryPolicy(),
                         say=lambda text: None).run()
    assert outcome.result.status == FAILED
    failure = outcome.result.failure
    assert failure is not None and failure.process == "sink" and failure.phase == "receiving on port 'in'"
    assert "a message from operator 'gen' (another group) could not be rebuilt here" in failure.message
    assert "define it in a helper module beside the graph" in failure.message


@pytest.mark.parametrize("name", ["gen.v2", "stage-1", "stage_1"])
def test_classes_of_scripts_pickle_whatever_the_operator_is_called(tmp_path: Path, name: str) -> None:
    """Operator names are not identifiers ("gen.v2"); the script's module name must still import."""
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump({
        "name": "names",
        "operators": {name: {"code": textwrap.dedent("""
            import dataclasses, json, pickle
            @dataclasses.dataclass
            class Point:
                x: int
            def start():
                back = pickle.loads(pickle.dumps(Point(7)))
                with open(api.config.result, "w") as f:
                    json.dump([type(back).__name__, back.x], f)
            api.set_prestart(start)
            """), "config": {"result": str(tmp_path / "result.json")}}},
    }))
    outcome = Supervisor(load_graph(path), RunOptions(stdout=io.StringIO(), in_process=True), RecoveryPolicy(),
                         say=lambda text: None).run()
    assert outcome.result.status == COMPLETED, outcome.result.reason
    assert json.loads((tmp_path / "result.json").read_text()) == ["Point", 7]
