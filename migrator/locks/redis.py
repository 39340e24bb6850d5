"""Redis locks that keep broker runs single: one run at a time, one migration per dataset.

redis-py only (no Celery), so the CLI, the scheduled check and the worker share it. Each lock is
one key holding a small JSON record of its owner, set with ``SET NX PX``. Only the owner's token
extends or releases it (compared inside a Lua script, so check-and-act is atomic); an owner that
dies stops extending and the key lapses within one TTL.

- The **run lock** (``RUN_LOCK_KEY``) is owned by a run, not a process: its token is the run id.
  The trigger takes it before sending the parent task; the parent, every subtask and the chord
  body extend it while they work; the body (or any failure path) releases it.
- A **subtask lock** (``DATASET_LOCK_PREFIX + dataset_id``) is owned by one delivery of one
  dataset's subtask: its token is fresh per delivery and the record names the run. (Not the
  adapter's own lock inside the dataset database, which guards the vector schema itself.)
- The **check lock** (``CHECK_LOCK_KEY``) keeps scheduled checks from overlapping each other.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import redis

from migrator.constants import (
    CHECK_LOCK_KEY,
    DATASET_LOCK_POLL_S,
    DATASET_LOCK_PREFIX,
    RUN_CLAIM_TRIES,
    RUN_LOCK_KEY,
)
from migrator.locks.outage import REDIS_OUTAGE_ERRORS, take_through_outage
from migrator.settings import Settings

log = logging.getLogger(__name__)

REDIS_SOCKET_TIMEOUT_S = 10.0

# KEYS[1] lock key; ARGV[1] owner token; ARGV[2] TTL in ms. 1 when extended, 0 when not ours.
_EXTEND = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
if cjson.decode(raw)['token'] ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""
# KEYS[1] lock key; ARGV[1] owner token. 1 when deleted, 0 when not ours.
_RELEASE = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
if cjson.decode(raw)['token'] ~= ARGV[1] then return 0 end
return redis.call('DEL', KEYS[1])
"""


@dataclass(frozen=True)
class LockRecord:
    """Who holds a lock: stored as the key's JSON value, secret-free."""

    token: str
    run_id: str
    trigger: str | None = None
    acquired_at: float = 0.0
    host: str | None = None
    pid: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> LockRecord:
        data: dict[str, Any] = json.loads(raw)
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    @classmethod
    def new(
        cls, run_id: str, *, token: str | None = None, trigger: str | None = None
    ) -> LockRecord:
        return cls(
            token=token or uuid.uuid4().hex,
            run_id=run_id,
            trigger=trigger,
            acquired_at=time.time(),
            host=socket.gethostname(),
            pid=os.getpid(),
        )


class RedisLock:
    """One TTL lock on one key. Methods never raise for "not ours"; they return False."""

    def __init__(self, client: redis.Redis, key: str, ttl_s: float) -> None:
        self.client = client
        self.key = key
        self.ttl_s = ttl_s
        self._extend = client.register_script(_EXTEND)
        self._release = client.register_script(_RELEASE)

    @property
    def ttl_ms(self) -> int:
        return max(1, int(self.ttl_s * 1000))

    def acquire(self, record: LockRecord) -> bool:
        return bool(self.client.set(self.key, record.to_json(), nx=True, px=self.ttl_ms))

    def holder(self) -> LockRecord | None:
        raw = self.client.get(self.key)
        if raw is None:
            return None
        try:
            return LockRecord.from_json(raw)
        except (ValueError, TypeError):
            # Not ours to interpret; treat as held by an unknown owner until its TTL lapses.
            return LockRecord(token="", run_id="unknown")

    def extend(self, token: str) -> bool:
        return bool(self._extend(keys=[self.key], args=[token, self.ttl_ms]))

    def release(self, token: str) -> bool:
        return bool(self._release(keys=[self.key], args=[token]))


class Locks:
    """The run lock and the dataset locks of one Redis, with their TTLs from settings."""

    def __init__(self, client: redis.Redis, *, run_ttl_s: float, dataset_ttl_s: float) -> None:
        self.client = client
        self.run_ttl_s = run_ttl_s
        self.dataset_ttl_s = dataset_ttl_s

    @classmethod
    def from_settings(cls, settings: Settings) -> Locks:
        return cls(
            redis_client(settings.redis_url.get_secret_value()),
            run_ttl_s=settings.run_stale_after_s,
            dataset_ttl_s=settings.dataset_lock_ttl_s,
        )

    def run_lock(self) -> RedisLock:
        return RedisLock(self.client, RUN_LOCK_KEY, self.run_ttl_s)

    def subtask_lock(self, dataset_id: str) -> RedisLock:
        """Held by the one delivery of a dataset's subtask that is migrating it."""
        return RedisLock(self.client, DATASET_LOCK_PREFIX + dataset_id, self.dataset_ttl_s)

    def check_lock(self) -> RedisLock:
        """Held by the scheduled check while it runs: checks never overlap one another."""
        return RedisLock(self.client, CHECK_LOCK_KEY, self.dataset_ttl_s)

    def close(self) -> None:
        self.client.close()


@contextmanager
def open_locks(settings: Settings) -> Iterator[Locks]:
    """The locks of the Redis in ``settings`` for the block; its client closed after."""
    locks = Locks.from_settings(settings)
    try:
        yield locks
    finally:
        locks.close()


def redis_client(url: str) -> redis.Redis:
    """A client for ``redis://`` or ``rediss://`` URLs (TLS options in the query, as redis-py
    reads them: ``ssl_cert_reqs``, ``ssl_ca_certs``...); the password stays inside the client."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=REDIS_SOCKET_TIMEOUT_S,
        socket_connect_timeout=REDIS_SOCKET_TIMEOUT_S,
        health_check_interval=30,
    )


def confirm_run_lock(lock: RedisLock, run_id: str, trigger: str | None) -> LockRecord | None:
    """For the run's own parent task: make sure ``run_id`` holds the run lock.

    Extends it when it is ours, takes it again when it lapsed while the parent sat in the queue,
    and returns the other owner's record when another run took it meanwhile (None when ours).
    """
    for _ in range(RUN_CLAIM_TRIES):
        if lock.extend(run_id):
            return None
        if lock.acquire(LockRecord.new(run_id, token=run_id, trigger=trigger)):
            log.warning(
                "Run %s: the run lock lapsed while the parent task was queued; retaken.", run_id
            )
            return None
        holder = lock.holder()
        if holder is not None:
            return holder
    return LockRecord(token="", run_id="unknown")


async def acquire_waiting(
    lock: RedisLock, record: LockRecord, wait_s: float, poll_s: float = DATASET_LOCK_POLL_S
) -> bool:
    """Try to take ``lock`` for up to ``wait_s``; polls without blocking the event loop.

    Redis unreachable is waited out like a held lock, until the deadline (then its error goes
    on). A SET whose reply was lost may have taken the lock: the next poll recognises our token.
    """

    def attempt(after_outage: bool) -> bool:
        if lock.acquire(record):
            return True
        holder = lock.holder() if after_outage else None
        return holder is not None and holder.token == record.token

    return await take_through_outage(
        attempt, what=lock.key, poll_s=lambda: poll_s, outage_s=wait_s, wait_s=wait_s
    )


def release_quietly(lock: RedisLock, token: str) -> None:
    """Release ``lock`` if ours; when Redis cannot be reached, leave it to lapse within its TTL
    (the work it guarded is done and recorded: that must not turn into a failure)."""
    try:
        lock.release(token)
    except REDIS_OUTAGE_ERRORS as exc:
        log.warning(
            "Could not release %s (%s); it lapses within %gs.",
            lock.key,
            type(exc).__name__,
            lock.ttl_s,
        )
