"""Provisioning dataset databases: the registry API and the real ``migrator`` command."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from migrator.datasets import add_dataset, list_datasets
from migrator.db import control_plane
from migrator.errors import BadDatasetURLError, UnknownProviderError, UsageError
from migrator.runs.inprocess import run_startup_migrations
from migrator.settings import Settings
from tests.vector.helpers import HEAD, cached, target, version_of

MIGRATOR = str(Path(sys.executable).parent / "migrator")
UrlFactory = Callable[[], str]
PASSWORD = "hunter2-do-not-print"


async def _add(settings: Settings, **kwargs: str) -> object:
    async with control_plane(settings) as engine:
        return await add_dataset(engine, settings, **kwargs)


async def _rows(settings: Settings) -> list[object]:
    async with control_plane(settings) as engine:
        return list(await list_datasets(engine))


def test_pgvector_needs_a_url(control: Settings) -> None:
    with pytest.raises(UsageError) as caught:
        asyncio.run(_add(control, name="v", provider="pgvector"))
    assert str(caught.value) == "provider 'pgvector' needs --url"


def test_a_url_with_a_password_is_refused_and_nothing_is_stored(control: Settings) -> None:
    url = f"postgresql://app:{PASSWORD}@db.example:5432/vectors"
    with pytest.raises(BadDatasetURLError) as caught:
        asyncio.run(_add(control, name="v", provider="pgvector", url=url))
    assert str(caught.value) == (
        "pgvector URL must not carry credentials: remove 'user:password@' from it and set "
        "VECTOR_DB_USERNAME and VECTOR_DB_PASSWORD in the migrator's environment"
    )
    assert asyncio.run(_rows(control)) == []


def test_an_unknown_provider_is_refused(control: Settings) -> None:
    with pytest.raises(UnknownProviderError) as caught:
        asyncio.run(_add(control, name="v", provider="milvus", url="x"))
    assert str(caught.value) == "unknown vector provider 'milvus'; registered: lancedb, pgvector"


def test_the_url_is_stored_normalised_with_its_server_key(control: Settings) -> None:
    allowed = control.model_copy(update={"vector_db_allowed_hosts": "db.example"})
    row = asyncio.run(
        _add(allowed, name="v", provider="pgvector", url="postgres://DB.example/vectors")
    )
    stored = asyncio.run(cached(control, row.id))  # type: ignore[attr-defined]
    assert (stored["url"], stored["server_key"], stored["connection_info"]) == (
        "postgresql://db.example:5432/vectors",
        "db.example:5432",
        {},
    )


def test_a_hostile_dataset_name_never_reaches_sql(
    control: Settings, pgvector_db: UrlFactory
) -> None:
    """Names are free text; the schema comes from the id, so the name cannot inject."""
    url = pgvector_db()
    name = 'x"; DROP SCHEMA public CASCADE; --'
    row = asyncio.run(_add(control, name=name, provider="pgvector", url=url))
    summary = asyncio.run(run_startup_migrations(settings=control))
    assert summary.status == "succeeded"
    assert asyncio.run(version_of(target(url, dataset_id=row.id), control)) == HEAD  # type: ignore[attr-defined]


# ---- the command, as an operator runs it ---------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``migrator`` in a fresh process whose environment points at files under tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VECTOR_", "ENABLE_"))}
    env.update(
        DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'data' / 'control.db'}",
        VECTOR_DB_URL=str(tmp_path / "data" / "vector"),
        VECTOR_DIMENSION="8",
        VECTOR_DB_PASSWORD=PASSWORD,
        LOG_LEVEL="INFO",
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [MIGRATOR, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=90
        )
        assert PASSWORD not in done.stdout + done.stderr
        return done

    return run


def test_cli_refuses_a_url_with_a_password(
    cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    url = "postgresql://app:s3cret-in-url@db.example/vectors"
    added = cli("datasets", "add", "v", "--provider", "pgvector", "--url", url)
    assert added.returncode == 64
    assert added.stderr.strip().splitlines()[-1] == (
        "FAILED: pgvector URL must not carry credentials: remove 'user:password@' from it and "
        "set VECTOR_DB_USERNAME and VECTOR_DB_PASSWORD in the migrator's environment"
    )
    assert "s3cret-in-url" not in added.stdout + added.stderr
    listed = cli("datasets", "list", "--json")
    assert (listed.returncode, json.loads(listed.stdout)) == (0, [])


def test_cli_migrates_the_demo_datasets_then_reports_an_unreachable_one(
    cli: Callable[..., subprocess.CompletedProcess[str]], settings: Settings
) -> None:
    """The issue's "done when": `migrator run` brings the demo LanceDB datasets to head; with
    one pgvector dataset on an unreachable server it exits 2 and names it."""
    demo = cli("run", "--demo", "--no-progress")
    assert demo.returncode == 0, demo.stderr
    assert "datasets: total=3 succeeded=3 failed=0" in demo.stdout
    rows = json.loads(cli("datasets", "list", "--json").stdout)
    assert [(r["provider"], r["vector_schema_version"]) for r in rows] == [("lancedb", HEAD)] * 3
    for row in rows:  # the databases' own records, not only the cache
        assert asyncio.run(version_of(target(row["url"], dataset_id=row["id"]), settings)) == HEAD

    added = cli(
        "datasets", "add", "pg-down", "--provider", "pgvector", "--url",
        "postgresql://127.0.0.1:1/vectors", "--json",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    down = json.loads(added.stdout)["id"]

    failed = cli("run", "--no-progress")
    assert failed.returncode == 2
    assert "datasets: total=1 succeeded=0 failed=1" in failed.stdout
    assert (
        f"  failed: pg-down ({down}): VectorDatabaseUnreachableError: cannot connect to pgvector "
        "server 127.0.0.1:1 database 'vectors' as 'postgres': ConnectionRefusedError"
    ) in failed.stdout
    assert f'dataset={down} name="pg-down" status=failed step=connect ' in failed.stderr

    removed = cli("datasets", "remove", "pg-down")
    assert removed.returncode == 0
    assert cli("run", "--no-progress").returncode == 0


def test_datasets_remove_keeps_the_vector_data(control: Settings, lance_url: UrlFactory) -> None:
    from migrator.datasets import remove_dataset

    url = lance_url()
    row = asyncio.run(_add(control, name="keep-me", provider="lancedb", url=url))
    asyncio.run(run_startup_migrations(settings=control))

    async def remove() -> None:
        async with control_plane(control) as engine:
            await remove_dataset(engine, "keep-me")

    asyncio.run(remove())
    assert asyncio.run(_rows(control)) == []
    assert asyncio.run(version_of(target(url, dataset_id=row.id), control)) == HEAD  # type: ignore[attr-defined]
