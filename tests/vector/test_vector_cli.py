"""``migrator vector ...`` and ``migrator run/downgrade --to``, as a user runs them (a real
subprocess) against an application folder, a real pgvector database and a LanceDB one."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from migrator.datasets import add_dataset
from migrator.db import control_plane
from migrator.relational import upgrade_to_head
from migrator.settings import Settings
from tests.vector.helpers import HEAD, PACKAGED, cached
from tests.vector.test_configured_chain import LANG, app_folder, revision_file

MIGRATOR = str(Path(sys.executable).parent / "migrator")
BACKFILL = "0005_fill_lang"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MIGRATOR, *args], capture_output=True, text=True, timeout=120)


def _folder(root: Path) -> Path:
    folder = app_folder(root)
    body = (
        "    op.backfill('chunks', 'lang', lambda batch: ['xx'] * batch.num_rows, "
        "columns=['payload'], batch_size=100)"
    )
    revision_file(folder, BACKFILL, LANG, body, downgrade=False)
    return folder


def test_the_vector_commands_on_an_application_folder(
    make_settings: Callable[..., Settings], pgvector_db: Callable[[], str], tmp_path: Path
) -> None:
    folder = _folder(tmp_path)
    settings = make_settings(VECTOR_MIGRATIONS=str(folder))

    heads = cli("vector", "heads", "--json")
    assert heads.returncode == 0, heads.stderr
    assert json.loads(heads.stdout)["head"] == BACKFILL
    history = json.loads(cli("vector", "history", "--json").stdout)
    assert [r["revision"] for r in history] == [*PACKAGED, LANG, BACKFILL]
    checked = cli("vector", "check", "--provider", "pgvector")
    assert (checked.returncode, checked.stdout.strip()) == (
        0,
        f"ok: 5 revision(s), head {BACKFILL!r}, valid for pgvector",
    )

    url = pgvector_db()

    async def register() -> str:
        async with control_plane(settings) as engine:
            row = await add_dataset(engine, settings, name="pg", provider="pgvector", url=url)
        return row.id

    asyncio.run(upgrade_to_head(settings))
    dataset_id = asyncio.run(register())
    sql = cli("vector", "sql", "--dataset", "pg")
    assert sql.returncode == 0, sql.stderr
    assert f"-- {PACKAGED[0]}: " in sql.stdout and "CREATE TABLE IF NOT EXISTS" in sql.stdout
    assert "-- backfill chunks.lang from payload in batches of 100" in sql.stdout
    assert asyncio.run(cached(settings, dataset_id))["vector_schema_version"] is None  # dry run
    assert cli("vector", "current", "--dataset", "pg").stdout.strip() == "(no revision)"

    up = cli("run", "--to", LANG, "--json", "--no-progress")
    assert up.returncode == 0, up.stderr
    assert cli("vector", "current", "--dataset", "pg").stdout.strip() == LANG
    refused = cli("downgrade", "--to", HEAD, "--no-progress")  # LANG has a downgrade
    assert refused.returncode == 0, refused.stderr
    assert cli("vector", "current", "--dataset", dataset_id).stdout.strip() == HEAD

    stamped = cli("vector", "stamp", "--dataset", "pg", PACKAGED[0], "--json")
    assert stamped.returncode == 0, stamped.stderr
    assert cli("vector", "current", "--dataset", "pg").stdout.strip() == PACKAGED[0]
    assert asyncio.run(cached(settings, dataset_id))["vector_schema_version"] == PACKAGED[0]

    written = cli("vector", "revision", "-m", "add tags", "--json")
    assert written.returncode == 0, written.stderr
    path = Path(json.loads(written.stdout)["path"])
    assert path.parent == folder and f"down_revision = {BACKFILL!r}" in path.read_text()


def test_a_bad_folder_fails_every_vector_command_naming_the_file(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    folder = app_folder(tmp_path)
    revision_file(folder, "0004_other", HEAD, "    pass", downgrade=False)
    make_settings(VECTOR_MIGRATIONS=str(folder))
    for args in (("vector", "check"), ("vector", "heads"), ("run", "--no-progress")):
        result = cli(*args)
        # A folder error is the user's input to fix: the CLI's usage exit code.
        assert result.returncode == 64, (args, result.stdout, result.stderr)
        assert str(folder) in result.stderr and "head" in result.stderr
