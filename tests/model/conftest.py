"""Fixtures for the graph-model tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .helpers import write


@pytest.fixture
def files(tmp_path: Path) -> Callable[[str, Any], Path]:
    """``files("a/b.json", data)`` writes a file under tmp_path and returns its path."""

    def _write(relative: str, content: Any) -> Path:
        return write(tmp_path, relative, content)

    return _write
