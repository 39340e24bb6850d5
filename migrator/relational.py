"""The relational step: ``alembic upgrade head`` against the control plane, once, under a lock."""

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
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.db import control_plane
from migrator.errors import MigrationError
from migrator.locks.relational import relational_lock
from migrator.settings import Settings
from migrator.urls import obfuscate_url, redact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RelationalResult:
    """What the relational step found and left: revisions before and after, Alembic's output."""

    before: str | None
    after: str | None
    head: str | None
    applied: bool
    duration_ms: int
    output: str = ""


def alembic_config(settings: Settings) -> Config:
    """Load alembic.ini; ``FileNotFoundError`` names whichever path is missing."""
    ini_path = Path(settings.alembic_config).expanduser().resolve()
    if not ini_path.is_file():
        raise FileNotFoundError(f"alembic.ini not found at {ini_path}")
    config = Config(str(ini_path))
    config.attributes["configure_logger"] = False
    script_location = config.get_main_option("script_location")
    if not script_location:
        raise FileNotFoundError(f"{ini_path} sets no script_location for the migrations folder")
    migrations_dir = Path(script_location)
    if not migrations_dir.is_absolute():
        migrations_dir = ini_path.parent / migrations_dir
    if not (migrations_dir / "env.py").is_file():
        raise FileNotFoundError(f"migrations folder not found at {migrations_dir} (no env.py)")
    return config


def head_revision(config: Config) -> str | None:
    heads = ScriptDirectory.from_config(config).get_heads()
    if len(heads) > 1:
        raise MigrationError(f"the migrations folder has {len(heads)} heads: {', '.join(heads)}")
    return heads[0] if heads else None


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision recorded in ``alembic_version``; None for an empty database."""
    async with engine.connect() as conn:
        has_table = await conn.run_sync(
            lambda sync_conn: sa.inspect(sync_conn).has_table("alembic_version")
        )
        if not has_table:
            return None
        version = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
        return None if version is None else str(version)


async def upgrade_to_head(settings: Settings) -> RelationalResult:
    """Bring the control plane to head; a no-op, without taking the lock, when it is there."""
    config = alembic_config(settings)
    head = head_revision(config)
    started = time.monotonic()
    url = settings.database_url.get_secret_value()
    async with control_plane(settings) as engine:
        before = await current_revision(engine)
        if before == head:
            return RelationalResult(before, before, head, False, _ms_since(started))
        async with relational_lock(engine, url, settings.relational_lock_timeout_s):
            # Whoever held the lock before us may have done the work already.
            before = await current_revision(engine)
            if before == head:
                log.info("Control plane already at head %s (another process upgraded it).", head)
                return RelationalResult(before, before, head, False, _ms_since(started))
            log.info("Upgrading control plane %s from %s to %s.", obfuscate_url(url), before, head)
            output = await _run_alembic_upgrade(config, settings)
        after = await current_revision(engine)
    duration_ms = _ms_since(started)
    log.info("Control plane at %s (was %s) in %d ms.", after, before, duration_ms)
    return RelationalResult(before, after, head, True, duration_ms, output)


async def _run_alembic_upgrade(config: Config, settings: Settings) -> str:
    """Run Alembic in a child process, as upstream does, and keep everything it printed."""
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
            "alembic upgrade head failed (exit %s): %s\n%s", process.returncode, last_line, output
        )
        raise MigrationError(
            f"alembic upgrade head failed (exit {process.returncode}): {last_line}",
            output=output,
            returncode=process.returncode,
        )
    log.debug("alembic upgrade head output:\n%s", output)
    return output


_EXCEPTION_LINE = re.compile(r"^[\w.]+(Error|Exception)\b")


def _last_meaningful_line(output: str) -> str:
    """The exception line of a traceback (SQLAlchemy appends hints after it), else the last."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return line
    return lines[-1] if lines else "no output"


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
