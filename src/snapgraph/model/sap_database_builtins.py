"""SAP's built-in database operators, mapped onto the SQL connectors: their descriptors and config checks.

Eight of SAP's Gen2 operators, by SAP's component ids and config keys (what each key means, what is
refused and the guarantee: docs/connectors.md, "SAP's database operators"; behaviour:
:mod:`snapgraph.connectors.sap_database`):

* the structured data operators Table Consumer V3 and SQL Consumer V3 (readers) and Table Producer V3 /
  V4 (a writer), configured by ``service``, ``serviceConnection`` and a ``source`` dataset
  (``remoteObjectReference`` + ``schema.tableBasedRepresentation``) as the Modeler writes them;
* the HANA operators Read HANA Table V2, Write HANA Table V2 and Initialize HANA Table V2, configured
  by ``connection``, ``configMode``, ``tableName`` and their own keys, and Run HANA SQL V2, configured by
  ``connection``, ``mode``, ``sql``, ``transactionLevel`` and ``batching``.

Their connection is a managed connection of type ``HANA_DB`` (served by the database its
``snapgraphDatabase`` property names, as for the hdbcli stand-in) or one of snapgraph's SQL databases.
The consumers' Logical partitions (``partitionType`` Logical, ``partitionSpecification``) are read here
(:func:`logical_partitions`) and reproduced by the SQL reader's partitions. What SAP does and snapgraph
does not (physical and Row ID partitions, dynamic configuration from input headers, HANA's decimal and
CESU-8 handling, SAP IQ bulk loads, polling a table) is refused here, by config key, so that
``snapgraph validate`` names the process and the key before anything runs.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from snapgraph.model.builtin_operator import BuiltinOperator, CrashPoint, config_number, config_switch
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

#: Run HANA SQL's transaction levels (SAP's default is per input) and the statement kinds that only read.
PER_INPUT = "Per input"
PER_STATEMENT = "Per statement"
TRANSACTION_LEVELS = (PER_INPUT, PER_STATEMENT)
QUERY_KINDS = frozenset({"SELECT", "WITH"})
#: Initialize HANA Table's modes (SAP's default is Create) and table types.
INIT_MODES = ("Create", "Truncate", "Delete", "Drop (Restrict)", "Drop (Cascade)")
DEFAULT_INIT_MODE = "Create"
TABLE_TYPES = ("Row", "Column")
#: HANA's column types -> the dataset datatype whose column the Table Producer's overwrite mode creates
#: (the size of a string or binary type is its length, of a decimal its precision).
HANA_COLUMN_TYPES = {
    "TINYINT": "TINYINT", "SMALLINT": "SMALLINT", "INTEGER": "INTEGER", "INT": "INTEGER", "BIGINT": "BIGINT",
    "DECIMAL": "DECIMAL", "SMALLDECIMAL": "DECIMAL", "REAL": "REAL", "DOUBLE": "DOUBLE", "FLOAT": "DOUBLE",
    "VARCHAR": "STRING", "NVARCHAR": "STRING", "CHAR": "STRING", "NCHAR": "STRING", "ALPHANUM": "STRING",
    "SHORTTEXT": "STRING", "CLOB": "CLOB", "NCLOB": "CLOB", "TEXT": "CLOB", "VARBINARY": "BINARY",
    "BINARY": "BINARY", "BLOB": "BINARY", "DATE": "DATE", "TIME": "TIME", "SECONDDATE": "DATETIME",
    "TIMESTAMP": "TIMESTAMP", "BOOLEAN": "BOOLEAN",
}

#: partitionType of SAP's logical (user-defined) partitions, the only type reproduced (lower case).
LOGICAL = "logical"
PARTITION_KINDS = ("LIST", "RANGE")
PARTITION_DATATYPES = ("STRING", "NUMBER", "EXPRESSION")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$#]*")
#: What a statement separator never splits: string literals, quoted identifiers, comments.
_SQL_PART = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|;|[^'"\-/;]+|.""", re.DOTALL)
_SQL_NOISE = re.compile(r"(?:\s|--[^\n]*|/\*.*?\*/|\()*", re.DOTALL)
_HANA_TYPE = re.compile(r"\s*([A-Za-z]+)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?\s*")
#: One part of a dotted HANA name, with the blanks around it: a quoted identifier or a plain one.
_NAME_PART = re.compile(r'\s*("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$#]*)\s*')


@dataclass(frozen=True)
class HanaTableName:
    """The ``tableName`` of a HANA operator: the table, and the schema a qualified name gives (``None``
    without one). The schema is not used: the database that serves the connection decides it."""

    table: str
    schema: str | None


@dataclass(frozen=True)
class PartitionCondition:
    """One condition of a Logical partition specification: filters of ``column_expression`` (a column name
    or an expression), one per element: equal to it (LIST) or in the range it starts or ends (RANGE)."""

    column_expression: str
    kind: str  # LIST or RANGE
    datatype: str  # STRING, NUMBER or EXPRESSION (an SQL expression, used as written)
    elements: tuple[str, ...]


@dataclass(frozen=True)
class LogicalPartitions:
    """SAP's Logical partitions: the product of the conditions' filters, and with ``default`` one more
    partition of the rows no other partition holds."""

    default: bool
    conditions: tuple[PartitionCondition, ...]


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


def unquoted_identifier(text: str) -> str:
    """The name one HANA identifier stands for: a quoted one (``"Name"``) without its quotes and with
    each doubled quote (``""``) one quote, its case kept; a plain one as written. HANA upper-cases a plain
    name; snapgraph keeps the case as written, as the hdbcli stand-in does (its statements pass a plain
    name on unquoted), and the SAP operators quote the name they get, so ``src`` finds table ``src``."""
    return text[1:-1].replace('""', '"') if text.startswith('"') else text


def identifier_parts(text: str) -> tuple[str, ...] | None:
    """The names of a dotted HANA name (``SRC``, ``"Src"``, ``QA.SRC``, ``"QA"."SRC"``; blanks around
    the parts and dots allowed), each as :func:`unquoted_identifier` reads it; None when ``text`` is not
    one (an empty or unterminated quoted part, a stray character, a missing part around a dot)."""
    parts: list[str] = []
    at = 0
    while True:
        part = _NAME_PART.match(text, at)
        if part is None:
            return None
        parts.append(unquoted_identifier(part.group(1)))
        at = part.end()
        if at == len(text):
            return tuple(parts)
        if text[at] != ".":
            return None
        at += 1


def hana_table_name(value: Any) -> HanaTableName | None:
    """A HANA operator's ``tableName``: ``TABLE`` or ``SCHEMA.TABLE``, each part quoted or plain (see
    :func:`identifier_parts`); None when it is not one (more than two parts, or no name at all)."""
    parts = identifier_parts(value) if isinstance(value, str) else None
    if parts is None or len(parts) > 2:
        return None
    return HanaTableName(parts[-1], parts[0] if len(parts) == 2 else None)


def mapped_column(expression: Any) -> str | None:
    """The input column an ``attributeMappings`` expression names: ``"name"`` (double quotes, ``""``
    inside) or a plain identifier; None for anything else (a computed expression)."""
    parts = identifier_parts(expression) if isinstance(expression, str) else None
    return parts[0] if parts is not None and len(parts) == 1 else None


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


def sql_statements(text: str) -> list[str]:
    """The statements of an SQL text, split at each ``;`` that is not inside a string literal, a quoted
    identifier or a comment; a part that holds no statement (only blanks and comments) is left out."""
    statements: list[str] = []
    current: list[str] = []
    for match in _SQL_PART.finditer(text):
        if match.group() != ";":
            current.append(match.group())
            continue
        statements.append("".join(current))
        current = []
    statements.append("".join(current))
    return [statement.strip() for statement in statements if statement_kind(statement)]


def statement_kind(statement: str) -> str:
    """The first keyword of a statement in upper case (after comments and opening parentheses; '' if none)."""
    rest = statement[_SQL_NOISE.match(statement).end():]  # type: ignore[union-attr]  # it matches the empty text
    word = _IDENTIFIER.match(rest)
    return word.group().upper() if word else ("?" if rest.strip() else "")


def hana_columns(value: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Initialize HANA Table's ``tableColumns`` as dataset schema attributes (``name``, ``datatype``,
    ``length`` / ``precision`` and ``scale``), and the problems. A column is ``{name, type}`` with HANA's
    type name (``NVARCHAR``, ``DECIMAL``, ...) and optional ``size`` (or ``length``) and ``scale``, or
    the type written with them (``"NVARCHAR(40)"``, ``"DECIMAL(12, 2)"``)."""
    if value in (None, "", []):
        return [], []
    if not isinstance(value, list):
        return [], [f"config 'tableColumns' must be a list of {{name, type}}, got {value!r}"]
    attributes, problems = [], []
    for index, column in enumerate(value):
        where = f"config 'tableColumns[{index}]'"
        name, written = _mapping(column).get("name"), _mapping(column).get("type")
        typed = _HANA_TYPE.fullmatch(written) if isinstance(written, str) else None
        if not isinstance(name, str) or not name.strip():
            problems.append(f"{where} has no name")
            continue
        if typed is None or typed.group(1).upper() not in HANA_COLUMN_TYPES:
            problems.append(f"{where} ({name!r}): type {written!r} is not a HANA column type snapgraph creates "
                            f"(known: {', '.join(sorted(HANA_COLUMN_TYPES))})")
            continue
        size = typed.group(2) or _mapping(column).get("size") or _mapping(column).get("length")
        scale = typed.group(3) or _mapping(column).get("scale")
        numbers = [config_number(part, integer=True) for part in (size, scale) if part not in (None, "")]
        if any(number is None or number < 0 for number in numbers):
            problems.append(f"{where} ({name!r}): size and scale must be whole numbers, got {size!r}, {scale!r}")
            continue
        datatype = HANA_COLUMN_TYPES[typed.group(1).upper()]
        attribute: dict[str, Any] = {"name": name.strip(), "datatype": datatype}
        if size not in (None, ""):
            attribute["precision" if datatype == "DECIMAL" else "length"] = int(str(size))
        if scale not in (None, ""):
            attribute["scale"] = int(str(scale))
        attributes.append(attribute)
    return attributes, problems


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


def logical_partitions(config: Mapping[str, Any]) -> tuple[LogicalPartitions | None, list[str]]:
    """A consumer's partitions by its ``partitionType`` and ``partitionSpecification``: None without
    partitions (``None``, SAP's default, or empty), else the Logical specification, and the problems:
    another partition type (Physical, Row ID: the source database's own) or a malformed specification."""
    kind = config.get("partitionType")
    if kind is None or str(kind).strip().lower() in ("", "none"):
        return None, []
    if str(kind).strip().lower() != LOGICAL:
        return None, [f"config 'partitionType': {kind!r} partitions are the source database's own (SAP offers "
                      "them for Oracle) and are not reproduced by snapgraph; use Logical (ranges or lists of values "
                      "of a column, in partitionSpecification) or None"]
    spec = config.get("partitionSpecification")
    if isinstance(spec, str) and spec.strip():
        try:
            spec = json.loads(spec)
        except ValueError as err:
            return None, [f"config 'partitionSpecification' is not JSON: {err}"]
    if not isinstance(spec, Mapping):
        return None, ["config 'partitionSpecification' is missing: Logical partitions are defined by its "
                      "conditions" if spec in (None, "") else
                      f"config 'partitionSpecification' must be an object with conditions, got {spec!r}"]
    default = config_switch(spec.get("defaultPartition", True))
    conditions = spec.get("conditions")
    problems = [] if default is not None else [
        f"config 'partitionSpecification': defaultPartition must be true or false, got {spec['defaultPartition']!r}"]
    if not isinstance(conditions, list) or not conditions:
        return None, [*problems, "config 'partitionSpecification': conditions must be a non-empty list of "
                                 "{columnExpression, type, dataType, elements}"]
    parsed = []
    for index, condition in enumerate(conditions):
        where = f"config 'partitionSpecification': conditions[{index}]"
        found, wrong = _partition_condition(_mapping(condition), where)
        problems += wrong
        if found is not None:
            parsed.append(found)
    if problems:
        return None, problems
    return LogicalPartitions(default is True, tuple(parsed)), []


def _partition_condition(condition: Mapping[str, Any], where: str) -> tuple[PartitionCondition | None, list[str]]:
    expression, kind, datatype = (condition.get(key) for key in ("columnExpression", "type", "dataType"))
    elements = condition.get("elements")
    problems = []
    if not isinstance(expression, str) or not expression.strip():
        problems.append(f"{where}: columnExpression must name the column (or an expression of it), got {expression!r}")
    if str(kind).upper() not in PARTITION_KINDS:
        problems.append(f"{where}: type must be one of {', '.join(PARTITION_KINDS)}, got {kind!r}")
    if str(datatype).upper() not in PARTITION_DATATYPES:
        problems.append(f"{where}: dataType must be one of {', '.join(PARTITION_DATATYPES)}, got {datatype!r}")
    if not isinstance(elements, list) or not elements or not all(isinstance(e, (str, int, float)) and
                                                                 not isinstance(e, bool) for e in elements):
        problems.append(f"{where}: elements must be a non-empty list of values, got {elements!r}")
    if problems:
        return None, problems
    assert isinstance(expression, str) and isinstance(elements, list)
    values = [str(element).strip() for element in elements]
    if str(datatype).upper() == "NUMBER":
        numbers = [partition_number(value) for value in values]
        bad = [value for value, number in zip(values, numbers, strict=True) if number is None]
        if bad:
            return None, [f"{where}: dataType NUMBER, but {', '.join(map(repr, bad))} is not a number"]
        if str(kind).upper() == "RANGE" and numbers != sorted(numbers):  # type: ignore[type-var]
            return None, [f"{where}: the elements of a RANGE are the bounds of its ranges, in ascending order; got "
                          f"{', '.join(values)}"]
    return PartitionCondition(expression.strip(), str(kind).upper(), str(datatype).upper(), tuple(values)), []


def partition_number(text: str) -> int | float | None:
    """A NUMBER element of a partition condition as a number (an int when it is one), None if it is none."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _partition_problems(config: Mapping[str, Any]) -> list[str]:
    return logical_partitions(config)[1]


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
    ``fetchSize``, ``forceFetchSize``, ``partitionType`` (None or Logical) with ``partitionSpecification``;
    other partition types and session parameters are refused."""
    return (connection_problems(config, "serviceConnection", SAP_CONNECTION_TYPES, _CONNECTIONS_WHAT)
            + _service_problems(config, CONSUMER_SERVICES) + _source_problems(config, "table to read")
            + _partition_problems(config) + _session_problems(config)
            + _whole_number(config, "fetchSize") + _switch(config, "forceFetchSize"))


def sql_consumer_config_problems(config: Mapping[str, Any]) -> list[str]:
    """SQL Consumer V3: ``serviceConnection``, ``native_sql_statement`` (one SELECT), optional ``service``,
    ``fetchSize``, ``forceFetchSize``, ``partitionType`` (None or Logical) with ``partitionSpecification``;
    other partition types and session parameters are refused."""
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
    if not is_static(config):
        return problems
    if not isinstance(table, str) or not table.strip():
        problems.append(f"config 'tableName' is missing: the {what}" if not table
                        else f"config 'tableName' must be a table name, got {table!r}")
    elif hana_table_name(table) is None:
        problems.append(f"config 'tableName': {table!r} is not a HANA table name: write TABLE or SCHEMA.TABLE, "
                        'each part plain (letters, digits, _, $, #) or in double quotes ("My Table", with "" for '
                        "a quote inside)")
    return problems


def _hana_conversion_problems(config: Mapping[str, Any]) -> list[str]:
    problems = []
    if str(config.get("decimalOutputFormat", "Fraction")) != "Fraction":
        problems.append("config 'decimalOutputFormat': HANA's decimal formatting is not reproduced; snapgraph "
                        "passes decimals as the database driver returns them (leave it at Fraction)")
    if str(config.get("cesu8Handling", "Default")) != "Default":
        problems.append("config 'cesu8Handling': CESU-8 handling is HANA's; snapgraph's databases return UTF-8 "
                        "(leave it at Default)")
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
    return problems + _batching_problems(config) + _hana_conversion_problems(config)


def write_hana_table_config_problems(config: Mapping[str, Any]) -> list[str]:
    """Write HANA Table V2: ``connection``, ``configMode`` Static, ``tableName``, ``statementType`` (INSERT
    or UPSERT); dynamic mode is refused."""
    problems = _hana_common_problems(config, "target table")
    statement = config.get("statementType", "INSERT")
    if str(statement).upper() not in STATEMENT_TYPES:
        problems.append(f"config 'statementType' must be INSERT or UPSERT, got {statement!r}")
    return problems


def _batching_problems(config: Mapping[str, Any]) -> list[str]:
    batching = config.get("batching", NO_BATCHING)
    if batching not in (NO_BATCHING, FIXED_SIZE):
        return [f"config 'batching' must be {NO_BATCHING!r} or {FIXED_SIZE!r}, got {batching!r}"]
    return _whole_number(config, "batchSize")


def run_sql_is_static(config: Mapping[str, Any]) -> bool:
    """Whether Run HANA SQL's ``mode`` is Static (SAP's default is Dynamic: the statements of each input)."""
    return str(config.get("mode", DYNAMIC_MODE)).strip().lower().startswith("static")


def run_hana_sql_config_problems(config: Mapping[str, Any]) -> list[str]:
    """Run HANA SQL V2: ``connection``, ``mode`` (Static: the statements of ``sql``; Dynamic: those of each
    input string), ``transactionLevel``, ``batching`` and ``batchSize``; HANA's value conversions are refused
    (a statement the serving database cannot be given is refused when the graph starts)."""
    problems = connection_problems(config, "connection", SAP_CONNECTION_TYPES, _CONNECTIONS_WHAT)
    mode = str(config.get("mode", DYNAMIC_MODE)).strip().lower()
    if not mode.startswith(("static", "dynamic")):
        problems.append(f"config 'mode' must be {STATIC_MODE!r} or {DYNAMIC_MODE!r}, got {config.get('mode')!r}")
    sql = config.get("sql", "")
    if not isinstance(sql, str):
        problems.append(f"config 'sql' must be SQL text, got {sql!r}")
    elif run_sql_is_static(config) and not sql_statements(sql):
        problems.append("config 'sql' holds no statement: in Static mode it is the SQL the operator runs")
    if config.get("transactionLevel", PER_INPUT) not in TRANSACTION_LEVELS:
        problems.append(f"config 'transactionLevel' must be {PER_INPUT!r} or {PER_STATEMENT!r}, got "
                        f"{config.get('transactionLevel')!r}")
    return problems + _batching_problems(config) + _hana_conversion_problems(config)


def init_hana_table_config_problems(config: Mapping[str, Any]) -> list[str]:
    """Initialize HANA Table V2: ``connection``, ``configMode`` Static, ``tableName``, ``initMode``,
    ``tableColumns`` (HANA types), ``primaryKey``, ``tableType`` and ``outputInitializedTable``; dynamic
    mode (the table's DDL from each input's header) is refused."""
    problems = _hana_common_problems(config, "table to initialize")
    mode = config.get("initMode", DEFAULT_INIT_MODE)
    if mode not in INIT_MODES:
        problems.append(f"config 'initMode' must be one of {', '.join(INIT_MODES)}, got {mode!r}")
    attributes, wrong = hana_columns(config.get("tableColumns"))
    problems += wrong
    if str(mode).startswith("Drop") and not attributes and not wrong:
        problems.append(f"config 'tableColumns' is empty, but initMode {mode!r} creates the table again from them")
    key = column_list(config.get("primaryKey") or [])
    if key is None:
        problems.append(f"config 'primaryKey' must be a list of column names, got {config['primaryKey']!r}")
    elif attributes and (unknown := [name for name in key if name not in {a["name"] for a in attributes}]):
        problems.append(f"config 'primaryKey': {', '.join(map(repr, unknown))} is not in config 'tableColumns'")
    if config.get("tableType", "Row") not in TABLE_TYPES:
        problems.append(f"config 'tableType' must be Row or Column, got {config.get('tableType')!r}")
    return problems + _switch(config, "outputInitializedTable")


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


def _run_sql_delivery(config: Mapping[str, Any]) -> DeliveryTraits:
    if not run_sql_is_static(config):  # the statements come with the input: they run again when it is replayed
        return DeliveryTraits(writer=WriterKind.PLAIN)
    kinds = {statement_kind(statement) for statement in sql_statements(str(config.get("sql", "")))}
    # SAP: state (the last statement, the batch index) with Per statement and Fixed size only, at-least-once:
    # a statement committed after the restored snapshot runs again, so one that writes is a plain writer.
    # Without that state a restore runs the statements again from the first: its output comes again from
    # the start, which is a replay that can begin before the restored position (``batches``) as well.
    return DeliveryTraits(replayable=True, deterministic=True, batches=True,
                          writer=None if kinds <= QUERY_KINDS else WriterKind.PLAIN)


# Replays message by message, as the SQL reader (each page read again from the position restored with it),
# with Logical partitions (SAP's condition for snapshots: the state names the current partition) and also
# without them (SAP runs them without snapshots then; snapgraph's key position replays the one pass).
_CONSUMER_DELIVERY = DeliveryTraits(replayable=True, deterministic=True)
_PAGE_PUBLISHED = (CrashPoint("sql_reader_published", "output"),)  # the readers: each page published
_ROWS_COMMITTED = (CrashPoint("sql_writer_committed", "input"),)  # the writers: each message's rows committed

TABLE_CONSUMER_V3 = BuiltinOperator(
    "com.sap.database.table.consumer.v3", "Table Consumer V3", aliases=("table-consumer-v3",),
    inports=("inTrigger",), outports=("outTable",), table_ports=("outTable",),
    delivery=_CONSUMER_DELIVERY, config_check=table_consumer_config_problems, crash_points=_PAGE_PUBLISHED)
SQL_CONSUMER_V3 = BuiltinOperator(
    "com.sap.database.sql.consumer.v3", "SQL Consumer V3", aliases=("sql-consumer-v3",),
    inports=("inTrigger",), outports=("outTable",), table_ports=("outTable",),
    delivery=_CONSUMER_DELIVERY, config_check=sql_consumer_config_problems, crash_points=_PAGE_PUBLISHED)
TABLE_PRODUCER_V3 = BuiltinOperator(
    "com.sap.database.table.producer.v3", "Table Producer V3", aliases=("table-producer-v3",),
    inports=("inTable",), outports=("out",), table_ports=("inTable",),
    delivery=DeliveryTraits(writer=WriterKind.PLAIN), config_check=table_producer_config_problems,
    delivery_by_config=_producer_delivery, crash_points=_ROWS_COMMITTED)
TABLE_PRODUCER_V4 = BuiltinOperator(
    "com.sap.database.table.producer.v4", "Table Producer V4", aliases=("table-producer-v4",),
    inports=("inTable",), outports=("out",), table_ports=("inTable",),
    delivery=DeliveryTraits(writer=WriterKind.PLAIN), config_check=table_producer_config_problems,
    delivery_by_config=_producer_delivery, crash_points=_ROWS_COMMITTED)
READ_HANA_TABLE_V2 = BuiltinOperator(
    "com.sap.hana.readTable.v2", "Read HANA Table V2", aliases=("read-hana-table-v2",),
    inports=("input",), outports=("success", "error"), table_ports=("success",),
    delivery=DeliveryTraits(deterministic=True), config_check=read_hana_table_config_problems,
    delivery_by_config=_read_hana_delivery, crash_points=_PAGE_PUBLISHED)
WRITE_HANA_TABLE_V2 = BuiltinOperator(
    "com.sap.hana.writeTable.v2", "Write HANA Table V2", aliases=("write-hana-table-v2",),
    inports=("input",), outports=("success", "error"), table_ports=("input", "success"),
    delivery=DeliveryTraits(writer=WriterKind.PLAIN), config_check=write_hana_table_config_problems,
    delivery_by_config=_write_hana_delivery, crash_points=_ROWS_COMMITTED)

RUN_HANA_SQL_V2 = BuiltinOperator(
    "com.sap.hana.runSQL.v2", "Run HANA SQL V2", aliases=("run-hana-sql-v2",),
    inports=("input",), outports=("success", "error"), table_ports=("success",),
    delivery=DeliveryTraits(writer=WriterKind.PLAIN), config_check=run_hana_sql_config_problems,
    delivery_by_config=_run_sql_delivery,
    # Static mode: a unit committed (the first, in a fresh run), each result batch published
    crash_points=(CrashPoint("hana_sql_committed", "once", when=run_sql_is_static),
                  CrashPoint("hana_sql_published", "output", when=run_sql_is_static)))
# SAP: snapshots supported. It prepares the table once per fresh run (never after a restore) and forwards its
# input, so it writes no rows itself and adds nothing to replay.
INIT_HANA_TABLE_V2 = BuiltinOperator(
    "com.sap.hana.initTable.v2", "Initialize HANA Table V2", aliases=("init-hana-table-v2",),
    inports=("input",), outports=("success", "error"), table_ports=("input", "success"),
    delivery=DeliveryTraits(replayable=True, deterministic=True), config_check=init_hana_table_config_problems)

#: the family, in the order the registry lists them
SAP_DATABASE_BUILTINS = (TABLE_CONSUMER_V3, SQL_CONSUMER_V3, TABLE_PRODUCER_V3, TABLE_PRODUCER_V4,
                         READ_HANA_TABLE_V2, WRITE_HANA_TABLE_V2, RUN_HANA_SQL_V2, INIT_HANA_TABLE_V2)
