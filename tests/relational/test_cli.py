"""The `migrator` CLI: help everywhere, one failure path with exit codes, no secret in output."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from migrator.cli import main
from migrator.db import control_plane
from migrator.models import dataset_databases, migration_run_datasets, migration_runs
from migrator.settings import Settings
from tests.support.migrations import control_plane_head
from tests.support.revisions import HEAD
from tests.support.services import REDIS_BASE_URL, REDIS_DB

# Each test starts the CLI a dozen times; under load a start alone takes seconds.
pytestmark = pytest.mark.timeout(300)

PASSWORD = "Sup3r-S3cret-pw"
COMMANDS = [
    [],
    ["run"],
    ["status"],
    ["runs"],
    ["check"],
    ["datasets"],
    ["datasets", "add"],
    ["datasets", "list"],
    ["datasets", "remove"],
]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrator.cli", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env=dict(os.environ),
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "migrator")
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main([*command, "--help"])

    assert caught.value.code == 0
    assert "usage: migrator" in capsys.readouterr().out


def test_bad_usage_exits_64_with_one_failed_line(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--no-such-flag"]) == 64
    assert main(["fly"]) == 64
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "FAILED: migrator: unrecognized arguments: --no-such-flag"
    assert err[1].startswith("FAILED: migrator: argument COMMAND: invalid choice: 'fly'")


def test_unknown_run_id_is_a_usage_error(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--no-progress"]) == 0
    assert main(["status", "0b5c0d1e-0000-0000-0000-000000000000"]) == 64
    assert "FAILED: no migration run with id '0b5c0d1e-" in capsys.readouterr().err


def test_run_json_then_runs_and_status(settings: Settings) -> None:
    first = _cli("run", "--json", "--demo")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["status"] == "succeeded"
    assert (
        summary["relational_before"] is None and summary["relational_after"] == control_plane_head()
    )
    assert summary["counts"]["total"] == 3 and summary["counts"]["succeeded"] == 3
    assert "demo: registered 3 LanceDB datasets" in first.stderr
    assert "migrating: 3/3 datasets done, 0 failed" in first.stderr

    second = _cli("run")
    assert second.returncode == 0
    assert "nothing pending: every dataset database is at head" in second.stdout

    runs = json.loads(_cli("runs", "--json").stdout)
    assert [r["total"] for r in runs] == [0, 3]  # newest first
    status = json.loads(_cli("status", "--json").stdout)
    assert status["relational_up_to_date"] is True and status["pending"] == []
    assert status["datasets_total"] == 3
    one = json.loads(_cli("status", summary["run_id"], "--json").stdout)
    assert one["run_id"] == summary["run_id"] and one["counts"]["succeeded"] == 3


def test_relational_failure_exits_1_and_names_the_cause(
    make_settings: Callable[..., Settings], migrations_copy: Callable[..., Path]
) -> None:
    make_settings(alembic_config=migrations_copy('op.execute("SELEC broken")'))

    result = _cli("run")

    assert result.returncode == 1
    failed = [line for line in result.stderr.splitlines() if line.startswith("FAILED: ")]
    assert len(failed) == 1
    assert failed[0].startswith(
        "FAILED: alembic upgrade head failed (exit 1) for the migrator's history (ALEMBIC_CONFIG): "
    )
    assert 'near "SELEC": syntax error' in failed[0]
    assert "run id: " in result.stderr


def test_missing_alembic_ini_exits_1(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    make_settings(alembic_config=tmp_path / "gone.ini")

    result = _cli("status")

    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"FAILED: alembic.ini not found at {tmp_path / 'gone.ini'} "
        "(the migrator's history (ALEMBIC_CONFIG))"
    )


def _all_run_records(settings: Settings) -> str:
    async def fetch() -> str:
        async with control_plane(settings) as engine, engine.connect() as conn:
            rows = [*await conn.execute(sa.select(migration_runs))]
            rows += [*await conn.execute(sa.select(migration_run_datasets))]
        return repr(rows)

    return asyncio.run(fetch())


def test_database_password_never_reaches_output_logs_or_records(
    make_settings: Callable[..., Settings],
    migrations_copy: Callable[..., Path],
    pg_database: Callable[[], str],
) -> None:
    # Trust auth accepts any password, so a real one travels in the URL without breaking login.
    url = pg_database().replace("postgres@", f"postgres:{PASSWORD}@")
    settings = make_settings(database_url=url, log_level="DEBUG")
    outputs = [
        _cli("run", "--json", "--demo"),
        _cli("status"),
        _cli("status", "--json"),
        _cli("runs", "--json"),
        _cli("datasets", "list", "--json"),
    ]
    assert [o.returncode for o in outputs] == [0] * len(outputs)
    make_settings(
        database_url=url,
        log_level="DEBUG",
        alembic_config=migrations_copy(f'raise RuntimeError("cannot reach {url}")'),
    )
    failing = _cli("run")
    assert failing.returncode == 1

    everything = "".join(o.stdout + o.stderr for o in [*outputs, failing])
    assert "postgres:***@127.0.0.1" in everything  # the URL was printed, redacted
    assert PASSWORD not in everything
    assert PASSWORD not in _all_run_records(settings)


def test_relative_sqlite_path_is_resolved_against_the_callers_directory(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    make_settings(database_url="sqlite:///./rel/control.db", vector_db_url="./rel/vector")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()

    result = subprocess.run(
        [sys.executable, "-m", "migrator.cli", "run", "--demo", "--json"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=workdir,
        env=dict(os.environ),
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["counts"]["succeeded"] == 3
    assert (workdir / "rel" / "control.db").is_file()
    assert len(list((workdir / "rel" / "vector").iterdir())) == 3


def test_check_reports_pending_and_reads_drift_only_with_verify(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(redis_url=f"{REDIS_BASE_URL}/{REDIS_DB}")
    assert _cli("datasets", "add", "one").returncode == 0

    pending = _cli("check", "--no-verify", "--json")
    assert pending.returncode == 2, pending.stderr
    assert json.loads(pending.stdout)["pending_count"] == 1

    assert _cli("run").returncode == 0
    added = json.loads(_cli("datasets", "add", "drifted", "--json").stdout)

    async def claim_head_in_the_cache() -> None:
        async with control_plane(settings) as engine, engine.begin() as conn:
            await conn.execute(
                dataset_databases.update()
                .where(dataset_databases.c.dataset_id == added["id"])
                .values(vector_schema_version=HEAD)
            )

    asyncio.run(claim_head_in_the_cache())  # its own directory records nothing: drift

    quick = _cli("check", "--no-verify", "--json")
    assert quick.returncode == 0, quick.stderr
    assert json.loads(quick.stdout)["drifted_count"] == 0
    verified = _cli("check", "--verify", "--json")
    assert verified.returncode == 2, verified.stderr
    report = json.loads(verified.stdout)
    assert (report["pending_count"], report["drifted"]) == (0, [added["id"]])
