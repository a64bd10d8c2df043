"""The descriptors of SAP's table codecs (src/snapgraph/model/codec_builtins.py): registered built-ins with
SAP's ports, deterministic, and config checks that name the key (and the value snapgraph refuses)."""

from __future__ import annotations

from typing import Any

import pytest

from snapgraph.model.builtins import BUILTIN_ALIASES, BUILTINS
from snapgraph.model.codec_builtins import BINARY_TO_TABLE, TABLE_TO_BINARY
from snapgraph.model.delivery import DeliveryTraits
from snapgraph.model.operators_repo import DYNAMIC_TABLE, builtin_ports


def test_the_codecs_are_built_ins_with_sap_ports() -> None:
    assert BUILTINS["com.sap.table.decode.v2"] is BINARY_TO_TABLE
    assert BUILTINS["com.sap.table.encode"] is TABLE_TO_BINARY
    assert BUILTIN_ALIASES["binaryToTable"] == BINARY_TO_TABLE.component
    assert BUILTIN_ALIASES["tableToBinary"] == TABLE_TO_BINARY.component
    decoder_in, decoder_out = builtin_ports(BINARY_TO_TABLE.component)
    assert list(decoder_in) == ["binary"] and list(decoder_out) == ["table", "error"]
    assert decoder_out["table"].type == DYNAMIC_TABLE
    encoder_in, encoder_out = builtin_ports(TABLE_TO_BINARY.component)
    assert list(encoder_in) == ["table"] and list(encoder_out) == ["binary", "error"]
    assert encoder_in["table"].type == DYNAMIC_TABLE


@pytest.mark.parametrize("descriptor", [BINARY_TO_TABLE, TABLE_TO_BINARY])
def test_the_codecs_are_deterministic_whatever_their_config(descriptor: Any) -> None:
    assert descriptor.delivery_of({}) == DeliveryTraits(deterministic=True)
    assert descriptor.delivery_of({"collectBatches": True, "outputBatches": True, "batchSize": 2}).deterministic


@pytest.mark.parametrize(("config", "problem"), [
    ({"inputFormat": "XML"}, "config 'inputFormat' must be one of CSV, JSON, JSONLINES, Parquet, ORC, got 'XML'"),
    ({"outputBatches": True}, "config 'batchSize' must be a whole number of rows >= 1 when outputBatches is true"),
    ({"outputBatches": True, "batchSize": 0}, "config 'batchSize' must be a whole number of rows >= 1"),
    ({"outputBatches": "often"}, "config 'outputBatches' must be true or false"),
    ({"colSep": "unknown"}, "config 'colSep': 'unknown' (guess the separator) is not supported by snapgraph"),
    ({"colSep": ";;"}, "config 'colSep' must be one character"),
    ({"rowSep": "NL"}, "config 'rowSep' must be one of LF, CR, CRLF, OS"),
    ({"decSep": ",", "digitGrpSep": ","}, "config 'digitGrpSep' and 'decSep' are both ','"),
    ({"quoting": "QUOTE_SOME"}, "config 'quoting' must be one of QUOTE_ALL"),
    ({"trueValues": ["yes", 1]}, "config 'trueValues' must be a comma-separated list of names"),
    ({"inputFormat": "JSON", "format": "rows"}, "config 'format' must be one of records, values, split"),
    ({"tableName": 3}, "config 'tableName' must be a string"),
])
def test_decoder_config_problems_name_the_key(config: dict[str, Any], problem: str) -> None:
    problems = BINARY_TO_TABLE.config_problems(config)
    assert any(problem in text for text in problems), problems


@pytest.mark.parametrize(("config", "problem"), [
    ({"outputFormat": "ORC"}, "config 'outputFormat' must be one of CSV, JSON, JSONLINES, Parquet, got 'ORC'"),
    ({"outputFormat": "Parquet", "partitionCols": "region"},
     "config 'partitionCols' 'region' is not supported by snapgraph"),
    ({"outputFormat": "Parquet", "compression": "zstd"}, "config 'compression' must be one of snappy, gzip, brotli"),
    ({"collectBatches": "maybe"}, "config 'collectBatches' must be true or false"),
    ({"header": "sometimes"}, "config 'header' must be true or false"),
    ({"escapeChar": "\\\\"}, "config 'escapeChar' must be one character"),
    ({"dateFormat": 5}, "config 'dateFormat' must be a strftime format string"),
])
def test_encoder_config_problems_name_the_key(config: dict[str, Any], problem: str) -> None:
    problems = TABLE_TO_BINARY.config_problems(config)
    assert any(problem in text for text in problems), problems


def test_good_configs_have_no_problems() -> None:
    assert BINARY_TO_TABLE.config_problems({}) == []  # SAP's defaults: CSV with a header row
    assert BINARY_TO_TABLE.config_problems({"inputFormat": "orc", "outputBatches": "true", "batchSize": "10"}) == []
    assert BINARY_TO_TABLE.config_problems({"colSep": ";", "decSep": ",", "digitGrpSep": ".", "quoteChar": "",
                                            "escapeChar": "\\", "trueValues": "yes, y", "dateCols": "born",
                                            "quoting": "QUOTING_MINIMAL"}) == []
    assert TABLE_TO_BINARY.config_problems({}) == []
    assert TABLE_TO_BINARY.config_problems({"outputFormat": "Parquet", "compression": "gzip"}) == []
    assert TABLE_TO_BINARY.config_problems({"outputFormat": "JSON", "format": "split", "collectBatches": True}) == []
