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

from migrator import stalls
from migrator.constants import RELATIONAL_ADVISORY_LOCK_KEY, RELATIONAL_LOCK_POLL_S
from migrator.errors import LockTimeoutError

log = logging.getLogger(__name__)

WAITING_MESSAGE = "Another process is migrating the control plane; waiting for it."
FILE_LOCK_POLL_S = 0.05


def sqlite_lock_path(database_url: str) -> Path:
    database = make_url(database_url).database or "migrator.db"
    return Path(database).expanduser().with_suffix(".migrate.lock")


@asynccontextmanager
async def relational_lock(
    engine: AsyncEngine, database_url: str, timeout_s: float
) -> AsyncIterator[None]:
    """Hold the one lock that serialises relational upgrades across processes."""
    if engine.dialect.name == "sqlite":
        async with file_lock(
            sqlite_lock_path(database_url), timeout_s, waiting_message=WAITING_MESSAGE
        ):
            yield
    else:
        async with _advisory_lock(engine, timeout_s):
            yield


@asynccontextmanager
async def file_lock(
    path: Path, timeout_s: float, *, waiting_message: str | None = None
) -> AsyncIterator[None]:
    """Hold an exclusive lock file across processes, waiting at most ``timeout_s``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not thread-local and polled on the loop: acquire and release happen on the same thread,
    # and a cancelled wait leaves no thread behind that could take the lock later.
    lock = filelock.FileLock(str(path), thread_local=False)
    started = time.monotonic()
    announced = False
    while True:
        try:
            lock.acquire(timeout=0)
            break
        except filelock.Timeout:
            waited_s = time.monotonic() - started
            if waited_s >= timeout_s:
                raise LockTimeoutError(str(path), waited_s) from None
            if waiting_message and not announced:
                log.info(waiting_message)
                announced = True
            await asyncio.sleep(FILE_LOCK_POLL_S)
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
                log.info(WAITING_MESSAGE)
                announced = True
            await asyncio.sleep(RELATIONAL_LOCK_POLL_S)
        try:
            yield
        except TimeoutError:
            # The control plane stopped answering: asking it to unlock would wait as long
            # again. The lock is the session's, so dropping the connection releases it.
            await stalls.drop(conn)
            raise
        finally:
            if not conn.invalidated:
                await conn.execute(
                    sa.text("SELECT pg_advisory_unlock(:key)"),
                    {"key": RELATIONAL_ADVISORY_LOCK_KEY},
                )
                await conn.commit()
