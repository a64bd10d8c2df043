"""The built-in Gen2 operators snapgraph provides: one descriptor each.

A descriptor says everything the model needs to know of a built-in: its
component id, the short names a YAML graph may use for it, its default ports
(all *any*), whether the ports a graph declares replace the default inputs, and
whether an unconnected input is a problem. What it does at run time is
:mod:`snapgraph.runtime.builtins`, keyed by the same component id (the model
does not import the runtime).

To add a built-in: a descriptor here and its behaviour there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuiltinOperator:
    component: str  # the Gen2 component id
    title: str  # how messages name it
    aliases: tuple[str, ...] = ()  # short names for ``component:`` in YAML graphs
    inports: tuple[str, ...] = ()  # default input ports (type any)
    outports: tuple[str, ...] = ()  # default output ports (type any)
    # The input ports a graph declares replace the default ones (the terminator has one per upstream).
    declared_inports_replace_defaults: bool = False
    # Why an unconnected input port is a problem (None: it is not).
    unconnected_input_problem: str | None = None


GRAPH_TERMINATOR = BuiltinOperator(
    "com.sap.util.graphTerminator.v2", "Graph Terminator",
    aliases=("graphTerminator", "terminator"),
    inports=("in",),
    declared_inports_replace_defaults=True,
    unconnected_input_problem=("Graph Terminator input port is not connected, so the graph could never "
                               "terminate (it stops only after every input port received a message)"),
)
TERMINAL = BuiltinOperator("com.sap.util.terminal.v2", "Terminal", aliases=("terminal",),
                           inports=("in",), outports=("out",))
WIRETAP = BuiltinOperator("com.sap.util.wiretap.v2", "Wiretap", aliases=("wiretap",),
                          inports=("in",), outports=("out",))

#: component id -> descriptor, for every built-in.
BUILTINS: dict[str, BuiltinOperator] = {b.component: b for b in (GRAPH_TERMINATOR, TERMINAL, WIRETAP)}
BUILTIN_COMPONENTS = tuple(BUILTINS)
#: YAML short name -> component id.
BUILTIN_ALIASES: dict[str, str] = {alias: b.component for b in BUILTINS.values() for alias in b.aliases}

GRAPH_TERMINATOR_V2 = GRAPH_TERMINATOR.component
TERMINAL_V2 = TERMINAL.component
WIRETAP_V2 = WIRETAP.component
