"""SAP's table codecs: Binary to Table V2 (``com.sap.table.decode.v2``) decodes serialized data into
table messages, Table to Binary (``com.sap.table.encode``) encodes table messages as serialized data
(behaviour: :mod:`snapgraph.connectors.sap_codecs`; the config keys and what each supports:
docs/connectors.md, "SAP's table codecs").

Both are stateless transforms in SAP (snapshots "Yes", no state), and deterministic: the same message
in gives the same messages out. The checks below are those the model can make from the config alone;
SAP's options snapgraph does not implement are refused here, naming the key and the value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from snapgraph.model.builtin_operator import BuiltinOperator, column_names, config_number, config_switch
from snapgraph.model.delivery import DeliveryTraits

#: The serialization formats of each codec, as SAP spells them (compared without case).
DECODER_FORMATS = ("CSV", "JSON", "JSONLINES", "Parquet", "ORC")
ENCODER_FORMATS = ("CSV", "JSON", "JSONLINES", "Parquet")
#: The layouts of a JSON document (config ``format``), as pandas names its orients.
JSON_LAYOUTS = ("records", "values", "split", "index", "columns", "table")
#: Config ``rowSep``: the line terminator each value means when writing (``OS``: this machine's).
ROW_SEPARATORS = ("LF", "CR", "CRLF", "OS")
#: Config ``quoting``: SAP's doc spells Python's csv constants both ways.
QUOTING_STRATEGIES = ("QUOTE_ALL", "QUOTE_MINIMAL", "QUOTE_NONNUMERIC", "QUOTE_NONE",
                      "QUOTING_ALL", "QUOTING_MINIMAL", "QUOTING_NONNUMERIC", "QUOTING_NONE")
#: Config ``compression`` (Parquet) besides none.
PARQUET_COMPRESSIONS = ("snappy", "gzip", "brotli")

DECODER_DEFAULTS: dict[str, Any] = {
    "inputFormat": "CSV", "outputBatches": False, "colSep": ",", "rowSep": "LF", "header": True, "decSep": ".",
    "quoteChar": '"', "quoting": "QUOTE_MINIMAL", "ignoreBad": False, "format": "records"}
ENCODER_DEFAULTS: dict[str, Any] = {
    "outputFormat": "CSV", "collectBatches": False, "colSep": ",", "rowSep": "LF", "header": True, "decSep": ".",
    "quoteChar": '"', "quoting": "QUOTE_ALL", "format": "records"}


def codec_format(value: Any, allowed: tuple[str, ...]) -> str | None:
    """SAP's spelling of the format ``value`` names (any case), None if it is none of ``allowed``."""
    if not isinstance(value, str):
        return None
    return next((name for name in allowed if name.lower() == value.strip().lower()), None)


def _one_char(config: Mapping[str, Any], key: str, *, optional: bool) -> list[str]:
    value = config.get(key)
    if value is None or (optional and value == ""):
        return [] if optional else [f"config '{key}' is missing: one character"]
    if not isinstance(value, str) or len(value) != 1:
        return [f"config '{key}' must be one character, got {value!r}"]
    return []


def _one_of(config: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> list[str]:
    value = config.get(key)
    if value not in allowed:
        return [f"config '{key}' must be one of {', '.join(allowed)}, got {value!r}"]
    return []


def _switches(config: Mapping[str, Any], *keys: str) -> list[str]:
    return [f"config '{key}' must be true or false, got {config[key]!r}"
            for key in keys if key in config and config_switch(config[key]) is None]


def _names(config: Mapping[str, Any], *keys: str) -> list[str]:
    return [f"config '{key}' must be a comma-separated list of names, got {config[key]!r}"
            for key in keys if config.get(key) not in (None, "") and column_names(config[key]) is None]


def _csv_problems(config: Mapping[str, Any]) -> list[str]:
    problems = []
    if config.get("colSep") == "unknown":
        problems.append("config 'colSep': 'unknown' (guess the separator) is not supported by snapgraph; name "
                        "the separator")
    else:
        problems += _one_char(config, "colSep", optional=False)
    problems += _one_of(config, "rowSep", ROW_SEPARATORS)
    problems += _one_char(config, "decSep", optional=False)
    problems += _one_char(config, "escapeChar", optional=True)
    problems += _one_char(config, "quoteChar", optional=True)
    problems += _one_of(config, "quoting", QUOTING_STRATEGIES)
    problems += _switches(config, "header")
    problems += _names(config, "colNames")
    return problems


def decoder_config_problems(config: Mapping[str, Any]) -> list[str]:
    """Binary to Table V2: ``inputFormat``; ``outputBatches`` with ``batchSize``; for CSV ``colSep``,
    ``rowSep``, ``header``, ``colNames``, ``trueValues``, ``falseValues``, ``decSep``, ``digitGrpSep``,
    ``escapeChar``, ``quoteChar``, ``quoting``, ``ignoreBad``; ``dateCols`` (CSV, JSON, JSON lines) and
    ``format`` (JSON)."""
    config = {**DECODER_DEFAULTS, **config}
    fmt = codec_format(config["inputFormat"], DECODER_FORMATS)
    if fmt is None:
        return [f"config 'inputFormat' must be one of {', '.join(DECODER_FORMATS)}, got {config['inputFormat']!r}"]
    problems = _switches(config, "outputBatches")
    if config_switch(config["outputBatches"]) is True:
        size = config_number(config.get("batchSize"), integer=True)
        if size is None or size < 1:
            problems.append(f"config 'batchSize' must be a whole number of rows >= 1 when outputBatches is true, "
                            f"got {config.get('batchSize')!r}")
    if fmt == "CSV":
        problems += _csv_problems(config)
        problems += _one_char(config, "digitGrpSep", optional=True)
        if config.get("digitGrpSep") not in (None, "") and config.get("digitGrpSep") == config.get("decSep"):
            problems.append(f"config 'digitGrpSep' and 'decSep' are both {config['decSep']!r}")
        problems += _names(config, "trueValues", "falseValues")
        problems += _switches(config, "ignoreBad")
    if fmt == "JSON":
        problems += _one_of(config, "format", JSON_LAYOUTS)
    if fmt in ("CSV", "JSON", "JSONLINES"):
        problems += _names(config, "dateCols")
    if config.get("tableName") is not None and not isinstance(config["tableName"], str):
        problems.append(f"config 'tableName' must be a string, got {config['tableName']!r}")
    return problems


def encoder_config_problems(config: Mapping[str, Any]) -> list[str]:
    """Table to Binary: ``outputFormat``; ``collectBatches``; for CSV ``colSep``, ``rowSep``, ``header``,
    ``colNames``, ``decSep``, ``escapeChar``, ``quoteChar``, ``quoting``, ``dateFormat``; ``format``
    (JSON); ``compression`` (Parquet). ``partitionCols`` is refused."""
    config = {**ENCODER_DEFAULTS, **config}
    fmt = codec_format(config["outputFormat"], ENCODER_FORMATS)
    if fmt is None:
        return [f"config 'outputFormat' must be one of {', '.join(ENCODER_FORMATS)}, got {config['outputFormat']!r}"]
    problems = _switches(config, "collectBatches")
    if fmt == "CSV":
        problems += _csv_problems(config)
        date_format = config.get("dateFormat")
        if date_format not in (None, "") and not isinstance(date_format, str):
            problems.append(f"config 'dateFormat' must be a strftime format string, got {date_format!r}")
    if fmt == "JSON":
        problems += _one_of(config, "format", JSON_LAYOUTS)
    if fmt == "Parquet":
        compression = config.get("compression")
        if compression not in (None, "", "none") and compression not in PARQUET_COMPRESSIONS:
            problems.append(f"config 'compression' must be one of {', '.join(PARQUET_COMPRESSIONS)} (or none), "
                            f"got {compression!r}")
        if config.get("partitionCols") not in (None, ""):
            problems.append(f"config 'partitionCols' {config['partitionCols']!r} is not supported by snapgraph: a "
                            "partitioned Parquet data set is many files, and the output is one binary message; "
                            "leave it empty")
    return problems


# Stateless transforms (SAP: snapshots "Yes", no state): the same input gives the same output.
BINARY_TO_TABLE = BuiltinOperator(
    "com.sap.table.decode.v2", "Binary to Table V2", aliases=("binaryToTable",),
    inports=("binary",), outports=("table", "error"), table_ports=("table",),
    delivery=DeliveryTraits(deterministic=True),
    config_check=decoder_config_problems,
)
TABLE_TO_BINARY = BuiltinOperator(
    "com.sap.table.encode", "Table to Binary", aliases=("tableToBinary",),
    inports=("table",), outports=("binary", "error"), table_ports=("table",),
    delivery=DeliveryTraits(deterministic=True),
    config_check=encoder_config_problems,
)

#: the family, in the order the registry lists them
CODEC_BUILTINS = (BINARY_TO_TABLE, TABLE_TO_BINARY)
