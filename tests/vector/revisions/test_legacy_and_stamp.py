"""Datasets the built-in adapters migrated to integer versions 1-3 are carried onto the chain
with nothing lost; ``stamp`` records a revision without running it (repair)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from migrator.settings import Settings
from migrator.vector.base import RevisionGoal
from migrator.vector.revisions import (
    current_lancedb,
    current_pgvector,
    load_chain,
    stamp_lancedb,
    stamp_pgvector,
)
from tests.vector.helpers import lance_read, opened, pg_read, sample_rows, target
from tests.vector.revisions.support import (
    CONTEXT,
    SCHEMA,
    Dataset,
    open_dataset,
    revision_file,
    write_folder,
)

BUILT_IN = ["0001_create_collections", "0002_add_created_at_and_deleted", "0003_create_index"]


async def legacy_dataset(url: str, settings: Settings, version: int) -> None:
    """What the adapters of before revisions left behind at ``version``, rows written at
    version 1: the same objects as the first ``version`` packaged revisions (which were written
    to match them), with the old integer record instead of the history."""
    from tests.vector.helpers import lance_write, pg_write

    async with opened(target(url, schema=SCHEMA), settings) as adapter:
        await adapter.run_migrations(RevisionGoal(BUILT_IN[0]))
    rows = sample_rows(20, settings.vector_dimension)
    if url.startswith("postgresql"):
        await pg_write(url, SCHEMA, rows)
    else:
        await lance_write(url, rows, settings.vector_dimension)
    async with opened(target(url, schema=SCHEMA), settings) as adapter:
        await adapter.run_migrations(RevisionGoal(BUILT_IN[version - 1]))
    await _as_legacy_record(url, version)


async def _as_legacy_record(url: str, version: int) -> None:
    from tests.vector.helpers import pg_raw

    if url.startswith("postgresql"):
        async with pg_raw(url) as conn:
            await conn.execute(
                f"DROP TABLE {SCHEMA}.migrator_revisions, {SCHEMA}.migrator_backfill_checkpoints;"
                f"CREATE TABLE {SCHEMA}.migrator_schema_version (version integer PRIMARY KEY, "
                "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());"
                f"INSERT INTO {SCHEMA}.migrator_schema_version (version, name) "
                f"SELECT n, 'step' FROM generate_series(1, {version}) n"
            )
        return
    import lancedb
    import pyarrow as pa

    db = await lancedb.connect_async(url)
    try:
        for name in ("migrator_revisions", "migrator_backfill_checkpoints"):
            if name in (await db.list_tables()).tables:
                await db.drop_table(name)
        schema = pa.schema(
            [
                pa.field("version", pa.int32(), nullable=False),
                pa.field("name", pa.string(), nullable=False),
                pa.field("applied_at", pa.timestamp("us", tz="UTC"), nullable=False),
            ]
        )
        from datetime import UTC, datetime

        rows = [
            {"version": n, "name": "step", "applied_at": datetime.now(UTC)}
            for n in range(1, version + 1)
        ]
        await db.create_table("migrator_schema_version", pa.Table.from_pylist(rows, schema=schema))
    finally:
        db.close()


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["lancedb", "pgvector"])
@pytest.mark.parametrize("version", [1, 2, 3])
def test_a_legacy_dataset_is_carried_onto_the_chain(
    provider: str,
    version: int,
    settings: Settings,
    lance_url: Callable[[], str],
    pgvector_db: Callable[[], str],
) -> None:
    url = lance_url() if provider == "lancedb" else pgvector_db()
    context = replace(CONTEXT, vector_dimension=settings.vector_dimension)
    chain = load_chain()

    async def scenario() -> None:
        await legacy_dataset(url, settings, version)
        read = (
            (lambda: pg_read(url, SCHEMA)) if provider == "pgvector" else (lambda: lance_read(url))
        )
        before_rows = await read()
        async with open_dataset(provider, url) as dataset:
            current = (
                current_lancedb(dataset.handle, chain)
                if provider == "lancedb"
                else (current_pgvector(dataset.handle, SCHEMA, chain))
            )
            assert await current == BUILT_IN[version - 1]
            applied = await dataset.upgrade(chain, context=context)
        assert applied.before == BUILT_IN[version - 1]
        assert applied.applied == tuple(BUILT_IN[version:])
        after_rows = await read()
        assert {k: v[:2] for k, v in after_rows.items()} == {
            k: v[:2] for k, v in before_rows.items()
        }

    asyncio.run(scenario())


@pytest.mark.parametrize("provider", ["lancedb", "pgvector"])
def test_stamp_records_without_running(
    provider: str,
    tmp_path: Path,
    lance_url: Callable[[], str],
    pgvector_db: Callable[[], str],
) -> None:
    files = {
        "a.py": revision_file("a", None, 'op.create_collection("t", {"id": "string"})'),
        "b.py": revision_file("b", "a", 'op.add_column("t", "c", "int64")'),
    }
    chain = load_chain(write_folder(tmp_path / "v", files))
    url = lance_url() if provider == "lancedb" else pgvector_db()

    async def stamp(dataset: Dataset, revision: str | None) -> str | None:
        if provider == "lancedb":
            await stamp_lancedb(dataset.handle, chain, revision)
            return await current_lancedb(dataset.handle, chain)
        await stamp_pgvector(dataset.handle, SCHEMA, chain, revision)
        return await current_pgvector(dataset.handle, SCHEMA, chain)

    async def scenario() -> None:
        async with open_dataset(provider, url) as dataset:
            await dataset.upgrade(chain)
            assert await stamp(dataset, "a") == "a"  # b's column stays; only the record moves
            assert "c" in (await shape_of(dataset))["t"]
            replayed = await dataset.upgrade(chain)  # b is idempotent: finds its column there
            assert replayed.before == "a" and replayed.applied == ("b",)
            assert await stamp(dataset, None) is None
            assert await stamp(dataset, "b") == "b"

    asyncio.run(scenario())


async def shape_of(dataset: Dataset) -> dict[str, list[str]]:
    from migrator.vector.revisions import lance_store, pg_store

    if dataset.provider == "lancedb":
        snap = await lance_store.snapshot(dataset.handle)
    else:
        snap = await pg_store.snapshot(dataset.handle, SCHEMA)
    return {name: sorted(info.columns) for name, info in snap.collections.items()}
