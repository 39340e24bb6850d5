"""Cross-process locks around the relational upgrade: a PostgreSQL advisory lock, or a file lock
beside the SQLite file. Both wait with a bound and say what they waited for."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import filelock
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.constants import RELATIONAL_ADVISORY_LOCK_KEY, RELATIONAL_LOCK_POLL_S
from migrator.errors import LockTimeoutError

log = logging.getLogger(__name__)


def sqlite_lock_path(database_url: str) -> Path:
    database = make_url(database_url).database or "migrator.db"
    return Path(database).expanduser().with_suffix(".migrate.lock")


@asynccontextmanager
async def relational_lock(
    engine: AsyncEngine, database_url: str, timeout_s: float
) -> AsyncIterator[None]:
    """Hold the one lock that serialises relational upgrades across processes."""
    if engine.dialect.name == "sqlite":
        async with _file_lock(sqlite_lock_path(database_url), timeout_s):
            yield
    else:
        async with _advisory_lock(engine, timeout_s):
            yield


@asynccontextmanager
async def _file_lock(path: Path, timeout_s: float) -> AsyncIterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path))
    started = time.monotonic()
    try:
        # acquire() blocks; a thread keeps the event loop free while another process migrates.
        await asyncio.to_thread(lock.acquire, timeout=timeout_s)
    except filelock.Timeout as exc:
        raise LockTimeoutError(str(path), time.monotonic() - started) from exc
    try:
        yield
    finally:
        lock.release()


@asynccontextmanager
async def _advisory_lock(engine: AsyncEngine, timeout_s: float) -> AsyncIterator[None]:
    started = time.monotonic()
    async with engine.connect() as conn:
        announced = False
        while True:
            got = await conn.scalar(
                sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": RELATIONAL_ADVISORY_LOCK_KEY}
            )
            await conn.commit()
            if got:
                break
            waited_s = time.monotonic() - started
            if waited_s >= timeout_s:
                raise LockTimeoutError(
                    f"pg_advisory_lock({RELATIONAL_ADVISORY_LOCK_KEY})", waited_s
                )
            if not announced:
                log.info("Another process is migrating the control plane; waiting for it.")
                announced = True
            await asyncio.sleep(RELATIONAL_LOCK_POLL_S)
        try:
            yield
        finally:
            await conn.execute(
                sa.text("SELECT pg_advisory_unlock(:key)"), {"key": RELATIONAL_ADVISORY_LOCK_KEY}
            )
            await conn.commit()
