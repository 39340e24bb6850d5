"""The pgvector adapter against a real PostgreSQL 18 with pgvector (embedded), the system
PostgreSQL 15 without pgvector, and a port nothing listens on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from migrator.errors import (
    BadDatasetURLError,
    VectorDatabaseUnreachableError,
    VectorExtensionUnavailableError,
)
from migrator.settings import Settings
from migrator.vector.base import MigrationSteps, RevisionGoal, StepFailed
from migrator.vector.pgvector_adapter import PgVectorAdapter, schema_for
from migrator.vector.revisions.errors import UnknownRevisionError
from tests.vector.helpers import (
    HEAD,
    PACKAGED,
    opened,
    pg_expected,
    pg_raw,
    pg_read,
    pg_write,
    sample_rows,
    target,
)

UrlFactory = Callable[[], str]
SHAPE = "postgresql://host:port/dbname"
DB_EXAMPLE = "db.example:5433"
SOCKET_DIR_NEEDED = "pgvector URL ?host= must be an absolute unix socket directory"
UNSUPPORTED = "pgvector URL has unsupported parts"
ALLOWED = "allowed query parameters: host, sslmode"
SSL_MODES = "disable, allow, prefer, require, verify-ca, verify-full"
MALFORMED = "pgvector URL is malformed (check the host and port)"
CREDENTIALS_REFUSED = (
    "pgvector URL must not carry credentials: remove 'user:password@' from it and set "
    "VECTOR_DB_USERNAME and VECTOR_DB_PASSWORD in the migrator's environment"
)


def _schema(dataset_id: str) -> str:
    return "ds_" + uuid.UUID(dataset_id).hex


async def _shape(url: str, schema: str) -> dict[str, object]:
    async with pg_raw(url) as conn:
        columns = await conn.fetch(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid) AS default FROM pg_attribute a "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            f'"{schema}".chunks',
        )
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 "
            "AND tablename = 'chunks' ORDER BY indexname",
            schema,
        )
        versions = await conn.fetch(
            f'SELECT revision FROM "{schema}".migrator_revisions ORDER BY revision'
        )
    return {
        "columns": [tuple(r.values()) for r in columns],
        "indexes": {r["indexname"]: r["indexdef"] for r in indexes},
        "versions": [r["revision"] for r in versions],
    }


def test_a_new_database_gets_the_extension_and_is_brought_to_head(
    settings: Settings, pgvector_db: UrlFactory
) -> None:
    url = pgvector_db()
    t = target(url)

    async def scenario() -> tuple[object, MigrationSteps, MigrationSteps]:
        async with pg_raw(url) as conn:
            had_extension = await conn.fetchval(
                "SELECT count(*) FROM pg_extension WHERE extname = 'vector'"
            )
        async with opened(t, settings) as adapter:
            return had_extension, await adapter.run_migrations(), await adapter.run_migrations()

    had_extension, first, again = asyncio.run(scenario())
    assert had_extension == 0
    assert (first.version_before, first.version_after, first.applied) == (
        None,
        HEAD,
        tuple(PACKAGED),
    )
    assert (again.version_before, again.version_after, again.applied) == (HEAD, HEAD, ())

    shape = asyncio.run(_shape(url, _schema(t.dataset_id)))
    assert shape["columns"] == [
        ("id", "text", True, None),
        ("payload", "text", False, None),
        ("embedding", f"vector({settings.vector_dimension})", False, None),
        ("created_at", "timestamp with time zone", False, None),
        ("is_deleted", "boolean", True, "false"),
    ]
    assert shape["versions"] == sorted(PACKAGED)
    hnsw = shape["indexes"]["chunks_embedding_hnsw"]
    assert "USING hnsw (embedding vector_cosine_ops)" in hnsw


def test_rows_written_at_version_1_survive_to_head_byte_for_byte(
    settings: Settings, pgvector_db: UrlFactory
) -> None:
    url = pgvector_db()
    t = target(url)
    schema = _schema(t.dataset_id)
    rows = sample_rows(300, settings.vector_dimension)

    async def scenario() -> MigrationSteps:
        async with opened(t, settings) as adapter:
            await adapter.run_migrations(RevisionGoal(PACKAGED[0]))
        await pg_write(url, schema, rows)
        async with opened(t, settings) as adapter:
            return await adapter.run_migrations()

    result = asyncio.run(scenario())
    assert (result.version_before, result.version_after) == (PACKAGED[0], HEAD)
    found = asyncio.run(pg_read(url, schema))
    assert {k: v[:2] for k, v in found.items()} == pg_expected(rows)
    assert {tuple(v[2].items()) for v in found.values()} == {
        (("created_at", None), ("is_deleted", False))
    }


def test_many_datasets_in_one_new_database_migrate_at_once(
    settings: Settings, pgvector_db: UrlFactory
) -> None:
    """They race to create the extension; the transaction-level advisory lock orders them."""
    url = pgvector_db()
    targets = [target(url) for _ in range(6)]

    async def one(t: object) -> int:
        async with opened(t, settings) as adapter:  # type: ignore[arg-type]
            return (await adapter.run_migrations()).version_after

    async def scenario() -> list[int]:
        return list(await asyncio.gather(*(one(t) for t in targets)))

    assert asyncio.run(scenario()) == [HEAD] * 6


def test_two_migrations_of_one_dataset_at_once_apply_each_step_once(
    settings: Settings, pgvector_db: UrlFactory
) -> None:
    url = pgvector_db()
    t = target(url)

    async def one() -> MigrationSteps:
        async with opened(t, settings) as adapter:
            return await adapter.run_migrations()

    async def scenario() -> list[MigrationSteps]:
        return list(await asyncio.gather(one(), one()))

    results = asyncio.run(scenario())
    assert sorted(len(r.applied) for r in results) == [0, len(PACKAGED)]
    assert sorted(r.version_before or "" for r in results) == ["", HEAD]
    assert len(asyncio.run(_shape(url, _schema(t.dataset_id)))["versions"]) == len(PACKAGED)


def test_a_schema_named_in_connection_info_is_used(
    settings: Settings, pgvector_db: UrlFactory
) -> None:
    url = pgvector_db()
    t = target(url, schema="tenant_a")

    async def scenario() -> int:
        async with opened(t, settings) as adapter:
            return (await adapter.run_migrations()).version_after

    assert asyncio.run(scenario()) == HEAD
    assert len(asyncio.run(_shape(url, "tenant_a"))["versions"]) == len(PACKAGED)


@pytest.mark.parametrize(
    "schema", ['x"; DROP SCHEMA public CASCADE; --', "Upper", "1abc", "a" * 64, "", 7]
)
def test_a_schema_that_is_not_a_plain_identifier_is_refused(schema: object) -> None:
    with pytest.raises(BadDatasetURLError) as caught:
        schema_for(str(uuid.uuid4()), {"schema": schema})
    assert str(caught.value) == (
        f"connection_info schema {schema!r} is not a plain lowercase identifier "
        "(letters, digits, underscore; at most 63)"
    )


def test_the_default_engine_id_gets_its_own_schema() -> None:
    assert schema_for("default", {}) == "ds_default"


def test_a_server_without_pgvector_is_a_clear_error(
    settings: Settings, pg_database: Callable[[], str]
) -> None:
    """The system PostgreSQL 15 has no pgvector installed."""
    parts = urlsplit(pg_database())  # carries 'postgres@'; dataset URLs must not
    t = target(f"postgresql://{parts.hostname}:{parts.port}{parts.path}")

    async def scenario() -> StepFailed:
        async with opened(t, settings) as adapter:
            with pytest.raises(StepFailed) as caught:
                await adapter.run_migrations()
            assert await adapter.read_version() is None
        return caught.value

    failed = asyncio.run(scenario())
    assert failed.step == "upgrade"  # before the first revision
    assert isinstance(failed.cause, VectorExtensionUnavailableError)
    assert str(failed.cause) == (
        f"PostgreSQL server 127.0.0.1:5432 (database {parts.path[1:]!r}) cannot provide the "
        "'vector' extension (extension \"vector\" is not available); install pgvector on that "
        "server, for example use the pgvector/pgvector image"
    )


def test_an_unreachable_server_fails_at_connect(settings: Settings) -> None:
    t = target("postgresql://127.0.0.1:1/postgres")

    async def scenario() -> StepFailed:
        async with opened(t, settings) as adapter:
            with pytest.raises(StepFailed) as caught:
                await adapter.run_migrations()
        return caught.value

    failed = asyncio.run(scenario())
    assert (failed.step, failed.version_before, failed.version_after) == ("connect", None, None)
    assert isinstance(failed.cause, VectorDatabaseUnreachableError)
    assert str(failed.cause) == (
        "cannot connect to pgvector server 127.0.0.1:1 database 'postgres' as 'postgres': "
        "ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 1)"
    )


def test_a_missing_database_fails_at_connect(settings: Settings, pg_socket_dir: str) -> None:
    t = target(f"postgresql:///no_such_db?host={pg_socket_dir}")

    async def scenario() -> StepFailed:
        async with opened(t, settings) as adapter:
            with pytest.raises(StepFailed) as caught:
                await adapter.run_migrations()
        return caught.value

    failed = asyncio.run(scenario())
    assert failed.step == "connect"
    assert str(failed.cause) == (
        f"cannot connect to pgvector server {pg_socket_dir}:5432 database 'no_such_db' as "
        "'postgres': InvalidCatalogNameError: database \"no_such_db\" does not exist"
    )


def test_a_database_recording_an_unknown_revision_is_not_touched(
    settings: Settings, pgvector_db: UrlFactory
) -> None:
    url = pgvector_db()
    t = target(url)
    schema = _schema(t.dataset_id)

    async def scenario() -> StepFailed:
        async with opened(t, settings) as adapter:
            await adapter.run_migrations()
        async with pg_raw(url) as conn:
            await conn.execute(
                f'INSERT INTO "{schema}".migrator_revisions '
                "(revision, applied_at, duration_ms, migrator_version) "
                "VALUES ('0099_from_newer_code', now(), 0, 'x')"
            )
        async with opened(t, settings) as adapter:
            with pytest.raises(StepFailed) as caught:
                await adapter.run_migrations()
        return caught.value

    failed = asyncio.run(scenario())
    assert (failed.step, type(failed.cause)) == ("read_version", UnknownRevisionError)
    assert "0099_from_newer_code" in str(failed.cause)
    assert asyncio.run(_shape(url, schema))["versions"] == sorted(
        [*PACKAGED, "0099_from_newer_code"]
    )


# ---- URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normalised", "server_key"),
    [
        ("postgresql://DB.example:5433/my%20db", f"postgresql://{DB_EXAMPLE}/my%20db", DB_EXAMPLE),
        ("postgres://h/db?sslmode=require", "postgresql://h:5432/db?sslmode=require", "h:5432"),
        ("postgresql:///vec?host=/run/pg", "postgresql://:5432/vec?host=/run/pg", "/run/pg:5432"),
        ("postgresql://[::1]/d", "postgresql://[::1]:5432/d", "::1:5432"),
    ],
)  # fmt: skip
def test_urls_are_normalised_and_keyed_by_server(
    url: str, normalised: str, server_key: str
) -> None:
    assert PgVectorAdapter.normalise_url(url) == (normalised, server_key)
    assert PgVectorAdapter.normalise_url(normalised) == (normalised, server_key)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:hunter2@db.example:5432/vectors",
        "postgresql://app:@db.example/vectors",
        "postgresql://app@db.example/vectors",
        "postgresql://db.example/vectors?password=hunter2",
        "postgresql://db.example/vectors?user=app",
    ],
)
def test_urls_with_credentials_are_refused(url: str) -> None:
    with pytest.raises(BadDatasetURLError) as caught:
        PgVectorAdapter.normalise_url(url)
    assert str(caught.value) == CREDENTIALS_REFUSED


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://h/db", f"pgvector URL must look like {SHAPE}; got scheme 'mysql'"),
        ("postgresql://h/", f"pgvector URL needs one database name as its path: {SHAPE}"),
        ("postgresql://h/a/b", f"pgvector URL needs one database name as its path: {SHAPE}"),
        ("postgresql:///db", f"pgvector URL needs a host: {SHAPE}"),
        ("postgresql://h/db?host=/s", "pgvector URL names both a host and ?host=; keep one"),
        ("postgresql:///db?host=rel", f"{SOCKET_DIR_NEEDED}, got 'rel'"),
        ("postgresql://h/db?connect_timeout=1", f"{UNSUPPORTED} ['connect_timeout']; {ALLOWED}"),
        ("postgresql://h/db?sslmode=on", f"pgvector URL sslmode must be one of {SSL_MODES}"),
        ("postgresql://u:pa/ss@h/db", f"{MALFORMED}: {SHAPE}"),
    ],
)
def test_unusable_urls_are_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(BadDatasetURLError) as caught:
        PgVectorAdapter.normalise_url(url)
    assert str(caught.value) == message
