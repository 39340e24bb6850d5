"""The worked example end to end, in-process: a control plane as a deployment has it before
adopting the notes application (the migrator's tables under the pre-split ``alembic_version``,
registry datasets migrated by the packaged chain, a run recorded) takes on the application's
Alembic history, its tenants table as the dataset source, its vector revisions on LanceDB and on
pgvector databases of another server, and the write guard in its write path."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import lancedb
import pytest

from migrator import DatasetBehindError, run_startup_migrations
from migrator.errors import DatasetNotFoundError
from migrator.relational import upgrade_to_head
from migrator.settings import Settings
from tests.support.environment import PROJECT_ROOT
from tests.support.migrations import control_plane_head, legacy_migrations
from tests.support.notes_app import (
    APP_HEAD,
    NOTES_COLLECTION,
    NOTES_HEAD,
    PACKAGED_HEAD,
    add_note,
    adopt,
    adoption_env,
    create_tenant,
    register,
    search,
)
from tests.support.rows import cached_versions, runs, version_rows

pytestmark = pytest.mark.slow


def _lance_tables(url: str) -> list[str]:
    async def names() -> list[str]:
        return list((await (await lancedb.connect_async(url)).list_tables()).tables)

    return asyncio.run(names())


def test_the_notes_app_takes_over_a_control_plane_that_has_history(
    make_settings: Callable[..., Settings],
    pg_database: Callable[[], str],
    tenant_db: Callable[[], str],
    tmp_path: Path,
) -> None:
    control_url = pg_database()
    legacy = make_settings(
        database_url=control_url, alembic_config=legacy_migrations(tmp_path / "old")
    )
    asyncio.run(upgrade_to_head(legacy))
    old_lance = register(legacy, "old-lance", "lancedb")
    old_pg = register(legacy, "old-pg", "pgvector", tenant_db())
    before = asyncio.run(run_startup_migrations(settings=legacy))
    assert (before.status, before.counts["succeeded"]) == ("succeeded", 2)
    assert version_rows(legacy, "alembic_version") == [control_plane_head()]

    settings = make_settings(
        database_url=control_url, alembic_config=PROJECT_ROOT / "alembic.ini", **adoption_env()
    )
    relational = asyncio.run(upgrade_to_head(settings))
    assert (relational.app_before, relational.app_after) == (None, APP_HEAD)
    assert version_rows(settings, "migrator_alembic_version") == [control_plane_head()]
    assert version_rows(settings, "alembic_version") == [APP_HEAD]

    tenants = [
        adopt(settings, old_lance),
        adopt(settings, old_pg),
        create_tenant(settings, "acme", "lancedb", str(tmp_path / "lance" / "acme")),
        create_tenant(settings, "globex", "pgvector", tenant_db()),
    ]
    old_ids = {old_lance.id, old_pg.id}
    # No run has read the new tenant from the source yet: the guard knows nothing of it.
    with pytest.raises(DatasetNotFoundError):
        add_note(settings, tenants[2].id, "refused", "no store yet")

    partway = asyncio.run(run_startup_migrations(settings=settings, to_revision=NOTES_COLLECTION))
    assert (partway.status, partway.counts["succeeded"]) == ("succeeded", 4)
    assert {d.dataset_id: (d.version_before, d.version_after) for d in partway.datasets} == {
        t.id: (PACKAGED_HEAD if t.id in old_ids else None, NOTES_COLLECTION) for t in tenants
    }
    with pytest.raises(DatasetBehindError) as behind:
        add_note(settings, old_pg.id, "refused", "the tag column is not there yet")
    assert (behind.value.revision, behind.value.required) == (NOTES_COLLECTION, NOTES_HEAD)

    up = asyncio.run(run_startup_migrations(settings=settings))
    assert (up.status, up.counts["succeeded"]) == ("succeeded", 4)
    assert cached_versions(settings) == {t.id: NOTES_HEAD for t in tenants}

    written = {}
    for tenant in tenants:
        add_note(settings, tenant.id, "groceries", "milk eggs bread", tag="home")
        written[tenant.id] = add_note(
            settings, tenant.id, f"{tenant.name} launch", "rocket countdown", tag="work"
        )
    for tenant in tenants:
        # The note's own words: its vector, at distance 0 whatever the hashing collides.
        hits = search(settings, tenant.id, f"{tenant.name} launch rocket countdown")
        assert [h.tag for h in hits] == ["work", "home"]
        assert hits[0].id == written[tenant.id]

    # The history from before the adoption is still there, and so is the old dataset's data.
    assert [r["id"] for r in runs(settings)] == [before.run_id, partway.run_id, up.run_id]
    assert {"chunks", "notes"} <= set(_lance_tables(old_lance.url))
