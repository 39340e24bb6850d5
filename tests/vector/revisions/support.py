"""Helpers the revision tests share: open a dataset on either provider, write revision
folders, and read a collection back as comparable values (vectors as their float32 bytes)."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import lancedb
import numpy as np

from migrator.vector.revisions import (
    AppliedRevisions,
    DatasetContext,
    RevisionChain,
    downgrade_lancedb,
    downgrade_pgvector,
    upgrade_lancedb,
    upgrade_pgvector,
)
from tests.vector.helpers import pg_connect_args

# Not a ds_ name: those belong to the dataset of that id (schema_for refuses them).
SCHEMA = "app_revisions"
CONTEXT = DatasetContext("11111111-2222-3333-4444-555555555555", "revision-test", 384)


def write_folder(root: Path, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return root


def revision_file(rev: str, down: str | None, upgrade: str, downgrade: str | None = None) -> str:
    """A revision file's text; bodies are indented code lines."""
    text = f'"""{rev}."""\n\nrevision = {rev!r}\ndown_revision = {down!r}\n\n\ndef upgrade(op):\n'
    text += textwrap.indent(textwrap.dedent(upgrade).strip() or "pass", "    ") + "\n"
    if downgrade is not None:
        text += "\n\ndef downgrade(op):\n"
        text += textwrap.indent(textwrap.dedent(downgrade).strip() or "pass", "    ") + "\n"
    return text


@dataclass
class Dataset:
    """One dataset database on either provider, with the executor calls bound to it."""

    provider: str
    handle: Any  # lancedb.AsyncConnection or asyncpg.Connection

    async def upgrade(
        self, chain: RevisionChain, target: str | None = None, context: DatasetContext = CONTEXT
    ) -> AppliedRevisions:
        if self.provider == "lancedb":
            return await upgrade_lancedb(self.handle, chain, context, target)
        return await upgrade_pgvector(self.handle, SCHEMA, chain, context, target)

    async def downgrade(self, chain: RevisionChain, target: str | None) -> AppliedRevisions:
        if self.provider == "lancedb":
            return await downgrade_lancedb(self.handle, chain, CONTEXT, target)
        return await downgrade_pgvector(self.handle, SCHEMA, chain, CONTEXT, target)

    async def rows(self, collection: str) -> dict[str, dict[str, Any]]:
        """id -> row; vector columns as float32 bytes so equality is byte for byte."""
        if self.provider == "lancedb":
            table = await (await self.handle.open_table(collection)).query().to_arrow()
            records = table.to_pylist()
        else:
            records = [
                dict(r) for r in await self.handle.fetch(f"SELECT * FROM {SCHEMA}.{collection}")
            ]
        return {r["id"]: {k: _comparable(v) for k, v in r.items()} for r in records}

    async def insert(self, collection: str, rows: list[dict[str, Any]]) -> None:
        if self.provider == "lancedb":
            table = await self.handle.open_table(collection)
            schema = await table.schema()
            import pyarrow as pa

            await table.add(pa.Table.from_pylist(rows, schema=schema))
            return
        columns = list(rows[0])
        params = ", ".join(f"${i + 1}" for i in range(len(columns)))
        await self.handle.executemany(
            f"INSERT INTO {SCHEMA}.{collection} ({', '.join(columns)}) VALUES ({params})",
            [tuple(_pg_value(r[c]) for c in columns) for r in rows],
        )


def _comparable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.astype(np.float32).tobytes()
    if isinstance(value, str) and value.startswith("[") and value.endswith("]"):
        # pgvector's text form: compare the float32 values it holds, as bytes.
        return np.array([float(x) for x in value[1:-1].split(",")], np.float32).tobytes()
    if isinstance(value, list) and value and isinstance(value[0], float):
        return np.asarray(value, np.float32).tobytes()
    return value


def _pg_value(value: Any) -> Any:
    if isinstance(value, list) and value and isinstance(value[0], float):
        return "[" + ",".join(repr(float(x)) for x in value) + "]"
    return value


@asynccontextmanager
async def open_dataset(provider: str, url: str) -> AsyncIterator[Dataset]:
    if provider == "lancedb":
        db = await lancedb.connect_async(url)
        try:
            yield Dataset(provider, db)
        finally:
            db.close()
        return
    conn = await asyncpg.connect(user="postgres", **pg_connect_args(url))
    try:
        yield Dataset(provider, conn)
    finally:
        await conn.close()
