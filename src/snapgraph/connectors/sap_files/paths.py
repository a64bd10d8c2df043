"""What SAP's file operators share on local files: where a connection's paths are, the file references
they exchange, and SAP's partitioned-file layout.

**Partitioned files.** A partitioned file is a folder named like the file it stands for
(``output.csv/``) holding its parts, ``part-<uuid>-<index>.<extension>`` or ``part-<index>.<extension>``,
and, once complete, an empty ``_SUCCESS`` file; without it the folder is a write still going on. The
parts of one write share their ``uuid``; an ``Append`` adds a write with another ``uuid`` whose indexes
start at 0 again. Parts are read in the order of (``uuid``, ``index``): snapgraph's producer makes its
uuids sort in the order of its writes. Names starting with ``.`` (writers' temporary files) are never
parts.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from snapgraph.connectors.files.local import BATCH_HEADER, FILE_HEADER, FileConfigError, file_header, is_last_batch
from snapgraph.model.file_builtins import LOCAL_CONNECTION_TYPE

#: The file whose presence marks a partitioned file complete.
SUCCESS_FILE = "_SUCCESS"
PART_NAME = re.compile(r"^part-(?:(?P<uuid>.+)-)?(?P<index>\d+)(?:\.[^/]*)?$")


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

    def reference(self, local: Path, path: str, *, is_dir: bool = False) -> dict[str, Any]:
        """The header of a file reference to ``local``, shown as the connection path ``path``: its
        ``com.sap.headers.file`` (a partitioned file's size is that of its parts; ``isDir`` as given)."""
        fields = file_header(local, self.header_connection())
        if local.is_dir():
            fields[2] = sum(part.stat().st_size for part in part_files(local))
        fields[1], fields[3] = path, is_dir
        return {FILE_HEADER: fields}


def input_path(header: Any) -> str | None:
    """The path of a message's ``com.sap.headers.file``, None without one."""
    fields = list(header[FILE_HEADER]) if header is not None and FILE_HEADER in header else None
    return str(fields[1]) if fields is not None and len(fields) > 1 else None


def ends_its_input(header: Any) -> bool:
    """Whether the input message with ``header`` is the last of its input: its ``com.sap.headers.batch``
    says ``isLast``, or it has none (each message a whole)."""
    return header is None or BATCH_HEADER not in header or is_last_batch(header)


def child_path(path: str, name: str) -> str:
    """The connection path of ``name`` inside the folder at connection path ``path``."""
    return str(PurePosixPath(path) / name)


def is_part_name(name: str) -> bool:
    return PART_NAME.match(name) is not None


def part_files(folder: Path) -> list[Path]:
    """The parts of the partitioned file ``folder``, in reading order (see the module docstring)."""
    found = []
    for entry in folder.iterdir():
        match = PART_NAME.match(entry.name)
        if match and entry.is_file():
            found.append(((match["uuid"] or "", int(match["index"])), entry))
    return [entry for _, entry in sorted(found)]


def looks_partitioned(folder: Path) -> bool:
    """Whether ``folder`` is laid out as a partitioned file (a ``_SUCCESS`` file or a part in it),
    complete or not."""
    return any(entry.name == SUCCESS_FILE or is_part_name(entry.name) for entry in folder.iterdir())


def complete_parts(operator: str, folder: Path, path: str) -> list[Path]:
    """The parts of the partitioned file ``folder`` (connection path ``path``), which must be complete."""
    if not (folder / SUCCESS_FILE).is_file():
        raise ValueError(f"operator {operator!r}: {path!r} is a folder without {SUCCESS_FILE}: not a complete "
                         "partitioned file (a write still going on, or not a partitioned file at all)")
    return part_files(folder)


__all__ = ["PART_NAME", "SUCCESS_FILE", "LocalFiles", "child_path", "complete_parts", "ends_its_input",
           "input_path", "is_part_name", "looks_partitioned", "part_files"]
