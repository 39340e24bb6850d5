"""The dataset registry: the one writer of ``datasets`` and ``dataset_databases``.

Provision, list, find and remove datasets; read where each one lives; and keep the control
plane's cache of each dataset's vector schema (``update_cache``, called inside the run store's
transaction). Which datasets a run takes is ``migrator.runs.selection``'s business.

``dataset_databases`` is the migrator's state of each dataset, by id. With the registry as the
source (the default) each row has its ``datasets`` row; with an external ``DATASET_SOURCE``
(``migrator.sources``) ``apply_source`` keeps the rows in line with what the source returns,
and ``datasets`` is not used.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from migrator.constants import DEFAULT_ENGINE_ID
from migrator.dataset_ids import id_problem
from migrator.db import Bind, connection, utcnow
from migrator.errors import DatasetNotFoundError, UsageError
from migrator.models import dataset_databases, datasets
from migrator.settings import Settings
from migrator.states import DatasetState
from migrator.stores import require_own_store
from migrator.urls import obfuscate_url
from migrator.vector.base import DatasetTarget
from migrator.vector.registry import adapter_factory

MAX_NAME_CHARS = 255
ID_BATCH = 500


@dataclass(frozen=True)
class DatasetRow:
    id: str
    name: str
    owner: str
    provider: str
    url: str
    state: str
    vector_schema_version: str | None
    last_migrated_at: datetime | None
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        """For output: a URL stored before credentials were refused (or edited in by hand)
        shows its password masked."""
        data = self.__dict__.copy()
        data["url"] = obfuscate_url(self.url)
        data["last_migrated_at"] = (
            self.last_migrated_at.isoformat() if self.last_migrated_at else None
        )
        return data


def validate_name(name: str) -> str:
    """Dataset names are free text but never control characters; quotes and ';' are fine."""
    if not name or not name.strip():
        raise UsageError("dataset name must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise UsageError(f"dataset name is {len(name)} characters; at most {MAX_NAME_CHARS}")
    bad = [c for c in name if unicodedata.category(c) in ("Cc", "Cs")]
    if bad:
        raise UsageError(f"dataset name contains control character(s) {bad!r}")
    return name


def validate_dataset_id(value: str) -> str:
    """A registry id (a UUID, canonical) or an external source's id, as it is stored."""
    found = as_uuid(value)
    if found is not None:
        return found
    if id_problem(value) is None:
        return value
    raise UsageError(f"dataset id {value!r} is neither a UUID nor a valid dataset id")


async def add_dataset(
    engine: AsyncEngine,
    settings: Settings,
    *,
    name: str,
    provider: str,
    url: str | None = None,
    owner: str = "admin",
    state: DatasetState = DatasetState.ACTIVE,
) -> DatasetRow:
    """Register a dataset and where its vector database lives. No credential is stored."""
    if settings.external_source:
        raise UsageError(EXTERNAL_SOURCE_REFUSAL.format(verb="add"))
    name = validate_name(name)
    adapter_cls = adapter_factory(provider)
    dataset_id = str(uuid.uuid4())
    if url is None:
        if provider != "lancedb":
            raise UsageError(f"provider {provider!r} needs --url")
        url = f"{settings.vector_db_url.rstrip('/')}/{dataset_id}"
    normalise = getattr(adapter_cls, "normalise_url", None)
    url, server_key = normalise(url) if normalise else (url, "")
    check = getattr(adapter_cls, "check_registration", None)
    if check is not None:
        check(url, settings, dataset=repr(name))
    now = utcnow()
    try:
        async with engine.begin() as conn:
            await require_own_store(
                conn, dataset=repr(name), dataset_id=None, provider=provider, url=url
            )
            await conn.execute(
                datasets.insert().values(id=dataset_id, name=name, owner=owner, created_at=now)
            )
            await conn.execute(
                dataset_databases.insert().values(
                    dataset_id=dataset_id,
                    name=name,
                    created_at=now,
                    vector_provider=provider,
                    url=url,
                    connection_info={},
                    vector_schema_version=None,
                    state=state,
                    server_key=server_key,
                )
            )
    except IntegrityError as exc:
        raise UsageError(f"a dataset named {name!r} already exists") from exc
    return DatasetRow(dataset_id, name, owner, provider, url, state, None, None, None)


EXTERNAL_SOURCE_REFUSAL = (
    "datasets {verb}: DATASET_SOURCE is not the registry; the application's source lists the "
    "datasets, so {verb} the dataset there (the next run or scheduled check picks it up)"
)
# What ``datasets list`` shows as the owner of a dataset an external source lists.
SOURCE_OWNER = "source"


def is_listed() -> sa.ColumnElement[bool]:
    """Datasets their source still lists (always every registry dataset)."""
    return dataset_databases.c.removed_at.is_(None)


def _select_rows() -> sa.Select[Any]:
    return sa.select(
        dataset_databases.c.dataset_id.label("id"),
        dataset_databases.c.name,
        sa.func.coalesce(datasets.c.owner, SOURCE_OWNER).label("owner"),
        dataset_databases.c.vector_provider.label("provider"),
        dataset_databases.c.url,
        dataset_databases.c.state,
        dataset_databases.c.vector_schema_version,
        dataset_databases.c.last_migrated_at,
        dataset_databases.c.last_error,
    ).outerjoin(datasets, dataset_databases.c.dataset_id == datasets.c.id)


async def list_datasets(
    engine: AsyncEngine, where: sa.ColumnElement[bool] | None = None
) -> list[DatasetRow]:
    """Every dataset its source lists (and ``where`` selects), oldest first."""
    query = _select_rows().where(is_listed())
    if where is not None:
        query = query.where(where)
    order = (
        dataset_databases.c.created_at,
        dataset_databases.c.name,
        dataset_databases.c.dataset_id,
    )
    async with engine.connect() as conn:
        rows = await conn.execute(query.order_by(*order))
        return [DatasetRow(**row._mapping) for row in rows]


async def find_dataset(engine: AsyncEngine, id_or_name: str) -> DatasetRow:
    """A dataset by id (first) or name; a removed one too, so its state can be read."""
    key = as_uuid(id_or_name) or id_or_name
    async with engine.connect() as conn:
        row = (
            await conn.execute(_select_rows().where(dataset_databases.c.dataset_id == key))
        ).first()
        if row is None:
            row = (
                await conn.execute(
                    _select_rows()
                    .where(dataset_databases.c.name == id_or_name)
                    .order_by(dataset_databases.c.removed_at.is_not(None))
                )
            ).first()
    if row is None:
        raise DatasetNotFoundError(f"no dataset with id or name {id_or_name!r}")
    return DatasetRow(**row._mapping)


async def remove_dataset(engine: AsyncEngine, id_or_name: str) -> DatasetRow:
    """Forget a dataset in the control plane. Its vector database is left untouched on disk."""
    row = await find_dataset(engine, id_or_name)
    async with engine.begin() as conn:
        await conn.execute(datasets.delete().where(datasets.c.id == row.id))
        await conn.execute(
            dataset_databases.delete().where(dataset_databases.c.dataset_id == row.id)
        )
    return row


async def release_dataset(engine: AsyncEngine, id_or_name: str) -> DatasetRow:
    """Take a dataset out of quarantine: ``active`` again, its failure count reset; the next
    run takes it when it is pending. ``UsageError`` when it is not quarantined."""
    row = await find_dataset(engine, id_or_name)
    if row.state != DatasetState.QUARANTINED:
        raise UsageError(f"dataset {row.id} is {row.state}, not quarantined; nothing to release")
    async with engine.begin() as conn:
        await conn.execute(
            dataset_databases.update()
            .where(
                dataset_databases.c.dataset_id == row.id,
                dataset_databases.c.state == DatasetState.QUARANTINED,
            )
            .values(state=DatasetState.ACTIVE, migration_failures=0)
        )
    return row


@dataclass(frozen=True)
class PlannedDataset:
    """What a plan shows of one dataset: where it lives (no URL) and its cached version."""

    id: str
    name: str
    provider: str
    server_key: str
    cached_version: str | None


async def planned_datasets(bind: Bind, dataset_ids: Sequence[str]) -> list[PlannedDataset]:
    """The registry's view of ``dataset_ids``, in their order; one query over the registry."""
    query = sa.select(
        dataset_databases.c.dataset_id.label("id"),
        dataset_databases.c.name,
        dataset_databases.c.vector_provider,
        dataset_databases.c.server_key,
        dataset_databases.c.vector_schema_version,
    )
    async with connection(bind) as conn:
        found = {row.id: PlannedDataset(*row) for row in await conn.execute(query)}
    return [found[d] for d in dataset_ids if d in found]


async def quarantined_ids(bind: Bind) -> list[str]:
    """Every quarantined dataset, by id."""
    async with connection(bind) as conn:
        return list(
            await conn.scalars(
                sa.select(dataset_databases.c.dataset_id)
                .where(dataset_databases.c.state == DatasetState.QUARANTINED, is_listed())
                .order_by(dataset_databases.c.dataset_id)
            )
        )


async def count_datasets(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            await conn.scalar(
                sa.select(sa.func.count()).select_from(dataset_databases).where(is_listed())
            )
            or 0
        )


async def registered_ids(bind: Bind, dataset_ids: Sequence[str]) -> list[str]:
    """``dataset_ids`` that are registered (and listed by their source), in the given order,
    each once; a value that cannot be a dataset id is a ``UsageError``."""
    wanted = list(dict.fromkeys(validate_dataset_id(d) for d in dataset_ids))
    found: set[str] = set()
    async with connection(bind) as conn:
        for start in range(0, len(wanted), ID_BATCH):
            found.update(
                await conn.scalars(
                    sa.select(dataset_databases.c.dataset_id).where(
                        dataset_databases.c.dataset_id.in_(wanted[start : start + ID_BATCH]),
                        is_listed(),
                    )
                )
            )
    return [d for d in wanted if d in found]


async def server_key_of(bind: Bind, dataset_id: str) -> str | None:
    """The server a registered dataset lives on; None when unknown or not registered."""
    async with connection(bind) as conn:
        key = await conn.scalar(
            sa.select(dataset_databases.c.server_key).where(
                dataset_databases.c.dataset_id == dataset_id
            )
        )
    return key or None


async def server_keys(engine: AsyncEngine) -> dict[str, str]:
    """The server of every registered dataset, by dataset id."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(dataset_databases.c.dataset_id, dataset_databases.c.server_key)
        )
        return {dataset_id: key for dataset_id, key in rows}


async def update_cache(
    conn: AsyncConnection,
    dataset_id: str,
    *,
    error: str | None,
    version_after: str | None = None,
    migrated_at: datetime | None = None,
    revision_failed: bool = False,
    quarantine_after_runs: int | None = None,
) -> bool:
    """Refresh what the control plane caches of a dataset after a migration attempt, inside
    the caller's transaction: its last error, and its revision and time when known. A
    migration that succeeded (``migrated_at`` given) knows the revision even when it is None
    (downgraded to base); a failed one updates it only when it reached one.

    A success resets the count of runs in a row whose migration itself raised;
    ``revision_failed`` adds one, and at ``quarantine_after_runs`` the dataset is quarantined.
    Any other failure (an outage) leaves the count as it is. True when this call quarantined
    the dataset.
    """
    this = dataset_databases.c.dataset_id == dataset_id
    cache: dict[str, Any] = {"last_error": error}
    if version_after is not None or migrated_at is not None:
        cache["vector_schema_version"] = version_after
    if migrated_at is not None:
        cache["last_migrated_at"] = migrated_at
        cache["migration_failures"] = 0
    if revision_failed:
        cache["migration_failures"] = dataset_databases.c.migration_failures + 1
    await conn.execute(dataset_databases.update().where(this).values(**cache))
    if not revision_failed or quarantine_after_runs is None:
        return False
    quarantined = await conn.execute(
        dataset_databases.update()
        .where(
            this,
            dataset_databases.c.state == DatasetState.ACTIVE,
            dataset_databases.c.migration_failures >= quarantine_after_runs,
        )
        .values(state=DatasetState.QUARANTINED)
    )
    return bool(quarantined.rowcount)


@dataclass(frozen=True)
class CachedTarget:
    """Where a dataset lives, and the vector schema version the control plane caches for it."""

    target: DatasetTarget
    cached_version: str | None


async def load_targets(bind: Bind, where: sa.ColumnElement[bool]) -> list[CachedTarget]:
    """Connection details of the datasets ``where`` selects, by id, read from the control plane
    (never from a message)."""
    query = (
        sa.select(
            dataset_databases.c.dataset_id,
            dataset_databases.c.name,
            dataset_databases.c.vector_provider,
            dataset_databases.c.url,
            dataset_databases.c.connection_info,
            dataset_databases.c.vector_schema_version,
        )
        .where(where)
        .order_by(dataset_databases.c.dataset_id)
    )
    async with connection(bind) as conn:
        rows = (await conn.execute(query)).all()
    return [
        CachedTarget(
            DatasetTarget(r.dataset_id, r.name, r.vector_provider, r.url, r.connection_info or {}),
            r.vector_schema_version,
        )
        for r in rows
    ]


async def resolve_dataset_refs(bind: Bind, refs: Sequence[str]) -> list[str]:
    """``--dataset`` values to dataset ids, in order, without duplicates: each value is an id or
    a name. A value that is one dataset's name and another's id is refused as ambiguous; one
    that is neither an id nor a name is an error naming it. A UUID that matches nothing is kept,
    for the caller's "unknown dataset id(s)" check."""
    unique = list(dict.fromkeys(refs))
    by_id: dict[str, str] = {}  # value -> the dataset whose id it is
    by_name: dict[str, str] = {}  # value -> the dataset whose name it is
    async with connection(bind) as conn:
        for start in range(0, len(unique), ID_BATCH):
            batch = unique[start : start + ID_BATCH]
            keys = {as_uuid(ref) or ref: ref for ref in batch}
            rows = await conn.execute(
                sa.select(dataset_databases.c.dataset_id.label("id"), dataset_databases.c.name)
                .where(
                    sa.or_(
                        dataset_databases.c.name.in_(batch),
                        dataset_databases.c.dataset_id.in_(list(keys)),
                    ),
                    is_listed(),
                )
                .order_by(dataset_databases.c.created_at, dataset_databases.c.dataset_id)
            )
            for row in rows:
                if row.name in batch:
                    by_name.setdefault(row.name, row.id)
                if row.id in keys:
                    by_id[keys[row.id]] = row.id
    for ref in unique:
        if ref in by_id and ref in by_name and by_id[ref] != by_name[ref]:
            raise UsageError(
                f"--dataset {ref!r} is ambiguous: it is the id of dataset {by_id[ref]} and the "
                f"name of dataset {by_name[ref]}; rename that one to select either"
            )
    matches = {ref: by_id.get(ref) or by_name.get(ref) for ref in unique}
    unknown = [ref for ref, found in matches.items() if not found and not as_uuid(ref)]
    if unknown:
        shown = ", ".join(repr(r) for r in unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        raise DatasetNotFoundError(f"no dataset with id or name {shown}")
    ids = [matches[ref] or as_uuid(ref) for ref in unique]
    return list(dict.fromkeys(i for i in ids if i))


async def dataset_name(bind: Bind, dataset_id: str) -> str | None:
    """The dataset's name; None when it is not registered."""
    async with connection(bind) as conn:
        name = await conn.scalar(
            sa.select(dataset_databases.c.name).where(dataset_databases.c.dataset_id == dataset_id)
        )
    return str(name) if name is not None else None


async def dataset_names(bind: Bind, ids: set[str]) -> dict[str, str]:
    """The names of the datasets ``ids`` names, by id (a removed one is left out)."""
    if not ids:
        return {}
    async with connection(bind) as conn:
        rows = await conn.execute(
            sa.select(dataset_databases.c.dataset_id, dataset_databases.c.name).where(
                dataset_databases.c.dataset_id.in_(sorted(ids))
            )
        )
        return {row.dataset_id: row.name for row in rows}


def as_uuid(value: str) -> str | None:
    """The canonical id a value spells, or None when it is no UUID (then it can be a name)."""
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError, TypeError):
        return None


async def load_target(bind: Bind, dataset_id: str) -> DatasetTarget:
    """Connection details for one dataset; ``DatasetNotFoundError`` when it is not registered,
    ``BadDatasetURLError`` when its store is another dataset's (a row planted by hand)."""
    async with connection(bind) as conn:
        found = await load_targets(conn, dataset_databases.c.dataset_id == dataset_id)
        if found:
            target = found[0].target
            named = target.connection_info.get("schema")
            await require_own_store(
                conn,
                dataset=dataset_id,
                dataset_id=dataset_id,
                provider=target.provider,
                url=target.url,
                schema=named if isinstance(named, str) else None,
            )
    if not found:
        raise DatasetNotFoundError(f"no dataset with id {dataset_id!r}")
    return found[0].target


def default_engine_target(settings: Settings) -> DatasetTarget:
    """The single vector engine used when backend access control is off."""
    url = settings.vector_db_url
    if settings.vector_db_provider == "lancedb":
        url = f"{url.rstrip('/')}/{DEFAULT_ENGINE_ID}"
    return DatasetTarget(DEFAULT_ENGINE_ID, DEFAULT_ENGINE_ID, settings.vector_db_provider, url)


async def cached_revisions(bind: Bind, dataset_ids: Sequence[str]) -> list[str | None]:
    """The vector revisions the control plane caches for ``dataset_ids`` (any order)."""
    found: list[str | None] = []
    async with connection(bind) as conn:
        for start in range(0, len(dataset_ids), ID_BATCH):
            chunk = list(dataset_ids[start : start + ID_BATCH])
            found += await conn.scalars(
                sa.select(dataset_databases.c.vector_schema_version).where(
                    dataset_databases.c.dataset_id.in_(chunk)
                )
            )
    return found


@dataclass(frozen=True)
class SourceRow:
    """One dataset as an external source lists it, checked (``migrator.sources``)."""

    id: str
    name: str
    provider: str
    url: str
    connection_info: dict[str, Any]
    server_key: str


@dataclass(frozen=True)
class SyncCounts:
    """What ``apply_source`` changed: datasets added, removed, back after a removal, and
    changed (name, provider, URL or connection info)."""

    added: int = 0
    removed: int = 0
    returned: int = 0
    changed: int = 0
    # Refused ids whose refusal, with the same error, an earlier sync recorded already.
    still_refused: frozenset[str] = frozenset()


_SOURCE_FIELDS = ("name", "vector_provider", "url", "connection_info", "server_key")


async def apply_source(
    engine: AsyncEngine, rows: Sequence[SourceRow], refused: dict[str, str]
) -> SyncCounts:
    """Bring ``dataset_databases`` in line with an external source's rows, in one transaction.

    A new id is added with no revision (pending); a known one takes the source's name and
    location, and is listed again if it had been removed. An id the source no longer lists
    keeps its state (revision, failures, quarantine) and is marked removed: it takes no part
    in runs until the source lists it again. ``refused`` (id -> error) are rows the source
    returned that could not be used: a known dataset among them is marked removed too, with
    the error as its ``last_error``.
    """
    try:
        return await _apply_source(engine, rows, refused)
    except IntegrityError:
        # A check and a run synced at once and the other added a dataset first: read again.
        return await _apply_source(engine, rows, refused)


async def _apply_source(
    engine: AsyncEngine, rows: Sequence[SourceRow], refused: dict[str, str]
) -> SyncCounts:
    now = utcnow()
    wanted = {row.id: row for row in rows}
    added = removed = returned = changed = 0
    still_refused: set[str] = set()
    async with engine.begin() as conn:
        known = {
            r.dataset_id: r
            for r in await conn.execute(
                sa.select(
                    dataset_databases.c.dataset_id,
                    dataset_databases.c.removed_at,
                    dataset_databases.c.last_error,
                    *(dataset_databases.c[f] for f in _SOURCE_FIELDS),
                )
            )
        }
        new = [
            {
                "dataset_id": row.id,
                "name": row.name,
                "created_at": now,
                "vector_provider": row.provider,
                "url": row.url,
                "connection_info": row.connection_info,
                "server_key": row.server_key,
                "vector_schema_version": None,
                "state": DatasetState.ACTIVE,
            }
            for row in rows
            if row.id not in known
        ]
        for start in range(0, len(new), ID_BATCH):
            await conn.execute(dataset_databases.insert(), new[start : start + ID_BATCH])
        added = len(new)
        for dataset_id, old in known.items():
            this = dataset_databases.c.dataset_id == dataset_id
            row = wanted.get(dataset_id)
            if row is None:
                reason = refused.get(dataset_id)
                refusal = None if reason is None else f"dataset source: {reason}"
                if old.removed_at is not None and refusal is not None:
                    if old.last_error == refusal:
                        still_refused.add(dataset_id)
                    else:
                        await conn.execute(
                            dataset_databases.update().where(this).values(last_error=refusal)
                        )
                elif old.removed_at is None:
                    removed += 1
                    values: dict[str, Any] = {"removed_at": now}
                    if refusal is not None:
                        values["last_error"] = refusal
                    await conn.execute(dataset_databases.update().where(this).values(**values))
                continue
            fresh = (row.name, row.provider, row.url, row.connection_info, row.server_key)
            differs = tuple(getattr(old, f) for f in _SOURCE_FIELDS) != fresh
            if differs or old.removed_at is not None:
                returned += old.removed_at is not None
                changed += differs
                await conn.execute(
                    dataset_databases.update()
                    .where(this)
                    .values({**dict(zip(_SOURCE_FIELDS, fresh, strict=True)), "removed_at": None})
                )
    return SyncCounts(added, removed, returned, changed, frozenset(still_refused))
