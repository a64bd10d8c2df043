"""SAP's List Files V2 (``com.sap.file.list.v2``) on local files.

A listing of a folder is its entries in name order (names starting with ``.``, such as writers'
temporary files, are left out); with ``recursive`` the entries of its subfolders follow each
subfolder. Files are listed; folders only with ``listDirectories`` (``isDir`` true). A folder laid out
as a partitioned file (:mod:`snapgraph.connectors.sap_files.paths`) is, with ``identifyPartFiles:
File`` (the default), one file (``isDir`` false, the size of its parts, never descended into); without
its ``_SUCCESS`` (an ongoing write) ``skipOngoingPartFile`` decides: ``Ignore`` (the default) leaves it
out, ``Treat as directory`` lists it as any folder, ``Treat as file`` as a partitioned file. With
``filter: With regular expression`` only entries whose name contains a match of ``pattern`` (Python's
``re``, close to SAP's RE2 for ordinary patterns) are sent; subfolders are descended into all the same.
Listing a file gives the file itself.

Each entry is one header-only message on ``ref``: its ``com.sap.headers.file`` (the path on the
connection, as the Binary File Consumer reads it) and a ``com.sap.headers.batch`` ``[index, isLast,
count, 1, "files"]``, ``isLast`` on the listing's last entry when the listing ends the input (an empty
listing sends nothing, and says so in the log).

**Once** (``mode: Once``): the folder of config ``path`` on ``connection``, by a timer, one entry per call:

0. *Load*: ``path`` must exist on the connection, else the graph is refused (exit 2), as the file reader
   refuses a missing folder
   (:func:`snapgraph.connectors.sap_files.consumer.existing_static_path`).
1. The first call lists the folder; the references of all entries go into the state.
2. Each call publishes the next entry (crash point ``file_list_published``: published, the position
   not yet advanced) and advances the position; after the last one the timer stops.
3. *serialize* saves the references and the position; *restore* puts both back
   (:func:`snapgraph.connectors.sap_files.reading.register_once`).

SAP keeps the index in the list, says at-least-once and asks that the folder not change, because its
restore lists the folder again. snapgraph restores the list itself, so the entries after the snapshot
are sent again exactly as before, whatever the folder holds by then (a replayable source).

**On input** (``mode: On input``, the default): every message on ``dirRef`` names, by the path of its
``com.sap.headers.file``, what is listed on ``dynamicConnection``; the whole listing is published from
the port callback (crash point ``file_list_published`` after each entry). It ends the input when the
input message carries ``isLast`` in its ``com.sap.headers.batch``, or no batch header at all. Nothing is
kept: a replayed input is listed again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from snapgraph.api.operator_api import Api
from snapgraph.connectors.base import Checkpoint, ConnectorContext, check_config, config_of
from snapgraph.connectors.files.local import BATCH_HEADER, FILE_HEADER, FileConfigError, switch
from snapgraph.connectors.sap_files.consumer import existing_static_path
from snapgraph.connectors.sap_files.paths import SUCCESS_FILE, LocalFiles, child_path, looks_partitioned
from snapgraph.connectors.sap_files.reading import register_on_input, register_once
from snapgraph.model.file_builtins import LIST_DEFAULTS, LIST_FILES

#: skipOngoingPartFile -> how a partitioned folder without _SUCCESS is listed
_ONGOING = {"Ignore": "skip", "Treat as directory": "folder", "Treat as file": "file"}


class _Lister:
    """One List Files operator's listings and their messages."""

    def __init__(self, api: Api, operator: str, files: LocalFiles, config: Mapping[str, Any],
                 checkpoint: Checkpoint) -> None:
        self.api = api
        self.operator = operator
        self.files = files
        self.checkpoint = checkpoint
        self.recursive = switch(config, "recursive", False)
        self.list_folders = switch(config, "listDirectories", False)
        self.part_files_as_files = config["identifyPartFiles"] == "File"
        self.ongoing = _ONGOING[str(config["skipOngoingPartFile"])]
        self.pattern = re.compile(str(config["pattern"])) if config["filter"] == "With regular expression" else None

    def listing(self, path: str) -> list[dict[str, Any]]:
        """The file headers of the entries of ``path`` (a file: itself), in listing order."""
        local = self.files.local_path(path)
        if local.is_file():
            return [self.files.reference(local, path)]
        if not local.is_dir():
            raise FileNotFoundError(f"operator {self.operator!r}: {path!r} ({str(local)!r}) does not exist")
        found: list[dict[str, Any]] = []
        self.walk(local, path, found)
        if not found:
            self.api.logger.warning("the listing of %r is empty: nothing is sent", path)
        return found

    def walk(self, folder: Path, path: str, found: list[dict[str, Any]]) -> None:
        for entry in sorted(folder.iterdir(), key=lambda item: item.name):
            if entry.name.startswith("."):
                continue
            shown = child_path(path, entry.name)
            kind = self.kind_of(entry) if entry.is_dir() else "file"
            if kind == "skip":
                continue
            if kind == "file" or self.list_folders:
                self.add(entry, shown, kind == "folder", found)
            if kind == "folder" and self.recursive:
                self.walk(entry, shown, found)

    def kind_of(self, folder: Path) -> str:
        """How ``folder`` is listed: as a ``file`` (a partitioned file), a ``folder``, or not (``skip``)."""
        if not self.part_files_as_files or not looks_partitioned(folder):
            return "folder"
        return "file" if (folder / SUCCESS_FILE).is_file() else self.ongoing

    def add(self, local: Path, shown: str, is_dir: bool, found: list[dict[str, Any]]) -> None:
        if self.pattern is None or self.pattern.search(local.name):
            found.append(self.files.reference(local, shown, is_dir=is_dir))

    def send(self, reference: Mapping[str, Any], index: int, count: int, is_last: bool) -> None:
        header = {FILE_HEADER: list(reference[FILE_HEADER]), BATCH_HEADER: [index, is_last, count, 1, "files"]}
        self.api.outputs.ref.publish(None, header)
        self.checkpoint("file_list_published")


def setup_list_files(api: Api, context: ConnectorContext) -> None:
    """Register List Files' callbacks on ``api`` (see the module docstring). Raises ``FileConfigError``
    for a config it cannot run with."""
    config: Mapping[str, Any] = {**LIST_DEFAULTS, **config_of(api)}
    check_config(context.operator, LIST_FILES, config, FileConfigError)
    once = config["mode"] == "Once"
    key = "connection" if once else "dynamicConnection"
    lister = _Lister(api, context.operator, LocalFiles(context.operator, key, config[key]), config,
                     context.checkpoint)
    if once:
        path = existing_static_path(context.operator, lister.files, str(config["path"]))
        register_once(api, "ref", path, lister.listing, lister.send)
    else:
        register_on_input(api, context.operator, "dirRef", lister.listing, lister.send)


__all__ = ["setup_list_files"]
