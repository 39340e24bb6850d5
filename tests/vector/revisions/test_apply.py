"""A six-revision user folder using every operation, on LanceDB and on pgvector: applied from
empty and from each intermediate revision, rows surviving byte for byte; the last two
downgraded and applied again; the history recorded in the dataset database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from migrator.vector.revisions import load_chain
from tests.vector.revisions.support import Dataset, open_dataset
from tests.vector.revisions.user_folder import IDS, first_rows, head_rows, make_folder

PROVIDERS = ["lancedb", "pgvector"]


@pytest.fixture
def dataset_url(lance_url: Callable[[], str], pgvector_db: Callable[[], str]) -> Any:
    def make(provider: str) -> str:
        return lance_url() if provider == "lancedb" else pgvector_db()

    return make


async def shape(dataset: Dataset) -> Any:
    """Column names and index names of every application collection."""
    from migrator.vector.revisions import lance_store, pg_store
    from tests.vector.revisions.support import SCHEMA

    if dataset.provider == "lancedb":
        snap = await lance_store.snapshot(dataset.handle)
    else:
        snap = await pg_store.snapshot(dataset.handle, SCHEMA)
    return {
        name: (sorted(info.columns), sorted(info.indexes))
        for name, info in snap.collections.items()
    }


async def history(dataset: Dataset) -> list[str]:
    if dataset.provider == "lancedb":
        table = await (await dataset.handle.open_table("migrator_revisions")).query().to_arrow()
        return sorted(table.column("revision").to_pylist())
    rows = await dataset.handle.fetch("SELECT revision FROM app_revisions.migrator_revisions")
    return sorted(r["revision"] for r in rows)


@pytest.mark.slow
@pytest.mark.parametrize("provider", PROVIDERS)
def test_from_every_starting_revision_rows_survive(
    provider: str, tmp_path: Path, dataset_url: Any
) -> None:
    chain = load_chain(make_folder(tmp_path / "revisions"))
    assert chain.ids() == IDS
    rows = first_rows()
    urls = [dataset_url(provider) for _ in IDS]
    empty_url = dataset_url(provider)

    async def scenario() -> None:
        async with open_dataset(provider, empty_url) as dataset:
            applied = await dataset.upgrade(chain)
            assert applied.before is None and applied.after == IDS[-1]
            assert applied.applied == tuple(IDS)
            reference = await shape(dataset)
            assert await dataset.rows("docs") == {}
        assert sorted(reference) == ["docs"]
        for start, url in zip(IDS, urls, strict=True):
            async with open_dataset(provider, url) as dataset:
                await dataset.upgrade(chain, IDS[0])
                await dataset.insert("docs", rows)
                await dataset.upgrade(chain, start)
                applied = await dataset.upgrade(chain)
                assert applied.before == start and applied.after == IDS[-1], start
                assert applied.applied == tuple(IDS[IDS.index(start) + 1 :])
                assert await dataset.rows("docs") == head_rows(rows), start
                assert await shape(dataset) == reference, start
                assert await history(dataset) == IDS
                again = await dataset.upgrade(chain)
                assert again.applied == () and again.after == IDS[-1]

    asyncio.run(scenario())


@pytest.mark.slow
@pytest.mark.parametrize("provider", PROVIDERS)
def test_downgrade_the_last_two_and_up_again(
    provider: str, tmp_path: Path, dataset_url: Any
) -> None:
    chain = load_chain(make_folder(tmp_path / "revisions"))
    rows = first_rows()
    url = dataset_url(provider)

    async def scenario() -> None:
        async with open_dataset(provider, url) as dataset:
            await dataset.upgrade(chain, IDS[0])
            await dataset.insert("docs", rows)
            await dataset.upgrade(chain)
            at_head = await shape(dataset)
            down = await dataset.downgrade(chain, IDS[-3])
            assert down.applied == (IDS[-1], IDS[-2]) and down.after == IDS[-3]
            lowered = await shape(dataset)
            assert "source" not in lowered["docs"][0] and "docs_ann" not in lowered["docs"][1]
            assert await history(dataset) == IDS[:-2]
            expected = head_rows(rows)
            for row in expected.values():
                del row["source"]
            assert await dataset.rows("docs") == expected
            up = await dataset.upgrade(chain)
            assert up.applied == (IDS[-2], IDS[-1])
            assert await shape(dataset) == at_head
            assert await dataset.rows("docs") == head_rows(rows)
            base = await dataset.downgrade(chain, None)
            assert base.after is None and await shape(dataset) == {}
            assert await history(dataset) == []

    asyncio.run(scenario())
