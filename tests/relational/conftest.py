"""Fixtures for the relational step: copies of the migrations that fail or run slowly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.migrations import add_revision, copy_migrations


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Callable[..., Path]:
    """Copy alembic.ini and migrations/ to tmp_path, optionally adding a revision after head
    whose upgrade body is given; returns the copied alembic.ini."""

    def make(extra_body: str | None = None) -> Path:
        ini = copy_migrations(tmp_path / "alembic-copy")
        return ini if extra_body is None else add_revision(ini, extra_body)

    return make
