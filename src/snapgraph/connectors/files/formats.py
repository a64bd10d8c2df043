"""The file formats of the file connectors: reading rows out of a byte stream and writing rows as bytes.

Four formats, by name: ``csv`` (values read as strings; an optional first line of column names),
``jsonl`` (one JSON object, or one JSON array of values, per line), ``parquet`` (through pyarrow, the
``parquet`` extra) and ``binary`` (the bytes as they are: no rows). Reading yields rows one by one, so a
reader can skip the rows a snapshot already covered and stop after a batch; every error names the file
(``where``) and, for the line formats, the line.
"""

from __future__ import annotations

import csv
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
    line terminator (written; any is read) and the quoting character."""

    delimiter: str = ","
    header: bool = True
    line_terminator: str = "\n"
    quote: str = '"'


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
    reader = csv.reader(text, delimiter=options.delimiter, quotechar=options.quote)
    width: int | None = None
    try:
        for row in reader:
            if not row:
                continue  # a blank line
            if width is None:
                width = len(row)
                if options.header:
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
                csv_options: CsvOptions = CsvOptions()) -> bytes:
    """``rows`` (each as long as ``columns``) written in the table format ``fmt``, as one file's bytes."""
    if fmt == "csv":
        text = io.StringIO()
        writer = csv.writer(text, delimiter=csv_options.delimiter, quotechar=csv_options.quote,
                            lineterminator=csv_options.line_terminator)
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
        pq.write_table(table, sink)
        return sink.getvalue()
    raise ValueError(f"{fmt!r} is not a table format (one of {', '.join(TABLE_FORMATS)})")


def default_columns(width: int) -> list[str]:
    """Column names for rows that come without any: ``col0``, ``col1``, … (as untyped tables have)."""
    return [f"col{index}" for index in range(width)]


__all__ = ["EXTENSIONS", "FORMATS", "TABLE_FORMATS", "CsvOptions", "FileFormatError", "default_columns",
           "encode_rows", "iter_rows"]
