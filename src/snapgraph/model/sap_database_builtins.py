"""SAP's built-in database operators, mapped onto the SQL connectors: their descriptors and config checks.

Six of SAP's Gen2 operators, by SAP's component ids and config keys (what each key means, what is
refused and the guarantee: docs/connectors.md, "SAP's database operators"; behaviour:
:mod:`snapgraph.connectors.sap_database`):

* the structured data operators Table Consumer V3 and SQL Consumer V3 (readers) and Table Producer V3 /
  V4 (a writer), configured by ``service``, ``serviceConnection`` and a ``source`` dataset
  (``remoteObjectReference`` + ``schema.tableBasedRepresentation``) as the Modeler writes them;
* the HANA operators Read HANA Table V2 and Write HANA Table V2, configured by ``connection``,
  ``configMode``, ``tableName`` and their own keys.

Their connection is a managed connection of type ``HANA_DB`` (served by the database its
``snapgraphDatabase`` property names, as for the hdbcli stand-in) or one of snapgraph's SQL databases.
What SAP does and snapgraph does not (partitions, dynamic configuration from input headers, HANA's
decimal and CESU-8 handling, SAP IQ bulk loads, polling a table) is refused here, by config key, so that
``snapgraph validate`` names the process and the key before anything runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from snapgraph.model.builtin_operator import BuiltinOperator, config_number, config_switch
from snapgraph.model.delivery import DeliveryTraits, WriterKind
from snapgraph.model.sql_builtins import SQL_CONNECTION_TYPES, connection_problems

#: DI's connection type of SAP HANA (served by its ``snapgraphDatabase`` property).
HANA_CONNECTION_TYPE = "HANA_DB"
SAP_CONNECTION_TYPES = (HANA_CONNECTION_TYPE, *SQL_CONNECTION_TYPES)
_CONNECTIONS_WHAT = "SAP HANA (served by its snapgraphDatabase) or a SQL database snapgraph connects to"
#: The ``service`` values the structured data operators accept here (SAP's names; the SQL ones are snapgraph's).
CONSUMER_SERVICES = (HANA_CONNECTION_TYPE, *SQL_CONNECTION_TYPES)
PRODUCER_SERVICES = (HANA_CONNECTION_TYPE, *SQL_CONNECTION_TYPES)

STATIC_MODE = "Static (from configuration)"
DYNAMIC_MODE = "Dynamic (from input)"
FIXED_SIZE = "Fixed size"
NO_BATCHING = "None"
#: Table Producer modes (SAP's default is overwrite).
PRODUCER_MODES = ("append", "overwrite", "truncate")
DEFAULT_PRODUCER_MODE = "overwrite"
STATEMENT_TYPES = ("INSERT", "UPSERT")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$#]*")
_QUOTED = re.compile(r'"((?:[^"]|"")+)"')


# -- reading SAP's config shapes ---------------------------------------------------------------------------

def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def remote_table_name(config: Mapping[str, Any]) -> str | None:
    """The table a structured data operator's ``source`` dataset names (``remoteObjectReference.name``)."""
    name = _mapping(_mapping(config.get("source")).get("remoteObjectReference")).get("name")
    return name.strip() if isinstance(name, str) and name.strip() else None


def schema_attributes(config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The columns of the ``source`` dataset's schema (``schema.tableBasedRepresentation.attributes``)."""
    representation = _mapping(_mapping(_mapping(config.get("source")).get("schema")).get("tableBasedRepresentation"))
    attributes = representation.get("attributes")
    return [a for a in attributes if isinstance(a, Mapping)] if isinstance(attributes, list) else []


def schema_unique_key(config: Mapping[str, Any]) -> list[str]:
    """The first unique key of the ``source`` dataset's schema ([] when it declares none)."""
    representation = _mapping(_mapping(_mapping(config.get("source")).get("schema")).get("tableBasedRepresentation"))
    keys = representation.get("uniqueKeys")
    if not isinstance(keys, list) or not keys:
        return []
    references = _mapping(keys[0]).get("attributeReferences")
    return [str(name) for name in references] if isinstance(references, list) else []


def mapped_column(expression: Any) -> str | None:
    """The input column an ``attributeMappings`` expression names: ``"name"`` (double quotes, ``""``
    inside) or a plain identifier; None for anything else (a computed expression)."""
    if not isinstance(expression, str):
        return None
    text = expression.strip()
    quoted = _QUOTED.fullmatch(text)
    if quoted:
        return quoted.group(1).replace('""', '"')
    return text if _IDENTIFIER.fullmatch(text) else None


def attribute_mappings(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(input column, target column) of each ``attributeMappings`` entry ([] when absent)."""
    mappings = config.get("attributeMappings")
    if not isinstance(mappings, list):
        return []
    pairs = []
    for entry in mappings:
        column = mapped_column(_mapping(entry).get("expression"))
        target = _mapping(entry).get("target")
        if column is not None and isinstance(target, str):
            pairs.append((column, target))
    return pairs


def is_static(config: Mapping[str, Any]) -> bool:
    """Whether a HANA operator's ``configMode`` is Static (SAP's default is Dynamic)."""
    return str(config.get("configMode", DYNAMIC_MODE)).strip().lower().startswith("static")


def column_list(value: Any) -> list[str] | None:
    """A list of column names (strings, or objects with a ``name``); None if malformed."""
    if not isinstance(value, list):
        return None
    names = [item if isinstance(item, str) else _mapping(item).get("name") for item in value]
    if not all(isinstance(name, str) and name.strip() for name in names):
        return None
    return [str(name).strip() for name in names]


def read_mode(value: Any) -> str | None:
    """Read HANA Table's ``readMode`` (SAP stores it as a string or a one-item list; empty means Once)."""
    if value is None or value == [] or value == "":
        return "Once"
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value.strip() if isinstance(value, str) else None


def duration_seconds(value: Any) -> float | None:
    """A duration as DI writes them (``"1s"``, ``"500ms"``, ``"2m"``, a plain number of seconds)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", str(value))
    if match is None:
        return None
    factor = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[match.group(2) or "s"]
    return float(match.group(1)) * factor


# -- config checks ------------------------------------------------------------------------------------------

def _service_problems(config: Mapping[str, Any], services: tuple[str, ...]) -> list[str]:
    service = config.get("service")
    if service is None or str(service).upper() in services:
        return []
    return [f"config 'service': {service!r} is not served by snapgraph (it serves {', '.join(services)}: SAP HANA "
            "through the connection's snapgraphDatabase, the others as themselves)"]


def _whole_number(config: Mapping[str, Any], key: str) -> list[str]:
    if key in config and ((n := config_number(config[key], integer=True)) is None or n < 1):
        return [f"config '{key}' must be a whole number >= 1, got {config[key]!r}"]
    return []


def _switch(config: Mapping[str, Any], key: str) -> list[str]:
    if key in config and config_switch(config[key]) is None:
        return [f"config '{key}' must be true or false, got {config[key]!r}"]
    return []


def _partition_problems(config: Mapping[str, Any]) -> list[str]:
    kind = config.get("partitionType")
    if kind is None or str(kind).strip().lower() in ("", "none"):
        return []
    return [f"config 'partitionType': partitions ({kind!r}) are not reproduced by snapgraph; it reads the whole "
            "source in one pass, ordered by its key, and that replays from a snapshot without partitions: set "
            "partitionType to None"]


def _session_problems(config: Mapping[str, Any]) -> list[str]:
    if str(config.get("additionalSessionParameters") or "").strip():
        return ["config 'additionalSessionParameters': session parameters are not reproduced by snapgraph "
                "(they are set on SAP's own connection); leave it empty"]
    return []


def _source_problems(config: Mapping[str, Any], what: str) -> list[str]:
    if not isinstance(config.get("source"), Mapping):
        return [f"config 'source' is missing: the {what}, a dataset with remoteObjectReference.name"
                if config.get("source") is None else f"config 'source' must be a dataset object, got "
                f"{config['source']!r}"]
    if remote_table_name(config) is None:
        return ["config 'source': its remoteObjectReference has no name (the table's name)"]
    problems = []
    for index, attribute in enumerate(schema_attributes(config)):
        if not isinstance(attribute.get("name"), str) or not attribute["name"].strip():
            problems.append(f"config 'source': schema attribute {index} has no name")
    return problems


def table_consumer_config_problems(config: Mapping[str, Any]) -> list[str]:
    """Table Consumer V3: ``serviceConnection``, ``source`` (the table), optional ``service``,
    ``fetchSize`` and ``forceFetchSize``; partitions and session parameters are refused."""
    return (connection_problems(config, "serviceConnection", SAP_CONNECTION_TYPES, _CONNECTIONS_WHAT)
            + _service_problems(config, CONSUMER_SERVICES) + _source_problems(config, "table to read")
            + _partition_problems(config) + _session_problems(config)
            + _whole_number(config, "fetchSize") + _switch(config, "forceFetchSize"))


def sql_consumer_config_problems(config: Mapping[str, Any]) -> list[str]:
    """SQL Consumer V3: ``serviceConnection``, ``native_sql_statement`` (one SELECT), optional ``service``,
    ``fetchSize`` and ``forceFetchSize``; partitions and session parameters are refused."""
    problems = (connection_problems(config, "serviceConnection", SAP_CONNECTION_TYPES, _CONNECTIONS_WHAT)
                + _service_problems(config, CONSUMER_SERVICES))
    statement = config.get("native_sql_statement")
    if not isinstance(statement, str) or not statement.strip():
        problems.append("config 'native_sql_statement' is missing: the SELECT statement to read"
                        if not statement else f"config 'native_sql_statement' must be a string, got {statement!r}")
    return (problems + _partition_problems(config) + _session_problems(config)
            + _whole_number(config, "fetchSize") + _switch(config, "forceFetchSize"))


def table_producer_config_problems(config: Mapping[str, Any]) -> list[str]:
    """Table Producer V3/V4: ``serviceConnection``, ``source`` (the target table), ``mode`` (append,
    overwrite, truncate), ``upsert`` (append only), ``attributeMappings``, optional ``service``,
    ``batchSize`` and ``forceBatchSize``; SAP IQ's bulk load options are refused."""
    problems = (connection_problems(config, "serviceConnection", SAP_CONNECTION_TYPES, _CONNECTIONS_WHAT)
                + _service_problems(config, PRODUCER_SERVICES) + _source_problems(config, "target table"))
    mode = config.get("mode", DEFAULT_PRODUCER_MODE)
    if mode not in PRODUCER_MODES:
        problems.append(f"config 'mode' must be one of {', '.join(PRODUCER_MODES)}, got {mode!r}")
    if mode == "overwrite" and isinstance(config.get("source"), Mapping) and not schema_attributes(config):
        problems.append("config 'source': mode overwrite creates the table from the dataset's schema, but "
                        "schema.tableBasedRepresentation.attributes is empty")
    problems += _switch(config, "upsert")
    mappings = config.get("attributeMappings")
    if mappings is not None and not isinstance(mappings, list):
        problems.append(f"config 'attributeMappings' must be a list of {{expression, target}}, got {mappings!r}")
    for index, entry in enumerate(mappings if isinstance(mappings, list) else []):
        where = f"config 'attributeMappings[{index}]'"
        if not isinstance(_mapping(entry).get("target"), str):
            problems.append(f"{where} has no target column")
        elif mapped_column(_mapping(entry).get("expression")) is None:
            problems.append(f"{where}: expression {_mapping(entry).get('expression')!r} is not reproduced: "
                            "snapgraph maps an input column (\"name\") to a target column, it computes no "
                            "expressions")
    if config.get("sapiqBulkLoadErrors"):
        problems.append("config 'sapiqBulkLoadErrors' applies to SAP IQ and HANA Data Lake bulk loads, which "
                        "snapgraph does not reproduce; remove it")
    return problems + _whole_number(config, "batchSize") + _switch(config, "forceBatchSize")


def _hana_common_problems(config: Mapping[str, Any], what: str) -> list[str]:
    problems = connection_problems(config, "connection", SAP_CONNECTION_TYPES, _CONNECTIONS_WHAT)
    if not is_static(config):
        problems.append(f"config 'configMode': {config.get('configMode', DYNAMIC_MODE)!r} (SAP's default) takes the "
                        "table from each input's com.sap.headers.hana.table header, which snapgraph does not "
                        f"reproduce: set configMode to {STATIC_MODE!r} and tableName to the {what}")
    table = config.get("tableName")
    if is_static(config) and (not isinstance(table, str) or not table.strip()):
        problems.append(f"config 'tableName' is missing: the {what}" if not table
                        else f"config 'tableName' must be a table name, got {table!r}")
    return problems


def read_hana_table_config_problems(config: Mapping[str, Any]) -> list[str]:
    """Read HANA Table V2: ``connection``, ``configMode`` Static, ``tableName``, optional ``columns``,
    ``readMode`` Once, ``batching`` (None or Fixed size) and ``batchSize``; polling, dynamic mode and
    HANA's value conversions are refused."""
    problems = _hana_common_problems(config, "table to read")
    if config.get("columns") not in (None, []) and column_list(config.get("columns")) is None:
        problems.append(f"config 'columns' must be a list of column names, got {config['columns']!r}")
    mode = read_mode(config.get("readMode"))
    if mode is None or mode.lower() not in ("once", "poll"):
        problems.append(f"config 'readMode' must be Once or Poll, got {config.get('readMode')!r}")
    elif mode.lower() == "poll":
        problems.append("config 'readMode': Poll (reading the table again every pollPeriod) is not reproduced by "
                        "snapgraph; use Once, or the SQL reader with streaming: true for rows added later")
    batching = config.get("batching", NO_BATCHING)
    if batching not in (NO_BATCHING, FIXED_SIZE):
        problems.append(f"config 'batching' must be {NO_BATCHING!r} or {FIXED_SIZE!r}, got {batching!r}")
    problems += _whole_number(config, "batchSize")
    if str(config.get("decimalOutputFormat", "Fraction")) != "Fraction":
        problems.append("config 'decimalOutputFormat': HANA's decimal formatting is not reproduced; snapgraph "
                        "passes decimals as the database driver returns them (leave it at Fraction)")
    if str(config.get("cesu8Handling", "Default")) != "Default":
        problems.append("config 'cesu8Handling': CESU-8 handling is HANA's; snapgraph's databases return UTF-8 "
                        "(leave it at Default)")
    return problems


def write_hana_table_config_problems(config: Mapping[str, Any]) -> list[str]:
    """Write HANA Table V2: ``connection``, ``configMode`` Static, ``tableName``, ``statementType`` (INSERT
    or UPSERT); dynamic mode is refused."""
    problems = _hana_common_problems(config, "target table")
    statement = config.get("statementType", "INSERT")
    if str(statement).upper() not in STATEMENT_TYPES:
        problems.append(f"config 'statementType' must be INSERT or UPSERT, got {statement!r}")
    return problems


# -- delivery --------------------------------------------------------------------------------------------

def _producer_delivery(config: Mapping[str, Any]) -> DeliveryTraits:
    upsert = config.get("mode", DEFAULT_PRODUCER_MODE) == "append" and config_switch(config.get("upsert")) is True
    return DeliveryTraits(writer=WriterKind.IDEMPOTENT if upsert else WriterKind.PLAIN)


def _read_hana_delivery(config: Mapping[str, Any]) -> DeliveryTraits:
    if config.get("batching", NO_BATCHING) == FIXED_SIZE:
        # SAP: state management with fixed-size batching, at-least-once (its state is kept between batches).
        return DeliveryTraits(replayable=True, deterministic=True, batches=True)
    return DeliveryTraits(deterministic=True)  # SAP: no state management without batching


def _write_hana_delivery(config: Mapping[str, Any]) -> DeliveryTraits:
    upsert = str(config.get("statementType", "INSERT")).upper() == "UPSERT"
    return DeliveryTraits(writer=WriterKind.IDEMPOTENT if upsert else WriterKind.PLAIN)


# Replays message by message, as the SQL reader (each page read again from the position restored with it).
_CONSUMER_DELIVERY = DeliveryTraits(replayable=True, deterministic=True)

TABLE_CONSUMER_V3 = BuiltinOperator(
    "com.sap.database.table.consumer.v3", "Table Consumer V3", aliases=("table-consumer-v3",),
    inports=("inTrigger",), outports=("outTable",), table_ports=("outTable",),
    delivery=_CONSUMER_DELIVERY, config_check=table_consumer_config_problems)
SQL_CONSUMER_V3 = BuiltinOperator(
    "com.sap.database.sql.consumer.v3", "SQL Consumer V3", aliases=("sql-consumer-v3",),
    inports=("inTrigger",), outports=("outTable",), table_ports=("outTable",),
    delivery=_CONSUMER_DELIVERY, config_check=sql_consumer_config_problems)
TABLE_PRODUCER_V3 = BuiltinOperator(
    "com.sap.database.table.producer.v3", "Table Producer V3", aliases=("table-producer-v3",),
    inports=("inTable",), outports=("out",), table_ports=("inTable",),
    delivery=DeliveryTraits(writer=WriterKind.PLAIN), config_check=table_producer_config_problems,
    delivery_by_config=_producer_delivery)
TABLE_PRODUCER_V4 = BuiltinOperator(
    "com.sap.database.table.producer.v4", "Table Producer V4", aliases=("table-producer-v4",),
    inports=("inTable",), outports=("out",), table_ports=("inTable",),
    delivery=DeliveryTraits(writer=WriterKind.PLAIN), config_check=table_producer_config_problems,
    delivery_by_config=_producer_delivery)
READ_HANA_TABLE_V2 = BuiltinOperator(
    "com.sap.hana.readTable.v2", "Read HANA Table V2", aliases=("read-hana-table-v2",),
    inports=("input",), outports=("success", "error"), table_ports=("success",),
    delivery=DeliveryTraits(deterministic=True), config_check=read_hana_table_config_problems,
    delivery_by_config=_read_hana_delivery)
WRITE_HANA_TABLE_V2 = BuiltinOperator(
    "com.sap.hana.writeTable.v2", "Write HANA Table V2", aliases=("write-hana-table-v2",),
    inports=("input",), outports=("success", "error"), table_ports=("input", "success"),
    delivery=DeliveryTraits(writer=WriterKind.PLAIN), config_check=write_hana_table_config_problems,
    delivery_by_config=_write_hana_delivery)

#: the family, in the order the registry lists them
SAP_DATABASE_BUILTINS = (TABLE_CONSUMER_V3, SQL_CONSUMER_V3, TABLE_PRODUCER_V3, TABLE_PRODUCER_V4,
                         READ_HANA_TABLE_V2, WRITE_HANA_TABLE_V2)
