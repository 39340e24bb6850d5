"""``migrator datasets add|list|remove``: provision dataset databases in the control plane.

With an external DATASET_SOURCE, ``list`` reads the source (and records it, as a run does) and
``add``/``remove`` refuse: the application's source owns the list."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from migrator.cli.output import print_json, print_table
from migrator.errors import EXIT_OK, UsageError
from migrator.settings import Settings


def register(commands: Any) -> None:
    from migrator.cli import _Parser

    group = commands.add_parser(
        "datasets",
        help="add, list, remove or release dataset databases",
        description="Provision dataset databases in the control plane.",
    )
    verbs = group.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    verbs.required = True

    add = verbs.add_parser(
        "add",
        help="register a dataset and its vector database",
        description="Register a dataset. LanceDB datasets get a directory under VECTOR_DB_URL "
        "unless --url is given; pgvector needs --url postgresql://host:port/dbname (no "
        "password: it comes from VECTOR_DB_PASSWORD).",
    )
    add.add_argument("name", help="dataset name (any text but control characters)")
    add.add_argument("--provider", default="lancedb", help="vector provider (default lancedb)")
    add.add_argument("--url", default=None, help="where the dataset's vector database lives")
    add.add_argument("--owner", default="admin", help="owner recorded with the dataset")
    add.add_argument("--json", action="store_true", help="print JSON")
    add.set_defaults(handler=add_command)

    listing = verbs.add_parser(
        "list",
        help="list datasets",
        description="List datasets. With an external DATASET_SOURCE: the datasets it returns "
        "now, with the migrator's state of each (the source is synced first, as a run does); "
        "refused rows are printed on stderr.",
    )
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=list_command)

    remove = verbs.add_parser(
        "remove",
        help="forget a dataset (its vector data stays on disk)",
        description="Remove a dataset from the control plane. Its vector database is not deleted.",
    )
    remove.add_argument("dataset", metavar="ID_OR_NAME", help="dataset id or name")
    remove.set_defaults(handler=remove_command)

    release = verbs.add_parser(
        "release",
        help="take a dataset out of quarantine",
        description="Take a quarantined dataset out of quarantine: it is active again and the "
        "next run takes it when it is behind. A dataset is quarantined after its migration "
        "itself failed QUARANTINE_AFTER_RUNS runs in a row.",
    )
    release.add_argument("dataset", metavar="ID_OR_NAME", help="dataset id or name")
    release.set_defaults(handler=release_command)


def _refuse_external(settings: Settings, verb: str) -> None:
    from migrator.datasets import EXTERNAL_SOURCE_REFUSAL

    if settings.external_source:
        raise UsageError(EXTERNAL_SOURCE_REFUSAL.format(verb=verb))


def add_command(args: argparse.Namespace, settings: Settings) -> int:
    from migrator.cli import on_control_plane
    from migrator.datasets import add_dataset

    _refuse_external(settings, "add")
    row = on_control_plane(
        settings,
        lambda engine: add_dataset(
            engine, settings, name=args.name, provider=args.provider, url=args.url, owner=args.owner
        ),
        upgrade_first=True,
    )
    if args.json:
        print_json(row.to_dict())
    else:
        print(f"added dataset {row.id} {row.name!r} ({row.provider}) at {row.url}")
    return EXIT_OK


def list_command(args: argparse.Namespace, settings: Settings) -> int:
    from migrator.cli import on_control_plane
    from migrator.datasets import DatasetRow, list_datasets
    from migrator.sources import SourceSync, sync_source

    async def synced_list(engine: Any) -> tuple[SourceSync | None, list[DatasetRow]]:
        return await sync_source(engine, settings), await list_datasets(engine)

    synced, found = on_control_plane(settings, synced_list, upgrade_first=True)
    rows = [r.to_dict() for r in found]
    for error in synced.errors if synced else []:
        print(
            f"refused source row {error.row} (id {error.dataset_id}): {error.error}",
            file=sys.stderr,
        )
    if args.json:
        print_json(rows)
    else:
        print_table(
            rows, ["id", "name", "provider", "state", "vector_schema_version", "url", "last_error"]
        )
    return EXIT_OK


def remove_command(args: argparse.Namespace, settings: Settings) -> int:
    from migrator.cli import on_control_plane
    from migrator.datasets import remove_dataset

    _refuse_external(settings, "remove")
    row = on_control_plane(settings, lambda engine: remove_dataset(engine, args.dataset))
    url = row.to_dict()["url"]
    print(f"removed dataset {row.id} {row.name!r}; its vector database at {url} was kept")
    return EXIT_OK


def release_command(args: argparse.Namespace, settings: Settings) -> int:
    from migrator.cli import on_control_plane
    from migrator.datasets import release_dataset

    row = on_control_plane(settings, lambda engine: release_dataset(engine, args.dataset))
    print(f"released dataset {row.id} {row.name!r}: active again")
    return EXIT_OK
