"""The file writer: the messages of each epoch as one part file, published exactly once.

The writer writes into ``folder`` files named ``<prefix>-<number>.<extension>`` (``part-000000.csv``,
…): one part per epoch that received anything, numbered in order. It never writes outside ``folder``,
never overwrites a file (parts of earlier runs stay; a name taken by a foreign file fails the publish,
naming it) and publishes by atomic rename (:mod:`snapgraph.connectors.files.parts`: temporary files are
``.<part name>.<graph>-<operator>.<seq>.sg-tmp``, hidden from readers of the folder). The protocol, in
order (the code below follows it):

1. *Load*: check the config; ``folder`` must exist and be writable.
2. *Port callback*: the message's rows (a table format) or bytes (``binary``) join the current epoch's
   pending data, in memory; nothing is written.
3. *serialize(E)*: the pending data, if any, is encoded as one part file and written under its temporary
   name and flushed to disk before serialize returns, so it is durable before the operator acknowledges
   E (crash point ``file_writer_staged``); the state is the part counter.
4. *epoch_complete(E)*: every part staged in an epoch up to E, oldest first, is published: hard-linked to
   its final name (crash point ``file_writer_linked``), its temporary name removed, the folder flushed
   (``file_writer_published``). A part already published is skipped, so the second
   ``epoch_complete(E)`` after a recovery from E is a no-op.
5. *restore(E)* (a recovery): temporary parts numbered below the restored counter were staged in epochs
   up to E, which completed, but the failed attempt may have died before its ``epoch_complete``
   published them: they are published now. Temporary parts from the counter on belong to epochs after
   E, which never completed and are replayed: they are deleted.
6. *prestart without a restore* (a new run): this writer's temporary parts left by an earlier run are
   deleted; numbering continues after the highest part number already in the folder.
7. *Without snapshots* there are no epochs: the pending data is written and published as one part when
   a message with ``isLast`` true in its ``com.sap.headers.batch`` header arrives (a reader's last
   message). A failure before it publishes nothing (the restart from scratch writes everything once);
   data still pending at shutdown is reported, not written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from snapgraph.api.data import Table
from snapgraph.api.operator_api import Api
from snapgraph.api.streams import whole_value
from snapgraph.api.table import table_columns
from snapgraph.connectors.base import ConnectorContext, check_config, config_of, register_epoch_commits
from snapgraph.connectors.files.formats import EXTENSIONS, CsvOptions, default_columns, encode_rows
from snapgraph.connectors.files.local import FileConfigError, existing_folder, is_last_batch, switch
from snapgraph.connectors.files.parts import PartStager, writer_tag
from snapgraph.model.builtin_operator import column_names
from snapgraph.model.file_builtins import FILE_WRITER

#: The epoch of the one part written without snapshots.
NO_EPOCH = ""


class _Parts:
    """What one part file holds so far: rows with their column names, or bytes."""

    def __init__(self, operator: str, fmt: str, columns: list[str] | None) -> None:
        self.operator = operator
        self.fmt = fmt
        self.columns = columns
        self.rows: list[list[Any]] = []
        self.blobs: list[bytes] = []

    def add(self, body: Any) -> None:
        value = whole_value(body)
        if self.fmt == "binary":
            if not isinstance(value, (bytes, bytearray)):
                raise TypeError(f"operator {self.operator!r}: format 'binary' writes binary messages, but a message "
                                f"on port 'input' is {type(value).__name__}")
            self.blobs.append(bytes(value))
            return
        if not isinstance(value, Table):
            raise TypeError(f"operator {self.operator!r}: format {self.fmt!r} writes tables, but a message on port "
                            f"'input' is {type(value).__name__}")
        if self.columns is None and value.body:
            self.columns = table_columns(value) if value.is_typed() else default_columns(len(value.body[0]))
        for index, row in enumerate(value.body):
            if self.columns is not None and len(row) != len(self.columns):
                raise ValueError(f"operator {self.operator!r}: row {index} of a message on port 'input' has "
                                 f"{len(row)} values, but {len(self.columns)} columns are written "
                                 f"({', '.join(self.columns)})")
        self.rows.extend(list(row) for row in value.body)

    def __bool__(self) -> bool:
        return bool(self.rows or self.blobs)

    def size(self) -> int:
        return len(self.rows) if self.fmt != "binary" else sum(map(len, self.blobs))

    def encode(self, csv_options: CsvOptions) -> bytes:
        if self.fmt == "binary":
            return b"".join(self.blobs)
        return encode_rows(self.fmt, self.rows, self.columns or [], csv_options)


def setup_file_writer(api: Api, context: ConnectorContext) -> None:
    """Register the file writer's callbacks on ``api`` (raises ``FileConfigError`` for a bad config or a
    folder that is missing or not writable)."""
    _FileWriter(api, context).register()


class _FileWriter:
    """The protocol of the module docstring, its steps in that order."""

    # 1. load
    def __init__(self, api: Api, context: ConnectorContext) -> None:
        self.api = api
        self.operator = context.operator
        self.snapshots_on = context.snapshots_on
        config = config_of(api)
        check_config(self.operator, FILE_WRITER, config, FileConfigError)
        self.folder = existing_folder(self.operator, "folder", config["folder"], writable=True)
        self.fmt = str(config["format"])
        self.prefix = str(config.get("prefix", "part"))
        self.columns = column_names(config["columns"]) if config.get("columns") is not None else None
        self.csv_options = CsvOptions(delimiter=str(config.get("delimiter", ",")),
                                      header=switch(config, "header", True))
        self.part_name = re.compile(re.escape(self.prefix) + r"-(\d{6,})\." + re.escape(EXTENSIONS[self.fmt]) + "$")
        self.stager = PartStager(self.operator, writer_tag(api.graph_name, self.operator), context.checkpoint)
        self.pending = self.new_part()
        self.restored = False

    def register(self) -> None:
        api = self.api
        register_epoch_commits(api, self, self.snapshots_on)
        api.set_prestart(self.prestart)
        api.set_port_callback("input", self.on_input)
        api.set_shutdown(self.shutdown)

    def new_part(self) -> _Parts:
        return _Parts(self.operator, self.fmt, self.columns)

    def final_path(self, seq: int) -> Path:
        return self.folder / f"{self.prefix}-{seq:06d}.{EXTENSIONS[self.fmt]}"

    # 2. port callback
    def on_input(self, msg_id: bytes, header: Any, body: Any) -> None:
        self.pending.add(body)
        if not self.snapshots_on and is_last_batch(header):
            self.write_input()  # 7.

    # 3. serialize(E)
    def serialize(self, epoch: str) -> bytes:
        self.stage(epoch)
        return str(self.stager.next_seq).encode()

    def stage(self, epoch: str) -> None:
        if self.pending:
            self.stager.stage(self.final_path(self.stager.next_seq), self.pending.encode(self.csv_options), epoch)
            self.pending = self.new_part()

    # 4. epoch_complete(E)
    def epoch_complete(self, epoch: str) -> None:
        for part in self.stager.publish_through(epoch):
            self.api.logger.info("published %s", part.final.name)

    # 5. restore(E)
    def restore(self, epoch: str, state: bytes) -> None:
        self.restored = True
        for part in self.stager.recover([self.folder], int(state.decode())):
            self.api.logger.info("published %s of a completed epoch, after the recovery", part.final.name)

    # 6. prestart without a restore
    def prestart(self) -> None:
        if self.restored:
            return
        self.stager.discard([self.folder])
        numbers = [int(match[1]) for entry in self.folder.iterdir() if (match := self.part_name.match(entry.name))]
        self.stager.next_seq = max(numbers, default=-1) + 1

    # 7. without snapshots
    def write_input(self) -> None:
        self.stage(NO_EPOCH)
        self.stager.publish_through(NO_EPOCH)

    def shutdown(self) -> None:
        if self.pending and not self.snapshots_on:
            unit = "bytes" if self.fmt == "binary" else "rows"
            self.api.logger.warning("%d %s were not written to %s: no message with isLast in its "
                                    "com.sap.headers.batch header ended the input", self.pending.size(), unit,
                                    self.folder)


__all__ = ["setup_file_writer"]
