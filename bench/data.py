"""The data workload: D datasets of R rows each (384-dim vectors and a text payload), migrated
through revisions that add a column with a default, backfill a computed column in batches and
build an ANN index (IVF_PQ on LanceDB, HNSW on pgvector).

Every dataset starts at revision ``a`` (its collection, filled); the run applies ``b``, ``c``
and ``d``. The filled datasets are built once: one template, then a copy per dataset
(LanceDB: hard links, since Lance never rewrites a file in place; pgvector: one template
database copied file by file). Each mode starts from a fresh copy.

Index threads: the ratios between the modes measure the fan-out only when one index build uses
one core. ``index_threads=1`` sets ``LANCE_CPU_THREADS=1`` for every process and
``max_parallel_maintenance_workers = 0`` on the pgvector server; ``index_threads=0`` leaves the
stores' defaults (LanceDB: a thread per core; PostgreSQL: 2 parallel maintenance workers).
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import asyncpg
import lancedb
import numpy as np
import pyarrow as pa

from migrator.vector.revisions import DatasetContext, load_chain, upgrade_lancedb, upgrade_pgvector

FIRST_REVISION = "a"
HEAD_REVISION = "d"
DIMENSION = 384
BACKFILL_BATCH_ROWS = 5_000
FILL_CHUNK_ROWS = 20_000
TEMPLATE_SCHEMA = "ds_template"
# Parallel maintenance workers PostgreSQL uses when the bench leaves it its default.
PG_DEFAULT_MAINTENANCE_WORKERS = 2

REVISIONS = {
    "a.py": '''
"""The collection: id, a text payload, a 384-dim vector."""
revision = "a"
down_revision = None


def upgrade(op):
    op.create_collection("c", {"id": "int64", "text": "string"}, vector={"vector": DIM})
''',
    "b.py": '''
"""A column with a default: no row is rewritten."""
revision = "b"
down_revision = "a"


def upgrade(op):
    op.add_column("c", "is_deleted", "bool", default=False, nullable=False)
''',
    "c.py": '''
"""A computed column, backfilled in batches."""
import pyarrow.compute as pc

revision = "c"
down_revision = "b"


def upgrade(op):
    op.add_column("c", "digest", "int64")
    op.backfill("c", "digest", lambda b: pc.multiply(b.column("id"), 3), columns=["id"],
                batch_size=BATCH)
''',
    "d.py": '''
"""The ANN index: HNSW on pgvector, IVF_PQ on LanceDB."""
revision = "d"
down_revision = "c"


def upgrade(op):
    if op.provider == "pgvector":
        op.create_index("c", "vector", kind="hnsw", name="c_vector_ann", metric="cosine")
    else:
        op.create_index("c", "vector", kind="ivf_pq", name="c_vector_ann", metric="cosine",
                        num_partitions=PARTITIONS, num_sub_vectors=SUB_VECTORS,
                        max_iterations=10, sample_rate=64)
''',
}


# IVF_PQ's k-means at LanceDB's defaults (50 iterations, 256 samples per partition) took 57 s
# for one 20,000-row dataset on one thread here; 10 iterations on 64 samples per partition,
# 14 s. The bench measures the fan-out, not the index's recall.
def ivf_partitions(rows: int) -> int:
    # LanceDB's own rule of thumb (sqrt of the rows), at least 1 and never above the rows.
    return max(1, min(rows, int(rows**0.5)))


def write_folder(root: Path, rows: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    values = {
        "DIM": str(DIMENSION),
        "BATCH": str(BACKFILL_BATCH_ROWS),
        "PARTITIONS": str(ivf_partitions(rows)),
        "SUB_VECTORS": str(DIMENSION // 16),
    }
    for name, text in REVISIONS.items():
        for key, value in values.items():
            text = text.replace(key, value)
        (root / name).write_text(text.lstrip(), encoding="utf-8")
    return root


def index_thread_env(index_threads: int) -> dict[str, str]:
    """The environment every bench process (and the worker) gets for LanceDB's threads."""
    return {"LANCE_CPU_THREADS": str(index_threads)} if index_threads > 0 else {}


def _context() -> DatasetContext:
    return DatasetContext("template", "template", DIMENSION)


def _rows(start: int, count: int, rng: np.random.Generator) -> dict[str, pa.Array]:
    flat = pa.array(rng.standard_normal(count * DIMENSION).astype(np.float32))
    ids = np.arange(start, start + count)
    return {
        "id": pa.array(ids),
        "text": pa.array([f"payload text of row {i}" for i in ids]),
        "vector": pa.FixedSizeListArray.from_arrays(flat, DIMENSION),
    }


# ---- LanceDB ----------------------------------------------------------------------------


async def lance_template(folder: Path, path: Path, rows: int) -> Path:
    """One LanceDB dataset at revision ``a`` holding ``rows`` rows."""
    chain = load_chain(folder)
    db = await lancedb.connect_async(str(path))
    try:
        await upgrade_lancedb(db, chain, _context(), FIRST_REVISION)
        table = await db.open_table("c")
        schema = await table.schema()
        rng = np.random.default_rng(1)
        for start in range(0, rows, FILL_CHUNK_ROWS):
            count = min(FILL_CHUNK_ROWS, rows - start)
            await table.add(pa.table(_rows(start, count, rng), schema=schema))
    finally:
        db.close()
    return path


def lance_copies(template: Path, root: Path, ids: list[str]) -> None:
    """A fresh copy of the template per dataset, as hard links: Lance writes new files and
    renames manifests into place, so no write through one copy reaches another."""
    for dataset_id in ids:
        target = root / dataset_id
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(template, target, copy_function=os.link)


# ---- pgvector ---------------------------------------------------------------------------


async def pg_admin(socket_dir: str, database: str = "postgres") -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(
        host=socket_dir, user="postgres", database=database
    )
    return conn


async def pg_set_index_threads(socket_dir: str, index_threads: int) -> None:
    workers = 0 if index_threads > 0 else PG_DEFAULT_MAINTENANCE_WORKERS
    conn = await pg_admin(socket_dir)
    try:
        await conn.execute(f"ALTER SYSTEM SET max_parallel_maintenance_workers = {workers}")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def pg_template(
    folder: Path, socket_dir: str, template_db: str, schemas: list[str], rows: int
) -> None:
    """A database holding every dataset's schema at revision ``a`` with ``rows`` rows; each
    mode gets a file copy of it (``CREATE DATABASE ... TEMPLATE``)."""
    chain = load_chain(folder)
    admin = await pg_admin(socket_dir)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{template_db}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{template_db}"')
    finally:
        await admin.close()
    conn = await pg_admin(socket_dir, template_db)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        await upgrade_pgvector(conn, TEMPLATE_SCHEMA, chain, _context(), FIRST_REVISION)
        rng = np.random.default_rng(1)
        for start in range(0, rows, FILL_CHUNK_ROWS):
            count = min(FILL_CHUNK_ROWS, rows - start)
            vectors = rng.standard_normal((count, DIMENSION)).astype(np.float32)
            # Text COPY: asyncpg has no binary codec for pgvector's type.
            lines = (
                f"{start + n}\tpayload text of row {start + n}\t{_vector_text(vector)}\n"
                for n, vector in enumerate(vectors)
            )
            await conn.copy_to_table(
                "c",
                schema_name=TEMPLATE_SCHEMA,
                source=io.BytesIO("".join(lines).encode()),
                columns=["id", "text", "vector"],
                format="text",
            )
        for schema in schemas:
            await upgrade_pgvector(conn, schema, chain, _context(), FIRST_REVISION)
            await conn.execute(
                f'INSERT INTO "{schema}".c (id, text, vector) '
                f"SELECT id, text, vector FROM {TEMPLATE_SCHEMA}.c"
            )
        await conn.execute(f"DROP SCHEMA {TEMPLATE_SCHEMA} CASCADE")
        await conn.execute("VACUUM (ANALYZE)")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


def _vector_text(vector: np.ndarray) -> str:
    # pgvector's text input: "[a,b,c]".
    return "[" + ",".join(f"{x:.5f}" for x in vector) + "]"


async def pg_copy(socket_dir: str, template_db: str, database: str) -> None:
    """A fresh copy of the template database for the next mode."""
    conn = await pg_admin(socket_dir)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        await conn.execute(
            f'CREATE DATABASE "{database}" TEMPLATE "{template_db}" STRATEGY FILE_COPY'
        )
    finally:
        await conn.close()
