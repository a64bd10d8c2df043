"""InputBody accessors for binary bodies and header-only messages."""

from __future__ import annotations

import pytest

from snapgraph.api.streams import InputBody, _ListSource, whole_value
from snapgraph.model.types import PortType

BINARY = PortType("scalar", "com.sap.core.binary")
STRING = PortType("scalar", "com.sap.core.string")
TABLE = PortType("table", "*")


@pytest.mark.parametrize("body", [
    InputBody(b"abc", BINARY, "com.sap.core.binary"),
    InputBody(None, BINARY, "com.sap.core.binary", _ListSource([b"a", b"bc"])),
], ids=["whole", "stream"])
def test_get_refuses_binary_bodies_and_the_reader_reads_them(body: InputBody) -> None:
    with pytest.raises(TypeError, match=r"body.get\(\) does not read binary bodies .*body.get_reader\(\)"):
        body.get()
    assert body.is_stream() and body.get_base_type() == "scalar"
    assert body.get_reader().read(-1) == b"abc"


def test_whole_value_reads_binary_bodies_through_their_reader() -> None:
    assert whole_value(InputBody(None, BINARY, "com.sap.core.binary", _ListSource([b"x", b"y"]))) == b"xy"
    assert whole_value(InputBody("text", STRING, "com.sap.core.string")) == "text"
    assert whole_value(InputBody(None, BINARY, "com.sap.core.binary")) is None


@pytest.mark.parametrize("port_type", [BINARY, STRING, TABLE, PortType("structure", "*"), PortType("none")])
def test_a_header_only_body_is_none_on_every_port_type(port_type: PortType) -> None:
    body = InputBody(None, port_type, port_type.vtype_id)
    assert body.get() is None
    assert body.get_base_type() == "none"
    assert body.get_type_id() == port_type.vtype_id
    assert not body.is_stream()
    with pytest.raises(TypeError, match="headers only"):
        body.get_reader()
