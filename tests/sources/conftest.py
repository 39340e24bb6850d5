"""Fixtures for dataset sources: a control plane (SQLite or PostgreSQL) at head with the
application's ``tenants`` table beside the migrator's."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from migrator.relational import upgrade_to_head
from migrator.settings import Settings
from tests.support.sources import TENANTS_QUERY


@pytest.fixture(params=["sqlite", "postgres"])
def query_control(
    request: pytest.FixtureRequest,
    make_settings: Callable[..., Settings],
    pg_database: Callable[[], str],
) -> Settings:
    """Settings with DATASET_SOURCE a query on tenants, on a control plane at head."""
    overrides: dict[str, object] = {"dataset_source": TENANTS_QUERY}
    if request.param == "postgres":
        overrides["database_url"] = pg_database()
    settings = make_settings(**overrides)
    asyncio.run(upgrade_to_head(settings))
    return settings


# The embedded PostgreSQL 18 + pgvector the vector tests use, for pgvector datasets.
from tests.vector.conftest import pg_server, pg_socket_dir, pgvector_db  # noqa: E402, F401
