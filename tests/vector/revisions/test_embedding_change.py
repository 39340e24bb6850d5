"""Changing the embedding model from 384 to 768 dimensions, expand/contract in two revisions:
add the new vector column and backfill it with the application's embedding function, then
drop the old one and take its name. Similarity search works on the new column afterwards, and
on LanceDB the backfill leaves the old vector column's data files untouched."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lance
import numpy as np
import pytest

from migrator.vector.revisions import load_chain
from tests.vector.revisions.support import SCHEMA, open_dataset, revision_file, write_folder

ROWS = 240
EMBED = """

def embed_768(batch):
    import hashlib
    import numpy as np

    out = []
    for text in batch.column("text").to_pylist():
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
        vector = np.random.default_rng(seed).standard_normal(768).astype(np.float32)
        out.append(vector / np.linalg.norm(vector))
    return out
"""
FOLDER = {
    "0001_notes.py": revision_file(
        "0001_notes",
        None,
        'op.create_collection("notes", {"id": "string", "text": "string"}, '
        'vector={"embedding": 384})',
    ),
    "0002_expand_768.py": revision_file(
        "0002_expand_768",
        "0001_notes",
        """
        if op.provider == "pgvector":
            index = {"index_kind": "hnsw", "name": "notes_embedding_768_hnsw"}
        else:
            index = {"index_kind": "ivf_flat", "num_partitions": 2, "name": "notes_768_ivf"}
        op.expand_vector("notes", "embedding_768", 768, embed_768, columns=["text"],
                         batch_size=50, metric="cosine", **index)
        """,
    )
    + EMBED,
    "0003_contract.py": revision_file(
        "0003_contract",
        "0002_expand_768",
        'op.contract_vector("notes", "embedding", "embedding_768")',
    ),
}


def embed_768(text: str) -> np.ndarray:
    """The same deterministic embedding the revision file uses."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    vector = np.random.default_rng(seed).standard_normal(768).astype(np.float32)
    return vector / np.linalg.norm(vector)


def rows() -> list[dict[str, Any]]:
    rng = np.random.default_rng(3)
    return [
        {"id": f"n{i:04d}", "text": f"note {i} about topic {i % 17}", "embedding": v.tolist()}
        for i, v in enumerate(rng.standard_normal((ROWS, 384)).astype(np.float32))
    ]


def vector_files(table_path: str, column: str) -> list[tuple[int, str]]:
    dataset = lance.dataset(table_path)
    field_id = next(f.id() for f in dataset.lance_schema.fields() if f.name() == column)
    return [
        (fragment.fragment_id, data_file.path)
        for fragment in dataset.get_fragments()
        for data_file in fragment.data_files()
        if field_id in data_file.fields
    ]


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["lancedb", "pgvector"])
def test_embedding_change_384_to_768(
    provider: str,
    tmp_path: Path,
    lance_url: Callable[[], str],
    pgvector_db: Callable[[], str],
) -> None:
    chain = load_chain(write_folder(tmp_path / "revisions", FOLDER))
    url = lance_url() if provider == "lancedb" else pgvector_db()
    written = rows()

    async def scenario() -> None:
        async with open_dataset(provider, url) as dataset:
            await dataset.upgrade(chain, "0001_notes")
            for start in range(0, ROWS, 100):  # several fragments on LanceDB
                await dataset.insert("notes", written[start : start + 100])
            before = (
                vector_files(f"{url}/notes.lance", "embedding") if provider == "lancedb" else []
            )
            await dataset.upgrade(chain, "0002_expand_768")
            if provider == "lancedb":
                assert len(before) == 3
                assert vector_files(f"{url}/notes.lance", "embedding") == before
            await dataset.upgrade(chain)
            stored = await dataset.rows("notes")
            assert set(stored) == {r["id"] for r in written}
            for row in written:
                assert stored[row["id"]]["embedding"] == embed_768(row["text"]).tobytes()
                assert stored[row["id"]]["text"] == row["text"]
            probe = written[123]
            assert await nearest(dataset, embed_768(probe["text"])) == probe["id"]

    asyncio.run(scenario())


async def nearest(dataset: Any, query: np.ndarray) -> str:
    if dataset.provider == "lancedb":
        table = await dataset.handle.open_table("notes")
        hits = await table.query().nearest_to(query).column("embedding").limit(3).to_arrow()
        return str(hits.column("id")[0].as_py())
    text = "[" + ",".join(repr(float(x)) for x in query) + "]"
    found = await dataset.handle.fetchval(
        f"SELECT id FROM {SCHEMA}.notes ORDER BY embedding OPERATOR(public.<=>) $1::public.vector "
        "LIMIT 1",
        text,
    )
    return str(found)
