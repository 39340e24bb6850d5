"""A long operation's progress is in the run record while it runs (sampled from the
control plane during a real HNSW build and a backfill), in ``migrator status`` and in the
in-process progress callback; it never carries a secret."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from migrator.cli import main
from migrator.cli.output import Progress, print_summary
from migrator.db import control_plane
from migrator.models import migration_run_datasets
from migrator.relational import upgrade_to_head
from migrator.runs import store
from migrator.runs.inprocess import run_startup_migrations
from migrator.runs.progress_relay import ProgressRelay
from migrator.settings import Settings
from migrator.states import DatasetStatus
from migrator.vector.pgvector_adapter import schema_for
from migrator.vector.revisions.pg_watch import progress_of
from migrator.vector.revisions.resources import OperationProgress
from tests.heavy_ops.support import INDEX, fill, hnsw, index_folder, migrate
from tests.vector.helpers import insert_raw_dataset, target

UrlFactory = Callable[[], str]
PASSWORD = "s3cret-progress-pw"


async def _sample_running(settings: Settings, seen: list[dict[str, Any]], lines: list[str]) -> None:
    """Read the run record while the run goes on: each running row's progress, and the
    status text of the run as ``migrator status RUN_ID`` prints it."""
    async with control_plane(settings) as engine:
        while True:
            async with engine.connect() as conn:
                found = (
                    await conn.execute(
                        sa.select(migration_run_datasets).where(
                            migration_run_datasets.c.status == DatasetStatus.RUNNING,
                            migration_run_datasets.c.progress.is_not(None),
                        )
                    )
                ).all()
            for row in found:
                seen.append(dict(row.progress))
                out = io.StringIO()
                print_summary(await store.get_run(engine, row.run_id), out)
                lines.append(out.getvalue())
            await asyncio.sleep(0.1)


def test_index_build_progress_is_recorded_while_it_runs(
    make_settings: Callable[..., Settings],
    pgvector_db: UrlFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = index_folder(tmp_path / "revs", hnsw(concurrently=True, maintenance_work_mem="1MB"))
    settings = make_settings(
        VECTOR_MIGRATIONS=folder, PROGRESS_INTERVAL_S="0.3", VECTOR_DB_PASSWORD=PASSWORD
    )
    url = pgvector_db()
    heard: list[tuple[str, OperationProgress]] = []

    async def scenario() -> tuple[str, str, list[dict[str, Any]], list[str]]:
        await upgrade_to_head(settings)
        dataset_id = await insert_raw_dataset(settings, "big-index", "pgvector", url)
        t = target(url, dataset_id)
        await migrate(t, settings, "0001_items")
        await fill(url, schema_for(dataset_id, {}), 2500)
        seen: list[dict[str, Any]] = []
        lines: list[str] = []
        sampler = asyncio.create_task(_sample_running(settings, seen, lines))
        try:
            summary = await run_startup_migrations(
                settings=settings, on_operation=lambda d, p: heard.append((d, p))
            )
        finally:
            sampler.cancel()
        assert summary.counts.get(DatasetStatus.SUCCEEDED) == 1, summary
        return summary.run_id, dataset_id, seen, lines

    run_id, dataset_id, seen, lines = asyncio.run(scenario())
    # Sampled from the control plane while the build ran: the build's phase and blocks.
    building = [p for p in seen if p["operation"] == f"create_index hnsw {INDEX}"]
    assert building, seen
    assert all(p["updated_at"] and p["unit"] in ("blocks", "tuples") for p in building)
    assert any("building index" in (p["phase"] or "") for p in building), building
    assert any(p["total"] and p["done"] > 0 for p in building), building
    shown_line = f"running: big-index ({dataset_id}): create_index hnsw {INDEX} "
    assert any(shown_line in text for text in lines), lines
    # The in-process listener heard the same operation, at least as often as it was written.
    assert {p.operation for _, p in heard} >= {f"create_index hnsw {INDEX}"}
    assert len(heard) >= len({p["updated_at"] for p in building})

    # After the run, `migrator status RUN_ID --json` keeps where the operation got.
    capsys.readouterr()
    assert main(["status", run_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    (row,) = shown["datasets"]
    assert row["progress"]["operation"] == f"create_index hnsw {INDEX}"
    assert PASSWORD not in json.dumps(seen) + "".join(lines) + json.dumps(shown)


def test_backfill_progress_counts_rows_of_the_estimate(
    make_settings: Callable[..., Settings], pgvector_db: UrlFactory, tmp_path: Path
) -> None:
    folder = index_folder(
        tmp_path / "revs",
        'op.add_column("items", "norm", "float64")\n'
        'op.backfill("items", "norm", norms, columns=["embedding"], batch_size=200)',
        "def norms(batch):\n"
        "    return [sum(x * x for x in v) for v in batch.column('embedding').to_pylist()]\n",
    )
    settings = make_settings(VECTOR_MIGRATIONS=folder)
    url = pgvector_db()
    t = target(url)
    heard: list[OperationProgress] = []

    async def scenario() -> None:
        await migrate(t, settings, "0001_items")
        await fill(url, schema_for(t.dataset_id, {}), 1000)
        await migrate(t, settings, on_progress=heard.append)

    asyncio.run(scenario())
    assert [p.done for p in heard] == [200, 400, 600, 800, 1000]
    assert {(p.operation, p.unit, p.total, p.phase) for p in heard} == {
        ("backfill items.norm", "rows", 1000, None)
    }


def test_the_progress_bar_shows_a_dataset_operation() -> None:
    out = io.StringIO()
    bar = Progress("run r", stream=out, min_interval_s=60)
    progress = OperationProgress(
        "create_index hnsw ix", "building index: loading tuples", 43, 100, "blocks"
    )
    bar.operation("ds-7", progress.to_dict())
    bar.operation("ds-7", progress.to_dict())  # within the interval: not repeated
    assert out.getvalue() == (
        "run r: ds-7: create_index hnsw ix 43% of 100 blocks (building index: loading tuples)\n"
    )


def test_the_relay_writes_nothing_for_a_quick_dataset_and_throttles_a_long_one() -> None:
    written: list[int] = []
    heard: list[int] = []

    async def write(progress: dict[str, Any]) -> None:
        written.append(progress["done"])

    def step(done: int) -> OperationProgress:
        return OperationProgress("backfill t.c", None, done, 10, "rows")

    async def quick() -> None:
        relay = ProgressRelay("d", write, 0.2, lambda _d, p: heard.append(p.done))
        relay.report(step(1))
        await relay.close()

    async def long() -> None:
        relay = ProgressRelay("d", write, 0.2)
        relay.report(step(1))  # within the first interval: not written
        await asyncio.sleep(0.25)
        relay.report(step(2))  # due: written
        await asyncio.sleep(0.05)
        relay.report(step(3))  # within the interval of the last write: kept, not written
        await relay.close()  # the latest, so the record ends where the operation got

    asyncio.run(quick())
    assert (written, heard) == ([], [1])
    asyncio.run(long())
    assert written == [2, 3]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        # HNSW after a backfill: half the heap dead, scanned far ahead of the graph.
        ({"blocks_done": 218680, "blocks_total": 400000, "tuples_done": 93404}, (93404, 1000000)),
        ({"blocks_done": 5, "blocks_total": 10, "tuples_done": 0}, (5, 10)),
        ({"tuples_total": 50, "tuples_done": 20, "blocks_total": 0}, (20, 50)),
        ({"tuples_done": 7, "reltuples": -1}, (7, None)),
    ],
)
def test_an_index_build_sample_reads_as_the_most_truthful_fraction(
    row: dict[str, Any], expected: tuple[int, int | None]
) -> None:
    full = {"phase": "building index: loading tuples", "blocks_done": 0, "blocks_total": 0}
    full |= {"tuples_done": 0, "tuples_total": 0, "reltuples": 1_000_000.0, **row}
    progress = progress_of("create_index hnsw ix", full)  # type: ignore[arg-type]
    assert (progress.done, progress.total) == expected
