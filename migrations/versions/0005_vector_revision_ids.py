"""vector versions become revision ids

The vector schema is now a chain of revisions with free-form string ids (VECTOR_MIGRATIONS).
The control plane's cached version (``dataset_databases.vector_schema_version``) and a run's
``version_before``/``version_after`` become those ids: integer version N (1-3) is carried to
the N-th packaged revision, 0 to NULL (no revision). Nothing is lost: the three integers map
one to one, and the downgrade maps them back (it refuses ids it has no integer for).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# The packaged revisions that integer versions 1-3 stood for; literal, as a migration must not
# change when the code does.
CARRIED = {
    1: "0001_create_collections",
    2: "0002_add_created_at_and_deleted",
    3: "0003_create_index",
}
COLUMNS = (
    ("dataset_databases", "vector_schema_version"),
    ("migration_run_datasets", "version_before"),
    ("migration_run_datasets", "version_after"),
)
ID_CHARS = 255


def upgrade() -> None:
    with op.batch_alter_table("dataset_databases") as batch:
        batch.alter_column(
            "vector_schema_version",
            existing_type=sa.Integer(),
            type_=sa.String(ID_CHARS),
            nullable=True,
            server_default=None,
            existing_server_default="0",
        )
    with op.batch_alter_table("migration_run_datasets") as batch:
        for column in ("version_before", "version_after"):
            batch.alter_column(column, existing_type=sa.Integer(), type_=sa.String(ID_CHARS))
    for table, column in COLUMNS:
        _map(table, column, {str(n): rev for n, rev in CARRIED.items()} | {"0": None})


def downgrade() -> None:
    known = sorted(CARRIED.values())
    for table, column in COLUMNS:
        col = sa.column(column, sa.String())
        unknown = op.get_bind().scalar(
            sa.select(sa.func.count())
            .select_from(sa.table(table, col))
            .where(col.is_not(None), col.not_in(known))
        )
        if unknown:
            raise RuntimeError(
                f"cannot downgrade: {unknown} row(s) of {table}.{column} hold vector revisions "
                f"that have no integer version (only {', '.join(known)} do); downgrade those "
                "datasets first or keep this revision"
            )
    for table, column in COLUMNS:
        mapping: dict[str, str | None] = {rev: str(n) for n, rev in CARRIED.items()}
        _map(table, column, mapping)
    op.execute(
        "UPDATE dataset_databases SET vector_schema_version = '0' "
        "WHERE vector_schema_version IS NULL"
    )
    with op.batch_alter_table("migration_run_datasets") as batch:
        for column in ("version_before", "version_after"):
            batch.alter_column(
                column,
                existing_type=sa.String(ID_CHARS),
                type_=sa.Integer(),
                postgresql_using=f"{column}::integer",
            )
    with op.batch_alter_table("dataset_databases") as batch:
        batch.alter_column(
            "vector_schema_version",
            existing_type=sa.String(ID_CHARS),
            type_=sa.Integer(),
            nullable=False,
            server_default="0",
            postgresql_using="vector_schema_version::integer",
        )


def _map(table: str, column: str, mapping: dict[str, str | None]) -> None:
    col = sa.column(column, sa.String())
    target = sa.table(table, col)
    for old, new in mapping.items():
        op.execute(target.update().where(col == old).values({column: new}))
