"""The notes application's Alembic environment: async, URL from DATABASE_URL, and blind to the
migrator's tables (``exclude_migrator_name``), so autogenerate and ``alembic check`` see only
the application's own schema."""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from notes_app.models import metadata
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from migrator.histories import exclude_migrator_name
from migrator.settings import to_async_url

config = context.config
# The migrator runs this in a child process and keeps its output; the plain alembic CLI logs
# as alembic.ini says.
if config.config_file_name and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    return to_async_url(os.environ["DATABASE_URL"])


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    target = str(connection.engine.url) if connection is not None else url or ""
    context.configure(
        connection=connection,
        url=url,
        target_metadata=metadata,
        include_name=exclude_migrator_name,
        render_as_batch=target.startswith("sqlite"),
        compare_type=True,
        literal_binds=connection is None,
    )


def _run_sync(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    _configure(url=_url())
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
