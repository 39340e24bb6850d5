"""pgvector datasets from an external source: a schema per dataset, named from a hash of an id
that is no UUID, or as the row's connection info names it; the registry's schema rules hold."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import asyncpg

import migrator
from migrator.relational import upgrade_to_head
from migrator.settings import Settings
from tests.support.environment import on_control_plane
from tests.support.revisions import HEAD
from tests.support.sources import TENANTS_QUERY, tenant, write_tenants


async def _schemas(url: str) -> set[str]:
    parts = urlsplit(url)
    host = parse_qs(parts.query)["host"][0]
    conn = await asyncpg.connect(host=host, user="postgres", database=parts.path.lstrip("/"))
    try:
        rows = await conn.fetch("SELECT nspname FROM pg_namespace")
    finally:
        await conn.close()
    return {r["nspname"] for r in rows}


def test_pgvector_schemas_of_source_datasets(
    make_settings: Callable[..., Settings], pgvector_db: Callable[[], str]
) -> None:
    settings = make_settings(dataset_source=TENANTS_QUERY, vector_db_allowed_hosts="unix")
    url = pgvector_db()
    rows = [
        tenant("tenant:7", provider="pgvector", url=url),
        tenant("named", provider="pgvector", url=url, schema="app_named"),
        tenant("squatter", provider="pgvector", url=url, schema="ds_0123"),
    ]
    asyncio.run(upgrade_to_head(settings))
    on_control_plane(settings, lambda engine: write_tenants(engine, rows))

    summary = asyncio.run(migrator.run_startup_migrations(settings=settings))

    outcomes = {d.dataset_id: d for d in summary.datasets}
    assert outcomes["tenant:7"].status == "succeeded" and outcomes["tenant:7"].version_after == HEAD
    assert outcomes["named"].status == "succeeded"
    # A ds_ name belongs to the dataset whose id makes it: refused, that dataset alone.
    assert outcomes["squatter"].status == "failed"
    assert "reserved for another dataset" in (outcomes["squatter"].error or "")
    hashed = "ds_h" + hashlib.sha256(b"tenant:7").hexdigest()[:40]
    schemas = asyncio.run(_schemas(url))
    assert {hashed, "app_named"} <= schemas and "ds_0123" not in schemas
