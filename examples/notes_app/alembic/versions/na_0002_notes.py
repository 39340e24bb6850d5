"""notes: what the application lists; text and embedding live in the tenant's vector store."""

import sqlalchemy as sa
from alembic import op

revision = "na_0002_notes"
down_revision = "na_0001_tenants"


def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "tenant_id",
            sa.String(36),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("tag", sa.String(64), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_notes_tenant_id", "notes", ["tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_notes_tenant_id", table_name="notes")
    op.drop_table("notes")
