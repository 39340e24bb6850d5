"""Two Alembic histories in one control-plane database: the migrator's and the application's.

Each keeps its own version table, and each one's autogenerate and ``alembic check`` see only its
own tables: the migrator's ``migrations/env.py`` passes ``include_migrator_name``; an
application's ``env.py`` passes ``exclude_migrator_name`` (see the README). A control plane from
before the split records the migrator's revisions in ``alembic_version``; ``carry_over_legacy``
moves that row into the migrator's table the first time its history runs.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from migrator.models import metadata

log = logging.getLogger(__name__)

MIGRATOR_VERSION_TABLE = "migrator_alembic_version"
LEGACY_VERSION_TABLE = "alembic_version"
# Present in every control plane the migrator's first revision built: a legacy version row is
# ours only when these tables are there too (an application may also number its revisions 0001).
MIGRATOR_MARKER_TABLES = ("datasets", "dataset_databases")
MIGRATOR_TABLES = frozenset(metadata.tables)


def include_migrator_name(name: str | None, type_: str, _parents: dict[str, Any]) -> bool:
    """``include_name`` for the migrator's env.py: its own tables, nothing of the application."""
    return type_ != "table" or name in MIGRATOR_TABLES


def exclude_migrator_name(name: str | None, type_: str, _parents: dict[str, Any]) -> bool:
    """``include_name`` for an application's env.py: everything but the migrator's tables."""
    return type_ != "table" or (name not in MIGRATOR_TABLES and name != MIGRATOR_VERSION_TABLE)


def version_table(name: str) -> sa.Table:
    """A version table shaped as Alembic makes it (its primary key named ``<table>_pkc``)."""
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("version_num", sa.String(32), nullable=False),
        sa.PrimaryKeyConstraint("version_num", name=f"{name}_pkc"),
    )


def legacy_revision(conn: Connection, own_revisions: Collection[str]) -> str | None:
    """The migrator's revision a pre-split control plane records in ``alembic_version``; None
    when that table is absent, holds several rows, or an id this history does not know (then it
    is the application's), or when the migrator's tables are not there."""
    inspector = sa.inspect(conn)
    if not inspector.has_table(LEGACY_VERSION_TABLE):
        return None
    if not all(inspector.has_table(t) for t in MIGRATOR_MARKER_TABLES):
        return None
    rows = list(conn.scalars(sa.select(version_table(LEGACY_VERSION_TABLE).c.version_num)))
    if len(rows) != 1 or rows[0] not in own_revisions:
        return None
    return str(rows[0])


def carry_over_legacy(conn: Connection, own_revisions: Collection[str]) -> str | None:
    """Move the migrator's row from ``alembic_version`` into its own version table, inside the
    caller's transaction, and drop ``alembic_version``, so the application's history starts on
    a table of its own. Returns the revision carried, if any."""
    if sa.inspect(conn).has_table(MIGRATOR_VERSION_TABLE):
        return None
    revision = legacy_revision(conn, own_revisions)
    if revision is None:
        return None
    own = version_table(MIGRATOR_VERSION_TABLE)
    own.create(conn)
    conn.execute(own.insert().values(version_num=revision))
    # It held our one row only (legacy_revision checked), so nothing of the application's goes.
    version_table(LEGACY_VERSION_TABLE).drop(conn)
    log.info(
        "Carried the migrator's revision %s from %s over to %s.",
        revision,
        LEGACY_VERSION_TABLE,
        MIGRATOR_VERSION_TABLE,
    )
    return revision


def recorded_revisions(conn: Connection, table: str) -> set[str]:
    """Every row of version table ``table``; empty when the table is absent."""
    if not sa.inspect(conn).has_table(table):
        return set()
    return {str(v) for v in conn.scalars(sa.select(version_table(table).c.version_num))}
