"""The built-in Gen2 operators snapgraph provides, assembled from their families: one descriptor each
(:class:`~snapgraph.model.builtin_operator.BuiltinOperator`).

The core three (Graph Terminator, Terminal, Wiretap) are described here; each connector family in a module
of its own (``sql_builtins``, …), added to :data:`BUILTINS` below with one import and one tuple. What a
built-in does at run time is :mod:`snapgraph.runtime.builtins` (the core) and the connectors' registry,
keyed by the same component id (the model imports neither).
"""

from __future__ import annotations

from snapgraph.model.builtin_operator import BuiltinOperator
from snapgraph.model.codec_builtins import CODEC_BUILTINS
from snapgraph.model.delivery import DeliveryTraits
from snapgraph.model.file_builtins import FILE_BUILTINS
from snapgraph.model.nats_builtins import NATS_BUILTINS
from snapgraph.model.sap_database_builtins import SAP_DATABASE_BUILTINS
from snapgraph.model.sql_builtins import SQL_BUILTINS

GRAPH_TERMINATOR = BuiltinOperator(
    "com.sap.util.graphTerminator.v2", "Graph Terminator",
    aliases=("graphTerminator", "terminator"),
    inports=("in",),
    declared_inports_replace_defaults=True,
    unconnected_input_problem=("Graph Terminator input port is not connected, so the graph could never "
                               "terminate (it stops only after every input port received a message)"),
    delivery=DeliveryTraits(deterministic=True),
)
TERMINAL = BuiltinOperator("com.sap.util.terminal.v2", "Terminal", aliases=("terminal",),
                           inports=("in",), outports=("out",), delivery=DeliveryTraits(deterministic=True))
WIRETAP = BuiltinOperator("com.sap.util.wiretap.v2", "Wiretap", aliases=("wiretap",),
                          inports=("in",), outports=("out",), delivery=DeliveryTraits(deterministic=True))

#: component id -> descriptor, for every built-in.
BUILTINS: dict[str, BuiltinOperator] = {
    b.component: b for b in (GRAPH_TERMINATOR, TERMINAL, WIRETAP, *SQL_BUILTINS, *SAP_DATABASE_BUILTINS,
                             *FILE_BUILTINS, *NATS_BUILTINS, *CODEC_BUILTINS)}
BUILTIN_COMPONENTS = tuple(BUILTINS)
#: YAML short name -> component id.
BUILTIN_ALIASES: dict[str, str] = {alias: b.component for b in BUILTINS.values() for alias in b.aliases}

GRAPH_TERMINATOR_V2 = GRAPH_TERMINATOR.component
TERMINAL_V2 = TERMINAL.component
WIRETAP_V2 = WIRETAP.component
