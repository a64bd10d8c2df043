"""The crash / stop / damage campaign of bench/campaign.py, on the real ``snapgraph`` command line.

The campaign runs its engine runs and its fault, signal and kill steps through snapgraph.chaos (the
code of ``snapgraph chaos``, tested in tests/chaos/), so the fixed schedules below exercise that code
on the seed's graphs too. The normal suite checks the harness itself (plans are a function of the seed,
the comparison and a negative control catch what they must), a stop that arrives while the groups start, and a small
fixed set of schedules (below: every kind of step, both graphs, both databases, both modes) whose
steps all must fire. The deterministic crash, stop and damage cases live in
tests/cli/test_cli_stops.py and tests/runtime/test_exactly_once.py. The campaign proper (random
schedules) runs only when asked for:

    SNAPGRAPH_CAMPAIGN=40 .venv/bin/python -m pytest tests/bench/test_campaign.py -k long
    SNAPGRAPH_CAMPAIGN=40 SNAPGRAPH_CAMPAIGN_SEED=7 ...     # another seed

(or directly: ``.venv/bin/python bench/campaign.py --schedules 40 --seed 1``).
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location("bench_campaign", Path(__file__).parents[2] / "bench" / "campaign.py")
campaign = importlib.util.module_from_spec(_SPEC)  # type: ignore[arg-type]
sys.modules["bench_campaign"] = campaign
_SPEC.loader.exec_module(campaign)  # type: ignore[union-attr]

def test_plans_are_a_function_of_the_seed() -> None:
    a = campaign.schedules_for(12, 5, ["sqlite", "postgres"], ["processes", "in-process"], ["wal", "upsert"])
    b = campaign.schedules_for(12, 5, ["sqlite", "postgres"], ["processes", "in-process"], ["wal", "upsert"])
    assert [(s.seed, s.label(), s.rows, [st.label() for st in s.steps]) for s in a] == \
           [(s.seed, s.label(), s.rows, [st.label() for st in s.steps]) for s in b]
    assert {s.label() for s in a} == {f"{d}/{m}/{g}/{d}-store" for d in ("sqlite", "postgres")
                                      for m in ("processes", "in-process") for g in ("wal", "upsert")}
    assert all(st.kind != "kill-group" for s in a if s.mode == "in-process" for st in s.steps)
    assert all(s.steps[0].kind != "damage" for s in a)


def test_the_comparison_sees_duplicated_missing_and_wrong_rows() -> None:
    expected = campaign.expected_rows("wal", 5)
    assert campaign.compare(expected, expected) == {"rows": 5, "expected": 5, "duplicated": 0, "missing": 0,
                                                    "wrong": 0, "foreign_keys": 0}
    damaged = expected[:3] + [expected[0], (4, 0, "row4")]
    got = campaign.compare(damaged, expected)
    assert (got["duplicated"], got["missing"], got["wrong"]) == (1, 2, 1)  # rows 3 and 4 missing


def test_negative_control_a_tampered_target_is_an_anomaly() -> None:
    """The harness does report what it must catch: a row written twice behind the engine's back."""
    schedule = campaign.Schedule(1, "sqlite", "in-process", "wal", 2000, 1000,
                                 [campaign.Step("fault", {"faults": "port_callback:writer:30:raise"})])
    runner = campaign.Runner(schedule)
    original = runner.finish

    def tampered() -> None:
        conn = campaign._db.connect(runner.db.connection)
        conn.execute("INSERT INTO test2 (x, y, z) VALUES (7, 49, 'row7')")
        conn.commit()
        conn.close()
        original()

    runner.finish = tampered  # type: ignore[method-assign]
    result = runner.run()
    shutil.rmtree(result.folder, ignore_errors=True)
    assert any("not exactly once" in a and "'duplicated': 1" in a for a in result.anomalies), result.anomalies


@pytest.mark.timeout(60)
def test_a_stop_while_the_groups_start_ends_promptly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the campaign's early SIGTERM/SIGINT hits by timing, made deterministic: the stop comes right
    after the first group process was started, before the others exist (docs: "A stop while scripts
    are still loading ends the attempt at once")."""
    from snapgraph.model.loader import LoadOptions, load_graph
    from snapgraph.runtime.options import RunOptions
    from snapgraph.runtime.processes import ProcessEngine, ProcessTransport

    db = campaign.TargetDB("sqlite", tmp_path)
    db.setup(500)
    graph = load_graph(campaign.EXAMPLES / "seed_upsert.yaml", LoadOptions(connections_file=db.connections_file))
    engine: list[ProcessEngine] = []
    start = ProcessTransport.start

    def start_then_stop(self, spec):  # type: ignore[no-untyped-def]
        handle = start(self, spec)
        if spec.instance == "source":
            engine[0].stop("SIGTERM received")
        return handle

    monkeypatch.setattr(ProcessTransport, "start", start_then_stop)
    engine.append(ProcessEngine(graph, RunOptions(stdout=io.StringIO())))
    began = time.monotonic()
    result = engine[0].run()
    assert result.status == "stopped"
    assert result.stuck == [], f"operators left busy: {result.stuck}"
    assert time.monotonic() - began < 5


def _step(kind: str, **params: object) -> object:
    return campaign.Step(kind, params)


def _progress(delay: float, **params: object) -> dict[str, object]:
    return {"timing": "progress", "delay": delay, **params}


# Chosen so that every step strikes while the graph runs (faults early in the run, signals and kills
# at a fraction of the rows still to come), and every kind of step and damage occurs at least once.
FIXED = [
    campaign.Schedule(9001, "sqlite", "processes", "wal", 30000, 10000, [
        _step("fault", faults="port_callback:writer:40:kill"),
        _step("signal", **_progress(0.3, signal="SIGTERM", target="group")),
        _step("damage", damage="flip-state", how="newest-epoch", bytes=2, fallback="newest-epoch", salt=11),
        _step("double-signal", **_progress(0.3, signal="SIGINT", target="engine")),
    ]),
    campaign.Schedule(9002, "postgres", "in-process", "upsert", 5000, 2000, [
        _step("sigkill-engine", **_progress(0.4, target="engine")),
        _step("double-signal", **_progress(0.3, signal="SIGTERM", target="group")),
        _step("fault", faults="restore:*:1:raise,port_callback:writer:5:exit"),
        _step("failing-drain", **_progress(0.3, signal="SIGINT", target="engine", retries=False,
                                           fault="drain:writer:1:raise")),
    ]),
    campaign.Schedule(9003, "sqlite", "in-process", "upsert", 10000, 4000, [
        _step("fault", faults="before_complete:*:1:kill"),  # the engine dies: a -wal is left
        _step("damage", damage="garble-wal", how="frames", bytes=3, fallback="any-row", salt=5),
        _step("signal", **_progress(0.2, signal="SIGINT", target="engine")),
        _step("damage", damage="truncate-store", how="tail", bytes=1, fallback="any-row", salt=8),
    ]),
    campaign.Schedule(9004, "postgres", "processes", "wal", 10000, 3000, [
        _step("kill-group", **_progress(0.3, which=1)),
        _step("failing-drain", **_progress(0.3, signal="SIGTERM", target="group", retries=True,
                                           fault="drain:*:1:exit")),
        _step("sigkill-engine", **_progress(0.3, target="group")),
        _step("fault", faults="before_complete:*:1:kill"),
        _step("damage", damage="delete-wal", how="wal+shm", bytes=1, fallback="newest-epoch", salt=3),
    ]),
]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("schedule", FIXED, ids=lambda s: f"{s.seed}-{s.label()}")
def test_fixed_schedules_are_exactly_once_and_every_step_fires(schedule: object) -> None:
    """Every run must be exactly once; a step timed by progress may miss on a loaded machine (the run got
    there first), so the schedule is run again, up to three times, until every step has struck."""
    for _ in range(3):
        result = campaign.run_schedule(schedule)
        text, anomalies = campaign.summarize([result])
        assert anomalies == 0, text
        struck = [st for st in result.steps if st["kind"] != "grow"]
        assert len(struck) == len(schedule.steps)  # type: ignore[attr-defined]
        if all(st.get("fired") for st in struck):
            return
    pytest.fail(f"a step did not strike in three runs: {result.steps}")


def _damage(damage: str, how: str, salt: int, fallback: str = "newest-epoch") -> object:
    return _step("damage", damage=damage, how=how, bytes=2, fallback=fallback, salt=salt)


# The PostgreSQL snapshot store (a schema of its own per schedule): its damage kinds, healed from the
# mirror copy (one copy damaged or lost) or refused with exit 2 and nothing changed (the newest complete
# epoch damaged in both copies), on a PostgreSQL and an SQLite target.
FIXED_PG_STORE = [
    campaign.Schedule(9101, "postgres", "processes", "wal", 8000, 3000, [
        _step("kill-group", **_progress(0.3, which=1)),
        _damage("flip-state", "newest-epoch", 1),
        _damage("flip-both", "newest-epoch", 2),
        _step("fault", faults="before_complete:*:1:kill"),  # the engine dies: a run left running
        _damage("drop-chunk", "any-row", 3),
        _damage("drop-completion-both", "newest-epoch", 4),
        _damage("drop-run-copy", "primary", 5),
    ], store="postgres"),
    campaign.Schedule(9102, "sqlite", "in-process", "upsert", 6000, 2000, [
        _step("sigkill-engine", **_progress(0.4, target="engine")),
        # A graceful stop drains and completes a final epoch, so the damage after it has a completion
        # record to drop whatever the kill before it left.
        _step("signal", **_progress(0.3, signal="SIGINT", target="engine")),
        _damage("drop-completion", "newest-epoch", 6),
        _damage("garble-record", "epochs.checksums", 7),
        _damage("garble-record", "runs.last_epoch", 8),
        _step("fault", faults="port_callback:writer:5:raise"),
        _damage("flip-both", "newest-epoch", 9),
        _damage("drop-run-copy", "mirror", 10),
    ], store="postgres"),
]


def _store_schemas(schema: str) -> int:
    import psycopg

    with psycopg.connect(**campaign.PG, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s",
                            (schema,)).fetchone()[0]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("schedule", FIXED_PG_STORE, ids=lambda s: f"{s.seed}-{s.label()}")
def test_fixed_schedules_with_the_postgres_store(schedule: object) -> None:
    """As the fixed schedules above (run again, up to three times, until every step has struck)."""
    for _ in range(3):
        runner = campaign.Runner(schedule)  # type: ignore[arg-type]
        assert runner.store.location.startswith("postgresql://")
        result = runner.run()
        text, anomalies = campaign.summarize([result])
        assert anomalies == 0, text
        struck = [st for st in result.steps if st["kind"] != "grow"]
        assert len(struck) == len(schedule.steps)  # type: ignore[attr-defined]
        assert _store_schemas(runner.store.schema) == 0  # the schedule's store schema is dropped
        if all(st.get("fired") for st in struck):
            break
    else:
        pytest.fail(f"a step did not strike in three runs: {result.steps}")
    for st in struck:
        if st["kind"] == "damage":
            assert not st["spec"].endswith("(nothing damaged)"), st
            want = {"refused"} if st["damage"] in campaign.MUST_REFUSE else {"healed", "worked"}
            assert st["result"] in want, st


def test_postgres_store_plans_get_row_damage_and_replay_names_the_store() -> None:
    plans = campaign.schedules_for(200, 3, ["postgres"], ["processes"], ["wal"], stores=["postgres"])
    kinds = {st.params["damage"] for s in plans for st in s.steps if st.kind == "damage"}
    assert kinds <= set(campaign.PG_DAMAGES) and len(kinds) >= 5, kinds
    assert all(s.store == "postgres" and "--store-kind postgres" in s.replay() for s in plans)
    auto = campaign.schedules_for(4, 3, ["sqlite", "postgres"], ["processes"], ["wal"])
    assert [s.store for s in auto] == ["sqlite", "postgres", "sqlite", "postgres"]


@pytest.mark.skipif(not os.environ.get("SNAPGRAPH_CAMPAIGN"), reason="the long campaign: set SNAPGRAPH_CAMPAIGN=N")
@pytest.mark.timeout(0)
def test_long_campaign() -> None:
    count = int(os.environ["SNAPGRAPH_CAMPAIGN"])
    seed = int(os.environ.get("SNAPGRAPH_CAMPAIGN_SEED", "1"))
    results = []
    for schedule in campaign.schedules_for(count, seed, ["sqlite", "postgres"], ["processes", "in-process"],
                                           ["wal", "upsert"]):
        result = campaign.run_schedule(schedule)
        print(campaign.schedule_line(len(results) + 1, count, result), flush=True)
        results.append(result)
    text, anomalies = campaign.summarize(results)
    print(text)
    assert anomalies == 0, text
