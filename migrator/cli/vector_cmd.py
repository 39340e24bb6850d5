"""``migrator vector revision|history|heads|current|check|stamp|sql``: the configured vector
revision chain (VECTOR_MIGRATIONS), and what a dataset records of it."""

from __future__ import annotations

import argparse
from typing import Any

from migrator.cli.output import print_json, print_table
from migrator.errors import EXIT_OK, UsageError
from migrator.settings import Settings


def register(commands: Any) -> None:
    from migrator.cli import _Parser

    group = commands.add_parser(
        "vector",
        help="the vector revision chain: write, list, check, stamp, show SQL",
        description="The vector revision chain of VECTOR_MIGRATIONS (default: the packaged "
        "folder). Runs apply it: migrator run / enqueue [--to REV], migrator downgrade --to REV.",
    )
    verbs = group.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    verbs.required = True

    revision = verbs.add_parser(
        "revision",
        help="write a new revision file on top of the head",
        description="Write <id>.py into the folder from the template, down_revision = the head.",
    )
    revision.add_argument("-m", "--message", required=True, help="what the revision does")
    revision.add_argument("--rev-id", default=None, help="the revision id (default: numbered)")
    _json(revision).set_defaults(handler=revision_command)

    history = verbs.add_parser("history", help="list the chain, base first")
    _json(history).set_defaults(handler=history_command)
    heads = verbs.add_parser("heads", help="print the chain's head")
    _json(heads).set_defaults(handler=heads_command)

    current = verbs.add_parser(
        "current",
        help="the revision each dataset is at (its own record with --dataset, else the cache)",
    )
    current.add_argument("--dataset", metavar="ID_OR_NAME", default=None)
    _json(current).set_defaults(handler=current_command)

    check = verbs.add_parser(
        "check",
        help="offline: import every file, validate the chain and every operation",
        description="No database is opened. Exit 0 when the chain is valid for every provider "
        "(or those named), 1 naming the first file or operation that is not.",
    )
    check.add_argument("--provider", action="append", default=None, metavar="P")
    _json(check).set_defaults(handler=check_command)

    stamp = verbs.add_parser(
        "stamp",
        help="record a dataset at REV without running anything (repair)",
        description="Record the dataset at REV ('base': none) in its own record and the cache.",
    )
    stamp.add_argument("--dataset", metavar="ID_OR_NAME", required=True)
    stamp.add_argument("revision", metavar="REV")
    _json(stamp).set_defaults(handler=stamp_command)

    sql = verbs.add_parser(
        "sql",
        help="print the SQL a pgvector dataset would execute up to --to REV; executes nothing",
        description="The --sql dry run: each pending revision's statements as planned against "
        "the dataset's current state. A Python backfill shows as a comment.",
    )
    sql.add_argument("--dataset", metavar="ID_OR_NAME", required=True)
    sql.add_argument("--to", dest="to_revision", metavar="REV", default=None)
    _json(sql).set_defaults(handler=sql_command)


def _json(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _chain(settings: Settings) -> Any:
    from migrator.vector.chain_config import configured_chain

    return configured_chain(settings)


def revision_command(args: argparse.Namespace, settings: Settings) -> int:
    from migrator.vector.revisions import write_revision

    chain = _chain(settings)
    path = write_revision(chain, args.message, args.rev_id)
    if args.json:
        print_json({"path": str(path), "down_revision": chain.head})
    else:
        print(f"wrote {path} (down_revision {chain.head!r})")
    return EXIT_OK


def history_command(args: argparse.Namespace, settings: Settings) -> int:
    chain = _chain(settings)
    rows = [
        {
            "revision": r.revision,
            "down_revision": r.down_revision,
            "message": r.message,
            "downgrade": r.downgrade is not None,
            "providers": list(r.providers) if r.providers else None,
            "path": str(r.path),
        }
        for r in chain.revisions
    ]
    if args.json:
        print_json(rows)
    else:
        print_table(rows, ["revision", "down_revision", "message", "downgrade"])
    return EXIT_OK


def heads_command(args: argparse.Namespace, settings: Settings) -> int:
    chain = _chain(settings)
    if args.json:
        print_json({"head": chain.head, "folder": str(chain.folder)})
    else:
        print(chain.head or "(empty chain)")
    return EXIT_OK


def check_command(args: argparse.Namespace, settings: Settings) -> int:
    from migrator.vector.revisions import check_chain
    from migrator.vector.revisions.providers import PROVIDERS

    providers = args.provider or list(PROVIDERS)
    unknown = sorted(set(providers) - set(PROVIDERS))
    if unknown:
        raise UsageError(
            f"no offline check for provider(s) {', '.join(unknown)}; known: {', '.join(PROVIDERS)}"
        )
    chain = _chain(settings)
    checked = check_chain(chain, providers)
    if args.json:
        print_json(
            {
                "head": chain.head,
                "revisions": len(chain.revisions),
                "providers": providers,
                "checked": [c.__dict__ for c in checked],
            }
        )
    else:
        print(
            f"ok: {len(chain.revisions)} revision(s), head {chain.head!r}, valid for "
            f"{', '.join(providers)}"
        )
    return EXIT_OK


def current_command(args: argparse.Namespace, settings: Settings) -> int:
    from migrator.cli import on_control_plane

    if args.dataset is None:
        from migrator.datasets import list_datasets

        rows = on_control_plane(settings, list_datasets)
        data = [
            {"id": r.id, "name": r.name, "cached_revision": r.vector_schema_version} for r in rows
        ]
        if args.json:
            print_json(data)
        else:
            print_table(data, ["id", "name", "cached_revision"])
        return EXIT_OK
    target = on_control_plane(settings, lambda engine: _target(engine, args.dataset))
    from migrator.cli import run_async

    revision = run_async(_read(target, settings))
    if args.json:
        print_json({"dataset_id": target.dataset_id, "revision": revision})
    else:
        print(revision or "(no revision)")
    return EXIT_OK


def stamp_command(args: argparse.Namespace, settings: Settings) -> int:
    from migrator.cli import on_control_plane, run_async

    revision = None if args.revision == "base" else args.revision
    chain = _chain(settings)
    if revision is not None:
        chain.get(revision, "stamp target")
    target = on_control_plane(settings, lambda engine: _target(engine, args.dataset))
    run_async(_stamp(target, settings, chain, revision))
    on_control_plane(settings, lambda engine: _cache(engine, target.dataset_id, revision))
    if args.json:
        print_json({"dataset_id": target.dataset_id, "revision": revision})
    else:
        print(f"dataset {target.dataset_id} stamped at {revision or 'base'}")
    return EXIT_OK


def sql_command(args: argparse.Namespace, settings: Settings) -> int:
    from migrator.cli import on_control_plane, run_async

    target = on_control_plane(settings, lambda engine: _target(engine, args.dataset))
    if target.provider != "pgvector":
        raise UsageError(f"dataset {target.dataset_id} is {target.provider}; --sql is pgvector's")
    lines = run_async(_plan(target, settings, args.to_revision))
    if args.json:
        print_json({"dataset_id": target.dataset_id, "sql": lines})
    else:
        print("\n".join(lines) if lines else "-- nothing to do")
    return EXIT_OK


async def _target(engine: Any, ref: str) -> Any:
    from migrator.datasets import load_target, resolve_dataset_refs

    (dataset_id,) = await resolve_dataset_refs(engine, [ref])
    return await load_target(engine, dataset_id)


async def _read(target: Any, settings: Settings) -> str | None:
    from migrator.vector.chain_config import as_revision
    from migrator.vector.registry import adapter_factory

    adapter = adapter_factory(target.provider)(target, settings)
    try:
        return as_revision(await adapter.read_version())
    finally:
        await adapter.close()


async def _stamp(target: Any, settings: Settings, chain: Any, revision: str | None) -> None:
    adapter = _revision_adapter(target, settings)
    try:
        await adapter.connect()
        async with adapter.dataset_lock():
            await adapter.stamp(chain, revision)
    finally:
        await adapter.close()


async def _plan(target: Any, settings: Settings, to_revision: str | None) -> list[str]:
    adapter = _revision_adapter(target, settings)
    try:
        return list(await adapter.plan_sql(_chain(settings), to_revision))
    finally:
        await adapter.close()


def _revision_adapter(target: Any, settings: Settings) -> Any:
    from migrator.errors import UnsupportedGoalError
    from migrator.vector.base import RevisionAdapter
    from migrator.vector.registry import adapter_factory

    adapter = adapter_factory(target.provider)(target, settings)
    if not isinstance(adapter, RevisionAdapter):
        raise UnsupportedGoalError(target.provider)
    return adapter


async def _cache(engine: Any, dataset_id: str, revision: str | None) -> None:
    from migrator.models import dataset_databases

    async with engine.begin() as conn:
        await conn.execute(
            dataset_databases.update()
            .where(dataset_databases.c.dataset_id == dataset_id)
            .values(vector_schema_version=revision)
        )
