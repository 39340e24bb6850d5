"""Fixtures for the relational step: copies of the migrations that fail or run slowly."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

REVISION_TEMPLATE = '''"""test revision {rev}"""
import time

import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
{body}


def downgrade() -> None:
    pass
'''


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Callable[..., Path]:
    """Copy alembic.ini and migrations/ to tmp_path, optionally adding a revision 0004 whose
    upgrade body is given; returns the copied alembic.ini."""

    def make(extra_body: str | None = None) -> Path:
        root = tmp_path / "alembic-copy"
        shutil.copytree(
            PROJECT_ROOT / "migrations",
            root / "migrations",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        shutil.copy(PROJECT_ROOT / "alembic.ini", root / "alembic.ini")
        if extra_body is not None:
            body = "\n".join("    " + line for line in extra_body.strip().splitlines())
            (root / "migrations" / "versions" / "0004_test.py").write_text(
                REVISION_TEMPLATE.format(rev="0004", down="0003", body=body)
            )
        return root / "alembic.ini"

    return make
