"""Control-plane engines. Made inside the loop that uses them and disposed with it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from migrator import stalls
from migrator.constants import CONTROL_PLANE_RETRY_S, CONTROL_PLANE_TRIES
from migrator.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


def utcnow() -> datetime:
    """Now, in UTC, as every control-plane timestamp is stored."""
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """A timestamp read back from the control plane, as UTC."""
    # SQLite hands back naive datetimes; they were stored as UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def iso(value: datetime | None) -> str | None:
    """A stored timestamp for output: ISO 8601 in UTC, or None."""
    return aware(value).isoformat() if value is not None else None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (status, progress) run beside the runner's writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(settings: Settings, **kwargs: Any) -> AsyncEngine:
    """An async engine for the control plane; the caller disposes it before its loop ends."""
    url = settings.database_url.get_secret_value()
    if settings.is_sqlite:
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url,
            # How long a statement waits for another writer's lock before failing.
            connect_args={"timeout": settings.query_timeout_s},
            **kwargs,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_async_engine(
        url,
        pool_size=settings.migration_concurrency,
        pool_pre_ping=True,
        connect_args=stalls.connect_args(settings),
        **kwargs,
    )
    stalls.fail_fast(engine.sync_engine, settings)
    return engine


@asynccontextmanager
async def control_plane(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on the control plane for the block; disposed on the way out."""
    engine = make_engine(settings)
    try:
        yield engine
    finally:
        await engine.dispose()


Bind = AsyncEngine | AsyncConnection


@asynccontextmanager
async def transaction(bind: Bind) -> AsyncIterator[AsyncConnection]:
    """A transaction on ``bind``: the caller's own when it passes a connection inside one, so
    several bookkeeping writes share one checkout and one commit."""
    if isinstance(bind, AsyncConnection):
        if bind.in_transaction():
            yield bind
        else:
            async with bind.begin():
                yield bind
    else:
        async with bind.begin() as conn:
            yield conn


async def reconnecting(engine: AsyncEngine, first: Bind, work: Callable[[Bind], Awaitable[T]]) -> T:
    """``work(first)``; when the control plane dropped the connection under it (a restart, a
    failover, ``pg_terminate_backend``, also between a pool's pre-ping and the query), ``work``
    again on a new connection from ``engine``, up to CONTROL_PLANE_TRIES times in all. ``work``
    must be safe to repeat after a rollback."""
    bind: Bind = first
    for attempt in range(1, CONTROL_PLANE_TRIES + 1):
        try:
            return await work(bind)
        except DBAPIError as exc:
            if not exc.connection_invalidated or attempt == CONTROL_PLANE_TRIES:
                raise
            log.warning(
                "Control-plane connection lost (%s); retrying on a new one.",
                type(exc.orig).__name__,
            )
            bind = engine
            await asyncio.sleep(CONTROL_PLANE_RETRY_S * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


@asynccontextmanager
async def connection(bind: Bind) -> AsyncIterator[AsyncConnection]:
    """The caller's connection, or a new one from the engine for the block."""
    if isinstance(bind, AsyncConnection):
        yield bind
    else:
        async with bind.connect() as conn:
            yield conn
