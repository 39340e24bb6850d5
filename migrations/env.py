"""Alembic environment: async engine for sqlite+aiosqlite and postgresql+asyncpg.

The URL is read from ``DATABASE_URL`` through ``migrator.settings`` (the runner hands it to the
Alembic child process in that variable), never stored in alembic.ini.
"""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from pathlib import Path

from alembic import context
from sqlalchemy import pool
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from migrator import stalls
from migrator.histories import MIGRATOR_VERSION_TABLE, carry_over_legacy, include_migrator_name
from migrator.models import metadata
from migrator.settings import get_settings, to_async_url

config = context.config

# The plain `alembic` CLI (and the runner's child process) logs per alembic.ini; callers inside a
# configured process (tests, the migrator itself) set configure_logger=False to keep theirs.
if config.config_file_name and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    return to_async_url(get_settings().database_url.get_secret_value())


def _ensure_sqlite_dir(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    is_sqlite = (url or str(connection.engine.url)).startswith("sqlite")  # type: ignore[union-attr]
    context.configure(
        connection=connection,
        url=url,
        target_metadata=metadata,
        render_as_batch=is_sqlite,
        compare_type=True,
        transaction_per_migration=True,
        literal_binds=connection is None,
        # The application's history may share this database: ours keeps its own version table
        # and never sees (nor autogenerates drops of) the application's tables.
        version_table=MIGRATOR_VERSION_TABLE,
        include_name=include_migrator_name,
    )


def run_migrations_offline() -> None:
    _configure(url=_database_url())
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    own_revisions = {script.revision for script in context.script.walk_revisions()}
    with connection.begin():
        carry_over_legacy(connection, own_revisions)
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    url = _database_url()
    _ensure_sqlite_dir(url)
    # Every statement of a revision is bounded by QUERY_TIMEOUT_S, so a control plane that stops
    # answering fails the relational step instead of hanging it (no revision here is heavy),
    # and as the migrator's own engine does: one timeout, naming the server.
    settings = get_settings()
    postgres = url.startswith("postgresql")
    connect_args = (
        stalls.connect_args(settings) if postgres else {"timeout": settings.query_timeout_s}
    )
    engine = create_async_engine(url, poolclass=pool.NullPool, connect_args=connect_args)
    if postgres:
        stalls.fail_fast(engine.sync_engine, settings)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
