"""The driver ↔ group control protocol: typed messages, defined once, picklable; an unknown
message fails loudly on either side instead of being ignored."""

from __future__ import annotations

import dataclasses
import io
import pickle
import textwrap
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from snapgraph.model.loader import load_graph
from snapgraph.runtime import control
from snapgraph.runtime.completion import WorkCounts
from snapgraph.runtime.control import UnknownControlMessage
from snapgraph.runtime.engine import FAILED
from snapgraph.runtime.failures import OperatorFailure
from snapgraph.runtime.options import RunOptions
from snapgraph.runtime.remote import RemoteEngine, _Instance
from snapgraph.runtime.transport import GroupSpec, Where, obey, serve_group
from snapgraph.snapshot.faults import Fault

FAILURE = OperatorFailure("op", "a callback", "ValueError: no", "Traceback ...")
EVERY_MESSAGE = [
    control.Go(), control.TakeSnapshot("src", "e1"), control.EpochComplete("e1", True), control.DropTimers(),
    control.Probe(3), control.Stop(),
    control.Loaded([FAILURE]), control.Failed(FAILURE), control.ShutdownFailed(FAILURE), control.Terminate("t"),
    control.State("op", "e1", b"state"), control.StateSaved("op", "e1", 5, 0.01), control.Ack("op", "e1", True),
    control.ProbeAnswer(3, WorkCounts(0, 1, 2, 2)), control.Stdout("text\n"),
    control.OperatorLog("op", "INFO", "logged", 1.5), control.Stderr("text\n"),
    control.FaultFired(Fault("after_persist", "op", 1, "raise")), control.KillEngine("killed"), control.Done([]),
]


def test_every_message_is_frozen_and_survives_pickling() -> None:
    for message in EVERY_MESSAGE:
        assert dataclasses.is_dataclass(message)
        copy = pickle.loads(pickle.dumps(message))
        assert type(copy) is type(message)
        assert repr(copy) == repr(message)
        fields = dataclasses.fields(message)
        if fields:
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(message, fields[0].name, None)


def test_the_two_directions_name_every_message_once() -> None:
    to_group = set(control.ToGroup.__args__)  # type: ignore[attr-defined]
    to_driver = set(control.ToDriver.__args__)  # type: ignore[attr-defined]
    assert not to_group & to_driver
    assert to_group | to_driver == {type(m) for m in EVERY_MESSAGE}


class _Host:
    """Records what the group's dispatch asks of the host."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return lambda *args: self.calls.append(name)


def test_an_unknown_command_fails_loudly_in_the_group() -> None:
    host = _Host()
    with pytest.raises(UnknownControlMessage, match=r"a group received an unknown control message: \('go',\)"):
        obey(host, None, ("go",))  # type: ignore[arg-type]  # the old untyped form
    with pytest.raises(UnknownControlMessage, match="Loaded"):
        obey(host, None, control.Loaded([]))  # type: ignore[arg-type]  # the wrong direction
    assert host.calls == []
    assert obey(host, None, control.Go()) is True  # type: ignore[arg-type]
    assert obey(host, None, control.Stop()) is False  # type: ignore[arg-type]
    assert host.calls == ["go", "stop"]


def test_an_unknown_report_fails_loudly_in_the_driver(tmp_path: Path) -> None:
    engine = RemoteEngine(load_graph(_graph(tmp_path)), transport=None, options=RunOptions())  # type: ignore[arg-type]
    child = _Instance("default", ["op"])
    with pytest.raises(UnknownControlMessage,
                       match=r"the driver received an unknown control message: \('done', \[\]\)"):
        engine._handle(child, ("done", []))  # type: ignore[arg-type]
    with pytest.raises(UnknownControlMessage, match="Probe"):
        engine._handle(child, control.Probe(1))  # type: ignore[arg-type]
    assert not child.done.is_set()
    engine._handle(child, control.Done(["x"]))
    assert child.done.is_set() and child.stuck == ["x"]


class _Control:
    """A control channel fed from a list: the group's end of it."""

    def __init__(self, commands: list[Any]) -> None:
        self.commands = commands
        self.sent: list[Any] = []

    def send(self, message: Any) -> None:
        self.sent.append(message)

    def recv(self) -> Any:
        if not self.commands:
            raise EOFError
        return self.commands.pop(0)


def _gone() -> NoReturn:
    raise AssertionError("the control channel broke")


def test_serve_group_reports_an_unknown_command_as_a_failure_naming_it(tmp_path: Path) -> None:
    graph = load_graph(_graph(tmp_path))
    spec = GroupSpec(graph, "default", ["op"], RunOptions(stdout=io.StringIO()), False, None, [], "h",
                     instance="default", where=Where.here())
    end = _Control([("snapshot", "op", "e1"), control.Stop()])
    assert serve_group(spec, end, [], [], _gone) == []
    kinds = [type(m).__name__ for m in end.sent]
    assert kinds == ["Loaded", "Failed", "Done"], kinds
    failure = end.sent[1].failure
    assert "unknown control message" in failure.message and "'snapshot'" in failure.message


def test_a_run_fails_when_a_group_receives_an_unknown_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end on the process backend: the group says which message it did not know, the run fails."""
    from snapgraph.runtime.backends import ProcessEngine

    monkeypatch.setattr(RemoteEngine, "_go", lambda self: [c.send(("go",)) for c in self.children.values()])
    result = ProcessEngine(load_graph(_graph(tmp_path)), RunOptions(stdout=io.StringIO())).run()
    assert result.status == FAILED
    assert "unknown control message: ('go',)" in result.reason


def _graph(tmp_path: Path) -> Path:
    path = tmp_path / "graph.yaml"
    path.write_text(yaml.safe_dump({"name": "one", "operators": {"op": {"code": textwrap.dedent("""
        api.add_timer(lambda: -1)
        """)}}}))
    return path
