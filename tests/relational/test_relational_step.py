"""The relational half of run_startup_migrations(): every row of the seed's behaviour and errors,
against real SQLite files and the real PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from migrator import MigrationError, run_startup_migrations
from migrator.datasets import add_dataset
from migrator.db import control_plane
from migrator.models import migration_run_datasets, migration_runs
from migrator.relational import alembic_config, current_revision, upgrade_to_head
from migrator.settings import Settings
from tests.support.migrations import control_plane_head, revision_after
from tests.support.revisions import HEAD as VECTOR_HEAD

HEAD = control_plane_head()


def _rows(settings: Settings, table: sa.Table) -> list[sa.Row]:
    async def fetch() -> list[sa.Row]:
        async with control_plane(settings) as engine, engine.connect() as conn:
            return list((await conn.execute(sa.select(table))).all())

    return asyncio.run(fetch())


def _revision(settings: Settings) -> str | None:
    async def fetch() -> str | None:
        async with control_plane(settings) as engine:
            return await current_revision(engine, alembic_config(settings))

    return asyncio.run(fetch())


def test_brand_new_sqlite_file_is_created_and_migrated(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    db_file = tmp_path / "not" / "yet" / "there.db"
    settings = make_settings(database_url=f"sqlite:///{db_file}")
    assert settings.database_url.get_secret_value().startswith("sqlite+aiosqlite:///")

    result = asyncio.run(upgrade_to_head(settings))

    assert db_file.is_file()
    assert (result.before, result.after, result.applied) == (None, HEAD, True)


def test_empty_postgres_database_is_migrated(
    make_settings: Callable[..., Settings], pg_database: Callable[[], str]
) -> None:
    settings = make_settings(database_url=pg_database())
    assert settings.database_url.get_secret_value().startswith("postgresql+asyncpg://")

    summary = asyncio.run(run_startup_migrations(settings=settings))

    assert (summary.relational_before, summary.relational_after) == (None, HEAD)
    assert summary.status == "succeeded"
    assert _revision(settings) == HEAD


def test_second_run_is_a_no_op_that_reports_nothing_pending(settings: Settings) -> None:
    first = asyncio.run(run_startup_migrations(settings=settings))
    second = asyncio.run(run_startup_migrations(settings=settings))
    again = asyncio.run(upgrade_to_head(settings))

    assert first.relational_before is None
    assert (second.relational_before, second.relational_after) == (HEAD, HEAD)
    assert second.counts.get("total") == 0 and second.status == "succeeded"
    assert again.applied is False
    assert [r.status for r in _rows(settings, migration_runs)] == ["succeeded", "succeeded"]


def test_summary_carries_run_id_revisions_counts_and_duration(settings: Settings) -> None:
    async def scenario() -> object:
        await upgrade_to_head(settings)
        async with control_plane(settings) as engine:
            await add_dataset(engine, settings, name="one", provider="lancedb")
            await add_dataset(engine, settings, name="two", provider="lancedb")
        return await run_startup_migrations(settings=settings, trigger="api")

    summary = asyncio.run(scenario())
    data = summary.to_dict()  # type: ignore[attr-defined]

    assert data["run_id"] and data["trigger"] == "api" and data["status"] == "succeeded"
    assert data["counts"]["total"] == 2 and data["counts"]["succeeded"] == 2
    assert {d["status"] for d in data["datasets"]} == {"succeeded"}
    assert all(
        "version_before" not in d and d["version_after"] == VECTOR_HEAD for d in data["datasets"]
    )
    assert data["duration_s"] > 0
    run_rows = _rows(settings, migration_runs)
    assert [(r.id, r.status, r.total_count) for r in run_rows] == [(data["run_id"], "succeeded", 2)]


@pytest.mark.parametrize("start_at", ["base", "0001", "0002"])
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_upgrade_from_every_earlier_revision_to_head(
    start_at: str,
    backend: str,
    make_settings: Callable[..., Settings],
    pg_database: Callable[[], str],
) -> None:
    settings = (
        make_settings(database_url=pg_database()) if backend == "postgres" else make_settings()
    )
    config = alembic_config(settings)
    if start_at != "base":
        command.upgrade(config, start_at)
    assert _revision(settings) == (None if start_at == "base" else start_at)

    result = asyncio.run(upgrade_to_head(settings))

    assert (result.before, result.after) == (None if start_at == "base" else start_at, HEAD)
    command.check(config)  # head matches the models: no autogenerate diffs


def test_missing_alembic_ini_names_the_path(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "alembic.ini"
    settings = make_settings(alembic_config=missing)

    with pytest.raises(FileNotFoundError, match=f"alembic.ini not found at {missing}"):
        asyncio.run(run_startup_migrations(settings=settings))


def test_missing_migrations_folder_names_the_path(
    make_settings: Callable[..., Settings], migrations_copy: Callable[..., Path]
) -> None:
    ini = migrations_copy()
    migrations_dir = ini.parent / "migrations"
    (migrations_dir / "env.py").unlink()
    for path in sorted(migrations_dir.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    migrations_dir.rmdir()
    settings = make_settings(alembic_config=ini)

    with pytest.raises(FileNotFoundError) as caught:
        asyncio.run(run_startup_migrations(settings=settings))

    assert str(caught.value) == (
        f"migrations folder not found at {migrations_dir} (no env.py) "
        "(the migrator's history (ALEMBIC_CONFIG))"
    )


def test_failing_revision_raises_with_alembic_output_logs_it_and_touches_no_dataset(
    make_settings: Callable[..., Settings],
    migrations_copy: Callable[..., Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings()
    asyncio.run(upgrade_to_head(settings))

    async def register() -> str:
        async with control_plane(settings) as engine:
            row = await add_dataset(engine, settings, name="untouched", provider="lancedb")
        return row.url

    dataset_dir = Path(asyncio.run(register()))
    broken = make_settings(
        alembic_config=migrations_copy('op.execute("SELECT * FROM table_that_is_not_there")')
    )

    with caplog.at_level(logging.ERROR, logger="migrator"), pytest.raises(MigrationError) as caught:
        asyncio.run(run_startup_migrations(settings=broken))

    error = caught.value
    assert str(error).startswith(
        "alembic upgrade head failed (exit 1) for the migrator's history (ALEMBIC_CONFIG): "
    )
    assert "table_that_is_not_there" in str(error)
    assert f"Running upgrade {HEAD} -> {revision_after(HEAD)}" in error.output
    assert "no such table: table_that_is_not_there" in error.output
    assert error.returncode == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any("no such table: table_that_is_not_there" in m for m in errors)
    assert any("no dataset was touched" in m for m in errors)
    runs = _rows(broken, migration_runs)
    assert [(r.status, r.id == error.run_id) for r in runs] == [("failed", True)]  # type: ignore[attr-defined]
    assert "table_that_is_not_there" in runs[0].error
    assert _rows(broken, migration_run_datasets) == []
    assert not dataset_dir.exists()
    assert _revision(broken) == HEAD


def test_debug_level_logs_the_full_alembic_output(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(log_level="DEBUG")

    with caplog.at_level(logging.DEBUG, logger="migrator"):
        asyncio.run(run_startup_migrations(settings=settings))

    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    output = next(m for m in debug if m.startswith("alembic upgrade head output:"))
    for step in (" -> 0001, datasets", "0001 -> 0002, migration run", "0002 -> 0003, record"):
        assert f"Running upgrade {step}" in output


def test_info_level_does_not_log_alembic_output(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="migrator"):
        asyncio.run(run_startup_migrations(settings=settings))

    assert not any("Running upgrade" in r.getMessage() for r in caplog.records)
    assert any(f"Control plane at {HEAD} (was None)" in r.getMessage() for r in caplog.records)
