"""The transport conformance suite: what every transport must do for :class:`RemoteEngine`.

A transport is accepted when the same graphs behave the same on it: items of a link arrive in
publishing order; a slow receiver holds its sender back (back-pressure crosses the link); a
barrier arrives behind exactly the messages published before it (consistent epochs); an
instance that dies is an operator failure of its members, promptly, without a hang; a run
completes when nothing is pending anywhere, and not before (a script thread still counts);
replies (response callbacks, retry-mode errors) come back to the sender.

A test module subclasses :class:`TransportContract`, names the backend it tests
(``snapgraph.runtime.backends``) and says how to kill one instance as a crash would. Every
operator runs in a group of its own, so every connection crosses the transport.
"""

from __future__ import annotations

import io
import json
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from snapgraph.model.loader import LoadOptions, load_graph
from snapgraph.runtime.backends import get_backend
from snapgraph.runtime.engine import COMPLETED, FAILED, RunResult
from snapgraph.runtime.options import RunOptions
from snapgraph.runtime.remote import RemoteEngine
from snapgraph.runtime.supervisor import RecoveryPolicy, Supervisor
from snapgraph.runtime.transport import GroupHandle
from snapgraph.snapshot.store import SQLiteStore

REPORT = """
import json, os
def report(**values):
    with open(os.path.join(api.config.out, api.config.name + ".json"), "w") as f:
        json.dump(values, f)
"""


class TransportContract:
    """Subclass with ``backend = "<name>"`` and :meth:`kill`."""

    backend: str

    def kill(self, handle: GroupHandle) -> None:
        """End one running instance as a crash would (SIGKILL of its process, …)."""
        raise NotImplementedError

    # -- helpers -----------------------------------------------------------------------------------
    def engine(self, path: Path, **options: Any) -> RemoteEngine:
        engine = get_backend(self.backend).engine(load_graph(path), RunOptions(stdout=io.StringIO(), **options))
        assert isinstance(engine, RemoteEngine), "a transport is tested through the remote engine"
        return engine

    @staticmethod
    def graph(tmp_path: Path, operators: dict[str, dict[str, Any]], connections: list[str],
              snapshots: dict[str, Any] | None = None) -> Path:
        for name, spec in operators.items():
            spec.setdefault("group", f"g_{name}")
            spec.setdefault("config", {}).update(out=str(tmp_path), name=name)
            spec["code"] = REPORT + textwrap.dedent(spec["code"])
        graph: dict[str, Any] = {"name": "contract", "operators": operators, "connections": connections}
        if snapshots is not None:
            graph["snapshots"] = snapshots
        path = tmp_path / "graph.yaml"
        path.write_text(yaml.safe_dump(graph))
        return path

    @staticmethod
    def reports(tmp_path: Path) -> dict[str, Any]:
        return {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}

    def run(self, path: Path, **options: Any) -> RunResult:
        return self.engine(path, **options).run()

    # -- the contract --------------------------------------------------------------------------------
    def test_items_of_a_link_arrive_in_publishing_order(self, tmp_path: Path) -> None:
        gen = """
        def start():
            for i in range(2000):
                api.outputs.out.publish(i)
        api.set_prestart(start)
        """
        sink = """
        seen = []
        api.set_port_callback("in", lambda msg_id, header, body: seen.append(body.get()))
        api.set_shutdown(lambda: report(seen=seen))
        """
        path = self.graph(tmp_path, {
            "gen": {"code": gen, "outputs": {"out": "int64"}},
            "sink": {"code": sink, "inputs": {"in": "int64"}},
        }, ["gen.out -> sink.in"])
        result = self.run(path)
        assert result.status == COMPLETED, result.reason
        assert self.reports(tmp_path)["sink"]["seen"] == list(range(2000))

    def test_tables_fan_in_from_two_senders_in_order_per_sender(self, tmp_path: Path) -> None:
        gen = """
        def start():
            for i in range(200):
                api.outputs.out.publish(api.Table([[api.config.tag, i, "x" * 50] for _ in range(20)]))
        api.set_prestart(start)
        """
        sink = """
        seen = {"a": [], "b": []}
        def on_input(msg_id, header, body):
            rows = body.get()
            seen[rows[0][0]].append(rows[0][1])
        api.set_port_callback("in", on_input)
        api.set_shutdown(lambda: report(**seen))
        """
        path = self.graph(tmp_path, {
            "gen_a": {"code": gen, "outputs": {"out": "table"}, "config": {"tag": "a"}},
            "gen_b": {"code": gen, "outputs": {"out": "table"}, "config": {"tag": "b"}},
            "sink": {"code": sink, "inputs": {"in": "table"}},
        }, ["gen_a.out -> sink.in", "gen_b.out -> sink.in"])
        result = self.run(path)
        assert result.status == COMPLETED, result.reason
        assert self.reports(tmp_path)["sink"] == {"a": list(range(200)), "b": list(range(200))}

    def test_a_slow_receiver_holds_its_sender_back(self, tmp_path: Path) -> None:
        """The sender publishes as fast as it can; how far it gets ahead of a slow receiver is bounded
        by the buffers between them (channel, link), not by the number of messages."""
        total = 200
        gen = f"""
        payload = b"x" * 65536
        def start():
            for i in range({total}):
                api.outputs.out.publish(payload)
                with open(api.config.progress, "w") as f:
                    f.write(str(i + 1))
        api.set_prestart(start)
        """
        sink = """
        import time
        received = 0
        lead = 0
        def on_input(msg_id, header, body):
            global received, lead
            received += 1
            try:
                with open(api.config.progress) as f:
                    lead = max(lead, int(f.read() or 0) - received)
            except FileNotFoundError:
                pass
            time.sleep(0.005)
        api.set_port_callback("in", on_input)
        api.set_shutdown(lambda: report(received=received, lead=lead))
        """
        progress = str(tmp_path / "progress.txt")
        path = self.graph(tmp_path, {
            "gen": {"code": gen, "outputs": {"out": "binary"}, "config": {"progress": progress}},
            "sink": {"code": sink, "inputs": {"in": "binary"}, "config": {"progress": progress}},
        }, ["gen.out -> sink.in"])
        result = self.run(path)
        assert result.status == COMPLETED, result.reason
        sink_report = self.reports(tmp_path)["sink"]
        assert sink_report["received"] == total
        assert sink_report["lead"] < total // 3, sink_report

    def test_a_barrier_arrives_behind_exactly_what_was_published_before_it(self, tmp_path: Path) -> None:
        """Each epoch's state of the receiver counts exactly the messages the sender had published
        when its state for the same epoch was taken: the barrier neither overtakes nor lags."""
        gen = """
        import pickle
        i = 0
        api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True,
            outports_info={'out': api.OutportInfo(is_generator=True)}))
        states = {}
        def tick():
            global i
            if i >= 3000:
                return -1
            for _ in range(10):
                api.outputs.out.publish(i)
                i += 1
            return 0.001
        api.add_timer(tick)
        def serialize(epoch):
            states[epoch] = i
            return pickle.dumps(i)
        api.set_serialize_callback(serialize)
        api.set_restore_callback(lambda epoch, state: None)
        api.set_shutdown(lambda: report(states=states))
        """
        sink = """
        import pickle
        count = 0
        api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))
        states = {}
        completed = []
        def on_input(msg_id, header, body):
            global count
            assert body.get() == count, (body.get(), count)
            count += 1
        api.set_port_callback("in", on_input)
        def serialize(epoch):
            states[epoch] = count
            return pickle.dumps(count)
        api.set_serialize_callback(serialize)
        api.set_restore_callback(lambda epoch, state: None)
        api.set_epoch_complete_callback(completed.append)
        api.set_shutdown(lambda: report(states=states, count=count, completed=completed))
        """
        path = self.graph(tmp_path, {
            "gen": {"code": gen, "outputs": {"out": "int64"}},
            "sink": {"code": sink, "inputs": {"in": "int64"}},
        }, ["gen.out -> sink.in"])
        graph = load_graph(path, LoadOptions(snapshots=True))
        outcome = Supervisor(graph, RunOptions(stdout=io.StringIO()), RecoveryPolicy(),
                             store=SQLiteStore(tmp_path / "store.db"), period=0.02,
                             say=lambda text: None, backend=self.backend).run()
        assert outcome.result.status == COMPLETED, outcome.result.reason
        reports = self.reports(tmp_path)
        gen_states, sink_states = reports["gen"]["states"], reports["sink"]["states"]
        assert reports["sink"]["count"] == 3000
        assert len(sink_states) >= 2, "several epochs were taken"
        assert sink_states == gen_states
        assert reports["sink"]["completed"], "epochs completed"
        assert set(reports["sink"]["completed"]) <= set(sink_states)

    def test_the_death_of_an_instance_fails_its_operators_promptly(self, tmp_path: Path) -> None:
        gen = """
        def tick():
            api.outputs.out.publish(1)
            return 0.01
        api.add_timer(tick)
        """
        sink = """
        got = 0
        def on_input(msg_id, header, body):
            global got
            got += 1
            if got == 5:
                open(api.config.ready, "w").close()
        api.set_port_callback("in", on_input)
        """
        ready = tmp_path / "ready"
        path = self.graph(tmp_path, {
            "gen": {"code": gen, "outputs": {"out": "int64"}},
            "sink": {"code": sink, "inputs": {"in": "int64"}, "config": {"ready": str(ready)}},
        }, ["gen.out -> sink.in"])
        engine = self.engine(path)

        def kill_when_ready() -> None:
            deadline = time.monotonic() + 30
            while not ready.exists() and time.monotonic() < deadline:
                time.sleep(0.01)
            handle = engine.children["g_sink"].handle
            assert handle is not None
            self.kill(handle)

        killer = threading.Thread(target=kill_when_ready, daemon=True)
        killer.start()
        began = time.monotonic()
        result = engine.run()
        killer.join(5)
        assert result.status == FAILED, result.reason
        assert result.failure is not None and result.failure.process == "sink"
        assert result.failure.message == engine.children["g_sink"].handle.end_reason()  # type: ignore[union-attr]
        assert time.monotonic() - began < 20

    def test_completion_waits_for_everything_pending_and_no_longer(self, tmp_path: Path) -> None:
        """A chain of three groups; the middle one also publishes from a script thread after a pause:
        the run completes by itself once that message went through, and not before."""
        gen = """
        api.set_prestart(lambda: [api.outputs.out.publish(i) for i in range(100)])
        """
        middle = """
        import threading, time
        def later():
            time.sleep(0.3)
            api.outputs.out.publish(-1)
        api.set_prestart(lambda: threading.Thread(target=later).start())
        api.set_port_callback("in", lambda msg_id, header, body: api.outputs.out.publish(body.get() * 2))
        """
        sink = """
        seen = []
        api.set_port_callback("in", lambda msg_id, header, body: seen.append(body.get()))
        api.set_shutdown(lambda: report(seen=seen))
        """
        path = self.graph(tmp_path, {
            "gen": {"code": gen, "outputs": {"out": "int64"}},
            "middle": {"code": middle, "inputs": {"in": "int64"}, "outputs": {"out": "int64"}},
            "sink": {"code": sink, "inputs": {"in": "int64"}},
        }, ["gen.out -> middle.in", "middle.out -> sink.in"])
        began = time.monotonic()
        result = self.run(path)
        assert result.status == COMPLETED, result.reason
        assert "nothing more to do" in result.reason
        seen = self.reports(tmp_path)["sink"]["seen"]
        assert sorted(seen) == sorted([-1] + [i * 2 for i in range(100)])
        assert time.monotonic() - began < 10

    def test_a_group_runs_with_the_drivers_directory_environment_and_import_path(
            self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """serve_group takes them over, whatever the transport (a forked process has its fork server's)."""
        (tmp_path / "helpers").mkdir()
        (tmp_path / "helpers" / "contract_helper_mod.py").write_text("VALUE = 'imported'\n")
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("SNAPGRAPH_CONTRACT_VALUE", "from the driver")
        monkeypatch.syspath_prepend(str(tmp_path / "helpers"))
        probe = """
        import os
        import contract_helper_mod
        report(cwd=os.getcwd(), value=os.environ.get("SNAPGRAPH_CONTRACT_VALUE"), module=contract_helper_mod.VALUE)
        """
        path = self.graph(tmp_path, {"probe": {"code": probe}}, [])
        result = self.run(path)
        assert result.status == COMPLETED, result.reason
        assert self.reports(tmp_path)["probe"] == {"cwd": str(tmp_path.resolve()), "value": "from the driver",
                                                   "module": "imported"}

    def test_replies_come_back_to_the_sender(self, tmp_path: Path) -> None:
        sender = """
        responses = {}
        sent = []
        def on_response(msg_id, ex):
            responses[msg_id.hex()] = None if ex is None else f"{type(ex).__name__}: {ex}"
        def start():
            for i in range(30):
                sent.append((api.outputs.out.publish(i, response_callback=on_response).hex(), i))
        api.set_prestart(start)
        api.set_shutdown(lambda: report(responses=responses, sent=sent))
        """
        receiver = """
        def on_input(msg_id, header, body):
            if body.get() % 3 == 0:
                raise ValueError(f"no multiples of three: {body.get()}")
        api.set_port_callback("in", on_input)
        """
        path = self.graph(tmp_path, {
            "sender": {"code": sender, "outputs": {"out": "int64"}},
            "receiver": {"code": receiver, "inputs": {"in": "int64"}, "config": {"errorHandling": "retry"}},
        }, ["sender.out -> receiver.in"])
        result = self.run(path)
        assert result.status == COMPLETED, result.reason
        report = self.reports(tmp_path)["sender"]
        expected = {mid: (f"ValueError: no multiples of three: {i}" if i % 3 == 0 else None)
                    for mid, i in report["sent"]}
        assert report["responses"] == expected

    def test_a_group_with_multiplicity_gets_messages_in_turn_and_replies_from_each(self, tmp_path: Path) -> None:
        sender = """
        responses = []
        def start():
            for i in range(40):
                api.outputs.out.publish(i, response_callback=lambda mid, ex: responses.append(ex is None))
        api.set_prestart(start)
        api.set_shutdown(lambda: report(responses=responses))
        """
        worker = """
        seen = []
        api.set_port_callback("in", lambda msg_id, header, body: seen.append(body.get()))
        api.set_shutdown(lambda: report(seen=seen, index=api.multiplicity_index))
        """
        operators = {
            "sender": {"code": sender, "outputs": {"out": "int64"}},
            "worker": {"code": worker, "inputs": {"in": "int64"}},
        }
        path = self.graph(tmp_path, operators, ["sender.out -> worker.in"])
        graph = yaml.safe_load(path.read_text())
        graph["groups"] = {"g_worker": {"multiplicity": 2}}
        # Each instance reports under a name of its own.
        graph["operators"]["worker"]["code"] = graph["operators"]["worker"]["code"].replace(
            "api.config.name + \".json\"", "api.config.name + str(api.multiplicity_index) + \".json\"")
        path.write_text(yaml.safe_dump(graph))
        result = self.run(path)
        assert result.status == COMPLETED, result.reason
        reports = self.reports(tmp_path)
        assert reports["sender"]["responses"] == [True] * 40
        assert reports["worker0"]["seen"] == list(range(0, 40, 2))
        assert reports["worker1"]["seen"] == list(range(1, 40, 2))


def contract_covers(backend: str) -> None:
    """Fail unless ``backend`` is registered and drives its groups through a transport."""
    engine = get_backend(backend).engine
    assert isinstance(engine, type) and issubclass(engine, RemoteEngine)


__all__ = ["TransportContract", "contract_covers", "pytest"]
