"""Fixtures for the Celery tests: real Redis, a real ``celery -A worker worker`` subprocess, the
real ``migrator`` CLI as a subprocess, and a control plane in a SQLite file (WAL) per test.

Redis: database 13 (TEST_REDIS_DB), flushed before and after each test, reached as an ACL user
with a password made for this session, so every test also proves the password never reaches a
worker log or CLI output. Every worker and beat started here is stopped at teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
import redis
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.constants import QUEUE_NAME
from migrator.datasets import add_dataset
from migrator.db import control_plane
from migrator.relational import upgrade_to_head
from migrator.settings import Settings
from migrator.vector.registry import register_adapter, unregister_adapter
from tests.celery.fake_adapters import PROVIDER, ScriptedAdapter
from tests.conftest import PROJECT_ROOT

REDIS_BASE_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
REDIS_DB = int(os.environ.get("TEST_REDIS_DB", "13"))
BIN = Path(sys.executable).parent
WORKER_READY_TIMEOUT_S = 40.0
STOP_TIMEOUT_S = 15.0

# Settings every Celery test starts from: short lock TTL so a killed child's lock lapses fast.
BASE_ENV = {
    "DATASET_LOCK_TTL_S": "2",
    "DATASET_SOFT_TIME_LIMIT_S": "30",
    "DATASET_TIME_LIMIT_S": "45",
    "RUN_STALE_AFTER_S": "120",
    "LOG_LEVEL": "INFO",
}


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
        self.overrides.update({k.upper(): str(v) for k, v in overrides.items()})
        self.settings = self.make_settings(**self.overrides)
        return self.settings

    def environment(self, **overrides: object) -> dict[str, str]:
        env = dict(os.environ)
        env.update({k.upper(): str(v) for k, v in overrides.items()})
        env["PYTHONPATH"] = str(PROJECT_ROOT)
        return env

    def run(self, work: Callable[[AsyncEngine], Awaitable[Any]]) -> Any:
        """Run ``work(engine)`` against the control plane in a fresh loop."""

        async def go() -> Any:
            async with control_plane(self.settings) as engine:
                return await work(engine)

        return asyncio.run(go())

    def upgrade(self) -> None:
        asyncio.run(upgrade_to_head(self.settings))

    def add_dataset(self, name: str, *, provider: str = "lancedb", url: str | None = None) -> str:
        async def add(engine: AsyncEngine) -> str:
            row = await add_dataset(engine, self.settings, name=name, provider=provider, url=url)
            return row.id

        result: str = self.run(add)
        return result


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


@dataclass
class ServiceProcess:
    """A Celery worker or beat started by a test; its output goes to ``log_path``."""

    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout_s: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log())
            if found:
                return found
            if self.process.poll() is not None:
                raise AssertionError(f"process exited ({self.process.returncode}):\n{self.log()}")
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in the log within {timeout_s}s:\n{self.log()}")

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children()

    def stop(self) -> None:
        """Warm shutdown; after STOP_TIMEOUT_S, SIGKILL the process group this test made."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # leftover pool children, if any
        self.process.wait(STOP_TIMEOUT_S)


def _start(command: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> ServiceProcess:
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so teardown reaches its children
        )
    return ServiceProcess(process, log_path)


@pytest.fixture
def start_worker(celery_env: CeleryEnv, tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Factory: a real worker on the test's control plane; ``overrides`` are env settings for
    that worker only. Every worker is stopped at teardown and its log checked for the password."""
    started: list[ServiceProcess] = []

    def start(*, concurrency: int = 2, **overrides: object) -> ServiceProcess:
        name = f"test{len(started)}-{uuid.uuid4().hex[:6]}@%h"
        command = [
            str(BIN / "celery"),
            "-A",
            "worker",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(concurrency),
            "--queues",
            QUEUE_NAME,
            "--include",
            "tests.celery.worker_plugins",
            "--hostname",
            name,
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
        ]
        log_path = tmp_path / f"worker-{len(started)}.log"
        worker = _start(command, celery_env.environment(**overrides), log_path, tmp_path)
        started.append(worker)
        worker.wait_for_log(r"\S+@\S+ ready\.", WORKER_READY_TIMEOUT_S)
        return worker

    yield start
    for worker in started:
        worker.stop()
    for worker in started:
        assert celery_env.password not in worker.log()


@pytest.fixture
def start_beat(celery_env: CeleryEnv, tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    started: list[ServiceProcess] = []

    def start(**overrides: object) -> ServiceProcess:
        command = [
            str(BIN / "celery"),
            "-A",
            "worker",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(tmp_path / "celerybeat-schedule"),
        ]
        beat = _start(command, celery_env.environment(**overrides), tmp_path / "beat.log", tmp_path)
        started.append(beat)
        beat.wait_for_log(r"beat: Starting\.\.\.")
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

    def run(self, *args: str, timeout_s: float = 90.0, **overrides: object) -> Any:
        result = subprocess.run(
            [str(BIN / "migrator"), *args],
            cwd=self.cwd,
            env=self.env.environment(**overrides),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )
        assert self.env.password not in result.stdout + result.stderr
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(BIN / "migrator"), *args],
            cwd=self.cwd,
            env=self.env.environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )


@pytest.fixture
def cli(celery_env: CeleryEnv, tmp_path: Path) -> Cli:
    return Cli(celery_env, tmp_path)


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
