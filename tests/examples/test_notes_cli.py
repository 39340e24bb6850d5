"""The example as a person tries it: only environment variables (the README's list, PYTHONPATH
included) turn the migrator's CLI and ``python -m notes_app`` into the notes application, on a
SQLite control plane with a LanceDB tenant."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.environment import PROJECT_ROOT
from tests.support.notes_app import EXAMPLES, NOTES_HEAD, adoption_env, notes_app
from tests.support.processes import run_migrator

TIMEOUT_S = 90.0
pytestmark = pytest.mark.slow


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'control.db'}",
        "VECTOR_DB_URL": str(tmp_path / "vector"),
        "VECTOR_DIMENSION": "8",
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), str(EXAMPLES)]),
        **adoption_env(),
    }


def _notes(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "notes_app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        stdin=subprocess.DEVNULL,
        cwd=PROJECT_ROOT,
    )


def test_environment_alone_turns_the_migrator_into_the_notes_app(tmp_path: Path) -> None:
    env = _env(tmp_path)
    first = run_migrator("run", "--no-progress", env=env, cwd=tmp_path, timeout_s=TIMEOUT_S)
    assert first.returncode == 0, first.stderr
    # The plain alembic CLI on the application's config: its models match its revisions, and
    # the migrator's tables beside them are not its business.
    check = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(notes_app.ALEMBIC_INI), "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=tmp_path,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected." in check.stdout + check.stderr

    added = _notes(env, "tenant", "add", "acme", "--url", str(tmp_path / "vector" / "acme"))
    assert added.returncode == 0, added.stderr
    tenant_id = added.stdout.strip()
    refused = _notes(env, "note", "add", tenant_id, "plan", "ship it")
    assert refused.returncode == 1
    assert refused.stderr.startswith("FAILED: ")
    assert tenant_id in refused.stderr

    second = run_migrator("run", "--no-progress", env=env, cwd=tmp_path, timeout_s=TIMEOUT_S)
    assert second.returncode == 0, second.stderr
    note = _notes(env, "note", "add", tenant_id, "plan", "ship it", "--tag", "work")
    assert note.returncode == 0, note.stderr
    found = _notes(env, "search", tenant_id, "plan ship it")
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines()[0].endswith(f"{note.stdout.strip()}  [work] plan")
    listed = _notes(env, "tenants")
    assert listed.stdout.split() == [tenant_id, "acme", "lancedb", NOTES_HEAD]
