"""When a revision fails: on pgvector the pending transactional revisions roll back together
with their history rows; on LanceDB the revisions before it stay applied and recorded. A
dataset recording a revision the folder does not know is refused, naming it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from migrator.vector.revisions import current_lancedb, load_chain
from migrator.vector.revisions.errors import RevisionApplyError, UnknownRevisionError
from tests.vector.revisions.support import open_dataset, revision_file, write_folder

GOOD = {
    "a.py": revision_file("a", None, 'op.create_collection("t", {"id": "string"})'),
    "b.py": revision_file("b", "a", 'op.add_column("t", "c", "int64", default=1)'),
}


@pytest.mark.slow
def test_pgvector_rolls_back_every_pending_transactional_revision(
    tmp_path: Path, pgvector_db: Callable[[], str]
) -> None:
    files = dict(GOOD)
    files["c.py"] = revision_file("c", "b", 'op.execute("SELECT 1 / 0")') + (
        'providers = ("pgvector",)\n'
    )
    chain = load_chain(write_folder(tmp_path / "v", files))
    url = pgvector_db()

    async def scenario() -> None:
        async with open_dataset("pgvector", url) as dataset:
            with pytest.raises(RevisionApplyError) as caught:
                await dataset.upgrade(chain)
            assert "revision 'c' failed at execute('SELECT 1 / 0')" in str(caught.value)
            assert "DivisionByZeroError" in str(caught.value)
            assert await dataset.handle.fetchval("SELECT to_regclass('app_revisions.t')") is None
            recorded = await dataset.handle.fetchval(
                "SELECT count(*) FROM app_revisions.migrator_revisions"
            )
            assert recorded == 0
            applied = await dataset.upgrade(chain, "b")
            assert applied.applied == ("a", "b")

    asyncio.run(scenario())


def test_lancedb_keeps_the_revisions_before_a_failure(
    tmp_path: Path, lance_url: Callable[[], str]
) -> None:
    files = dict(GOOD)
    files["c.py"] = revision_file("c", "b", "op.native(boom)") + (
        'providers = ("lancedb",)\n\n\ndef boom(db):\n    raise RuntimeError("native failed")\n'
    )
    chain = load_chain(write_folder(tmp_path / "v", files))
    url = lance_url()

    async def scenario() -> None:
        async with open_dataset("lancedb", url) as dataset:
            with pytest.raises(RevisionApplyError, match=r"'c' failed at native\(boom\): Runtime"):
                await dataset.upgrade(chain)
            assert await current_lancedb(dataset.handle, chain) == "b"

    asyncio.run(scenario())


def test_a_revision_recorded_by_newer_code_is_refused_naming_it(
    tmp_path: Path, lance_url: Callable[[], str]
) -> None:
    url = lance_url()
    newer = dict(GOOD)
    newer["z.py"] = revision_file("z_from_elsewhere", "b", "pass")

    async def scenario() -> None:
        async with open_dataset("lancedb", url) as dataset:
            await dataset.upgrade(load_chain(write_folder(tmp_path / "newer", newer)))
            with pytest.raises(UnknownRevisionError, match=r"'z_from_elsewhere' \(recorded by"):
                await dataset.upgrade(load_chain(write_folder(tmp_path / "older", GOOD)))

    asyncio.run(scenario())
