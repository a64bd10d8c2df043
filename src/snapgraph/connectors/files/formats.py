"""The file formats of the file connectors: reading rows out of a byte stream and writing rows as bytes.

Four formats, by name: ``csv`` (values read as strings; an optional first line of column names),
``jsonl`` (one JSON object, or one JSON array of values, per line), ``parquet`` (through pyarrow, the
``parquet`` extra) and ``binary`` (the bytes as they are: no rows). Reading yields rows one by one, so a
reader can skip the rows a snapshot already covered and stop after a batch; every error names the file
(``where``) and, for the line formats, the line.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

from snapgraph.model.file_builtins import FILE_EXTENSIONS as EXTENSIONS
from snapgraph.model.file_builtins import FILE_FORMATS as FORMATS
from snapgraph.model.file_builtins import TABLE_FILE_FORMATS as TABLE_FORMATS


class FileFormatError(ValueError):
    """Data that is not in the format it was read as: names the file and where in it."""


@dataclass(frozen=True)
class CsvOptions:
    """How CSV is read and written: the column separator, whether the first line names the columns, the
    line terminator (written; any is read) and the quoting character (empty: values are never quoted).
    Also the escape character (None: a quote inside a quoted value is doubled), which values are quoted
    when written (a ``csv.QUOTE_*`` constant) and whether rows with more values than the first are
    dropped when read (else they are an error)."""

    delimiter: str = ","
    header: bool = True
    line_terminator: str = "\n"
    quote: str = '"'
    escape: str | None = None
    quoting: int = csv.QUOTE_MINIMAL
    skip_long_rows: bool = False

    def dialect(self, *, writing: bool) -> dict[str, Any]:
        """The keyword arguments of ``csv.reader`` / ``csv.writer`` for these options."""
        quoting = (self.quoting if writing else csv.QUOTE_MINIMAL) if self.quote else csv.QUOTE_NONE
        return {"delimiter": self.delimiter, "quotechar": self.quote or None, "escapechar": self.escape,
                "doublequote": self.escape is None, "quoting": quoting}


def iter_rows(fmt: str, stream: IO[bytes], where: str, csv_options: CsvOptions = CsvOptions(),
              columns: Sequence[str] | None = None) -> Iterator[list[Any]]:
    """The rows of ``stream`` read as ``fmt`` (a table format), one list each.

    ``columns`` orders the values of JSON-lines objects (default: the keys of the first object)."""
    if fmt == "csv":
        return _csv_rows(stream, where, csv_options)
    if fmt == "jsonl":
        return _jsonl_rows(stream, where, columns)
    if fmt == "parquet":
        return _parquet_rows(stream, where)
    raise ValueError(f"{fmt!r} is not a table format (one of {', '.join(TABLE_FORMATS)})")


def _csv_rows(stream: IO[bytes], where: str, options: CsvOptions) -> Iterator[list[Any]]:
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    reader = csv.reader(text, **options.dialect(writing=False))
    width: int | None = None
    try:
        for row in reader:
            if not row:
                continue  # a blank line
            if width is None:
                width = len(row)
                if options.header:
                    continue
            if len(row) > width and options.skip_long_rows:
                continue
            if len(row) != width:
                raise FileFormatError(f"{where}:{reader.line_num}: a CSV row of {len(row)} values, but the "
                                      f"{'header' if options.header else 'first row'} has {width}")
            yield row
    except UnicodeDecodeError as err:
        raise FileFormatError(f"{where}: not UTF-8 text, so not CSV ({err.reason} at byte {err.start})") from err
    except csv.Error as err:
        raise FileFormatError(f"{where}:{reader.line_num}: not valid CSV: {err}") from err
    finally:
        if not text.closed:
            text.detach()  # the stream stays its owner's to close


def _jsonl_rows(stream: IO[bytes], where: str, columns: Sequence[str] | None) -> Iterator[list[Any]]:
    names = list(columns) if columns else None
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise FileFormatError(f"{where}:{number}: not a JSON value: {err}") from err
        if isinstance(value, list):
            yield value
            continue
        if not isinstance(value, dict):
            raise FileFormatError(f"{where}:{number}: a JSON line must be an object or an array, got "
                                  f"{type(value).__name__}")
        if names is None:
            names = list(value)
        unknown = [key for key in value if key not in names]
        if unknown:
            raise FileFormatError(f"{where}:{number}: key(s) {', '.join(map(repr, unknown))} are not among the "
                                  f"columns ({', '.join(names)})")
        yield [value.get(name) for name in names]


def _parquet_rows(stream: IO[bytes], where: str) -> Iterator[list[Any]]:
    import pyarrow.parquet as pq  # the optional extra, imported only where Parquet is read

    try:
        parquet = pq.ParquetFile(stream)
        for batch in parquet.iter_batches():
            columns = [column.to_pylist() for column in batch.columns]
            yield from (list(row) for row in zip(*columns))
    except Exception as err:  # pyarrow's errors have no common base but Exception
        if isinstance(err, FileFormatError):
            raise
        raise FileFormatError(f"{where}: not a Parquet file: {type(err).__name__}: {err}") from err


def encode_rows(fmt: str, rows: Sequence[Sequence[Any]], columns: Sequence[str],
                csv_options: CsvOptions = CsvOptions(), compression: str = "snappy") -> bytes:
    """``rows`` (each as long as ``columns``) written in the table format ``fmt``, as one file's bytes
    (Parquet compressed with ``compression``: ``snappy``, ``gzip``, ``brotli`` or ``none``)."""
    if fmt == "csv":
        text = io.StringIO()
        writer = csv.writer(text, lineterminator=csv_options.line_terminator, **csv_options.dialect(writing=True))
        if csv_options.header:
            writer.writerow(columns)
        writer.writerows(rows)
        return text.getvalue().encode("utf-8")
    if fmt == "jsonl":
        return "".join(json.dumps(dict(zip(columns, row)), default=str) + "\n" for row in rows).encode("utf-8")
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table({name: [row[i] for row in rows] for i, name in enumerate(columns)})
        sink = io.BytesIO()
        pq.write_table(table, sink, compression=compression)
        return sink.getvalue()
    raise ValueError(f"{fmt!r} is not a table format (one of {', '.join(TABLE_FORMATS)})")


# -- whole documents: JSON in pandas' layouts, Parquet and ORC files read at once ----------------------

def _union_of_keys(objects: Sequence[Any], where: str, layout: str) -> list[str]:
    names: dict[str, None] = {}
    for number, value in enumerate(objects):
        if not isinstance(value, dict):
            raise FileFormatError(f"{where}: JSON layout {layout!r}: item {number} is a {type(value).__name__}, "
                                  "not an object")
        names.update(dict.fromkeys(value))
    return list(names)


def json_document_rows(data: bytes, layout: str, where: str) -> tuple[list[str] | None, list[list[Any]]]:
    """The column names (None: the layout has none) and rows of one JSON document in ``layout``, one of
    pandas' orients: ``records`` (a list of objects), ``values`` (a list of lists), ``split``
    (``columns``, ``index``, ``data``), ``index`` (objects by row key), ``columns`` (column objects by row
    key) or ``table`` (``schema.fields`` and ``data`` records; a primary key ``index`` is the row label,
    not a column). Objects missing a column give None there."""
    try:
        document = json.loads(data)
        if layout == "values":
            if not isinstance(document, list) or not all(isinstance(row, list) for row in document):
                raise FileFormatError(f"{where}: JSON layout 'values' is a list of lists")
            return None, [list(row) for row in document]
        if layout == "split":
            return [str(name) for name in document["columns"]], [list(row) for row in document["data"]]
        if layout in ("records", "index"):
            records = document if layout == "records" else list(document.values())
            names = _union_of_keys(records, where, layout)
            return names, [[record.get(name) for name in names] for record in records]
        if layout == "columns":
            names = list(document)
            labels = _union_of_keys(list(document.values()), where, layout)  # the row keys, in order
            return names, [[document[name].get(label) for name in names] for label in labels]
        if layout == "table":
            fields = [str(field["name"]) for field in document["schema"]["fields"]]
            if document["schema"].get("primaryKey") == ["index"] and "index" in fields:
                fields.remove("index")
            return fields, [[record.get(name) for name in fields] for record in document["data"]]
    except FileFormatError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        what = f"missing {err}" if isinstance(err, KeyError) else str(err)
        raise FileFormatError(f"{where}: not JSON in the {layout!r} layout: {what}") from err
    raise ValueError(f"{layout!r} is not a JSON layout (records, values, split, index, columns, table)")


def _schema_type(values: list[Any]) -> str:
    """The JSON table schema type of a column's values (``string`` when mixed or all null)."""
    kinds = {type(value) for value in values if value is not None}
    if kinds == {bool}:
        return "boolean"
    if kinds and kinds <= {int}:
        return "integer"
    if kinds and kinds <= {int, float}:
        return "number"
    if kinds and all(issubclass(kind, (datetime.date, datetime.time)) for kind in kinds):
        return "datetime"
    return "string"


def encode_json_document(rows: Sequence[Sequence[Any]], columns: Sequence[str], layout: str) -> bytes:
    """``rows`` as one JSON document in ``layout`` (see :func:`json_document_rows`; row keys are the
    row numbers, ``table`` has no primary key). Values JSON cannot hold are written as their ``str``."""
    names = list(columns)
    records = [dict(zip(names, row)) for row in rows]
    document: Any
    if layout == "records":
        document = records
    elif layout == "values":
        document = [list(row) for row in rows]
    elif layout == "split":
        document = {"columns": names, "index": list(range(len(rows))), "data": [list(row) for row in rows]}
    elif layout == "index":
        document = {str(number): record for number, record in enumerate(records)}
    elif layout == "columns":
        document = {name: {str(number): row[i] for number, row in enumerate(rows)} for i, name in enumerate(names)}
    elif layout == "table":
        fields = [{"name": name, "type": _schema_type([row[i] for row in rows])} for i, name in enumerate(names)]
        document = {"schema": {"fields": fields}, "data": records}
    else:
        raise ValueError(f"{layout!r} is not a JSON layout (records, values, split, index, columns, table)")
    return json.dumps(document, default=str).encode("utf-8")


def arrow_file_rows(fmt: str, data: bytes, where: str) -> tuple[list[str], list[list[Any]]]:
    """The column names and rows of a whole ``parquet`` or ``orc`` file's bytes (through pyarrow)."""
    if fmt not in ("parquet", "orc"):
        raise ValueError(f"{fmt!r} is not a columnar file format (parquet, orc)")
    import pyarrow.orc as orc  # the optional extra, imported only where these formats are read
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(io.BytesIO(data)) if fmt == "parquet" else orc.ORCFile(io.BytesIO(data)).read()
    except Exception as err:  # pyarrow's errors have no common base but Exception
        raise FileFormatError(f"{where}: not a {fmt} file: {type(err).__name__}: {err}") from err
    columns = [column.to_pylist() for column in table.columns]
    return list(table.column_names), [list(row) for row in zip(*columns)]


def default_columns(width: int) -> list[str]:
    """Column names for rows that come without any: ``col0``, ``col1``, … (as untyped tables have)."""
    return [f"col{index}" for index in range(width)]


__all__ = ["EXTENSIONS", "FORMATS", "TABLE_FORMATS", "CsvOptions", "FileFormatError", "arrow_file_rows",
           "default_columns", "encode_json_document", "encode_rows", "iter_rows", "json_document_rows"]
