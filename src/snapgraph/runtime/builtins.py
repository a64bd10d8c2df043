"""What the built-in operators do: Graph Terminator V2, Terminal V2, Wiretap V2, and the connectors.

Each built-in is described once, in :mod:`snapgraph.model.builtins` (id, YAML
names, ports, checks); this module holds its behaviour, under the same id. They
are written against the same ``api`` object as user scripts and run on the same
dispatcher machinery; they reach beyond it only through a :class:`BuiltinHost`
(the terminal's output, the terminator ending the run). The connectors'
behaviours live in :mod:`snapgraph.connectors`; here they get what only the
runtime knows (whether snapshots are on, the crash points of ``SNAPGRAPH_FAULTS``),
and a config they cannot run with becomes an invalid operator (exit 2).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from snapgraph.api.operator_api import Api
from snapgraph.api.printing import describe
from snapgraph.api.streams import whole_value
from snapgraph.connectors.base import ConnectorConfigError, ConnectorContext
from snapgraph.connectors.base import Setup as ConnectorSetup
from snapgraph.connectors.registry import BEHAVIOURS as CONNECTORS
from snapgraph.model.builtins import BUILTINS, GRAPH_TERMINATOR, TERMINAL, WIRETAP
from snapgraph.model.graph import Flow, Graph, Process
from snapgraph.model.types import ANY, DYNAMIC, DataTypeReference
from snapgraph.runtime.failures import InvalidOperator
from snapgraph.runtime.host import BuiltinHost
from snapgraph.snapshot.faults import fault_point

BATCH_HEADER = "com.sap.headers.batch"

Setup = Callable[[Process, Api, BuiltinHost], None]


def setup_builtin(process: Process, api: Api, host: BuiltinHost) -> None:
    """Register the callbacks of the built-in operator ``process.component`` on ``api``."""
    BEHAVIOURS[process.component](process, api, host)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _graph_terminator(process: Process, api: Api, host: BuiltinHost) -> None:
    """Ends the run once every input port has received its terminating messages.

    A message terminates when ``onLastBatch`` is false (any message), when it has no
    ``com.sap.headers.batch`` header, or when its batch header's ``isLast`` field (index 1)
    is true. A port waits for one terminating message from each instance that feeds it: the
    processes connected to it, each as many times as it runs (its group's multiplicity with groups as
    processes: a port fed by a reader group of multiplicity 3 ends after the third instance's last
    batch, not the first).
    What is still awaited is the terminator's state, so a recovery neither forgets an end that
    came before its snapshot nor counts a replayed one twice.
    """
    on_last_batch = _truthy(api.config.onLastBatch) if "onLastBatch" in api.config else True
    awaited = {port: max(1, sum(host.instances_of(c.src.process)
                                for c in host.graph.connections_to(process.name, port)))
               for port in process.inports}
    fired: list[bool] = []  # once: messages still arriving while the graph ends change nothing

    def on_message(port: str):  # type: ignore[no-untyped-def]
        def callback(msg_id: bytes, header: Any, body: Any) -> None:
            batch = header.get(BATCH_HEADER) if header is not None else None
            if awaited.get(port, 0) and (not on_last_batch or batch is None or _truthy(list(batch)[1])):
                awaited[port] -= 1
            if not any(awaited.values()) and not fired:
                fired.append(True)
                api.logger.info("all inputs terminated: ending the graph")
                host.terminate(process.name)

        return callback

    def restore(epoch: str, state: bytes) -> None:
        awaited.update(json.loads(state))

    api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))
    api.set_serialize_callback(lambda epoch: json.dumps(awaited).encode())
    api.set_restore_callback(restore)
    for port in process.inports:
        api.set_port_callback(port, on_message(port))


def _render(api: Api, layout: str, header: Any, value: Any, started: float, print_headers: bool) -> str:
    text = describe(value)
    if print_headers and header:
        text = f"{dict(header)} {text}"
    return (
        layout.replace("%d", datetime.now().isoformat(sep=" ", timespec="milliseconds"))
        .replace("%r", str(int((time.monotonic() - started) * 1000)))
        .replace("%g", api.graph_name)
        .replace("%n", "\n")
        .replace("%m", text)
    )


def _terminal(process: Process, api: Api, host: BuiltinHost) -> None:
    """Prints each message on ``in`` to standard output (layout ``%m`` by default)."""
    layout = str(api.config.layout) if "layout" in api.config else "%m"
    started = time.monotonic()

    def on_input(msg_id: bytes, header: Any, body: Any) -> None:
        if _truthy(api.config.disable) if "disable" in api.config else False:
            return
        line = _render(api, layout, header, whole_value(body), started, print_headers=False)
        host.stdout_write(line if line.endswith("\n") else line + "\n")

    api.set_port_callback("in", on_input)


def _wiretap(process: Process, api: Api, host: BuiltinHost) -> None:
    """Prints each message on ``in`` (with its headers) and forwards it on ``out``."""
    layout = str(api.config.layout) if "layout" in api.config else f"[{process.name}] %m"
    started = time.monotonic()

    def on_input(msg_id: bytes, header: Any, body: Any) -> None:
        value = whole_value(body)
        if not (_truthy(api.config.disable) if "disable" in api.config else False):
            line = _render(api, layout, header, value, started, print_headers=True)
            host.stdout_write(line if line.endswith("\n") else line + "\n")
        if api.is_outport_connected["out"]:
            # Forward unchanged: the receiver sees the base type and type id the wiretap got; a value that
            # came untyped (a dict, say, on an any port: type id "*") goes on untyped.
            type_id = body.get_type_id()
            base = ANY if type_id == DYNAMIC else body.get_base_type()
            api.outputs.out.set_dynamic_type(DataTypeReference(base, type_id))
            api.outputs.out.publish(value, header)

    api.set_port_callback("in", on_input)


def _upstream(graph: Graph, name: str) -> tuple[Process, ...]:
    """The processes whose messages can reach process ``name`` (however many hops back), in graph order."""
    flow = Flow(graph)
    reached = flow.reach(name, flow.predecessors)
    return tuple(process for process in graph.processes.values() if process.name in reached)


def _connector(setup: ConnectorSetup) -> Setup:
    """A connector's setup as the runtime calls it: with what only the runtime knows (whether snapshots are
    on; its crash points, ``point:<operator>:nth`` items of ``SNAPGRAPH_FAULTS``; the processes upstream of
    it in the graph), a config it cannot run with turned into an invalid operator (exit 2)."""
    def run(process: Process, api: Api, host: BuiltinHost) -> None:
        context = ConnectorContext(process.name, host.snapshots_on, lambda step: fault_point(step, process.name),
                                   _upstream(host.graph, process.name))
        try:
            setup(api, context)
        except ConnectorConfigError as err:
            raise InvalidOperator(str(err)) from err

    return run


#: component id (model/builtins.py) -> what registers the built-in's callbacks.
BEHAVIOURS: dict[str, Setup] = {
    GRAPH_TERMINATOR.component: _graph_terminator,
    TERMINAL.component: _terminal,
    WIRETAP.component: _wiretap,
    **{component: _connector(setup) for component, setup in CONNECTORS.items()},
}
if set(BEHAVIOURS) != set(BUILTINS):  # pragma: no cover - a descriptor without a behaviour, or the reverse
    raise ImportError(f"built-ins without behaviour or descriptor: {sorted(set(BEHAVIOURS) ^ set(BUILTINS))}")
