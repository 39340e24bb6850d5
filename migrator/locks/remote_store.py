"""The per-dataset lock of a LanceDB dataset on object storage, which has no local directory to
hold a lock file in, and whose migrators may run on many machines.

- A PostgreSQL control plane: a session advisory lock there, keyed on the store URL, on every
  path (in-process, Celery, ``migrator vector stamp``). The server frees it when a holder dies.
- A SQLite control plane on the Celery path: the Redis subtask lock the worker already holds
  for the dataset (``holding_cross_machine``) is the lock.
- A SQLite control plane anywhere else: refused, unless SINGLE_MACHINE declares that every
  migrating process runs on this machine; then a lock file beside the SQLite file.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from migrator import stalls
from migrator.constants import REMOTE_STORE_ADVISORY_NAMESPACE, REMOTE_STORE_LOCK_POLL_S
from migrator.errors import LockTimeoutError, RemoteLockUnavailableError
from migrator.locks.relational import file_lock
from migrator.settings import Settings

# Dataset ids whose cross-machine lock (the Redis subtask lock) this task holds.
_held: ContextVar[frozenset[str]] = ContextVar("migrator_cross_machine_locks", default=frozenset())


@contextmanager
def holding_cross_machine(dataset_id: str) -> Iterator[None]:
    """Declare, for the code run inside, that a lock working across machines is held for
    ``dataset_id`` (the Celery subtask's Redis lock)."""
    token = _held.set(_held.get() | {dataset_id})
    try:
        yield
    finally:
        _held.reset(token)


def holds_cross_machine(dataset_id: str) -> bool:
    return dataset_id in _held.get()


@asynccontextmanager
async def remote_store_lock(
    settings: Settings, *, dataset_id: str, store_url: str
) -> AsyncIterator[None]:
    """Hold the lock of one remote dataset across machines, waiting at most DATASET_TIMEOUT_S."""
    if not settings.is_sqlite:
        async with _advisory_lock(settings, store_url):
            yield
    elif holds_cross_machine(dataset_id):
        yield
    elif settings.single_machine:
        async with file_lock(local_lock_path(settings, store_url), settings.dataset_timeout_s):
            yield
    else:
        raise RemoteLockUnavailableError(dataset_id)


def local_lock_path(settings: Settings, store_url: str) -> Path:
    """The SINGLE_MACHINE lock file of a store: beside the SQLite file, named by a hash."""
    database = make_url(settings.database_url.get_secret_value()).database or "migrator.db"
    digest = hashlib.sha256(store_url.encode()).hexdigest()[:32]
    return Path(database).expanduser().with_suffix(".store-locks") / f"{digest}.lock"


@asynccontextmanager
async def _advisory_lock(settings: Settings, store_url: str) -> AsyncIterator[None]:
    # Its own connection, held while the dataset migrates: the lock is the session's, so a
    # killed holder's lock goes with its connection.
    engine = create_async_engine(
        settings.database_url.get_secret_value(),
        poolclass=NullPool,
        connect_args=stalls.connect_args(settings),
    )
    try:
        async with engine.connect() as conn:
            started = time.monotonic()
            while not await _try(conn, "pg_try_advisory_lock", store_url):
                waited_s = time.monotonic() - started
                if waited_s >= settings.dataset_timeout_s:
                    raise LockTimeoutError(f"advisory lock of {store_url}", waited_s)
                await asyncio.sleep(REMOTE_STORE_LOCK_POLL_S)
            try:
                yield
            finally:
                if not conn.invalidated:
                    await _try(conn, "pg_advisory_unlock", store_url)
    finally:
        await engine.dispose()


async def _try(conn: AsyncConnection, function: str, store_url: str) -> bool:
    taken = await conn.scalar(
        sa.text(f"SELECT {function}(:namespace, hashtext(:key))"),
        {"namespace": REMOTE_STORE_ADVISORY_NAMESPACE, "key": store_url},
    )
    await conn.commit()
    return bool(taken)
