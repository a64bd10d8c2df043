"""The file family of built-ins: snapgraph's folder reader and part-file writer, and SAP's Binary File
Producer mapped onto the local file system (behaviour: :mod:`snapgraph.connectors.files` and
:mod:`snapgraph.connectors.sap_files`; the config keys and what each promises: docs/connectors.md).

Local files only. SAP's file operators name a storage service through their ``connection``; snapgraph
accepts the two that mean this machine's file system and refuses every other one by name:

* ``{configurationType: "Local File System"}``: SAP's own choice without a connection id; paths are
  this machine's (a relative one is relative to the working directory).
* a connection id whose ``--connections`` entry has ``connectionType: LOCAL_FILE_SYSTEM`` and
  ``connectionProperties: {rootPath: FOLDER}``: paths are relative to that folder (a leading ``/`` is
  the folder itself, as SAP's paths are relative to their connection) and may not leave it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from snapgraph.model.builtin_operator import BuiltinOperator, column_names, config_number, config_switch
from snapgraph.model.delivery import DeliveryTraits, WriterKind

FILE_FORMATS = ("csv", "jsonl", "parquet", "binary")
TABLE_FILE_FORMATS = ("csv", "jsonl", "parquet")
#: The extension of each format's files.
FILE_EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "parquet": "parquet", "binary": "bin"}

#: The connectionType of a --connections entry that is a folder of this machine.
LOCAL_CONNECTION_TYPE = "LOCAL_FILE_SYSTEM"
#: SAP's configurationType for the local file system (no connection id).
LOCAL_CONFIGURATION_TYPE = "Local File System"


# -- snapgraph's reader and writer ---------------------------------------------------------------------

def _check_text(config: Mapping[str, Any], key: str, why: str, required: bool = True) -> list[str]:
    value = config.get(key)
    if value is None:
        return [f"config '{key}' is missing: {why}"] if required else []
    if not isinstance(value, str) or not value.strip():
        return [f"config '{key}' must be a non-empty string, got {value!r}"]
    return []


def _check_format(config: Mapping[str, Any]) -> list[str]:
    fmt = config.get("format")
    if fmt is None:
        return [f"config 'format' is missing: one of {', '.join(FILE_FORMATS)}"]
    if fmt not in FILE_FORMATS:
        return [f"config 'format' must be one of {', '.join(FILE_FORMATS)}, got {fmt!r}"]
    return []


def _check_csv(config: Mapping[str, Any]) -> list[str]:
    problems = []
    if "header" in config and config_switch(config["header"]) is None:
        problems.append(f"config 'header' must be true or false, got {config['header']!r}")
    delimiter = config.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        problems.append(f"config 'delimiter' must be one character, got {delimiter!r}")
    if config.get("columns") is not None and column_names(config["columns"]) is None:
        problems.append(f"config 'columns' must be a column name or a list of column names, got {config['columns']!r}")
    return problems


def _check_whole(config: Mapping[str, Any], key: str, minimum: int, what: str) -> list[str]:
    if key in config and ((n := config_number(config[key], integer=True)) is None or n < minimum):
        return [f"config '{key}' must be a whole number of {what} >= {minimum}, got {config[key]!r}"]
    return []


def file_reader_config_problems(config: Mapping[str, Any]) -> list[str]:
    """The file reader's config: the ``folder`` to read, its ``format``; optional ``pattern`` (a glob of
    file names, default ``*``), ``batch`` (rows per message, >= 1), ``chunk`` (binary: bytes per message,
    0 = the whole file), ``header`` / ``delimiter`` (CSV), ``columns`` (JSON lines: the key order),
    ``streaming`` (keep watching the folder for new files) and ``poll`` (seconds between looks, > 0)."""
    problems = _check_text(config, "folder", "the folder whose files are read")
    problems += _check_format(config)
    problems += _check_text(config, "pattern", "", required=False)
    problems += _check_whole(config, "batch", 1, "rows")
    problems += _check_whole(config, "chunk", 0, "bytes")
    problems += _check_csv(config)
    if "streaming" in config and config_switch(config["streaming"]) is None:
        problems.append(f"config 'streaming' must be true or false, got {config['streaming']!r}")
    if "poll" in config and ((s := config_number(config["poll"], integer=False)) is None or s <= 0):
        problems.append(f"config 'poll' must be a number of seconds > 0, got {config['poll']!r}")
    return problems


def file_writer_config_problems(config: Mapping[str, Any]) -> list[str]:
    """The file writer's config: the ``folder`` to write part files into, their ``format``; optional
    ``prefix`` (part files are ``<prefix>-<number>.<extension>``, default ``part``), ``header`` /
    ``delimiter`` (CSV) and ``columns`` (the column names written, default the table's own)."""
    problems = _check_text(config, "folder", "the folder the part files are written into")
    problems += _check_format(config)
    problems += _check_csv(config)
    prefix = config.get("prefix", "part")
    if not isinstance(prefix, str) or not prefix or "/" in prefix or prefix.startswith("."):
        problems.append(f"config 'prefix' must be a file name without '/' that does not start with '.', "
                        f"got {prefix!r}")
    return problems


FILE_READER = BuiltinOperator(
    "snapgraph.file.reader", "File Reader", aliases=("file-reader",),
    outports=("output",),
    # Each message is re-read from the file and offset restored with it, so no batch is ever half sent at a
    # snapshot (SAP's "batches" condition does not arise), as long as files are not changed once written.
    delivery=DeliveryTraits(replayable=True, deterministic=True),
    config_check=file_reader_config_problems,
)
FILE_WRITER = BuiltinOperator(
    "snapgraph.file.writer", "File Writer", aliases=("file-writer",),
    inports=("input",),
    # an epoch's part file is published once, by rename, in epoch_complete
    delivery=DeliveryTraits(writer=WriterKind.TRANSACTIONAL),
    config_check=file_writer_config_problems,
)


# -- SAP's file operators, on local files -------------------------------------------------------------

def local_connection_problems(config: Mapping[str, Any], key: str, default: Any) -> list[str]:
    """What is wrong with config ``key`` as a connection to local files (see the module docstring)."""
    connection = config.get(key, default)
    supported = (f"snapgraph's file operators use local files only: {{configurationType: "
                 f"'{LOCAL_CONFIGURATION_TYPE}'}} or a connection id of connectionType {LOCAL_CONNECTION_TYPE}")
    if not isinstance(connection, Mapping):
        return [f"config '{key}' must be a connection object, got {connection!r} ({supported})"]
    kind = connection.get("connectionType")
    if kind is not None:
        if str(kind).upper() != LOCAL_CONNECTION_TYPE:
            return [f"config '{key}': connection {connection.get('connectionID', '?')!r} has connectionType "
                    f"{kind!r}, which snapgraph cannot reach ({supported})"]
        root = (connection.get("connectionProperties") or {}).get("rootPath")
        if not isinstance(root, str) or not root.strip():
            return [f"config '{key}': connection {connection.get('connectionID', '?')!r} needs "
                    f"connectionProperties.rootPath, the folder its paths are relative to"]
        return []
    if connection.get("connectionID"):
        return []  # not resolved (yet): an unknown id is reported by the connection resolution
    if connection.get("configurationType") == LOCAL_CONFIGURATION_TYPE:
        return []
    return [f"config '{key}': {dict(connection)!r} is not supported ({supported})"]


PRODUCER_PATH_MODES = ("Dynamic (from input)", "Static (from configuration)", "Static with placeholders")
PRODUCER_MODES = ("Overwrite", "Append", "Create only")
PRODUCER_FILE_MODES = ("Single file", "Partitioned file")
PRODUCER_DEFAULTS: dict[str, Any] = {
    "connection": {"configurationType": "From input"}, "pathMode": "Dynamic (from input)", "path": "/",
    "mode": "Create only", "incrementName": False, "fileMode": "Single file"}


def binary_file_producer_config_problems(config: Mapping[str, Any]) -> list[str]:
    """SAP's Binary File Producer config (``connection``, ``pathMode``, ``path``, ``mode``,
    ``incrementName``, ``fileMode``) as far as local files support it."""
    problems = local_connection_problems(config, "connection", PRODUCER_DEFAULTS["connection"])
    for key, allowed in (("pathMode", PRODUCER_PATH_MODES), ("mode", PRODUCER_MODES),
                         ("fileMode", PRODUCER_FILE_MODES)):
        value = config.get(key, PRODUCER_DEFAULTS[key])
        if value not in allowed:
            problems.append(f"config '{key}' must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    if config.get("pathMode", PRODUCER_DEFAULTS["pathMode"]) != PRODUCER_PATH_MODES[0]:
        problems += _check_text(config, "path", "the path written to (pathMode is static)")
    if "incrementName" in config and config_switch(config["incrementName"]) is None:
        problems.append(f"config 'incrementName' must be true or false, got {config['incrementName']!r}")
    if config.get("fileMode") == "Partitioned file":
        problems.append("config 'fileMode': 'Partitioned file' is not supported by snapgraph yet; use 'Single "
                        "file', or snapgraph's file-writer for part files published exactly once")
    return problems


def _producer_delivery(config: Mapping[str, Any]) -> DeliveryTraits:
    overwrite = config.get("mode", PRODUCER_DEFAULTS["mode"]) == "Overwrite"
    # Overwrite writes a replayed message's file again with the same bytes; Append and Create only do not.
    return DeliveryTraits(deterministic=True, writer=WriterKind.IDEMPOTENT if overwrite else WriterKind.PLAIN)


BINARY_FILE_PRODUCER = BuiltinOperator(
    "com.sap.file.write.v2", "Binary File Producer", aliases=("binaryFileProducer",),
    inports=("file",), outports=("file",),
    delivery=DeliveryTraits(deterministic=True, writer=WriterKind.PLAIN),
    config_check=binary_file_producer_config_problems,
    delivery_by_config=_producer_delivery,
)

#: the family, in the order the registry lists them
FILE_BUILTINS = (FILE_READER, FILE_WRITER, BINARY_FILE_PRODUCER)
