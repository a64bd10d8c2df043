"""SAP's Binary File Consumer (``com.sap.file.read.v2``) on local files.

What is read is a single file or the folder of a complete partitioned file
(:mod:`snapgraph.connectors.sap_files.paths`): a single file is one message, a partitioned file one
message per part, in part order (a partitioned file without parts: one empty message). Each message on
``file`` is the file's bytes with its ``com.sap.headers.file`` (the part's own path) and a
``com.sap.headers.batch`` ``[index, isLast, count, 1, "parts"]``: the index of the part in its read, the
number of parts, and ``isLast`` on the read's last message when the read ends the input, so a Graph
Terminator after the consumer ends the graph there.

**Once** (``mode: Once``): the file or folder of config ``path`` on ``staticConnection``, read by a timer,
one message per call:

0. *Load*: ``path`` must exist on the connection (:func:`existing_static_path`), else the graph is
   refused (exit 2), as the file reader refuses a missing folder.
1. The first call lists what is read (the part paths, or the one file) into the state.
2. Each call publishes the next entry (crash point ``file_consumer_published``: published, the position
   not yet advanced) and advances the position; after the last one the timer stops. The read ends the
   input.
3. *serialize* saves the list and the position; *restore* puts both back, so the read continues with the
   entry after the last one the snapshot covered, and a restored read never lists the folder again
   (:func:`snapgraph.connectors.sap_files.reading.register_once`).

SAP gives snapshot support for ``Once`` on a partitioned folder only, at-least-once. snapgraph keeps the
list with the position, so after a restore the consumer sends exactly the entries that followed the
snapshot, the same ones in the same order (a replayable source; a single file is a list of one): only
what was published after the snapshot is sent again, and the downstream operators were restored to the
same snapshot. Files must not change while the graph runs.

**On input** (``mode: On input``, the default): every message on ``file`` (a header-only file reference)
names, by the path of its ``com.sap.headers.file``, what is read on ``dynamicConnection``; all of it is
published from the port callback (crash point ``file_consumer_published`` after each message). The read
ends the input when the input message carries ``isLast`` in its ``com.sap.headers.batch``, or no batch
header at all. Nothing is kept: a replayed input is read again.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from snapgraph.api.operator_api import Api
from snapgraph.connectors.base import Checkpoint, ConnectorContext, check_config, config_of
from snapgraph.connectors.files.local import BATCH_HEADER, FileConfigError
from snapgraph.connectors.sap_files.paths import LocalFiles, child_path, complete_parts
from snapgraph.connectors.sap_files.reading import register_on_input, register_once
from snapgraph.model.file_builtins import BINARY_FILE_CONSUMER, CONSUMER_DEFAULTS


def existing_static_path(operator: str, files: LocalFiles, path: str) -> str:
    """The config ``path`` of a ``Once`` read (a consumer's or a listing's), checked at load: it must be
    on the connection and exist there, else :class:`FileConfigError` naming the operator, the key and the
    path. Found missing only by the timer's first call, it would fail the run, and every recovery again."""
    try:
        local = files.local_path(path)
    except ValueError as err:
        raise FileConfigError(f"{err} (config 'path')") from None
    if not local.exists():
        raise FileConfigError(f"operator {operator!r}: config 'path': {path!r} ({str(local)!r}) does not exist on "
                              f"the connection of config {files.key!r}")
    return path


class _Reads:
    """What one consumer reads and sends: the entries of a path, and one message per entry."""

    def __init__(self, api: Api, operator: str, files: LocalFiles, checkpoint: Checkpoint) -> None:
        self.api = api
        self.operator = operator
        self.files = files
        self.checkpoint = checkpoint

    def entries(self, path: str) -> list[str]:
        """The connection paths of what reading ``path`` sends: its parts, or itself (a single file, or a
        partitioned file without parts)."""
        local = self.files.local_path(path)
        if local.is_dir():
            return [child_path(path, part.name) for part in complete_parts(self.operator, local, path)] or [path]
        if not local.is_file():
            raise FileNotFoundError(f"operator {self.operator!r}: {path!r} ({str(local)!r}) does not exist")
        return [path]

    def send(self, entry: str, index: int, count: int, is_last: bool) -> None:
        """Publish ``entry`` (an empty body for a folder: a partitioned file without parts)."""
        local: Path = self.files.local_path(entry)
        body = b"" if local.is_dir() else local.read_bytes()
        header = {**self.files.reference(local, entry), BATCH_HEADER: [index, is_last, count, 1, "parts"]}
        self.api.outputs.file.publish(body, header)
        self.checkpoint("file_consumer_published")


def setup_binary_file_consumer(api: Api, context: ConnectorContext) -> None:
    """Register the Binary File Consumer's callbacks on ``api`` (see the module docstring). Raises
    ``FileConfigError`` for a config it cannot run with."""
    config: Mapping[str, Any] = {**CONSUMER_DEFAULTS, **config_of(api)}
    check_config(context.operator, BINARY_FILE_CONSUMER, config, FileConfigError)
    once = config["mode"] == "Once"
    key = "staticConnection" if once else "dynamicConnection"
    reads = _Reads(api, context.operator, LocalFiles(context.operator, key, config[key]), context.checkpoint)
    if once:
        path = existing_static_path(context.operator, reads.files, str(config["path"]))
        register_once(api, "file", path, reads.entries, reads.send)
    else:
        register_on_input(api, context.operator, "file", reads.entries, reads.send)


__all__ = ["existing_static_path", "setup_binary_file_consumer"]
