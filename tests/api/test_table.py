"""Unit tests for snapgraph.api.table: Table, Record and table_columns."""

from __future__ import annotations

import pickle
import time

import pytest

from snapgraph.api.table import Record, Table, table_columns
from snapgraph.model.types import DataTypeReference

from .helpers import users_type

# ---------------------------------------------------------------- Table basics


def test_table_keeps_body_without_copy():
    rows = [[1, "a"], [2, "b"]]
    table = Table(rows)
    assert table.body is rows
    rows[0].append("x")
    assert table[0] == [1, "a", "x"]


def test_table_untyped_by_default():
    table = Table([[1]])
    assert not table.is_typed()
    assert table.get_type_reference() is None
    assert table.type_ref is None


def test_table_with_type_id_is_typed():
    table = Table([[1, "a"]], "extract.users")
    assert table.is_typed()
    assert table.type_ref == DataTypeReference("table", "extract.users")
    assert table.get_type_reference() is table.type_ref
    assert table.type_ref.type_ == "table"
    assert table.type_ref.type_id == "extract.users"


def test_table_keyword_type_id():
    assert Table(data=[[1]], type_id="$GRAPH.t").type_ref.type_id == "$GRAPH.t"


def test_table_accepts_type_reference_as_type_id():
    table = Table([[1]], DataTypeReference("table", "t.x"))
    assert table.type_ref == DataTypeReference("table", "t.x")
    with pytest.raises(TypeError, match="type_id"):
        Table([[1]], 5)


def test_table_none_data_is_empty():
    assert len(Table(None)) == 0
    assert Table().body == []


def test_table_from_iterable_of_tuples_becomes_row_lists():
    table = Table(((1, 2), (3, 4)))
    assert table.body == [[1, 2], [3, 4]]
    assert all(type(row) is list for row in table)


def test_table_from_table_shares_body_and_type():
    source = Table([[1]], "t.x")
    copy = Table(source)
    assert copy.body is source.body
    assert copy.type_ref == source.type_ref


def test_table_rejects_string_data():
    with pytest.raises(TypeError, match="list of rows"):
        Table("abc")


def test_table_construction_is_constant_time():
    small, big = [[1, 2]] * 10, [[1, 2]] * 1_000_000
    start = time.perf_counter()
    for _ in range(2000):
        Table(big, "t.x")
    big_time = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(2000):
        Table(small, "t.x")
    small_time = time.perf_counter() - start
    assert big_time < small_time * 5 + 0.05


def test_table_len_iter_index():
    rows = [[1, "a"], [2, "b"], [3, "c"]]
    table = Table(rows)
    assert len(table) == 3
    assert list(table) == rows
    assert [r for r in table][1] is rows[1]
    assert table[0] is rows[0]
    assert table[-1] == [3, "c"]
    with pytest.raises(IndexError):
        table[3]


def test_table_slices_are_tables_with_same_type():
    table = Table([[i] for i in range(250)], "t.x")
    head, tail = table[:100], table[100:]
    assert isinstance(head, Table) and isinstance(tail, Table)
    assert len(head) == 100 and len(tail) == 150
    assert head.type_ref == table.type_ref
    assert table[1:3].body == [[1], [2]]
    assert head[0] is table[0]  # rows are shared, not copied


def test_slice_of_untyped_table_is_untyped():
    assert Table([[1], [2]])[1:].type_ref is None


def test_table_contains_and_reversed():
    table = Table([[1], [2]])
    assert [2] in table
    assert [3] not in table
    assert list(reversed(table)) == [[2], [1]]


def test_table_equality_uses_body_and_type():
    assert Table([[1]], "a") == Table([[1]], "a")
    assert Table([[1]], "a") != Table([[1]], "b")
    assert Table([[1]]) != Table([[1]], "a")
    assert Table([[1]]) != Table([[2]])
    assert Table([[1]]) != [[1]]


def test_table_is_unhashable():
    with pytest.raises(TypeError):
        hash(Table([]))


def test_table_repr_readable_and_truncated():
    assert repr(Table([[1, "a"]], "t.x")) == "Table([[1, 'a']], type_id='t.x')"
    assert repr(Table([[1]])) == "Table([[1]])"
    big = repr(Table([[i] for i in range(100)]))
    assert "90 more rows" in big
    assert "[99]" not in big


def test_table_pickles():
    table = Table([[1, "a"]], "t.x")
    again = pickle.loads(pickle.dumps(table))
    assert again == table
    assert again.type_ref == DataTypeReference("table", "t.x")


def test_table_rows_feed_pandas_dataframe_constructor():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(Table([[1, "a"], [2, "b"]]), columns=["id", "name"])
    assert frame["id"].tolist() == [1, 2]
    assert frame["name"].tolist() == ["a", "b"]


# ---------------------------------------------------------------- table_columns


def test_table_columns_typed_and_untyped(ctx):
    ref = users_type(ctx)
    assert table_columns(Table([[1, "a"]], ref.type_id), ctx.registry) == ["id", "name"]
    assert table_columns(Table([[1, "a"]], ref.type_id), ctx) == ["id", "name"]
    assert table_columns(Table([[1, "a", 3]]), ctx.registry) == ["col0", "col1", "col2"]
    assert table_columns(Table([]), ctx.registry) == []
    assert table_columns(Table([[1]], "unknown.t"), ctx.registry) == ["col0"]


# ---------------------------------------------------------------- Record


def test_record_basics():
    record = Record([1, "a", True])
    assert len(record) == 3
    assert list(record) == [1, "a", True]
    assert record[1] == "a"
    assert record[-1] is True
    assert "a" in record
    assert record == Record([1, "a", True])
    assert record != Record([1, "a", False])
    assert record == [1, "a", True]
    assert [1, "a", True] == record
    assert record != 5
    assert repr(record) == "Record([1, 'a', True])"


def test_record_slice_and_values():
    record = Record((1, 2, 3))
    assert record.values == [1, 2, 3]
    assert record[1:] == Record([2, 3])
    assert isinstance(record[1:], Record)


def test_record_holds_tables_and_pickles():
    record = Record([0, "op", Table([["k", "v"]])])
    again = pickle.loads(pickle.dumps(record))
    assert again == record
    assert isinstance(again[2], Table)


def test_record_rejects_string():
    with pytest.raises(TypeError):
        Record("abc")


def test_record_unhashable():
    with pytest.raises(TypeError):
        hash(Record([1]))
