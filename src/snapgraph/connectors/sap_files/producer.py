"""SAP's Binary File Producer (``com.sap.file.write.v2``) on local files.

**Paths.** Every message on ``file`` is written to the path of the input's ``com.sap.headers.file``
(``pathMode: Dynamic (from input)``, the default) or of config ``path`` (``Static (from
configuration)``; ``Static with placeholders`` replaces ``<counter>``, ``<date>``, ``<time>``,
``<dirname>``, ``<basename>``, ``<extension>``, ``<multiplicity>``, ``<multiplicityIndex>`` and
``<header:NAME>``). The path is relative to the connection: with a ``LOCAL_FILE_SYSTEM`` connection a
path that leaves its ``rootPath`` is refused.

**fileMode: Single file.** Each message is one write of its body. ``mode`` decides what happens to a
file that exists: ``Overwrite`` replaces it atomically (written beside it and renamed over it),
``Append`` appends, ``Create only`` fails the operator naming the file, or with ``incrementName: true``
writes ``name (1).ext`` (``(2)``, …) instead. After the write the producer sends a header-only message
on ``file`` with the file's ``com.sap.headers.file`` (``connection``, the path as configured, size,
``isDir`` false, ``modTime``) and the input's ``com.sap.headers.batch``, so a Graph Terminator after it
waits for the input's last batch. Crash point: ``file_producer_written`` (the file written, the message
not yet sent). SAP gives a single file no state management: after a recovery the replayed messages are
written again. ``Overwrite`` writes the same bytes again (idempotent), ``Append`` appends them again and
``Create only`` finds its file (at-least-once, which ``snapgraph validate`` says).

**fileMode: Partitioned file.** The path names the folder of a partitioned file
(:mod:`snapgraph.connectors.sap_files.paths`); every message is one part, and its
``com.sap.headers.batch`` says which: index 0 begins a write (the path is taken then, once), ``isLast``
ends it. The parts of one write are ``part-<uuid>-<index><extension>`` (the extension of the folder's
name; the uuid begins with the time, so later writes sort after earlier ones) and a complete write has
its ``_SUCCESS``. ``mode`` acts when the write begins: ``Overwrite`` removes what is at the path,
``Append`` needs the folder of a partitioned file there and removes its ``_SUCCESS`` (the new parts
join the old ones under their own uuid), ``Create only`` fails if anything is at the path (an interrupted
attempt's hidden temporary files aside). The header-only message on ``file`` names the folder
(``isDir`` false, the size of its parts) once the write is complete, with the last input's batch header.

With snapshots the parts are published exactly once, by the machinery of snapgraph's file writer
(:class:`snapgraph.connectors.files.parts.PartStager`); the protocol, in order:

1. *Load*: check the config (a problem is a ``FileConfigError``).
2. *Port callback*: a message with batch index 0 begins a write: the path is resolved, ``Create only``
   and ``Append`` check what is there, and temporary files this producer left there in an interrupted
   earlier run are deleted. Every message's bytes join the epoch's pending parts, in memory; ``isLast``
   marks the write to be finished with the epoch.
3. *serialize(E)*: the first part of a write prepares its folder (``Overwrite`` removes the old content,
   ``Append`` its ``_SUCCESS``; a replay of that epoch does the same again, so the end is the
   failure-free one); every pending part is written under its temporary name and flushed (crash point
   ``file_writer_staged``). The state: the part counter, the write going on, the writes to finish and
   the folders written.
4. *epoch_complete(E)*: the parts staged in epochs up to E are renamed into place (crash points
   ``file_writer_linked``, ``file_writer_published``); each write that ended in those epochs gets its
   ``_SUCCESS`` (crash point ``file_producer_finished``) and then its message on ``file``.
5. *restore(E)*: temporary parts staged up to E are published, later ones deleted; the writes that ended
   up to E are finished by the ``epoch_complete(E)`` the recovery repeats, and their messages sent again
   (the operators downstream were restored to E, before them).

Without snapshots every part is published as it arrives, and the write finished at its ``isLast``.
SAP says exactly-once for partitioned writes in every mode (and gives the Local File System no state
management, its files being gone with the graph; here they stay); snapgraph's descriptor says
transactional.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

from snapgraph.api.operator_api import Api
from snapgraph.api.streams import whole_value
from snapgraph.connectors.base import ConnectorContext, check_config, config_of, register_epoch_commits
from snapgraph.connectors.files.local import (
    BATCH_HEADER,
    FILE_HEADER,
    FileConfigError,
    is_last_batch,
    switch,
    sync_folder,
)
from snapgraph.connectors.files.parts import TEMP_SUFFIX, PartStager, writer_tag
from snapgraph.connectors.sap_files.paths import SUCCESS_FILE, LocalFiles, input_path
from snapgraph.model.file_builtins import BINARY_FILE_PRODUCER, PRODUCER_DEFAULTS

#: The epoch of the parts written without snapshots.
NO_EPOCH = ""

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


def _binary_body(operator: str, body: Any) -> bytes:
    data = whole_value(body)
    if data is None:
        return b""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"operator {operator!r}: port 'file' takes binary messages, got {type(data).__name__}")
    return bytes(data)


def _path_of(operator: str, config: Mapping[str, Any], api: Api) -> Callable[[Any], str]:
    """The path a message is written to, by ``pathMode`` (placeholders counted per call)."""
    path_mode = str(config["pathMode"])
    counter = [0]

    def target_of(header: Any) -> str:
        from_input = input_path(header)
        if path_mode == "Dynamic (from input)":
            if from_input is None:
                raise ValueError(f"operator {operator!r}: pathMode 'Dynamic (from input)' takes the path from the "
                                 f"{FILE_HEADER} header, but a message on port 'file' has none")
            return from_input
        if path_mode == "Static (from configuration)":
            return str(config["path"])
        counter[0] += 1
        return fill_placeholders(str(config["path"]), counter=counter[0], input_path=from_input, header=header,
                                 api=api)

    return target_of


def setup_binary_file_producer(api: Api, context: ConnectorContext) -> None:
    """Register the Binary File Producer's callbacks on ``api`` (see the module docstring). Raises
    ``FileConfigError`` for a config it cannot run with."""
    config = {**PRODUCER_DEFAULTS, **config_of(api)}
    check_config(context.operator, BINARY_FILE_PRODUCER, config, FileConfigError)
    files = LocalFiles(context.operator, "connection", config["connection"])
    if config["fileMode"] == "Partitioned file":
        _PartitionedFile(api, context, config, files).register()
    else:
        _single_file(api, context, config, files)


# -- Single file -----------------------------------------------------------------------------------------

def _single_file(api: Api, context: ConnectorContext, config: Mapping[str, Any], files: LocalFiles) -> None:
    operator, checkpoint = context.operator, context.checkpoint
    mode = str(config["mode"])
    increment = switch(config, "incrementName", False)
    target_of = _path_of(operator, config, api)
    if context.snapshots_on and mode != "Overwrite":
        api.logger.warning("mode %r with fileMode 'Single file' keeps no state: messages replayed after a "
                           "recovery are written again (at-least-once)", mode)

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
        data = _binary_body(operator, body)
        path = target_of(header)
        written = write(files.local_path(path), data)
        checkpoint("file_producer_written")
        shown = path if written.name == Path(path).name else str(PurePosixPath(path).with_name(written.name))
        out = files.reference(written, shown)
        if header is not None and BATCH_HEADER in header:
            out[BATCH_HEADER] = list(header[BATCH_HEADER])
        if api.is_outport_connected["file"]:
            api.outputs.file.publish(None, out)

    api.set_port_callback("file", on_file)


# -- Partitioned file ------------------------------------------------------------------------------------

@dataclass
class _Write:
    """One partitioned write: its folder (local, and as the connection shows it), uuid and extension;
    whether its folder is prepared; the batch header of its last input once it ended."""

    folder: str
    shown: str
    uuid: str
    extension: str
    prepared: bool = False
    last_batch: list[Any] | None = None

    def part(self, index: int) -> Path:
        return Path(self.folder) / f"part-{self.uuid}-{index}{self.extension}"


class _PartitionedFile:
    """The partitioned protocol of the module docstring, its steps in that order."""

    # 1. load
    def __init__(self, api: Api, context: ConnectorContext, config: Mapping[str, Any], files: LocalFiles) -> None:
        self.api = api
        self.operator = context.operator
        self.snapshots_on = context.snapshots_on
        self.checkpoint = context.checkpoint
        self.files = files
        self.mode = str(config["mode"])
        self.target_of = _path_of(self.operator, config, api)
        self.stager = PartStager(self.operator, writer_tag(api.graph_name, self.operator), context.checkpoint)
        self.current: _Write | None = None
        self.pending: list[tuple[_Write, int, bytes]] = []  # this epoch's parts
        self.ended: list[_Write] = []  # writes whose isLast arrived in this epoch
        self.finishing: dict[str, list[_Write]] = {}  # epoch -> writes to finish when it completes
        self.folders: set[str] = set()  # every folder written in this run

    def register(self) -> None:
        api = self.api
        register_epoch_commits(api, self, self.snapshots_on)
        api.set_port_callback("file", self.on_file)
        api.set_shutdown(self.shutdown)

    # 2. port callback
    def on_file(self, msg_id: bytes, header: Any, body: Any) -> None:
        data = _binary_body(self.operator, body)
        batch = list(header[BATCH_HEADER]) if header is not None and BATCH_HEADER in header else None
        if batch is None or not batch or not isinstance(batch[0], int) or isinstance(batch[0], bool):
            raise ValueError(f"operator {self.operator!r}: fileMode 'Partitioned file' writes the part a message's "
                             f"{BATCH_HEADER} header names (index, isLast), but a message on port 'file' has "
                             f"{'none' if batch is None else batch!r}")
        index = batch[0]
        if index == 0:
            self.current = self.begin(self.target_of(header))
        write = self.current
        if write is None:
            raise ValueError(f"operator {self.operator!r}: a message on port 'file' has batch index {index}, but no "
                             "partitioned write began (a write begins at index 0)")
        self.pending.append((write, index, data))
        if is_last_batch(header):
            write.last_batch = batch
            self.ended.append(write)
            self.current = None
        if not self.snapshots_on:
            self.stage(NO_EPOCH)  # without snapshots: published at once
            self.stager.publish_through(NO_EPOCH)
            self.finish_through(NO_EPOCH)

    def begin(self, path: str) -> _Write:
        local = self.files.local_path(path)
        if self.mode == "Create only" and local.exists() and not _only_temporary(local):
            raise FileExistsError(f"operator {self.operator!r}: mode 'Create only': {str(local)!r} exists")
        if self.mode == "Append" and local.exists() and not local.is_dir():
            raise FileExistsError(f"operator {self.operator!r}: mode 'Append' appends to a partitioned file, but "
                                  f"{str(local)!r} is a single file")
        if str(local) not in self.folders:
            for left in self.stager.temp_parts([local]):  # an interrupted earlier run's
                left.temp(self.stager.tag).unlink()
        self.folders.add(str(local))
        return _Write(str(local), path, f"{time.time_ns():016x}-{uuid.uuid4().hex[:8]}", PurePosixPath(path).suffix)

    # 3. serialize(E)
    def serialize(self, epoch: str) -> bytes:
        self.stage(epoch)
        return pickle.dumps({"next_seq": self.stager.next_seq, "current": self.current,
                             "finishing": self.finishing, "folders": self.folders})

    def stage(self, epoch: str) -> None:
        for write, index, data in self.pending:
            if not write.prepared:
                self.prepare(write)
            self.stager.stage(write.part(index), data, epoch)
        self.pending = []
        if self.ended:
            self.finishing.setdefault(epoch, []).extend(self.ended)
            self.ended = []

    def prepare(self, write: _Write) -> None:
        folder = Path(write.folder)
        if self.mode == "Overwrite" and (folder.exists() or folder.is_symlink()):
            if folder.is_dir() and not folder.is_symlink():
                shutil.rmtree(folder)
            else:
                folder.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        if self.mode == "Append":
            (folder / SUCCESS_FILE).unlink(missing_ok=True)
        write.prepared = True

    # 4. epoch_complete(E)
    def epoch_complete(self, epoch: str) -> None:
        self.stager.publish_through(epoch)
        self.finish_through(epoch)

    def finish_through(self, epoch: str) -> None:
        for ended_epoch in sorted(e for e in self.finishing if e <= epoch):
            for write in self.finishing.pop(ended_epoch):
                folder = Path(write.folder)
                (folder / SUCCESS_FILE).touch()
                sync_folder(folder)
                self.checkpoint("file_producer_finished")
                self.api.logger.info("partitioned file %s complete", write.shown)
                if self.api.is_outport_connected["file"]:
                    self.api.outputs.file.publish(None, {**self.files.reference(folder, write.shown),
                                                         BATCH_HEADER: list(write.last_batch or [])})

    # 5. restore(E)
    def restore(self, epoch: str, state: bytes) -> None:
        saved = pickle.loads(state)
        self.current, self.finishing, self.folders = saved["current"], saved["finishing"], saved["folders"]
        self.pending, self.ended = [], []
        self.stager.recover([Path(folder) for folder in sorted(self.folders)], saved["next_seq"])

    def shutdown(self) -> None:
        if self.current is not None:
            self.api.logger.warning("the partitioned write of %s did not end (no message with isLast in its %s "
                                    "header): it has no %s", self.current.shown, BATCH_HEADER, SUCCESS_FILE)


def _only_temporary(path: Path) -> bool:
    """Whether ``path`` is a folder holding nothing but snapgraph's temporary files."""
    return path.is_dir() and all(entry.name.endswith(TEMP_SUFFIX) for entry in path.iterdir())


__all__ = ["fill_placeholders", "setup_binary_file_producer"]
