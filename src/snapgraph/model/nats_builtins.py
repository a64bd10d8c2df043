"""The NATS JetStream family of built-ins: the source's and the sink's descriptors and config checks
(behaviour: :mod:`snapgraph.connectors.nats`; the config keys and what each promises: docs/connectors.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from snapgraph.model.builtin_operator import BuiltinOperator, CrashPoint, config_number, config_switch
from snapgraph.model.delivery import DeliveryTraits, WriterKind

#: The connectionType a managed connection to a NATS server has.
NATS_CONNECTION_TYPE = "NATS"
#: How the source turns a message's payload into the Gen2 message body.
NATS_SOURCE_FORMATS = ("binary", "text", "json")
#: Where a source with no position yet (a new run) starts, besides a stream sequence number.
NATS_SOURCE_STARTS = ("first", "new")
#: What the source does when messages it has not read yet were removed from the stream (its limits):
#: fail the attempt naming them, or log the loss and go on.
NATS_SOURCE_GAPS = ("fail", "skip")


def _check_server(config: Mapping[str, Any]) -> list[str]:
    """Exactly one of ``url`` (nats://host:port, several comma-separated) or ``connection``."""
    url, connection = config.get("url"), config.get("connection")
    if (url is None) == (connection is None):
        return ["config 'url' or 'connection' (exactly one of them) names the NATS server"
                + ("" if url is None else ", not both")]
    if url is not None:
        if not isinstance(url, str) or not url.strip():
            return [f"config 'url' must be a server URL such as nats://127.0.0.1:4222, got {url!r}"]
        return []
    if not isinstance(connection, Mapping):
        return [f"config 'connection' must be {{connectionID: ID}}, got {connection!r}"]
    kind = connection.get("connectionType")
    if kind is not None and str(kind).upper() != NATS_CONNECTION_TYPE:
        return [f"config 'connection': connection {connection.get('connectionID', '?')!r} has connectionType "
                f"{kind!r}, not {NATS_CONNECTION_TYPE}"]
    return []


def _check_name(config: Mapping[str, Any], key: str, required: str | None) -> list[str]:
    value = config.get(key)
    if value is None:
        return [f"config '{key}' is missing: {required}"] if required else []
    if not isinstance(value, str) or not value.strip() or any(c in value for c in " \t\r\n"):
        return [f"config '{key}' must be a non-empty name without spaces, got {value!r}"]
    return []


def _check_positive(config: Mapping[str, Any], key: str, *, integer: bool, what: str) -> list[str]:
    if key not in config:
        return []
    number = config_number(config[key], integer=integer)
    if number is None or number <= 0:
        return [f"config '{key}' must be {what}, got {config[key]!r}"]
    return []


def _check_switch(config: Mapping[str, Any], key: str) -> list[str]:
    if key in config and config_switch(config[key]) is None:
        return [f"config '{key}' must be true or false, got {config[key]!r}"]
    return []


def nats_source_config_problems(config: Mapping[str, Any]) -> list[str]:
    """The source's config: the server (``url`` or ``connection``), the ``stream``; optional ``subject``
    (a filter), ``consumer`` (a durable consumer's name), ``start`` (first, new or a sequence >= 1),
    ``batch`` (messages per fetch, >= 1), ``format`` (binary, text, json), ``streaming``, ``poll`` and
    ``gaps`` (fail or skip: messages removed from the stream before they were read)."""
    problems = _check_server(config)
    problems += _check_name(config, "stream", "the JetStream stream to read")
    problems += _check_name(config, "subject", None)
    problems += _check_name(config, "consumer", None)
    start = config.get("start", "first")
    if start not in NATS_SOURCE_STARTS and (
            isinstance(start, bool) or (number := config_number(start, integer=True)) is None or number < 1):
        problems.append(f"config 'start' must be first, new or a stream sequence >= 1, got {start!r}")
    problems += _check_positive(config, "batch", integer=True, what="a whole number of messages >= 1")
    if config.get("format", "binary") not in NATS_SOURCE_FORMATS:
        problems.append(f"config 'format' must be one of {', '.join(NATS_SOURCE_FORMATS)}, got {config['format']!r}")
    problems += _check_switch(config, "streaming")
    problems += _check_positive(config, "poll", integer=False, what="a number of seconds > 0")
    if config.get("gaps", "fail") not in NATS_SOURCE_GAPS:
        problems.append(f"config 'gaps' must be one of {', '.join(NATS_SOURCE_GAPS)}, got {config['gaps']!r}")
    return problems


def nats_sink_config_problems(config: Mapping[str, Any]) -> list[str]:
    """The sink's config: the server (``url`` or ``connection``), the ``subject`` to publish to; optional
    ``stream`` (the stream expected to store it), ``deduplicate`` (default true) and ``msgIdHeader`` (a
    Gen2 header whose value is the message id)."""
    problems = _check_server(config)
    problems += _check_name(config, "subject", "the subject to publish to (a stream must capture it)")
    problems += _check_name(config, "stream", None)
    problems += _check_switch(config, "deduplicate")
    problems += _check_name(config, "msgIdHeader", None)
    if config.get("msgIdHeader") is not None and config_switch(config.get("deduplicate", True)) is False:
        problems.append("config 'msgIdHeader' names the message id, but 'deduplicate' is false: no id is sent")
    return problems


def _nats_sink_delivery(config: Mapping[str, Any]) -> DeliveryTraits:
    deduplicates = config_switch(config.get("deduplicate", True)) is True
    return DeliveryTraits(writer=WriterKind.IDEMPOTENT if deduplicates else WriterKind.PLAIN)


NATS_SOURCE = BuiltinOperator(
    "snapgraph.nats.source", "NATS JetStream Source", aliases=("nats-source",),
    outports=("output",),
    # A stream is an ordered log: after a restore the source reads again from the sequence after the one
    # its state holds, message by message (no batches split across a snapshot).
    delivery=DeliveryTraits(replayable=True, deterministic=True),
    config_check=nats_source_config_problems,
    # each message published; the messages of an epoch acknowledged in its epoch_complete
    crash_points=(CrashPoint("nats_source_published", "output"), CrashPoint("nats_source_acked", "epoch")),
    config_keys=("url", "connection", "stream", "subject", "consumer", "start", "batch", "format", "streaming",
                 "poll", "gaps"),
)
NATS_SINK = BuiltinOperator(
    "snapgraph.nats.sink", "NATS JetStream Sink", aliases=("nats-sink",),
    inports=("input",),
    # Idempotent within the stream's duplicate window: a replayed message carries the Nats-Msg-Id it had.
    delivery=DeliveryTraits(writer=WriterKind.PLAIN),  # the weakest: deduplicate false
    config_check=nats_sink_config_problems,
    delivery_by_config=_nats_sink_delivery,
    # each message handed to the publisher; serialize waits for the stream's acknowledgements
    crash_points=(CrashPoint("nats_sink_published", "input"), CrashPoint("nats_sink_acked", "epoch")),
    config_keys=("url", "connection", "subject", "stream", "deduplicate", "msgIdHeader"),
)

#: the family, in the order the registry lists them
NATS_BUILTINS = (NATS_SOURCE, NATS_SINK)
