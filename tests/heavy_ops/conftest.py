"""Fixtures for heavy operations: the vector tests' embedded PostgreSQL 18 with pgvector (one
server per session, a fresh database per test) and their SQLite control plane at head."""

from __future__ import annotations

from tests.vector.conftest import (  # noqa: F401 - fixtures, shared with tests/vector
    control,
    lance_url,
    pg_server,
    pg_socket_dir,
    pgvector_db,
)
