"""LanceDB datasets on object storage over Celery: two workers with different node names, each
in a directory of its own (nothing local shared: the control plane is PostgreSQL, the datasets
are in a bucket of a real S3-compatible server), migrate 100 datasets, each exactly once; the
key pair appears in no output."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.datasets import add_dataset
from migrator.settings import Settings
from tests.celery.conftest import CeleryEnv, Cli
from tests.celery.helpers import json_out
from tests.support import processes
from tests.support.revisions import HEAD, PACKAGED
from tests.support.rows import all_run_rows, cached_versions, runs
from tests.support.s3_server import S3Server
from tests.vector.helpers import lance_tables

pytestmark = pytest.mark.slow
DATASETS = 100
WORKER_READY_TIMEOUT_S = 40.0


@pytest.mark.timeout(400)
def test_two_workers_with_no_shared_directory_migrate_100_s3_datasets_once_each(
    celery_env: CeleryEnv,
    cli: Cli,
    s3: S3Server,
    s3_root: str,
    pg_database: Callable[[], str],
    tmp_path: Path,
) -> None:
    # The credentials reach the workers through the standard AWS environment only.
    store = {k: v for k, v in s3.settings_env(s3_root).items() if "_KEY" not in k}
    celery_env.configure(
        DATABASE_URL=pg_database(), VECTOR_DB_URL=f"s3://{s3.bucket}/{s3_root}", **store
    )
    celery_env.upgrade()
    ids = celery_env.run(_register(celery_env.settings, DATASETS))

    workers = []
    try:
        for node in ("node-a", "node-b"):
            home = tmp_path / node
            home.mkdir()
            env = celery_env.environment(HOME=home, TMPDIR=home, **s3.aws_env())
            workers.append(
                processes.start_worker(
                    node,
                    include="tests.celery.worker_plugins",
                    env=env,
                    cwd=home,
                    concurrency=2,
                    ready_timeout_s=WORKER_READY_TIMEOUT_S,
                )
            )
        result = cli.run("enqueue", "--wait", "--timeout", "300", "--json", timeout_s=330)
    finally:
        for worker in workers:
            worker.stop()

    assert result.returncode == 0, result.stderr
    summary = json_out(result)
    assert summary["counts"] == {"succeeded": DATASETS, "total": DATASETS}, summary
    logs = [worker.log() for worker in workers]
    names = {re.search(r"(node-[ab]-\w+)@", log).group(1) for log in logs}  # type: ignore[union-attr]
    assert len(names) == 2
    done = [Counter(re.findall(r"dataset=(\S+) name=\S+ status=succeeded", log)) for log in logs]
    assert all(done), "each worker migrated some datasets"
    assert done[0] + done[1] == Counter(dict.fromkeys(ids, 1))  # each exactly once
    rows = all_run_rows(celery_env.settings, summary["run_id"])
    assert sorted(r["dataset_id"] for r in rows) == sorted(ids)
    assert {(r["status"], r["attempts"], r["version_after"]) for r in rows} == {
        ("succeeded", 1, HEAD)
    }
    assert cached_versions(celery_env.settings) == dict.fromkeys(ids, HEAD)
    # Every revision recorded once in each dataset's own history, in the bucket.
    for dataset_id in ids:
        url = f"s3://{s3.bucket}/{s3_root}/{dataset_id}"
        with pytest.MonkeyPatch.context() as env:
            for key, value in s3.aws_env().items():
                env.setenv(key, value)
            assert asyncio.run(lance_tables(url))["versions"] == sorted(PACKAGED)
    # Neither node kept anything of a dataset locally.
    assert not [p for p in tmp_path.rglob("*.lance")]
    outputs = [*logs, result.stdout, result.stderr, repr(runs(celery_env.settings)), repr(rows)]
    for secret in (s3.secret_access_key, s3.access_key_id, celery_env.password):
        assert not [o for o in outputs if secret in o]


def _register(settings: Settings, count: int) -> Callable[[AsyncEngine], object]:
    async def add(engine: AsyncEngine) -> list[str]:
        made = []
        for i in range(count):
            row = await add_dataset(engine, settings, name=f"remote-{i:03d}", provider="lancedb")
            made.append(row.id)
        return made

    return add  # type: ignore[return-value]


def test_on_a_sqlite_control_plane_the_workers_redis_lock_is_the_dataset_lock(
    celery_env: CeleryEnv,
    cli: Cli,
    s3: S3Server,
    s3_root: str,
    start_worker: Callable[..., processes.ServiceProcess],
) -> None:
    # No SINGLE_MACHINE: `migrator run` would refuse these datasets; a worker holds the Redis
    # subtask lock, which works across machines, and migrates them.
    celery_env.configure(VECTOR_DB_URL=f"s3://{s3.bucket}/{s3_root}", **s3.settings_env(s3_root))
    ids = celery_env.run(_register(celery_env.settings, 4))
    worker = start_worker()
    result = cli.run("enqueue", "--wait", "--timeout", "120", "--json")
    assert result.returncode == 0, result.stderr + worker.log()
    assert json_out(result)["counts"] == {"succeeded": 4, "total": 4}
    assert cached_versions(celery_env.settings) == dict.fromkeys(ids, HEAD)
    refused = cli.run("downgrade", "--to", PACKAGED[0], "--json")
    assert refused.returncode == 2, refused.stderr
    outcomes = json_out(refused)["datasets"]
    assert sorted(d["dataset_id"] for d in outcomes) == sorted(ids)
    assert {d["status"] for d in outcomes} == {"failed"}
    assert all(d["error"].startswith("RemoteLockUnavailableError: ") for d in outcomes)
    assert cached_versions(celery_env.settings) == dict.fromkeys(ids, HEAD)  # untouched
