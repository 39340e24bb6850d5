"""Backfills: a rate limit spaces the batches, the op's own limit and batch size win over the
settings, and a backfill cut off by the dataset's time limit resumes after its last committed
batch instead of starting over. Real pgvector (embedded PostgreSQL 18) and LanceDB."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
import pytest

from migrator.runs.dataset import migrate_target
from migrator.settings import Settings
from migrator.states import DatasetStatus
from migrator.vector.revisions.history import CHECKPOINT_TABLE
from migrator.vector.revisions.resources import OperationProgress, RateLimiter
from tests.heavy_ops.support import DIMENSION, dataset, fill, index_folder, migrate
from tests.vector.helpers import pg_raw, target

UrlFactory = Callable[[], str]

# The backfill function logs each call: when it started, its first id and its size.
LOGGING_NORMS = """\
def norms(batch):
    import os
    import time

    ids = batch.column("id").to_pylist()
    with open(os.environ["BACKFILL_LOG"], "a") as log:
        log.write(f"{time.monotonic()}\\t{ids[0]}\\t{len(ids)}\\n")
    time.sleep(float(os.environ.get("BACKFILL_NAP_S", "0")))
    return [float(len(i)) for i in ids]
"""


def backfill_folder(root: Path, **kwargs: object) -> Path:
    extra = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    return index_folder(
        root,
        'op.add_column("items", "norm", "float64")\n'
        f'op.backfill("items", "norm", norms, columns=["id"]{extra})',
        LOGGING_NORMS,
    )


def calls(log: Path) -> list[tuple[float, str, int]]:
    lines = log.read_text().splitlines() if log.exists() else []
    return [(float(t), first, int(n)) for t, first, n in (line.split("\t") for line in lines)]


def spacing_ok(log: Path, rows_per_s: float, batch_rows: int, slack_s: float) -> None:
    """Call k starts no sooner than k - 1 batches at the limit after the second (the first
    may start at once; ``slack_s`` for reading a batch, which the wait does not cover)."""
    started = [t for t, _, _ in calls(log)]
    assert len(started) >= 4, started
    for k, at in enumerate(started[1:]):
        assert at - started[1] >= k * batch_rows / rows_per_s - slack_s, (k, started)


@pytest.mark.parametrize(
    ("env_limit", "op_limit", "effective"),
    # 0.4 s and 0.5 s a batch: far above what reading a batch takes on a loaded machine.
    [("250", None, 250.0), ("1000", 200, 200.0)],
)
def test_pgvector_backfill_keeps_to_its_rate_limit(
    make_settings: Callable[..., Settings],
    pgvector_db: UrlFactory,
    tmp_path: Path,
    env_limit: str,
    op_limit: int | None,
    effective: float,
) -> None:
    log = tmp_path / "calls.log"
    kwargs: dict[str, object] = {"rate_limit_rows_s": op_limit} if op_limit else {}
    folder = backfill_folder(tmp_path / "revs", batch_size=100, **kwargs)
    settings = make_settings(
        VECTOR_MIGRATIONS=folder, BACKFILL_RATE_LIMIT_ROWS_S=env_limit, BACKFILL_LOG=log
    )
    url = pgvector_db()
    t, schema = dataset(url)

    async def scenario() -> None:
        await migrate(t, settings, "0001_items")
        await fill(url, schema, 400)
        await migrate(t, settings)

    asyncio.run(scenario())
    assert [n for _, _, n in calls(log)] == [100] * 4
    spacing_ok(log, effective, 100, slack_s=0.15)


def test_pgvector_backfill_cut_off_by_the_time_limit_resumes_after_its_last_batch(
    make_settings: Callable[..., Settings], pgvector_db: UrlFactory, tmp_path: Path
) -> None:
    rows, batch = 2000, 50
    log = tmp_path / "calls.log"
    folder = backfill_folder(tmp_path / "revs", batch_size=batch)
    cut = make_settings(
        VECTOR_MIGRATIONS=folder, BACKFILL_LOG=log, BACKFILL_NAP_S="0.05", DATASET_TIMEOUT_S="1"
    )
    url = pgvector_db()
    t, schema = dataset(url)
    asyncio.run(migrate(t, cut, "0001_items"))
    asyncio.run(fill(url, schema, rows))

    outcome = asyncio.run(migrate_target(t, cut))
    assert outcome.status == DatasetStatus.TIMED_OUT, outcome

    async def checkpoint() -> tuple[str, int]:
        async with pg_raw(url) as conn:
            row = await conn.fetchrow(
                f'SELECT position, rows_done FROM "{schema}".{CHECKPOINT_TABLE} '
                "WHERE revision = '0002_index'"
            )
            assert row is not None, "the cut-off backfill saved no checkpoint"
            return row["position"], row["rows_done"]

    position, done = asyncio.run(checkpoint())
    first_run = calls(log)
    assert 0 < done < rows and done % batch == 0
    assert position == f"{done:08d}"  # the last row of the last committed batch
    # The batch in flight when the limit struck was computed, not committed.
    assert len(first_run) in (done // batch, done // batch + 1)

    log.unlink()
    heard: list[OperationProgress] = []
    settings = make_settings(BACKFILL_NAP_S="0", DATASET_TIMEOUT_S="300")
    assert asyncio.run(migrate(t, settings, on_progress=heard.append)).applied == ("0002_index",)
    second_run = calls(log)
    assert second_run[0][1] == f"{done + 1:08d}"  # after the checkpoint, not from the start
    assert sum(n for _, _, n in second_run) == rows - done
    assert heard[0].done == done + batch and heard[-1].done == rows  # counts carry over

    async def filled() -> tuple[int, int]:
        async with pg_raw(url) as conn:
            nulls = await conn.fetchval(f'SELECT count(*) FROM "{schema}".items WHERE norm IS NULL')
            left = await conn.fetchval(f'SELECT count(*) FROM "{schema}".{CHECKPOINT_TABLE}')
            return nulls, left

    assert asyncio.run(filled()) == (0, 0)


def test_lancedb_backfill_batch_rows_rate_limit_and_progress(
    make_settings: Callable[..., Settings], lance_url: Callable[[], str], tmp_path: Path
) -> None:
    log = tmp_path / "calls.log"
    folder = backfill_folder(tmp_path / "revs")  # batch size and limit from the settings
    settings = make_settings(
        VECTOR_MIGRATIONS=folder,
        BACKFILL_BATCH_ROWS="100",
        BACKFILL_RATE_LIMIT_ROWS_S="2000",
        BACKFILL_LOG=log,
    )
    url = lance_url()
    t = target(url)
    heard: list[OperationProgress] = []

    async def scenario() -> None:
        await migrate(t, settings, "0001_items")
        db = await lancedb.connect_async(url)
        try:
            table = await db.open_table("items")
            vectors = np.random.default_rng(3).random((600, DIMENSION), dtype=np.float32)
            for start in (0, 300):  # two fragments of 300 rows
                flat = pa.array(vectors[start : start + 300].ravel())
                await table.add(
                    pa.table(
                        {
                            "id": [f"{i:08d}" for i in range(start, start + 300)],
                            "embedding": pa.FixedSizeListArray.from_arrays(flat, DIMENSION),
                        },
                        schema=await table.schema(),
                    )
                )
        finally:
            db.close()
        await migrate(t, settings, on_progress=heard.append)

    asyncio.run(scenario())
    assert [n for _, _, n in calls(log)] == [100] * 6
    spacing_ok(log, 2000, 100, slack_s=0.04)  # batches of a fragment follow in one thread
    assert [(p.done, p.total, p.unit) for p in heard] == [(300, 600, "rows"), (600, 600, "rows")]


def test_a_slow_stretch_is_not_made_up_by_a_burst() -> None:
    limiter = RateLimiter(1000)  # 100 rows: 0.1 s
    assert 0.05 < limiter.delay_s(100) <= 0.1
    time.sleep(0.35)  # the function was slow for a while: three batches' worth
    assert limiter.delay_s(100) == 0.0  # late already: go on
    assert 0.05 < limiter.delay_s(100) <= 0.1  # but no catching up: the next waits again
    assert RateLimiter(0).delay_s(10**9) == 0.0
