"""SAP's table codecs: Binary to Table V2 (``com.sap.table.decode.v2``) and Table to Binary
(``com.sap.table.encode``). The descriptors and config checks are :mod:`snapgraph.model.codec_builtins`;
the encodings are :mod:`snapgraph.connectors.files.formats`; the config keys, what is supported and
what is refused: docs/connectors.md ("SAP's table codecs").

**Binary to Table V2**, in order:

1. *Load*: the config is checked (the model's checks); the ``table`` port's type is read: a table vtype
   declared on it (static) gives the column names and the column types, else (``*``) every message gets
   a dynamic table type of its own columns.
2. *Port callback* on ``binary``: the whole message (bytes; a stream is read to its end) is decoded in
   ``inputFormat``: CSV (``colSep``, ``quoteChar``, ``escapeChar``, ``header``; any line terminator),
   JSON (in the ``format`` layout), JSON lines, Parquet or ORC. Column names: a static type's, else
   ``colNames`` (CSV), else the data's (CSV header, JSON keys, Parquet/ORC schema), else ``col0``, ….
3. *Values*: with a static type each value is converted to its column's type (CSV text by ``decSep``,
   ``digitGrpSep``, ``trueValues``, ``falseValues``; dates, times and timestamps from ISO 8601). Without
   one each column is typed after all its values, as pandas reads them: CSV text that is all booleans,
   all integers or all numbers becomes bool, int64 or float64 (``dateCols``: ISO dates or timestamps),
   an empty CSV value is null; typed values (JSON, Parquet, ORC) keep their type (ints among floats
   become floats; a column of mixed types becomes strings).
4. *Publish* on ``table``: one table per input message with the input's headers, or with
   ``outputBatches`` tables of ``batchSize`` rows, each with a ``com.sap.headers.batch`` ``[index,
   isLast, 0, batchSize, "rows"]`` in place of the input's: ``index`` counts the batches of the run and
   ``isLast`` marks the message's last batch when the input's own batch header (if any) is the last.
   That counter is the operator's state (serialized at each snapshot), so a replay numbers as the
   failure-free run did; without ``outputBatches`` the operator is stateless.

**Table to Binary**, in order:

1. *Load*: the config is checked.
2. *Port callback* on ``table``: the table's rows are encoded in ``outputFormat``: CSV (``colSep``,
   ``rowSep``, ``quoteChar``, ``quoting``, ``escapeChar``, ``header``; ``colNames`` replace the table
   type's column names; ``decSep`` and ``dateFormat`` format numbers and dates), JSON (``format``
   layout), JSON lines or Parquet (``compression``), and published on ``binary`` as one message with the
   input's headers. With ``collectBatches`` the tables of a batch sequence (``com.sap.headers.batch``)
   are collected up to the one whose ``isLast`` is true, and encoded together into one message with its
   headers; a table without a batch header is encoded on its own.
3. *serialize / restore* (``collectBatches`` with snapshots on): the rows collected so far are the
   state, so a recovery neither loses nor repeats them.

Both are deterministic (the same input gives the same output). A message they cannot convert fails the
operator naming the port, the row and the column (``errorHandling: propagate to error port`` sends it
to their ``error`` port instead).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import decimal
import io
import json
import os
import pickle
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from snapgraph.api.data import Table
from snapgraph.api.inference import scalar_type_id_for
from snapgraph.api.operator_api import Api
from snapgraph.api.streams import whole_value
from snapgraph.api.table import table_columns
from snapgraph.connectors.base import ConnectorConfigError, ConnectorContext, Setup, check_config, config_of
from snapgraph.connectors.files.formats import (
    CsvOptions,
    FileFormatError,
    arrow_file_rows,
    default_columns,
    encode_json_document,
    encode_rows,
    iter_rows,
    json_document_rows,
)
from snapgraph.connectors.files.local import BATCH_HEADER, is_last_batch
from snapgraph.model.builtin_operator import column_names, config_switch
from snapgraph.model.codec_builtins import (
    BINARY_TO_TABLE,
    DECODER_DEFAULTS,
    DECODER_FORMATS,
    ENCODER_DEFAULTS,
    ENCODER_FORMATS,
    TABLE_TO_BINARY,
    codec_format,
)
from snapgraph.model.types import (
    BINARY_TEMPLATES,
    DECIMAL_TEMPLATES,
    DYNAMIC,
    FLOAT_TEMPLATES,
    INT_TEMPLATE_RANGES,
    SCALAR,
    TABLE,
    DataTypeReference,
    VTypeTable,
)

#: Config ``rowSep`` -> the line terminator written.
LINE_TERMINATORS = {"LF": "\n", "CR": "\r", "CRLF": "\r\n", "OS": os.linesep}
#: What pandas reads as booleans when ``trueValues`` / ``falseValues`` name none.
DEFAULT_TRUE = ("True", "true", "TRUE")
DEFAULT_FALSE = ("False", "false", "FALSE")
STRING_TYPE = "com.sap.core.string"
_INTEGER = re.compile(r"[+-]?\d+")
_REAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


class CodecConfigError(ConnectorConfigError):
    """A codec that cannot run as configured: names the operator and the config key."""


def _names_of(config: dict[str, Any], key: str) -> list[str] | None:
    value = config.get(key)
    return column_names(value) if value not in (None, "") else None


def _csv_options(config: dict[str, Any]) -> CsvOptions:
    quoting = str(config["quoting"]).replace("QUOTING_", "QUOTE_")
    return CsvOptions(delimiter=str(config["colSep"]), header=config_switch(config["header"]) is True,
                      line_terminator=LINE_TERMINATORS[str(config["rowSep"])], quote=str(config.get("quoteChar") or ""),
                      escape=str(config["escapeChar"]) if config.get("escapeChar") else None,
                      quoting=getattr(csv, quoting), skip_long_rows=config_switch(config.get("ignoreBad")) is True)


# -- CSV text to values ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TextValues:
    """How the text of a CSV value is read as a number or a boolean (Binary to Table's CSV options)."""

    decimal_separator: str = "."
    group_separator: str | None = None
    true: tuple[str, ...] = DEFAULT_TRUE
    false: tuple[str, ...] = DEFAULT_FALSE

    def _digits(self, text: str) -> str:
        text = text.strip()
        if self.group_separator:
            text = text.replace(self.group_separator, "")
        return text.replace(self.decimal_separator, ".") if self.decimal_separator != "." else text

    def integer(self, text: str) -> int:
        digits = self._digits(text)
        if not _INTEGER.fullmatch(digits):
            raise ValueError(f"{text!r} is not an integer")
        return int(digits)

    def real(self, text: str) -> float:
        digits = self._digits(text)
        if not _REAL.fullmatch(digits):
            raise ValueError(f"{text!r} is not a number")
        return float(digits)

    def boolean(self, text: str) -> bool:
        if text in self.true:
            return True
        if text in self.false:
            return False
        raise ValueError(f"{text!r} is none of the true values ({', '.join(self.true)}) or false values "
                         f"({', '.join(self.false)})")

    def exact(self, text: str) -> decimal.Decimal:
        digits = self._digits(text)
        if not _REAL.fullmatch(digits):
            raise ValueError(f"{text!r} is not a decimal number")
        return decimal.Decimal(digits)


def _moment(text: str) -> datetime.date:
    """An ISO 8601 date (no time part) or timestamp."""
    text = text.strip()
    return datetime.date.fromisoformat(text) if len(text) <= 10 else datetime.datetime.fromisoformat(text)


def _text_column(texts: list[Any], values: TextValues, is_date: bool) -> list[Any]:
    """A column of CSV text typed as pandas reads it: all booleans, integers or numbers (``is_date``:
    ISO dates or timestamps) become those, else the text stays (empty values are null)."""
    readers: tuple[Callable[[str], Any], ...] = (_moment,) if is_date else (values.boolean, values.integer,
                                                                             values.real)
    for read in readers:
        try:
            column = [None if text is None else read(text) for text in texts]
        except ValueError:
            continue
        if is_date and len({type(value) for value in column if value is not None}) > 1:
            column = [None if value is None else _timestamp(value) for value in column]
        return column
    return texts


def _as_text(value: Any) -> str:
    """A value as a string column holds it: lists and objects as JSON, anything else as its ``str``."""
    return json.dumps(value, default=str) if isinstance(value, (list, dict)) else str(value)


def _typed_column(values: list[Any]) -> list[Any]:
    """A column of typed values (JSON, Parquet, ORC) with one type: ints among floats become floats,
    mixed or nested values become their text."""
    kinds = {type(value) for value in values if value is not None}
    if len(kinds) <= 1 and not kinds & {list, dict}:
        return values
    if kinds <= {int, float}:
        return [None if value is None else float(value) for value in values]
    return [None if value is None else _as_text(value) for value in values]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _timestamp(value: datetime.date) -> datetime.datetime:
    return value if isinstance(value, datetime.datetime) else datetime.datetime.combine(value, datetime.time())


def _day(value: datetime.date) -> datetime.date:
    return value.date() if isinstance(value, datetime.datetime) else value


def _iso(kind: type[datetime.date] | type[datetime.time]) -> Callable[[str], Any]:
    return lambda text: kind.fromisoformat(text.strip())


def _converter(template: str | None, values: TextValues) -> Callable[[Any], Any]:
    """``value -> value`` for a static column of scalar ``template``: text is read (CSV's options for
    numbers and booleans, ISO 8601 for dates and times), a value of a fitting kind converted, any other
    value raises ``ValueError``."""
    def reading(read: Callable[[str], Any], fits: Callable[[Any], bool],
                convert: Callable[[Any], Any] = lambda value: value) -> Callable[[Any], Any]:
        def converted(value: Any) -> Any:
            if isinstance(value, str):
                return read(value)
            if fits(value):
                return convert(value)
            raise ValueError(f"{value!r} is a {type(value).__name__}")
        return converted

    def is_date(value: Any) -> bool:
        return isinstance(value, datetime.date)

    if template in INT_TEMPLATE_RANGES:
        return reading(values.integer, lambda value: _is_number(value) and float(value).is_integer(), int)
    if template in FLOAT_TEMPLATES:
        return reading(values.real, _is_number, float)
    if template == "bool":
        return reading(values.boolean, lambda value: isinstance(value, bool))
    if template in DECIMAL_TEMPLATES:
        return reading(values.exact, lambda value: _is_number(value) or isinstance(value, decimal.Decimal),
                       lambda value: decimal.Decimal(str(value)))
    if template == "date":
        return reading(_iso(datetime.date), is_date, _day)
    if template == "timestamp":
        return reading(_iso(datetime.datetime), is_date, _timestamp)
    if template == "time":
        return reading(_iso(datetime.time), lambda value: isinstance(value, datetime.time))
    if template == "string":
        return _as_text
    if template in BINARY_TEMPLATES:
        return lambda value: value.encode("utf-8") if isinstance(value, str) else value
    return lambda value: value


# -- Binary to Table V2 ---------------------------------------------------------------------------------------

class _Decoder:
    """The Binary to Table protocol of the module docstring, its steps in that order."""

    # 1. load
    def __init__(self, api: Api, context: ConnectorContext) -> None:
        self.api = api
        self.operator = context.operator
        self.snapshots_on = context.snapshots_on
        config = {**DECODER_DEFAULTS, **config_of(api)}
        check_config(self.operator, BINARY_TO_TABLE, config, CodecConfigError)
        self.fmt = str(codec_format(config["inputFormat"], DECODER_FORMATS))
        self.layout = str(config["format"])
        self.batch_size = int(config["batchSize"]) if config_switch(config["outputBatches"]) else 0
        self.csv_options = _csv_options(config) if self.fmt == "CSV" else CsvOptions()
        self.configured_names = _names_of(config, "colNames") if self.fmt == "CSV" else None
        self.date_columns = set(_names_of(config, "dateCols") or ())
        self.text_values = TextValues(
            decimal_separator=str(config["decSep"]), group_separator=config.get("digitGrpSep") or None,
            true=tuple(_names_of(config, "trueValues") or DEFAULT_TRUE),
            false=tuple(_names_of(config, "falseValues") or DEFAULT_FALSE))
        self.static = self._static_columns()
        self.types: dict[tuple[tuple[str, str], ...], DataTypeReference] = {}
        self.index = 0  # the batches published so far (with outputBatches: the state)

    def _static_columns(self) -> list[tuple[str, Callable[[Any], Any]]] | None:
        """The (name, converter) of each column of a table vtype declared on port ``table`` (None: ``*``)."""
        declared = self.api.outputs.table.type_ref
        if declared.type_ != TABLE or declared.type_id == DYNAMIC:
            return None
        try:
            vtype = self.api.type_context.get_vtype(declared)
        except KeyError as err:
            raise CodecConfigError(f"operator {self.operator!r}: output port 'table': {err.args[0]}") from None
        if not isinstance(vtype, VTypeTable):
            raise CodecConfigError(f"operator {self.operator!r}: output port 'table' has type {declared.type_id!r}, "
                                   "which is not a table type")
        return [(name, _converter(self.api.type_context.scalar_template(ref.type_id), self.text_values))
                for name, ref in vtype.columns.items()]

    def register(self) -> None:
        if self.batch_size and self.snapshots_on:
            self.api.set_initial_snapshot_info(self.api.InitialProcessInfo(is_stateful=True))
            self.api.set_serialize_callback(lambda epoch: str(self.index).encode())
            self.api.set_restore_callback(self.restore)
        self.api.set_port_callback("binary", self.on_binary)

    def restore(self, epoch: str, state: bytes) -> None:
        self.index = int(state.decode())

    # 2. port callback
    def on_binary(self, msg_id: bytes, header: Any, body: Any) -> None:
        data = whole_value(body)
        if data is None:
            self.api.outputs.table.publish(None, dict(header or {}))
            return
        if isinstance(data, str):
            data = data.encode("utf-8")
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"operator {self.operator!r}: port 'binary' takes serialized data (bytes), got "
                            f"{type(data).__name__}")
        where = f"operator {self.operator!r}: {self.fmt} on port 'binary'"
        names, rows = self.decode(bytes(data), where)
        names, rows = (self.as_static(names, rows, where) if self.static is not None
                       else self.as_dynamic(names, rows, where))
        self.publish(names, rows, header)

    def decode(self, data: bytes, where: str) -> tuple[list[str] | None, list[list[Any]]]:
        """The data's own column names (None: it has none) and rows, values as the format holds them."""
        if self.fmt == "CSV":
            options = dataclasses.replace(self.csv_options, header=False)  # the header is read as a row here
            rows = [[value if value != "" else None for value in row]
                    for row in iter_rows("csv", io.BytesIO(data), where, options)]
            if self.csv_options.header and rows:
                return [str(name) for name in rows[0]], rows[1:]
            return None, rows
        if self.fmt == "JSONLINES":
            names = [name for name, _ in self.static] if self.static is not None else None
            rows = list(iter_rows("jsonl", io.BytesIO(data), where, columns=names))
            if names is None:  # the keys of the first object, as iter_rows ordered the values
                first = next((line for line in data.splitlines() if line.strip()), b"")
                names = list(json.loads(first)) if first.lstrip().startswith(b"{") else None
            return names, rows
        if self.fmt == "JSON":
            return json_document_rows(data, self.layout, where)
        return arrow_file_rows(self.fmt.lower(), data, where)

    # 3. values
    def as_static(self, names: list[str] | None, rows: list[list[Any]], where: str
                  ) -> tuple[list[str], list[list[Any]]]:
        assert self.static is not None
        wanted = [name for name, _ in self.static]
        if names is not None and self.fmt != "CSV" and names != wanted:
            missing = [name for name in wanted if name not in names]
            if missing:
                raise FileFormatError(f"{where}: the table type of port 'table' has column(s) {', '.join(missing)}, "
                                      f"which the data does not (its columns: {', '.join(names)})")
            positions = [names.index(name) for name in wanted]
            rows = [[row[i] for i in positions] for row in rows]
        converted = []
        for number, row in enumerate(rows):
            if len(row) != len(wanted):
                raise FileFormatError(f"{where}: row {number} has {len(row)} values, but the table type of port "
                                      f"'table' has {len(wanted)} columns ({', '.join(wanted)})")
            values = []
            for value, (name, convert) in zip(row, self.static):
                try:
                    values.append(None if value is None else convert(value))
                except ValueError as err:
                    raise FileFormatError(f"{where}: row {number}, column {name!r}: {err}") from None
            converted.append(values)
        return wanted, converted

    def as_dynamic(self, names: list[str] | None, rows: list[list[Any]], where: str
                   ) -> tuple[list[str], list[list[Any]]]:
        width = len(rows[0]) if rows else len(names or ())
        names = self.configured_names or names or default_columns(width)
        for number, row in enumerate(rows):
            if len(row) != len(names):
                raise FileFormatError(f"{where}: row {number} has {len(row)} values, but there are {len(names)} "
                                      f"columns ({', '.join(names)})")
        columns = [list(column) for column in zip(*rows)] or [[] for _ in names]
        if self.fmt == "CSV":
            columns = [_text_column(column, self.text_values, name in self.date_columns)
                       for name, column in zip(names, columns)]
        else:
            columns = [_text_column(column, TextValues(), True) if name in self.date_columns
                       and all(isinstance(v, str) or v is None for v in column) else _typed_column(column)
                       for name, column in zip(names, columns)]
        return names, [list(row) for row in zip(*columns)]

    # 4. publish
    def table_type(self, names: list[str], rows: list[list[Any]]) -> str:
        """The dynamic table type of ``names`` with each column typed after its first non-null value."""
        type_ids = tuple((name, next((scalar_type_id_for(row[i]) for row in rows if row[i] is not None), STRING_TYPE))
                         for i, name in enumerate(names))
        reference = self.types.get(type_ids)
        if reference is None:
            reference = self.types[type_ids] = self.api.type_context.create_new_table(
                {name: DataTypeReference(SCALAR, type_id) for name, type_id in type_ids})
        return reference.type_id

    def publish(self, names: list[str], rows: list[list[Any]], header: Any) -> None:
        type_id = "" if self.static is not None else self.table_type(names, rows)
        forwarded = dict(header or {})
        if not self.batch_size:
            self.api.outputs.table.publish(Table(rows, type_id) if type_id else Table(rows), forwarded)
            return
        input_ends = BATCH_HEADER not in forwarded or is_last_batch(forwarded)
        slices = [rows[start:start + self.batch_size] for start in range(0, len(rows), self.batch_size)] or [[]]
        for number, part in enumerate(slices):
            batch = {**forwarded, BATCH_HEADER: [self.index, input_ends and number == len(slices) - 1, 0,
                                                 self.batch_size, "rows"]}
            self.api.outputs.table.publish(Table(part, type_id) if type_id else Table(part), batch)
            self.index += 1


def setup_binary_to_table(api: Api, context: ConnectorContext) -> None:
    """Register Binary to Table V2's callbacks on ``api`` (raises ``CodecConfigError`` for a bad config)."""
    _Decoder(api, context).register()


# -- Table to Binary ------------------------------------------------------------------------------------------

class _Encoder:
    """The Table to Binary protocol of the module docstring, its steps in that order."""

    # 1. load
    def __init__(self, api: Api, context: ConnectorContext) -> None:
        self.api = api
        self.operator = context.operator
        self.snapshots_on = context.snapshots_on
        config = {**ENCODER_DEFAULTS, **config_of(api)}
        check_config(self.operator, TABLE_TO_BINARY, config, CodecConfigError)
        self.fmt = str(codec_format(config["outputFormat"], ENCODER_FORMATS))
        self.layout = str(config["format"])
        self.collect = config_switch(config["collectBatches"]) is True
        self.csv_options = _csv_options(config) if self.fmt == "CSV" else CsvOptions()
        self.configured_names = _names_of(config, "colNames") if self.fmt == "CSV" else None
        self.decimal_separator = str(config["decSep"])
        self.date_format = str(config["dateFormat"]) if config.get("dateFormat") else None
        compression = config.get("compression")
        self.compression = str(compression) if compression not in (None, "") else "none"
        self.collected: dict[str, Any] = {"columns": None, "rows": []}

    def register(self) -> None:
        if self.collect and self.snapshots_on:
            self.api.set_initial_snapshot_info(self.api.InitialProcessInfo(is_stateful=True))
            self.api.set_serialize_callback(lambda epoch: pickle.dumps(self.collected))
            self.api.set_restore_callback(self.restore)
        self.api.set_port_callback("table", self.on_table)

    # 3. restore
    def restore(self, epoch: str, state: bytes) -> None:
        self.collected = pickle.loads(state)

    # 2. port callback
    def on_table(self, msg_id: bytes, header: Any, body: Any) -> None:
        value = whole_value(body)
        forwarded = dict(header or {})
        if value is None:
            self.api.outputs.binary.publish(None, forwarded)
            return
        if not isinstance(value, Table):
            raise TypeError(f"operator {self.operator!r}: port 'table' takes tables, got {type(value).__name__}")
        columns = self.columns_of(value)
        if not (self.collect and BATCH_HEADER in forwarded):
            self.api.outputs.binary.publish(self.encode(columns, value.body), forwarded)
            return
        if self.collected["columns"] is None:
            self.collected["columns"] = columns
        self.collected["rows"].extend(list(row) for row in value.body)
        if is_last_batch(forwarded):
            columns, rows = self.collected["columns"], self.collected["rows"]
            self.collected = {"columns": None, "rows": []}
            self.api.outputs.binary.publish(self.encode(columns, rows), forwarded)

    def columns_of(self, table: Table) -> list[str]:
        columns = table_columns(table, self.api.type_context)
        if self.configured_names is not None and self.csv_options.header:
            if table.body and len(self.configured_names) != len(columns):
                raise ValueError(f"operator {self.operator!r}: config 'colNames' names {len(self.configured_names)} "
                                 f"columns, but the tables on port 'table' have {len(columns)} ({', '.join(columns)})")
            return self.configured_names
        return columns

    def encode(self, columns: list[str], rows: Sequence[Sequence[Any]]) -> bytes:
        for number, row in enumerate(rows):
            if len(row) != len(columns):
                raise ValueError(f"operator {self.operator!r}: row {number} of a table on port 'table' has {len(row)} "
                                 f"values, but {len(columns)} columns are written ({', '.join(columns)})")
        if self.fmt == "CSV":
            try:
                return encode_rows("csv", list(self.csv_rows(rows)), columns, self.csv_options)
            except csv.Error as err:
                raise ValueError(f"operator {self.operator!r}: cannot write CSV with config 'quoteChar' "
                                 f"{self.csv_options.quote!r} and 'escapeChar' {self.csv_options.escape!r}: "
                                 f"{err}") from err
        if self.fmt == "JSON":
            return encode_json_document(rows, columns, self.layout)
        if self.fmt == "JSONLINES":
            return encode_rows("jsonl", rows, columns)
        try:
            return encode_rows("parquet", rows, columns, compression=self.compression)
        except ImportError:
            raise
        except Exception as err:  # pyarrow's errors have no common base but Exception
            raise ValueError(f"operator {self.operator!r}: cannot write the table on port 'table' as Parquet: "
                             f"{type(err).__name__}: {err}") from err

    def csv_rows(self, rows: Sequence[Sequence[Any]]) -> Iterator[list[Any]]:
        """The rows with numbers written with ``decSep`` and dates with ``dateFormat`` (when configured)."""
        if self.decimal_separator == "." and self.date_format is None:
            yield from (list(row) for row in rows)
            return
        for row in rows:
            yield [self.csv_text(value) for value in row]

    def csv_text(self, value: Any) -> Any:
        if isinstance(value, (float, decimal.Decimal)) and self.decimal_separator != ".":
            return str(value).replace(".", self.decimal_separator)
        if isinstance(value, (datetime.date, datetime.time)) and self.date_format is not None:
            return value.strftime(self.date_format)
        return value


def setup_table_to_binary(api: Api, context: ConnectorContext) -> None:
    """Register Table to Binary's callbacks on ``api`` (raises ``CodecConfigError`` for a bad config)."""
    _Encoder(api, context).register()


#: component id -> setup (collected by snapgraph.connectors.registry)
BEHAVIOURS: dict[str, Setup] = {BINARY_TO_TABLE.component: setup_binary_to_table,
                                TABLE_TO_BINARY.component: setup_table_to_binary}

__all__ = ["BEHAVIOURS", "CodecConfigError", "TextValues", "setup_binary_to_table", "setup_table_to_binary"]
