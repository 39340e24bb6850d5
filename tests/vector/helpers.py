"""Helpers the vector tests share: open adapters that always close, read datasets back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import lancedb
import numpy as np
import pyarrow as pa

from migrator.constants import COLLECTION_NAME
from migrator.db import control_plane
from migrator.settings import Settings, get_settings
from migrator.vector.base import DatasetTarget, RevisionAdapter
from migrator.vector.object_store import is_remote, parse_remote, storage_options
from migrator.vector.registry import adapter_factory
from migrator.vector.revisions.history import HISTORY_TABLE
from tests.support.revisions import HEAD, PACKAGED
from tests.support.rows import RawDataset, cached_row, insert_raw
from tests.support.services import pg_connection

PROVIDER_OF_URL = {"postgresql": "pgvector"}
__all__ = ["HEAD", "PACKAGED"]


def collection_schema(dimension: int) -> pa.Schema:
    """The collection the packaged 0001 revision creates on LanceDB."""
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("payload", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dimension)),
        ]
    )


def target(url: str, dataset_id: str | None = None, **info: Any) -> DatasetTarget:
    provider = PROVIDER_OF_URL.get(urlsplit(url).scheme, "lancedb")
    dataset_id = dataset_id or str(uuid.uuid4())
    return DatasetTarget(dataset_id, f"name-{dataset_id[:8]}", provider, url, info)


@asynccontextmanager
async def opened(t: DatasetTarget, settings: Settings) -> AsyncIterator[RevisionAdapter]:
    adapter: RevisionAdapter = adapter_factory(t.provider)(t, settings)
    try:
        yield adapter
    finally:
        await adapter.close()


async def version_of(t: DatasetTarget, settings: Settings) -> str | None:
    async with opened(t, settings) as adapter:
        return await adapter.read_version()


# ---- rows written at schema version 1, to prove they survive every later step -------------


def sample_rows(count: int, dimension: int, seed: int = 7) -> list[dict[str, Any]]:
    """Awkward but legal values: quotes, unicode, empty and missing payloads, -0.0, subnormals."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, dimension)).astype(np.float32)
    vectors[0, 0] = -0.0
    vectors[1, 0] = np.float32(1e-45)  # a subnormal
    vectors[2, 0] = np.finfo(np.float32).max
    payloads = ['{"text": "it\'s \\"quoted\\""}', "ünïcødé ✓ 日本語", "", None]
    return [
        {
            "id": f"row-{i:05d}",
            "payload": payloads[i % len(payloads)] if i < 8 else f"payload {i}",
            "vector": vectors[i],
        }
        for i in range(count)
    ]


async def lance_connect(url: str) -> Any:
    """A LanceDB connection to a dataset directory or ``s3://`` location, the latter opened
    with the storage options the settings in the environment give."""
    if not is_remote(url):
        return await lancedb.connect_async(url)
    options = storage_options(get_settings(), parse_remote(url))
    return await lancedb.connect_async(url, storage_options=options)


async def lance_write(url: str, rows: list[dict[str, Any]], dimension: int) -> None:
    db = await lance_connect(url)
    try:
        table = await db.open_table(COLLECTION_NAME)
        data = [{**r, "vector": r["vector"].tolist()} for r in rows]
        await table.add(pa.Table.from_pylist(data, schema=collection_schema(dimension)))
    finally:
        db.close()


async def lance_read(url: str) -> dict[str, tuple[str | None, bytes, dict[str, Any]]]:
    """id -> (payload, the vector's float32 bytes, every other column)."""
    db = await lance_connect(url)
    try:
        table = await (await db.open_table(COLLECTION_NAME)).query().to_arrow()
    finally:
        db.close()
    out = {}
    for row in table.to_pylist():
        vector = np.asarray(row.pop("vector"), dtype=np.float32).tobytes()
        out[row.pop("id")] = (row.pop("payload"), vector, row)
    return out


async def lance_tables(url: str) -> dict[str, Any]:
    db = await lance_connect(url)
    try:
        chunks = await db.open_table(COLLECTION_NAME)
        versions = await (await db.open_table(HISTORY_TABLE)).query().to_arrow()
        return {
            "schema": await chunks.schema(),
            "indices": [(ix.index_type, tuple(ix.columns)) for ix in await chunks.list_indices()],
            "versions": sorted(versions.column("revision").to_pylist()),
        }
    finally:
        db.close()


def expected(rows: list[dict[str, Any]]) -> dict[str, tuple[str | None, bytes]]:
    return {r["id"]: (r["payload"], r["vector"].astype(np.float32).tobytes()) for r in rows}


# ---- pgvector: raw connections for checking, with the vector type read as its wire bytes ----


def pg_connect_args(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    host = parse_qs(parts.query).get("host", [parts.hostname])[0]
    return {"host": host, "port": parts.port or 5432, "database": parts.path.lstrip("/")}


def pg_raw(url: str) -> AbstractAsyncContextManager[asyncpg.Connection]:
    """A plain connection; the vector type (if installed) travels in pgvector's binary format."""
    return pg_connection(user="postgres", **pg_connect_args(url))


def pg_vector_bytes(vector: np.ndarray) -> bytes:
    """pgvector's binary format: int16 dimension, int16 unused, big-endian float32 values."""
    return len(vector).to_bytes(2, "big") + b"\0\0" + vector.astype(">f4").tobytes()


async def pg_write(url: str, schema: str, rows: list[dict[str, Any]]) -> None:
    async with pg_raw(url) as conn:
        await conn.executemany(
            f'INSERT INTO "{schema}".{COLLECTION_NAME} (id, payload, embedding) '
            "VALUES ($1, $2, $3)",
            [(r["id"], r["payload"], pg_vector_bytes(r["vector"])) for r in rows],
        )


async def pg_read(url: str, schema: str) -> dict[str, tuple[str | None, bytes, dict[str, Any]]]:
    async with pg_raw(url) as conn:
        records = await conn.fetch(f'SELECT * FROM "{schema}".{COLLECTION_NAME}')
    out = {}
    for record in records:
        row = dict(record)
        out[row.pop("id")] = (row.pop("payload"), row.pop("embedding"), row)
    return out


def pg_expected(rows: list[dict[str, Any]]) -> dict[str, tuple[str | None, bytes]]:
    return {r["id"]: (r["payload"], pg_vector_bytes(r["vector"])) for r in rows}


# ---- the control plane --------------------------------------------------------------------


async def cached(settings: Settings, dataset_id: str) -> Mapping[str, Any]:
    async with control_plane(settings) as engine:
        return await cached_row(engine, dataset_id)


async def insert_raw_dataset(settings: Settings, name: str, provider: str, url: str) -> str:
    """A row as an older release, a hand edit or an uninstalled plugin may have left it: the
    checks ``add_dataset`` makes are bypassed on purpose."""
    async with control_plane(settings) as engine:
        (dataset_id,) = await insert_raw(engine, [RawDataset(name, provider, url)])
    return dataset_id
