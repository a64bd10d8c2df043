"""The web monitor's graph layout: every operator placed once, nothing overlapping, edges pointing forward."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from snapgraph.model.graph import Connection, Endpoint, Graph, Group, Port, Process
from snapgraph.model.types import PortType
from snapgraph.monitor.layout import GroupBox, Layout, NodeBox, layout, ranks

SCALAR = PortType("scalar")


def make_graph(edges: list[tuple[int, int]], groups: list[int], ports: int = 1) -> Graph:
    """Operators op0..opN (op_i in group g<groups[i]>), connected op_a.out<k> -> op_b.in<k>."""
    graph = Graph("g", Path("g.yaml"))
    for index, group in enumerate(groups):
        name = f"op{index}"
        graph.processes[name] = Process(
            name, "python", inports={f"in{k}": Port(f"in{k}", SCALAR) for k in range(ports)},
            outports={f"out{k}": Port(f"out{k}", SCALAR) for k in range(ports)}, group=f"g{group}")
        graph.groups.setdefault(f"g{group}", Group(f"g{group}")).nodes.append(name)
    for number, (src, tgt) in enumerate(edges):
        port = number % ports
        graph.connections.append(Connection(Endpoint(f"op{src}", f"out{port}"), Endpoint(f"op{tgt}", f"in{port}")))
    return graph


def overlap(a: NodeBox | GroupBox, b: NodeBox | GroupBox) -> bool:
    return a.x < b.x + b.width and b.x < a.x + a.width and a.y < b.y + b.height and b.y < a.y + a.height


def inside(node: NodeBox, group: GroupBox) -> bool:
    return (group.x <= node.x and node.x + node.width <= group.x + group.width and group.y <= node.y
            and node.y + node.height <= group.y + group.height)


def check_picture(graph: Graph, picture: Layout) -> None:
    assert sorted(node.name for node in picture.nodes) == sorted(graph.processes)
    assert sorted(group.name for group in picture.groups) == sorted({p.group for p in graph.processes.values()})
    for i, a in enumerate(picture.nodes):
        for b in picture.nodes[i + 1:]:
            assert not overlap(a, b), (a, b)
    for i, a in enumerate(picture.groups):
        for b in picture.groups[i + 1:]:
            assert not overlap(a, b), (a, b)
    boxes = {group.name: group for group in picture.groups}
    for node in picture.nodes:
        assert inside(node, boxes[node.group]), node
        assert 0 <= node.x and node.x + node.width <= picture.width
        assert 0 <= node.y and node.y + node.height <= picture.height
        for group in picture.groups:
            assert group.name == node.group or not overlap(node, group)
    assert len(picture.edges) == len(graph.connections)


def test_a_pipeline_across_two_groups_is_laid_out_by_rank() -> None:
    graph = make_graph([(0, 1), (1, 2), (0, 2)], groups=[0, 0, 1])
    picture = layout(graph)
    check_picture(graph, picture)
    nodes = {node.name: node for node in picture.nodes}
    assert [nodes[f"op{i}"].rank for i in range(3)] == [0, 1, 2]  # op0 -> op2 does not pull op2 to rank 1
    assert nodes["op0"].x < nodes["op1"].x < nodes["op2"].x
    for edge in picture.edges:
        (x1, y1), (x2, y2) = edge.points
        source, target = nodes[edge.source], nodes[edge.target]
        assert (x1, x2) == (source.x + source.width, target.x) and not edge.back
        assert source.y < y1 < source.y + source.height and target.y < y2 < target.y + target.height


def test_a_cycle_is_broken_at_one_back_edge() -> None:
    graph = make_graph([(0, 1), (1, 2), (2, 1), (2, 3)], groups=[0, 0, 0, 0])
    picture = layout(graph)
    check_picture(graph, picture)
    rank = ranks(graph)
    assert [edge.back for edge in picture.edges] == [False, False, True, False]
    assert all(rank[e.source] < rank[e.target] for e in picture.edges if not e.back)


def test_ports_get_anchors_on_their_side_in_order() -> None:
    graph = make_graph([(0, 1), (0, 1), (0, 1)], groups=[0, 1], ports=3)
    nodes = {node.name: node for node in layout(graph).nodes}
    inputs = nodes["op1"].inputs
    assert [p.name for p in inputs] == ["in0", "in1", "in2"] and inputs[0].y < inputs[1].y < inputs[2].y
    assert all(p.x == nodes["op0"].x + nodes["op0"].width for p in nodes["op0"].outputs)


@st.composite
def dags(draw: st.DrawFn) -> Graph:
    size = draw(st.integers(1, 12))
    groups = draw(st.lists(st.integers(0, 3), min_size=size, max_size=size))
    pairs = st.tuples(st.integers(0, size - 1), st.integers(0, size - 1)).filter(lambda p: p[0] < p[1])
    edges = draw(st.lists(pairs, max_size=20)) if size > 1 else []
    return make_graph(edges, groups)


@settings(max_examples=60, deadline=None)
@given(dags())
def test_any_acyclic_graph_has_every_node_placed_without_overlaps_and_edges_forward(graph: Graph) -> None:
    picture = layout(graph)
    check_picture(graph, picture)
    nodes = {node.name: node for node in picture.nodes}
    for edge in picture.edges:
        assert not edge.back and nodes[edge.source].rank < nodes[edge.target].rank
        assert edge.points[0][0] < edge.points[1][0]
