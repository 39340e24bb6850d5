"""Fixtures for the Celery tests: real Redis, a real ``celery -A worker worker`` subprocess, the
real ``migrator`` CLI as a subprocess, and a control plane in a SQLite file (WAL) per test.

Redis: database 13 (TEST_REDIS_DB), flushed before and after each test, reached as an ACL user
with a password made for this session, so every test also proves the password never reaches a
worker log or CLI output. Every worker and beat started here is stopped at teardown.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import pytest
import redis
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.datasets import add_dataset
from migrator.relational import upgrade_to_head
from migrator.settings import Settings
from migrator.vector.registry import register_adapter, unregister_adapter
from tests.celery.fake_adapters import PROVIDER, ScriptedAdapter
from tests.support import processes
from tests.support.environment import BASE_ENV, as_env, child_environment, on_control_plane
from tests.support.processes import (
    ServiceProcess,
    popen_migrator,
    run_migrator,
)
from tests.support.services import REDIS_BASE_URL, REDIS_DB

T = TypeVar("T")

WORKER_READY_TIMEOUT_S = 40.0


@pytest.fixture(autouse=True)
def scripted_provider() -> Iterator[None]:
    """The "scripted" test adapter, registered in this process only while a Celery test runs."""
    register_adapter(PROVIDER, ScriptedAdapter)
    yield
    unregister_adapter(PROVIDER)


@dataclass(frozen=True)
class RedisAccount:
    user: str
    password: str

    def url(self) -> str:
        netloc = urlsplit(REDIS_BASE_URL).netloc.rpartition("@")[2]
        return f"redis://{self.user}:{self.password}@{netloc}/{REDIS_DB}"


@pytest.fixture(scope="session")
def redis_account() -> Iterator[RedisAccount]:
    """An ACL user with a fresh password for this session; deleted afterwards."""
    admin = redis.Redis.from_url(f"{REDIS_BASE_URL}/{REDIS_DB}")
    account = RedisAccount(f"migrator-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex)
    admin.acl_setuser(
        account.user,
        enabled=True,
        passwords=[f"+{account.password}"],
        keys=["*"],
        channels=["*"],
        commands=["+@all"],
    )
    yield account
    admin.acl_deluser(account.user)
    admin.close()


@pytest.fixture
def redis_admin() -> Iterator[redis.Redis]:
    """A client on the test database, for looking at keys; flushes it before and after."""
    client = redis.Redis.from_url(f"{REDIS_BASE_URL}/{REDIS_DB}", decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@dataclass
class CeleryEnv:
    """The environment shared by this test process, its workers and its CLI calls."""

    settings: Settings
    password: str
    make_settings: Callable[..., Settings]
    overrides: dict[str, str] = field(default_factory=dict)

    def configure(self, **overrides: object) -> Settings:
        self.overrides.update(as_env(overrides))
        self.settings = self.make_settings(**self.overrides)
        return self.settings

    def environment(self, **overrides: object) -> dict[str, str]:
        return child_environment(overrides)

    def run(self, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
        """Run ``work(engine)`` against the control plane in a fresh loop."""
        return on_control_plane(self.settings, work)

    def upgrade(self) -> None:
        asyncio.run(upgrade_to_head(self.settings))

    def add_dataset(self, name: str, *, provider: str = "lancedb", url: str | None = None) -> str:
        async def add(engine: AsyncEngine) -> str:
            row = await add_dataset(engine, self.settings, name=name, provider=provider, url=url)
            return row.id

        return self.run(add)


@pytest.fixture
def celery_env(
    make_settings: Callable[..., Settings],
    redis_account: RedisAccount,
    redis_admin: redis.Redis,
) -> CeleryEnv:
    """Settings for a control plane at head under tmp_path and the test Redis (with password)."""
    env = CeleryEnv(
        settings=make_settings(), password=redis_account.password, make_settings=make_settings
    )
    env.configure(REDIS_URL=redis_account.url(), **BASE_ENV)
    env.upgrade()
    return env


@pytest.fixture(name="start_worker")
def worker_factory(
    celery_env: CeleryEnv, tmp_path: Path
) -> Iterator[Callable[..., ServiceProcess]]:
    """Factory: a real worker on the test's control plane; ``overrides`` are env settings for
    that worker only. Every worker is stopped at teardown and its log checked for the password."""
    started: list[ServiceProcess] = []

    def start(*, concurrency: int = 2, **overrides: object) -> ServiceProcess:
        worker = processes.start_worker(
            f"worker-{len(started)}",
            include="tests.celery.worker_plugins",
            env=celery_env.environment(**overrides),
            cwd=tmp_path,
            concurrency=concurrency,
            ready_timeout_s=WORKER_READY_TIMEOUT_S,
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
    for worker in started:
        assert celery_env.password not in worker.log()


@pytest.fixture(name="start_beat")
def beat_factory(celery_env: CeleryEnv, tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    started: list[ServiceProcess] = []

    def start(**overrides: object) -> ServiceProcess:
        beat = processes.start_beat(env=celery_env.environment(**overrides), cwd=tmp_path)
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()
    for beat in started:
        assert celery_env.password not in beat.log()


@dataclass
class Cli:
    """Runs ``migrator`` as a subprocess with the test's environment."""

    env: CeleryEnv
    cwd: Path

    def run(
        self, *args: str, timeout_s: float = 90.0, **overrides: object
    ) -> subprocess.CompletedProcess[str]:
        env = self.env.environment(**overrides)
        result = run_migrator(*args, env=env, cwd=self.cwd, timeout_s=timeout_s)
        assert self.env.password not in result.stdout + result.stderr
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return popen_migrator(*args, env=self.env.environment(), cwd=self.cwd)


@pytest.fixture
def cli(celery_env: CeleryEnv, tmp_path: Path) -> Cli:
    return Cli(celery_env, tmp_path)
