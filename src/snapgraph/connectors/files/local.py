"""What the file connectors share: their config, the headers SAP's file operators exchange, and the
local paths a connection allows.

``com.sap.headers.file`` holds, in this order, ``connection`` (a JSON string of the connection config),
``path``, ``size`` (bytes), ``isDir`` and ``modTime`` (ISO 8601, UTC); ``com.sap.headers.batch`` holds
``index``, ``isLast``, ``count`` (0: not known), ``size`` (the intended batch size) and ``unit``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from snapgraph.connectors.base import ConnectorConfigError
from snapgraph.model.builtin_operator import config_switch
from snapgraph.model.file_builtins import LOCAL_CONFIGURATION_TYPE

FILE_HEADER = "com.sap.headers.file"
BATCH_HEADER = "com.sap.headers.batch"
#: The connection field of the file headers snapgraph's own reader sends.
LOCAL_CONNECTION_JSON = json.dumps({"configurationType": LOCAL_CONFIGURATION_TYPE})


class FileConfigError(ConnectorConfigError):
    """A file connector that cannot run as configured: names the operator and the config key."""








def existing_folder(operator: str, key: str, value: Any, *, writable: bool = False) -> Path:
    """The folder config ``key`` names, which must exist (and be writable when ``writable``)."""
    folder = Path(str(value)).expanduser()
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise FileConfigError(f"operator {operator!r}: config {key!r}: {str(folder)!r} {what}")
    if writable and not os.access(folder, os.W_OK | os.X_OK):
        raise FileConfigError(f"operator {operator!r}: config {key!r}: folder {str(folder)!r} is not writable")
    return folder


def switch(config: Mapping[str, Any], key: str, default: bool) -> bool:
    value = config_switch(config.get(key, default))
    return default if value is None else value


def file_header(path: Path, connection: str = LOCAL_CONNECTION_JSON, *, size: int | None = None) -> list[Any]:
    """The ``com.sap.headers.file`` fields of the file at ``path`` (``size`` given: a file not on disk)."""
    if size is None:
        stat = path.stat()
        size, modified = stat.st_size, stat.st_mtime
    else:
        modified = datetime.now(UTC).timestamp()
    mod_time = datetime.fromtimestamp(modified, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return [connection, str(path), size, False, mod_time]


def is_last_batch(header: Any) -> bool:
    """Whether ``header`` has a ``com.sap.headers.batch`` whose ``isLast`` is true."""
    batch = header.get(BATCH_HEADER) if header is not None else None
    return batch is not None and len(list(batch)) > 1 and config_switch(list(batch)[1]) is True


def sync_folder(folder: Path) -> None:
    """Make the renames and removals in ``folder`` durable (its directory entry flushed)."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


__all__ = ["BATCH_HEADER", "FILE_HEADER", "LOCAL_CONNECTION_JSON", "FileConfigError",
           "existing_folder", "file_header", "is_last_batch", "switch", "sync_folder"]
