"""per-dataset state keyed by dataset id, for datasets the migrator does not own

With ``DATASET_SOURCE`` the application's own table (or function) lists the datasets; the
migrator keeps only its state for each one, by id. ``dataset_databases`` therefore stops
depending on ``datasets`` (the registry's own list, still used when the source is the
registry): its foreign key goes, it carries the dataset's name and when it was first seen, ids
up to 255 characters (``migration_run_datasets`` too), and ``removed_at`` marks a dataset its
source no longer returns (its state kept, left out of runs).

Upgrade copies each registry dataset's name and ``created_at`` onto its row: nothing is lost.
Downgrade drops them again (the registry still holds both) and refuses, naming the count, when
the control plane holds state of datasets the registry does not list (an external source's),
since revision 0005 cannot hold them.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

ID_CHARS = 255
REGISTRY_ID_CHARS = 36
FOREIGN_KEY = "fk_dataset_databases_dataset_id_datasets"


def upgrade() -> None:
    with op.batch_alter_table("dataset_databases") as batch:
        batch.add_column(sa.Column("name", sa.String(255), nullable=True))
        batch.add_column(sa.Column("created_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE dataset_databases SET "
        "name = (SELECT d.name FROM datasets d WHERE d.id = dataset_databases.dataset_id), "
        "created_at = (SELECT d.created_at FROM datasets d "
        "WHERE d.id = dataset_databases.dataset_id)"
    )
    with op.batch_alter_table("dataset_databases") as batch:
        batch.drop_constraint(FOREIGN_KEY, type_="foreignkey")
        batch.alter_column(
            "dataset_id", existing_type=sa.String(REGISTRY_ID_CHARS), type_=sa.String(ID_CHARS)
        )
        batch.alter_column("name", existing_type=sa.String(255), nullable=False)
        batch.alter_column("created_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    with op.batch_alter_table("migration_run_datasets") as batch:
        batch.alter_column(
            "dataset_id", existing_type=sa.String(REGISTRY_ID_CHARS), type_=sa.String(ID_CHARS)
        )


def downgrade() -> None:
    bind = op.get_bind()
    orphans = bind.scalar(
        sa.text(
            "SELECT count(*) FROM dataset_databases WHERE dataset_id NOT IN "
            "(SELECT id FROM datasets)"
        )
    )
    if orphans:
        raise RuntimeError(
            f"cannot downgrade: dataset_databases holds the state of {orphans} dataset(s) the "
            "registry does not list (an external DATASET_SOURCE's); revision 0005 has no place "
            "for them. Delete those rows first or keep this revision"
        )
    long_ids = bind.scalar(
        sa.text(
            f"SELECT count(*) FROM migration_run_datasets "
            f"WHERE length(dataset_id) > {REGISTRY_ID_CHARS}"
        )
    )
    if long_ids:
        raise RuntimeError(
            f"cannot downgrade: {long_ids} run record(s) name dataset ids longer than "
            f"{REGISTRY_ID_CHARS} characters (an external DATASET_SOURCE's); revision 0005 "
            "cannot hold them. Delete those runs first or keep this revision"
        )
    with op.batch_alter_table("migration_run_datasets") as batch:
        batch.alter_column(
            "dataset_id", existing_type=sa.String(ID_CHARS), type_=sa.String(REGISTRY_ID_CHARS)
        )
    with op.batch_alter_table("dataset_databases") as batch:
        batch.alter_column(
            "dataset_id", existing_type=sa.String(ID_CHARS), type_=sa.String(REGISTRY_ID_CHARS)
        )
        batch.create_foreign_key(
            FOREIGN_KEY, "datasets", ["dataset_id"], ["id"], ondelete="CASCADE"
        )
        batch.drop_column("removed_at")
        batch.drop_column("created_at")
        batch.drop_column("name")
