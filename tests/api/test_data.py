"""Unit tests for snapgraph.api.data: the former import path re-exports the objects of the modules split from it."""

from __future__ import annotations

import pickle

from snapgraph.api import data as data_mod
from snapgraph.api.conformance import conforms
from snapgraph.api.inference import scalar_type_id_for
from snapgraph.api.printing import describe
from snapgraph.api.table import Record, Table, table_columns
from snapgraph.api.type_context import TypeContext, get_default_type_context, set_default_type_context
from snapgraph.model.types import DataTypeReference


def test_module_exports_data_type_reference():
    assert data_mod.DataTypeReference is DataTypeReference


def test_the_documented_data_import_path_re_exports_the_same_objects():
    # docs/testing.md imports from snapgraph.api.data, and states pickled before the split name it
    assert (data_mod.Table, data_mod.Record, data_mod.TypeContext) == (Table, Record, TypeContext)
    assert (data_mod.conforms, data_mod.describe, data_mod.table_columns) == (conforms, describe, table_columns)
    assert data_mod.get_default_type_context is get_default_type_context
    assert data_mod.set_default_type_context is set_default_type_context
    assert data_mod.scalar_type_id_for is scalar_type_id_for
    assert all(hasattr(data_mod, name) for name in data_mod.__all__)
    # pickle.dumps(Table([[1]]), protocol=4) and pickle.dumps(Record([1, "a"]), protocol=4) made when
    # both classes were defined in snapgraph.api.data
    old_table = (b"\x80\x04\x95/\x00\x00\x00\x00\x00\x00\x00\x8c\x12snapgraph.api.data\x94\x8c\x05Table"
                 b"\x94\x93\x94)\x81\x94]\x94]\x94K\x01aaN\x86\x94b.")
    old_record = (b"\x80\x04\x95/\x00\x00\x00\x00\x00\x00\x00\x8c\x12snapgraph.api.data\x94\x8c\x06Record"
                  b"\x94\x93\x94)\x81\x94]\x94(K\x01\x8c\x01a\x94eb.")
    assert pickle.loads(old_table) == Table([[1]])
    assert pickle.loads(old_record) == Record([1, "a"])
