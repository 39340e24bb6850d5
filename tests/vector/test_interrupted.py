"""A migration killed with SIGKILL part-way leaves the dataset consistent, and the next run
finishes it. The kill happens in a real child process, between steps or inside one."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from migrator.settings import Settings
from migrator.vector.base import MigrationSteps, RevisionGoal
from tests.vector.helpers import (
    HEAD,
    PACKAGED,
    expected,
    lance_read,
    lance_tables,
    lance_write,
    opened,
    pg_expected,
    pg_raw,
    pg_read,
    pg_write,
    sample_rows,
    target,
    version_of,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
UrlFactory = Callable[[], str]
ROWS = 50


def kill_child_at(provider: str, url: str, dataset_id: str, when: str, version: int) -> None:
    """``version``: the position of the revision in the packaged chain, from 1."""
    # The child must die by SIGKILL, not finish and not fail on its own.
    args = [provider, url, dataset_id, when, str(version)]
    done = subprocess.run(
        [sys.executable, "-m", "tests.vector.crash_child", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == -signal.SIGKILL, done.stdout + done.stderr


async def _migrate(t: object, settings: Settings, target: str = HEAD) -> MigrationSteps:
    async with opened(t, settings) as adapter:  # type: ignore[arg-type]
        return await adapter.run_migrations(RevisionGoal(target))


# ---- LanceDB ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "version", "recorded", "remaining"),
    [
        ("after", 2, 2, (PACKAGED[2],)),
        # The LanceDB commit happened, its history row did not: the record says one less, and
        # the next run replays the revision, finding its work done, and writes the row.
        ("before-record", 2, 1, (PACKAGED[1], PACKAGED[2])),
        ("before-record", 3, 2, (PACKAGED[2],)),
    ],
)
def test_lancedb_killed_mid_migration_is_finished_by_the_next_run(
    settings: Settings,
    lance_url: UrlFactory,
    when: str,
    version: int,
    recorded: int,
    remaining: tuple[str, ...],
) -> None:
    t = target(lance_url())
    rows = sample_rows(ROWS, settings.vector_dimension)
    asyncio.run(_migrate(t, settings, PACKAGED[0]))
    asyncio.run(lance_write(t.url, rows, settings.vector_dimension))

    kill_child_at("lancedb", t.url, t.dataset_id, when, version)

    assert asyncio.run(version_of(t, settings)) == PACKAGED[recorded - 1]
    assert {k: v[:2] for k, v in asyncio.run(lance_read(t.url)).items()} == expected(rows)
    result = asyncio.run(_migrate(t, settings))
    assert (result.version_before, result.version_after, result.applied) == (
        PACKAGED[recorded - 1],
        HEAD,
        remaining,
    )
    tables = asyncio.run(lance_tables(t.url))
    assert tables["versions"] == sorted(PACKAGED)  # no revision recorded twice
    assert tables["indices"] == [("BTree", ("id",))]
    found = asyncio.run(lance_read(t.url))
    assert {k: v[:2] for k, v in found.items()} == expected(rows)
    assert {v[2]["is_deleted"] for v in found.values()} == {False}


# ---- pgvector -----------------------------------------------------------------------------


async def _has_column(url: str, schema: str, column: str) -> bool:
    async with pg_raw(url) as conn:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM information_schema.columns WHERE table_schema = $1 "
                "AND table_name = 'chunks' AND column_name = $2",
                schema,
                column,
            )
        )


@pytest.mark.parametrize(
    ("when", "version", "recorded", "has_created_at"),
    [
        # Revisions 2 and 3 hold only transactional DDL: they commit in one transaction with
        # their history rows, so "after 2" finds 3 committed too.
        ("after", 2, 3, True),
        # Killed inside that transaction before a history row: the server rolls all of it
        # back, so the column is not there either.
        ("before-record", 2, 1, False),
        ("before-record", 3, 1, False),
    ],
)
def test_pgvector_killed_mid_migration_is_finished_by_the_next_run(
    settings: Settings,
    pgvector_db: UrlFactory,
    when: str,
    version: int,
    recorded: int,
    has_created_at: bool,
) -> None:
    url = pgvector_db()
    t = target(url)
    schema = "ds_" + uuid.UUID(t.dataset_id).hex
    rows = sample_rows(ROWS, settings.vector_dimension)
    asyncio.run(_migrate(t, settings, PACKAGED[0]))
    asyncio.run(pg_write(url, schema, rows))

    kill_child_at("pgvector", url, t.dataset_id, when, version)

    assert asyncio.run(version_of(t, settings)) == PACKAGED[recorded - 1]
    assert asyncio.run(_has_column(url, schema, "created_at")) is has_created_at
    result = asyncio.run(_migrate(t, settings))  # also proves the dead session's lock is gone
    assert (result.version_before, result.version_after) == (PACKAGED[recorded - 1], HEAD)
    found = asyncio.run(pg_read(url, schema))
    assert {k: v[:2] for k, v in found.items()} == pg_expected(rows)
    assert {v[2]["is_deleted"] for v in found.values()} == {False}
