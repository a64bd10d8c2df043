"""SAP's file operators on local files: the Binary File Producer (``com.sap.file.write.v2``).

The descriptor, config checks and the connections accepted are :mod:`snapgraph.model.file_builtins`;
what is supported and what is refused is in docs/connectors.md ("SAP's file operators").

**Binary File Producer**, ``fileMode: Single file``: every message on ``file`` is one write of its body
to one file, whose path comes from the input's ``com.sap.headers.file`` (``pathMode: Dynamic (from
input)``, the default) or from config ``path`` (``Static (from configuration)``; ``Static with
placeholders`` replaces ``<counter>``, ``<date>``, ``<time>``, ``<dirname>``, ``<basename>``,
``<extension>``, ``<multiplicity>``, ``<multiplicityIndex>`` and ``<header:NAME>``). The path is relative
to the connection: with a ``LOCAL_FILE_SYSTEM`` connection a path that leaves its ``rootPath`` is
refused. ``mode`` decides what happens to a file that exists: ``Overwrite`` replaces it atomically (the
new content is written beside it and renamed over it), ``Append`` appends, ``Create only`` fails the
operator naming the file, or with ``incrementName: true`` writes ``name (1).ext`` (``(2)``, …) instead.
After the write the producer sends a header-only message on ``file`` with the file's
``com.sap.headers.file`` (``connection``, the path as configured, size, ``isDir`` false, ``modTime``)
and the input's ``com.sap.headers.batch``, so a Graph Terminator after it waits for the input's last
batch. Crash point: ``file_producer_written`` (the file written, the message not yet sent).

SAP gives a single-file producer no state management: after a recovery the replayed messages are written
again. ``Overwrite`` writes the same bytes again (idempotent), ``Append`` appends them again and ``Create
only`` finds its file (at-least-once, which ``snapgraph validate`` says).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from snapgraph.api.operator_api import Api
from snapgraph.api.streams import whole_value
from snapgraph.connectors.base import ConnectorContext, Setup, check_config, config_of
from snapgraph.connectors.files.local import (
    BATCH_HEADER,
    FILE_HEADER,
    FileConfigError,
    file_header,
    switch,
)
from snapgraph.model.file_builtins import BINARY_FILE_PRODUCER, LOCAL_CONNECTION_TYPE, PRODUCER_DEFAULTS


class LocalFiles:
    """Where the paths of one connection are on this machine: under ``root`` (a ``LOCAL_FILE_SYSTEM``
    connection), or as given (SAP's Local File System, ``root`` None)."""

    def __init__(self, operator: str, key: str, connection: Mapping[str, Any]) -> None:
        self.operator = operator
        self.key = key
        self.connection = connection
        self.root: Path | None = None
        if str(connection.get("connectionType", "")).upper() == LOCAL_CONNECTION_TYPE:
            root = Path(str(connection["connectionProperties"]["rootPath"])).expanduser()
            if not root.is_dir():
                raise FileConfigError(f"operator {operator!r}: config {key!r}: connection "
                                      f"{connection.get('connectionID', '?')!r} has rootPath {str(root)!r}, "
                                      "which is not a folder")
            self.root = Path(os.path.normpath(root.absolute()))

    def header_connection(self) -> str:
        """The connection field of the file headers: the connection as configured, as JSON."""
        shown = {key: value for key, value in self.connection.items() if key in ("configurationType", "connectionID")}
        if self.root is not None:
            shown.setdefault("configurationType", "Connection Management")
        return json.dumps(shown)

    def local_path(self, path: str) -> Path:
        """The local file a connection path means (raises ``ValueError`` for one outside the root)."""
        if self.root is None:
            return Path(path).expanduser()
        relative = str(PurePosixPath("/", path)).lstrip("/")
        local = Path(os.path.normpath(self.root / relative))
        if local != self.root and not local.is_relative_to(self.root):
            raise ValueError(f"operator {self.operator!r}: path {path!r} leaves the folder {str(self.root)!r} of "
                             f"connection {self.connection.get('connectionID', '?')!r}")
        return local


_PLACEHOLDER = re.compile(r"<(counter|date|time|dirname|basename|extension|multiplicity|multiplicityIndex|"
                          r"header:[^>]+)>")


def fill_placeholders(template: str, *, counter: int, input_path: str | None, header: Any, api: Api) -> str:
    """``template`` with SAP's path placeholders replaced (the Binary File Producer's list)."""
    now = datetime.now()

    def value(match: re.Match[str]) -> str:
        name = match[1]
        if name in ("dirname", "basename", "extension"):
            if input_path is None:
                raise ValueError(f"placeholder <{name}> needs the input's {FILE_HEADER} path, but the message has "
                                 "none")
            pure = PurePosixPath(input_path)
            return {"dirname": str(pure.parent), "basename": pure.name, "extension": pure.suffix.lstrip(".")}[name]
        if name.startswith("header:"):
            key = name.removeprefix("header:")
            if header is None or key not in header:
                raise ValueError(f"placeholder <{name}>: the message has no header {key!r}")
            found = header[key]
            return str(list(found)[0] if isinstance(found, (list, tuple)) and len(found) == 1 else found)
        return {"counter": f"{counter:06d}", "date": now.strftime("%Y%m%d"), "time": now.strftime("%H%M%S"),
                "multiplicity": str(api.multiplicity), "multiplicityIndex": str(api.multiplicity_index)}[name]

    return _PLACEHOLDER.sub(value, template)


def _numbered(path: Path) -> Path:
    """The first ``name (n).ext`` beside ``path`` that does not exist."""
    number = 1
    while (candidate := path.with_name(f"{path.stem} ({number}){path.suffix}")).exists():
        number += 1
    return candidate


def setup_binary_file_producer(api: Api, context: ConnectorContext) -> None:
    """Register the Binary File Producer's callbacks on ``api`` (single file mode; see the module
    docstring). Raises ``FileConfigError`` for a config it cannot run with."""
    operator, checkpoint = context.operator, context.checkpoint
    config = {**PRODUCER_DEFAULTS, **config_of(api)}
    check_config(operator, BINARY_FILE_PRODUCER, config, FileConfigError)
    files = LocalFiles(operator, "connection", config["connection"])
    path_mode, mode = str(config["pathMode"]), str(config["mode"])
    increment = switch(config, "incrementName", False)
    counter = [0]
    if context.snapshots_on and mode != "Overwrite":
        api.logger.warning("mode %r with fileMode 'Single file' keeps no state: messages replayed after a "
                           "recovery are written again (at-least-once)", mode)

    def target_of(header: Any) -> str:
        fields = list(header[FILE_HEADER]) if header is not None and FILE_HEADER in header else None
        input_path = str(fields[1]) if fields is not None and len(fields) > 1 else None
        if path_mode == "Dynamic (from input)":
            if input_path is None:
                raise ValueError(f"operator {operator!r}: pathMode 'Dynamic (from input)' takes the path from the "
                                 f"{FILE_HEADER} header, but a message on port 'file' has none")
            return input_path
        if path_mode == "Static (from configuration)":
            return str(config["path"])
        counter[0] += 1
        return fill_placeholders(str(config["path"]), counter=counter[0], input_path=input_path, header=header,
                                 api=api)

    def write(local: Path, data: bytes) -> Path:
        local.parent.mkdir(parents=True, exist_ok=True)
        if mode == "Append":
            with local.open("ab") as out:
                out.write(data)
            return local
        if mode == "Overwrite":
            temp = local.with_name(f".{local.name}.sg-tmp")
            temp.write_bytes(data)
            os.replace(temp, local)
            return local
        try:
            with local.open("xb") as out:  # Create only
                out.write(data)
            return local
        except FileExistsError:
            if not increment:
                raise FileExistsError(f"operator {operator!r}: mode 'Create only': {str(local)!r} exists (set "
                                      "incrementName to write a numbered file beside it)") from None
        numbered = _numbered(local)
        with numbered.open("xb") as out:
            out.write(data)
        return numbered

    def on_file(msg_id: bytes, header: Any, body: Any) -> None:
        data = whole_value(body)
        if data is None:
            data = b""
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError(f"operator {operator!r}: port 'file' takes binary messages, got {type(data).__name__}")
        path = target_of(header)
        written = write(files.local_path(path), bytes(data))
        checkpoint("file_producer_written")
        shown = path if written.name == Path(path).name else str(PurePosixPath(path).with_name(written.name))
        out: dict[str, Any] = {FILE_HEADER: file_header(written, files.header_connection())}
        out[FILE_HEADER][1] = shown
        if header is not None and BATCH_HEADER in header:
            out[BATCH_HEADER] = list(header[BATCH_HEADER])
        if api.is_outport_connected["file"]:
            api.outputs.file.publish(None, out)

    api.set_port_callback("file", on_file)


#: component id -> setup (collected by snapgraph.connectors.registry)
BEHAVIOURS: dict[str, Setup] = {BINARY_FILE_PRODUCER.component: setup_binary_file_producer}

__all__ = ["BEHAVIOURS", "LocalFiles", "fill_placeholders", "setup_binary_file_producer"]
