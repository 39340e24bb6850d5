"""A fleet where 1 dataset in 10 is heavy: Celery against the in-process run, side by side.

    python -m bench.heavy --datasets 40 [--rows 5000] [--record]

Every dataset is a real pgvector schema on one PostgreSQL 18 + pgvector server (the embedded
wheel, as bench.run's real workload). The chain is three revisions of its own:

  0001_items      a collection (id, 64-dim vector), no index
  0002_slow_hnsw  an HNSW build, declared heavy=True, budget_s=600 (pgvector)
  0003_tag        a light column

Heavy datasets are cached at 0001 with ``--rows`` random vectors (they build the index for
real); the rest at 0002 over an empty table (only the column is pending). The world is rebuilt
before each mode. DATASET_TIMEOUT_S is 1 s, so no heavy build fits the default limit: each
finishes only under its budget. HEAVY_PER_SERVER_CONCURRENCY=1: one build at a time on the one
server, in both modes.

Modes:
  inprocess  `run_startup_migrations()`, MIGRATION_CONCURRENCY=8
  celery     `migrator enqueue --wait`: a worker `-c 4` on the default queue and a heavy worker
             `-c 1` (HEAVY_CONCURRENCY) on HEAVY_QUEUE, both warm

Per mode: wall time (Celery: from starting `migrator enqueue` to its exit, cold workers), the
run's own duration as recorded, when the last light dataset and the last heavy one finished
(seconds from the run's start, from the run record), and the builds seen at once on the server
(sampled from pg_stat_progress_create_index). Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import redis
import sqlalchemy as sa

from bench import provision
from bench.run import (
    ADMIN_DSN,
    CONTROL_DB,
    PG_PREFIX,
    REDIS_URL,
    RESULTS_MD,
    ROOT,
    VECTOR_DB,
    enqueue_and_wait,
    machine,
    pgvector_server,
)
from migrator.datasets import add_dataset
from migrator.db import control_plane
from migrator.models import migration_run_datasets, migration_runs
from migrator.relational import upgrade_to_head
from migrator.runs.inprocess import run_startup_migrations
from migrator.settings import Settings, get_settings
from migrator.vector.pgvector_adapter import schema_for
from tests.support.processes import worker_command

DIMENSION = 64
HEAVY_EVERY = 10
BUDGET_S = 600
LIGHT_CONCURRENCY = 4
HEAVY_QUEUE = "migrator.heavy"
MODES = ("inprocess", "celery")

_REVISIONS = {
    "0001_items": '''"""Items."""
revision = "0001_items"
down_revision = None


def upgrade(op):
    op.create_collection("items", {"id": "string"}, vector={"embedding": op.vector_dimension})
''',
    "0002_slow_hnsw": f'''"""A slow HNSW build."""
providers = ("pgvector",)
revision = "0002_slow_hnsw"
down_revision = "0001_items"


def upgrade(op):
    op.create_index("items", "embedding", kind="hnsw", name="items_hnsw", metric="l2",
                    m=16, ef_construction=128, heavy=True, budget_s={BUDGET_S})
''',
    "0003_tag": '''"""A light column."""
revision = "0003_tag"
down_revision = "0002_slow_hnsw"


def upgrade(op):
    op.add_column("items", "tag", "string")
''',
}


@dataclass
class HeavyResult:
    mode: str
    datasets: int
    heavy: int
    rows: int
    wall_s: float
    run_s: float
    status: str
    succeeded: int
    last_light_s: float
    last_heavy_s: float
    most_builds_at_once: int


def chain_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="bench-heavy-chain-"))
    for name, text in _REVISIONS.items():
        (folder / f"{name}.py").write_text(text)
    return folder


def environment(folder: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": f"{PG_PREFIX}/{CONTROL_DB}",
        "REDIS_URL": REDIS_URL,
        "LOG_LEVEL": "WARNING",
        "VECTOR_DIMENSION": str(DIMENSION),
        "VECTOR_MIGRATIONS": str(folder),
        "MIGRATION_CONCURRENCY": "8",
        "DATASET_TIMEOUT_S": "1",
        "HEAVY_PER_SERVER_CONCURRENCY": "1",
        "HEAVY_QUEUE": HEAVY_QUEUE,
        # The heavy subtask's hard limit (from the 600 s budget) must fit Redis's redelivery.
        "REDIS_VISIBILITY_TIMEOUT_S": "7200",
    }


def settings_for(env: dict[str, str]) -> Settings:
    os.environ.update(env)
    get_settings.cache_clear()
    return get_settings()


async def build_world(
    env: dict[str, str], socket_dir: str, count: int, rows: int
) -> tuple[list[str], list[str]]:
    """A fresh fleet: every ``HEAVY_EVERY``-th dataset heavy (cached at 0001, with rows), the
    others light (cached at 0002); returns (light ids, heavy ids)."""
    vector_dsn = f"postgresql://postgres@/{VECTOR_DB}?host={socket_dir}"
    await provision.recreate_database(ADMIN_DSN, CONTROL_DB)
    await provision.drop_dataset_schemas(vector_dsn)
    redis.Redis.from_url(REDIS_URL).flushdb()
    settings = settings_for(env)
    await upgrade_to_head(settings)
    url = f"postgresql:///{VECTOR_DB}?host={socket_dir}"
    async with control_plane(settings) as engine:
        ids = [
            (await add_dataset(engine, settings, name=f"d{n}", provider="pgvector", url=url)).id
            for n in range(count)
        ]
    heavy = ids[::HEAVY_EVERY]
    light = [d for d in ids if d not in heavy]
    await run_startup_migrations(settings=settings, to_revision="0001_items")
    await run_startup_migrations(settings=settings, to_revision="0002_slow_hnsw", dataset_ids=light)
    conn = await asyncpg.connect(vector_dsn)
    try:
        for dataset_id in heavy:
            await conn.execute(
                f'INSERT INTO "{schema_for(dataset_id, {})}".items (id, embedding) '
                f"SELECT i::text, ARRAY(SELECT random() + 0 * i "
                f"FROM generate_series(1, {DIMENSION}))::real[] FROM generate_series(1, {rows}) i"
            )
    finally:
        await conn.close()
    return light, heavy


class BuildSampler:
    """Index builds in progress on the server, sampled every 50 ms on a thread of its own."""

    def __init__(self, socket_dir: str) -> None:
        self.socket_dir = socket_dir
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._sample()))

    async def _sample(self) -> None:
        conn = await asyncpg.connect(host=self.socket_dir, database="postgres", user="postgres")
        try:
            while not self._stop.is_set():
                found = await conn.fetchval("SELECT count(*) FROM pg_stat_progress_create_index")
                self.most = max(self.most, int(found))
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    def __enter__(self) -> BuildSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


async def finish_times(
    settings: Settings, light: list[str], heavy: list[str]
) -> tuple[float, float]:
    """Seconds from the latest run's start to its last light and last heavy dataset's finish."""
    async with control_plane(settings) as engine, engine.connect() as conn:
        run = (
            await conn.execute(
                sa.select(migration_runs.c.id, migration_runs.c.started_at)
                .order_by(migration_runs.c.started_at.desc())
                .limit(1)
            )
        ).one()
        rows = await conn.execute(
            sa.select(
                migration_run_datasets.c.dataset_id, migration_run_datasets.c.finished_at
            ).where(migration_run_datasets.c.run_id == run.id)
        )
        finished = {r.dataset_id: r.finished_at for r in rows}

    def last(ids: list[str]) -> float:
        ends = [finished[d] for d in ids if finished.get(d) is not None]
        return max((e - run.started_at).total_seconds() for e in ends) if ends else float("nan")

    return last(light), last(heavy)


@contextmanager
def workers(env: dict[str, str]) -> Iterator[None]:
    """A light worker on the default queue and a heavy one on HEAVY_QUEUE, started and warm."""
    light = worker_command(concurrency=LIGHT_CONCURRENCY, loglevel="WARNING", hostname="light@%h")
    heavy = worker_command(
        concurrency=1, loglevel="WARNING", hostname="heavy@%h", queues=(HEAVY_QUEUE,)
    )
    started = [
        subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env}) for command in (light, heavy)
    ]
    try:
        _wait_for(env, ["light", "heavy"])
        yield
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for(env: dict[str, str], names: list[str]) -> None:
    from worker import create_app

    app = create_app(settings_for(env))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        answered = {next(iter(r)).split("@")[0] for r in app.control.ping(timeout=1.0) or []}
        if set(names) <= answered:
            return
    raise RuntimeError(f"workers {names} did not answer a ping within 90 s")


def run_mode(mode: str, env: dict[str, str], socket_dir: str, count: int, rows: int) -> HeavyResult:
    light, heavy = asyncio.run(build_world(env, socket_dir, count, rows))
    settings = settings_for(env)
    with BuildSampler(socket_dir) as sampler:
        started = time.perf_counter()
        if mode == "inprocess":
            summary = asyncio.run(run_startup_migrations(settings=settings, trigger="deploy"))
            status, succeeded = str(summary.status), summary.counts.get("succeeded", 0)
            run_s = summary.duration_s
        else:
            outcome = enqueue_and_wait(env)
            status, succeeded = outcome["status"], outcome["succeeded"]
            run_s = float(outcome.get("run_duration_s") or float("nan"))
        wall_s = time.perf_counter() - started
    last_light_s, last_heavy_s = asyncio.run(finish_times(settings, light, heavy))
    result = HeavyResult(
        mode,
        count,
        len(heavy),
        rows,
        wall_s,
        run_s,
        status,
        succeeded,
        last_light_s,
        last_heavy_s,
        sampler.most,
    )
    print(
        f"  heavy-fleet n={count} ({len(heavy)} heavy) {mode:9} {wall_s:7.2f}s (run {run_s:.2f}s)"
        f"  light done "
        f"{last_light_s:.2f}s  heavy done {last_heavy_s:.2f}s  builds at once "
        f"{sampler.most}  {status}",
        flush=True,
    )
    return result


def table(results: list[HeavyResult]) -> str:
    lines = [
        "| workload | N (heavy) | rows per heavy | mode | wall s | run s (record) | "
        "last light done s | last heavy done s | builds at once (max) | vs in-process | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    inprocess = next((r for r in results if r.mode == "inprocess"), None)
    for r in results:
        ratio = f"{r.wall_s / inprocess.wall_s:.2f}x its time" if inprocess else "-"
        lines.append(
            f"| heavy-fleet | {r.datasets} ({r.heavy}) | {r.rows} | {r.mode} | {r.wall_s:.2f} | "
            f"{r.run_s:.2f} | {r.last_light_s:.2f} | {r.last_heavy_s:.2f} | "
            f"{r.most_builds_at_once} | {ratio} | {r.status} ({r.succeeded} ok) |"
        )
    return "\n".join(lines)


def record(results: list[HeavyResult], command: str, load: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = (
        f"\n### {stamp}\n\nmachine: {machine()}; {load}\n\ncommand: `{command}`\n\n"
        f"{table(results)}\n"
    )
    RESULTS_MD.write_text(RESULTS_MD.read_text().rstrip() + "\n" + block)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average at the start {one:.2f} / {five:.2f} / {fifteen:.2f} (shared machine)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.heavy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--datasets", type=int, default=40, help="fleet size (1 in 10 heavy)")
    parser.add_argument("--rows", type=int, default=5000, help="rows of each heavy dataset")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--record", action="store_true", help="append figures to RESULTS.md")
    args = parser.parse_args(argv)
    load = load_average()
    results: list[HeavyResult] = []
    with pgvector_server() as socket_dir:
        env = environment(chain_folder())
        for mode in args.modes:
            if mode == "celery":
                with workers(env):
                    results.append(run_mode(mode, env, socket_dir, args.datasets, args.rows))
            else:
                results.append(run_mode(mode, env, socket_dir, args.datasets, args.rows))
    asyncio.run(provision.drop_database(ADMIN_DSN, CONTROL_DB))
    print()
    print(table(results))
    if args.record:
        record(results, "python -m bench.heavy " + " ".join(argv or sys.argv[1:]), load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
