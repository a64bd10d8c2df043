"""What is persisted for one operator in one epoch.

A persisted operator state is the script's ``serialize()`` bytes, unchanged — unless the operator's
process made or received types at run time (dynamic tables): then the definitions go with it, so a
restore in a new process (whose type context starts empty) still resolves the type ids the state holds.
"""

from __future__ import annotations

import pickle

from snapgraph.model.types import VType

_STATE_WITH_TYPES = b"\x00snapgraph-state-with-types\x00"


def pack_state(data: bytes, run_time_types: list[VType]) -> bytes:
    """What is persisted for an operator: ``data``, with ``run_time_types`` ahead of it if there are any."""
    if not run_time_types:
        return data
    types = pickle.dumps(run_time_types, protocol=pickle.HIGHEST_PROTOCOL)
    return _STATE_WITH_TYPES + len(types).to_bytes(8, "big") + types + data


def unpack_state(stored: bytes) -> tuple[bytes, list[VType]]:
    """The script's bytes and the run-time types persisted with them (see :func:`pack_state`)."""
    if not stored.startswith(_STATE_WITH_TYPES):
        return stored, []
    start = len(_STATE_WITH_TYPES) + 8
    end = start + int.from_bytes(stored[len(_STATE_WITH_TYPES):start], "big")
    return stored[end:], pickle.loads(stored[start:end])
