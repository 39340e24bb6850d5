"""An application's own table of datasets in the control plane, for ``DATASET_SOURCE`` tests:
the ``tenants`` table a query source reads, and the rows file a function source reads."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

TENANTS_QUERY = (
    "query:SELECT tenant_id AS id, title AS name, provider, vector_url AS url, "
    "opts AS connection_info FROM tenants ORDER BY tenant_id"
)
FUNCTION_SOURCE = "function:tests.sources.source_functions:tenants"


def tenant(
    tenant_id: str,
    *,
    provider: str = "lancedb",
    url: str = "",
    name: str | None = None,
    **info: Any,
) -> dict[str, Any]:
    """One source row (an empty LanceDB url: the folder derived from the id)."""
    return {
        "id": tenant_id,
        "name": name if name is not None else f"tenant {tenant_id}",
        "provider": provider,
        "url": url,
        "connection_info": json.dumps(info) if info else None,
    }


async def write_tenants(engine: AsyncEngine, rows: Iterable[Mapping[str, Any]]) -> None:
    """Replace the application's ``tenants`` table (made when missing) with ``rows``."""
    async with engine.begin() as conn:
        await conn.execute(
            sa.text(
                "CREATE TABLE IF NOT EXISTS tenants (tenant_id VARCHAR(400), title TEXT, "
                "provider TEXT, vector_url TEXT, opts TEXT)"
            )
        )
        await conn.execute(sa.text("DELETE FROM tenants"))
        for row in rows:
            await conn.execute(
                sa.text(
                    "INSERT INTO tenants VALUES (:id, :name, :provider, :url, :connection_info)"
                ),
                dict(row),
            )


async def count_tenants(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(sa.text("SELECT count(*) FROM tenants")) or 0)


def write_rows_file(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """The rows a function source returns (``TEST_SOURCE_ROWS`` names the file)."""
    path.write_text(json.dumps(list(rows)))
