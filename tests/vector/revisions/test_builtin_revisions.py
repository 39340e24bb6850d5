"""The packaged revisions 0001-0003 build exactly the schema the built-in adapters build today,
on LanceDB and on pgvector, and record every revision in the dataset database itself."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from migrator.settings import Settings
from migrator.vector.revisions import DEFAULT_FOLDER, load_chain
from tests.vector.helpers import opened, target
from tests.vector.revisions.support import CONTEXT, SCHEMA, Dataset, open_dataset

BUILT_IN = ["0001_create_collections", "0002_add_created_at_and_deleted", "0003_create_index"]


async def lance_shape(dataset: Dataset) -> dict[str, Any]:
    db = dataset.handle
    shape = {}
    for name in (await db.list_tables()).tables:
        if name.startswith("migrator_"):
            continue
        table = await db.open_table(name)
        indexes = [(ix.name, ix.index_type, tuple(ix.columns)) for ix in await table.list_indices()]
        shape[name] = (await table.schema(), sorted(indexes))
    return shape


async def pg_shape(dataset: Dataset, schema: str) -> dict[str, Any]:
    conn = dataset.handle
    columns = await conn.fetch(
        "SELECT table_name, column_name, ordinal_position, data_type, udt_name, is_nullable, "
        "column_default FROM information_schema.columns WHERE table_schema = $1 "
        "AND table_name NOT LIKE 'migrator%' ORDER BY table_name, ordinal_position",
        schema,
    )
    indexes = await conn.fetch(
        "SELECT indexname, replace(indexdef, $1, 'S') AS d FROM pg_indexes "
        "WHERE schemaname = $2 AND tablename NOT LIKE 'migrator%' ORDER BY indexname",
        f'"{schema}".',
        schema,
    )
    types = await conn.fetch(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS t FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relname = 'chunks' AND a.attnum > 0 AND NOT a.attisdropped "
        "ORDER BY a.attnum",
        schema,
    )
    return {
        "columns": [dict(r) for r in columns],
        "indexes": [dict(r) for r in indexes],
        "types": [dict(r) for r in types],
    }


def test_packaged_folder_is_the_three_built_in_steps() -> None:
    chain = load_chain()
    assert chain.folder == DEFAULT_FOLDER
    assert chain.ids() == BUILT_IN
    assert [r.down_revision for r in chain.revisions] == [None, *BUILT_IN[:-1]]
    assert all(r.downgrade is not None and r.message for r in chain.revisions)


def test_lancedb_revisions_match_the_adapter(settings: Settings, lance_url: Any) -> None:
    async def scenario() -> None:
        by_adapter, by_revisions = lance_url(), lance_url()
        async with opened(target(by_adapter), settings) as adapter:
            await adapter.run_migrations()
        context = replace(CONTEXT, vector_dimension=settings.vector_dimension)
        async with open_dataset("lancedb", by_revisions) as dataset:
            applied = await dataset.upgrade(load_chain(), context=context)
            assert applied.before is None and applied.after == BUILT_IN[-1]
            assert applied.applied == tuple(BUILT_IN)
            ours = await lance_shape(dataset)
            history = (
                await (await dataset.handle.open_table("migrator_revisions")).query().to_arrow()
            )
        async with open_dataset("lancedb", by_adapter) as dataset:
            theirs = await lance_shape(dataset)
        assert ours == theirs
        assert sorted(history.column("revision").to_pylist()) == BUILT_IN
        assert set(history.column("migrator_version").to_pylist()) == {"0.1.0"}
        assert all(d >= 0 for d in history.column("duration_ms").to_pylist())

    asyncio.run(scenario())


@pytest.mark.slow
def test_pgvector_revisions_match_the_adapter(settings: Settings, pgvector_db: Any) -> None:
    by_adapter, by_revisions = pgvector_db(), pgvector_db()

    async def scenario() -> None:
        async with opened(target(by_adapter, schema=SCHEMA), settings) as adapter:
            await adapter.run_migrations()
        context = replace(CONTEXT, vector_dimension=settings.vector_dimension)
        async with open_dataset("pgvector", by_revisions) as dataset:
            applied = await dataset.upgrade(load_chain(), context=context)
            assert applied.applied == tuple(BUILT_IN)
            ours = await pg_shape(dataset, SCHEMA)
            history = await dataset.handle.fetch(f"SELECT * FROM {SCHEMA}.migrator_revisions")
        async with open_dataset("pgvector", by_adapter) as dataset:
            theirs = await pg_shape(dataset, SCHEMA)
        assert ours == theirs
        assert sorted(r["revision"] for r in history) == BUILT_IN
        assert {r["migrator_version"] for r in history} == {"0.1.0"}

    asyncio.run(scenario())
