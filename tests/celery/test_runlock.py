"""The Redis locks on a real Redis: tokens, TTLs, heartbeats, and how triggers claim a run."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from migrator.locks.heartbeat import Heartbeat
from migrator.locks.redis import (
    LockRecord,
    Locks,
    RedisLock,
    acquire_waiting,
    confirm_run_lock,
    redis_client,
)
from migrator.runs.trigger import claim_run
from tests.celery.conftest import CeleryEnv, RedisAccount
from tests.celery.helpers import record_idle_run


@pytest.fixture
def locks(redis_account: RedisAccount, redis_admin: redis.Redis) -> Iterator[Locks]:
    made = Locks(redis_client(redis_account.url()), run_ttl_s=5, dataset_ttl_s=0.6)
    yield made
    made.close()


def test_only_the_owner_extends_or_releases(locks: Locks) -> None:
    lock = locks.run_lock()
    first = LockRecord.new("run-a", token="run-a", trigger="deploy")

    assert lock.acquire(first) is True
    assert lock.acquire(LockRecord.new("run-b", token="run-b")) is False
    held = lock.holder()
    assert held is not None
    assert (held.run_id, held.trigger) == ("run-a", "deploy")
    assert lock.extend("run-b") is False
    assert lock.release("run-b") is False
    assert lock.extend("run-a") is True
    assert lock.release("run-a") is True
    assert lock.holder() is None


def test_a_lock_nobody_extends_lapses_and_a_heartbeat_keeps_it(locks: Locks) -> None:
    lapsing = locks.subtask_lock(str(uuid.uuid4()))
    assert lapsing.acquire(LockRecord.new("run-a", token="t1"))
    time.sleep(0.8)
    assert lapsing.holder() is None

    kept = locks.subtask_lock(str(uuid.uuid4()))
    assert kept.acquire(LockRecord.new("run-a", token="t2"))
    beat = Heartbeat.for_locks([(kept, "t2")]).start()
    time.sleep(1.5)
    assert kept.holder() is not None
    beat.stop()
    time.sleep(0.8)
    assert kept.holder() is None


def test_acquire_waiting_gets_a_lock_once_its_holder_lets_it_lapse(locks: Locks) -> None:
    lock = locks.subtask_lock(str(uuid.uuid4()))
    assert lock.acquire(LockRecord.new("run-a", token="dead"))

    started = time.monotonic()
    got = asyncio.run(acquire_waiting(lock, LockRecord.new("run-a", token="next"), wait_s=3))

    assert got is True
    assert 0.3 < time.monotonic() - started < 1.5
    assert asyncio.run(acquire_waiting(lock, LockRecord.new("run-b"), wait_s=0.3)) is False


def test_the_parent_confirms_retakes_or_yields_the_run_lock(locks: Locks) -> None:
    lock = locks.run_lock()
    assert confirm_run_lock(lock, "run-a", "deploy") is None  # lapsed (never taken): retaken
    assert confirm_run_lock(lock, "run-a", "deploy") is None  # ours: extended
    assert lock.release("run-a")
    lock.acquire(LockRecord.new("run-b", token="run-b"))
    other = confirm_run_lock(lock, "run-a", "deploy")
    assert other is not None and other.run_id == "run-b"


def test_claim_attaches_to_a_live_run_and_clears_a_finished_or_stale_one(
    celery_env: CeleryEnv, locks: Locks
) -> None:
    def claim(run_id: str) -> tuple[str, bool]:
        async def go(engine: object) -> tuple[str, bool]:
            found = await claim_run(locks, celery_env.settings, run_id, "admin", engine)  # type: ignore[arg-type]
            return found.run_id, found.started

        result: tuple[str, bool] = celery_env.run(go)
        return result

    lock: RedisLock = locks.run_lock()
    assert claim("first") == ("first", True)
    assert claim("second") == ("first", False)  # not recorded yet: still starting, attach

    live_id, stale_id = str(uuid.uuid4()), str(uuid.uuid4())
    record_idle_run(celery_env, live_id, idle_s=5)
    lock.release("first")
    lock.acquire(LockRecord.new(live_id, token=live_id))
    assert claim("third") == (live_id, False)

    record_idle_run(celery_env, stale_id, idle_s=3600)
    lock.release(live_id)
    lock.acquire(LockRecord.new(stale_id, token=stale_id))
    assert claim("fourth") == ("fourth", True)
