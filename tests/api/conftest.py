"""Fixtures for the tests of snapgraph.api: a TypeContext over a stand-in registry, installed as the default."""

from __future__ import annotations

import pytest

from snapgraph.api.type_context import TypeContext, set_default_type_context

from .helpers import StandInRegistry, stand_in_converter


@pytest.fixture
def registry() -> StandInRegistry:
    return StandInRegistry()


@pytest.fixture
def ctx(registry: StandInRegistry):
    context = TypeContext(registry, stand_in_converter)
    previous = set_default_type_context(context)
    yield context
    set_default_type_context(previous)
