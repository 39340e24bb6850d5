"""pgvector: a dataset's pending revisions of transactional DDL commit once, together (one
commit per dataset, not one per step), and a revision with a backfill commits in its phases.

Commits that write are counted by the transaction ids the server handed out meanwhile
(``pg_current_snapshot()``'s xmax moves by one per writing transaction, whoever sent it: no
autocommit statement slips by); only those flush the WAL. The ``COMMIT`` statements the
connection sends are counted too (asyncpg's query logger): each upgrade call also commits the
read-only check that its history tables exist (``CREATE ... IF NOT EXISTS``, no transaction id).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from migrator.vector.revisions import load_chain
from tests.vector.revisions.support import open_dataset, revision_file, write_folder

NEXT_XID = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
DDL_REVISIONS = {
    "b": 'op.add_column("docs", "is_deleted", "bool", default=False, nullable=False)',
    "c": 'op.create_index("docs", "id", kind="btree", name="docs_id")',
    "d": 'op.add_column("docs", "note", "string")',
}


def folder(root: Path) -> Path:
    files = {
        "a.py": revision_file(
            "a", None, 'op.create_collection("docs", {"id": "int64"}, vector={"vector": 3})'
        )
    }
    down = "a"
    for rev, body in DDL_REVISIONS.items():
        files[f"{rev}.py"] = revision_file(rev, down, body)
        down = rev
    files["e.py"] = revision_file(
        "e",
        "d",
        """
        import pyarrow.compute as pc
        op.add_column("docs", "digest", "int64")
        op.backfill("docs", "digest", lambda b: pc.multiply(b.column("id"), 3),
                    columns=["id"], batch_size=2)
        """,
    )
    return write_folder(root, files)


class Commits:
    """What one connection commits while the block runs."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements = 0
        self.xids = 0

    def _log(self, record: Any) -> None:
        if record.query.strip().rstrip(";").upper() == "COMMIT":
            self.statements += 1

    async def __aenter__(self) -> Commits:
        self._next_xid = await self.conn.fetchval(NEXT_XID)
        self.conn.add_query_logger(self._log)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.conn.remove_query_logger(self._log)
        self.xids = int(await self.conn.fetchval(NEXT_XID)) - int(self._next_xid)


def test_pending_ddl_revisions_commit_once(tmp_path: Path, pgvector_db: Callable[[], str]) -> None:
    chain = load_chain(folder(tmp_path / "revisions"))
    url = pgvector_db()

    async def scenario() -> tuple[Commits, Commits]:
        async with open_dataset("pgvector", url) as dataset:
            await dataset.upgrade(chain, "a")
            await dataset.insert("docs", [{"id": i, "vector": [1.0, 2.0, 3.0]} for i in range(5)])
            async with Commits(dataset.handle) as together:
                applied = await dataset.upgrade(chain, "d")
            assert list(applied.applied) == ["b", "c", "d"]
            async with Commits(dataset.handle) as phased:
                await dataset.upgrade(chain, "e")
            return together, phased

    together, phased = asyncio.run(scenario())

    assert together.xids == 1, vars(together)
    assert together.statements == 2, vars(together)  # the one write and the read-only check
    # The backfill's revision: its DDL, each batch of 2 of the 5 rows with its checkpoint, then
    # its history row, each committed on its own so a killed backfill resumes.
    assert phased.xids >= 4, vars(phased)


def test_one_revision_at_a_time_commits_once_each(
    tmp_path: Path, pgvector_db: Callable[[], str]
) -> None:
    """The same three revisions applied one call at a time: three commits. The measure above
    tells the two apart."""
    chain = load_chain(folder(tmp_path / "revisions"))
    url = pgvector_db()

    async def scenario() -> Commits:
        async with open_dataset("pgvector", url) as dataset:
            await dataset.upgrade(chain, "a")
            async with Commits(dataset.handle) as each:
                for target in DDL_REVISIONS:
                    await dataset.upgrade(chain, target)
            return each

    each = asyncio.run(scenario())

    assert each.xids == 3, vars(each)
    assert each.statements == 6, vars(each)
