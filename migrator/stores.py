"""A dataset's store belongs to that dataset alone.

Two registry rows that name one LanceDB folder, or one pgvector schema on one database, would
migrate (and later write) each other's tables. Registration refuses the second; a row planted
by hand is refused when its dataset is opened, before any connection.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from migrator.errors import BadDatasetURLError
from migrator.models import dataset_databases

# Providers whose URL is the store itself (a folder per dataset); others share a URL (a database)
# and tell datasets apart by schema.
URL_IS_STORE = frozenset({"lancedb"})


async def other_owner(
    conn: AsyncConnection,
    *,
    dataset_id: str | None,
    provider: str,
    url: str,
    schema: str | None = None,
) -> str | None:
    """The id of another dataset using the same store, if any. When rows share a store (one
    planted by hand), the first registered keeps it: a planted row cannot take a store away."""
    if provider not in URL_IS_STORE and schema is None:
        return None
    dd = dataset_databases
    query = sa.select(dd.c.dataset_id, dd.c.connection_info).where(
        dd.c.vector_provider == provider, dd.c.url == url
    )
    if dataset_id is not None:
        mine = sa.select(dd.c.created_at).where(dd.c.dataset_id == dataset_id).scalar_subquery()
        query = query.where(
            dd.c.dataset_id != dataset_id,
            sa.or_(
                dd.c.created_at < mine,
                sa.and_(dd.c.created_at == mine, dd.c.dataset_id < dataset_id),
            ),
        )
    for row in await conn.execute(query):
        if provider in URL_IS_STORE or _named_schema(row.connection_info) == schema:
            return str(row.dataset_id)
    return None


async def require_own_store(
    conn: AsyncConnection,
    *,
    dataset: str,
    dataset_id: str | None,
    provider: str,
    url: str,
    schema: str | None = None,
) -> None:
    owner = await other_owner(
        conn, dataset_id=dataset_id, provider=provider, url=url, schema=schema
    )
    if owner is not None:
        what = f"schema {schema!r} of that database" if schema else "that location"
        raise BadDatasetURLError(
            f"dataset {dataset}: {what} already belongs to dataset {owner}; "
            "each dataset needs a store of its own"
        )


def _named_schema(connection_info: Any) -> str | None:
    named = (connection_info or {}).get("schema") if isinstance(connection_info, dict) else None
    return named if isinstance(named, str) else None
