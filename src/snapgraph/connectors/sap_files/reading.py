"""The two read modes SAP's Binary File Consumer and List Files V2 share: ``Once`` (a replayable timer
over a list made at the first call) and ``On input`` (one read per file reference). Each operator gives
what one read yields (``entries_of(path)``) and how one entry is sent (``send(entry, index, count,
is_last)``, which publishes it and fires the operator's crash point)."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

from snapgraph.api.operator_api import Api
from snapgraph.connectors.files.local import FILE_HEADER
from snapgraph.connectors.sap_files.paths import ends_its_input, input_path

EntriesOf = Callable[[str], list[Any]]
Send = Callable[[Any, int, int, bool], None]


def register_once(api: Api, port: str, path: str, entries_of: EntriesOf, send: Send) -> None:
    """``Once``: a timer sends the entries of ``path`` on ``port``, one per call, the last with ``isLast``.

    1. The first call makes the list (``entries_of(path)``) and keeps it in the state.
    2. Each call sends the next entry and then advances the position; after the last the timer stops.
    3. *serialize* saves the list and the position; *restore* puts both back, so the entries after the
       snapshot are sent again exactly as before, and a restored read never reads the folder again.
    """
    state: dict[str, Any] = {"entries": None, "next": 0}

    def send_next() -> float:
        if state["entries"] is None:  # 1.
            state["entries"] = entries_of(path)
        entries: list[Any] = state["entries"]
        if state["next"] >= len(entries):
            return -1
        index = state["next"]  # 2.
        send(entries[index], index, len(entries), index == len(entries) - 1)
        state["next"] = index + 1
        return 0 if state["next"] < len(entries) else -1

    def serialize(epoch: str) -> bytes:  # 3.
        return pickle.dumps(state)

    def restore(epoch: str, saved: bytes) -> None:
        state.update(pickle.loads(saved))

    api.set_initial_snapshot_info(api.InitialProcessInfo(
        is_stateful=True, outports_info={port: api.OutportInfo(is_generator=True)}))
    api.add_timer(send_next)
    api.set_serialize_callback(serialize)
    api.set_restore_callback(restore)


def register_on_input(api: Api, operator: str, port: str, entries_of: EntriesOf, send: Send) -> None:
    """``On input``: each message on ``port`` names a path by its ``com.sap.headers.file``; its entries
    are all sent from the port callback, the last with ``isLast`` when the input message ends its input
    (``isLast`` in its ``com.sap.headers.batch``, or no batch header). Nothing is kept."""
    def on_reference(msg_id: bytes, header: Any, body: Any) -> None:
        path = input_path(header)
        if path is None:
            raise ValueError(f"operator {operator!r}: mode 'On input' takes the path of the {FILE_HEADER} header, "
                             f"but a message on port {port!r} has none")
        entries = entries_of(path)
        ends = ends_its_input(header)
        for index, entry in enumerate(entries):
            send(entry, index, len(entries), ends and index == len(entries) - 1)

    api.set_port_callback(port, on_reference)


__all__ = ["register_on_input", "register_once"]
