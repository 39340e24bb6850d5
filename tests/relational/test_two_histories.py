"""Two Alembic histories in one control plane (APP_ALEMBIC_CONFIG): each its own version table,
neither seeing the other's tables; a control plane from before the split carried over with its
data; the application's failure named as the application's; one lock for both."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from migrator import MigrationError, run_startup_migrations
from migrator.datasets import add_dataset, list_datasets
from migrator.db import control_plane
from migrator.histories import MIGRATOR_VERSION_TABLE
from migrator.models import migration_runs
from migrator.relational import APPLICATION_HISTORY, upgrade_to_head
from migrator.settings import Settings
from tests.support.app_alembic import write_app_project
from tests.support.environment import PROJECT_ROOT
from tests.support.migrations import control_plane_head, legacy_migrations
from tests.support.processes import popen_migrator
from tests.support.rows import version_rows

HEAD = control_plane_head()
BACKENDS = ["sqlite", "postgres"]


def _settings(
    backend: str,
    make_settings: Callable[..., Settings],
    pg_database: Callable[[], str],
    **overrides: object,
) -> Settings:
    if backend == "postgres":
        overrides["database_url"] = pg_database()
    return make_settings(**overrides)


@pytest.fixture(params=BACKENDS)
def with_app(
    request: pytest.FixtureRequest,
    make_settings: Callable[..., Settings],
    pg_database: Callable[[], str],
    tmp_path: Path,
) -> Callable[..., tuple[Settings, Path]]:
    """Factory: settings on SQLite, then on PostgreSQL, with APP_ALEMBIC_CONFIG naming a new
    application project (``extra_body``: its second revision); returns them and its ini."""

    def make(extra_body: str | None = None) -> tuple[Settings, Path]:
        app_ini = write_app_project(tmp_path / "app", extra_body=extra_body)
        return _settings(
            request.param, make_settings, pg_database, app_alembic_config=app_ini
        ), app_ini

    return make


def _tables(settings: Settings) -> set[str]:
    async def fetch() -> set[str]:
        async with control_plane(settings) as engine, engine.connect() as conn:
            return set(await conn.run_sync(lambda c: sa.inspect(c).get_table_names()))

    return asyncio.run(fetch())


def test_fresh_control_plane_gets_both_histories_each_in_its_own_table(
    with_app: Callable[..., tuple[Settings, Path]],
) -> None:
    settings, _app_ini = with_app()

    result = asyncio.run(upgrade_to_head(settings))

    assert (result.before, result.after, result.applied) == (None, HEAD, True)
    assert (result.app_before, result.app_after, result.app_head) == (None, "0001", "0001")
    assert version_rows(settings, MIGRATOR_VERSION_TABLE) == [HEAD]
    assert version_rows(settings, "alembic_version") == ["0001"]
    assert {"notes", "datasets", "migration_runs"} <= _tables(settings)

    again = asyncio.run(upgrade_to_head(settings))
    assert (again.applied, again.after, again.app_after) == (False, HEAD, "0001")


@pytest.mark.parametrize("backend", BACKENDS)
def test_todays_control_plane_is_carried_over_with_its_data(
    backend: str,
    make_settings: Callable[..., Settings],
    pg_database: Callable[[], str],
    tmp_path: Path,
) -> None:
    legacy = _settings(
        backend, make_settings, pg_database, alembic_config=legacy_migrations(tmp_path / "old")
    )
    asyncio.run(upgrade_to_head(legacy))
    assert version_rows(legacy, "alembic_version") == [HEAD]
    assert version_rows(legacy, MIGRATOR_VERSION_TABLE) is None

    async def register() -> None:
        async with control_plane(legacy) as engine:
            await add_dataset(engine, legacy, name="kept", provider="lancedb")

    asyncio.run(register())
    app_ini = write_app_project(tmp_path / "app")
    settings = make_settings(
        alembic_config=PROJECT_ROOT / "alembic.ini",
        app_alembic_config=app_ini,
        database_url=legacy.database_url.get_secret_value(),
    )

    result = asyncio.run(upgrade_to_head(settings))

    assert (result.before, result.after, result.applied) == (HEAD, HEAD, True)
    assert (result.app_before, result.app_after) == (None, "0001")
    assert version_rows(settings, MIGRATOR_VERSION_TABLE) == [HEAD]
    assert version_rows(settings, "alembic_version") == ["0001"]

    async def names() -> list[str]:
        async with control_plane(settings) as engine:
            return [row.name for row in await list_datasets(engine)]

    assert asyncio.run(names()) == ["kept"]


def test_an_applications_own_alembic_version_is_never_taken_for_ours(
    with_app: Callable[..., tuple[Settings, Path]], tmp_path: Path
) -> None:
    """The application's revision "0001" has the id of the migrator's first; without the
    migrator's tables beside it, it stays the application's."""
    settings, app_ini = with_app()
    env = {**os.environ, "DATABASE_URL": settings.database_url.get_secret_value()}
    (tmp_path / "data").mkdir(exist_ok=True)  # the SQLite file's folder, for the app's env.py
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(app_ini), "upgrade", "head"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert version_rows(settings, "alembic_version") == ["0001"]

    result = asyncio.run(upgrade_to_head(settings))

    assert (result.before, result.after) == (None, HEAD)
    assert (result.app_before, result.app_after, result.applied) == ("0001", "0001", True)
    assert version_rows(settings, "alembic_version") == ["0001"]
    assert version_rows(settings, MIGRATOR_VERSION_TABLE) == [HEAD]


def test_a_failing_application_history_is_named_and_no_dataset_is_touched(
    make_settings: Callable[..., Settings], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app_ini = write_app_project(tmp_path / "app", extra_body='op.execute("SELEC broken")')
    settings = make_settings(app_alembic_config=app_ini, log_level="DEBUG")

    with caplog.at_level(logging.DEBUG, logger="migrator"), pytest.raises(MigrationError) as caught:
        asyncio.run(run_startup_migrations(settings=settings))

    error = caught.value
    assert error.history == APPLICATION_HISTORY
    assert str(error).startswith(f"alembic upgrade head failed (exit 1) for {APPLICATION_HISTORY}")
    assert 'near "SELEC"' in error.output
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith("alembic upgrade head output: the migrator's history") for m in messages
    )
    assert any("no dataset was touched" in m for m in messages)
    # The migrator's history committed before the application's ran; the application's did not
    # get past its first revision.
    assert version_rows(settings, MIGRATOR_VERSION_TABLE) == [HEAD]
    assert version_rows(settings, "alembic_version") == ["0001"]

    async def runs() -> list[sa.Row]:
        async with control_plane(settings) as engine, engine.connect() as conn:
            return list((await conn.execute(sa.select(migration_runs))).all())

    assert [r.status for r in asyncio.run(runs())] == ["failed"]


def test_a_missing_application_project_is_named_before_anything_runs(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "alembic.ini"
    settings = make_settings(app_alembic_config=missing)

    with pytest.raises(FileNotFoundError) as caught:
        asyncio.run(upgrade_to_head(settings))

    assert str(caught.value) == f"alembic.ini not found at {missing} ({APPLICATION_HISTORY})"
    assert _tables(settings) == set()


def test_alembic_on_either_config_sees_only_its_own_tables(
    with_app: Callable[..., tuple[Settings, Path]],
) -> None:
    settings, app_ini = with_app()
    asyncio.run(upgrade_to_head(settings))
    env = {**os.environ, "DATABASE_URL": settings.database_url.get_secret_value()}

    def alembic(ini: Path, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "alembic", "-c", str(ini), *args],
            env=env,
            capture_output=True,
            text=True,
            cwd=ini.parent,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    migrator_ini = Path(settings.alembic_config)
    # The migrator's autogenerate compares its models to its tables only: the application's
    # `notes` is not reported as a table to drop.
    assert "No new upgrade operations detected" in alembic(migrator_ini, "check")
    assert f"{HEAD} (head)" in alembic(migrator_ini, "current")
    assert "0001 (head)" in alembic(app_ini, "current")


def test_concurrent_upgrades_of_both_histories_apply_once_under_one_lock(
    with_app: Callable[..., tuple[Settings, Path]], tmp_path: Path
) -> None:
    settings, _app_ini = with_app(extra_body="time.sleep(2.0)")

    def start() -> subprocess.Popen[str]:
        return popen_migrator("run", "--no-progress", "--json", env=os.environ, cwd=tmp_path)

    first, second = start(), start()
    results = [p.communicate(timeout=120) for p in (first, second)]

    logs = "\n".join(err for _, err in results)
    # The whole stderr of both: a repr of the pair would be cut short where the cause is.
    assert [p.returncode for p in (first, second)] == [0, 0], logs
    assert logs.count("(the migrator's history (ALEMBIC_CONFIG))") == 1, logs
    assert logs.count(f"({APPLICATION_HISTORY})") == 1, logs
    assert logs.count(f"already at head {HEAD} and application 0002") == 1, logs
    assert version_rows(settings, "alembic_version") == ["0002"]
    assert version_rows(settings, MIGRATOR_VERSION_TABLE) == [HEAD]


def test_alembic_command_api_on_the_migrators_config_keeps_working(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """``alembic downgrade``/``upgrade`` through Alembic's own API on the migrator's config
    move only the migrator's version table."""
    app_ini = write_app_project(tmp_path / "app")
    settings = make_settings(app_alembic_config=app_ini)
    asyncio.run(upgrade_to_head(settings))
    config = Config(str(settings.alembic_config))
    config.attributes["configure_logger"] = False

    command.downgrade(config, "0002")
    assert version_rows(settings, MIGRATOR_VERSION_TABLE) == ["0002"]
    command.upgrade(config, "head")

    assert version_rows(settings, MIGRATOR_VERSION_TABLE) == [HEAD]
    assert version_rows(settings, "alembic_version") == ["0001"]
