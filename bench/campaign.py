"""A seeded crash / stop / damage campaign against the real ``snapgraph`` command line.

    .venv/bin/python bench/campaign.py --schedules 40 --seed 1 --db both --mode both --graph both
    .venv/bin/python bench/campaign.py --replay 10007 --db sqlite --mode processes --graph wal \
        --store-kind sqlite   # one schedule

One *schedule* is a seed turned into a list of steps, run on one of the seed's example graphs
(examples/seed_wal.yaml, examples/seed_upsert.yaml), one database (SQLite, or PostgreSQL in a
schema of its own) and one engine mode (groups as OS processes, or ``--in-process``), in a
temporary folder with its own ``--store``: an SQLite file in that folder, or (``--store-kind
postgres``) a PostgreSQL store ``postgresql://postgres@127.0.0.1:5432/test?schema=sgcs_...`` in a
schema of its own, dropped when the schedule ends (kept only for inspection by ``--keep`` /
``--replay`` when something went wrong). ``--store-kind auto`` (the default) gives a schedule the
store of its target's kind, so a mixed ``--db both`` run covers both stores; ``both`` runs every
combination with each. The first step starts a run, every later one continues
it with ``--resume``. Step kinds:

* ``fault``: SNAPGRAPH_FAULTS set to one or two random faults (``point:process:nth:action``) and
  ``--max-retries 5 --retry-interval 0``;
* ``sigkill-engine``: SIGKILL to the engine (or to its whole process group) after a random delay;
* ``signal``: SIGINT or SIGTERM to the engine or to its process group: exit 0, run ``stopped``
  (or ``completed`` when the graph finished first);
* ``double-signal``: two signals 50 ms apart: exit 130 / 143 (or 0 when the stop was done first);
* ``failing-drain``: a signal while a fault is planned at the ``drain`` step (raise, exit or kill), with
  or without retries: exit 0 ``stopped`` with retries left, 1 ``failed`` without, 137 when the fault
  ends the engine — resumable every time;
* ``kill-group``: SIGKILL to one group process (groups as processes only), recovered in the run;
* ``damage``: between two runs, one copy of a state blob flipped, the store file truncated, or
  its ``-wal`` file deleted or garbled; then a plain ``--resume`` must either work exactly once, or
  refuse with exit 2 and change nothing (target table and the store's contents). After a refusal
  the store is put back as it was before the damage, and the schedule goes on. A PostgreSQL store
  gets row damage instead (:data:`PG_DAMAGES`; the rules of snapshot/store/base.py are the same for
  every backend): one copy damaged or lost (``flip-state`` a bit of a ``bytea`` state chunk,
  ``drop-chunk``, ``drop-completion``, ``drop-run-copy``, ``garble-record`` a field of a run or
  completion record behind its checksum) must be healed from the mirror or not be needed, never
  refused; the newest complete epoch damaged in both copies (``flip-both`` the same state chunk,
  ``drop-completion-both``) must be refused with exit 2 and nothing changed (the store's rows and
  their row versions, the target).

When the previous run completed and more steps follow, new rows are appended to the source first
(a savepoint resume then has work to do). After the last step the run is resumed until it
completes, and the target table is compared with the failure-free result: zero duplicated, zero
missing, zero wrong rows (and for the WAL graph an empty WAL table). After every engine run no
process of its session may be left. Every step records whether what it injected really happened
(the fault fired, the signal landed before the graph finished); anomalies are listed at the end
with a one-line reproduction each, and make the exit code 1.

The plan of a schedule is a pure function of (seed, db, mode, graph, scale); where a signal lands
depends on timing, so a replay reruns the same plan, not necessarily the same interleaving.

The campaign is ``snapgraph chaos`` (src/snapgraph/chaos/) with the seed's graphs and more: its engine
runs are :class:`snapgraph.chaos.engine.EngineRun` s, and its fault, signal, double-signal,
sigkill-engine and kill-group steps are carried out and judged by :func:`snapgraph.chaos.steps.perform`,
the same code as the command's; what only the campaign does is here: the plans with store damage and
failing drains, growing the source between runs, the strike timing by the writer's progress, the
PostgreSQL store, and the comparison with the seed's expected rows.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import hashlib
import importlib.util
import itertools
import json
import random
import re
import shutil
import signal
import sqlite3
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from snapgraph.chaos.engine import LEFTOVER_GRACE, EngineResult, EngineRun, collect_left_behind, tail
from snapgraph.chaos.schedules import Step as ChaosStep
from snapgraph.chaos.steps import StepOutcome, judge_engine, perform

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
GRAPHS = {"wal": "seed_wal.yaml", "upsert": "seed_upsert.yaml"}
TARGET_TABLE = {"wal": "test2", "upsert": "target"}
OPERATORS = {"wal": ["generator", "writer"], "upsert": ["generator", "processing", "writer"]}
STATEFUL = {"wal": ["generator", "writer"], "upsert": ["generator"]}
WITH_INPUTS = {"wal": ["writer"], "upsert": ["processing", "writer"]}
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}
KINDS = ("fault", "sigkill-engine", "signal", "double-signal", "failing-drain", "kill-group", "damage")

# Source rows per (graph, db) at scale 1: a failure-free run lasts about 1-3 s on 2 cores.
ROWS = {("wal", "sqlite"): (20000, 40000), ("upsert", "sqlite"): (6000, 12000),
        ("wal", "postgres"): (6000, 14000), ("upsert", "postgres"): (3000, 6000)}


def _load_example(name: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"campaign_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


_seed_setup = _load_example("seed_setup")  # puts examples/ on sys.path for `db`
_db = _load_example("db")


# ---------------------------------------------------------------------------------------------
# the plan


@dataclasses.dataclass(frozen=True)
class Step(ChaosStep):
    """A step of snapgraph chaos's kinds (carried out by snapgraph.chaos.steps) or one of the campaign's
    own (``failing-drain``, ``damage``); signals and kills strike at ``early`` or ``progress`` timing."""

    def label(self) -> str:
        p = self.params
        if self.kind == "fault":
            return f"fault({p['faults']})"
        if self.kind in ("signal", "double-signal"):
            return f"{self.kind}({p['signal']}->{p['target']},{_when(p)})"
        if self.kind == "failing-drain":
            retries = "retries" if p["retries"] else "no-retries"
            return f"failing-drain({p['signal']}->{p['target']},{_when(p)},{p['fault']},{retries})"
        if self.kind == "sigkill-engine":
            return f"sigkill-engine({p['target']},{_when(p)})"
        if self.kind == "kill-group":
            return f"kill-group(#{p['which']},{_when(p)})"
        if self.kind == "damage":
            return f"damage({p['damage']}:{p['how']})"
        return self.kind


@dataclasses.dataclass
class Schedule:
    seed: int
    db: str
    mode: str
    graph: str
    rows: int
    grow: int  # rows appended before a step when the previous run had completed
    steps: list[Step]
    scale: float = 1.0
    store: str = "sqlite"  # the snapshot store: an SQLite file, or a PostgreSQL schema of its own

    def label(self) -> str:
        return f"{self.db}/{self.mode}/{self.graph}/{self.store}-store"

    def replay(self) -> str:
        scale = f" --scale {self.scale:g}" if self.scale != 1.0 else ""
        return (f"python bench/campaign.py --replay {self.seed} --db {self.db} --mode {self.mode} "
                f"--graph {self.graph} --store-kind {self.store}{scale}")


def _when(p: dict[str, Any]) -> str:
    if p["timing"] == "early":
        return f"early+{p['delay']:.2f}s"
    return f"progress@{p['delay']:.2f}"


def random_fault(rng: random.Random, graph: str, first: bool) -> str:
    """One ``point:process:nth:action`` item; nearly always one that can fire in this graph."""
    points = ["port_callback", "before_serialize", "after_serialize", "after_persist", "before_complete",
              "epoch_complete"]
    if not first:
        points.append("restore")  # a later step resumes from an epoch: restore runs at its start
    if graph == "wal":
        points.append("between_write_and_wal")
    point = rng.choice(points)
    if rng.random() < 0.08:  # now and then any operator, as the brief allows: it may never fire
        process = rng.choice([*OPERATORS[graph], "*"])
    elif point in ("port_callback",):
        process = rng.choice([*WITH_INPUTS[graph], "*"])
    elif point in ("before_serialize", "after_serialize", "restore"):
        process = rng.choice([*STATEFUL[graph], "*"])
    elif point in ("before_complete", "between_write_and_wal"):
        process = "*"  # the coordinator's step / a script's fault_point: counted for '*' only
    else:
        process = rng.choice([*OPERATORS[graph], "*"])
    if point in ("port_callback", "between_write_and_wal"):
        nth = rng.randint(1, 300)
    elif point == "restore":
        nth = 1
    else:
        nth = rng.randint(1, 2)
    action = rng.choices(["raise", "exit", "kill"], weights=[50, 25, 25])[0]
    return f"{point}:{process}:{nth}:{action}"


def make_schedule(seed: int, db: str, mode: str, graph: str, scale: float = 1.0,
                  store: str = "sqlite") -> Schedule:
    """The plan of one schedule: a pure function of its arguments.

    ``store`` only changes the damage steps (and what follows them): an SQLite store file gets the
    file kinds (flip-state, truncate-store, delete-wal, garble-wal), a PostgreSQL store the row kinds
    of :data:`PG_DAMAGES`.
    """
    rng = random.Random(f"snapgraph-campaign:{seed}:{db}:{mode}:{graph}")
    low, high = ROWS[(graph, db)]
    rows = max(200, int(rng.randint(low, high) * scale) // 100 * 100)  # whole WAL messages of 100 rows
    grow = max(100, rows // 2 // 100 * 100)
    kinds = {"fault": 34, "sigkill-engine": 12, "signal": 20, "double-signal": 10, "failing-drain": 8,
             "damage": 14}
    if mode == "processes":
        kinds["kill-group"] = 10
    steps: list[Step] = []
    for i in range(rng.randint(1, 4)):
        kind = rng.choices(list(kinds), weights=list(kinds.values()))[0]
        if kind == "damage" and i == 0:
            kind = "sigkill-engine"  # damage needs a store: first something that leaves one behind
        delay = round(rng.uniform(0.0, 0.95), 3)  # a fraction of the run's remaining time
        if kind == "fault":
            faults = [random_fault(rng, graph, i == 0) for _ in range(1 if rng.random() < 0.7 else 2)]
            steps.append(Step(kind, {"faults": ",".join(faults)}))
        elif kind in ("signal", "double-signal"):
            early = rng.random() < 0.15  # from the engine's start, not from the writer's first rows
            steps.append(Step(kind, {"signal": rng.choice(["SIGINT", "SIGTERM"]),
                                     "target": rng.choice(["engine", "group"]),
                                     "timing": "early" if early else "progress",
                                     "delay": round(rng.uniform(0.05, 0.6), 3) if early else delay}))
        elif kind == "failing-drain":
            action = rng.choices(["raise", "exit", "kill"], weights=[60, 20, 20])[0]
            steps.append(Step(kind, {"signal": rng.choice(["SIGINT", "SIGTERM"]),
                                     "target": rng.choice(["engine", "group"]), "timing": "progress",
                                     "delay": delay, "retries": rng.random() < 0.5,
                                     "fault": f"drain:{rng.choice([*OPERATORS[graph], '*'])}:1:{action}"}))
        elif kind == "sigkill-engine":
            steps.append(Step(kind, {"target": "engine" if rng.random() < 0.7 else "group", "delay": delay,
                                     "timing": "progress"}))
        elif kind == "kill-group":
            steps.append(Step(kind, {"which": rng.randint(0, 5), "delay": delay, "timing": "progress"}))
        elif store == "postgres":
            damage = rng.choices(list(PG_DAMAGES), weights=list(PG_DAMAGES.values()))[0]
            how = {"flip-state": lambda: rng.choice(["newest-epoch", "any-row"]),
                   "drop-chunk": lambda: rng.choice(["newest-epoch", "any-row"]),
                   "drop-completion": lambda: rng.choice(["newest-epoch", "any-row"]),
                   "drop-run-copy": lambda: rng.choice(["primary", "mirror"]),
                   "garble-record": lambda: rng.choice(["runs.status", "runs.attempts", "runs.last_epoch",
                                                        "runs.updated", "runs.run_id", "epochs.checksums",
                                                        "epochs.digest", "epochs.completed", "epochs.epoch"]),
                   "flip-both": lambda: "newest-epoch",
                   "drop-completion-both": lambda: "newest-epoch"}[damage]()
            if how == "any-row" and rng.random() < 0.4:
                # states of an epoch that never completed are left only by an engine that died between
                # saving them and completing the epoch: kill one there, so any-row may hit them
                point = rng.choice(["after_persist:generator", f"after_persist:{rng.choice(STATEFUL[graph])}",
                                    "before_complete:*"])
                steps.append(Step("fault", {"faults": f"{point}:1:kill"}))
            steps.append(Step("damage", {"damage": damage, "how": how, "bytes": rng.randint(1, 4),
                                         "fallback": rng.choice(["newest-epoch", "any-row"]),
                                         "salt": rng.randint(0, 2**31)}))
        else:
            damage = rng.choices(["flip-state", "truncate-store", "delete-wal", "garble-wal"],
                                 weights=[35, 25, 20, 20])[0]
            how = {"flip-state": lambda: rng.choice(["newest-epoch", "any-row"]),
                   "truncate-store": lambda: rng.choice(["empty", "header", "pages", "tail"]),
                   "delete-wal": lambda: rng.choice(["wal", "wal+shm"]),
                   "garble-wal": lambda: rng.choice(["header", "frames", "truncate", "zero"])}[damage]()
            if damage.endswith("-wal") and rng.random() < 0.85:
                # A -wal file with something in it is left only by an engine that died between saving
                # states and completing their epoch (every durable write empties it): kill one there.
                point = rng.choice(["after_persist:generator", f"after_persist:{rng.choice(STATEFUL[graph])}",
                                    "before_complete:*"])
                steps.append(Step("fault", {"faults": f"{point}:1:kill"}))
            steps.append(Step("damage", {"damage": damage, "how": how, "bytes": rng.randint(1, 4),
                                         "fallback": rng.choice(["newest-epoch", "any-row"]),
                                         "salt": rng.randint(0, 2**31)}))
    return Schedule(seed, db, mode, graph, rows, grow, steps, scale, store)


# ---------------------------------------------------------------------------------------------
# the database the graph writes into


class TargetDB:
    """The examples' database for one schedule: a SQLite file, or a PostgreSQL schema of its own."""

    def __init__(self, kind: str, folder: Path) -> None:
        self.kind = kind
        if kind == "sqlite":
            self.path = folder / "data" / "demo.db"
            self.connection = {"connectionType": "SQLITE", "connectionProperties": {"path": str(self.path)}}
        else:
            import psycopg

            self.schema = f"sgc_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(**PG, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {self.schema}")
            self.connection = {"connectionType": "POSTGRES", "connectionProperties": {
                "host": PG["host"], "port": PG["port"], "user": PG["user"], "password": "",
                "database": PG["dbname"], "schema": self.schema}}
        self.connections_file = folder / "connections.yaml"
        self.connections_file.write_text(yaml.safe_dump({"DEMO_DB": self.connection}))

    def setup(self, rows: int) -> None:
        _seed_setup.setup_tables(self.connection, rows)

    def append(self, start: int, end: int) -> None:
        """More source rows, as the seed's setup makes them (an append-only source)."""
        conn = _db.connect(self.connection)
        try:
            conn.cursor().executemany(_db.sql(conn, "INSERT INTO test (x, y, z) VALUES (?, ?, ?)"),
                                      [(i, i * 7 % 1000, f"row{i}") for i in range(start, end)])
            conn.commit()
        finally:
            conn.close()

    def query(self, statement: str) -> list[tuple]:  # type: ignore[type-arg]
        conn = _db.connect(self.connection)
        try:
            cur = conn.cursor()
            cur.execute(statement)
            return [tuple(r) for r in cur.fetchall()]
        finally:
            conn.close()

    def rows(self, table: str, columns: str = "x, y, z") -> list[tuple]:  # type: ignore[type-arg]
        return self.query(f"SELECT {columns} FROM {table} ORDER BY {columns}")

    def count(self, table: str) -> int:
        try:
            return int(self.query(f"SELECT count(*) FROM {table}")[0][0])
        except Exception:  # noqa: BLE001 - a busy database while polling: try again
            return -1

    def drop(self) -> None:
        if self.kind == "postgres":
            import psycopg

            with psycopg.connect(**PG, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


def expected_rows(graph: str, n: int) -> list[tuple]:  # type: ignore[type-arg]
    if graph == "upsert":
        return [(i, (i * 7 % 1000) * 2, f"ROW{i}") for i in range(n)]
    return [(i, i * 7 % 1000, f"row{i}") for i in range(n)]


def compare(actual: list[tuple], expected: list[tuple]) -> dict[str, int]:  # type: ignore[type-arg]
    """Duplicated, missing and wrong rows of ``actual`` against ``expected`` (a set of distinct rows)."""
    have = collections.Counter(actual)
    want = set(expected)
    expected_keys = {row[0] for row in expected}
    duplicated = sum(n - 1 for row, n in have.items() if n > 1)
    missing = sum(1 for row in want if row not in have)
    wrong = sum(n for row, n in have.items() if row not in want)
    return {"rows": len(actual), "expected": len(want), "duplicated": duplicated, "missing": missing,
            "wrong": wrong, "foreign_keys": sum(1 for row in have if row[0] not in expected_keys)}


# ---------------------------------------------------------------------------------------------
# the store, read from a copy (opening the real file would checkpoint and delete its -wal)

STORE_TABLES = ("meta", "runs", "runs_mirror", "states", "states_mirror", "epochs", "epochs_mirror")


@contextlib.contextmanager
def store_copy(store: Path):  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory(prefix="sgc-store-") as tmp:
        copy = Path(tmp) / store.name
        for suffix in ("", "-wal"):
            src = Path(f"{store}{suffix}")
            if src.exists():
                shutil.copyfile(src, f"{copy}{suffix}")
        yield copy


def store_runs(store: Path) -> list[dict[str, Any]] | None:
    """The run records (main table) of a store, newest last; None if it cannot be read."""
    if not store.exists():
        return None
    with store_copy(store) as copy:
        try:
            con = sqlite3.connect(copy)
            try:
                rows = con.execute("SELECT run_id, status, last_epoch, attempts, created FROM runs "
                                   "ORDER BY created, run_id").fetchall()
            finally:
                con.close()
        except sqlite3.DatabaseError:
            return None
    return [dict(zip(("run_id", "status", "last_epoch", "attempts", "created"), r)) for r in rows]


def store_contents(store: Path) -> str | None:
    """A digest of everything in the store except the leases; None if it cannot be read."""
    if not store.exists():
        return "absent"
    with store_copy(store) as copy:
        try:
            con = sqlite3.connect(copy)
            try:
                digest = hashlib.sha256()
                for table in STORE_TABLES:
                    for row in sorted(con.execute(f"SELECT * FROM {table}").fetchall(), key=repr):
                        digest.update(repr(row).encode())
                    digest.update(b"|")
                return digest.hexdigest()
            finally:
                con.close()
        except sqlite3.DatabaseError:
            return None


def file_digest(store: Path) -> str:
    """The bytes of the store file and its -wal (an empty -wal counts as none: SQLite deletes it)."""
    parts = []
    for suffix in ("", "-wal"):
        path = Path(f"{store}{suffix}")
        data = path.read_bytes() if path.exists() else b""
        parts.append(hashlib.sha256(data).hexdigest() if data or not suffix else "-")
    return ":".join(parts)


def backup_store(store: Path, where: Path) -> None:
    where.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        src = Path(f"{store}{suffix}")
        dst = where / f"{store.name}{suffix}"
        dst.unlink(missing_ok=True)
        if src.exists():
            shutil.copyfile(src, dst)


def restore_store(store: Path, where: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store}{suffix}").unlink(missing_ok=True)
        src = where / f"{store.name}{suffix}"
        if src.exists() and suffix != "-shm":  # the shared-memory index is rebuilt from the -wal
            shutil.copyfile(src, f"{store}{suffix}")


def apply_damage(store: Path, params: dict[str, Any]) -> str:
    """Damage the store as planned (the engine is not running); a description of what was done."""
    rng = random.Random(params["salt"])
    damage, how = params["damage"], params["how"]
    wal = Path(f"{store}-wal")
    if damage.endswith("-wal") and (not wal.exists() or wal.stat().st_size == 0):
        damage, how = "flip-state", params["fallback"]
        prefix = "no -wal to damage: "
    else:
        prefix = ""
    if damage == "flip-state":
        con = sqlite3.connect(store)
        try:
            table = rng.choice(["states", "states_mirror"])
            candidates = con.execute(f"SELECT rowid, run_id, epoch, process, length(data) FROM {table} "
                                     "ORDER BY run_id, epoch, process").fetchall()
            if how == "newest-epoch":
                newest = con.execute("SELECT last_epoch FROM runs ORDER BY created DESC LIMIT 1").fetchone()
                chosen = [c for c in candidates if newest and c[2] == newest[0]]
                candidates = chosen or candidates
            candidates = [c for c in candidates if c[4] > 0]
            if not candidates:
                return prefix + f"flip-state: no state row in {table} (nothing damaged)"
            rowid, run_id, epoch, process, size = rng.choice(candidates)
            data = bytearray(con.execute(f"SELECT data FROM {table} WHERE rowid = ?", (rowid,)).fetchone()[0])
            positions = sorted(rng.sample(range(size), min(size, params["bytes"])))
            for pos in positions:
                data[pos] ^= 1 << rng.randrange(8)
            con.execute(f"UPDATE {table} SET data = ? WHERE rowid = ?", (bytes(data), rowid))
            con.commit()
        finally:
            con.close()
        return prefix + f"flip-state: {table} {epoch} {process} bytes {positions} of {size}"
    if damage == "truncate-store":
        size = store.stat().st_size
        if how == "empty":
            new = 0
        elif how == "header":
            new = 100
        elif how == "pages":
            pages = size // 4096
            new = 4096 * rng.randint(1, max(1, pages - 1))
        else:
            new = max(0, size - rng.randint(1, min(size, 3 * 4096)))
        with open(store, "r+b") as f:
            f.truncate(new)
        return f"truncate-store: {size} -> {new} bytes ({how})"
    if damage == "delete-wal":
        size = wal.stat().st_size
        wal.unlink()
        if how == "wal+shm":
            Path(f"{store}-shm").unlink(missing_ok=True)
        return f"delete-wal: removed {size} bytes of -wal" + (" and the -shm" if how == "wal+shm" else "")
    # garble-wal
    data = bytearray(wal.read_bytes())
    size = len(data)
    if how == "header":
        for i in range(min(32, size)):
            data[i] = rng.randrange(256)
    elif how == "frames":
        for _ in range(params["bytes"] * 8):
            pos = rng.randrange(min(32, size), size) if size > 32 else rng.randrange(size)
            data[pos] ^= 1 << rng.randrange(8)
    elif how == "truncate":
        data = data[:rng.randrange(size)]
    else:
        start = rng.randrange(size)
        end = min(size, start + rng.randint(1, 8192))
        data[start:end] = bytes(end - start)
    wal.write_bytes(bytes(data))
    return f"garble-wal: {how} ({size} -> {len(data)} bytes)"


# ---------------------------------------------------------------------------------------------
# the PostgreSQL store (--store postgresql://...?schema=NAME), read and damaged through psycopg

PG_STORE_TABLES = ("meta", "leases", "runs", "runs_mirror", "states", "states_mirror", "epochs", "epochs_mirror")
# Damage of the PG store and what a plain --resume must do after it (base.py's rules, the same for
# every backend): one damaged or lost copy is healed from its mirror (or not needed): never refused;
# the newest complete epoch's state or completion record damaged in both copies: refused (exit 2).
PG_DAMAGES = {"flip-state": 26, "drop-chunk": 10, "drop-completion": 14, "drop-run-copy": 10,
              "garble-record": 14, "flip-both": 14, "drop-completion-both": 12}
RECOVERABLE = {"flip-state", "delete-wal", "garble-wal", "drop-chunk", "drop-completion", "drop-run-copy",
               "garble-record"}
MUST_REFUSE = {"flip-both", "drop-completion-both"}
ALL_DAMAGES = {"truncate-store", *RECOVERABLE, *MUST_REFUSE}


def damage_kind(what: str) -> str:
    """The kind of damage really done, from apply_damage's description (it may have fallen back)."""
    for token in re.findall(r"([a-z][a-z-]*):", what):
        if token in ALL_DAMAGES:
            return token
    return what.split(":")[0]


def _pg_connect() -> Any:
    import psycopg

    return psycopg.connect(**PG, autocommit=True, connect_timeout=10)


def _pg_store_exists(conn: Any, schema: str) -> bool:
    return conn.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s",
                        (schema,)).fetchone() is not None


def _pg_table_rows(conn: Any, schema: str, table: str, *, versions: bool = False) -> list[tuple]:  # type: ignore[type-arg]
    extra = "xmin::text AS xmin_, " if versions else ""
    return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)
            for row in conn.execute(f"SELECT {extra}* FROM {schema}.{table}").fetchall()]


def pg_store_runs(schema: str) -> list[dict[str, Any]] | None:
    """The run records (main table) of a PG store, newest last; None if it cannot be read."""
    try:
        with _pg_connect() as conn:
            if not _pg_store_exists(conn, schema):
                return None
            rows = conn.execute(f"SELECT run_id, status, last_epoch, attempts, created FROM {schema}.runs "
                                "ORDER BY created, run_id").fetchall()
    except Exception:  # noqa: BLE001 - a table dropped or garbled: unreadable, as for SQLite
        return None
    return [dict(zip(("run_id", "status", "last_epoch", "attempts", "created"), r)) for r in rows]


def pg_store_digest(schema: str, *, versions: bool) -> str | None:
    """A digest of the PG store: ``versions=False`` everything except the leases (its contents),
    ``versions=True`` every table with each row's xmin (any write, even of equal values, changes it:
    the PG equivalent of the SQLite file's bytes). "absent" without the schema, None if unreadable."""
    try:
        with _pg_connect() as conn:
            if not _pg_store_exists(conn, schema):
                return "absent"
            digest = hashlib.sha256()
            for table in PG_STORE_TABLES:
                if table == "leases" and not versions:
                    continue
                for row in sorted(_pg_table_rows(conn, schema, table, versions=versions), key=repr):
                    digest.update(repr(row).encode())
                digest.update(b"|")
            return digest.hexdigest()
    except Exception:  # noqa: BLE001
        return None


def _pg_newest(conn: Any, schema: str) -> tuple[str, str | None] | None:
    return conn.execute(f"SELECT run_id, last_epoch FROM {schema}.runs ORDER BY created DESC, run_id DESC "
                        "LIMIT 1").fetchone()


def apply_pg_damage(schema: str, params: dict[str, Any]) -> str:
    """Damage the PG store as planned (the engine is not running); a description of what was done.

    Falls back to a one-copy flip-state when what is planned has nothing to hit (no complete epoch
    for the both-copies kinds); the description then names what was really done.
    """
    rng = random.Random(params["salt"])
    damage, how = params["damage"], params["how"]
    with _pg_connect() as conn:
        newest = _pg_newest(conn, schema)
        prefix = ""
        if damage in MUST_REFUSE and (newest is None or newest[1] is None):
            damage, how, prefix = "flip-state", params["fallback"], "no complete epoch to damage in both copies: "

        def pick_epoch(rows: list[tuple], epoch_at: int, how_: str) -> list[tuple]:  # type: ignore[type-arg]
            if how_ == "newest-epoch" and newest is not None:
                chosen = [r for r in rows if r[0] == newest[0] and r[epoch_at] == newest[1]]
                return chosen or rows
            return rows

        if damage in ("flip-state", "drop-chunk", "flip-both"):
            tables = ["states", "states_mirror"] if damage == "flip-both" else [rng.choice(["states", "states_mirror"])]
            rows = conn.execute(f"SELECT run_id, epoch, process, chunk, length(data) FROM {schema}.{tables[0]} "
                                "ORDER BY run_id, epoch, process, chunk").fetchall()
            rows = pick_epoch(rows, 1, "newest-epoch" if damage == "flip-both" else how)
            if damage == "flip-both":
                rows = [r for r in rows if newest is not None and r[0] == newest[0] and r[1] == newest[1]]
            rows = [r for r in rows if r[4] > 0]
            if not rows:
                return prefix + f"{damage}: no state chunk in {tables[0]} (nothing damaged)"
            run_id, epoch, process, chunk, size = rng.choice(rows)
            key = "run_id = %s AND epoch = %s AND process = %s AND chunk = %s"
            if damage == "drop-chunk":
                conn.execute(f"DELETE FROM {schema}.{tables[0]} WHERE {key}", (run_id, epoch, process, chunk))
                return prefix + f"drop-chunk: {tables[0]} {epoch} {process} chunk {chunk} ({size} bytes) deleted"
            positions = sorted(rng.sample(range(size), min(size, params["bytes"])))
            bits = [1 << rng.randrange(8) for _ in positions]
            done = []
            with conn.transaction():
                for table in tables:
                    found = conn.execute(f"SELECT data FROM {schema}.{table} WHERE {key}",
                                         (run_id, epoch, process, chunk)).fetchone()
                    if found is None:
                        continue
                    data = bytearray(found[0])
                    for pos, bit in zip(positions, bits):
                        if pos < len(data):
                            data[pos] ^= bit
                    conn.execute(f"UPDATE {schema}.{table} SET data = %s WHERE {key}",
                                 (bytes(data), run_id, epoch, process, chunk))
                    done.append(table)
            return prefix + f"{damage}: {'+'.join(done)} {epoch} {process} chunk {chunk} bytes {positions} of {size}"
        if damage in ("drop-completion", "drop-completion-both"):
            tables = (["epochs", "epochs_mirror"] if damage == "drop-completion-both"
                      else [rng.choice(["epochs", "epochs_mirror"])])
            rows = conn.execute(f"SELECT run_id, epoch FROM {schema}.{tables[0]} ORDER BY run_id, epoch").fetchall()
            rows = pick_epoch(rows, 1, "newest-epoch" if damage == "drop-completion-both" else how)
            if damage == "drop-completion-both":
                rows = [r for r in rows if newest is not None and tuple(r) == tuple(newest)]
            if not rows:
                return prefix + f"{damage}: no completion record in {tables[0]} (nothing damaged)"
            run_id, epoch = rng.choice(rows)
            with conn.transaction():
                for table in tables:
                    conn.execute(f"DELETE FROM {schema}.{table} WHERE run_id = %s AND epoch = %s", (run_id, epoch))
            return prefix + f"{damage}: {'+'.join(tables)} record of epoch {epoch} deleted"
        if damage == "drop-run-copy":
            table = "runs" if how == "primary" else "runs_mirror"
            if newest is None:
                return prefix + "drop-run-copy: no run record (nothing damaged)"
            conn.execute(f"DELETE FROM {schema}.{table} WHERE run_id = %s", (newest[0],))
            return prefix + f"drop-run-copy: {table} record of run {newest[0]} deleted"
        # garble-record: one field of one copy of the newest run record or of a completion record
        # changed behind its checksum (the key too: "its key may be garbled", base.py)
        target, column = how.split(".")
        table = rng.choice([target, f"{target}_mirror"])
        key_columns = "run_id" if target == "runs" else "run_id, epoch"
        rows = conn.execute(f"SELECT {key_columns} FROM {schema}.{table} ORDER BY {key_columns}").fetchall()
        if target == "epochs":
            rows = pick_epoch(rows, 1, params["fallback"])
        elif newest is not None:
            rows = [r for r in rows if r[0] == newest[0]] or rows
        if not rows:
            return prefix + f"garble-record: no row in {table} (nothing damaged)"
        key = rng.choice(rows)
        where = " AND ".join(f"{c.strip()} = %s" for c in key_columns.split(","))
        value = conn.execute(f"SELECT {column} FROM {schema}.{table} WHERE {where}", key).fetchone()[0]
        if isinstance(value, str) and value:
            chars = list(value)
            pos = rng.randrange(len(chars))
            chars[pos] = chr(ord(chars[pos]) ^ 1)
            new: Any = "".join(chars)
        elif isinstance(value, (int, float)):
            new = value + 1
        else:
            new = "garbled"
        conn.execute(f"UPDATE {schema}.{table} SET {column} = %s WHERE {where}", (new, *key))
        return prefix + f"garble-record: {table}.{column} of {'/'.join(map(str, key))}: {value!r} -> {new!r}"


class SQLiteStoreFile:
    """The schedule's store as the default SQLite file."""

    kind = "sqlite"
    what = "the store file"

    def __init__(self, folder: Path) -> None:
        self.path = folder / "store.db"
        self.location = str(self.path)

    def exists(self) -> bool:
        return self.path.exists()

    def runs(self) -> list[dict[str, Any]] | None:
        return store_runs(self.path)

    def contents(self) -> str | None:
        return store_contents(self.path)

    def raw_digest(self) -> str:
        return file_digest(self.path)

    def backup(self, where: Path) -> None:
        backup_store(self.path, where)

    def restore(self, where: Path) -> None:
        restore_store(self.path, where)

    def damage(self, params: dict[str, Any]) -> str:
        return apply_damage(self.path, params)

    def drop(self) -> None:
        pass


class PostgresStoreSchema:
    """The schedule's store in a PostgreSQL schema of its own (snapgraph creates it on first use)."""

    kind = "postgres"
    what = "the store schema (row versions)"

    def __init__(self) -> None:
        self.schema = f"sgcs_{uuid.uuid4().hex[:10]}"
        self.location = (f"postgresql://{PG['user']}@{PG['host']}:{PG['port']}/{PG['dbname']}"
                         f"?schema={self.schema}")
        self._backup: dict[str, tuple[list[str], list[tuple]]] | None = None  # type: ignore[type-arg]

    def exists(self) -> bool:
        with _pg_connect() as conn:
            return _pg_store_exists(conn, self.schema)

    def runs(self) -> list[dict[str, Any]] | None:
        return pg_store_runs(self.schema)

    def contents(self) -> str | None:
        return pg_store_digest(self.schema, versions=False)

    def raw_digest(self) -> str:
        return str(pg_store_digest(self.schema, versions=True))

    def backup(self, where: Path) -> None:  # noqa: ARG002 - kept in memory
        with _pg_connect() as conn:
            saved = {}
            for table in PG_STORE_TABLES:
                cur = conn.execute(f"SELECT * FROM {self.schema}.{table}")
                columns = [d.name for d in cur.description]
                saved[table] = (columns, [tuple(r) for r in cur.fetchall()])
        self._backup = saved

    def restore(self, where: Path) -> None:  # noqa: ARG002
        assert self._backup is not None
        with _pg_connect() as conn, conn.transaction():
            for table, (columns, rows) in self._backup.items():
                conn.execute(f"DELETE FROM {self.schema}.{table}")
                if rows:
                    marks = ", ".join(["%s"] * len(columns))
                    with conn.cursor() as cur:
                        cur.executemany(f"INSERT INTO {self.schema}.{table} ({', '.join(columns)}) "
                                        f"VALUES ({marks})", rows)

    def damage(self, params: dict[str, Any]) -> str:
        return apply_pg_damage(self.schema, params)

    def drop(self) -> None:
        with _pg_connect() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")


def make_store(kind: str, folder: Path) -> SQLiteStoreFile | PostgresStoreSchema:
    return PostgresStoreSchema() if kind == "postgres" else SQLiteStoreFile(folder)


# ---------------------------------------------------------------------------------------------
# running one schedule: engine runs, and the fault, signal and kill steps, through snapgraph.chaos


@dataclasses.dataclass
class ScheduleResult:
    schedule: Schedule
    outcome: str = "ok"
    anomalies: list[str] = dataclasses.field(default_factory=list)
    steps: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # one per step: what happened
    runs: int = 0
    seconds: float = 0.0
    folder: str = ""
    comparison: dict[str, int] | None = None
    busy_at_exit: int = 0  # runs that ended with "operators still busy after stop"
    kept_store: str = ""  # a PostgreSQL store kept for inspection (--keep / --replay with anomalies)

    @property
    def fired(self) -> int:
        return sum(1 for s in self.steps if s.get("fired"))


class Runner:
    """Runs one schedule in a temporary folder of its own.

    It is the :class:`snapgraph.chaos.steps.StepContext` of its steps: ``fault``, ``signal``,
    ``double-signal``, ``sigkill-engine`` and ``kill-group`` are carried out and judged by
    :func:`snapgraph.chaos.steps.perform`, as ``snapgraph chaos`` does them; the campaign adds its own
    strike timing (the writer's progress in the target table), the store damage, the failing drain and
    the comparison of the target with the seed's expected rows.
    """

    def __init__(self, schedule: Schedule, *, keep: bool = False, log: Any = None) -> None:
        self.s = schedule
        self.keep = keep
        self.log = log or (lambda text: None)
        self.folder = Path(tempfile.mkdtemp(prefix=f"sgcamp-{schedule.seed}-"))
        self.store = make_store(schedule.store, self.folder)
        self.result = ScheduleResult(schedule, folder=str(self.folder))
        self.sessions: set[int] = set()
        self.source_rows = schedule.rows
        self.started = False  # a run exists in the store
        self.unprocessed = False  # rows were appended after the last run that completed
        self.last_status: str | None = None
        self.db: TargetDB | None = None
        self.in_process = schedule.mode == "in-process"
        self._index: int | str = 0  # the step being carried out (names its stderr file)

    # -- helpers ------------------------------------------------------------------------------
    def anomaly(self, step: int | str, text: str) -> None:
        self.result.anomalies.append(f"step {step}: {text}")
        self.log(f"    ANOMALY step {step}: {text}")

    @property
    def target(self) -> str:
        return TARGET_TABLE[self.s.graph]

    def args(self, *, resume: bool, retries: bool | None) -> list[str]:
        """``retries``: True 5 retries, False none, None the graph file's (3 in both examples)."""
        args = [sys.executable, "-m", "snapgraph", "run", str(EXAMPLES / GRAPHS[self.s.graph]),
                "--connections", str(self.db.connections_file), "--store", self.store.location,  # type: ignore[union-attr]
                "--snapshot-period", "1"]
        if self.in_process:
            args.append("--in-process")
        if resume:
            args.append("--resume")
        if retries is not None:
            args += ["--max-retries", "5" if retries else "0", "--retry-interval", "0"]
        return args

    def start(self, label: str, *, faults: str | None = None, retries: bool | None = None,
              resume: bool | None = None) -> EngineRun:
        """An engine run of the schedule (StepContext): ``resume`` None: ``--resume`` once a run exists."""
        resume = self.started if resume is None else resume
        err = self.folder / f"run{self.result.runs:02d}-step{self._index}.err"
        run = EngineRun(label, self.args(resume=resume, retries=retries), cwd=self.folder, folder=self.folder,
                        stderr_path=err, stdout_path=self.folder / "stdout.log", faults=faults).start()
        self.sessions.add(run.pid)
        self.result.runs += 1
        return run

    def wait(self, index: int | str, run: EngineRun) -> EngineResult:
        """The end of an engine run this campaign carries out itself (damage, failing drain, final resume),
        held to the rules of every engine run (snapgraph.chaos.steps.judge_engine)."""
        result = run.wait()
        outcome = StepOutcome(result.label, result.label, engine=result)
        judge_engine(result, outcome)
        for text in outcome.anomalies:
            self.anomaly(index, text)
        self.count_busy(result)
        return result

    def count_busy(self, result: EngineResult) -> None:
        if "operators still busy after stop" in result.stderr:
            # A stop while scripts still load leaves the loading ones behind on purpose (docs: the
            # attempt ends at once); counted, and an anomaly only when the stop was also slow.
            self.result.busy_at_exit += 1

    def check_leftovers(self, index: int | str) -> None:
        left = collect_left_behind(self.sessions, self.folder)
        if left:
            self.anomaly(index, f"processes left behind {LEFTOVER_GRACE:.0f}s after the engine ended: {left}")

    def wait_to_strike(self, run: EngineRun, params: dict[str, Any]) -> bool:
        """When to strike (StepContext); False if the engine ended first.

        ``early``: ``delay`` seconds after the engine started. ``progress``: once the writer has
        written something new, ``delay`` (0..1) of the time the rest of the rows should take at the
        rate just measured.
        """
        delay = float(params["delay"])
        if params["timing"] == "progress":
            baseline = self.db.count(self.target)  # type: ignore[union-attr]
            deadline = time.monotonic() + 60
            count = baseline
            while run.running() and time.monotonic() < deadline:
                count = self.db.count(self.target)  # type: ignore[union-attr]
                if count > baseline >= 0:
                    break
                time.sleep(0.02)
            t1 = time.monotonic()
            time.sleep(0.1)
            c2 = self.db.count(self.target)  # type: ignore[union-attr]
            rate = (c2 - count) / max(1e-3, time.monotonic() - t1)
            remaining = max(0, self.source_rows - c2)
            delay = delay * (min(5.0, remaining / rate) if rate > 0 else 1.0)
        return run.sleep_while_running(delay)

    def status(self) -> str | None:
        runs = self.store.runs()
        return runs[-1]["status"] if runs else None

    def run_count(self) -> int:
        runs = self.store.runs()
        return len(runs) if runs else 0

    # -- steps --------------------------------------------------------------------------------
    def grow_if_completed(self, index: int) -> None:
        """The previous run completed: append source rows, so the next step's ``--resume`` (a savepoint)
        has work to do, continuing from the generator's saved offset with just those rows."""
        if not (self.started and self.last_status == "completed"):
            return
        start, end = self.source_rows, self.source_rows + self.s.grow
        self.db.append(start, end)  # type: ignore[union-attr]
        self.source_rows = end
        self.unprocessed = True
        self.result.steps.append({"kind": "grow", "note": f"appended source rows {start}..{end - 1}"})
        self.log(f"    grow: source rows {start}..{end - 1} appended (the previous run had completed)")

    def run_chaos_step(self, index: int, step: Step) -> dict[str, Any]:
        """A fault, signal, double-signal, sigkill-engine or kill-group step, as snapgraph chaos does it."""
        outcome = perform(self, step)
        for text in outcome.anomalies:
            self.anomaly(index, text)
        if outcome.engine is not None:
            self.count_busy(outcome.engine)
            if outcome.status == "completed" and outcome.engine.returncode == 0:
                self.unprocessed = False
        return outcome.as_info()

    def run_failing_drain(self, index: int, step: Step) -> dict[str, Any]:
        """A stop whose drain fails (the fault point ``drain``): a failure of the attempt like any other.

        Retries left: the stop wins (exit 0, ``stopped``). None left: exit 1, ``failed``. An ``exit``
        in one process or a ``kill`` ends the engine (137, the run unfinished). Resumable in every case.
        """
        p = step.params
        signum = getattr(signal, p["signal"])
        run = self.start(step.label(), faults=p["fault"], retries=p["retries"])
        if self.wait_to_strike(run, p):
            run.send(signum, whole_group=p["target"] == "group")
        rec = self.wait(index, run)
        sent = rec.sent
        code = rec.returncode
        info: dict[str, Any] = {"kind": step.kind, "spec": step.label(), "rc": code, "sent": len(sent)}
        info["fired"] = "injected fault" in rec.stderr and "at drain" in rec.stderr
        if not info["fired"]:
            info["finished_before"] = not sent or "completed after" in rec.stderr
            if code == 0 and "completed after" in rec.stderr:
                self.expect_status(index, "completed", rec)
            elif code == 0 and "stopped after" in rec.stderr:
                self.expect_status(index, "stopped", rec)  # stopped while loading: no drain to fail
            else:
                self.anomaly(index, f"{step.label()}: the drain fault did not fire, yet exit {code}: "
                                    f"{tail(rec.stderr)}")
            return info
        engine_dies = p["fault"].endswith(":kill") or (p["fault"].endswith(":exit") and self.s.mode == "in-process")
        if engine_dies:
            info["result"] = "engine-died"
            if code != 137:
                self.anomaly(index, f"{step.label()}: exit {code} (expected 137): {tail(rec.stderr)}")
            self.expect_status(index, "running", rec)
        elif p["retries"]:
            info["result"] = "stopped"
            if code != 0 or "the attempt failed while stopping" not in rec.stderr:
                self.anomaly(index, f"{step.label()}: exit {code} (expected 0, 'the attempt failed while "
                                    f"stopping'): {tail(rec.stderr)}")
            self.expect_status(index, "stopped", rec)
        else:
            info["result"] = "failed"
            if code != 1:
                self.anomaly(index, f"{step.label()}: exit {code} (expected 1 failed): {tail(rec.stderr)}")
            self.expect_status(index, "failed", rec)
        return info

    def run_damage(self, index: int, step: Step) -> dict[str, Any]:
        backup = self.folder / "before-damage"
        self.store.backup(backup)
        before_rows = self.db.rows(self.target)  # type: ignore[union-attr]
        before_contents = self.store.contents()
        what = self.store.damage(step.params)
        self.log(f"    damage: {what}")
        damaged_contents = self.store.contents()
        damaged_bytes = self.store.raw_digest()
        rec = self.wait(index, self.start(f"damage({what})", resume=True))
        info: dict[str, Any] = {"kind": "damage", "spec": what, "rc": rec.returncode, "fired": True}
        kind = damage_kind(what)  # what was really done
        nothing = what.endswith("(nothing damaged)")
        info["damage"] = kind
        if rec.returncode == 0 and "completed after" in rec.stderr:
            info["result"] = "healed" if "healed" in rec.stderr else "worked"
            if kind in MUST_REFUSE and not nothing:
                self.anomaly(index, f"after {what}, --resume completed although the newest complete epoch is "
                                    f"damaged in both copies (base.py rule 2: refuse with exit 2, never guess): "
                                    f"{tail(rec.stderr)}")
            self.expect_status(index, "completed", rec)
            cmp = compare(self.db.rows(self.target), expected_rows(self.s.graph, self.source_rows))  # type: ignore[union-attr]
            if cmp["duplicated"] or cmp["missing"] or cmp["wrong"]:
                self.anomaly(index, f"after {what}, --resume completed but not exactly once: {cmp}")
        elif rec.returncode == 2:
            info["result"] = "refused"
            after_rows = self.db.rows(self.target)  # type: ignore[union-attr]
            if after_rows != before_rows:
                self.anomaly(index, f"after {what}, --resume refused (exit 2) but the target table changed "
                                    f"({len(before_rows)} -> {len(after_rows)} rows)")
            after_contents = self.store.contents()
            after_bytes = self.store.raw_digest()
            if after_contents != damaged_contents or (after_contents is None and after_bytes != damaged_bytes):
                self.anomaly(index, f"after {what}, --resume refused (exit 2) but changed the store's contents")
            elif after_bytes != damaged_bytes:
                info["bytes_changed_on_refusal"] = True
                self.anomaly(index, f"after {what}, --resume refused (exit 2) but wrote into {self.store.what} "
                                    f"(it changed, its contents as read did not): {tail(rec.stderr)}")
            if kind in RECOVERABLE and not nothing:
                self.anomaly(index, f"after {what}, --resume refused although the damage is recoverable "
                                    f"(docs: one damaged copy is healed from its mirror / a lost -wal only loses "
                                    f"an incomplete epoch): {tail(rec.stderr)}")
            if before_contents is None:
                info["note"] = "the store could not be read before the damage"
            self.store.restore(backup)
            info["restored_backup"] = True
        else:
            expected = "2 refused" if kind in MUST_REFUSE and not nothing else "0 completed or 2 refused"
            self.anomaly(index, f"after {what}, --resume exit {rec.returncode} (expected {expected}): "
                                f"{tail(rec.stderr)}")
            self.store.restore(backup)
            info["restored_backup"] = True
        return info

    def expect_status(self, index: int | str, expected: str, rec: EngineResult) -> None:
        status = self.status()
        self.last_status = status
        if status == "completed" and rec.returncode == 0:
            self.unprocessed = False
        if status != expected:
            self.anomaly(index, f"{rec.label}: exit {rec.returncode} but the store says the run is {status!r} "
                                f"(expected {expected!r}): {tail(rec.stderr)}")

    # -- the whole schedule ---------------------------------------------------------------------
    def run(self) -> ScheduleResult:
        began = time.monotonic()
        try:
            self.db = TargetDB(self.s.db, self.folder)
            self.db.setup(self.s.rows)
            for index, step in enumerate(self.s.steps):
                if step.kind != "damage":  # a damage step resumes the damaged run as it is
                    self.grow_if_completed(index)
                handler = {"failing-drain": self.run_failing_drain,
                           "damage": self.run_damage}.get(step.kind, self.run_chaos_step)
                if step.kind == "damage" and not self.store.exists():
                    self.result.steps.append({"kind": "damage", "spec": "no store yet", "fired": False})
                    continue
                self._index = index
                info = handler(index, step)
                self.started = self.started or self.run_count() > 0
                self.last_status = self.status()
                self.result.steps.append(info)
                self.log(f"    step {index} {step.label()}: {info}")
            self.finish()
        except Exception as exc:  # noqa: BLE001 - the harness itself failed: an anomaly to look at
            import traceback

            self.anomaly("harness", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        finally:
            self.result.seconds = time.monotonic() - began
            self.check_leftovers("end")
            if self.result.anomalies and self.keep and self.store.kind == "postgres":
                self.result.kept_store = self.store.location
                self.log(f"    store kept for inspection: {self.store.location}")
            else:  # a PG store schema goes in every other case, failures of the harness included
                try:
                    self.store.drop()
                except Exception as exc:  # noqa: BLE001
                    self.anomaly("cleanup", f"could not drop the store {self.store.location}: {exc}")
            if self.result.anomalies:
                self.result.outcome = "ANOMALY"
            if self.db is not None and (not self.result.anomalies or not self.keep):
                with contextlib.suppress(Exception):
                    if not self.result.anomalies:
                        self.db.drop()
            if not self.result.anomalies and not self.keep:
                shutil.rmtree(self.folder, ignore_errors=True)
        return self.result

    def finish(self) -> None:
        """Resume until the run completes, then compare the target with the failure-free result."""
        for attempt in range(4):
            if self.last_status == "completed" and self.started and not self.unprocessed:
                break
            self._index = "final"
            rec = self.wait("final", self.start("final resume", resume=self.started))
            if rec.returncode == 0 and "completed after" in rec.stderr:
                self.started = True
                self.expect_status("final", "completed", rec)
                self.unprocessed = False
                break
            self.anomaly("final", f"--resume #{attempt + 1} exit {rec.returncode}: {tail(rec.stderr)}")
            self.started = self.started or self.run_count() > 0
            self.last_status = self.status()
        else:
            self.anomaly("final", "the run never completed")
        cmp = compare(self.db.rows(self.target), expected_rows(self.s.graph, self.source_rows))  # type: ignore[union-attr]
        self.result.comparison = cmp
        if cmp["duplicated"] or cmp["missing"] or cmp["wrong"] or cmp["rows"] != cmp["expected"]:
            self.anomaly("final", f"target {self.target} is not exactly once: {cmp}")
        if self.s.graph == "wal":
            left = self.db.count("WAL")  # type: ignore[union-attr]
            if left:
                self.anomaly("final", f"the WAL table still holds {left} rows after the run completed")


def run_schedule(schedule: Schedule, *, keep: bool = False, log: Any = None) -> ScheduleResult:
    return Runner(schedule, keep=keep, log=log).run()


def resolve_store(kind: str, db: str) -> str:
    """``auto``: the store of the target's kind (a PostgreSQL target gets a PostgreSQL store)."""
    return db if kind == "auto" else kind


def schedules_for(count: int, seed: int, dbs: list[str], modes: list[str], graphs: list[str],
                  scale: float = 1.0, stores: list[str] | None = None) -> list[Schedule]:
    """``count`` schedules cycling through every (db, mode, graph, store) combination (``stores``:
    kinds of snapshot store, ``auto`` the target's kind; default ``["auto"]``)."""
    combos = list(itertools.product(dbs, modes, graphs, stores or ["auto"]))
    result = []
    for i in range(count):
        db, mode, graph, store = combos[i % len(combos)]
        result.append(make_schedule(seed * 10000 + i, db, mode, graph, scale=scale,
                                    store=resolve_store(store, db)))
    return result


# ---------------------------------------------------------------------------------------------
# summary


def summarize(results: list[ScheduleResult]) -> tuple[str, int]:
    kinds = collections.Counter()
    fired = collections.Counter()
    finished_before = collections.Counter()
    outcomes = collections.Counter()
    bytes_changed = 0
    nothing_fired = []
    for r in results:
        any_fired = False
        for s in r.steps:
            kinds[s["kind"]] += 1
            if s["kind"] == "grow":
                continue
            if s.get("fired"):
                fired[s["kind"]] += 1
                any_fired = True
            if s.get("finished_before"):
                finished_before[s["kind"]] += 1
            if "result" in s:
                outcomes[f"{s['kind']}:{s['result']}"] += 1
            bytes_changed += bool(s.get("bytes_changed_on_refusal"))
        if not any_fired:
            nothing_fired.append(r)
    anomalies = sum(len(r.anomalies) for r in results)
    lines = [
        "",
        f"schedules run: {len(results)}  (engine runs {sum(r.runs for r in results)}, "
        f"{sum(r.seconds for r in results):.0f}s)",
        "steps by kind: " + ", ".join(f"{k} {kinds[k]}" for k in sorted(kinds)),
        "fired / landed: " + ", ".join(f"{k} {fired[k]}/{kinds[k]}" for k in sorted(kinds)
                                       if k != "grow"),
        "graph finished before the signal/kill: " + (", ".join(f"{k} {v}" for k, v in sorted(finished_before.items()))
                                                    or "none"),
        "outcomes: " + (", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) or "-"),
        f"refusals that wrote into the store file (bytes changed, contents as read did not): {bytes_changed}",
        f"runs that exited with 'operators still busy after stop': {sum(r.busy_at_exit for r in results)}",
        f"schedules where nothing fired: {len(nothing_fired)}"
        + (" (" + ", ".join(f"{r.schedule.seed}" for r in nothing_fired) + ")" if nothing_fired else ""),
        f"schedules with anomalies: {sum(1 for r in results if r.anomalies)}; anomalies: {anomalies}",
    ]
    for r in results:
        for a in r.anomalies:
            lines.append(f"  ANOMALY seed {r.schedule.seed} {r.schedule.label()}: {a.splitlines()[0][:700]}")
            lines.append(f"    plan: rows {r.schedule.rows}; " + " -> ".join(s.label() for s in r.schedule.steps))
            kept = f"; store {r.kept_store}" if r.kept_store else ""
            lines.append(f"    reproduce: {r.schedule.replay()}   (kept in {r.folder}{kept})")
    return "\n".join(lines), anomalies


def schedule_line(i: int, n: int, r: ScheduleResult) -> str:
    s = r.schedule
    steps = " -> ".join(st.label() for st in s.steps)
    fired = sum(1 for st in r.steps if st.get("fired"))
    total = sum(1 for st in r.steps if st["kind"] != "grow")
    before = sum(1 for st in r.steps if st.get("finished_before"))
    cmp = r.comparison or {}
    result = (f"rows {cmp.get('rows')}/{cmp.get('expected')} dup {cmp.get('duplicated')} "
              f"miss {cmp.get('missing')} wrong {cmp.get('wrong')}") if cmp else "no comparison"
    return (f"[{i:>3}/{n}] seed {s.seed} {s.label():42} rows {s.rows:>6} | {steps} | "
            f"{r.outcome} fired {fired}/{total} finished-first {before} runs {r.runs} {result} {r.seconds:.1f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="seeded crash/stop/damage campaign against the snapgraph CLI")
    parser.add_argument("--schedules", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--mode", choices=["processes", "in-process", "both"], default="both")
    parser.add_argument("--graph", choices=["wal", "upsert", "both"], default="both")
    parser.add_argument("--scale", type=float, default=1.0, help="source rows relative to the 1-3 s default")
    parser.add_argument("--store-kind", choices=["auto", "sqlite", "postgres", "both"], default="auto",
                        help="the snapshot store: an SQLite file, or a PostgreSQL schema of its own per schedule "
                             "(dropped afterwards) at the --db postgres server; auto (default): the kind of the "
                             "target --db, so a mixed run covers both; both: every combination with each")
    parser.add_argument("--replay", type=int, metavar="SCHEDULE_SEED",
                        help="run the one schedule with this seed (needs single --db, --mode, --graph)")
    parser.add_argument("--plan", action="store_true", help="print the plans only")
    parser.add_argument("--keep", action="store_true", help="keep every schedule's folder")
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.add_argument("--json", metavar="FILE", help="write every result as JSON")
    args = parser.parse_args(argv)
    pick = lambda value, both: both if value == "both" else [value]  # noqa: E731
    dbs = pick(args.db, ["sqlite", "postgres"])
    modes = pick(args.mode, ["processes", "in-process"])
    graphs = pick(args.graph, ["wal", "upsert"])
    stores = pick(args.store_kind, ["sqlite", "postgres"])
    if args.replay is not None:
        if len(dbs) * len(modes) * len(graphs) * len(stores) != 1:
            parser.error("--replay needs one --db, one --mode, one --graph and one --store-kind")
        plan = [make_schedule(args.replay, dbs[0], modes[0], graphs[0], args.scale,
                              store=resolve_store(stores[0], dbs[0]))]
    else:
        plan = schedules_for(args.schedules, args.seed, dbs, modes, graphs, args.scale, stores)
    if args.plan:
        for s in plan:
            print(f"seed {s.seed} {s.label()} rows {s.rows}: " + " -> ".join(st.label() for st in s.steps))
        return 0
    log = (lambda text: print(text, flush=True)) if args.verbose else None
    results = []
    for i, schedule in enumerate(plan, 1):
        result = run_schedule(schedule, keep=args.keep or args.replay is not None, log=log)
        results.append(result)
        print(schedule_line(i, len(plan), result), flush=True)
    text, anomalies = summarize(results)
    print(text, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps([{
            "seed": r.schedule.seed, "combo": r.schedule.label(), "rows": r.schedule.rows,
            "plan": [st.label() for st in r.schedule.steps], "steps": r.steps, "anomalies": r.anomalies,
            "comparison": r.comparison, "seconds": r.seconds, "folder": r.folder} for r in results], indent=1,
            default=str))
    return 1 if anomalies else 0


if __name__ == "__main__":
    sys.exit(main())
