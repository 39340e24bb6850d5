"""A tag on every note (default ""), and the index each provider searches notes by."""

from migrator.vector.revisions import Operations

revision = "0102_note_tags"
down_revision = "0101_notes_collection"

PGVECTOR_INDEX = "notes_embedding_hnsw"
LANCEDB_INDEX = "notes_tag_idx"


def upgrade(op: Operations) -> None:
    # A constant default: LanceDB adds it without rewriting a vector, PostgreSQL in the catalog.
    op.add_column("notes", "tag", "string", default="", nullable=False)
    if op.provider == "pgvector":
        op.create_index("notes", "embedding", kind="hnsw", name=PGVECTOR_INDEX, metric="cosine")
    else:
        op.create_index("notes", "tag", kind="bitmap", name=LANCEDB_INDEX)


def downgrade(op: Operations) -> None:
    op.drop_index("notes", PGVECTOR_INDEX if op.provider == "pgvector" else LANCEDB_INDEX)
    op.drop_column("notes", "tag")
