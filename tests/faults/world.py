"""The world a fault scenario runs in, and the check that nothing in it was lost.

A ``World`` is one deployment on this machine: a control plane (a PostgreSQL database reached
with a password), a private Redis (password, append-only file), pgvector servers it can stop
and start, LanceDB directories, Celery workers and beat, and the real ``migrator`` CLI, all as
real processes. Datasets are seeded at vector schema 1 with rows whose every byte is known, so
``World.check`` can say, after any fault, whether each one is intact.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import redis
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.constants import COLLECTION_NAME
from migrator.datasets import add_dataset
from migrator.db import control_plane
from migrator.models import dataset_databases, datasets, migration_run_datasets, migration_runs
from migrator.settings import Settings
from migrator.vector.base import DatasetTarget, RevisionGoal
from migrator.vector.registry import adapter_factory
from migrator.vector.revisions.history import HISTORY_TABLE
from tests.faults.probe_adapter import ProbeAdapter, probe_url
from tests.faults.servers import PgCluster, PgServer, RedisServer
from tests.support import processes, rows
from tests.support.environment import BASE_ENV, as_env, child_environment, on_control_plane
from tests.support.processes import (
    ServiceProcess,
    popen_migrator,
    run_migrator,
    wait_until,
)
from tests.support.revisions import PACKAGED
from tests.support.rows import RawDataset, insert_raw, set_cached
from tests.support.services import pg_connection, pg_execute
from tests.vector.helpers import (
    expected,
    lance_read,
    lance_tables,
    lance_write,
    pg_expected,
    pg_vector_bytes,
    sample_rows,
)

T = TypeVar("T")

ROWS = 12
DIMENSION = 8
VECTOR_DATABASE = "vectors"
WORKER_READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
SEED_CONCURRENCY = 8

# What every scenario's processes start from: the broker tests' base, small vectors, a connect
# timeout short enough for a scenario with a silent server, long enough that a healthy embedded
# server forking six backends at once on a loaded 2-core machine is not taken for a dead one
# (3 s was: the DDL-confinement scenario failed its good pgvector datasets under load).
WORLD_ENV = {
    **BASE_ENV,
    "VECTOR_DIMENSION": str(DIMENSION),
    "VECTOR_DB_USERNAME": "postgres",
    "CONNECT_TIMEOUT_S": "10",
}


# Datasets are checked by position in the packaged chain: 0 none, 1.. the revisions, -1 unknown.
HEAD_VERSION = len(PACKAGED)
HNSW_INDEX = "chunks_embedding_hnsw"  # the index packaged revision 3 builds on pgvector


def position(revision: str | None) -> int:
    if revision is None:
        return 0
    return PACKAGED.index(revision) + 1 if revision in PACKAGED else -1


@dataclass
class Dataset:
    """One seeded dataset and the rows it must still hold, byte for byte."""

    id: str
    name: str
    provider: str
    url: str
    server: PgServer | None = field(default=None, repr=False)
    rows: dict[str, tuple[str | None, bytes]] = field(default_factory=dict, repr=False)

    @property
    def schema(self) -> str:
        return "ds_" + uuid.UUID(self.id).hex


@dataclass(frozen=True)
class DatasetCheck:
    """What a dataset holds after the scenario: intact when its rows are the seeded ones, its
    own version record matches its schema, and the control plane never claims more."""

    dataset: Dataset
    rows_intact: bool
    recorded: int
    actual: int
    cached: int

    @property
    def lost(self) -> bool:
        return not self.rows_intact or self.recorded != self.actual or self.cached > self.recorded

    def describe(self) -> str:
        return (
            f"{self.dataset.name} ({self.dataset.provider}): rows intact={self.rows_intact} "
            f"recorded={self.recorded} actual={self.actual} cached={self.cached}"
        )


class World:
    """One deployment for one scenario. Everything it starts, it stops in ``close``."""

    def __init__(
        self,
        *,
        root: Path,
        make_settings: Callable[..., Settings],
        core: PgServer,
        control_database: str,
        vector_cluster: PgCluster,
        redis_server: RedisServer,
        scratch: Path,
    ) -> None:
        self.root = root
        self.core = core
        self.control_database = control_database
        self.vector_cluster = vector_cluster
        self.redis = redis_server
        self.scratch = scratch
        self._make_settings = make_settings
        self.overrides: dict[str, str] = {
            **WORLD_ENV,
            "DATABASE_URL": core.dsn(control_database),
            "REDIS_URL": redis_server.url(),
            "VECTOR_DB_PASSWORD": vector_cluster.password,
            "VECTOR_DB_URL": str(root / "lance"),
            "VECTOR_STORE_ROOTS": str(root / "lance"),
            "FAULTS_MARKS": str(root / "marks"),
        }
        (root / "marks").mkdir()
        self.settings = make_settings(**self.overrides)
        self.servers: list[PgServer] = []
        self.services: list[ServiceProcess] = []
        self.outputs: list[str] = []
        self.background: list[subprocess.Popen[str]] = []
        self.datasets: list[Dataset] = []

    # --- settings and the control plane ----------------------------------------------------

    @property
    def secrets(self) -> list[str]:
        return [self.core.password, self.vector_cluster.password, self.redis.password]

    def configure(self, **overrides: object) -> Settings:
        self.overrides.update(as_env(overrides))
        self.settings = self._make_settings(**self.overrides)
        return self.settings

    def environment(self, **overrides: object) -> dict[str, str]:
        return child_environment(self.overrides, overrides)

    def run(self, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
        """``work(engine)`` against the control plane, in a fresh loop."""
        return on_control_plane(self.settings, work)

    # --- servers ---------------------------------------------------------------------------

    @contextmanager
    def empty_database(self) -> Iterator[str]:
        """An empty database on the control plane's server for the block (a control plane the
        relational step has everything to do on), dropped after."""
        name = f"empty_{uuid.uuid4().hex[:12]}"
        asyncio.run(_admin_execute(self.core, f'CREATE DATABASE "{name}"'))
        try:
            yield name
        finally:
            asyncio.run(_admin_execute(self.core, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def vector_server(self, name: str) -> PgServer:
        """A started pgvector server on a loopback port with an empty database ``vectors``."""
        server = PgServer.from_cluster(self.vector_cluster, self.scratch, name).start()
        self.servers.append(server)
        asyncio.run(_admin_execute(server, f'CREATE DATABASE "{VECTOR_DATABASE}"'))
        return server

    # --- datasets --------------------------------------------------------------------------

    def add_pgvector(
        self,
        server: PgServer,
        count: int = 1,
        *,
        prefix: str = "pg",
        rows: int = ROWS,
        id_prefix: int | None = None,
    ) -> list[Dataset]:
        """``count`` datasets on ``server`` (a schema each in ``vectors``), at version 1 with
        ``rows`` rows each; the control plane caches version 1. ``id_prefix`` gives them ids
        that sort together (subtasks are sent in dataset-id order)."""
        made = asyncio.run(self._seed_pgvector(server, count, prefix, rows, id_prefix))
        self.datasets += made
        return made

    async def _seed_pgvector(
        self, server: PgServer, count: int, prefix: str, rows: int, id_prefix: int | None
    ) -> list[Dataset]:
        gate = asyncio.Semaphore(SEED_CONCURRENCY)
        async with control_plane(self.settings) as engine:

            async def one(i: int) -> Dataset:
                async with gate:
                    name = f"{prefix}-{i:04d}-{uuid.uuid4().hex[:6]}"
                    url = server.url(VECTOR_DATABASE)
                    if id_prefix is None:
                        row = await add_dataset(
                            engine, self.settings, name=name, provider="pgvector", url=url
                        )
                        dataset = Dataset(row.id, name, "pgvector", row.url, server)
                    else:
                        dataset_id = ordered_id(id_prefix, i)
                        await _register(engine, dataset_id, name, "pgvector", url)
                        dataset = Dataset(dataset_id, name, "pgvector", url, server)
                    await _migrate_to(dataset, self.settings, 1)
                    data = sample_rows(rows, DIMENSION, seed=i)
                    await _pg_insert(dataset, data)
                    dataset.rows = pg_expected(data)
                    await set_cached(engine, dataset.id, PACKAGED[0])
                    return dataset

            return list(await asyncio.gather(*(one(i) for i in range(count))))

    def add_lancedb(
        self, count: int = 1, *, prefix: str = "lance", rows: int = ROWS
    ) -> list[Dataset]:
        made = asyncio.run(self._seed_lancedb(count, prefix, rows))
        self.datasets += made
        return made

    async def _seed_lancedb(self, count: int, prefix: str, rows: int) -> list[Dataset]:
        made = []
        async with control_plane(self.settings) as engine:
            for i in range(count):
                name = f"{prefix}-{i:04d}-{uuid.uuid4().hex[:6]}"
                row = await add_dataset(engine, self.settings, name=name, provider="lancedb")
                dataset = Dataset(row.id, name, "lancedb", row.url)
                await _migrate_to(dataset, self.settings, 1)
                data = sample_rows(rows, DIMENSION, seed=100 + i)
                await lance_write(dataset.url, data, DIMENSION)
                dataset.rows = expected(data)
                await set_cached(engine, dataset.id, PACKAGED[0])
                made.append(dataset)
        return made

    def add_probe(self, name: str, *, dataset_id: str | None = None, **behaviour: float) -> Dataset:
        """A ``probe`` dataset (no rows: it watches for two migrations at once)."""
        url = probe_url(self.root / "probes" / name, **behaviour)

        async def add(engine: AsyncEngine) -> str:
            if dataset_id is not None:
                await _register(engine, dataset_id, name, "probe", url)
                return dataset_id
            row = await add_dataset(engine, self.settings, name=name, provider="probe", url=url)
            return row.id

        dataset = Dataset(self.run(add), name, "probe", url)
        self.datasets.append(dataset)
        return dataset

    def probe_dir(self, dataset: Dataset) -> Path:
        return self.root / "probes" / dataset.name

    def add_probes(self, prefix: str, count: int, **behaviour: float) -> list[Dataset]:
        """``count`` probe datasets registered in one transaction (fast for big runs)."""
        made = [
            Dataset(
                str(uuid.uuid4()),
                f"{prefix}-{i:05d}",
                "probe",
                probe_url(self.root / "probes" / f"{prefix}-{i:05d}", **behaviour),
            )
            for i in range(count)
        ]

        raw = [RawDataset(d.name, d.provider, d.url, d.id, ProbeAdapter.server_key) for d in made]
        self.run(lambda engine: insert_raw(engine, raw))
        self.datasets += made
        return made

    def insert_raw(self, name: str, provider: str, url: str, dataset_id: str | None = None) -> str:
        """A registry row as a hand edit or an old release may have left it: no checks."""
        raw = RawDataset(name, provider, url, dataset_id or "", owner="hand")
        (made,) = self.run(lambda engine: insert_raw(engine, [raw]))
        return made

    # --- processes -------------------------------------------------------------------------

    def _started(self, service: ServiceProcess) -> ServiceProcess:
        service.stop_timeout_s = STOP_TIMEOUT_S
        self.services.append(service)
        return service

    def start_worker(
        self, *, concurrency: int = 2, wait: bool = True, **overrides: object
    ) -> ServiceProcess:
        index = sum(s.name.startswith("worker") for s in self.services)
        worker = processes.start_worker(
            f"worker{index}",
            include="tests.faults.worker_plugins",
            env=self.environment(**overrides),
            cwd=self.root,
            concurrency=concurrency,
            loglevel=str(overrides.get("LOG_LEVEL", self.overrides["LOG_LEVEL"])),
            ready_timeout_s=WORKER_READY_TIMEOUT_S if wait else None,
        )
        return self._started(worker)

    def start_beat(self, **overrides: object) -> ServiceProcess:
        return self._started(processes.start_beat(env=self.environment(**overrides), cwd=self.root))

    def cli(
        self, *args: str, timeout_s: float = 120.0, **overrides: object
    ) -> subprocess.CompletedProcess[str]:
        """Run ``migrator ARGS``; its output is kept for the secrets check."""
        env = self.environment(**overrides)
        result = run_migrator(*args, env=env, cwd=self.root, timeout_s=timeout_s)
        self.outputs.append(result.stdout + result.stderr)
        return result

    def cli_popen(self, *args: str, **overrides: object) -> subprocess.Popen[str]:
        """Start ``migrator ARGS`` in the background (collect it with ``communicate``)."""
        process = popen_migrator(*args, env=self.environment(**overrides), cwd=self.root)
        self.background.append(process)
        return process

    def communicate(
        self, process: subprocess.Popen[str], timeout_s: float = 120.0
    ) -> tuple[str, str]:
        out, err = process.communicate(timeout=timeout_s)
        self.outputs.append(out + err)
        return out, err

    def task_pid(self, task_name: str, task_id: str, timeout_s: float = 30.0) -> int:
        """The pid of the pool process that started ``task_name[task_id]``."""
        mark = self.root / "marks" / f"{task_name}.{task_id}"
        wait_until(mark.exists, timeout_s, f"{task_name}[{task_id}] to start")
        return int(wait_until(mark.read_text, timeout_s, f"the pid of {task_name}[{task_id}]"))

    def cut_control_plane(self) -> int:
        """``pg_terminate_backend`` on every connection to this world's control plane; how
        many were cut."""

        async def cut() -> int:
            conn = await asyncpg.connect(**self.core.admin_args())  # type: ignore[arg-type]
            try:
                return int(
                    await conn.fetchval(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = $1 AND pid <> pg_backend_pid()",
                        self.control_database,
                    )
                )
            finally:
                await conn.close()

        return asyncio.run(cut())

    def redis_client(self) -> redis.Redis:
        return self.redis.client()

    # --- reading the outcome ---------------------------------------------------------------

    def runs(self) -> list[dict[str, Any]]:
        return rows.runs(self.settings)

    def run_rows(self, run_id: str) -> dict[str, dict[str, Any]]:
        return rows.run_rows(self.settings, run_id)

    def all_run_rows(self) -> list[dict[str, Any]]:
        return rows.all_run_rows(self.settings)

    def cached_versions(self) -> dict[str, int]:
        """The cached revisions as positions in the packaged chain (0: none)."""
        return {k: position(v) for k, v in rows.cached_versions(self.settings).items()}

    def check(self, chosen: Sequence[Dataset] | None = None) -> list[DatasetCheck]:
        """Read every dataset back (servers must be up): rows, version record, schema."""
        return asyncio.run(self._check(list(chosen if chosen is not None else self.datasets)))

    async def _check(self, chosen: list[Dataset]) -> list[DatasetCheck]:
        async with control_plane(self.settings) as engine:
            cached = await rows.read_cached_versions(engine)
        gate = asyncio.Semaphore(SEED_CONCURRENCY)

        async def one(dataset: Dataset) -> DatasetCheck:
            async with gate:
                return await check_dataset(dataset, position(cached.get(dataset.id)))

        checked = [d for d in chosen if d.provider in ("pgvector", "lancedb")]
        return list(await asyncio.gather(*(one(d) for d in checked)))

    def lost(self, chosen: Sequence[Dataset] | None = None) -> list[str]:
        """Datasets not intact, each described; the scenario's "datasets lost" is its length."""
        return [c.describe() for c in self.check(chosen) if c.lost]

    def at_head(self, chosen: Sequence[Dataset] | None = None) -> list[str]:
        """Datasets that are not at head, recorded and cached (empty when all are)."""
        return [
            c.describe()
            for c in self.check(chosen)
            if c.lost or c.recorded != HEAD_VERSION or c.cached != HEAD_VERSION
        ]

    # --- secrets ---------------------------------------------------------------------------

    def everything_written(self) -> str:
        """Every log, CLI output, run record and Redis value this world produced."""
        parts = [s.log() for s in self.services]
        parts += self.outputs
        parts.append(self.records_text())
        parts.append(self.redis_text())
        return "\n".join(parts)

    def records_text(self) -> str:
        async def read(engine: AsyncEngine) -> str:
            out = []
            async with engine.connect() as conn:
                for table in (datasets, dataset_databases, migration_runs, migration_run_datasets):
                    for row in await conn.execute(sa.select(table)):
                        out.append(repr(tuple(row)))
            return "\n".join(out)

        result: str = self.run(read)
        return result

    def redis_text(self) -> str:
        client = self.redis_client()
        try:
            return "\n".join(_redis_dump(client))
        finally:
            client.close()

    def leaked(self) -> list[str]:
        """Which secrets (by position, never the value) appear anywhere this world wrote."""
        text = self.everything_written()
        names = ["control-plane password", "vector server password", "Redis password"]
        return [name for name, secret in zip(names, self.secrets, strict=True) if secret in text]

    # --- teardown ---------------------------------------------------------------------------

    def close(self) -> None:
        for process in self.background:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=STOP_TIMEOUT_S)
        for service in self.services:
            service.stop()
        for server in self.servers:
            server.stop()
            server.kill()


def _redis_dump(client: redis.Redis) -> Iterable[str]:
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        yield key
        if kind == "string":
            yield str(client.get(key))
        elif kind == "list":
            yield from (str(v) for v in client.lrange(key, 0, -1))
        elif kind == "hash":
            yield from (f"{k}={v}" for k, v in client.hgetall(key).items())
        elif kind == "set":
            yield from (str(v) for v in client.smembers(key))
        elif kind == "zset":
            yield from (str(v) for v in client.zrange(key, 0, -1))


# --- per-dataset helpers -----------------------------------------------------------------------


async def _admin_execute(server: PgServer, sql: str, database: str = "postgres") -> None:
    await pg_execute(sql, **server.admin_args(database))


def pg_admin(
    server: PgServer, database: str = VECTOR_DATABASE
) -> AbstractAsyncContextManager[asyncpg.Connection]:
    """The tests' side door (unix socket, trust); the vector type as its binary wire bytes."""
    return pg_connection(**server.admin_args(database))


def _target(dataset: Dataset) -> DatasetTarget:
    return DatasetTarget(dataset.id, dataset.name, dataset.provider, dataset.url)


async def _migrate_to(dataset: Dataset, settings: Settings, version: int) -> None:
    adapter = adapter_factory(dataset.provider)(_target(dataset), settings)
    try:
        await adapter.run_migrations(RevisionGoal(PACKAGED[version - 1]))
    finally:
        await adapter.close()


async def _pg_insert(dataset: Dataset, rows: list[dict[str, Any]]) -> None:
    assert dataset.server is not None
    async with pg_admin(dataset.server) as conn:
        await conn.executemany(
            f'INSERT INTO "{dataset.schema}".{COLLECTION_NAME} (id, payload, embedding) '
            "VALUES ($1, $2, $3)",
            [(r["id"], r["payload"], pg_vector_bytes(r["vector"])) for r in rows],
        )


def ordered_id(prefix: int, index: int) -> str:
    """A dataset id that sorts by ``prefix`` then ``index``."""
    return str(uuid.UUID(f"{prefix:08x}-0000-4000-8000-{index:012x}"))


async def _register(
    engine: AsyncEngine, dataset_id: str, name: str, provider: str, url: str
) -> None:
    """What ``add_dataset`` stores, with an id of the test's choosing."""
    normalise = getattr(adapter_factory(provider), "normalise_url", None)
    url, server_key = normalise(url) if normalise else (url, "")
    await insert_raw(engine, [RawDataset(name, provider, url, dataset_id, server_key)])


def _prefix_version(present: Sequence[bool]) -> int:
    """How many steps the schema shows, when they form a prefix; -1 when they do not."""
    count = sum(present)
    return count if all(present[:count]) else -1


async def check_dataset(dataset: Dataset, cached: int) -> DatasetCheck:
    if dataset.provider == "pgvector":
        return await _check_pgvector(dataset, cached)
    return await _check_lancedb(dataset, cached)


async def _check_pgvector(dataset: Dataset, cached: int) -> DatasetCheck:
    assert dataset.server is not None
    schema = dataset.schema
    async with pg_admin(dataset.server) as conn:
        has_versions = await conn.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", f'"{schema}".{HISTORY_TABLE}'
        )
        versions = (
            sorted(
                position(r[0])
                for r in await conn.fetch(f'SELECT revision FROM "{schema}".{HISTORY_TABLE}')
            )
            if has_versions
            else []
        )
        has_chunks = await conn.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", f'"{schema}".{COLLECTION_NAME}'
        )
        columns = {
            r[0]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = $1 AND table_name = $2",
                schema,
                COLLECTION_NAME,
            )
        }
        has_index = await conn.fetchval(
            "SELECT count(*) = 1 FROM pg_indexes WHERE schemaname = $1 AND indexname = $2",
            schema,
            HNSW_INDEX,
        )
        found = (
            {
                r["id"]: (r["payload"], r["embedding"])
                for r in await conn.fetch(
                    f'SELECT id, payload, embedding FROM "{schema}".{COLLECTION_NAME}'
                )
            }
            if has_chunks
            else {}
        )
        deleted = (
            await conn.fetchval(
                f'SELECT count(*) FROM "{schema}".{COLLECTION_NAME} WHERE is_deleted'
            )
            if "is_deleted" in columns
            else 0
        )
    actual = _prefix_version(
        [bool(has_chunks), {"created_at", "is_deleted"} <= columns, bool(has_index)]
    )
    recorded = (
        versions[-1]
        if versions and versions == list(range(1, len(versions) + 1))
        else (-1 if versions else 0)
    )
    return DatasetCheck(dataset, found == dataset.rows and deleted == 0, recorded, actual, cached)


async def _check_lancedb(dataset: Dataset, cached: int) -> DatasetCheck:
    try:
        tables = await lance_tables(dataset.url)
        found = await lance_read(dataset.url)
    except Exception:  # a table missing: nothing to compare, the dataset is not intact
        return DatasetCheck(dataset, False, -1, -1, cached)
    names = set(tables["schema"].names)
    versions = sorted(position(v) for v in tables["versions"])
    actual = _prefix_version(
        [True, {"created_at", "is_deleted"} <= names, ("BTree", ("id",)) in tables["indices"]]
    )
    recorded = versions[-1] if versions and versions == list(range(1, len(versions) + 1)) else -1
    rows = {k: v[:2] for k, v in found.items()}
    not_deleted = all(not v[2].get("is_deleted", False) for v in found.values())
    return DatasetCheck(dataset, rows == dataset.rows and not_deleted, recorded, actual, cached)
