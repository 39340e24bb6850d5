"""An application's own Alembic project, written under a test's directory: an async env.py
that keeps to the application's tables (``exclude_migrator_name``) and the default
``alembic_version`` table, and revisions that build a ``notes`` table."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.support.migrations import revision_source

APP_INI = """\
[alembic]
script_location = %(here)s/app_migrations
path_separator = os
"""

APP_ENV = '''\
"""The application's Alembic environment (a test's, shaped as an application would write it)."""

import asyncio
import os

from alembic import context
from sqlalchemy import pool
from sqlalchemy.ext.asyncio import create_async_engine

from migrator.histories import exclude_migrator_name
from migrator.settings import to_async_url


def run(connection):
    context.configure(
        connection=connection,
        target_metadata=None,
        include_name=exclude_migrator_name,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def main():
    engine = create_async_engine(
        to_async_url(os.environ["DATABASE_URL"]), poolclass=pool.NullPool
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run)
            await connection.commit()
    finally:
        await engine.dispose()


asyncio.run(main())
'''

SCRIPT_MAKO = '''\
"""${message}"""
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}
'''

NOTES_TABLE = """
op.create_table(
    "notes",
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("body", sa.Text(), nullable=False),
)
"""


def write_app_project(root: Path, *, extra_body: str | None = None) -> Path:
    """The application's alembic.ini under ``root``: revision "0001" (the same id as the
    migrator's first, on purpose) creates ``notes``; ``extra_body`` adds "0002" after it.
    Returns the alembic.ini."""
    folder = root / "app_migrations"
    (folder / "versions").mkdir(parents=True)
    (root / "alembic.ini").write_text(APP_INI)
    (folder / "env.py").write_text(APP_ENV)
    (folder / "script.py.mako").write_text(SCRIPT_MAKO)
    versions = folder / "versions"
    (versions / "0001_notes.py").write_text(
        revision_source("0001", "None", NOTES_TABLE).replace(
            'down_revision = "None"', "down_revision = None"
        )
    )
    if extra_body is not None:
        (versions / "0002_more.py").write_text(
            revision_source("0002", "0001", textwrap.dedent(extra_body))
        )
    return root / "alembic.ini"
