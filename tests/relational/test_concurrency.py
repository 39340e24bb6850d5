"""Two processes starting the relational step at once: one applies, the other waits and finds
head. A deliberately slow revision makes sure their attempts overlap."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from migrator.db import control_plane
from migrator.settings import Settings
from tests.support.migrations import control_plane_head, revision_after

SLOW_REVISION = "time.sleep(2.0)"


def _start_run() -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "migrator.cli", "run", "--no-progress", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def _versions(settings: Settings) -> list[str]:
    async def fetch() -> list[str]:
        async with control_plane(settings) as engine, engine.connect() as conn:
            return list(
                await conn.scalars(sa.text("SELECT version_num FROM migrator_alembic_version"))
            )

    return asyncio.run(fetch())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_concurrent_upgrades_apply_once(
    backend: str,
    make_settings: Callable[..., Settings],
    migrations_copy: Callable[..., Path],
    pg_database: Callable[[], str],
) -> None:
    ini = migrations_copy(SLOW_REVISION)
    url = pg_database() if backend == "postgres" else None
    settings = make_settings(alembic_config=ini, **({"database_url": url} if url else {}))

    first, second = _start_run(), _start_run()
    results = [p.communicate(timeout=90) for p in (first, second)]

    assert [p.returncode for p in (first, second)] == [0, 0], results
    logs = "\n".join(err for _, err in results)
    assert logs.count("Upgrading control plane") == 1, logs
    added = revision_after(control_plane_head())  # the slow revision the copy adds
    assert logs.count(f"already at head {added} (another process upgraded it)") == 1, logs
    assert _versions(settings) == [added]
