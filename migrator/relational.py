"""The relational step: ``alembic upgrade head`` against the control plane, once, under a lock,
for the migrator's history and (APP_ALEMBIC_CONFIG) the application's."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.db import control_plane
from migrator.errors import ControlPlaneTimeoutError, MigrationError, RelationalTimeoutError
from migrator.histories import (
    LEGACY_VERSION_TABLE,
    MIGRATOR_VERSION_TABLE,
    legacy_revision,
    recorded_revisions,
)
from migrator.locks.relational import relational_lock
from migrator.settings import Settings
from migrator.urls import obfuscate_url, redact

log = logging.getLogger(__name__)


MIGRATOR_HISTORY = "the migrator's history (ALEMBIC_CONFIG)"
APPLICATION_HISTORY = "the application's history (APP_ALEMBIC_CONFIG)"


@dataclass(frozen=True)
class RelationalResult:
    """What the relational step found and left: the migrator's revisions before and after (and
    the application's, when APP_ALEMBIC_CONFIG names one), Alembic's output."""

    before: str | None
    after: str | None
    head: str | None
    applied: bool
    duration_ms: int
    output: str = ""
    app_before: str | None = None
    app_after: str | None = None
    app_head: str | None = None


@dataclass(frozen=True)
class History:
    """One Alembic history of the control plane: its config, head and version table."""

    label: str
    config: Config
    head: str | None
    version_table: str

    @property
    def is_migrator(self) -> bool:
        return self.label == MIGRATOR_HISTORY


def alembic_config(settings: Settings) -> Config:
    """Load the migrator's alembic.ini; ``FileNotFoundError`` names whichever path is missing."""
    return _load_config(Path(settings.alembic_config), MIGRATOR_HISTORY)


def app_alembic_config(settings: Settings) -> Config | None:
    """Load the application's alembic.ini, when APP_ALEMBIC_CONFIG names one."""
    if settings.app_alembic_config is None:
        return None
    return _load_config(Path(settings.app_alembic_config), APPLICATION_HISTORY)


def _load_config(path: Path, label: str) -> Config:
    ini_path = path.expanduser().resolve()
    if not ini_path.is_file():
        raise FileNotFoundError(f"alembic.ini not found at {ini_path} ({label})")
    config = Config(str(ini_path))
    config.attributes["configure_logger"] = False
    script_location = config.get_main_option("script_location")
    if not script_location:
        raise FileNotFoundError(
            f"{ini_path} sets no script_location for the migrations folder ({label})"
        )
    migrations_dir = Path(script_location)
    if not migrations_dir.is_absolute():
        migrations_dir = ini_path.parent / migrations_dir
    if not (migrations_dir / "env.py").is_file():
        raise FileNotFoundError(
            f"migrations folder not found at {migrations_dir} (no env.py) ({label})"
        )
    return config


def head_revision(config: Config, label: str = MIGRATOR_HISTORY) -> str | None:
    heads = ScriptDirectory.from_config(config).get_heads()
    if len(heads) > 1:
        raise MigrationError(
            f"the migrations folder of {label} has {len(heads)} heads: {', '.join(heads)}",
            history=label,
        )
    return heads[0] if heads else None


def histories(settings: Settings) -> list[History]:
    """The migrator's history, then the application's when there is one: both configs are
    checked before the lock is taken, so a missing file fails the step before any upgrade."""
    own = alembic_config(settings)
    found = [History(MIGRATOR_HISTORY, own, head_revision(own), MIGRATOR_VERSION_TABLE)]
    app = app_alembic_config(settings)
    if app is not None:
        # Alembic reads the version table from env.py; an application that renames its own
        # says so in alembic.ini too, so the step can read it without running env.py.
        table = app.get_main_option("version_table") or LEGACY_VERSION_TABLE
        if table == MIGRATOR_VERSION_TABLE:
            raise MigrationError(
                f"{APPLICATION_HISTORY} names the migrator's version table {table}",
                history=APPLICATION_HISTORY,
            )
        head = head_revision(app, APPLICATION_HISTORY)
        found.append(History(APPLICATION_HISTORY, app, head, table))
    return found


def _own_revisions(config: Config) -> set[str]:
    return {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}


async def current_revision(engine: AsyncEngine, config: Config) -> str | None:
    """The migrator's revision: its own version table's, or, on a control plane from before the
    two histories, the migrator's revision still recorded in ``alembic_version``."""
    revision, _carried = await _migrator_revision(engine, config)
    return revision


async def _migrator_revision(engine: AsyncEngine, config: Config) -> tuple[str | None, bool]:
    """(revision, whether it already lives in the migrator's own version table)."""
    own_revisions = _own_revisions(config)

    def read(conn: Connection) -> tuple[str | None, bool]:
        if sa.inspect(conn).has_table(MIGRATOR_VERSION_TABLE):
            return _single(recorded_revisions(conn, MIGRATOR_VERSION_TABLE)), True
        return legacy_revision(conn, own_revisions), False

    async with engine.connect() as conn:
        return await conn.run_sync(read)


async def _app_revision(engine: AsyncEngine, history: History) -> str | None:
    async with engine.connect() as conn:
        rows = await conn.run_sync(recorded_revisions, history.version_table)
    return _single(rows)


def _single(rows: set[str]) -> str | None:
    return ", ".join(sorted(rows)) if rows else None


async def _states(engine: AsyncEngine, found: list[History]) -> list[tuple[str | None, bool]]:
    """(revision, at head) of each history; the migrator's is not at head until carried over."""
    states: list[tuple[str | None, bool]] = []
    legacy_is_ours = False
    for history in found:
        if history.is_migrator:
            revision, carried = await _migrator_revision(engine, history.config)
            legacy_is_ours = revision is not None and not carried
            states.append((revision, carried and revision == history.head))
        elif legacy_is_ours and history.version_table == LEGACY_VERSION_TABLE:
            # Until the carry-over, alembic_version holds the migrator's row, not the app's.
            states.append((None, False))
        else:
            revision = await _app_revision(engine, history)
            states.append((revision, revision == history.head))
    return states


async def upgrade_to_head(settings: Settings) -> RelationalResult:
    """Bring the control plane to head, the migrator's history first and then the
    application's, under one lock; a no-op, without taking the lock, when both are there."""
    found = histories(settings)
    started = time.monotonic()
    url = settings.database_url.get_secret_value()
    async with control_plane(settings) as engine:
        before = await _states(engine, found)
        if all(at_head for _, at_head in before):
            return _result(found, before, before, False, started, "")
        async with relational_lock(engine, url, settings.relational_lock_timeout_s):
            # Whoever held the lock before us may have done the work already.
            before = await _states(engine, found)
            if all(at_head for _, at_head in before):
                log.info(
                    "Control plane already at head %s (another process upgraded it).",
                    " and application ".join(str(h.head) for h in found),
                )
                return _result(found, before, before, False, started, "")
            outputs = []
            for history, (revision, at_head) in zip(found, before, strict=True):
                if at_head:
                    continue
                log.info(
                    "Upgrading control plane %s from %s to %s (%s).",
                    obfuscate_url(url),
                    revision,
                    history.head,
                    history.label,
                )
                outputs.append(await _run_alembic_upgrade(history, settings))
        after = await _states(engine, found)
    result = _result(found, before, after, True, started, "\n".join(outputs))
    log.info(
        "Control plane at %s (was %s) in %d ms.", result.after, result.before, result.duration_ms
    )
    if len(found) > 1:
        log.info("Application schema at %s (was %s).", result.app_after, result.app_before)
    return result


def _result(
    found: list[History],
    before: list[tuple[str | None, bool]],
    after: list[tuple[str | None, bool]],
    applied: bool,
    started: float,
    output: str,
) -> RelationalResult:
    app = len(found) > 1
    return RelationalResult(
        before[0][0],
        after[0][0],
        found[0].head,
        applied,
        _ms_since(started),
        output,
        app_before=before[1][0] if app else None,
        app_after=after[1][0] if app else None,
        app_head=found[1].head if app else None,
    )


async def _run_alembic_upgrade(history: History, settings: Settings) -> str:
    """Run Alembic in a child process, as upstream does, and keep everything it printed."""
    config = history.config
    assert config.config_file_name is not None
    env = dict(os.environ)
    env["DATABASE_URL"] = settings.database_url.get_secret_value()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alembic",
        "-c",
        config.config_file_name,
        "upgrade",
        "head",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=str(Path(config.config_file_name).parent),
    )
    raw, _ = await process.communicate()
    output = redact(raw.decode("utf-8", errors="replace"), settings.secrets())
    if process.returncode != 0:
        last_line = _last_meaningful_line(output)
        log.error(
            "alembic upgrade head failed (exit %s) for %s: %s\n%s",
            process.returncode,
            history.label,
            last_line,
            output,
        )
        if last_line.startswith(_CHILD_TIMED_OUT):
            # The child's engine (migrations/env.py) gave up on the control plane: say so as
            # the migrator's own engine does, and type it, so the lock and the run record do
            # not spend another timeout each on the same silent server.
            raise RelationalTimeoutError(
                last_line.removeprefix(_CHILD_TIMED_OUT),
                output=output,
                returncode=process.returncode,
                history=history.label,
            )
        raise MigrationError(
            f"alembic upgrade head failed (exit {process.returncode}) for {history.label}: "
            f"{last_line}",
            output=output,
            returncode=process.returncode,
            history=history.label,
        )
    log.debug("alembic upgrade head output: %s\n%s", history.label, output)
    return output


_EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception)\b")
# How the child's traceback ends when its engine timed out (migrator.stalls raised it there).
_CHILD_TIMED_OUT = (
    f"{ControlPlaneTimeoutError.__module__}.{ControlPlaneTimeoutError.__qualname__}: "
)


def _last_meaningful_line(output: str) -> str:
    """The exception line of a traceback (SQLAlchemy appends hints after it), else the last."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return line
    return lines[-1] if lines else "no output"


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
