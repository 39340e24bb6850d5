"""DATASET_SOURCE: datasets listed by the application's own query or function, migrated
in-process on real LanceDB folders; bad rows fail alone; added and removed between runs."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lancedb
import pytest
import sqlalchemy as sa

import migrator
from migrator.cli import main
from migrator.constants import RESULT_MAX_BYTES
from migrator.datasets import list_datasets
from migrator.errors import DatasetRemovedError, DatasetSourceError
from migrator.models import dataset_databases
from migrator.relational import upgrade_to_head
from migrator.runs.summary import DatasetOutcome, RunSummary, summary_result
from migrator.settings import Settings
from migrator.sources import sync_source
from migrator.states import DatasetStatus, RunStatus
from migrator.vector.revisions.lance_store import applied_revisions
from tests.support.environment import on_control_plane
from tests.support.revisions import HEAD
from tests.support.sources import (
    FUNCTION_SOURCE,
    count_tenants,
    tenant,
    write_rows_file,
    write_tenants,
)

UUID_ID = "3f2b8c1e-4d5a-4b6c-9e7f-0a1b2c3d4e5f"
SECRET = "s3cret-pw"
LONG_ID = "x" * 256


def _hashed(dataset_id: str) -> str:
    return "h" + hashlib.sha256(dataset_id.encode()).hexdigest()[:40]


def _tenants(settings: Settings, rows: list[dict[str, Any]]) -> None:
    on_control_plane(settings, lambda engine: write_tenants(engine, rows))


def _state(settings: Settings) -> dict[str, dict[str, Any]]:
    async def read(engine: Any) -> dict[str, dict[str, Any]]:
        async with engine.connect() as conn:
            rows = await conn.execute(sa.select(dataset_databases))
            return {r.dataset_id: dict(r._mapping) for r in rows}

    return on_control_plane(settings, read)


def _lance_revisions(folder: Path) -> list[str]:
    """The revisions the LanceDB folder itself records."""

    async def read() -> list[str]:
        return await applied_revisions(await lancedb.connect_async(str(folder)))

    return asyncio.run(read())


BAD_ROWS = [
    tenant("dup"),
    tenant("dup", name="the other dup"),
    tenant("unknown-p", provider="milvus"),
    tenant("cred", provider="pgvector", url=f"postgresql://app:{SECRET}@127.0.0.1:5432/vec"),
    tenant("far", provider="pgvector", url="postgresql://10.9.8.7:5432/vec"),
    tenant("outside", url="/var/tmp/not-under-any-root"),
    tenant("bad id!"),
    tenant(LONG_ID),
    tenant("leaky", token="abc"),
]


def test_a_query_source_migrates_its_datasets_and_fails_bad_rows_alone(
    query_control: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = query_control
    explicit = tmp_path / "lance" / "globex"
    _tenants(
        settings,
        [tenant("acme"), tenant("globex:eu-1", url=str(explicit)), tenant(UUID_ID), *BAD_ROWS],
    )
    caplog.set_level(logging.INFO, logger="migrator")

    summary = asyncio.run(migrator.run_startup_migrations(settings=settings))

    assert summary.status == "partial"  # refused rows: not all is well
    assert {d.dataset_id: d.status for d in summary.datasets} == {
        "acme": "succeeded",
        "globex:eu-1": "succeeded",
        UUID_ID: "succeeded",
    }
    refused = {e["dataset_id"]: e["error"] for e in summary.source_errors}
    assert len({e["row"] for e in summary.source_errors}) == len(BAD_ROWS)
    assert set(refused) == {
        "dup",
        "unknown-p",
        "cred",
        "far",
        "outside",
        "bad id!",
        LONG_ID[:77] + "...",
        "leaky",
    }
    assert refused["dup"] == "id occurs in 2 rows of the source"
    assert "unknown vector provider 'milvus'" in refused["unknown-p"]
    assert refused["cred"].startswith("url carries credentials")
    assert "VECTOR_DB_ALLOWED_HOSTS" in refused["far"]
    assert "is outside VECTOR_STORE_ROOTS" in refused["outside"]
    assert "letters, digits" in refused["bad id!"]
    assert "256 characters; at most 255" in refused[LONG_ID[:77] + "..."]
    assert "look secret" in refused["leaky"]
    assert SECRET not in caplog.text and SECRET not in str(summary.to_dict())
    assert re.search(
        r"dataset=unknown-p source row \d+ refused: unknown vector provider 'milvus'", caplog.text
    )
    assert "the dataset source returned 9 row(s) that were refused" in caplog.text

    # Store names: a UUID keeps the registry's folder; any other id a hash of it.
    root = Path(settings.vector_db_url)
    assert HEAD in _lance_revisions(root / _hashed("acme"))
    assert HEAD in _lance_revisions(root / UUID_ID)
    assert HEAD in _lance_revisions(explicit)
    # Only good rows have state; refused ones with a valid id never got any.
    assert set(_state(settings)) == {"acme", "globex:eu-1", UUID_ID}
    status = asyncio.run(migrator.dataset_status("globex:eu-1", settings=settings))
    assert status.revision == HEAD


def test_added_and_removed_datasets_are_picked_up_at_the_next_run(
    query_control: Settings,
) -> None:
    settings = query_control
    _tenants(settings, [tenant("acme"), tenant("globex")])
    first = asyncio.run(migrator.run_startup_migrations(settings=settings))
    assert first.status == "succeeded" and first.counts["total"] == 2

    _tenants(settings, [tenant("globex"), tenant("initech")])  # acme gone, initech new
    second = asyncio.run(migrator.run_startup_migrations(settings=settings))
    assert [d.dataset_id for d in second.datasets] == ["initech"]
    state = _state(settings)
    assert state["acme"]["removed_at"] is not None
    assert state["acme"]["vector_schema_version"] == HEAD  # its state is kept
    listed = on_control_plane(settings, list_datasets)
    assert [r.id for r in listed] == ["globex", "initech"]
    with pytest.raises(DatasetRemovedError, match=r"dataset acme was removed from the dataset"):
        asyncio.run(migrator.require_current("acme", settings=settings))
    assert asyncio.run(migrator.dataset_status("acme", settings=settings)).removed_at is not None

    _tenants(settings, [tenant("acme", name="ACME again"), tenant("globex"), tenant("initech")])
    third = asyncio.run(migrator.run_startup_migrations(settings=settings))
    assert third.status == "succeeded" and third.counts["total"] == 0  # acme is still at head
    state = _state(settings)
    assert state["acme"]["removed_at"] is None and state["acme"]["name"] == "ACME again"
    assert asyncio.run(migrator.require_current("acme", settings=settings)).revision == HEAD


def test_a_dataset_whose_row_turns_bad_is_left_out_with_the_error(
    query_control: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = query_control
    _tenants(settings, [tenant("acme"), tenant("globex")])
    asyncio.run(migrator.run_startup_migrations(settings=settings))
    _tenants(settings, [tenant("acme", provider="milvus"), tenant("globex")])

    with caplog.at_level(logging.INFO, logger="migrator.sources"):
        summary = asyncio.run(migrator.run_startup_migrations(settings=settings))
        first = _acme_lines(caplog)
        caplog.clear()
        asyncio.run(sync_source_once(settings))  # the next scheduled check syncs the same rows
        again = _acme_lines(caplog)

    assert summary.status == "partial" and summary.counts["total"] == 0
    acme = _state(settings)["acme"]
    assert acme["removed_at"] is not None
    assert "milvus" in acme["last_error"] and acme["last_error"].startswith("dataset source: ")
    # Logged at ERROR when the refusal is new; a sync that finds it recorded says so at INFO.
    assert [level for level, _ in first] == [logging.ERROR]
    assert "source row 0 refused: " in first[0][1]
    assert [level for level, _ in again] == [logging.INFO]
    assert "source row 0 still refused: " in again[0][1]


def _acme_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    return [(level, text) for level, text in lines if "dataset=acme " in text]


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM tenants RETURNING tenant_id AS id, title AS name, provider, vector_url AS url",
        "UPDATE tenants SET title = 'x' RETURNING tenant_id AS id, title AS name, provider, "
        "vector_url AS url",
    ],
)
def test_a_query_runs_read_only(query_control: Settings, statement: str) -> None:
    settings = query_control
    _tenants(settings, [tenant("acme")])
    settings = _with_source(settings, f"query:{statement}")

    with pytest.raises(DatasetSourceError, match=r"read.?only|readonly") as raised:
        asyncio.run(migrator.run_startup_migrations(settings=settings))

    assert str(raised.value).startswith("DATASET_SOURCE query failed: ")
    assert on_control_plane(settings, count_tenants) == 1
    rows = on_control_plane(settings, lambda e: _titles(e))
    assert rows == ["tenant acme"]
    assert _state(settings) == {}  # nothing was synced, no dataset touched


async def _titles(engine: Any) -> list[str]:
    async with engine.connect() as conn:
        return list(await conn.scalars(sa.text("SELECT title FROM tenants")))


def test_a_query_with_wrong_columns_is_refused_naming_them(query_control: Settings) -> None:
    settings = query_control
    _tenants(settings, [tenant("acme")])
    settings = _with_source(
        settings,
        "query:SELECT tenant_id AS id, title AS name, provider, opts AS secret FROM tenants",
    )

    with pytest.raises(DatasetSourceError) as raised:
        asyncio.run(sync_source_once(settings))

    assert raised.value.missing == ["url"] and raised.value.unknown == ["secret"]
    assert "missing url; unknown secret" in str(raised.value)
    assert "must return id, name, provider, url" in str(raised.value)


def test_a_query_is_not_interpolated(query_control: Settings) -> None:
    """Text that would be a bind parameter or a format field goes to the database as is."""
    settings = query_control
    _tenants(settings, [tenant("acme:eu"), tenant("b-1", name="50%"), tenant("c")])
    settings = _with_source(
        settings,
        "query:SELECT tenant_id AS id, title AS name, provider, vector_url AS url FROM tenants "
        "WHERE tenant_id LIKE 'acme:%' OR title = '50%' ORDER BY tenant_id",
    )

    synced = asyncio.run(sync_source_once(settings))

    assert synced is not None and synced.rows == 2 and not synced.errors
    assert set(_state(settings)) == {"acme:eu", "b-1"}


async def sync_source_once(settings: Settings) -> Any:
    from migrator.db import control_plane

    async with control_plane(settings) as engine:
        return await sync_source(engine, settings)


def _with_source(settings: Settings, source: str) -> Settings:
    return settings.model_copy(update={"dataset_source": source})


@pytest.mark.parametrize("attribute", ["tenants", "tenants_sync"])
def test_a_function_source_async_or_not(
    make_settings: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    attribute: str,
) -> None:
    rows_file = tmp_path / "rows.json"
    monkeypatch.setenv("TEST_SOURCE_ROWS", str(rows_file))
    write_rows_file(rows_file, [tenant("acme"), tenant("7"), tenant("unknown-p", provider="x")])
    settings = make_settings(dataset_source=FUNCTION_SOURCE.replace(":tenants", f":{attribute}"))

    summary = asyncio.run(migrator.run_startup_migrations(settings=settings))

    assert sorted(d.dataset_id for d in summary.datasets if d.status == "succeeded") == [
        "7",
        "acme",
    ]
    assert [e["dataset_id"] for e in summary.source_errors] == ["unknown-p"]
    write_rows_file(rows_file, [{**tenant("7"), "id": 7}])  # an integer id reads as text
    again = asyncio.run(migrator.run_startup_migrations(settings=settings))
    assert again.status == "succeeded" and again.counts["total"] == 0
    assert _state(settings)["acme"]["removed_at"] is not None


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("tests.sources.no_such_module:tenants", "cannot be imported"),
        ("tests.sources.source_functions:missing", "cannot be imported"),
        ("tests.sources.source_functions:not_a_list", "returned str, not an iterable"),
    ],
)
def test_a_function_source_that_cannot_be_used_is_a_typed_error(
    make_settings: Callable[..., Settings], reference: str, message: str
) -> None:
    settings = make_settings(dataset_source=f"function:{reference}")
    asyncio.run(upgrade_to_head(settings))

    with pytest.raises(DatasetSourceError, match=message):
        asyncio.run(migrator.run_startup_migrations(settings=settings))


def test_a_malformed_setting_is_refused(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ValueError, match="DATASET_SOURCE must be"):
        make_settings(dataset_source="table:tenants")


def test_the_cli_lists_the_source_and_refuses_add_and_remove(
    query_control: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    _tenants(query_control, [tenant("acme"), tenant("globex"), tenant("dup"), tenant("dup")])

    assert main(["datasets", "list"]) == 0
    out, err = capsys.readouterr()
    assert "acme" in out and "globex" in out and "tenant acme" in out
    assert "refused source row 1 (id dup): id occurs in 2 rows of the source" in err
    assert "refused source row 2 (id dup): id occurs in 2 rows of the source" in err

    assert main(["datasets", "add", "new", "--provider", "lancedb"]) == 64
    assert main(["datasets", "remove", "acme"]) == 64
    _, err = capsys.readouterr()
    assert err.count("DATASET_SOURCE is not the registry") == 2
    assert set(_state(query_control)) == {"acme", "globex"}


def test_a_task_result_stays_small_with_long_source_ids() -> None:
    failed = [
        DatasetOutcome(f"{n}" + "t" * 254, DatasetStatus.FAILED, error="boom") for n in range(10)
    ]
    summary = RunSummary("r", "deploy", RunStatus.PARTIAL, "0006", "0006", datasets=failed)

    data = summary_result(summary)

    assert len(json.dumps(data)) < RESULT_MAX_BYTES
    assert 1 <= len(data["failed_ids"]) < 10
    assert data["failed_ids_not_shown"] == 10 - len(data["failed_ids"])
    assert data["failed_ids"] == [d.dataset_id for d in failed[: len(data["failed_ids"])]]


def test_two_syncs_at_once_agree(query_control: Settings) -> None:
    """A scheduled check and a run may read the source at the same moment; both add the same
    new datasets, and neither fails for it."""
    settings = query_control
    _tenants(settings, [tenant(f"t-{n}") for n in range(50)])

    async def both() -> list[Any]:
        from migrator.db import control_plane

        async with control_plane(settings) as one, control_plane(settings) as other:
            return list(
                await asyncio.gather(sync_source(one, settings), sync_source(other, settings))
            )

    first, second = asyncio.run(both())

    assert len(_state(settings)) == 50
    assert not first.errors and not second.errors
