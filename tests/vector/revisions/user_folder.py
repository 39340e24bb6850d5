"""A user revision folder of six revisions that together use every operation of ``op``, the
rows written at its first revision, and the rows expected at its head."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tests.vector.revisions.support import revision_file, write_folder

DIMENSION = 8
IDS = ["0001_docs", "0002_columns", "0003_backfill", "0004_reshape", "0005_ann", "0006_native"]

REVISIONS = {
    "0001_docs.py": revision_file(
        "0001_docs",
        None,
        """
        op.create_collection(
            "docs", {"id": "string", "title": "string", "body": "string", "n": "int64"},
            vector={"embedding": 8},
        )
        op.create_collection("scratch", {"id": "string", "note": "string"})
        """,
        """
        op.drop_collection("scratch")
        op.drop_collection("docs")
        """,
    ),
    "0002_columns.py": revision_file(
        "0002_columns",
        "0001_docs",
        """
        op.add_column("docs", "lang", "string", default="en")
        op.add_column("docs", "score", "float32")
        op.add_column("docs", "ratio", "float64", default=0.5)
        op.add_column("docs", "n32", "int32", default=7)
        op.add_column("docs", "flag", "bool", default=False, nullable=False)
        op.add_column("docs", "seen_at", "timestamp")
        op.add_column("docs", "meta", "json")
        op.add_column("docs", "tags", "list<string>")
        """,
        """
        for name in ("tags", "meta", "seen_at", "flag", "n32", "ratio", "score", "lang"):
            op.drop_column("docs", name)
        """,
    ),
    "0003_backfill.py": revision_file(
        "0003_backfill",
        "0002_columns",
        """
        op.add_column("docs", "title_len", "int64")
        op.backfill("docs", "title_len", title_length, columns=["title"], batch_size=3)
        op.add_column("docs", "long_title", "bool")
        op.backfill(
            "docs", "long_title", lambda b: [True] * b.num_rows, columns=["title"], where="n >= 5"
        )
        op.create_index("docs", "n", kind="btree", name="docs_n")
        """,
        """
        op.drop_index("docs", "docs_n")
        op.drop_column("docs", "long_title")
        op.drop_column("docs", "title_len")
        """,
    )
    + """

def title_length(batch):
    return [len(t or "") for t in batch.column("title").to_pylist()]
""",
    "0004_reshape.py": revision_file(
        "0004_reshape",
        "0003_backfill",
        """
        op.rename_column("docs", "body", "text")
        op.alter_column("docs", "score", type="float64")
        op.drop_column("docs", "n32")
        op.drop_index("docs", "docs_n")
        op.drop_collection("scratch")
        """,
        """
        op.create_collection("scratch", {"id": "string", "note": "string"})
        op.create_index("docs", "n", kind="btree", name="docs_n")
        op.add_column("docs", "n32", "int32", default=7)
        op.alter_column("docs", "score", type="float32")
        op.rename_column("docs", "text", "body")
        """,
    ),
    "0005_ann.py": revision_file(
        "0005_ann",
        "0004_reshape",
        """
        if op.provider == "pgvector":
            op.create_index("docs", "embedding", kind="hnsw", name="docs_ann", metric="cosine",
                            m=8, concurrently=True)
        else:
            op.create_index("docs", "embedding", kind="ivf_flat", name="docs_ann",
                            metric="cosine", num_partitions=1)
        """,
        'op.drop_index("docs", "docs_ann", concurrently=op.provider == "pgvector")',
    ),
    "0006_native.py": revision_file(
        "0006_native",
        "0005_ann",
        """
        if op.provider == "pgvector":
            op.execute("ALTER TABLE docs ADD COLUMN source text NOT NULL DEFAULT 'import'")
        else:
            op.native(add_source)
        """,
        """
        if op.provider == "pgvector":
            op.execute("ALTER TABLE docs DROP COLUMN source")
        else:
            op.native(drop_source)
        """,
    )
    + """
providers = ("pgvector", "lancedb")


async def add_source(db):
    table = await db.open_table("docs")
    if "source" not in (await table.schema()).names:
        await table.add_columns({"source": "CAST('import' AS STRING)"})


async def drop_source(db):
    await (await db.open_table("docs")).drop_columns(["source"])
""",
}


def make_folder(root: Path) -> Path:
    return write_folder(root, REVISIONS)


def first_rows(count: int = 12) -> list[dict[str, Any]]:
    """Rows at 0001_docs: awkward titles, -0.0 and a subnormal among the vector values."""
    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((count, DIMENSION)).astype(np.float32)
    vectors[0, 0] = -0.0
    vectors[1, 1] = np.float32(1e-45)
    titles = ['it\'s "quoted"', "ünïcødé ✓ 日本語", "", None]
    return [
        {
            "id": f"d{i:02d}",
            "title": titles[i] if i < len(titles) else f"title number {i}",
            "body": f"body {i}",
            "n": i,
            "embedding": vectors[i].tolist(),
        }
        for i in range(count)
    ]


def head_rows(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What each row holds at the head revision, vectors as float32 bytes."""
    out = {}
    for row in rows:
        out[row["id"]] = {
            "id": row["id"],
            "title": row["title"],
            "text": row["body"],
            "n": row["n"],
            "embedding": np.asarray(row["embedding"], np.float32).tobytes(),
            "lang": "en",
            "score": None,
            "ratio": 0.5,
            "flag": False,
            "seen_at": None,
            "meta": None,
            "tags": None,
            "title_len": len(row["title"] or ""),
            "long_title": True if row["n"] >= 5 else None,
            "source": "import",
        }
    return out
