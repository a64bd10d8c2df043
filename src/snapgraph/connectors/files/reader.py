"""The file reader: the files of one folder, in name order, as table or binary messages; replayable.

**Which files.** The regular files of ``folder`` whose names match ``pattern`` (a glob, default ``*``;
names starting with ``.`` never match, so writers' temporary files are not read), in the order of their
names. Files are read as they are when the reader reaches them and must not change afterwards: a file
must be complete when it appears (write it elsewhere, or under a name starting with ``.``, then rename
it into the folder).

**Messages.** A table format (``csv``, ``jsonl``, ``parquet``) gives ``api.Table`` messages of up to
``batch`` rows, never spanning two files (a file with no rows gives one empty table); ``binary`` gives
the whole file as one blob, or blobs of ``chunk`` bytes. Every message carries the file's
``com.sap.headers.file`` header and a ``com.sap.headers.batch`` header ``[index, isLast, 0, size,
unit]``: ``index`` counts messages over the whole run and ``isLast`` marks the last message of the last
file (never set when streaming), so a Graph Terminator or a transactional writer sees the end of the
input. An empty folder gives one empty last message.

**State** (serialized at every snapshot): the last file read to its end, the current file and the
offset within it (rows, or bytes for binary) of what was published, and the message index. After a
restore the reader reopens the current file, skips ``offset`` rows (or seeks ``offset`` bytes) and
continues exactly there. Crash point: ``file_reader_published`` (a message published, the position not
yet advanced).

**Streaming** (``streaming: true``): when every file has been read, the folder is listed again every
``poll`` seconds and files whose names sort after the last one read are read next. Files are never read
twice; a new file whose name sorts before the last file read is never read (the reader logs it once):
give new files names that sort after the older ones, e.g. a timestamp or a sequence number first.
"""

from __future__ import annotations

import fnmatch
import itertools
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from snapgraph.api.operator_api import Api
from snapgraph.connectors.base import ConnectorContext, check_config, config_of
from snapgraph.connectors.files.formats import CsvOptions, iter_rows
from snapgraph.connectors.files.local import (
    BATCH_HEADER,
    FILE_HEADER,
    FileConfigError,
    existing_folder,
    file_header,
    switch,
)
from snapgraph.model.builtin_operator import column_names
from snapgraph.model.file_builtins import FILE_READER

DEFAULT_BATCH = 1000
DEFAULT_POLL = 1.0


def list_files(folder: Path, pattern: str, after: str | None) -> list[str]:
    """The names of the regular files of ``folder`` matching ``pattern`` that sort after ``after``."""
    return sorted(entry.name for entry in folder.iterdir()
                  if not entry.name.startswith(".") and fnmatch.fnmatchcase(entry.name, pattern)
                  and (after is None or entry.name > after) and entry.is_file())


class _OpenFile:
    """One file being read: its rows (or bytes) from an offset on, with one item of look-ahead, so the
    reader knows whether a batch is the file's last."""

    def __init__(self, path: Path, fmt: str, offset: int, csv_options: CsvOptions, columns: list[str] | None,
                 chunk: int) -> None:
        self.path = path
        self.binary = fmt == "binary"
        self.stream: IO[bytes] = path.open("rb")
        self.chunk = chunk
        if self.binary:
            self.stream.seek(offset)
            self.rows: Iterator[list[Any]] = iter(())
        else:
            self.rows = iter_rows(fmt, self.stream, str(path), csv_options, columns)
            for _ in itertools.islice(self.rows, offset):
                pass
        self.ahead: list[Any] = []

    def take(self, count: int) -> tuple[Any, int, bool]:
        """The next ``count`` rows (a binary file: the next chunk), how many units that is, and whether
        the file ends with them."""
        if self.binary:
            data = self.stream.read(self.chunk if self.chunk > 0 else -1)
            ended = self.chunk <= 0 or self.stream.tell() >= os.fstat(self.stream.fileno()).st_size
            return data, len(data), ended
        rows = self.ahead + list(itertools.islice(self.rows, count - len(self.ahead)))
        self.ahead = list(itertools.islice(self.rows, 1))
        return rows, len(rows), not self.ahead

    def close(self) -> None:
        self.stream.close()


def setup_file_reader(api: Api, context: ConnectorContext) -> None:
    """Register the file reader's callbacks on ``api`` (raises ``FileConfigError`` for a bad config or a
    folder that does not exist)."""
    operator, checkpoint = context.operator, context.checkpoint
    config = config_of(api)
    check_config(operator, FILE_READER, config, FileConfigError)
    folder = existing_folder(operator, "folder", config["folder"])
    fmt = str(config["format"])
    pattern = str(config.get("pattern", "*"))
    batch = int(config.get("batch", DEFAULT_BATCH))
    chunk = int(config.get("chunk", 0))
    csv_options = CsvOptions(delimiter=str(config.get("delimiter", ",")), header=switch(config, "header", True))
    columns = column_names(config["columns"]) if config.get("columns") is not None else None
    streaming = switch(config, "streaming", False)
    poll = float(config.get("poll", DEFAULT_POLL))
    unit, size = ("bytes", chunk) if fmt == "binary" else ("rows", batch)

    position: dict[str, Any] = {"done": None, "file": None, "offset": 0, "index": 0, "ended": False}
    current: list[_OpenFile] = []  # the open file, if any (closed and dropped on restore)
    reported: set[str] = set()
    # The names known to have been there (read in this or an earlier attempt or run): taken at the first
    # look after a load or a restore, and every file read since. Only a name that sorts before the last
    # file read and is not among them came late.
    known: set[str] = set()
    looked: list[bool] = []

    def report_late_files() -> None:
        if position["done"] is None:
            return
        names = list_files(folder, pattern, None)
        if not looked:
            looked.append(True)
            known.update(name for name in names if name <= position["done"])
        for name in names:
            if name <= position["done"] and name not in known and name not in reported:
                reported.add(name)
                api.logger.warning("file %r appeared in %s after %r was read: it sorts before it, so it is not "
                                   "read (new files must have names that sort after the older ones)",
                                   name, folder, position["done"])

    def open_current() -> _OpenFile:
        if current and current[0].path.name == position["file"]:
            return current[0]
        close_current()
        opened = _OpenFile(folder / position["file"], fmt, position["offset"], csv_options, columns, chunk)
        current.append(opened)
        return opened

    def close_current() -> None:
        while current:
            current.pop().close()

    def read_next() -> float:
        if position["ended"]:
            # the input ended (a savepoint resumed after it): files added since are read, or nothing
            if not list_files(folder, pattern, position["done"]):
                return -1
            position["ended"] = False
        if position["file"] is None:
            waiting = list_files(folder, pattern, position["done"])
            if not waiting:
                if streaming:
                    report_late_files()
                    return poll
                # an empty folder, or none that matches: one empty last message ends the input
                api.outputs.output.publish(b"" if fmt == "binary" else api.Table([]),
                                           {BATCH_HEADER: [position["index"], True, 0, size, unit]})
                position["ended"] = True
                return -1
            position["file"], position["offset"] = waiting[0], 0
        opened = open_current()
        body, count, file_ended = opened.take(batch)
        later_files = file_ended and bool(list_files(folder, pattern, position["file"]))
        is_last = file_ended and not later_files and not streaming
        header = {FILE_HEADER: file_header(opened.path),
                  BATCH_HEADER: [position["index"], is_last, 0, size, unit]}
        api.outputs.output.publish(body if fmt == "binary" else api.Table(body), header)
        checkpoint("file_reader_published")
        position["index"] += 1
        position["offset"] += count
        if file_ended:
            close_current()
            known.add(position["file"])
            position["done"], position["file"], position["offset"] = position["file"], None, 0
        if is_last:
            position["ended"] = True
            return -1
        return 0 if not file_ended or later_files else poll

    def serialize(epoch: str) -> bytes:
        return pickle.dumps(position)

    def restore(epoch: str, state: bytes) -> None:
        close_current()
        position.update(pickle.loads(state))
        looked.clear()  # what was there is looked at again from the restored position

    api.set_initial_snapshot_info(api.InitialProcessInfo(
        is_stateful=True, outports_info={"output": api.OutportInfo(is_generator=True)}))
    api.add_timer(read_next)
    api.set_serialize_callback(serialize)
    api.set_restore_callback(restore)
    api.set_shutdown(close_current)


__all__ = ["list_files", "setup_file_reader"]
