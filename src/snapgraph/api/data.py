"""The former home of ``api.Table``, ``api.Record`` and ``api.type_context``, kept as an import path.

``from snapgraph.api.data import Table`` is documented (docs/testing.md) and is the module path
that operator states pickled by earlier versions name, so this module re-exports the public names of:

- :mod:`snapgraph.api.table`: ``Table``, ``Record``, ``table_columns``;
- :mod:`snapgraph.api.type_context`: ``TypeContext`` and the process-wide default context;
- :mod:`snapgraph.api.inference`: ``scalar_type_id_for``;
- :mod:`snapgraph.api.conformance`: ``conforms``;
- :mod:`snapgraph.api.printing`: ``describe``;
- :mod:`snapgraph.model.types`: ``DataTypeReference`` and the vtype classes.

New code imports from those modules.
"""

from __future__ import annotations

from snapgraph.api.conformance import conforms
from snapgraph.api.inference import scalar_type_id_for
from snapgraph.api.printing import describe
from snapgraph.api.table import Record, Table, table_columns
from snapgraph.api.type_context import TypeContext, get_default_type_context, set_default_type_context
from snapgraph.model.types import (
    DataTypeReference,
    VType,
    VTypeNone,
    VTypeScalar,
    VTypeStructure,
    VTypeTable,
)

__all__ = [
    "DataTypeReference",
    "Record",
    "Table",
    "TypeContext",
    "VType",
    "VTypeNone",
    "VTypeScalar",
    "VTypeStructure",
    "VTypeTable",
    "conforms",
    "describe",
    "get_default_type_context",
    "scalar_type_id_for",
    "set_default_type_context",
    "table_columns",
]
