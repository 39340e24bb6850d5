"""The LanceDB adapter against real LanceDB directories."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from migrator.errors import BadDatasetURLError, LockTimeoutError
from migrator.settings import Settings
from migrator.vector.base import RevisionGoal, StepFailed
from migrator.vector.lancedb_adapter import LOCK_FILE, LanceDBAdapter
from tests.vector.helpers import (
    HEAD,
    PACKAGED,
    expected,
    lance_read,
    lance_tables,
    lance_write,
    opened,
    sample_rows,
    target,
    version_of,
)

UrlFactory = Callable[[], str]


def test_an_empty_directory_is_brought_to_head(settings: Settings, lance_url: UrlFactory) -> None:
    t = target(lance_url())

    async def scenario() -> tuple[object, object]:
        async with opened(t, settings) as adapter:
            first = await adapter.run_migrations()
            again = await adapter.run_migrations()
        return first, again

    first, again = asyncio.run(scenario())
    assert (first.version_before, first.version_after) == (None, HEAD)
    assert first.applied == tuple(PACKAGED)
    assert (again.version_before, again.version_after, again.applied) == (HEAD, HEAD, ())

    tables = asyncio.run(lance_tables(t.url))
    assert tables["versions"] == sorted(PACKAGED)
    assert tables["indices"] == [("BTree", ("id",))]
    schema: pa.Schema = tables["schema"]
    assert schema.field("vector").type == pa.list_(pa.float32(), settings.vector_dimension)
    assert schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert (schema.field("is_deleted").type, schema.field("is_deleted").nullable) == (
        pa.bool_(),
        False,
    )


def test_rows_written_at_version_1_survive_to_head_byte_for_byte(
    settings: Settings, lance_url: UrlFactory
) -> None:
    t = target(lance_url())
    rows = sample_rows(300, settings.vector_dimension)

    async def scenario() -> object:
        async with opened(t, settings) as adapter:
            await adapter.run_migrations(RevisionGoal(PACKAGED[0]))
        await lance_write(t.url, rows, settings.vector_dimension)
        async with opened(t, settings) as adapter:
            return await adapter.run_migrations()

    result = asyncio.run(scenario())
    assert (result.version_before, result.version_after) == (PACKAGED[0], HEAD)
    found = asyncio.run(lance_read(t.url))
    assert {k: v[:2] for k, v in found.items()} == expected(rows)
    assert {tuple(v[2].items()) for v in found.values()} == {
        (("created_at", None), ("is_deleted", False))
    }


def test_the_lock_excludes_other_processes_and_is_released_after(
    settings: Settings, lance_url: UrlFactory
) -> None:
    """The lock file is what another process sees: held while migrating, free afterwards."""
    t = target(lance_url())
    lock_path = str(Path(t.url) / LOCK_FILE)
    probe = "import filelock, sys; filelock.FileLock(sys.argv[1]).acquire(timeout=0)"

    def other_process_can_lock() -> bool:
        return subprocess.run([sys.executable, "-c", probe, lock_path]).returncode == 0

    async def scenario() -> tuple[bool, bool]:
        async with opened(t, settings) as adapter:
            await adapter.run_migrations()
            async with adapter.dataset_lock():
                while_held = await asyncio.to_thread(other_process_can_lock)
        return while_held, await asyncio.to_thread(other_process_can_lock)

    assert asyncio.run(scenario()) == (False, True)


def test_waiting_for_a_held_lock_is_bounded(
    make_settings: Callable[..., Settings], lance_url: UrlFactory
) -> None:
    settings = make_settings(DATASET_TIMEOUT_S="0.3")
    t = target(lance_url())

    async def scenario() -> StepFailed:
        async with (
            opened(t, settings) as holder,
            holder.dataset_lock(),
            opened(t, settings) as waiter,
        ):
            with pytest.raises(StepFailed) as caught:
                await waiter.run_migrations()
        return caught.value

    failed = asyncio.run(scenario())
    assert failed.step == "lock"
    assert isinstance(failed.cause, LockTimeoutError)
    assert str(failed.cause).startswith("gave up waiting 0s for migration lock ")
    assert str(failed.cause).endswith(f"{LOCK_FILE}'")


def test_a_wait_cancelled_by_the_dataset_timeout_leaves_no_lock_behind(
    settings: Settings, lance_url: UrlFactory
) -> None:
    t = target(lance_url())

    async def scenario() -> object:
        async with opened(t, settings) as holder:
            async with holder.dataset_lock(), opened(t, settings) as waiter:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.2):
                        await waiter.run_migrations()
            async with opened(t, settings) as later, asyncio.timeout(5):
                return (await later.run_migrations()).version_after

    assert asyncio.run(scenario()) == HEAD


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://key:hunter2@bucket/ds", "lancedb URL s3://... carries user info"),
        ("ftp://key:hunter2@host/ds", "lancedb URL must be a local directory path or an s3://"),
        ("", "lancedb URL must be a local directory path or an s3://, gs://, az:// location, "),
    ],
)
def test_urls_that_are_not_local_directories_are_refused(url: str, message: str) -> None:
    with pytest.raises(BadDatasetURLError) as caught:
        LanceDBAdapter.normalise_url(url)
    assert str(caught.value).startswith(message)
    assert "hunter2" not in str(caught.value)


def test_a_path_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "not-a-dir"
    path.write_text("x")
    with pytest.raises(BadDatasetURLError) as caught:
        LanceDBAdapter.normalise_url(f"file://{path}")
    assert str(caught.value) == f"lancedb path {path} exists and is not a directory"


def test_a_directory_without_a_record_reads_as_no_revision(
    settings: Settings, lance_url: UrlFactory
) -> None:
    assert asyncio.run(version_of(target(lance_url()), settings)) is None
