"""Unit tests for snapgraph.api.printing: describe, the text shown for a value."""

from __future__ import annotations

from snapgraph.api.printing import describe
from snapgraph.api.table import Record, Table

# ---------------------------------------------------------------- describe


def test_describe_table_rows_and_limit():
    table = Table([[1, "a"], [2, "b"], [3, "c"]], "t.x")
    text = describe(table)
    assert text.splitlines() == ["Table t.x (3 rows)", "[1, 'a']", "[2, 'b']", "[3, 'c']"]
    limited = describe(table, max_rows=1).splitlines()
    assert limited == ["Table t.x (3 rows)", "[1, 'a']", "... (2 more rows)"]
    assert describe(Table([[1]])).splitlines()[0] == "Table (1 row)"


def test_describe_bytes_truncated():
    assert describe(b"abc") == "b'abc'"
    text = describe(b"x" * 100)
    assert text.startswith("b'" + "x" * 64 + "'")
    assert "x" * 65 not in text
    assert "100 bytes" in text
    assert describe(bytearray(b"hi")) == "b'hi'"


def test_describe_scalars_and_records():
    assert describe("hello") == "hello"
    assert describe(None) == "None"
    assert describe(5) == "5"
    assert describe(Record([1, b"x" * 70])).startswith("Record([1, b'xxx")
    assert "70 bytes" in describe(Record([1, b"x" * 70]))
    assert describe([1, "a"]) == "[1, 'a']"
    assert describe({"k": b"v"}) == "{'k': b'v'}"
    nested = describe(Record([0, Table([["k", "v"]])]))
    assert "Table" in nested and "['k', 'v']" in nested


def test_describe_leaves_out_generated_dynamic_ids(ctx):
    inferred = Table([[1]], infer_type=True)
    assert describe(inferred) == "Table (1 row)\n[1]"
    assert describe(Table([[1]], "demo.rows")) == "Table demo.rows (1 row)\n[1]"
    assert describe(Record([inferred])) == "Record([Table(1 rows: [1])])"
