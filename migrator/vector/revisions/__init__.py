"""Vector revisions the application writes: a folder of files, a validated chain, the ``op``
vocabulary that records what a revision asks for, and one executor per built-in provider.

Entry points an adapter calls::

    chain = load_chain(folder)                           # refuses a bad folder, naming the file
    await upgrade_lancedb(db, chain, context, target)    # or upgrade_pgvector(conn, schema, ...)
    await downgrade_lancedb(db, chain, context, target)  # or downgrade_pgvector(...)
    await current_lancedb(db, chain)                     # or current_pgvector(conn, schema, chain)
    await stamp_lancedb(db, chain, revision)             # or stamp_pgvector(conn, schema, ...)
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import migrator.vector_migrations
from migrator.vector.revisions.chain import RevisionChain, build_chain
from migrator.vector.revisions.chain import load_chain as _load_chain
from migrator.vector.revisions.history import AppliedRevisions, DatasetContext
from migrator.vector.revisions.plan import CheckedRevision, check_chain, plan_revision
from migrator.vector.revisions.recorder import Operations
from migrator.vector.revisions.script import Revision
from migrator.vector.revisions.template import render_revision, write_revision
from migrator.vector.revisions.types import ColumnType, parse_type, vector

if TYPE_CHECKING:
    from migrator.vector.revisions.lance_exec import (
        current_lancedb,
        downgrade_lancedb,
        plan_lancedb,
        stamp_lancedb,
        upgrade_lancedb,
    )
    from migrator.vector.revisions.pg_exec import (
        current_pgvector,
        downgrade_pgvector,
        plan_pgvector,
        stamp_pgvector,
        upgrade_pgvector,
    )

# The executors load LanceDB and asyncpg, which a chain's readers (the guard, the CLI, the run
# planner: `import migrator`) must not pay for; they are imported on first use.
_EXECUTORS = {
    **dict.fromkeys(
        (
            "current_lancedb",
            "downgrade_lancedb",
            "plan_lancedb",
            "stamp_lancedb",
            "upgrade_lancedb",
        ),
        "lance_exec",
    ),
    **dict.fromkeys(
        (
            "current_pgvector",
            "downgrade_pgvector",
            "plan_pgvector",
            "stamp_pgvector",
            "upgrade_pgvector",
        ),
        "pg_exec",
    ),
}


def __getattr__(name: str) -> Any:
    module = _EXECUTORS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


DEFAULT_FOLDER = Path(migrator.vector_migrations.__file__).resolve().parent


def load_chain(folder: Path | str | None = None) -> RevisionChain:
    """The chain of ``folder`` (default: the packaged one); a folder may build on the
    packaged revisions by naming one as its first ``down_revision``."""
    return _load_chain(folder or DEFAULT_FOLDER, base_folder=DEFAULT_FOLDER)


__all__ = [
    "DEFAULT_FOLDER",
    "AppliedRevisions",
    "CheckedRevision",
    "ColumnType",
    "DatasetContext",
    "Operations",
    "Revision",
    "RevisionChain",
    "build_chain",
    "check_chain",
    "current_lancedb",
    "current_pgvector",
    "downgrade_lancedb",
    "downgrade_pgvector",
    "load_chain",
    "parse_type",
    "plan_lancedb",
    "plan_pgvector",
    "plan_revision",
    "render_revision",
    "stamp_lancedb",
    "stamp_pgvector",
    "upgrade_lancedb",
    "upgrade_pgvector",
    "vector",
    "write_revision",
]
