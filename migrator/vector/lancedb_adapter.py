"""LanceDB: the embedded default, one directory per dataset.

Every step is one LanceDB commit followed by a version row. A crash between the two leaves the
change without its row; the step then finds its work done and only writes the row. Data is never
read into memory and written back: columns are added in place, indexes built beside the data.

Two processes never migrate one directory at once: a lock file inside it is held throughout.
"""

from __future__ import annotations

import logging
import unicodedata
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path, PurePath
from typing import Any

import lancedb
import pyarrow as pa

from migrator.constants import COLLECTION_NAME, VECTOR_VERSION_TABLE
from migrator.errors import BadDatasetURLError
from migrator.locks.relational import file_lock
from migrator.settings import Settings
from migrator.urls import escape_controls, obfuscate_url
from migrator.vector.base import VersionedAdapter
from migrator.vector.schema import VectorStep

log = logging.getLogger(__name__)

_VERSION_FIELDS: list[pa.Field[Any]] = [
    pa.field("version", pa.int32(), nullable=False),
    pa.field("name", pa.string(), nullable=False),
    pa.field("applied_at", pa.timestamp("us", tz="UTC"), nullable=False),
]
VERSION_SCHEMA = pa.schema(_VERSION_FIELDS)
LOCK_FILE = ".migrator.lock"
# created_at is UTC like pgvector's timestamptz; is_deleted is filled with false for every row.
# Both go in one add_columns call: one LanceDB commit, so the step cannot half-happen.
ADDED_COLUMNS = {
    "created_at": """arrow_cast(NULL, 'Timestamp(Microsecond, Some("UTC"))')""",
    "is_deleted": "CAST(false AS BOOLEAN)",
}


def collection_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("id", pa.string(), nullable=False),
            pa.field("payload", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dimension)),
        ]
    )


def store_roots(settings: Settings) -> list[Path]:
    """VECTOR_STORE_ROOTS' local directories (real paths), or VECTOR_DB_URL's root."""
    listed = [r.strip() for r in settings.vector_store_roots.split(",") if r.strip()]
    local = [r.removeprefix("file://") for r in listed if "://" not in r.removeprefix("file://")]
    if not listed:
        local = [settings.vector_db_url.removeprefix("file://")]
    return [Path(r).expanduser().resolve() for r in local]


def require_under_roots(path: Path, settings: Settings, *, dataset: str) -> None:
    """Refuse a (resolved) dataset folder that is not strictly inside a store root."""
    roots = store_roots(settings)
    if not any(path != root and path.is_relative_to(root) for root in roots):
        shown = ", ".join(str(r) for r in roots) or "(none)"
        raise BadDatasetURLError(
            f"dataset {dataset}: lancedb folder {escape_controls(str(path))} is outside "
            f"VECTOR_STORE_ROOTS ({shown}); symlinks are followed before this check"
        )


class LanceDBAdapter(VersionedAdapter):
    provider = "lancedb"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.path = Path(self.normalise_url(self.target.url)[0])
        # A folder planted in the table by hand meets the same rule as a registered one.
        require_under_roots(self.path, self.settings, dataset=self.target.dataset_id)
        self._db: Any = None

    @classmethod
    def normalise_url(cls, url: str) -> tuple[str, str]:
        raw = url.removeprefix("file://")
        if not raw or "://" in raw:
            raise BadDatasetURLError(
                f"lancedb URL must be a local directory path, got {obfuscate_url(url)!r}"
            )
        if any(unicodedata.category(c) == "Cc" for c in raw):
            raise BadDatasetURLError(
                f"lancedb path {obfuscate_url(raw)!r} contains control characters"
            )
        if ".." in PurePath(raw).parts:
            raise BadDatasetURLError(
                f"lancedb path {obfuscate_url(raw)!r} contains '..'; name the folder directly"
            )
        # resolve() follows every symlink: the real folder is what must lie under a root.
        path = Path(raw).expanduser().resolve()
        if path.exists() and not path.is_dir():
            raise BadDatasetURLError(f"lancedb path {path} exists and is not a directory")
        return str(path), "local"

    @classmethod
    def check_registration(cls, url: str, settings: Settings, *, dataset: str) -> None:
        require_under_roots(Path(url), settings, dataset=dataset)

    async def connect(self) -> None:
        await self._connect()

    async def _connect(self) -> Any:
        if self._db is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._db = await lancedb.connect_async(str(self.path))
        return self._db

    async def _table_names(self) -> set[str]:
        db = await self._connect()
        names: list[str] = []
        page_token: str | None = None
        while True:
            response = await db.list_tables(page_token=page_token)
            names.extend(response.tables)
            page_token = response.page_token
            if not page_token:
                return set(names)

    def dataset_lock(self) -> AbstractAsyncContextManager[None]:
        return file_lock(self.path / LOCK_FILE, self.settings.dataset_timeout_s)

    async def read_version(self) -> int:
        if not self.path.is_dir():
            return 0
        if VECTOR_VERSION_TABLE not in await self._table_names():
            return 0
        table = await (await self._connect()).open_table(VECTOR_VERSION_TABLE)
        rows = (await table.query().select(["version"]).to_arrow()).column("version").to_pylist()
        return max(rows, default=0)

    async def apply_step(self, step: VectorStep) -> None:
        db = await self._connect()
        names = await self._table_names()
        if VECTOR_VERSION_TABLE not in names:
            await db.create_table(VECTOR_VERSION_TABLE, schema=VERSION_SCHEMA, exist_ok=True)
        if step.version == 1:
            if COLLECTION_NAME not in names:
                schema = collection_schema(self.settings.vector_dimension)
                await db.create_table(COLLECTION_NAME, schema=schema, exist_ok=True)
        elif step.version == 2:
            table = await db.open_table(COLLECTION_NAME)
            have = set((await table.schema()).names)
            missing = {name: sql for name, sql in ADDED_COLUMNS.items() if name not in have}
            if missing:
                await table.add_columns(missing)
        elif step.version == 3:
            table = await db.open_table(COLLECTION_NAME)
            indexed = {tuple(ix.columns) for ix in await table.list_indices()}
            if ("id",) not in indexed:
                await table.create_index("id", config=lancedb.index.BTree(), replace=True)
        else:
            raise NotImplementedError(f"lancedb adapter has no step {step.version} ({step.name})")
        await self._record(step)

    async def _record(self, step: VectorStep) -> None:
        table = await (await self._connect()).open_table(VECTOR_VERSION_TABLE)
        row = {"version": step.version, "name": step.name, "applied_at": datetime.now(UTC)}
        await table.add(pa.Table.from_pylist([row], schema=VERSION_SCHEMA))

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
