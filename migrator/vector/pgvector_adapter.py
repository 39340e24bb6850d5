"""pgvector: PostgreSQL through asyncpg, one schema per dataset.

The dataset's URL names the server and database (``postgresql://host:port/dbname``, or
``postgresql:///dbname?host=/socket/dir``); the schema is ``ds_<dataset uuid hex>`` (for an
id that is no UUID, ``ds_h<hash>``) unless the dataset's connection info names one.
Credentials never live in the URL: they come from VECTOR_DB_USERNAME and VECTOR_DB_PASSWORD.

It runs the configured revision chain (VECTOR_MIGRATIONS) through the pgvector executor of
``migrator.vector.revisions``: transactional DDL commits together with its history rows, a
backfill or concurrent index build in idempotent phases; columns are added in place, and
nothing is read whole into memory.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

import asyncpg
from sqlalchemy.engine import make_url

from migrator.dataset_ids import schema_key
from migrator.errors import (
    BadDatasetURLError,
    InsecureAuthenticationError,
    LockTimeoutError,
    QueryTimeoutError,
    VectorDatabaseUnreachableError,
    VectorExtensionUnavailableError,
)
from migrator.settings import Settings
from migrator.vector import pgauth
from migrator.vector.base import DOWNGRADE, RevisionAdapter, RevisionGoal
from migrator.vector.chain_config import configured_chain
from migrator.vector.hosts import is_loopback, require_allowed
from migrator.vector.pgauth import SSL_MODES, SslMode
from migrator.vector.revisions import (
    AppliedRevisions,
    RevisionChain,
    current_pgvector,
    downgrade_pgvector,
    pg_store,
    plan_pgvector,
    stamp_pgvector,
    upgrade_pgvector,
)
from migrator.vector.revisions.pg_sql import PgSql
from migrator.vector.stats import ROWS_ESTIMATED, StoreStats

log = logging.getLogger(__name__)

SCHEMES = ("postgresql", "postgres")
DEFAULT_PORT = 5432
ALLOWED_QUERY = ("host", "sslmode")
CREDENTIAL_QUERY = ("user", "password", "passfile")
# Lowercase, unquoted-safe, within PostgreSQL's 63-byte identifier limit.
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
SCHEMA_PREFIX = "ds_"
SYSTEM_SCHEMAS = frozenset({"public", "information_schema"})
SYSTEM_SCHEMA_PREFIX = "pg_"
# Advisory locks use the two-int4 form, a key space that never meets the relational lock's bigint.
ADVISORY_NAMESPACE = 0x6D696772  # "migr"
EXTENSION_LOCK_KEY = 1
# Missing control file (0A000 on PG 15+, 58P01 before) or no right to create the extension.
EXTENSION_MISSING = (asyncpg.FeatureNotSupportedError, asyncpg.UndefinedFileError)
INSTALL_FIX = "install pgvector on that server, for example use the pgvector/pgvector image"
GRANT_FIX = "have a superuser run CREATE EXTENSION vector in that database once"
LOCK_POLL_S = 0.2
# client_connection_check_interval exists since PostgreSQL 14.
CLIENT_CHECK_SINCE = (14,)
CLIENT_CHECK_INTERVAL = "2s"


@dataclass(frozen=True)
class ServerAddress:
    """Where a dataset database is: no credentials in here."""

    host: str  # a host name, an IP address, or a unix socket directory (starts with "/")
    port: int
    database: str
    sslmode: SslMode | None = None

    @property
    def server_key(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self) -> str:
        database = quote(self.database, safe="")
        query: dict[str, str] = {"sslmode": self.sslmode} if self.sslmode else {}
        if self.host.startswith("/"):
            query = {"host": self.host, **query}
            netloc = f":{self.port}"
        else:
            netloc = (
                f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
            )
        tail = "&".join(f"{k}={quote(v, safe='/')}" for k, v in query.items())
        return f"postgresql://{netloc}/{database}" + (f"?{tail}" if tail else "")


def parse_url(url: str) -> ServerAddress:
    """Validate a pgvector dataset URL. Messages never repeat the URL: it may hold a password."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        # urlsplit's own message can quote part of a password (a '/' in it ends the netloc).
        raise BadDatasetURLError(
            "pgvector URL is malformed (check the host and port): postgresql://host:port/dbname"
        ) from None
    if parts.scheme not in SCHEMES:
        raise BadDatasetURLError(
            f"pgvector URL must look like postgresql://host:port/dbname; got scheme "
            f"{parts.scheme or '(none)'!r}"
        )
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if parts.username or parts.password is not None or set(query) & set(CREDENTIAL_QUERY):
        raise BadDatasetURLError(
            "pgvector URL must not carry credentials: remove 'user:password@' from it and set "
            "VECTOR_DB_USERNAME and VECTOR_DB_PASSWORD in the migrator's environment"
        )
    unknown = sorted(set(query) - set(ALLOWED_QUERY))
    if unknown or parts.fragment:
        raise BadDatasetURLError(
            f"pgvector URL has unsupported parts {unknown or ['#fragment']}; "
            f"allowed query parameters: {', '.join(ALLOWED_QUERY)}"
        )
    return ServerAddress(
        host=_host(parts.hostname, query.get("host")),
        port=port or DEFAULT_PORT,
        database=_database(parts.path),
        sslmode=_sslmode(query.get("sslmode")),
    )


def _host(netloc_host: str | None, socket_dir: str | None) -> str:
    if netloc_host and socket_dir:
        raise BadDatasetURLError("pgvector URL names both a host and ?host=; keep one")
    if socket_dir is not None:
        if not socket_dir.startswith("/"):
            raise BadDatasetURLError(
                f"pgvector URL ?host= must be an absolute unix socket directory, got {socket_dir!r}"
            )
        return socket_dir
    if not netloc_host:
        raise BadDatasetURLError("pgvector URL needs a host: postgresql://host:port/dbname")
    return netloc_host


def _database(path: str) -> str:
    database = unquote(path.removeprefix("/"))
    if not database or "/" in database or not database.isprintable():
        raise BadDatasetURLError(
            "pgvector URL needs one database name as its path: postgresql://host:port/dbname"
        )
    return database


def _sslmode(value: str | None) -> SslMode | None:
    if value is None:
        return None
    for mode in SSL_MODES:
        if value == mode:
            return mode
    raise BadDatasetURLError(f"pgvector URL sslmode must be one of {', '.join(SSL_MODES)}")


def admit(address: ServerAddress, settings: Settings, *, dataset: str) -> SslMode | None:
    """Check ``address`` against VECTOR_DB_ALLOWED_HOSTS and VECTOR_DB_SSLMODE; the TLS mode
    to connect with. Raised errors name the dataset and the host, never a credential."""
    require_allowed(address.host, settings.vector_db_allowed_hosts, dataset=dataset)
    if _is_control_plane(address, settings):
        raise BadDatasetURLError(
            f"dataset {dataset}: database {address.database!r} on {address.server_key} is the "
            "control-plane database; a dataset needs a database of its own"
        )
    try:
        return pgauth.ssl_mode_for(address.host, address.sslmode, settings.vector_db_sslmode)
    except InsecureAuthenticationError as exc:
        raise BadDatasetURLError(f"dataset {dataset}: {exc}") from None


def _is_control_plane(address: ServerAddress, settings: Settings) -> bool:
    if settings.is_sqlite:
        return False
    control = make_url(settings.database_url.get_secret_value())
    if (control.database or "") != address.database or (control.port or DEFAULT_PORT) != (
        address.port
    ):
        return False
    control_host = control.host or str(control.query.get("host") or "localhost")
    # 127.0.0.1, localhost and a unix socket on one machine are one server.
    return control_host == address.host or (is_loopback(control_host) and is_loopback(address.host))


def schema_for(dataset_id: str, connection_info: Any) -> str:
    """The dataset's schema: the one its connection info names, else ``ds_`` + its id's key
    (``migrator.dataset_ids``).

    A named schema is the migrator's own: never a system schema (``public``,
    ``information_schema``, ``pg_*``) and never another dataset's ``ds_`` name."""
    # A UUID's hex, "default" (the single-user engine) or a hash of any other id.
    derived = SCHEMA_PREFIX + schema_key(dataset_id)
    named = (connection_info or {}).get("schema")
    if named is not None:
        if not isinstance(named, str) or not IDENTIFIER.fullmatch(named):
            raise BadDatasetURLError(
                f"connection_info schema {named!r} is not a plain lowercase identifier "
                f"(letters, digits, underscore; at most 63)"
            )
        if named in SYSTEM_SCHEMAS or named.startswith(SYSTEM_SCHEMA_PREFIX):
            raise BadDatasetURLError(
                f"dataset {dataset_id}: schema {named!r} is a system schema; the migrator "
                "creates its tables only in schemas of its own"
            )
        if named.startswith(SCHEMA_PREFIX) and named != derived:
            raise BadDatasetURLError(
                f"dataset {dataset_id}: schema {named!r} is reserved for another dataset "
                f"(names starting {SCHEMA_PREFIX!r} belong to the dataset of that id)"
            )
        return named
    if not IDENTIFIER.fullmatch(derived):
        raise BadDatasetURLError(f"dataset id {dataset_id!r} gives no valid schema name")
    return derived


def quote_ident(name: str) -> str:
    """Quote an identifier that has already been validated; quoting is belt and braces."""
    return '"' + name.replace('"', '""') + '"'


class PgVectorAdapter(RevisionAdapter):
    provider = "pgvector"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Validate the stored row again: it may predate these rules or have been edited by hand.
        self.address = parse_url(self.target.url)
        # A URL planted in the table by hand meets the same rules as a registered one, before
        # any connection is attempted.
        self.ssl_mode = admit(self.address, self.settings, dataset=self.target.dataset_id)
        self.schema = schema_for(self.target.dataset_id, self.target.connection_info)
        self._conn: asyncpg.Connection | None = None
        self._work_conn: asyncpg.Connection | None = None

    @classmethod
    def normalise_url(cls, url: str) -> tuple[str, str]:
        address = parse_url(url)
        return address.url(), address.server_key

    @classmethod
    def check_registration(cls, url: str, settings: Settings, *, dataset: str) -> None:
        admit(parse_url(url), settings, dataset=dataset)

    def _qualified(self, table: str) -> str:
        return f"{quote_ident(self.schema)}.{quote_ident(table)}"

    async def connect(self) -> None:
        await self._connection()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None:
            self._conn = await self._open()
        return self._conn

    async def _work_connection(self) -> asyncpg.Connection:
        """The connection revisions run on: an index build or a backfill is heavy, so its
        statements are bounded by DATASET_TIMEOUT_S, not QUERY_TIMEOUT_S. The lock stays on
        the light connection, whose session holds it."""
        if self._work_conn is None:
            conn = await self._open(self.settings.dataset_timeout_s)
            if conn.get_server_version() >= CLIENT_CHECK_SINCE:
                # A migrator killed mid-build must not leave its build running on the server
                # for minutes: the backend checks for its client between rows and gives up.
                await conn.execute(
                    "SELECT set_config('client_connection_check_interval', $1, false)",
                    CLIENT_CHECK_INTERVAL,
                )
            self._work_conn = conn
        return self._work_conn

    async def _open(self, command_timeout_s: float | None = None) -> asyncpg.Connection:
        password = self.settings.vector_db_password.get_secret_value()
        try:
            return await asyncpg.connect(
                host=self.address.host,
                port=self.address.port,
                database=self.address.database,
                user=self.settings.vector_db_username,
                password=password or None,
                ssl=pgauth.ssl_argument(self.ssl_mode, self.settings.vector_db_sslrootcert),
                timeout=self.settings.connect_timeout_s,
                # Every statement is light unless it says otherwise (index builds pass their own).
                command_timeout=command_timeout_s or self.settings.query_timeout_s,
                # This name is also what makes pgauth refuse cleartext and MD5 password requests.
                server_settings={"application_name": pgauth.GUARDED_APPLICATION_NAME},
            )
        except InsecureAuthenticationError as exc:
            raise InsecureAuthenticationError(
                f"pgvector server {self.address.server_key} database "
                f"{self.address.database!r}: {exc}"
            ) from None
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            detail = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            raise VectorDatabaseUnreachableError(
                f"cannot connect to pgvector server {self.address.server_key} database "
                f"{self.address.database!r} as {self.settings.vector_db_username!r}: "
                f"{type(exc).__name__}: {detail}"
            ) from exc

    @asynccontextmanager
    async def dataset_lock(self) -> AsyncIterator[None]:
        """A session advisory lock keyed on the schema; the server frees it if we die."""
        conn = await self._connection()
        # Polled, not a blocking pg_advisory_lock: each try is a light statement under
        # QUERY_TIMEOUT_S, so a server that stops answering is told from a lock held elsewhere.
        started = time.monotonic()
        while True:
            async with self._bounded():
                taken = await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))", ADVISORY_NAMESPACE, self.schema
                )
            if taken:
                break
            waited_s = time.monotonic() - started
            if waited_s >= self.settings.dataset_timeout_s:
                raise LockTimeoutError(f"pgvector schema {self.schema}", waited_s)
            await asyncio.sleep(LOCK_POLL_S)
        try:
            yield
        finally:
            await self._unlock(conn)

    async def _unlock(self, conn: asyncpg.Connection) -> None:
        try:
            await conn.execute(
                "SELECT pg_advisory_unlock($1, hashtext($2))", ADVISORY_NAMESPACE, self.schema
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            # A connection that cannot unlock is dropped; ending the session frees the lock.
            conn.terminate()
            self._conn = None

    @asynccontextmanager
    async def _bounded(self) -> AsyncIterator[None]:
        """Name the server when a statement outlives QUERY_TIMEOUT_S (asyncpg's command
        timeout raises a bare TimeoutError)."""
        try:
            yield
        except TimeoutError:
            raise QueryTimeoutError(
                f"pgvector server {self.address.server_key} database {self.address.database!r} "
                f"did not answer within QUERY_TIMEOUT_S={self.settings.query_timeout_s:g}s"
            ) from None

    async def current(self, chain: RevisionChain) -> str | None:
        conn = await self._connection()
        async with self._bounded():
            return await current_pgvector(conn, self.schema, chain)

    async def read_stats(self) -> StoreStats:
        """Rows from the catalog's estimates and the recorded revision, in a read-only
        transaction: the server itself refuses any write."""
        conn = await self._connection()
        async with self._bounded(), conn.transaction(readonly=True):
            rows = await pg_store.row_estimates(conn, self.schema)
            revision = await current_pgvector(conn, self.schema, configured_chain(self.settings))
        return StoreStats(revision, rows, ROWS_ESTIMATED)

    async def apply(
        self, chain: RevisionChain, goal: RevisionGoal, on_revision: Any
    ) -> AppliedRevisions:
        conn = await self._work_connection()
        async with self._bounded():
            # Created here first, so a missing extension names this server and the fix.
            await self._ensure_extension(conn)
            run = downgrade_pgvector if goal.direction == DOWNGRADE else upgrade_pgvector
            return await run(
                conn,
                self.schema,
                chain,
                self.context,
                goal.target,
                on_revision,
                self.heavy,
                self._open,  # a side session samples an index build's progress
            )

    async def plan_sql(self, chain: RevisionChain, to_revision: str | None) -> list[str]:
        """What an upgrade to ``to_revision`` (default head) would execute, executing nothing:
        each pending revision's statements planned against the dataset as it is now."""
        conn = await self._connection()
        async with self._bounded():
            current = await current_pgvector(conn, self.schema, chain)
            sql = PgSql(self.schema, await _extension_schema(conn) or "public")
            lines: list[str] = []
            for revision in chain.upgrade_path(current, to_revision):
                lines.append(f"-- {revision.revision}: {revision.message}")
                for op in await plan_pgvector(conn, self.schema, self.context, revision):
                    lines += [s if s.startswith("--") else f"{s};" for s in sql.statements(op)]
            return lines

    async def stamp(self, chain: RevisionChain, revision: str | None) -> None:
        conn = await self._connection()
        async with self._bounded():
            await stamp_pgvector(conn, self.schema, chain, revision)

    async def _ensure_extension(self, conn: asyncpg.Connection) -> str:
        """Create ``vector`` when missing; return the schema its types live in."""
        found = await _extension_schema(conn)
        if found is not None:
            return found
        try:
            async with conn.transaction():
                # Datasets sharing a database would race to create it; one at a time.
                await conn.execute(
                    "SELECT pg_advisory_xact_lock($1, $2)", ADVISORY_NAMESPACE, EXTENSION_LOCK_KEY
                )
                await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except EXTENSION_MISSING as exc:
            raise self._extension_error("cannot provide", exc, INSTALL_FIX) from exc
        except asyncpg.InsufficientPrivilegeError as exc:
            raise self._extension_error("will not let this user create", exc, GRANT_FIX) from exc
        log.info(
            "Created the vector extension in database %r on %s.",
            self.address.database,
            self.address.server_key,
        )
        found = await _extension_schema(conn)
        assert found is not None, "CREATE EXTENSION succeeded, so pg_extension lists it"
        return found

    def _extension_error(
        self, what: str, exc: Exception, fix: str
    ) -> VectorExtensionUnavailableError:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return VectorExtensionUnavailableError(
            f"PostgreSQL server {self.address.server_key} (database {self.address.database!r}) "
            f"{what} the 'vector' extension ({first_line}); {fix}"
        )

    async def close(self) -> None:
        work, self._work_conn = self._work_conn, None
        await self._close_one(work)
        conn, self._conn = self._conn, None
        await self._close_one(conn)

    async def _close_one(self, conn: asyncpg.Connection | None) -> None:
        if conn is None or conn.is_closed():
            return
        try:
            await conn.close(timeout=self.settings.connect_timeout_s)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            conn.terminate()


async def _extension_schema(conn: asyncpg.Connection) -> str | None:
    schema: str | None = await conn.fetchval(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'vector'"
    )
    return schema
