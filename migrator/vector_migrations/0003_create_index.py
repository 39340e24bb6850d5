"""HNSW on the vector (pgvector); BTree on id (LanceDB)."""

from migrator.vector.revisions.recorder import Operations

revision = "0003_create_index"
down_revision = "0002_add_created_at_and_deleted"

PGVECTOR_INDEX = "chunks_embedding_hnsw"
LANCEDB_INDEX = "id_idx"


def upgrade(op: Operations) -> None:
    if op.provider == "pgvector":
        op.create_index("chunks", "embedding", kind="hnsw", name=PGVECTOR_INDEX, metric="cosine")
    else:
        op.create_index("chunks", "id", kind="btree", name=LANCEDB_INDEX)


def downgrade(op: Operations) -> None:
    op.drop_index("chunks", PGVECTOR_INDEX if op.provider == "pgvector" else LANCEDB_INDEX)
