"""DATASET_SOURCE over Celery: a real worker takes its datasets from the application's query or
function; a bad row fails alone; the scheduled check and the next run see added and removed
datasets."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.celery.conftest import CeleryEnv, Cli
from tests.celery.helpers import json_out
from tests.support.processes import ServiceProcess
from tests.support.revisions import HEAD
from tests.support.sources import (
    FUNCTION_SOURCE,
    TENANTS_QUERY,
    tenant,
    write_rows_file,
    write_tenants,
)

pytestmark = pytest.mark.slow
DEPLOY = ("enqueue", "--trigger", "deploy", "--wait", "--timeout", "90", "--json")


def _state(env: CeleryEnv) -> dict[str, tuple[str | None, bool]]:
    """Each dataset's cached revision and whether it is marked removed."""

    async def read(engine: object) -> dict[str, tuple[str | None, bool]]:
        async with engine.connect() as conn:  # type: ignore[attr-defined]
            rows = await conn.execute(
                sa.text(
                    "SELECT dataset_id, vector_schema_version, removed_at FROM dataset_databases"
                )
            )
            return {r[0]: (r[1], r[2] is not None) for r in rows}

    return env.run(read)


def test_a_query_source_over_celery(
    celery_env: CeleryEnv, start_worker: type[ServiceProcess], cli: Cli
) -> None:
    celery_env.configure(DATASET_SOURCE=TENANTS_QUERY)
    rows = [tenant("acme"), tenant("globex:eu"), tenant("bad", provider="milvus")]
    celery_env.run(lambda engine: write_tenants(engine, rows))
    start_worker()

    first = cli.run(*DEPLOY)

    assert first.returncode == 2, first.stderr  # partial: one row refused
    data = json_out(first)
    assert sorted((d["dataset_id"], d["status"]) for d in data["datasets"]) == [
        ("acme", "succeeded"),
        ("globex:eu", "succeeded"),
    ]
    assert [e["dataset_id"] for e in data["source_errors"]] == ["bad"]
    assert "unknown vector provider 'milvus'" in data["source_errors"][0]["error"]
    assert _state(celery_env) == {"acme": (HEAD, False), "globex:eu": (HEAD, False)}

    rows = [tenant("globex:eu"), tenant("initech")]  # acme removed, initech added, bad fixed
    celery_env.run(lambda engine: write_tenants(engine, rows))
    check = cli.run("check", "--no-verify", "--json")
    assert check.returncode == 2 and json_out(check)["pending"] == ["initech"]

    second = cli.run(*DEPLOY)

    assert second.returncode == 0, second.stderr
    assert [d["dataset_id"] for d in json_out(second)["datasets"]] == ["initech"]
    assert _state(celery_env) == {
        "acme": (HEAD, True),
        "globex:eu": (HEAD, False),
        "initech": (HEAD, False),
    }


def test_a_function_source_over_celery(
    celery_env: CeleryEnv,
    start_worker: type[ServiceProcess],
    cli: Cli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows_file = tmp_path / "rows.json"
    monkeypatch.setenv("TEST_SOURCE_ROWS", str(rows_file))
    write_rows_file(rows_file, [tenant("t-1"), tenant("t-2"), tenant("t-2")])
    celery_env.configure(DATASET_SOURCE=FUNCTION_SOURCE)
    start_worker()

    first = cli.run(*DEPLOY)

    assert first.returncode == 2, first.stderr
    data = json_out(first)
    assert [d["dataset_id"] for d in data["datasets"]] == ["t-1"]
    assert [e["dataset_id"] for e in data["source_errors"]] == ["t-2", "t-2"]

    write_rows_file(rows_file, [tenant("t-2"), tenant("t-3")])
    second = cli.run(*DEPLOY)

    assert second.returncode == 0, second.stderr
    assert sorted(d["dataset_id"] for d in json_out(second)["datasets"]) == ["t-2", "t-3"]
    assert _state(celery_env) == {
        "t-1": (HEAD, True),
        "t-2": (HEAD, False),
        "t-3": (HEAD, False),
    }
