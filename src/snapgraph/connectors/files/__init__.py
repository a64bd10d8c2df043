"""File connectors: a replayable reader of the files in a folder and a writer that publishes one part
file per epoch exactly once (CSV, JSON lines, Parquet, binary), with the ``com.sap.headers.file`` headers
SAP's file operators exchange. The reader is :mod:`.reader`, the writer :mod:`.writer` (its protocol in
its docstring), the formats :mod:`.formats`, the atomic publishing :mod:`.parts`; their descriptors are
in :mod:`snapgraph.model.file_builtins` and the config keys in docs/connectors.md."""

from __future__ import annotations

from snapgraph.connectors.base import Setup
from snapgraph.connectors.files.reader import setup_file_reader
from snapgraph.connectors.files.writer import setup_file_writer
from snapgraph.model.file_builtins import FILE_READER, FILE_WRITER

#: component id -> setup (collected by snapgraph.connectors.registry)
BEHAVIOURS: dict[str, Setup] = {FILE_READER.component: setup_file_reader, FILE_WRITER.component: setup_file_writer}

__all__ = ["BEHAVIOURS", "setup_file_reader", "setup_file_writer"]
