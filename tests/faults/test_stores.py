"""Every store inside its root, owned by one dataset, and every credential masked on output.

Rows registered through the CLI and rows planted by hand in the control plane: URLs with
passwords in their query string, pgvector schemas that are system schemas or another dataset's,
a dataset database equal to the control plane, two datasets sharing one LanceDB folder, LanceDB
paths outside VECTOR_STORE_ROOTS (absolute, ``..``, a symlink out) and terminal escapes.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.models import dataset_databases
from tests.faults.conftest import Scenario, secret
from tests.faults.world import World

# Dozens of CLI starts in one test: under load (two pytest workers) well past 120 s.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ESC = "\x1b"


def _set_schema(world: World, dataset_id: str, schema: str) -> None:
    async def update(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await conn.execute(
                dataset_databases.update()
                .where(dataset_databases.c.dataset_id == dataset_id)
                .values(connection_info={"schema": schema})
            )

    world.run(update)


def _add(world: World, name: str, *args: str) -> tuple[int, str, str]:
    result = world.cli("datasets", "add", name, *args)
    return result.returncode, result.stdout, result.stderr.strip()


def test_credentials_in_stored_urls_are_masked_everywhere(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Credentials inside stored URLs",
        "rows planted with ?user=..&password=.., ?sslpassword=.., and a 2-character userinfo "
        "password; then datasets list (table and JSON), run --json, status --json, remove",
    )
    good = world.add_lancedb(1)
    query_pw, ssl_pw, short_pw = secret("Query"), secret("Ssl"), "q7"
    planted = {
        "query": world.insert_raw(
            "query-password", "pgvector", f"postgresql://127.0.0.1:1/x?user=bob&password={query_pw}"
        ),
        "ssl": world.insert_raw(
            "ssl-password", "pgvector", f"postgresql://127.0.0.1:1/x?sslpassword={ssl_pw}"
        ),
        "short": world.insert_raw("short", "pgvector", f"postgresql://u:{short_pw}@127.0.0.1:1/x"),
    }
    outputs = [world.cli("datasets", "list"), world.cli("datasets", "list", "--json")]
    run = world.cli("run", "--json", "--no-progress")
    outputs += [run, world.cli("status", json.loads(run.stdout)["run_id"], "--json")]
    outputs += [world.cli("datasets", "remove", name) for name in ("query-password", "short")]
    text = "\n".join(o.stdout + o.stderr for o in outputs)
    assert query_pw not in text and ssl_pw not in text
    assert f":{short_pw}@" not in text
    assert "password=***" in text and "sslpassword=***" in text and "u:***@127.0.0.1" in text
    assert run.returncode == 2
    assert planted["query"] in text
    scenario.lost = len(world.lost(good))
    scenario.outcome = "6 outputs searched: every password masked (query, sslpassword, 2 chars)"
    assert scenario.lost == 0


def test_dataset_ddl_lands_only_in_stores_of_its_own(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Dataset DDL where it must not land",
        "pgvector datasets pointed at the control-plane database and at schemas public, "
        "information_schema, pg_catalog and another dataset's ds_ schema; two datasets sharing "
        "one LanceDB folder; registered and planted by hand",
    )
    server = world.vector_server("vectors-1")
    good = world.add_pgvector(server, 2) + world.add_lancedb(1)
    control_url = f"postgresql://127.0.0.1:{world.core.port}/{world.control_database}"
    code, _, err = _add(world, "into-control", "--provider", "pgvector", "--url", control_url)
    assert code == 64
    assert err == (
        f"FAILED: dataset 'into-control': database {world.control_database!r} on "
        f"127.0.0.1:{world.core.port} is the control-plane database; a dataset needs a database "
        "of its own"
    )
    lance_folder = good[2].url
    code, _, err = _add(world, "same-folder", "--url", lance_folder)
    assert code == 64
    assert "that location already belongs to dataset " + good[2].id in err

    planted = {"control": world.insert_raw("planted-control", "pgvector", control_url)}
    planted["folder"] = world.insert_raw("planted-folder", "lancedb", lance_folder)
    for schema in ("public", "information_schema", "pg_catalog", good[0].schema):
        dataset_id = world.insert_raw(f"schema-{schema}", "pgvector", server.url("vectors"))
        _set_schema(world, dataset_id, schema)
        planted[schema] = dataset_id
    run = world.cli("run", "--json", "--no-progress")
    assert run.returncode == 2, run.stderr
    outcomes = {d["dataset_id"]: d for d in json.loads(run.stdout)["datasets"]}
    errors = {key: str(outcomes[dataset_id]["error"]) for key, dataset_id in planted.items()}
    assert "is the control-plane database" in errors["control"]
    # The first registered keeps its folder; the planted row is refused.
    assert f"that location already belongs to dataset {good[2].id}" in errors["folder"]
    for schema in ("public", "information_schema", "pg_catalog"):
        assert f"schema {schema!r} is a system schema" in errors[schema]
    assert "is reserved for another dataset" in errors[good[0].schema]
    assert [outcomes[d.id]["status"] for d in good] == ["succeeded"] * 3, outcomes

    async def stray_tables() -> list[str]:
        conn = await asyncpg.connect(**world.core.admin_args(world.control_database))
        try:
            rows = await conn.fetch("SELECT schemaname FROM pg_tables WHERE tablename = 'chunks'")
            return [r["schemaname"] for r in rows]
        finally:
            await conn.close()

    assert asyncio.run(stray_tables()) == []
    scenario.lost = len(world.lost(good))
    scenario.outcome = (
        "2 registrations refused (exit 64); 6 planted rows failed alone before any DDL; no "
        "table created in the control plane"
    )
    assert scenario.lost == 0


def test_lancedb_folders_stay_under_their_roots(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "LanceDB paths outside VECTOR_STORE_ROOTS",
        "folders /etc/..., <root>/../escape, a symlink inside the root pointing out, a path "
        "and a name with terminal escape bytes; registered and planted by hand",
    )
    good = world.add_lancedb(1)
    root = Path(world.settings.vector_db_url)
    outside = world.root / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    attempts = {
        "etc": "/etc/migrator-probe",
        "dotdot": f"{root}/../escape",
        "symlink": f"{root}/link/ds",
        "escape": f"{root}/bad{ESC}[31mred",
    }
    for key, url in attempts.items():
        code, out, err = _add(world, f"try-{key}", "--url", url)
        assert code == 64, (key, out, err)
        assert ESC not in out + err
    assert "is outside VECTOR_STORE_ROOTS" in _add(world, "x", "--url", attempts["etc"])[2]
    assert "contains '..'" in _add(world, "x", "--url", attempts["dotdot"])[2]
    assert "contains control characters" in _add(world, "x", "--url", attempts["escape"])[2]
    code, _, err = _add(world, f"name{ESC}[2J")
    assert code == 64 and ESC not in err

    planted = {
        key: world.insert_raw(f"planted-{key}", "lancedb", url) for key, url in attempts.items()
    }
    planted_name = world.insert_raw(f"evil{ESC}]0;title{ESC}\\", "lancedb", str(root / "fine"))
    run = world.cli("run", "--json", "--no-progress")
    listing = world.cli("datasets", "list")
    assert run.returncode == 2, run.stderr
    outcomes = {d["dataset_id"]: d for d in json.loads(run.stdout)["datasets"]}
    for key, dataset_id in planted.items():
        assert outcomes[dataset_id]["status"] == "failed", key
    assert outcomes[planted_name]["status"] == "succeeded"
    assert ESC not in listing.stdout + run.stdout + run.stderr
    assert "\\x1b" in listing.stdout
    assert list(outside.iterdir()) == []
    assert not Path("/etc/migrator-probe").exists()
    assert not (root.parent / "escape").exists()
    scenario.lost = len(world.lost(good))
    scenario.outcome = (
        "5 registrations refused (exit 64, escapes shown as \\x1b); 4 planted rows failed "
        "alone, nothing written outside the root"
    )
    assert scenario.lost == 0


def test_check_fails_when_a_dataset_is_unreadable(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "migrator check with an unreadable dataset",
        "a pgvector dataset whose server is down, everything else at head",
    )
    server = world.vector_server("vectors-1")
    good = world.add_lancedb(1)
    down = world.add_pgvector(server, 1)
    assert world.cli("run", "--no-progress").returncode == 0
    server.stop()
    check = world.cli("check", "--verify", "--json")
    assert check.returncode == 2, check.stderr
    report = json.loads(check.stdout)
    assert report["unreadable"] == [down[0].id] and report["needs_run"] is False
    server.start()
    scenario.lost = len(world.lost(good + down))
    scenario.outcome = "check --verify exit 2 (was 0), unreadable_count 1"
    assert scenario.lost == 0
