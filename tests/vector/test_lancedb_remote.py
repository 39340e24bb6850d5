"""LanceDB datasets on object storage, against a real S3-compatible server (moto) on loopback:
URLs and roots, settings, every revision operation through the adapter, the version record, a
checkpointed backfill, the per-dataset lock without a local directory, and a SIGKILL part-way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from migrator.errors import (
    BadDatasetURLError,
    LockTimeoutError,
    ObjectStoreSettingsError,
    RemoteLockUnavailableError,
)
from migrator.locks.remote_store import holding_cross_machine
from migrator.settings import Settings
from migrator.vector.base import RevisionGoal, StepFailed
from migrator.vector.lancedb_adapter import LanceDBAdapter
from migrator.vector.object_store import storage_options
from migrator.vector.revisions import load_chain
from tests.support.s3_server import S3Server, s3_server
from tests.vector.helpers import (
    HEAD,
    PACKAGED,
    expected,
    lance_connect,
    lance_read,
    lance_tables,
    lance_write,
    opened,
    sample_rows,
    target,
    version_of,
)
from tests.vector.revisions.support import Dataset
from tests.vector.revisions.user_folder import IDS, first_rows, head_rows, make_folder
from tests.vector.test_interrupted import kill_child_at

MakeSettings = Callable[..., Settings]
UrlFactory = Callable[[], str]


def remote_settings(
    make_settings: MakeSettings, s3: S3Server, root: str, **more: object
) -> Settings:
    return make_settings(**s3.settings_env(root), **more)


# ---- URLs, roots and settings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "normalised", "server"),
    [
        ("s3://bucket-a/tenants/t1", "s3://bucket-a/tenants/t1", "s3://bucket-a"),
        ("S3://bucket-a/tenants/t1/", "s3://bucket-a/tenants/t1", "s3://bucket-a"),
        ("gs://bucket-b/t1", "gs://bucket-b/t1", "gs://bucket-b"),
        ("az://container-c/t1", "az://container-c/t1", "az://container-c"),
    ],
)
def test_object_store_urls_are_normalised(url: str, normalised: str, server: str) -> None:
    assert LanceDBAdapter.normalise_url(url) == (normalised, server)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://AKIAX:hunter2@bucket-a/t1", "lancedb URL s3://... carries user info"),
        ("s3://bucket-a/t1?aws_secret_access_key=hunter2", "lancedb URL s3://... carries a query"),
        ("s3://bucket-a/t1#hunter2", "lancedb URL s3://... carries a query or fragment"),
        ("s3://bucket-a:9000/t1", "lancedb URL 's3://bucket-a:9000/t1': 'bucket-a:9000' is not"),
        ("s3://bucket-a/t1/../t2", "lancedb URL 's3://bucket-a/t1/../t2' has an empty, '.'"),
        ("s3://bucket-a//t1", "lancedb URL 's3://bucket-a//t1' has an empty, '.'"),
        ("http://bucket-a/t1", "lancedb URL must be a local directory path or an s3://"),
    ],
)
def test_object_store_urls_carrying_more_than_a_place_are_refused(url: str, message: str) -> None:
    with pytest.raises(BadDatasetURLError) as caught:
        LanceDBAdapter.normalise_url(url)
    assert str(caught.value).startswith(message)
    assert "hunter2" not in str(caught.value)


def test_a_location_must_lie_strictly_under_a_listed_prefix(make_settings: MakeSettings) -> None:
    settings = make_settings(vector_store_roots="s3://bucket-a/tenants, gs://bucket-b")
    LanceDBAdapter.check_registration("s3://bucket-a/tenants/t1", settings, dataset="'x'")
    LanceDBAdapter.check_registration("gs://bucket-b/t1", settings, dataset="'x'")
    for outside in ("s3://bucket-a/tenants", "s3://bucket-a/tenants-2/t1", "s3://bucket-c/t"):
        with pytest.raises(BadDatasetURLError) as caught:
            LanceDBAdapter.check_registration(outside, settings, dataset="'x'")
        assert str(caught.value) == (
            f"dataset 'x': lancedb location {outside} is outside VECTOR_STORE_ROOTS "
            "(s3://bucket-a/tenants, gs://bucket-b)"
        )


def test_a_row_planted_outside_the_roots_is_refused_before_any_request(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings(vector_store_roots="s3://bucket-a/tenants")
    with pytest.raises(BadDatasetURLError, match="outside VECTOR_STORE_ROOTS"):
        LanceDBAdapter(target("s3://bucket-evil/t1"), settings)


def test_plain_http_needs_the_setting(make_settings: MakeSettings, s3: S3Server) -> None:
    settings = make_settings(**{**s3.settings_env("t"), "VECTOR_STORE_ALLOW_HTTP": "false"})
    adapter = LanceDBAdapter(target(f"s3://{s3.bucket}/t/one"), settings)
    with pytest.raises(StepFailed) as caught:
        asyncio.run(adapter.run_migrations())
    assert caught.value.step == "connect"
    assert isinstance(caught.value.cause, ObjectStoreSettingsError)
    assert str(caught.value.cause) == (
        f"S3 endpoint {s3.endpoint} is plain HTTP; set VECTOR_STORE_ALLOW_HTTP=true to allow it "
        "(a local S3-compatible server), or use https"
    )
    assert s3.keys("t/one") == []


def test_http_is_refused_even_when_the_aws_environment_allows_it(
    make_settings: MakeSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    settings = make_settings(vector_store_roots="s3://bucket-a/t")
    with pytest.raises(ObjectStoreSettingsError, match="is plain HTTP"):
        storage_options(settings, LanceDBAdapter(target("s3://bucket-a/t/x"), settings).remote)  # type: ignore[arg-type]
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert (
        storage_options(settings, LanceDBAdapter(target("s3://bucket-a/t/x"), settings).remote)[  # type: ignore[arg-type]
            "allow_http"
        ]
        == "false"
    )


def test_the_server_refuses_a_second_put_if_absent(s3: S3Server) -> None:
    """LanceDB commits a version by writing its manifest with ``If-None-Match: *``: two
    writers of one version cannot both succeed only if the store honours that. moto does."""
    client = s3.client()
    client.put_object(Bucket=s3.bucket, Key="conditional/one", Body=b"first")
    with pytest.raises(ClientError) as caught:
        client.put_object(Bucket=s3.bucket, Key="conditional/one", Body=b"2nd", IfNoneMatch="*")
    assert caught.value.response["Error"]["Code"] == "PreconditionFailed"
    body = client.get_object(Bucket=s3.bucket, Key="conditional/one")["Body"].read()
    assert body == b"first"


def test_lancedb_commits_each_version_with_put_if_absent(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """The other half: LanceDB asks for it. A server of its own logs each PUT's header."""
    log = tmp_path / "puts.log"
    with s3_server(request_log=log) as server:
        settings = remote_settings(make_settings, server, "t", single_machine="true")
        t = target(f"s3://{server.bucket}/t/one")
        assert asyncio.run(_migrate(t, settings)) == HEAD
    manifests = [line.split() for line in log.read_text().splitlines() if ".manifest" in line]
    assert len(manifests) >= 3  # the collection's and the history's versions, at least
    assert {m[2] for m in manifests} == {"if-none-match=*"}, manifests


# ---- the revisions on object storage ----------------------------------------------------------


def test_the_packaged_chain_on_s3_and_nothing_local(
    make_settings: MakeSettings, s3: S3Server, s3_root: str, s3_url: UrlFactory, tmp_path: Path
) -> None:
    settings = remote_settings(make_settings, s3, s3_root, single_machine="true")
    t = target(s3_url())
    rows = sample_rows(40, settings.vector_dimension)

    async def scenario() -> tuple[object, object]:
        async with opened(t, settings) as adapter:
            await adapter.run_migrations(RevisionGoal(PACKAGED[0]))
        await lance_write(t.url, rows, settings.vector_dimension)
        async with opened(t, settings) as adapter:
            first = await adapter.run_migrations()
            again = await adapter.run_migrations()
        return first, again

    first, again = asyncio.run(scenario())
    assert (first.version_before, first.version_after) == (PACKAGED[0], HEAD)  # type: ignore[attr-defined]
    assert (again.version_before, again.applied) == (HEAD, ())  # type: ignore[attr-defined]
    assert asyncio.run(version_of(t, settings)) == HEAD
    tables = asyncio.run(lance_tables(t.url))
    assert tables["versions"] == sorted(PACKAGED)
    assert tables["indices"] == [("BTree", ("id",))]
    assert {k: v[:2] for k, v in asyncio.run(lance_read(t.url)).items()} == expected(rows)
    key = t.url.removeprefix(f"s3://{s3.bucket}/")
    assert any(k.endswith(".manifest") for k in s3.keys(key + "/chunks.lance/_versions/"))
    # The dataset lives in the bucket alone; the single-machine lock file is beside SQLite.
    assert not any(p.suffix == ".lance" for p in tmp_path.rglob("*"))


@pytest.mark.slow
def test_every_operation_up_down_and_up_with_a_checkpointed_backfill_on_s3(
    make_settings: MakeSettings, s3: S3Server, s3_root: str, s3_url: UrlFactory, tmp_path: Path
) -> None:
    folder = make_folder(tmp_path / "revisions")
    settings = remote_settings(
        make_settings, s3, s3_root, single_machine="true", vector_migrations=folder
    )
    t = target(s3_url())
    rows = first_rows()
    chain = load_chain(folder)

    async def scenario() -> None:
        async with opened(t, settings) as adapter:
            await adapter.run_migrations(RevisionGoal(IDS[0]))
        dataset = Dataset("lancedb", await lance_connect(t.url))
        try:
            await dataset.insert("docs", rows)
            async with opened(t, settings) as adapter:
                up = await adapter.run_migrations()
                assert (up.version_before, up.version_after) == (IDS[0], IDS[-1])
                assert up.applied == tuple(IDS[1:])
            assert await dataset.rows("docs") == head_rows(rows)
            history = await dataset.handle.open_table("migrator_revisions")
            recorded = (await history.query().to_arrow()).column("revision").to_pylist()
            assert sorted(recorded) == IDS
            async with opened(t, settings) as adapter:
                down = await adapter.run_migrations(RevisionGoal(IDS[2], "downgrade"))
                assert down.applied == (IDS[-1], IDS[-2], IDS[-3])
                assert await adapter.read_version() == IDS[2]
                again = await adapter.run_migrations()
                assert again.applied == tuple(IDS[3:])
            assert await dataset.rows("docs") == head_rows(rows)
            assert chain.head == IDS[-1]
        finally:
            dataset.handle.close()

    asyncio.run(scenario())


# ---- the lock of a remote dataset -------------------------------------------------------------


def test_sqlite_in_process_is_refused_without_single_machine(
    make_settings: MakeSettings, s3: S3Server, s3_root: str, s3_url: UrlFactory
) -> None:
    settings = remote_settings(make_settings, s3, s3_root)
    t = target(s3_url())

    async def scenario() -> None:
        async with opened(t, settings) as adapter:
            await adapter.run_migrations()

    with pytest.raises(StepFailed) as caught:
        asyncio.run(scenario())
    assert caught.value.step == "lock"
    assert isinstance(caught.value.cause, RemoteLockUnavailableError)
    assert "SINGLE_MACHINE=true" in str(caught.value.cause)
    assert s3.keys(t.url.removeprefix(f"s3://{s3.bucket}/")) == []


def test_the_celery_path_redis_lock_stands_for_the_lock(
    make_settings: MakeSettings, s3: S3Server, s3_root: str, s3_url: UrlFactory
) -> None:
    settings = remote_settings(make_settings, s3, s3_root)
    t = target(s3_url())

    async def scenario() -> str | None:
        with holding_cross_machine(t.dataset_id):
            async with opened(t, settings) as adapter:
                return (await adapter.run_migrations()).version_after  # type: ignore[return-value]

    assert asyncio.run(scenario()) == HEAD


def test_on_postgres_the_advisory_lock_excludes_a_second_migrator(
    make_settings: MakeSettings,
    s3: S3Server,
    s3_root: str,
    s3_url: UrlFactory,
    pg_database: Callable[[], str],
) -> None:
    settings = remote_settings(
        make_settings, s3, s3_root, database_url=pg_database(), dataset_timeout_s="0.5"
    )
    t = target(s3_url())

    async def scenario() -> None:
        async with opened(t, settings) as holder, holder.dataset_lock():
            # Held even by a process that holds a Redis lock: runs of both kinds exclude.
            with holding_cross_machine(t.dataset_id):
                async with opened(t, settings) as waiter:
                    await waiter.run_migrations()

    with pytest.raises(StepFailed) as caught:
        asyncio.run(scenario())
    assert caught.value.step == "lock"
    assert isinstance(caught.value.cause, LockTimeoutError)
    assert caught.value.cause.lock_name == f"advisory lock of {t.url}"
    # Released with the holder: the next migrator goes through.
    assert asyncio.run(_migrate(t, settings)) == HEAD


async def _migrate(t: object, settings: Settings) -> str | None:
    async with opened(t, settings) as adapter:  # type: ignore[arg-type]
        return (await adapter.run_migrations()).version_after  # type: ignore[return-value]


# ---- SIGKILL part-way --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "version", "recorded", "remaining"),
    [
        ("after", 2, 2, (PACKAGED[2],)),
        # Committed to the bucket, history row not written: replayed, found done, recorded.
        ("before-record", 2, 1, (PACKAGED[1], PACKAGED[2])),
    ],
)
def test_killed_mid_migration_on_s3_is_finished_by_the_next_run(
    make_settings: MakeSettings,
    s3: S3Server,
    s3_root: str,
    s3_url: UrlFactory,
    when: str,
    version: int,
    recorded: int,
    remaining: tuple[str, ...],
) -> None:
    settings = remote_settings(make_settings, s3, s3_root, single_machine="true")
    t = target(s3_url())
    rows = sample_rows(30, settings.vector_dimension)
    asyncio.run(_migrate_to(t, settings, PACKAGED[0]))
    asyncio.run(lance_write(t.url, rows, settings.vector_dimension))

    kill_child_at("lancedb", t.url, t.dataset_id, when, version)

    assert asyncio.run(version_of(t, settings)) == PACKAGED[recorded - 1]
    result = asyncio.run(_run(t, settings))
    assert (result.version_before, result.version_after, result.applied) == (
        PACKAGED[recorded - 1],
        HEAD,
        remaining,
    )
    tables = asyncio.run(lance_tables(t.url))
    assert tables["versions"] == sorted(PACKAGED)
    assert {k: v[:2] for k, v in asyncio.run(lance_read(t.url)).items()} == expected(rows)


async def _migrate_to(t: object, settings: Settings, revision: str) -> None:
    async with opened(t, settings) as adapter:  # type: ignore[arg-type]
        await adapter.run_migrations(RevisionGoal(revision))


async def _run(t: object, settings: Settings) -> object:
    async with opened(t, settings) as adapter:  # type: ignore[arg-type]
        return await adapter.run_migrations()
