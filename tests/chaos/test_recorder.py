"""--compare-sinks: the taped copy of a graph, the taps' records under a replay, and reading them by kind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from snapgraph.chaos.recorder import Recording, Tap, describe_difference, effect, read_recording, taped_copy, taps_for
from snapgraph.model.delivery import WriterKind
from snapgraph.model.loader import LoadOptions, load_graph
from tests.chaos.graphs import write_sql_copy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _load(path: Path, connections: Path | None = None):  # type: ignore[no-untyped-def]
    return load_graph(path, LoadOptions(connections_file=connections or EXAMPLES / "connections-sqlite.yaml"))


def test_one_tap_per_connected_input_of_every_writer(tmp_path: Path) -> None:
    assert taps_for(_load(EXAMPLES / "seed_upsert.yaml")) == [
        Tap("chaos_tap_writer_input", "writer", "input", WriterKind.IDEMPOTENT, ("processing.output",))]
    (tmp_path / "graph.yaml").write_text(yaml.safe_dump({
        "name": "fan-in",
        "operators": {
            "a": {"code": "pass", "outputs": {"out": "any"}},
            "b": {"code": "pass", "outputs": {"out": "any"}},
            "sink": {"code": "pass", "inputs": {"left": "any", "right": "any", "spare": "any", "unused": "any"}},
            "tee": {"code": "pass", "inputs": {"in": "any"}, "outputs": {"out": "any"}},
        },
        "connections": ["a.out -> sink.left", "b.out -> sink.left", "b.out -> sink.right", "a.out -> tee.in",
                        "tee.out -> sink.spare"]}))
    taps = taps_for(_load(tmp_path / "graph.yaml"))
    assert [(t.label, t.kind, t.sources) for t in taps] == [
        ("sink.left", WriterKind.PLAIN, ("a.out", "b.out")), ("sink.right", WriterKind.PLAIN, ("b.out",)),
        ("sink.spare", WriterKind.PLAIN, ("tee.out",))]  # not 'unused' (unconnected), not 'tee' (no writer)


def test_a_graph_without_writers_has_no_taps(tmp_path: Path) -> None:
    (tmp_path / "graph.yaml").write_text(yaml.safe_dump({
        "name": "quiet", "operators": {"a": {"code": "pass", "outputs": {"out": "any"}},
                                       "t": {"component": "com.sap.util.terminal.v2"}},
        "connections": ["a.out -> t.in"]}))
    assert taps_for(_load(tmp_path / "graph.yaml")) == []


def test_the_copy_sits_beside_the_graph_and_leaves_it_untouched(tmp_path: Path) -> None:
    copy = write_sql_copy(tmp_path / "user")
    before = {p.name: p.read_bytes() for p in copy.folder.iterdir()}
    graph = _load(copy.graph, copy.connections)
    records = tmp_path / "records-root"
    records.mkdir()
    taped = taped_copy(copy.graph, taps_for(graph), records)
    try:
        assert taped.parent == copy.folder and taped.name.startswith(".graph.chaos-") and taped.suffix == ".yaml"
        assert {p.name: p.read_bytes() for p in copy.folder.iterdir() if p != taped} == before
        data = yaml.safe_load(taped.read_text())
        tap = data["operators"]["chaos_tap_writer_input"]
        assert tap["group"] == "sink" and tap["delivery"] == {"writer": "none", "deterministic": True}
        assert tap["config"]["folder"] == str(records / "records" / "chaos_tap_writer_input")
        assert data["connections"][-1] == "pace.output -> chaos_tap_writer_input.input"
        loaded = _load(taped, copy.connections)  # a valid graph, scripts resolved beside the original
        assert set(loaded.processes) == {"reader", "pace", "writer", "chaos_tap_writer_input"}
    finally:
        taped.unlink()


def test_the_tap_commits_completed_epochs_and_logs_every_delivery(tmp_path: Path) -> None:
    """A crash of the plain writer after a restore point: the replay is delivered again (deliveries), the
    completed epochs hold every message once, in order — the failure-free run's messages."""
    copy = write_sql_copy(tmp_path / "user", rows=1500)
    graph = _load(copy.graph, copy.connections)
    taps = taps_for(graph)

    def run(name: str, faults: str | None) -> Recording:
        folder = tmp_path / name
        folder.mkdir()
        taped = taped_copy(copy.graph, taps, folder)
        subprocess.run(copy.setup, shell=True, cwd=copy.folder, check=True)
        env = {"SNAPGRAPH_FAULTS": faults} if faults else {}
        done = subprocess.run([sys.executable, "-m", "snapgraph", "run", str(taped), "-c", str(copy.connections),
                               "--store", str(folder / "store.db"), "--max-retries", "3", "--retry-interval", "0"],
                              cwd=copy.folder, capture_output=True, text=True,
                              env={**os.environ, **env}, timeout=120)
        taped.unlink()
        assert done.returncode == 0, done.stderr
        if faults:
            assert "injected fault" in done.stderr and "attempt 1 failed" in done.stderr
        return read_recording(folder / "records" / taps[0].name)

    reference = run("reference", None)
    assert len(reference.deliveries) == 150 and reference.committed == reference.deliveries
    crashed = run("crashed", "port_callback:writer:120:raise")  # past the first epoch: a restore, a replay
    assert crashed.committed == reference.committed
    assert len(crashed.deliveries) > 150 and set(crashed.deliveries) == set(reference.deliveries)
    assert effect(crashed, WriterKind.TRANSACTIONAL) == effect(reference, WriterKind.TRANSACTIONAL)
    assert effect(crashed, WriterKind.IDEMPOTENT) == effect(reference, WriterKind.IDEMPOTENT)
    assert effect(crashed, WriterKind.PLAIN) != effect(reference, WriterKind.PLAIN)
    assert "delivered again after a replay" in describe_difference(effect(reference, WriterKind.PLAIN),
                                                                   effect(crashed, WriterKind.PLAIN))


def test_effect_and_differences_by_kind() -> None:
    recording = Recording(deliveries=("a 1", "b 2", "a 1", "c 3"), committed=("b 2", "a 1", "c 3"))
    assert effect(recording, WriterKind.TRANSACTIONAL) == ("b 2", "a 1", "c 3")
    assert effect(recording, None) == ("b 2", "a 1", "c 3")
    assert effect(recording, WriterKind.IDEMPOTENT) == ("a 1", "b 2", "c 3")
    assert effect(recording, WriterKind.PLAIN) == ("a 1", "a 1", "b 2", "c 3")
    assert describe_difference(("a 1", "b 2"), ("b 2", "a 1")) == \
        "the same 2 messages in another order (from message 1)"
    assert describe_difference(("a 1", "b 2", "c 3"), ("a 1", "a 1", "d 4")) == (
        "2 messages (5 rows) more than the failure-free run, 1 of them delivered again after a replay; "
        "2 messages (5 rows) missing")


def test_an_empty_record_folder_reads_as_nothing(tmp_path: Path) -> None:
    assert read_recording(tmp_path) == Recording((), ())
