"""A 200,000-row backfill SIGKILLed half-way in a child process resumes from the checkpoint
its dataset database holds: at most one commit unit is computed twice (a batch on pgvector, a
fragment on LanceDB), and the result equals an uninterrupted run's."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import lancedb
import numpy as np
import pyarrow as pa
import pytest

from migrator.vector.revisions import load_chain
from tests.support.environment import PROJECT_ROOT
from tests.vector.helpers import pg_connect_args
from tests.vector.revisions.support import SCHEMA, open_dataset, revision_file, write_folder

ROWS = 200_000
FRAGMENT_ROWS = 10_000
# The commit unit: a batch on pgvector; on LanceDB a fragment, so one batch per fragment.
BATCH_ROWS = {"pgvector": 2_000, "lancedb": FRAGMENT_ROWS}
KILL_AFTER_BATCHES = {"pgvector": 50, "lancedb": 10}  # about half-way


def folder_files(batch_size: int) -> dict[str, str]:
    return {
        "0001_big.py": revision_file(
            "0001_big",
            None,
            'op.create_collection("big", {"id": "string", "text": "string"}, '
            'vector={"embedding": 8})',
        ),
        "0002_digest.py": revision_file(
            "0002_digest",
            "0001_big",
            f"""
            op.add_column("big", "digest", "int64")
            op.backfill("big", "digest", digest, columns=["text"], batch_size={batch_size})
            """,
        )
        + '''

def digest(batch):
    """A deterministic value per row; logs each batch (its first text and size), then naps."""
    import hashlib
    import os
    import time

    texts = batch.column("text").to_pylist()
    with open(os.environ["BACKFILL_LOG"], "a") as log:
        log.write(f"{texts[0]}\\t{len(texts)}\\n")
    time.sleep(float(os.environ.get("BACKFILL_NAP_S", "0")))
    return [int.from_bytes(hashlib.sha1(t.encode()).digest()[:7], "big") for t in texts]
''',
    }


async def fill(provider: str, url: str, folder: Path) -> None:
    async with open_dataset(provider, url) as dataset:
        await dataset.upgrade(load_chain(folder), "0001_big")
    ids = [f"r{i:06d}" for i in range(ROWS)]
    texts = [f"text of row {i}" for i in range(ROWS)]
    if provider == "pgvector":
        conn = await asyncpg.connect(user="postgres", **pg_connect_args(url))
        try:
            await conn.copy_records_to_table(
                "big",
                schema_name=SCHEMA,
                columns=["id", "text"],
                records=zip(ids, texts, strict=True),
            )
        finally:
            await conn.close()
        return
    db = await lancedb.connect_async(url)
    try:
        table = await db.open_table("big")
        vectors = np.random.default_rng(5).standard_normal((ROWS, 8)).astype(np.float32)
        for start in range(0, ROWS, FRAGMENT_ROWS):
            end = start + FRAGMENT_ROWS
            flat = pa.array(vectors[start:end].ravel())
            await table.add(
                pa.table(
                    {
                        "id": pa.array(ids[start:end]),
                        "text": pa.array(texts[start:end]),
                        "embedding": pa.FixedSizeListArray.from_arrays(flat, 8),
                    },
                    schema=await table.schema(),
                )
            )
    finally:
        db.close()


async def digests(provider: str, url: str) -> dict[str, int]:
    async with open_dataset(provider, url) as dataset:
        if provider == "pgvector":
            rows = await dataset.handle.fetch(f"SELECT id, digest FROM {SCHEMA}.big")
            return {r["id"]: r["digest"] for r in rows}
        table = (
            await (await dataset.handle.open_table("big"))
            .query()
            .select(["id", "digest"])
            .to_arrow()
        )
        return dict(
            zip(table.column("id").to_pylist(), table.column("digest").to_pylist(), strict=True)
        )


def batches(log: Path) -> dict[str, int]:
    lines = log.read_text().splitlines() if log.exists() else []
    return {first: int(size) for first, size in (line.split("\t") for line in lines)}


def kill_half_way(provider: str, url: str, folder: Path, log: Path) -> None:
    env = {**os.environ, "BACKFILL_LOG": str(log), "BACKFILL_NAP_S": "0.02"}
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.vector.revisions.backfill_child", provider, url, str(folder)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 180
        while len(batches(log)) < KILL_AFTER_BATCHES[provider]:
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the backfill never got half-way"
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=30)
        child.stdout.close()  # type: ignore[union-attr]
        child.stderr.close()  # type: ignore[union-attr]
    assert child.returncode == -signal.SIGKILL


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("provider", ["pgvector", "lancedb"])
def test_a_killed_backfill_resumes_from_its_checkpoint(
    provider: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    lance_url: Callable[[], str],
    pgvector_db: Callable[[], str],
) -> None:
    folder = write_folder(tmp_path / "revisions", folder_files(BATCH_ROWS[provider]))
    make = lance_url if provider == "lancedb" else pgvector_db
    killed_url, reference_url = make(), make()
    asyncio.run(fill(provider, killed_url, folder))
    asyncio.run(fill(provider, reference_url, folder))

    before_kill = tmp_path / "killed.log"
    kill_half_way(provider, killed_url, folder, before_kill)
    resumed = tmp_path / "resumed.log"
    monkeypatch.setenv("BACKFILL_LOG", str(resumed))
    asyncio.run(_upgrade(provider, killed_url, folder))
    monkeypatch.setenv("BACKFILL_LOG", str(tmp_path / "reference.log"))
    asyncio.run(_upgrade(provider, reference_url, folder))

    first, second = batches(before_kill), batches(resumed)
    redone = sum(size for text, size in second.items() if text in first)
    assert len(first) >= KILL_AFTER_BATCHES[provider] and second
    assert redone <= BATCH_ROWS[provider], (redone, len(first), len(second))
    assert sum(first.values()) + sum(second.values()) - redone == ROWS
    result = asyncio.run(digests(provider, killed_url))
    assert len(result) == ROWS and None not in result.values()
    assert result == asyncio.run(digests(provider, reference_url))


async def _upgrade(provider: str, url: str, folder: Path) -> None:
    async with open_dataset(provider, url) as dataset:
        applied = await dataset.upgrade(load_chain(folder))
        assert applied.after == "0002_digest"
