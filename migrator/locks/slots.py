"""A cap on concurrent migrations per database server, held across every worker.

PER_SERVER_CONCURRENCY bounds how many datasets migrate against one server at once. In-process
(``migrator run``) an asyncio semaphore does it; across Celery workers this module does, with
one Redis sorted set per server (``SERVER_SLOTS_PREFIX + server_key``):

- each member is one holder's token, its score the moment (Redis's clock, in ms) the holder's
  lease runs out;
- taking a slot is one Lua script: drop lapsed leases, then add ours if fewer than the cap are
  left — atomic, so two workers never both take the last slot;
- a live holder's lease rides on the heartbeat thread that already extends its subtask lock
  (``migrator.locks.heartbeat``); a killed one stops, and its lease lapses within one TTL;
- a holder whose lease vanished (Redis restarted without its data) puts it back on the next
  heartbeat, so the count heals within one heartbeat interval.

redis-py only (no Celery): the lease is keyed by the server key the control plane stores for
each dataset (``dataset_databases.server_key``: ``host:port`` for pgvector, ``local`` for
LanceDB). A dataset without one (the single-user default engine) takes no slot.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Protocol

import redis
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.constants import (
    HEAVY_SLOTS_PREFIX,
    SERVER_SLOT_POLL_S,
    SERVER_SLOT_WAIT_LOG_S,
    SERVER_SLOTS_PREFIX,
)
from migrator.datasets import server_key_of
from migrator.db import reconnecting
from migrator.locks.heartbeat import Heartbeat
from migrator.locks.outage import take_through_outage
from migrator.settings import Settings

log = logging.getLogger(__name__)

# Redis's own clock in ms, so workers with skewed clocks agree on when a lease lapses.
_NOW_MS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
# Keep the set itself until its longest lease lapses.
_KEEP_KEY = """
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
"""
# KEYS[1] slots key; ARGV[1] token, ARGV[2] cap, ARGV[3] lease TTL in ms. 1 when taken.
_ACQUIRE = (
    _NOW_MS
    + """
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
"""
    + _KEEP_KEY
    + "return 1\n"
)
# KEYS[1] slots key; ARGV[1] token, ARGV[2] lease TTL in ms. 1 when extended, 2 when the lease
# had vanished and was put back.
_EXTEND = (
    _NOW_MS
    + """
local ttl = tonumber(ARGV[2])
local added = redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
"""
    + _KEEP_KEY
    + "return added + 1\n"
)


def slots_key(server_key: str) -> str:
    return SERVER_SLOTS_PREFIX + server_key


class ServerSlot:
    """One holder's lease on one of a server's slots.

    A ``migrator.locks.heartbeat.Renewable`` (``key``, ``ttl_s``, ``extend(token)``), so the
    holder's one heartbeat thread keeps it alive.
    """

    def __init__(
        self,
        client: redis.Redis,
        server_key: str,
        limit: int,
        ttl_s: float,
        *,
        prefix: str = SERVER_SLOTS_PREFIX,
    ) -> None:
        self.client = client
        self.server_key = server_key
        self.key = prefix + server_key
        self.limit = limit
        self.ttl_s = ttl_s
        self.token = uuid.uuid4().hex
        # Seconds the holder waited for the slot: what it read before may be stale by then.
        self.waited_s = 0.0
        self._acquire = client.register_script(_ACQUIRE)
        self._extend = client.register_script(_EXTEND)

    @property
    def ttl_ms(self) -> int:
        return max(1, int(self.ttl_s * 1000))

    def try_acquire(self) -> bool:
        return bool(self._acquire(keys=[self.key], args=[self.token, self.limit, self.ttl_ms]))

    def extend(self, token: str) -> bool:
        if int(self._extend(keys=[self.key], args=[token, self.ttl_ms])) == 2:
            log.warning(
                "Server %s: a migration slot's lease had vanished (Redis lost it); put back.",
                self.server_key,
            )
        return True

    def release(self) -> bool:
        return bool(self.client.zrem(self.key, self.token))

    def in_use(self) -> int:
        """Live leases on this server right now (lapsed ones not yet swept are not counted)."""
        now_ms = int(time.time() * 1000)
        return int(self.client.zcount(self.key, f"({now_ms}", "+inf"))


async def acquire(slot: ServerSlot, *, label: str, outage_s: float) -> float:
    """Wait, polling without blocking the event loop, until ``slot`` is taken; returns the
    seconds waited.

    Waiting for holders is unbounded here: the dataset's soft time limit ends a wait that is
    too long (each holder ahead is bounded by its own limits). Redis restarting or unreachable
    is waited out for ``outage_s`` at a stretch, then its error goes on.
    """
    started = time.monotonic()
    announced = False

    def attempt(_after_outage: bool) -> bool:
        nonlocal announced
        if slot.try_acquire():
            return True
        if not announced:
            log.debug(
                "%s waits for a migration slot on server %s (%d of %d in use).",
                label,
                slot.server_key,
                slot.in_use(),
                slot.limit,
            )
            announced = True
        return False

    await take_through_outage(
        attempt,
        what=f"a slot on server {slot.server_key} for {label}",
        poll_s=lambda: SERVER_SLOT_POLL_S * (1 + random.random()),
        outage_s=outage_s,
    )
    waited_s = time.monotonic() - started
    if waited_s >= SERVER_SLOT_WAIT_LOG_S:
        log.info(
            "%s got a migration slot on server %s after %.1fs.", label, slot.server_key, waited_s
        )
    return waited_s


@asynccontextmanager
async def server_slot(
    engine: AsyncEngine,
    settings: Settings,
    client: redis.Redis,
    dataset_id: str,
    beat: Heartbeat,
) -> AsyncIterator[ServerSlot | None]:
    """Hold one of PER_SERVER_CONCURRENCY slots of the dataset's server while the body runs.

    The lease lives DATASET_LOCK_TTL_S and is extended by ``beat``, the holder's heartbeat; it
    is released on every way out, cancellation included. Yields None (no slot) for a dataset
    without a server key.
    """
    server_key = await reconnecting(engine, engine, lambda bind: server_key_of(bind, dataset_id))
    async with slot_on(settings, client, server_key, dataset_id, beat) as slot:
        yield slot


@asynccontextmanager
async def slot_on(
    settings: Settings,
    client: redis.Redis,
    server_key: str | None,
    dataset_id: str,
    beat: Heartbeat,
) -> AsyncIterator[ServerSlot | None]:
    """``server_slot`` for a caller that read the dataset's server key already."""
    if server_key is None:
        yield None
        return
    slot = ServerSlot(
        client, server_key, settings.per_server_concurrency, settings.dataset_lock_ttl_s
    )
    slot.waited_s = await acquire(
        slot, label=f"dataset={dataset_id}", outage_s=settings.dataset_lock_ttl_s
    )
    beat.add(slot, slot.token)
    try:
        yield slot
    finally:
        beat.remove(slot, slot.token)
        try:
            slot.release()
        except redis.RedisError as exc:
            log.warning(
                "dataset=%s: could not release its slot on %s (%s); it lapses within %gs.",
                dataset_id,
                server_key,
                type(exc).__name__,
                slot.ttl_s,
            )


class HasProvider(Protocol):
    """A heavy dataset as the run planned it (``migrator.runs.heavy.HeavyDataset``)."""

    @property
    def provider(self) -> str: ...


def heavy_server_key(provider: str, server_key: str | None) -> str | None:
    """The server a heavy dataset's cap counts on; None for no cap.

    Only a database server builds indexes for its datasets (pgvector). A LanceDB build runs in
    the worker's own process, on a local disk or an object store that computes nothing, so it
    takes no heavy slot: HEAVY_CONCURRENCY of the heavy workers bounds it.
    """
    if provider == "lancedb" or not server_key:
        return None
    return server_key


@asynccontextmanager
async def heavy_slot(
    engine: AsyncEngine,
    settings: Settings,
    client: redis.Redis,
    dataset_id: str,
    heavy: HasProvider,
    beat: Heartbeat,
) -> AsyncIterator[ServerSlot | None]:
    """Hold one of HEAVY_PER_SERVER_CONCURRENCY heavy slots of the dataset's server while the
    body runs (taken before its server slot, so a heavy dataset waiting here holds no slot
    a light one could use). Leased, extended and released like ``server_slot``."""
    found = await reconnecting(engine, engine, lambda bind: server_key_of(bind, dataset_id))
    server_key = heavy_server_key(heavy.provider, found)
    if server_key is None:
        yield None
        return
    slot = ServerSlot(
        client,
        server_key,
        settings.heavy_per_server_concurrency,
        settings.dataset_lock_ttl_s,
        prefix=HEAVY_SLOTS_PREFIX,
    )
    label = f"heavy dataset={dataset_id}"
    await acquire(slot, label=label, outage_s=settings.dataset_lock_ttl_s)
    beat.add(slot, slot.token)
    try:
        yield slot
    finally:
        beat.remove(slot, slot.token)
        try:
            slot.release()
        except redis.RedisError as exc:
            log.warning(
                "dataset=%s: could not release its heavy slot on %s (%s); it lapses within %gs.",
                dataset_id,
                server_key,
                type(exc).__name__,
                slot.ttl_s,
            )
