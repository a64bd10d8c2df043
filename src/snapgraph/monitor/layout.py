"""A layered (Sugiyama-style) picture of a graph, for the web monitor.

The monitor draws the graph from this layout, so it needs no layout engine in the browser and no
external tool (Graphviz) on the machine. Steps:

1. **Ranks**: cycles are broken by ignoring the edges a depth-first search finds going back; every
   operator then gets the length of the longest path reaching it (sources are rank 0), so every
   other edge points to a higher rank (drawn left to right).
2. **Lanes**: each group gets a horizontal lane of its own (groups ordered by their mean rank), so the
   box drawn around a group's operators never overlaps another group's box or operators.
3. **Order**: inside a lane, the operators of one rank are stacked and ordered by the mean position of
   their predecessors (the barycenter heuristic, a few sweeps), which keeps most edges short and
   uncrossed.

Sizes are in SVG user units; a node is tall enough for the rows of its ports.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from snapgraph.model.graph import Graph

NODE_WIDTH = 180.0
PORT_ROW = 18.0  # height of one port's row
NODE_HEADER = 30.0  # the operator's name above its ports
COLUMN_GAP = 110.0  # between two ranks: room for the edge labels
ROW_GAP = 24.0  # between two nodes of one rank
LANE_PADDING = 22.0  # between a group's box and its nodes (the group's name sits in the top padding)
LANE_GAP = 26.0
ORDER_SWEEPS = 4


@dataclass(frozen=True)
class PortAnchor:
    name: str
    x: float
    y: float


@dataclass(frozen=True)
class NodeBox:
    name: str
    group: str
    rank: int
    x: float
    y: float
    width: float
    height: float
    inputs: list[PortAnchor]
    outputs: list[PortAnchor]


@dataclass(frozen=True)
class EdgePath:
    """One connection, from an output port's anchor to an input port's anchor."""

    source: str
    source_port: str
    target: str
    target_port: str
    points: list[tuple[float, float]]
    back: bool  # closes a cycle: drawn from right to left


@dataclass(frozen=True)
class GroupBox:
    name: str
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Layout:
    width: float
    height: float
    nodes: list[NodeBox]
    edges: list[EdgePath]
    groups: list[GroupBox]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def back_edges(graph: Graph) -> set[tuple[str, str]]:
    """The (source, target) operator pairs a depth-first search meets going back (cycle closers)."""
    successors: dict[str, list[str]] = defaultdict(list)
    for connection in graph.connections:
        successors[connection.src.process].append(connection.tgt.process)
    visiting, done, back = set(), set(), set()
    for start in graph.processes:
        if start in done:
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        visiting.add(start)
        while stack:
            node, index = stack[-1]
            if index < len(successors[node]):
                stack[-1] = (node, index + 1)
                child = successors[node][index]
                if child in visiting:
                    back.add((node, child))
                elif child not in done:
                    visiting.add(child)
                    stack.append((child, 0))
            else:
                stack.pop()
                visiting.discard(node)
                done.add(node)
    return back


def ranks(graph: Graph) -> dict[str, int]:
    """The longest-path rank of every operator, cycles broken by :func:`back_edges`."""
    back = back_edges(graph)
    forward: dict[str, set[str]] = defaultdict(set)
    indegree = dict.fromkeys(graph.processes, 0)
    for connection in graph.connections:
        pair = (connection.src.process, connection.tgt.process)
        if pair in back or pair[1] in forward[pair[0]] or pair[0] == pair[1]:
            continue
        forward[pair[0]].add(pair[1])
        indegree[pair[1]] += 1
    rank = dict.fromkeys(graph.processes, 0)
    ready = [name for name, count in indegree.items() if count == 0]
    while ready:
        node = ready.pop()
        for child in forward[node]:
            rank[child] = max(rank[child], rank[node] + 1)
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    return rank


def _node_height(graph: Graph, name: str) -> float:
    process = graph.processes[name]
    return NODE_HEADER + PORT_ROW * max(1, len(process.inports), len(process.outports))


def layout(graph: Graph) -> Layout:
    """Place every operator, group and connection of ``graph`` (see the module docstring)."""
    rank = ranks(graph)
    predecessors: dict[str, list[str]] = defaultdict(list)
    for connection in graph.connections:
        predecessors[connection.tgt.process].append(connection.src.process)
    members: dict[str, list[str]] = defaultdict(list)
    for name, process in graph.processes.items():
        members[process.group].append(name)
    lanes = sorted(members, key=lambda group: (sum(rank[n] for n in members[group]) / len(members[group]), group))

    # Order each (lane, rank) stack by the barycenter of the predecessors' positions.
    stacks: dict[tuple[str, int], list[str]] = defaultdict(list)
    for group in lanes:
        for name in members[group]:
            stacks[(group, rank[name])].append(name)
    position: dict[str, float] = {}

    def number() -> None:
        offset = 0.0
        for group in lanes:
            size = max(len(stack) for (lane, _), stack in stacks.items() if lane == group)
            for (lane, _), stack in stacks.items():
                if lane == group:
                    for index, name in enumerate(stack):
                        position[name] = offset + index
            offset += size

    number()
    for _ in range(ORDER_SWEEPS):
        for stack in stacks.values():
            stack.sort(key=lambda name: _barycenter(predecessors[name], position, position[name]))
        number()

    nodes: dict[str, NodeBox] = {}
    groups: list[GroupBox] = []
    top = 0.0
    max_rank = max(rank.values(), default=0)
    for group in lanes:
        lane_stacks = {r: stack for (lane, r), stack in stacks.items() if lane == group}
        lane_height = max(sum(_node_height(graph, n) for n in stack) + ROW_GAP * (len(stack) - 1)
                          for stack in lane_stacks.values())
        for r, stack in lane_stacks.items():
            y = top + LANE_PADDING
            for name in stack:
                height = _node_height(graph, name)
                x = LANE_PADDING + r * (NODE_WIDTH + COLUMN_GAP)
                process = graph.processes[name]
                nodes[name] = NodeBox(
                    name, group, r, x, y, NODE_WIDTH, height,
                    [PortAnchor(port, x, y + NODE_HEADER + PORT_ROW * (i + 0.5))
                     for i, port in enumerate(process.inports)],
                    [PortAnchor(port, x + NODE_WIDTH, y + NODE_HEADER + PORT_ROW * (i + 0.5))
                     for i, port in enumerate(process.outports)])
                y += height + ROW_GAP
        first = min(nodes[n].x for n in members[group])
        last = max(nodes[n].x for n in members[group]) + NODE_WIDTH
        groups.append(GroupBox(group, first - LANE_PADDING, top, last - first + 2 * LANE_PADDING,
                               lane_height + 2 * LANE_PADDING))
        top += lane_height + 2 * LANE_PADDING + LANE_GAP

    back = back_edges(graph)
    edges = []
    for connection in graph.connections:
        source, target = nodes[connection.src.process], nodes[connection.tgt.process]
        start = next((p for p in source.outputs if p.name == connection.src.port), None)
        end = next((p for p in target.inputs if p.name == connection.tgt.port), None)
        start_point = (start.x, start.y) if start else (source.x + source.width, source.y + source.height / 2)
        end_point = (end.x, end.y) if end else (target.x, target.y + target.height / 2)
        pair = (connection.src.process, connection.tgt.process)
        edges.append(EdgePath(connection.src.process, connection.src.port, connection.tgt.process,
                              connection.tgt.port, [start_point, end_point], pair in back or pair[0] == pair[1]))
    width = 2 * LANE_PADDING + (max_rank + 1) * NODE_WIDTH + max_rank * COLUMN_GAP
    return Layout(width, max(0.0, top - LANE_GAP), list(nodes.values()), edges, groups)


def _barycenter(neighbours: list[str], position: dict[str, float], default: float) -> float:
    placed = [position[n] for n in neighbours if n in position]
    return sum(placed) / len(placed) if placed else default


__all__ = ["EdgePath", "GroupBox", "Layout", "NodeBox", "PortAnchor", "back_edges", "layout", "ranks"]
