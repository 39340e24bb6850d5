"""notes: the application's own collection, beside the packaged demo chunks."""

from migrator.vector.revisions import Operations

revision = "0101_notes_collection"
# On top of the migrator's packaged chain, not from nothing: tenants that were datasets before
# the application adopted its own folder are recorded at 0003_create_index, and a chain that
# did not hold that id would refuse them (UnknownRevisionError).
down_revision = "0003_create_index"

COLLECTION = "notes"


def upgrade(op: Operations) -> None:
    op.create_collection(
        COLLECTION,
        {"id": "string", "title": "string", "body": "string"},
        vector={"embedding": op.vector_dimension},
        primary_key="id",
    )


def downgrade(op: Operations) -> None:
    op.drop_collection(COLLECTION)
