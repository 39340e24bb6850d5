"""The Python API logs as the seed says: to stderr at LOG_LEVEL when the host configured no
logging (the init container's one-liner), and only through the host's handlers when it did."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from migrator.datasets import add_dataset
from migrator.db import control_plane
from migrator.relational import upgrade_to_head
from migrator.settings import Settings
from tests.support.environment import PROJECT_ROOT
from tests.support.migrations import control_plane_head

HEAD = control_plane_head()

PASSWORD = "Api-Log-Pw-7731"
INIT_CONTAINER = "import asyncio, migrator; asyncio.run(migrator.run_startup_migrations())"
HOST_CONFIGURED = (
    "import asyncio, logging, migrator\n"
    "logging.basicConfig(level=logging.INFO, format='HOST %(levelname)s %(name)s %(message)s')\n"
    "asyncio.run(migrator.run_startup_migrations())\n"
    "print('library handlers:', logging.getLogger('migrator').handlers)\n"
)
HOST_CONFIGURES_LATER = (
    "import asyncio, logging, migrator\n"
    "asyncio.run(migrator.run_startup_migrations())\n"
    "logging.basicConfig(level=logging.INFO, format='LATER %(message)s')\n"
    "print('root handlers:', len(logging.getLogger().handlers),"
    " 'library handlers:', logging.getLogger('migrator').handlers)\n"
)


async def _add_unreachable_dataset(settings: Settings) -> str:
    await upgrade_to_head(settings)
    async with control_plane(settings) as engine:
        row = await add_dataset(
            engine,
            settings,
            name="unreachable-ds",
            provider="pgvector",
            url="postgresql://127.0.0.1:1/nowhere",
        )
    return row.id


@pytest.fixture
def api_settings(
    make_settings: Callable[..., Settings], pg_database: Callable[[], str]
) -> Settings:
    """An empty control-plane database on the local PostgreSQL, reached with a password in
    DATABASE_URL; the settings are in this process's environment, which children inherit."""
    url = pg_database().replace("postgres@", f"postgres:{PASSWORD}@", 1)
    return make_settings(database_url=url, vector_db_password=PASSWORD)


def _child_env(**overrides: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k != "LOG_LEVEL"}
    return {**base, "PYTHONPATH": str(PROJECT_ROOT), **overrides}


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_init_container_one_liner_logs_at_info_to_stderr_without_the_password(
    api_settings: Settings,
) -> None:
    dataset_id = asyncio.run(_add_unreachable_dataset(api_settings))

    result = _run(INIT_CONTAINER, _child_env())

    err = result.stderr
    assert (
        "INFO [migrator.runs.inprocess] Run " in err
        and f"(api): control plane {HEAD} -> {HEAD}" in err
    )
    assert f"ERROR [migrator.runs.dataset] dataset={dataset_id}" in err
    assert " partial: relational " in err and "failed=1" in err
    assert "alembic upgrade head output" not in err
    assert " DEBUG " not in err
    assert PASSWORD not in err + result.stdout


def test_debug_one_liner_on_an_empty_database_shows_alembic_output(
    make_settings: Callable[..., Settings], pg_database: Callable[[], str]
) -> None:
    url = pg_database().replace("postgres@", f"postgres:{PASSWORD}@", 1)
    make_settings(database_url=url)
    result = _run(INIT_CONTAINER, _child_env(LOG_LEVEL="DEBUG"))

    assert "DEBUG [migrator.relational] alembic upgrade head output:" in result.stderr
    assert "Running upgrade" in result.stderr
    assert PASSWORD not in result.stderr


def test_a_host_that_configured_logging_keeps_its_handlers_and_gets_the_records(
    api_settings: Settings,
) -> None:
    result = _run(HOST_CONFIGURED, _child_env())

    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert any(line.startswith("HOST INFO migrator.relational ") for line in lines), lines
    assert any(line.startswith("HOST INFO migrator.runs.inprocess Run ") for line in lines), lines
    assert all(not line.startswith("20") for line in lines), "the library added a handler"
    assert "library handlers: []" in result.stdout
    assert PASSWORD not in result.stderr


def test_the_library_handler_is_gone_after_the_run_so_a_later_basicconfig_works(
    api_settings: Settings,
) -> None:
    result = _run(HOST_CONFIGURES_LATER, _child_env())

    assert "INFO [migrator.runs.inprocess] Run " in result.stderr
    assert "root handlers: 1 library handlers: []" in result.stdout
