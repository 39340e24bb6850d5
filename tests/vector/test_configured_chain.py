"""The configured chain (VECTOR_MIGRATIONS) drives real runs, in process, on both built-in
providers: an application folder on top of the packaged revisions, --to, downgrade, a bad
folder refused before any dataset is touched, and a worker whose folder has another head."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from migrator.datasets import add_dataset
from migrator.db import control_plane
from migrator.errors import HeadMismatchError, MessageRefusedError
from migrator.relational import upgrade_to_head
from migrator.runs import store
from migrator.runs.dataset import migrate_registered, migrate_target
from migrator.runs.goal import goal_options
from migrator.runs.inprocess import run_startup_migrations
from migrator.runs.request import RunRequest
from migrator.settings import Settings
from migrator.states import DatasetStatus, Trigger
from migrator.vector.base import UPGRADE, RevisionGoal
from migrator.vector.revisions.errors import MissingDowngradeError, MultipleHeadsError
from tests.support.revisions import LANG, app_folder, revision_file
from tests.support.rows import runs
from tests.vector.helpers import HEAD, PACKAGED, cached, lance_tables, target, version_of

UrlFactory = Callable[[], str]


async def _register(settings: Settings, pg_url: str) -> tuple[str, str]:
    async with control_plane(settings) as engine:
        lance = await add_dataset(engine, settings, name="lance", provider="lancedb")
        pg = await add_dataset(engine, settings, name="pg", provider="pgvector", url=pg_url)
    return lance.id, pg.id


def _at(settings: Settings, ids: tuple[str, str]) -> list[object]:
    return [asyncio.run(cached(settings, i))["vector_schema_version"] for i in ids]


def test_an_application_folder_runs_up_to_and_down_on_both_providers(
    make_settings: Callable[..., Settings], pgvector_db: UrlFactory, tmp_path: Path
) -> None:
    settings = make_settings(VECTOR_MIGRATIONS=str(app_folder(tmp_path)))
    asyncio.run(upgrade_to_head(settings))
    ids = asyncio.run(_register(settings, pgvector_db()))

    partway = asyncio.run(run_startup_migrations(settings=settings, to_revision=PACKAGED[1]))
    assert (partway.status, partway.counts["succeeded"]) == ("succeeded", 2)
    assert _at(settings, ids) == [PACKAGED[1]] * 2

    up = asyncio.run(run_startup_migrations(settings=settings))
    assert {(d.version_before, d.version_after) for d in up.datasets} == {(PACKAGED[1], LANG)}
    assert _at(settings, ids) == [LANG] * 2
    lance_url = asyncio.run(cached(settings, ids[0]))["url"]
    assert "lang" in asyncio.run(lance_tables(lance_url))["schema"].names

    down = asyncio.run(
        run_startup_migrations(settings=settings, to_revision=PACKAGED[2], downgrade=True)
    )
    assert {(d.version_before, d.version_after) for d in down.datasets} == {(LANG, PACKAGED[2])}
    assert _at(settings, ids) == [PACKAGED[2]] * 2
    assert "lang" not in asyncio.run(lance_tables(lance_url))["schema"].names
    recorded = {r["id"]: r["options"]["vector"] for r in runs(settings)}
    assert recorded[down.run_id] == {"target": PACKAGED[2], "direction": "downgrade", "head": LANG}
    assert recorded[up.run_id] == {"target": LANG, "direction": "upgrade", "head": LANG}


def test_a_downgrade_through_a_revision_without_one_is_refused_before_any_dataset(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = make_settings(VECTOR_MIGRATIONS=str(app_folder(tmp_path, downgradable=False)))
    asyncio.run(upgrade_to_head(settings))
    ids = asyncio.run(_register_lance(settings))
    asyncio.run(run_startup_migrations(settings=settings))

    with pytest.raises(MissingDowngradeError) as caught:
        asyncio.run(
            run_startup_migrations(settings=settings, to_revision=PACKAGED[2], downgrade=True)
        )
    assert LANG in str(caught.value)
    assert _at(settings, ids) == [LANG, LANG]
    failed = [r for r in runs(settings) if r["status"] == "failed"]
    assert len(failed) == 1 and LANG in failed[0]["error"]


async def _register_lance(settings: Settings) -> tuple[str, str]:
    async with control_plane(settings) as engine:
        rows = [await add_dataset(engine, settings, name=n, provider="lancedb") for n in ("a", "b")]
    return rows[0].id, rows[1].id


def test_a_folder_that_is_not_one_chain_is_refused_before_any_dataset_is_touched(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    folder = app_folder(tmp_path)
    revision_file(folder, "0004_other", HEAD, "    pass", downgrade=False)  # a second head
    settings = make_settings(VECTOR_MIGRATIONS=str(folder))
    asyncio.run(upgrade_to_head(settings))
    ids = asyncio.run(_register_lance(settings))

    with pytest.raises(MultipleHeadsError) as caught:
        asyncio.run(run_startup_migrations(settings=settings))
    assert str(folder) in str(caught.value)
    for dataset_id in ids:
        assert not Path(asyncio.run(cached(settings, dataset_id))["url"]).exists()
    (run,) = runs(settings)
    assert run["status"] == "failed" and "MultipleHeadsError" in run["error"]


def test_a_worker_whose_folder_has_another_head_refuses_the_dataset_untouched(
    settings: Settings, lance_url: UrlFactory
) -> None:
    t = target(lance_url())
    goal = RevisionGoal("0009_elsewhere", UPGRADE, "0009_elsewhere")
    outcome = asyncio.run(migrate_target(t, settings, goal))
    assert (outcome.status, outcome.step) == (DatasetStatus.FAILED, "chain")
    assert outcome.error is not None and outcome.error.startswith(HeadMismatchError.__name__)
    assert "'0009_elsewhere'" in outcome.error and repr(HEAD) in outcome.error
    assert not Path(t.url).exists()
    assert asyncio.run(version_of(t, settings)) is None


def test_a_run_planned_against_another_head_fails_each_dataset_alone_untouched(
    control: Settings, lance_url: UrlFactory
) -> None:
    """A mixed deployment: the run was recorded by a process whose folder ends at LANG; this
    process (the packaged folder) must not take the dataset to its own head instead."""

    async def scenario() -> tuple[str, object]:
        async with control_plane(control) as engine:
            row = await add_dataset(engine, control, name="ds", provider="lancedb")
            run_id = await store.create_run(
                engine, trigger="admin", options=goal_options(RevisionGoal(LANG, UPGRADE, LANG))
            )
            await store.add_run_datasets(engine, run_id, [row.id])
            return row.url, await migrate_registered(engine, control, run_id, row.id)

    url, outcome = asyncio.run(scenario())
    assert outcome.status == DatasetStatus.FAILED  # type: ignore[attr-defined]
    assert f"the run targets vector head {LANG!r}" in outcome.error  # type: ignore[attr-defined]
    assert not Path(url).exists()


def test_a_message_carries_the_target_revision_id_validated() -> None:
    run_id = "00000000-0000-4000-8000-000000000002"
    request = RunRequest(run_id, Trigger.ADMIN, to_revision=LANG, downgrade=True)
    assert RunRequest.from_message(run_id, request.to_message()) == request
    for bad in ({"to_revision": "x\n; DROP"}, {"to_revision": ""}, {"downgrade": "yes"}):
        with pytest.raises(MessageRefusedError):
            RunRequest.from_message(run_id, {**request.to_message(), **bad})
