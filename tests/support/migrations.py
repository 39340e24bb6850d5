"""Copies of the control-plane migrations with revisions added on top, for tests that need an
upgrade to fail, to run slowly, or a new release to appear."""

from __future__ import annotations

import shutil
import textwrap
from functools import cache
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

from tests.support.environment import PROJECT_ROOT

REVISION_TEMPLATE = '''"""{message}"""
import time

import sqlalchemy as sa
from alembic import op

revision = "{rev}"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
{body}


def downgrade() -> None:
    pass
'''


@cache
def control_plane_head() -> str:
    """The head revision of the migrations this checkout ships."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def revision_after(revision: str, steps: int = 1) -> str:
    """The revision id ``steps`` after ``revision`` (ids are zero-padded numbers)."""
    return f"{int(revision) + steps:04d}"


def copy_migrations(root: Path) -> Path:
    """alembic.ini and migrations/ copied under ``root``; returns the copied alembic.ini."""
    shutil.copytree(
        PROJECT_ROOT / "migrations",
        root / "migrations",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(PROJECT_ROOT / "alembic.ini", root / "alembic.ini")
    return root / "alembic.ini"


def revision_source(rev: str, down: str, body: str, message: str = "test revision") -> str:
    """A revision file whose ``upgrade()`` runs ``body`` (``op``, ``sa`` and ``time`` at hand)."""
    indented = textwrap.indent(textwrap.dedent(body).strip(), "    ")
    return REVISION_TEMPLATE.format(message=message, rev=rev, down=down, body=indented)


def add_revision(ini: Path, body: str, *, name: str = "test") -> Path:
    """Write the revision after head into the copy of ``ini``; returns ``ini``."""
    rev = revision_after(control_plane_head())
    versions = ini.parent / "migrations" / "versions"
    source = revision_source(rev, control_plane_head(), body)
    (versions / f"{rev}_{name}.py").write_text(source)
    return ini


def legacy_migrations(root: Path) -> Path:
    """The migrator's migrations as released before the split: ``alembic_version``, no
    carry-over. Used to build a control plane as deployments before the split have it."""
    ini = copy_migrations(root)
    env = ini.parent / "migrations" / "env.py"
    source = env.read_text()
    for line in ("        version_table=MIGRATOR_VERSION_TABLE,\n", "        carry_over_legacy("):
        assert line in source
    source = source.replace("        version_table=MIGRATOR_VERSION_TABLE,\n", "")
    source = source.replace("        carry_over_legacy(connection, own_revisions)", "        pass")
    env.write_text(source)
    return ini
