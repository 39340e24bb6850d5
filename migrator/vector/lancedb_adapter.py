"""LanceDB: the embedded default, one directory per dataset, or one object-store prefix
(``s3://bucket/prefix``, ``gs://``, ``az://``; see ``migrator.vector.object_store``).

It runs the configured revision chain (VECTOR_MIGRATIONS) through the LanceDB executor of
``migrator.vector.revisions``: every operation is one LanceDB commit, the revision's history row
is written last, and a replayed operation finds its work done. Data is never read whole and
written back: columns are added in place, indexes built beside the data.

Two processes never migrate one dataset at once: a lock file inside a local directory is held
throughout; a remote dataset is locked across machines (``migrator.locks.remote_store``).
"""

from __future__ import annotations

import logging
import unicodedata
from contextlib import AbstractAsyncContextManager
from pathlib import Path, PurePath
from typing import Any

import lancedb

from migrator.errors import BadDatasetURLError
from migrator.locks.relational import file_lock
from migrator.locks.remote_store import remote_store_lock
from migrator.settings import Settings
from migrator.urls import escape_controls, obfuscate_url
from migrator.vector.base import DOWNGRADE, RevisionAdapter, RevisionGoal
from migrator.vector.chain_config import configured_chain
from migrator.vector.object_store import (
    RemoteLocation,
    is_remote,
    parse_remote,
    remote_roots,
    require_under_remote_roots,
    storage_options,
)
from migrator.vector.revisions import (
    AppliedRevisions,
    RevisionChain,
    current_lancedb,
    downgrade_lancedb,
    stamp_lancedb,
    upgrade_lancedb,
)
from migrator.vector.revisions.lance_store import row_counts
from migrator.vector.stats import ROWS_FROM_MANIFEST, StoreStats

log = logging.getLogger(__name__)

LOCK_FILE = ".migrator.lock"


def store_roots(settings: Settings) -> list[Path]:
    """VECTOR_STORE_ROOTS' local directories (real paths), or VECTOR_DB_URL's root."""
    listed = [r.strip() for r in settings.vector_store_roots.split(",") if r.strip()]
    if not listed:
        listed = [settings.vector_db_url]
    local = [r.removeprefix("file://") for r in listed if "://" not in r.removeprefix("file://")]
    return [Path(r).expanduser().resolve() for r in local]


def require_under_roots(path: Path, settings: Settings, *, dataset: str) -> None:
    """Refuse a (resolved) dataset folder that is not strictly inside a store root."""
    roots = store_roots(settings)
    if not any(path != root and path.is_relative_to(root) for root in roots):
        shown = ", ".join(str(r) for r in roots) or "no local directory"
        raise BadDatasetURLError(
            f"dataset {dataset}: lancedb folder {escape_controls(str(path))} is outside "
            f"VECTOR_STORE_ROOTS ({shown}); symlinks are followed before this check"
        )


class LanceDBAdapter(RevisionAdapter):
    provider = "lancedb"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        url = self.normalise_url(self.target.url)[0]
        # A location planted in the table by hand meets the same rule as a registered one.
        self.check_registration(url, self.settings, dataset=self.target.dataset_id)
        self.remote: RemoteLocation | None = parse_remote(url) if is_remote(url) else None
        self.path = Path(url) if self.remote is None else None
        self._db: Any = None

    @classmethod
    def normalise_url(cls, url: str) -> tuple[str, str]:
        if is_remote(url):
            location = parse_remote(url)
            return location.url, location.server_key
        raw = url.removeprefix("file://")
        if not raw or "://" in raw:
            raise BadDatasetURLError(
                "lancedb URL must be a local directory path or an s3://, gs://, az:// "
                f"location, got {obfuscate_url(url)!r}"
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
        if is_remote(url):
            remote_roots(settings)  # a bad VECTOR_STORE_ROOTS entry is named before anything
            require_under_remote_roots(parse_remote(url), settings, dataset=dataset)
        else:
            require_under_roots(Path(url), settings, dataset=dataset)

    async def connect(self) -> None:
        await self._connect()

    async def _connect(self) -> Any:
        if self._db is None:
            if self.remote is not None:
                self._db = await lancedb.connect_async(
                    self.remote.url, storage_options=storage_options(self.settings, self.remote)
                )
            else:
                assert self.path is not None
                self.path.mkdir(parents=True, exist_ok=True)
                self._db = await lancedb.connect_async(str(self.path))
        return self._db

    def dataset_lock(self) -> AbstractAsyncContextManager[None]:
        if self.remote is not None:
            return remote_store_lock(
                self.settings, dataset_id=self.target.dataset_id, store_url=self.remote.url
            )
        assert self.path is not None
        return file_lock(self.path / LOCK_FILE, self.settings.dataset_timeout_s)

    async def current(self, chain: RevisionChain) -> str | None:
        if self.path is not None and not self.path.is_dir():
            return None
        return await current_lancedb(await self._connect(), chain)

    async def read_stats(self) -> StoreStats:
        if self.path is not None and not self.path.is_dir():
            return StoreStats(None, {}, ROWS_FROM_MANIFEST)  # read only: nothing is created
        db = await self._connect()
        chain = configured_chain(self.settings)
        return StoreStats(
            await current_lancedb(db, chain), await row_counts(db), ROWS_FROM_MANIFEST
        )

    async def apply(
        self, chain: RevisionChain, goal: RevisionGoal, on_revision: Any
    ) -> AppliedRevisions:
        db = await self._connect()
        if goal.direction == DOWNGRADE:
            return await downgrade_lancedb(
                db, chain, self.context, goal.target, on_revision, self.heavy
            )
        return await upgrade_lancedb(db, chain, self.context, goal.target, on_revision, self.heavy)

    async def stamp(self, chain: RevisionChain, revision: str | None) -> None:
        await stamp_lancedb(await self._connect(), chain, revision)

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
