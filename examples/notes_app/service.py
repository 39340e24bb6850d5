"""What the notes application does: register tenants, add notes, search them.

``add_note`` is the write path: before it touches a tenant's vector store it asks the migrator
whether that tenant's vector schema is at the head of this release's revisions
(``migrator.require_current``), and refuses the write with ``DatasetBehindError`` when a
migration failed or has not reached the tenant yet.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

import migrator
from migrator.settings import Settings
from notes_app import VECTOR_MIGRATIONS
from notes_app.embedding import embed
from notes_app.models import notes, tenants
from notes_app.stores import Hit, VectorNote, search_notes, write_note

PROVIDERS = ("lancedb", "pgvector")


class UnknownTenantError(LookupError):
    """Raised when a tenant id is not in the application's tenants table."""


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    provider: str
    vector_url: str


async def create_tenant(
    engine: AsyncEngine,
    name: str,
    provider: str,
    vector_url: str,
    *,
    tenant_id: str | None = None,
) -> Tenant:
    """Add a tenant. Its vector store is made by the migrator's next run (a deploy, the
    scheduled check, an admin's ``migrator run``); until then ``add_note`` refuses it."""
    if provider not in PROVIDERS:
        raise ValueError(f"provider must be one of {', '.join(PROVIDERS)}, got {provider!r}")
    tenant = Tenant(tenant_id or str(uuid.uuid4()), name, provider, vector_url)
    async with engine.begin() as conn:
        await conn.execute(
            tenants.insert().values(
                id=tenant.id,
                name=name,
                provider=provider,
                vector_url=vector_url,
                created_at=datetime.now(UTC),
            )
        )
    return tenant


async def get_tenant(engine: AsyncEngine, tenant_id: str) -> Tenant:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(
                    tenants.c.id, tenants.c.name, tenants.c.provider, tenants.c.vector_url
                ).where(tenants.c.id == tenant_id)
            )
        ).first()
    if row is None:
        raise UnknownTenantError(f"no tenant with id {tenant_id!r}")
    return Tenant(row.id, row.name, row.provider, row.vector_url)


async def add_note(
    engine: AsyncEngine,
    settings: Settings,
    tenant_id: str,
    title: str,
    body: str,
    *,
    tag: str = "",
) -> str:
    """Store a note in the tenant's vector store and list it in ``notes``; its id.

    Raises ``migrator.DatasetBehindError`` when the tenant's vector schema is below this
    release's head (the write would need columns it lacks), and
    ``migrator.errors.DatasetNotFoundError`` when no migrator run has seen the tenant yet.
    """
    tenant = await get_tenant(engine, tenant_id)
    # One primary-key read of the control plane, on the application's own engine.
    await migrator.require_current(tenant.id, folder=VECTOR_MIGRATIONS, engine=engine)
    note = VectorNote(
        str(uuid.uuid4()), title, body, tag, embed(f"{title} {body}", settings.vector_dimension)
    )
    await write_note(tenant.provider, tenant.vector_url, tenant.id, note, settings)
    async with engine.begin() as conn:
        await conn.execute(
            notes.insert().values(
                id=note.id, tenant_id=tenant.id, title=title, tag=tag, created_at=datetime.now(UTC)
            )
        )
    return note.id


async def search(
    engine: AsyncEngine, settings: Settings, tenant_id: str, text: str, *, limit: int = 5
) -> list[Hit]:
    """The tenant's notes nearest ``text``, nearest first."""
    tenant = await get_tenant(engine, tenant_id)
    vector = embed(text, settings.vector_dimension)
    return await search_notes(
        tenant.provider, tenant.vector_url, tenant.id, vector, limit, settings
    )
