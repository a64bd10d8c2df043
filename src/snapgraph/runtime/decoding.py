"""Rebuilding a message that arrived encoded from another group, with a hint when it cannot be."""

from __future__ import annotations

from snapgraph.runtime.channels import Channel
from snapgraph.runtime.failures import UndeliverableMessage, one_line
from snapgraph.runtime.messages import Encoded, Message
from snapgraph.runtime.scripts import SCRIPT_MODULE_PREFIX


def decode(channel: Channel, message: Encoded) -> Message:
    """The message ``channel`` delivered encoded; raises :class:`UndeliverableMessage` if it cannot be rebuilt."""
    try:
        return message.decode(message.data)
    except Exception as exc:  # noqa: BLE001 - whatever unpickling raises
        raise undeliverable(channel, exc) from None


def undeliverable(channel: Channel, exc: Exception) -> UndeliverableMessage:
    """Why a message on ``channel`` could not be rebuilt (a class defined in the sender's script, say)."""
    sender = channel.connection.src.process
    hint = ""
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").startswith(SCRIPT_MODULE_PREFIX):
        hint = (f"; the value's class is defined in the script of {sender!r}, which only its own group "
                "loads: define it in a helper module beside the graph and import it in both scripts")
    return UndeliverableMessage(
        f"a message from operator {sender!r} (another group) could not be rebuilt here: {one_line(exc)}{hint}")
