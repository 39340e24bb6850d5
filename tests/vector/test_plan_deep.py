"""``migrator plan --deep``: each planned dataset opened read only, on real LanceDB folders and
the embedded PostgreSQL 18 with pgvector; rows from the stores' metadata, the revision each
store records against the cached one, and a store that cannot be read shown with its error."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import lancedb
import pyarrow as pa
import pytest

from migrator.cli import main
from migrator.datasets import add_dataset
from migrator.db import control_plane
from migrator.relational import upgrade_to_head
from migrator.settings import Settings
from migrator.vector.pgvector_adapter import parse_url, schema_for
from migrator.vector.registry import register_adapter, unregister_adapter
from tests.support.broken_adapter import PROVIDER, BrokenAdapter
from tests.support.revisions import HEAD, LANG, PACKAGED, app_folder
from tests.support.rows import all_run_rows, runs, set_cached_version

UrlFactory = Callable[[], str]
SECRET = "deep-plan-s3cret-pw"


@pytest.fixture
def broken_provider() -> Any:
    register_adapter(PROVIDER, BrokenAdapter)
    yield
    unregister_adapter(PROVIDER)


def _plan_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["plan", "--json", *argv]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


async def _add(settings: Settings, name: str, provider: str, url: str | None = None) -> str:
    async with control_plane(settings) as engine:
        return (await add_dataset(engine, settings, name=name, provider=provider, url=url)).id


async def _lance_rows(folder: str, count: int) -> None:
    db = await lancedb.connect_async(folder)
    try:
        table = await db.open_table("chunks")
        rows = [
            {"id": str(n), "payload": "p", "vector": [0.5] * 8, "is_deleted": False}
            for n in range(count)
        ]
        await table.add(pa.Table.from_pylist(rows, schema=await table.schema()))
    finally:
        db.close()


async def _pg_rows(url: str, dataset_id: str, analysed: int, unanalysed: int) -> None:
    """``analysed`` rows in chunks, then ANALYZE; ``unanalysed`` in a table never analysed,
    whose counts reach pg_stat when the session flushes (forced, so no waiting on a timer)."""
    address = parse_url(url)
    schema = schema_for(dataset_id, {})
    conn = await asyncpg.connect(host=address.host, database=address.database, user="postgres")
    try:
        await conn.execute(
            f"INSERT INTO {schema}.chunks (id, payload, embedding) SELECT g::text, 'p', "
            f"array_fill(0.5, ARRAY[8])::vector FROM generate_series(1, {analysed}) g"
        )
        await conn.execute(f"ANALYZE {schema}.chunks")
        await conn.execute(f"CREATE TABLE {schema}.notes (body text)")
        await conn.execute("SELECT pg_stat_force_next_flush()")
        await conn.execute(
            f"INSERT INTO {schema}.notes SELECT 'n' FROM generate_series(1, {unanalysed})"
        )
    finally:
        await conn.close()


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_deep_plan_reads_each_store_read_only_and_reports_what_it_cannot_read(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    pgvector_db: UrlFactory,
    broken_provider: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(
        VECTOR_MIGRATIONS=str(app_folder(tmp_path)),
        VECTOR_DB_PASSWORD=SECRET,
        LOG_LEVEL="WARNING",
    )
    asyncio.run(upgrade_to_head(settings))
    lance = tmp_path / "lance"
    pg_url = pgvector_db()
    ids = {
        name: asyncio.run(_add(settings, name, provider, url))
        for name, provider, url in [
            ("full", "lancedb", str(lance / "full")),
            ("drifted", "lancedb", str(lance / "drifted")),
            ("fresh", "lancedb", str(lance / "fresh")),
            ("corrupt", "lancedb", str(lance / "corrupt")),
            ("pg", "pgvector", pg_url),
            ("down", "pgvector", "postgresql://127.0.0.1:1/nothing"),
            ("third-party", PROVIDER, BrokenAdapter.url(tmp_path / "third-party")),
        ]
    }
    for name in ("full", "drifted", "corrupt", "pg"):
        assert main(["run", "--no-progress", "--dataset", ids[name], "--to", HEAD]) == 0
    asyncio.run(_lance_rows(str(lance / "full"), 25))
    asyncio.run(_pg_rows(pg_url, ids["pg"], analysed=40, unanalysed=7))
    set_cached_version(settings, ids["drifted"], PACKAGED[1])  # the store is at HEAD
    for manifest in (lance / "corrupt" / "chunks.lance" / "_versions").iterdir():
        manifest.write_bytes(b"not a manifest")
    capsys.readouterr()
    rows_before, files_before = all_run_rows(settings), _tree(lance)

    plan = _plan_json(capsys, "--deep")

    deep = plan["deep"]
    stores = {entry["name"]: entry for entry in deep["datasets"]}
    assert stores["full"] | {"id": None} == {
        "id": None,
        "name": "full",
        "cached": HEAD,
        "store": HEAD,
        "drift": False,
        "rows": {"chunks": 25},
        "rows_basis": "manifest",
    }
    assert (stores["drifted"]["cached"], stores["drifted"]["store"]) == (PACKAGED[1], HEAD)
    assert stores["drifted"]["drift"] and stores["drifted"]["rows"] == {"chunks": 0}
    assert (stores["fresh"]["store"], stores["fresh"]["rows"]) == (None, {})
    assert not (lance / "fresh").exists()  # read only: not even its folder is made
    assert stores["pg"]["rows"] == {"chunks": 40, "notes": 7}
    assert (stores["pg"]["store"], stores["pg"]["rows_basis"]) == (HEAD, "estimate")
    assert stores["third-party"]["rows"] is None
    assert stores["third-party"]["rows_basis"] == "not reported"
    assert "error" not in stores["third-party"]
    assert stores["corrupt"]["error"] and stores["corrupt"]["rows"] is None
    assert "127.0.0.1:1" in stores["down"]["error"]
    assert stores["down"]["error"].startswith("VectorDatabaseUnreachableError")
    assert (deep["opened"], deep["unreadable"], deep["drifted"]) == (5, 2, 1)
    assert deep["rows_not_reported"] == 1
    assert deep["rows"] == {"chunks": 65, "notes": 7}

    # 0004 adds a column with a value: LanceDB writes it for every row of chunks, PostgreSQL
    # only changes the catalog. The unreadable LanceDB store and the third-party one cannot say.
    steps = {step["revision"]: step for step in plan["revisions"]}
    assert steps[LANG]["rows_touched"] == {
        "collections": ["chunks"],
        "rows": 25,
        "datasets_unknown": 2,
    }
    # The index revision reaches the drifted one by its cache (0 rows), the fresh one (chunks
    # created on the way), the unreachable pgvector one and the third-party one.
    assert steps[PACKAGED[2]]["rows_touched"] == {
        "collections": ["chunks"],
        "rows": 0,
        "datasets_unknown": 2,
    }
    # 0002's is_deleted has a value (LanceDB writes it per row); 0001 only creates: only
    # the third-party adapter, which applies revisions its own way, leaves it unsaid.
    assert steps[PACKAGED[1]]["rows_touched"] == {
        "collections": ["chunks"],
        "rows": 0,
        "datasets_unknown": 1,
    }
    assert steps[PACKAGED[0]]["rows_touched"] == {
        "collections": [],
        "rows": 0,
        "datasets_unknown": 1,
    }

    assert main(["plan", "--deep"]) == 0
    text = capsys.readouterr().out
    assert "stores: 5 read, 2 unreadable, 1 drifted from the cache, 1 without row counts" in text
    assert f"drifted ({ids['drifted']}): store at {HEAD} (cached {PACKAGED[1]}: DRIFT)" in text
    assert f"down ({ids['down']}): cannot read: VectorDatabaseUnreachableError" in text
    assert f"corrupt ({ids['corrupt']}): cannot read:" in text
    assert "full (" not in text  # each dataset only with --detail
    assert "rows touched: 25 in chunks (and 2 dataset(s) whose rows cannot be said)" in text
    assert SECRET not in text

    assert all_run_rows(settings) == rows_before and len(runs(settings)) == 4
    assert _tree(lance) == files_before


def test_plan_without_deep_opens_no_dataset(
    make_settings: Callable[..., Settings], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(LOG_LEVEL="WARNING")
    asyncio.run(upgrade_to_head(settings))
    asyncio.run(_add(settings, "down", "pgvector", "postgresql://127.0.0.1:1/nothing"))

    plan = _plan_json(capsys)
    assert "deep" not in plan and plan["datasets"] == 1
    assert all("rows_touched" not in step for step in plan["revisions"])

    # --deep opens it: the unreachable server is reported, the plan still completes.
    deep = _plan_json(capsys, "--deep")["deep"]
    assert deep["unreadable"] == 1 and deep["datasets"][0]["error"]
    assert main(["enqueue", "--deep"]) == 64  # --deep describes a plan
    assert main(["enqueue", "--plan", "--deep", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["deep"]["unreadable"] == 1
