"""Over Celery: heavy datasets go to HEAVY_QUEUE with limits from their budget, a real HNSW
build outlasting DATASET_TIMEOUT_S finishes there, light datasets stay on the default queue in
the same run, and two heavy workers take turns on one server (HEAVY_PER_SERVER_CONCURRENCY=1),
sampled from pg_stat_progress_create_index."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from migrator.constants import DATASET_LOCK_PREFIX, HEAVY_SLOTS_PREFIX, QUEUE_NAME
from migrator.runs.inprocess import run_startup_migrations
from migrator.states import RunStatus
from tests.celery.conftest import CeleryEnv, Cli
from tests.celery.helpers import json_out
from tests.heavy.support import (
    DIMENSION,
    FIRST_REVISION,
    HEAVY_REVISION,
    BuildSamples,
    fill_rows,
    index_exists,
    sample_builds,
    slow_index_folder,
)
from tests.support import processes
from tests.support.processes import ServiceProcess
from tests.support.rows import cached_versions

pytestmark = pytest.mark.slow
HEAVY_QUEUE = "migrator.heavy"
StartWorker = Callable[..., ServiceProcess]


@pytest.fixture
def start_worker(celery_env: CeleryEnv, tmp_path: Path) -> Iterator[StartWorker]:
    """Factory: a real worker on the given queues; stopped at teardown, its log checked for
    the Redis password."""
    started: list[ServiceProcess] = []

    def start(name: str, queues: list[str], concurrency: int = 1) -> ServiceProcess:
        """Started, not waited for: ``ready`` waits for every worker at once."""
        worker = processes.start_worker(
            name,
            include="tests.celery.worker_plugins",
            env=celery_env.environment(),
            cwd=tmp_path,
            concurrency=concurrency,
            queues=queues,
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
    for worker in started:
        assert celery_env.password not in worker.log()


class Sampler:
    """``sample_builds`` on a thread of its own while the test waits for the CLI."""

    def __init__(self, socket_dir: str) -> None:
        self.samples = BuildSamples()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(sample_builds(socket_dir, self._stop.is_set, self.samples))
        )

    def __enter__(self) -> BuildSamples:
        self._thread.start()
        return self.samples

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class LockWatcher:
    """Watches Redis on a thread: how long each dataset's subtask lock stayed present, and the
    most leases seen at once in any heavy-slot set."""

    def __init__(self, client: redis.Redis, dataset_ids: list[str]) -> None:
        self.client = client
        self.held_s = dict.fromkeys(dataset_ids, 0.0)
        self.most_heavy_leases = 0
        self._since: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch)

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            now = time.monotonic()
            for dataset_id in self.held_s:
                if self.client.exists(DATASET_LOCK_PREFIX + dataset_id):
                    since = self._since.setdefault(dataset_id, now)
                    self.held_s[dataset_id] = max(self.held_s[dataset_id], now - since)
                else:
                    self._since.pop(dataset_id, None)
            for key in self.client.scan_iter(f"{HEAVY_SLOTS_PREFIX}*"):
                self.most_heavy_leases = max(self.most_heavy_leases, self.client.zcard(key))

    def __enter__(self) -> LockWatcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_heavy_datasets_take_the_heavy_queue_and_turns_on_their_server(
    celery_env: CeleryEnv,
    cli: Cli,
    start_worker: StartWorker,
    pgvector_url: Callable[[], str],
    pg_socket_dir: str,
    redis_admin: redis.Redis,
    tmp_path: Path,
) -> None:
    settings = celery_env.configure(
        VECTOR_DIMENSION=DIMENSION,
        VECTOR_MIGRATIONS=slow_index_folder(tmp_path, heavy=True, budget_s=120),
    )
    urls = [pgvector_url(), pgvector_url()]
    heavy_ids = [
        celery_env.add_dataset(f"pg-{n}", provider="pgvector", url=url)
        for n, url in enumerate(urls)
    ]
    light_id = celery_env.add_dataset("lance")  # the slow index is pgvector's only: light here

    async def first_revision_and_rows() -> None:
        summary = await run_startup_migrations(settings=settings, to_revision=FIRST_REVISION)
        assert summary.status == RunStatus.SUCCEEDED, summary
        for dataset_id, url in zip(heavy_ids, urls, strict=True):
            await fill_rows(url, dataset_id)

    asyncio.run(first_revision_and_rows())
    celery_env.configure(DATASET_TIMEOUT_S=0.5)  # the build outlasts it
    light_worker = start_worker("light", [QUEUE_NAME], concurrency=2)
    heavy_workers = [start_worker(f"heavy-{n}", [HEAVY_QUEUE]) for n in range(2)]
    for worker in (light_worker, *heavy_workers):
        worker.wait_for_log(processes.WORKER_READY, 60.0)

    with Sampler(pg_socket_dir) as samples, LockWatcher(redis_admin, heavy_ids) as locks:
        result = cli.run("enqueue", "--wait", "--timeout", "120", "--json", timeout_s=150)
    assert result.returncode == 0, result.stderr
    summary = json_out(result)
    assert summary["counts"] == {"succeeded": 3, "total": 3}, summary
    assert cached_versions(celery_env.settings) == dict.fromkeys(
        [*heavy_ids, light_id], HEAVY_REVISION
    )
    for dataset_id, url in zip(heavy_ids, urls, strict=True):
        assert asyncio.run(index_exists(url, dataset_id))

    # Never two builds on the server at once, and the sampler did see them.
    assert samples.looks_with_a_build > 0
    assert samples.most_at_once == 1, samples.counts

    # The second heavy dataset waited for the first one's build, then built: its subtask lock
    # lived far past DATASET_LOCK_TTL_S=2, extended by its heartbeat; one heavy lease at a time.
    assert max(locks.held_s.values()) > 2.0, locks.held_s
    assert locks.most_heavy_leases == 1

    heavy_logs = "".join(worker.log() for worker in heavy_workers)
    for dataset_id in heavy_ids:
        assert f"dataset={dataset_id} name=" in heavy_logs
        assert f"dataset={dataset_id} name=" not in light_worker.log()
    assert "is heavy: budget 120s instead of DATASET_TIMEOUT_S=0.5s" in heavy_logs
    assert f"dataset={light_id} name=" in light_worker.log()
    assert f"dataset={light_id} name=" not in heavy_logs
