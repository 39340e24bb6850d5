"""pgvector: a vector column the revisions create is stored out of line once its row passes
PostgreSQL's ~2 kB TOAST threshold (pgvector's type is STORAGE EXTERNAL), and a backfill of
another column then copies each row's TOAST pointer: the vector is never rewritten.

A 384-dim row (~1.6 kB) stays inline whatever the storage settings; see
docs/vector-revisions.md, "pgvector: what a backfill writes"."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from migrator.vector.revisions import load_chain
from tests.vector.revisions.support import SCHEMA, open_dataset, revision_file, write_folder

DIMENSION = 768
ROWS = 400
CREATE = 'op.create_collection("docs", {"id": "int64"}, vector={"vector": DIMENSION})'.replace(
    "DIMENSION", str(DIMENSION)
)


def folder(root: Path) -> Path:
    return write_folder(
        root,
        {
            "a.py": revision_file("a", None, CREATE),
            "b.py": revision_file(
                "b",
                "a",
                """
                import pyarrow.compute as pc
                op.add_column("docs", "digest", "int64")
                op.backfill("docs", "digest", lambda b: pc.multiply(b.column("id"), 3),
                            columns=["id"], batch_size=64)
                """,
            ),
        },
    )


def compressible_vector(row: int) -> list[float]:
    """Few distinct values: pglz would squeeze 3 kB of these under 2 kB, so under EXTENDED
    storage PostgreSQL would keep the vector inline, compressed, and every UPDATE of the row
    would copy it; EXTERNAL must keep it out of line."""
    return [float((i + row) % 4) for i in range(DIMENSION)]


def test_a_backfill_leaves_the_vectors_toast_untouched(
    tmp_path: Path, pgvector_db: Callable[[], str]
) -> None:
    chain = load_chain(folder(tmp_path / "revisions"))
    table = f"{SCHEMA}.docs"
    url = pgvector_db()

    async def scenario() -> None:
        async with open_dataset("pgvector", url) as dataset:
            conn = dataset.handle
            await dataset.upgrade(chain, "a")
            storage = await conn.fetchval(
                "SELECT attstorage::text FROM pg_attribute "
                "WHERE attrelid = $1::regclass AND attname = 'vector'",
                table,
            )
            assert storage == "e"
            await dataset.insert(
                "docs", [{"id": i, "vector": compressible_vector(i)} for i in range(ROWS)]
            )
            pointers_sql = f"SELECT id, pg_column_toast_chunk_id(vector) AS chunk FROM {table}"
            before = {r["id"]: r["chunk"] for r in await conn.fetch(pointers_sql)}
            assert None not in before.values(), "every vector is out of line"
            toast_sql = (
                "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE oid = $1::regclass"
            )
            toast_bytes = await conn.fetchval(toast_sql, table)
            rows_before = await dataset.rows("docs")

            await dataset.upgrade(chain)

            after = {r["id"]: r["chunk"] for r in await conn.fetch(pointers_sql)}
            assert after == before, "each row still points at the same TOAST value"
            assert await conn.fetchval(toast_sql, table) == toast_bytes
            rows_after = await dataset.rows("docs")
            assert {i: r["vector"] for i, r in rows_after.items()} == {
                i: r["vector"] for i, r in rows_before.items()
            }
            assert {r["digest"] for r in rows_after.values()} == {3 * i for i in range(ROWS)}

    asyncio.run(scenario())
