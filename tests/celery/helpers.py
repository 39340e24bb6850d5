"""Reading the control plane and worker logs in the Celery tests."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from celery.result import AsyncResult
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.db import utcnow
from migrator.models import migration_runs
from migrator.runs import store
from tests.celery.conftest import CeleryEnv
from tests.support.migrations import add_revision, copy_migrations
from worker import create_app


def received(log: str, task: str) -> int:
    """How many times the worker received ``task`` (e.g. ``tasks.migrate_dataset``)."""
    return len(re.findall(rf"Task {re.escape(task)}\[[^\]]+\] received", log))


def json_out(result: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def failing_migrations(root: Path, message: str) -> Path:
    """A copy of alembic.ini and migrations/ with a revision after head that raises ``message``."""
    return add_revision(copy_migrations(root), f"raise RuntimeError({message!r})", name="broken")


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
