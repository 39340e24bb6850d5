"""Collection with id, payload and a vector column."""

from migrator.vector.revisions.recorder import Operations

revision = "0001_create_collections"
down_revision = None

COLLECTION = "chunks"


def vector_column(op: Operations) -> str:
    # The two built-in adapters named the vector column differently before revisions existed;
    # kept so datasets they created match this chain exactly.
    return "embedding" if op.provider == "pgvector" else "vector"


def upgrade(op: Operations) -> None:
    op.create_collection(
        COLLECTION,
        {"id": "string", "payload": "string"},
        vector={vector_column(op): op.vector_dimension},
        primary_key="id",
    )


def downgrade(op: Operations) -> None:
    op.drop_collection(COLLECTION)
