"""The services tests reach: the local PostgreSQL and Redis (started by scripts/test when they
are down), and plain connections to any PostgreSQL a test started."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

PG_ADMIN_DSN = os.environ.get("TEST_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_HOST_URL = os.environ.get("TEST_PG_URL_PREFIX", "postgresql://postgres@127.0.0.1:5432")
REDIS_BASE_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
# Each engineer's (and CI's) own database number: tests flush it. Parallel pytest workers
# (pytest-xdist's gw0, gw1, ...) take the next numbers, so none flushes another's keys; the
# variable is inherited, so a worker's subprocesses agree with it.
XDIST_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "13")) + XDIST_WORKER


@asynccontextmanager
async def pg_connection(**connect: Any) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection (``connect`` as ``asyncpg.connect`` takes it); the vector type,
    when installed, travels as pgvector's binary wire bytes."""
    conn = await asyncpg.connect(**connect)
    try:
        ext = await conn.fetchval(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
            "ON n.oid = e.extnamespace WHERE e.extname = 'vector'"
        )
        if ext:
            await conn.set_type_codec(
                "vector", schema=ext, encoder=bytes, decoder=bytes, format="binary"
            )
        yield conn
    finally:
        await conn.close()


async def pg_execute(sql: str, **connect: Any) -> None:
    """Run one administrative statement (CREATE or DROP DATABASE) on its own connection."""
    conn = await asyncpg.connect(**connect)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
