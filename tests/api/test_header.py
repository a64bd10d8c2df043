"""Unit tests for snapgraph.api.header: the read-only Header and normalize_header."""

from __future__ import annotations

import pickle
from collections.abc import Mapping

import pytest

from snapgraph.api.header import READ_ONLY_MESSAGE, Header, normalize_header
from snapgraph.api.table import Record

BATCH = "com.sap.headers.batch"


@pytest.fixture
def raw() -> dict:
    return {BATCH: [0, True, 1, 0, ""], "com.sap.headers.file": Record(["conn", "/a", 3, False, ""])}


def test_header_is_a_mapping(raw):
    header = Header(raw)
    assert isinstance(header, Mapping)
    assert not isinstance(header, dict)


def test_header_wraps_without_copy(raw):
    header = Header(raw)
    assert header._data is raw
    raw["late"] = [1]
    assert "late" in header


def test_header_reading(raw):
    header = Header(raw)
    assert header[BATCH] == [0, True, 1, 0, ""]
    assert header[BATCH][1] is True
    assert BATCH in header
    assert "missing" not in header
    assert list(header.keys()) == [BATCH, "com.sap.headers.file"]
    assert list(header.values())[0] == [0, True, 1, 0, ""]
    assert dict(header.items()) == raw
    assert len(header) == 2
    assert list(header) == [BATCH, "com.sap.headers.file"]
    assert header.get(BATCH) == [0, True, 1, 0, ""]
    assert header.get("missing") is None
    assert header.get("missing", 7) == 7
    with pytest.raises(KeyError):
        header["missing"]


def test_empty_header():
    assert len(Header()) == 0
    assert Header(None) == {}


def test_header_of_header_shares_dict(raw):
    assert Header(Header(raw))._data is raw


@pytest.mark.parametrize(
    "change",
    [
        lambda h: h.__setitem__("x", [1]),
        lambda h: h.__delitem__(BATCH),
        lambda h: h.update({"x": [1]}),
        lambda h: h.pop(BATCH),
        lambda h: h.popitem(),
        lambda h: h.clear(),
        lambda h: h.setdefault("x", [1]),
    ],
)
def test_header_refuses_changes(raw, change):
    header = Header(raw)
    before = dict(raw)
    with pytest.raises(TypeError) as info:
        change(header)
    assert str(info.value) == READ_ONLY_MESSAGE
    assert "header.copy()" in str(info.value)
    assert raw == before


def test_header_item_assignment_message(raw):
    header = Header(raw)
    with pytest.raises(TypeError, match=r"read-only; use header.copy\(\)"):
        header["isFinal"] = [True]


def test_header_inplace_or_refused(raw):
    header = Header(raw)
    with pytest.raises(TypeError, match="read-only"):
        header |= {"x": [1]}


def test_header_or_gives_new_dict(raw):
    merged = Header(raw) | {"x": [1]}
    assert type(merged) is dict
    assert merged["x"] == [1]
    assert "x" not in raw


def test_copy_is_plain_mutable_dict(raw):
    header = Header(raw)
    copy = header.copy()
    assert type(copy) is dict
    assert copy == raw
    copy["isFinal"] = [True]
    assert "isFinal" not in header


def test_copy_values_are_independent_lists(raw):
    header = Header(raw)
    copy = header.copy()
    copy[BATCH][1] = False
    copy["com.sap.headers.file"][0] = "other"
    assert raw[BATCH][1] is True
    assert raw["com.sap.headers.file"][0] == "conn"
    assert type(copy["com.sap.headers.file"]) is list


def test_repr_like_dict(raw):
    assert repr(Header({"a": [1]})) == "{'a': [1]}"
    assert repr(Header(raw)) == repr(raw)


def test_equality(raw):
    assert Header(raw) == raw
    assert raw == Header(raw)
    assert Header(raw) == Header(dict(raw))
    assert Header({"a": [1]}) != {"a": [2]}
    assert Header({"a": Record([1])}) == {"a": [1]}
    assert Header({"a": [1]}) != [("a", [1])]


def test_header_unhashable():
    with pytest.raises(TypeError):
        hash(Header({}))


def test_header_pickles(raw):
    again = pickle.loads(pickle.dumps(Header(raw)))
    assert isinstance(again, Header)
    assert again == raw


def test_header_has_no_instance_dict():
    with pytest.raises(AttributeError):
        Header({}).extra = 1


# ---------------------------------------------------------------- normalize_header


def test_normalize_none_is_empty_dict():
    assert normalize_header(None) == {}


def test_normalize_header_returns_underlying_dict(raw):
    assert normalize_header(Header(raw)) is raw


def test_normalize_dict_copies_lists():
    given = {"isFinal": [True], "batch": (0, True)}
    result = normalize_header(given)
    assert result == {"isFinal": [True], "batch": [0, True]}
    assert type(result["batch"]) is list
    given["isFinal"][0] = False
    given["new"] = [1]
    assert result == {"isFinal": [True], "batch": [0, True]}


def test_normalize_keeps_records():
    record = Record(["conn", "/path"])
    assert normalize_header({"com.sap.headers.file": record})["com.sap.headers.file"] is record


def test_normalize_empty_dict():
    assert normalize_header({}) == {}


@pytest.mark.parametrize("value", [True, 1, "x", None, {"a": 1}])
def test_normalize_rejects_scalar_values(value):
    with pytest.raises(ValueError) as info:
        normalize_header({"isFinal": value})
    message = str(info.value)
    assert "'isFinal'" in message
    assert "list" in message
    assert "h['isFinal'] = [True]" in message


def test_normalize_rejects_non_str_keys():
    with pytest.raises(ValueError, match="keys must be str"):
        normalize_header({1: [1]})


def test_normalize_rejects_non_mapping():
    with pytest.raises(TypeError, match="dict"):
        normalize_header([("a", [1])])
