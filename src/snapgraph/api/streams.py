"""Input bodies, stream readers and stream writers of the Gen2 API.

A stream is any object with ``take() -> chunk | None`` and ``push_back(chunk)``
on the reading side and ``put(chunk)`` / ``close()`` on the writing side;
the runtime supplies bounded buffers. Table chunks are lists of rows, binary
chunks are ``bytes``. End of stream reads as an empty result, as in Gen2.
"""

from __future__ import annotations

from typing import Any, Protocol

from snapgraph.api.table import Record, Table
from snapgraph.model.types import BINARY_TEMPLATES, CORE_SCALAR_TEMPLATES, NONE, TABLE, PortType


class ChunkSource(Protocol):
    def take(self) -> Any | None: ...
    def push_back(self, chunk: Any) -> None: ...


class ChunkSink(Protocol):
    def put(self, chunk: Any) -> None: ...
    def close(self) -> None: ...


def is_binary_type(port_type: PortType, type_id: str) -> bool:
    tid = type_id if type_id != "*" else port_type.vtype_id
    return CORE_SCALAR_TEMPLATES.get(tid) in BINARY_TEMPLATES


class TableReader:
    """Reads rows of a table stream: ``read(n)`` blocks for ``n`` rows or the end."""

    def __init__(self, source: ChunkSource, type_id: str = "") -> None:
        self._source = source
        self._type_id = type_id

    def read(self, n: int = -1) -> Table:
        rows: list[list[Any]] = []
        while n < 0 or len(rows) < n:
            chunk = self._source.take()
            if chunk is None:
                break
            if n >= 0 and len(rows) + len(chunk) > n:
                keep = n - len(rows)
                rows.extend(chunk[:keep])
                self._source.push_back(chunk[keep:])
                break
            rows.extend(chunk)
        return Table(rows, self._type_id)


class BinaryReader:
    """Reads bytes of a binary stream: ``read(n)`` blocks for ``n`` bytes or the end."""

    def __init__(self, source: ChunkSource) -> None:
        self._source = source

    def read(self, n: int = -1) -> bytes:
        parts: list[bytes] = []
        size = 0
        while n < 0 or size < n:
            chunk = self._source.take()
            if chunk is None:
                break
            if n >= 0 and size + len(chunk) > n:
                keep = n - size
                parts.append(chunk[:keep])
                self._source.push_back(chunk[keep:])
                break
            parts.append(chunk)
            size += len(chunk)
        return b"".join(parts)


class _ListSource:
    """A finished stream held in memory (a whole table or bytes read as a stream)."""

    def __init__(self, chunks: list[Any]) -> None:
        self._chunks = chunks

    def take(self) -> Any | None:
        return self._chunks.pop(0) if self._chunks else None

    def push_back(self, chunk: Any) -> None:
        self._chunks.insert(0, chunk)


class InputBody:
    """The ``body`` argument of a port callback."""

    __slots__ = ("_value", "_stream", "_port_type", "_type_id", "_consumed")

    def __init__(self, value: Any, port_type: PortType, type_id: str, stream: ChunkSource | None = None) -> None:
        self._value = value
        self._stream = stream
        self._port_type = port_type
        self._type_id = type_id
        self._consumed = False

    def get(self) -> Any:
        """The whole value: a Table for tables (a stream is read to its end), None for a header-only
        message, else the value. Binary bodies raise, as in Gen2: they are read with get_reader()."""
        if self._is_header_only():
            return None
        if self._is_binary():
            raise TypeError(
                f"body.get() does not read binary bodies ({self.get_base_type()}:{self.get_type_id()}); "
                "read them with body.get_reader().read(-1)"
            )
        if self._stream is not None:
            self._value = TableReader(self._stream, self._type_id_or_empty()).read(-1)
            self._stream = None
        return self._value

    def get_reader(self) -> TableReader | BinaryReader:
        """A stream reader for table and binary bodies; other types raise TypeError."""
        if self._stream is not None:
            source = self._stream
        elif isinstance(self._value, Table):
            source = _ListSource([self._value.body] if len(self._value) else [])
        elif isinstance(self._value, (bytes, bytearray, memoryview)):
            source = _ListSource([bytes(self._value)] if len(self._value) else [])
        elif self._is_header_only():
            raise TypeError("body.get_reader(): this message has headers only, no body to read (body.get() is None)")
        else:
            raise TypeError(
                f"body.get_reader() needs a table or binary body; this one is "
                f"{self.get_base_type()}:{self.get_type_id()} - use body.get()"
            )
        if isinstance(self._value, Table) or self._is_table():
            return TableReader(source, self._type_id_or_empty())
        return BinaryReader(source)

    def is_stream(self) -> bool:
        if self._is_header_only():
            return False
        return self._is_table() or self._is_binary() or self._stream is not None

    def get_type_id(self) -> str:
        return self._type_id

    def get_base_type(self) -> str:
        """The port's category; ``"none"`` for a header-only message, whatever the port."""
        if self._is_header_only():
            return NONE
        if self._port_type.category != "any":
            return self._port_type.category
        if isinstance(self._value, Table) or (self._stream is not None and self._is_table()):
            return TABLE
        return "structure" if isinstance(self._value, Record) else "scalar"

    def _is_table(self) -> bool:
        return self._port_type.category == TABLE or isinstance(self._value, Table)

    def _is_binary(self) -> bool:
        return not self._is_table() and is_binary_type(self._port_type, self._type_id)

    def _is_header_only(self) -> bool:
        """``publish(None, header)``: no body at all, on whatever port type."""
        return self._value is None and self._stream is None

    def _type_id_or_empty(self) -> str:
        return "" if self._type_id == "*" else self._type_id


def whole_value(body: InputBody) -> Any:
    """The whole value of any body, binary ones included (which ``body.get()`` refuses, as in
    Gen2): for the engine's own printers, which show every message whatever its type."""
    if body._is_binary() and not body._is_header_only():
        return body.get_reader().read(-1)
    return body.get()


class TableWriter:
    """``with_writer`` on a table port: ``write(rows | Table) -> int``, ``close()``."""

    def __init__(self, sinks: list[ChunkSink]) -> None:
        self._sinks = sinks
        self._closed = False

    def write(self, rows: Any) -> int:
        if self._closed:
            raise ValueError("write() on a closed TableWriter")
        if isinstance(rows, Table):
            rows = rows.body
        rows = list(rows)
        if rows:
            for sink in self._sinks:
                sink.put(rows)
        return len(rows)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            for sink in self._sinks:
                sink.close()

    def __enter__(self) -> TableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BinaryWriter:
    """``with_writer`` on a binary port: ``write(bytes) -> int``, ``flush()``, ``close()``."""

    def __init__(self, sinks: list[ChunkSink]) -> None:
        self._sinks = sinks
        self._closed = False

    def write(self, data: bytes) -> int:
        if self._closed:
            raise ValueError("write() on a closed BinaryWriter")
        data = bytes(data)
        if data:
            for sink in self._sinks:
                sink.put(data)
        return len(data)

    def flush(self) -> None:
        """Chunks are handed over on write; nothing is held back."""

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            for sink in self._sinks:
                sink.close()

    def __enter__(self) -> BinaryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
