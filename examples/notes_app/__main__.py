"""A command line for trying the example by hand (``python -m notes_app``, with ``examples/`` on
PYTHONPATH and the migrator's DATABASE_URL):

    python -m notes_app tenant add acme --provider lancedb --url /data/vector/acme
    python -m notes_app tenants
    python -m notes_app note add TENANT_ID "title" "body" --tag work
    python -m notes_app search TENANT_ID "words"
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import migrator
from migrator.db import control_plane
from migrator.errors import DatasetNotFoundError
from migrator.settings import get_settings
from notes_app import service
from notes_app.models import tenants


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m notes_app", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    tenant = sub.add_parser("tenant", help="add a tenant").add_subparsers(
        dest="verb", required=True
    )
    add = tenant.add_parser("add", help="a new tenant; the migrator's next run creates its store")
    add.add_argument("name")
    add.add_argument("--provider", choices=service.PROVIDERS, default="lancedb")
    add.add_argument("--url", required=True, help="LanceDB folder or pgvector URL (no password)")
    sub.add_parser("tenants", help="every tenant and its vector schema revision")
    note = sub.add_parser("note", help="add a note").add_subparsers(dest="verb", required=True)
    note_add = note.add_parser("add", help="refused while the tenant's schema is behind")
    note_add.add_argument("tenant_id")
    note_add.add_argument("title")
    note_add.add_argument("body")
    note_add.add_argument("--tag", default="")
    find = sub.add_parser("search", help="the tenant's notes nearest the text")
    find.add_argument("tenant_id")
    find.add_argument("text")
    find.add_argument("--limit", type=int, default=5)
    return parser


async def _run(args: argparse.Namespace) -> None:
    settings = get_settings()
    async with control_plane(settings) as engine:
        if args.command == "tenant":
            tenant = await service.create_tenant(engine, args.name, args.provider, args.url)
            print(tenant.id)
        elif args.command == "tenants":
            async with engine.connect() as conn:
                rows = (await conn.execute(tenants.select().order_by(tenants.c.name))).all()
            for row in rows:
                try:
                    revision = (await migrator.dataset_status(row.id, engine=engine)).revision
                except DatasetNotFoundError:
                    revision = "(not migrated yet)"
                print(f"{row.id}  {row.name}  {row.provider}  {revision}")
        elif args.command == "note":
            print(
                await service.add_note(
                    engine, settings, args.tenant_id, args.title, args.body, tag=args.tag
                )
            )
        else:
            hits = await service.search(
                engine, settings, args.tenant_id, args.text, limit=args.limit
            )
            for hit in hits:
                print(f"{hit.distance:.3f}  {hit.id}  [{hit.tag}] {hit.title}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        asyncio.run(_run(args))
    except (migrator.MigratorError, service.UnknownTenantError) as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
