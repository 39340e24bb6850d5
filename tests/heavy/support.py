"""A heavy revision that really is heavy: an HNSW build over a few thousand rows that takes
seconds (dimensions, m and ef_construction chosen for it), and what tests watch it with.

The folder is a chain of its own: ``0001_items`` makes the collection without any index, rows
go in after it (fast: no index to maintain), then ``0002_slow_hnsw`` builds the slow index.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from migrator.vector.pgvector_adapter import schema_for

# Slow enough that a build outlasts DATASET_TIMEOUT_S=0.5 on an idle 2-core machine (about
# 2 s there), small enough to stay seconds under load.
ROWS = 5000
DIMENSION = 128
FIRST_REVISION = "0001_items"
HEAVY_REVISION = "0002_slow_hnsw"
INDEX = "items_embedding_slow"
BUDGET_S = 300

_FIRST = '''"""Items, no index yet."""

revision = "0001_items"
down_revision = None


def upgrade(op):
    op.create_collection("items", {"id": "string"}, vector={"embedding": op.vector_dimension})
'''
_SLOW = '''"""A slow HNSW build."""

providers = ("pgvector",)
revision = "0002_slow_hnsw"
down_revision = "0001_items"


def upgrade(op):
    op.create_index(
        "items", "embedding", kind="hnsw", name="items_embedding_slow", metric="l2", m=16,
        ef_construction=128{heavy}
    )
'''


def slow_index_folder(root: Path, *, heavy: bool, budget_s: float = BUDGET_S) -> Path:
    """A VECTOR_MIGRATIONS folder: a collection, then one slow index build, declared heavy
    with ``budget_s`` or not at all."""
    folder = root / ("heavy" if heavy else "light")
    folder.mkdir(parents=True, exist_ok=True)
    declared = f", heavy=True, budget_s={budget_s}" if heavy else ""
    (folder / f"{FIRST_REVISION}.py").write_text(_FIRST)
    (folder / f"{HEAVY_REVISION}.py").write_text(_SLOW.format(heavy=declared))
    return folder


def _connect_args(url: str) -> dict[str, str]:
    # postgresql:///<database>?host=<socket dir>, as the fixtures make them.
    database, _, query = url.removeprefix("postgresql:///").partition("?host=")
    return {"host": query, "database": database, "user": "postgres"}


async def fill_rows(url: str, dataset_id: str, rows: int = ROWS) -> None:
    """``rows`` random vectors in the dataset's ``items`` (server-side, in one statement)."""
    conn = await asyncpg.connect(**_connect_args(url))
    try:
        schema = schema_for(dataset_id, {})
        await conn.execute(
            f'INSERT INTO "{schema}".items (id, embedding) '
            f"SELECT i::text, ARRAY(SELECT random() + 0 * i "
            f"FROM generate_series(1, {DIMENSION}))::real[] FROM generate_series(1, {rows}) i"
        )
    finally:
        await conn.close()


async def index_exists(url: str, dataset_id: str) -> bool:
    conn = await asyncpg.connect(**_connect_args(url))
    try:
        found = await conn.fetchval(
            "SELECT 1 FROM pg_indexes WHERE schemaname = $1 AND indexname = $2",
            schema_for(dataset_id, {}),
            INDEX,
        )
        return found is not None
    finally:
        await conn.close()


@dataclass
class BuildSamples:
    """What ``sample_builds`` saw: index builds in progress at each look."""

    counts: list[int] = field(default_factory=list)

    @property
    def most_at_once(self) -> int:
        return max(self.counts, default=0)

    @property
    def looks_with_a_build(self) -> int:
        return sum(1 for count in self.counts if count)


async def sample_builds(
    socket_dir: str, stopped: Callable[[], bool], samples: BuildSamples, every_s: float = 0.05
) -> None:
    """Count CREATE INDEX in progress on the whole server (pg_stat_progress_create_index, and
    pg_stat_activity as a second witness) until ``stopped()``."""
    conn = await asyncpg.connect(host=socket_dir, database="postgres", user="postgres")
    try:
        while not stopped():
            progress = await conn.fetchval("SELECT count(*) FROM pg_stat_progress_create_index")
            active = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND query ILIKE 'CREATE INDEX%' AND pid <> pg_backend_pid()"
            )
            samples.counts.append(max(int(progress), int(active)))
            await asyncio.sleep(every_s)
    finally:
        await conn.close()


async def wait_for_build(socket_dir: str, timeout_s: float = 60.0) -> None:
    """Return once an index build is in progress on the server."""
    conn = await asyncpg.connect(host=socket_dir, database="postgres", user="postgres")
    deadline = time.monotonic() + timeout_s
    try:
        while not await conn.fetchval("SELECT count(*) FROM pg_stat_progress_create_index"):
            if time.monotonic() > deadline:
                raise TimeoutError("no index build started")
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
