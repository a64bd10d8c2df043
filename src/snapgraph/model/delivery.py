"""What an operator promises about delivery, the inputs of SAP's delivery-guarantee table.

SAP states the end-to-end guarantee of a snapshot-enabled graph from three properties of its parts: a
source that replays (after a restore it produces the same sequence from the restored position), a
processing path that is deterministic, and a writer that is idempotent (an UPSERT by key, a WAL) or
transactional (the rows of an epoch committed in ``epoch_complete``, a second commit a no-op). Built-in
connectors know theirs; a script operator declares its own in the graph; undeclared means the weaker
assumption (not replayable, not deterministic, a plain writer when it is a sink).

A declaration is a mapping of the keys in :data:`DECLARATION_KEYS` (YAML: an operator's ``delivery``;
graph.json: ``metadata.snapgraph.delivery`` of a process); :func:`parse_declaration` reads one and says
what is wrong with it, key by key, so each format can name the line or the process. How the traits
combine into a guarantee is ``guarantees.py``.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Mapping
from dataclasses import dataclass


class WriterKind(enum.Enum):
    """How a writer makes a replay harmless, if it does."""

    PLAIN = "plain"  # every write lands again after a replay: duplicates
    IDEMPOTENT = "idempotent"  # writing the same rows again changes nothing (UPSERT by key, a WAL)
    TRANSACTIONAL = "transactional"  # an epoch's rows commit once, in epoch_complete
    NONE = "none"  # declared: writes nothing outside the graph (a logger, a monitor), so it is no writer


@dataclass(frozen=True)
class DeliveryTraits:
    """One operator's declared (or known) delivery properties; the defaults are the weakest."""

    replayable: bool = False  # a source: after restore, the same sequence from the restored position
    deterministic: bool = False  # the same inputs give the same outputs in the same order
    batches: bool = False  # a source that splits its data into batches (com.sap.headers.batch)
    discards_duplicates: bool = False  # a log right after the source drops repeated batches
    # None: not declared. A built-in's descriptor is complete, so there it means "not a writer"; for a
    # script operator the graph decides (guarantees.writer_kind: a sink is a plain writer).
    writer: WriterKind | None = None
    # A transactional writer that, without snapshots (no epochs), commits everything once when the input's
    # last batch arrives, instead of committing nothing (snapgraph's transactional writers do).
    commits_at_end: bool = False


UNDECLARED = DeliveryTraits()

BOOLEAN_KEYS = ("replayable", "deterministic", "batches", "discards_duplicates", "commits_at_end")
DECLARATION_KEYS = (*BOOLEAN_KEYS[:4], "writer", *BOOLEAN_KEYS[4:])
WRITER_VALUES = tuple(kind.value for kind in WriterKind)


@dataclass(frozen=True)
class DeclarationProblem:
    """What is wrong with a delivery declaration; ``key`` is the key it is at (None: the whole of it)."""

    key: str | None
    message: str


def parse_declaration(value: object, what: str) -> tuple[DeliveryTraits, list[DeclarationProblem]]:
    """The traits a declaration states, and every problem with it (unknown keys, values of a wrong type).

    ``what`` names the declaration in messages (``"delivery of operator 'gen'"``). Keys that are wrong
    keep their undeclared (weakest) value, so a bad declaration never makes a guarantee stronger.
    """
    if not isinstance(value, Mapping):
        return UNDECLARED, [DeclarationProblem(None, f"{what} must be a mapping of {', '.join(DECLARATION_KEYS)}, "
                                                     f"got {value!r}")]
    problems: list[DeclarationProblem] = []
    flags: dict[str, bool] = {}
    writer: WriterKind | None = None
    for key, item in value.items():
        name = str(key)
        if name in BOOLEAN_KEYS:
            if isinstance(item, bool):
                flags[name] = item
            else:
                problems.append(DeclarationProblem(name, f"{what}: {name} must be true or false, got {item!r}"))
        elif name == "writer":
            if isinstance(item, str) and item in WRITER_VALUES:
                writer = WriterKind(item)
            else:
                problems.append(DeclarationProblem(
                    name, f"{what}: writer must be one of {', '.join(WRITER_VALUES)}, got {item!r}"))
        else:
            close = difflib.get_close_matches(name, DECLARATION_KEYS, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(DECLARATION_KEYS)}"
            problems.append(DeclarationProblem(name, f"unknown key '{name}' in {what} ({hint})"))
    traits = DeliveryTraits(**{key: flags.get(key, False) for key in BOOLEAN_KEYS}, writer=writer)
    return traits, problems


__all__ = [
    "DECLARATION_KEYS",
    "UNDECLARED",
    "WRITER_VALUES",
    "DeclarationProblem",
    "DeliveryTraits",
    "WriterKind",
    "parse_declaration",
]
