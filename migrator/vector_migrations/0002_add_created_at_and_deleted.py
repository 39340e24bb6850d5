"""created_at (null) and is_deleted (false) columns."""

from migrator.vector.revisions.recorder import Operations

revision = "0002_add_created_at_and_deleted"
down_revision = "0001_create_collections"


def upgrade(op: Operations) -> None:
    op.add_column("chunks", "created_at", "timestamp")
    op.add_column("chunks", "is_deleted", "bool", default=False, nullable=False)


def downgrade(op: Operations) -> None:
    op.drop_column("chunks", "is_deleted")
    op.drop_column("chunks", "created_at")
