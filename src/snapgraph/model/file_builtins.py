"""The file family of built-ins: snapgraph's folder reader and part-file writer, and SAP's Binary File
Producer, Binary File Consumer and List Files V2 mapped onto the local file system (behaviour:
:mod:`snapgraph.connectors.files` and :mod:`snapgraph.connectors.sap_files`; the config keys and what
each promises: docs/connectors.md).

Local files only. SAP's file operators name a storage service through their ``connection``; snapgraph
accepts the two that mean this machine's file system and refuses every other one by name:

* ``{configurationType: "Local File System"}``: SAP's own choice without a connection id; paths are
  this machine's (a relative one is relative to the working directory).
* a connection id whose ``--connections`` entry has ``connectionType: LOCAL_FILE_SYSTEM`` and
  ``connectionProperties: {rootPath: FOLDER}``: paths are relative to that folder (a leading ``/`` is
  the folder itself, as SAP's paths are relative to their connection) and may not leave it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from snapgraph.model.builtin_operator import (
    BuiltinOperator,
    CrashPoint,
    column_names,
    config_number,
    config_switch,
)
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
    crash_points=(CrashPoint("file_reader_published", "output"),),
    config_keys=("folder", "format", "pattern", "batch", "chunk", "header", "delimiter", "columns", "streaming",
                 "poll"),
)
FILE_WRITER = BuiltinOperator(
    "snapgraph.file.writer", "File Writer", aliases=("file-writer",),
    inports=("input",),
    # an epoch's part file is published once, by rename, in epoch_complete
    delivery=DeliveryTraits(writer=WriterKind.TRANSACTIONAL, commits_at_end=True),  # without snapshots: at isLast
    config_check=file_writer_config_problems,
    # an epoch's part is staged in serialize, linked into place and published in epoch_complete
    crash_points=tuple(CrashPoint(name, "epoch")
                       for name in ("file_writer_staged", "file_writer_linked", "file_writer_published")),
    config_keys=("folder", "format", "prefix", "columns", "header", "delimiter"),
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


def _check_choice(config: Mapping[str, Any], key: str, allowed: tuple[str, ...], default: str) -> list[str]:
    value = config.get(key, default)
    if value not in allowed:
        return [f"config '{key}' must be one of {', '.join(map(repr, allowed))}, got {value!r}"]
    return []


def _check_switches(config: Mapping[str, Any], *keys: str) -> list[str]:
    return [f"config '{key}' must be true or false, got {config[key]!r}"
            for key in keys if key in config and config_switch(config[key]) is None]


def binary_file_producer_config_problems(config: Mapping[str, Any]) -> list[str]:
    """SAP's Binary File Producer config (``connection``, ``pathMode``, ``path``, ``mode``,
    ``incrementName``, ``fileMode``) as far as local files support it."""
    problems = local_connection_problems(config, "connection", PRODUCER_DEFAULTS["connection"])
    for key, allowed in (("pathMode", PRODUCER_PATH_MODES), ("mode", PRODUCER_MODES),
                         ("fileMode", PRODUCER_FILE_MODES)):
        problems += _check_choice(config, key, allowed, PRODUCER_DEFAULTS[key])
    if config.get("pathMode", PRODUCER_DEFAULTS["pathMode"]) != PRODUCER_PATH_MODES[0]:
        problems += _check_text(config, "path", "the path written to (pathMode is static)")
    problems += _check_switches(config, "incrementName")
    if config.get("fileMode") == "Partitioned file" and config_switch(config.get("incrementName", False)):
        problems.append("config 'incrementName' applies to fileMode 'Single file' only (a partitioned file's "
                        "name is never incremented); set it false or remove it")
    return problems


def _producer_delivery(config: Mapping[str, Any]) -> DeliveryTraits:
    if config.get("fileMode") == "Partitioned file":
        # every part of an epoch is published by rename in epoch_complete, whatever the mode
        # without snapshots the write is complete (its _SUCCESS written) at its isLast
        return DeliveryTraits(deterministic=True, writer=WriterKind.TRANSACTIONAL, commits_at_end=True)
    overwrite = config.get("mode", PRODUCER_DEFAULTS["mode"]) == "Overwrite"
    # Overwrite writes a replayed message's file again with the same bytes; Append and Create only do not.
    return DeliveryTraits(deterministic=True, writer=WriterKind.IDEMPOTENT if overwrite else WriterKind.PLAIN)


BINARY_FILE_PRODUCER = BuiltinOperator(
    "com.sap.file.write.v2", "Binary File Producer", aliases=("binaryFileProducer",),
    inports=("file",), outports=("file",),
    delivery=DeliveryTraits(deterministic=True, writer=WriterKind.PLAIN),
    config_check=binary_file_producer_config_problems,
    delivery_by_config=_producer_delivery,
    # a single file is written by each message; a partitioned file's parts (one a message) are staged and
    # published as the file writer's, and the file finished (its success file) once its last part is in
    crash_points=(
        CrashPoint("file_producer_written", "input", when=lambda config: config.get("fileMode") != "Partitioned file"),
        *(CrashPoint(name, "input", when=lambda config: config.get("fileMode") == "Partitioned file")
          for name in ("file_writer_staged", "file_writer_linked", "file_writer_published")),
        CrashPoint("file_producer_finished", "once", when=lambda config: config.get("fileMode") == "Partitioned file"),
    ),
)


#: The Read / List modes of the Binary File Consumer and List Files V2.
READ_MODES = ("On input", "Once")
CONSUMER_DEFAULTS: dict[str, Any] = {
    "mode": "On input", "staticConnection": {}, "dynamicConnection": {"configurationType": "From input"},
    "path": "/"}


def _mode_connection_problems(config: Mapping[str, Any], defaults: Mapping[str, Any], static_key: str) -> list[str]:
    """The ``mode`` and the connection it uses: ``static_key`` with ``Once``, ``dynamicConnection`` with
    ``On input`` (SAP's ``From input``, the connection of each input's file header, is refused)."""
    problems = _check_choice(config, "mode", READ_MODES, defaults["mode"])
    if problems:
        return problems
    if config.get("mode", defaults["mode"]) == "Once":
        return local_connection_problems(config, static_key, defaults[static_key]) + _check_text(
            {"path": config.get("path", defaults["path"])}, "path", "the path read (mode is 'Once')")
    return local_connection_problems(config, "dynamicConnection", defaults["dynamicConnection"])


def binary_file_consumer_config_problems(config: Mapping[str, Any]) -> list[str]:
    """SAP's Binary File Consumer config (``mode``, ``staticConnection`` and ``path`` with ``Once``,
    ``dynamicConnection`` with ``On input``) as far as local files support it."""
    return _mode_connection_problems(config, CONSUMER_DEFAULTS, "staticConnection")


def _reader_delivery(config: Mapping[str, Any]) -> DeliveryTraits:
    # Once keeps the parts (one, for a single file) and the next one to send as its state, so a restore
    # sends exactly what followed the snapshot; On input reads what each input names and keeps nothing.
    return DeliveryTraits(replayable=config.get("mode", "On input") == "Once", deterministic=True)


BINARY_FILE_CONSUMER = BuiltinOperator(
    "com.sap.file.read.v2", "Binary File Consumer", aliases=("binaryFileConsumer",),
    inports=("file",), outports=("file",),
    delivery=DeliveryTraits(deterministic=True),
    config_check=binary_file_consumer_config_problems,
    delivery_by_config=_reader_delivery,
    crash_points=(CrashPoint("file_consumer_published", "output"),),
)

PART_FILE_TREATMENTS = ("File", "Directory")
ONGOING_PART_FILE_TREATMENTS = ("Ignore", "Treat as directory", "Treat as file")
LIST_FILTERS = ("None", "With regular expression")
LIST_DEFAULTS: dict[str, Any] = {
    "mode": "On input", "connection": {}, "dynamicConnection": {"configurationType": "From input"}, "path": "/",
    "recursive": False, "listDirectories": False, "identifyPartFiles": "File", "skipOngoingPartFile": "Ignore",
    "filter": "None", "pattern": ""}


def list_files_config_problems(config: Mapping[str, Any]) -> list[str]:
    """SAP's List Files V2 config (``mode``, ``connection`` and ``path`` with ``Once``,
    ``dynamicConnection`` with ``On input``, ``recursive``, ``listDirectories``, ``identifyPartFiles``,
    ``skipOngoingPartFile``, ``filter``, ``pattern``) as far as local files support it."""
    problems = _mode_connection_problems(config, LIST_DEFAULTS, "connection")
    problems += _check_switches(config, "recursive", "listDirectories")
    for key, allowed in (("identifyPartFiles", PART_FILE_TREATMENTS),
                         ("skipOngoingPartFile", ONGOING_PART_FILE_TREATMENTS), ("filter", LIST_FILTERS)):
        problems += _check_choice(config, key, allowed, LIST_DEFAULTS[key])
    if config.get("filter") == "With regular expression":
        pattern = config.get("pattern", "")
        try:
            re.compile(pattern if isinstance(pattern, str) else "(")
        except re.error as err:
            problems.append(f"config 'pattern' must be a regular expression, got {pattern!r} ({err})")
    return problems


LIST_FILES = BuiltinOperator(
    "com.sap.file.list.v2", "List Files V2", aliases=("listFiles",),
    inports=("dirRef",), outports=("ref",),
    delivery=DeliveryTraits(deterministic=True),
    config_check=list_files_config_problems,
    delivery_by_config=_reader_delivery,
    crash_points=(CrashPoint("file_list_published", "output"),),
)

#: the family, in the order the registry lists them
FILE_BUILTINS = (FILE_READER, FILE_WRITER, BINARY_FILE_PRODUCER, BINARY_FILE_CONSUMER, LIST_FILES)
