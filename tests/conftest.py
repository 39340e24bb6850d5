"""Fixtures shared by every test: a settings environment on real files, fresh Postgres databases.

Each factory closes or drops what it made. Services are real: SQLite files under tmp_path, the
PostgreSQL on 127.0.0.1:5432 (started by scripts/test when it is down).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from migrator.settings import Settings, get_settings
from tests.support.s3_server import S3Server, s3_server
from tests.support.services import PG_ADMIN_DSN, PG_HOST_URL, pg_execute


@pytest.fixture
def make_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Settings]:
    """Point every setting at files under tmp_path; keyword overrides become env variables."""

    def make(**overrides: object) -> Settings:
        env = {
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'data' / 'control.db'}",
            "VECTOR_DB_URL": str(tmp_path / "data" / "vector"),
            # Tests keep LanceDB folders anywhere under their own directory.
            "VECTOR_STORE_ROOTS": str(tmp_path),
            "VECTOR_DIMENSION": "8",
            "LOG_LEVEL": "INFO",
        }
        env.update({k.upper(): str(v) for k, v in overrides.items()})
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        return get_settings()

    yield make
    get_settings.cache_clear()


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture
def pg_database() -> Iterator[Callable[[], str]]:
    """Factory: a new, empty database on the local PostgreSQL; returns its URL. Dropped after."""
    made: list[str] = []

    def make() -> str:
        name = f"migrator_test_{uuid.uuid4().hex[:12]}"
        asyncio.run(pg_execute(f'CREATE DATABASE "{name}"', dsn=PG_ADMIN_DSN))
        made.append(name)
        return f"{PG_HOST_URL}/{name}"

    yield make
    for name in made:
        asyncio.run(pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', dsn=PG_ADMIN_DSN))


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """A real S3-compatible server (moto) on a free loopback port, one bucket, per session."""
    with s3_server() as server:
        yield server


@pytest.fixture
def s3_root(s3: S3Server) -> str:
    """A key prefix of this test's own in the session's bucket (VECTOR_STORE_ROOTS lists it
    through ``s3.settings_env(s3_root)``)."""
    return f"tests/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def s3_url(s3: S3Server, s3_root: str) -> Callable[[], str]:
    """Factory: a fresh ``s3://`` location for one LanceDB dataset under ``s3_root``."""
    return lambda: f"s3://{s3.bucket}/{s3_root}/{uuid.uuid4().hex}"
