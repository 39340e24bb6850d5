"""Reading the control plane and worker logs in the Celery tests."""

from __future__ import annotations

import json
import re
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from celery.result import AsyncResult
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.db import utcnow
from migrator.models import dataset_databases, migration_run_datasets, migration_runs
from migrator.runs import store
from tests.celery.conftest import CeleryEnv
from tests.conftest import PROJECT_ROOT
from worker import create_app


def runs(env: CeleryEnv) -> list[dict[str, Any]]:
    async def read(engine: AsyncEngine) -> list[dict[str, Any]]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.select(migration_runs).order_by(migration_runs.c.started_at)
            )
            return [dict(r._mapping) for r in rows]

    result: list[dict[str, Any]] = env.run(read)
    return result


def run_rows(env: CeleryEnv, run_id: str) -> dict[str, dict[str, Any]]:
    """``migration_run_datasets`` of one run, by dataset id."""

    async def read(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.select(migration_run_datasets).where(migration_run_datasets.c.run_id == run_id)
            )
            return {r.dataset_id: dict(r._mapping) for r in rows}

    result: dict[str, dict[str, Any]] = env.run(read)
    return result


def cached_versions(env: CeleryEnv) -> dict[str, int]:
    async def read(engine: AsyncEngine) -> dict[str, int]:
        async with engine.connect() as conn:
            rows = await conn.execute(
                sa.select(dataset_databases.c.dataset_id, dataset_databases.c.vector_schema_version)
            )
            return {d: v for d, v in rows}

    result: dict[str, int] = env.run(read)
    return result


def set_cached_version(env: CeleryEnv, dataset_id: str, version: int) -> None:
    async def write(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await conn.execute(
                dataset_databases.update()
                .where(dataset_databases.c.dataset_id == dataset_id)
                .values(vector_schema_version=version)
            )

    env.run(write)


def received(log: str, task: str) -> int:
    """How many times the worker received ``task`` (e.g. ``tasks.migrate_dataset``)."""
    return len(re.findall(rf"Task {re.escape(task)}\[[^\]]+\] received", log))


def json_out(result: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def failing_migrations(root: Path, message: str) -> Path:
    """A copy of alembic.ini and migrations/ with a revision 0004 that raises ``message``."""
    shutil.copytree(
        PROJECT_ROOT / "migrations",
        root / "migrations",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(PROJECT_ROOT / "alembic.ini", root / "alembic.ini")
    (root / "migrations" / "versions" / "0004_broken.py").write_text(
        f'''"""a revision that fails"""
revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    raise RuntimeError({message!r})


def downgrade() -> None:
    pass
'''
    )
    return root / "alembic.ini"


def record_idle_run(env: CeleryEnv, run_id: str, idle_s: float) -> None:
    """A run recorded as running whose last progress was ``idle_s`` ago."""
    last_progress_at = utcnow() - timedelta(seconds=idle_s)

    async def record(engine: AsyncEngine) -> None:
        await store.create_run(engine, run_id=run_id, trigger="deploy", started_at=last_progress_at)
        async with engine.begin() as conn:
            await conn.execute(
                migration_runs.update()
                .where(migration_runs.c.id == run_id)
                .values(last_progress_at=last_progress_at)
            )

    env.run(record)


def parent_result(env: CeleryEnv, run_id: str, timeout_s: float = 30.0) -> dict[str, Any]:
    """What a caller waiting on the parent task's id (the run id) receives."""
    app = create_app(env.settings)
    try:
        result: dict[str, Any] = AsyncResult(run_id, app=app).get(timeout=timeout_s)
    finally:
        app.close()
    return result
