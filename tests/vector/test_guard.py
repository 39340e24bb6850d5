"""The write guard: ``dataset_status`` and ``require_current`` against a real control plane whose
datasets a real run migrated, one read each, optionally cached."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from migrator import DatasetBehindError, dataset_status, require_current, run_startup_migrations
from migrator.datasets import add_dataset
from migrator.db import control_plane
from migrator.errors import DatasetNotFoundError
from migrator.guard import clear_cache
from migrator.settings import Settings
from migrator.vector.revisions.errors import UnknownRevisionError
from tests.support.revisions import PACKAGED
from tests.support.rows import set_cached

FIRST = PACKAGED[0]
HEAD = PACKAGED[-1]

EXTRA_REVISION = '''"""a revision of the application's own, after the packaged ones"""
revision = "0004_app_column"
down_revision = "0003_create_index"


def upgrade(op):
    op.add_column("documents", "tag", "string", nullable=True)
'''


@pytest.fixture(autouse=True)
def _fresh_cache() -> Any:
    clear_cache()
    yield
    clear_cache()


def _migrated_dataset(settings: Settings) -> str:
    async def make() -> str:
        async with control_plane(settings) as engine:
            await run_startup_migrations(settings=settings)
            row = await add_dataset(engine, settings, name="notes", provider="lancedb")
        await run_startup_migrations(settings=settings)
        return row.id

    return asyncio.run(make())


def _set_version(settings: Settings, dataset_id: str, version: str, error: str | None) -> None:
    async def write() -> None:
        async with control_plane(settings) as engine:
            await set_cached(engine, dataset_id, version)
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text("UPDATE dataset_databases SET last_error = :e WHERE dataset_id = :d"),
                    {"e": error, "d": dataset_id},
                )

    asyncio.run(write())


def test_a_migrated_dataset_passes_and_its_status_names_its_revision(settings: Settings) -> None:
    dataset_id = _migrated_dataset(settings)

    status = asyncio.run(require_current(dataset_id, settings=settings))

    assert (status.dataset_id, status.revision, status.state) == (dataset_id, HEAD, "active")
    assert status.last_error is None
    assert asyncio.run(dataset_status(dataset_id, settings=settings)) == status


def test_a_dataset_a_failed_migration_left_behind_is_refused_naming_both_revisions(
    settings: Settings,
) -> None:
    dataset_id = _migrated_dataset(settings)
    _set_version(settings, dataset_id, PACKAGED[0], "RevisionFailedError: index build failed")

    with pytest.raises(DatasetBehindError) as caught:
        asyncio.run(require_current(dataset_id, settings=settings))

    error = caught.value
    assert (error.dataset_id, error.revision, error.required) == (dataset_id, FIRST, HEAD)
    assert str(error) == (
        f"dataset {dataset_id} is at vector revision {FIRST}; {HEAD} or later is required; "
        "its last migration failed: RevisionFailedError: index build failed"
    )


def test_min_revision_passes_anything_at_or_past_it(settings: Settings) -> None:
    dataset_id = _migrated_dataset(settings)
    _set_version(settings, dataset_id, PACKAGED[1], None)

    asyncio.run(require_current(dataset_id, FIRST, settings=settings))
    asyncio.run(require_current(dataset_id, "0002_add_created_at_and_deleted", settings=settings))
    with pytest.raises(DatasetBehindError, match=r"or later is required$"):
        asyncio.run(require_current(dataset_id, HEAD, settings=settings))
    with pytest.raises(UnknownRevisionError, match="no_such_revision"):
        asyncio.run(require_current(dataset_id, "no_such_revision", settings=settings))


def test_the_default_requirement_is_the_head_of_the_applications_folder(
    settings: Settings, tmp_path: Path
) -> None:
    folder = tmp_path / "app_vector_migrations"
    folder.mkdir()
    (folder / "0004_app_column.py").write_text(EXTRA_REVISION)
    dataset_id = _migrated_dataset(settings)

    with pytest.raises(DatasetBehindError) as caught:
        asyncio.run(require_current(dataset_id, folder=folder, settings=settings))

    assert (caught.value.revision, caught.value.required) == (HEAD, "0004_app_column")
    asyncio.run(require_current(dataset_id, HEAD, folder=folder, settings=settings))


def test_an_unknown_dataset_is_a_typed_error(settings: Settings) -> None:
    _migrated_dataset(settings)

    with pytest.raises(DatasetNotFoundError, match="no dataset with id 'not-there'"):
        asyncio.run(require_current("not-there", settings=settings))


def test_one_indexed_read_and_a_cache_of_guard_cache_s(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(guard_cache_s=60)
    dataset_id = _migrated_dataset(settings)
    statements: list[str] = []

    async def guarded_twice_then_behind() -> None:
        async with control_plane(settings) as engine:

            def record(*args: Any) -> None:
                statements.append(args[2])

            sa.event.listen(engine.sync_engine, "before_cursor_execute", record)
            await require_current(dataset_id, settings=settings, engine=engine)
            await set_cached(engine, dataset_id, PACKAGED[0])
            # Within GUARD_CACHE_S the status read before is reused.
            await require_current(dataset_id, settings=settings, engine=engine)
            reads = [s for s in statements if "FROM dataset_databases" in s]
            assert len(reads) == 1, statements
            assert "WHERE dataset_databases.dataset_id = " in reads[0]
            clear_cache()
            with pytest.raises(DatasetBehindError):
                await require_current(dataset_id, settings=settings, engine=engine)

    asyncio.run(guarded_twice_then_behind())
