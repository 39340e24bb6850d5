"""``migrator status`` and ``migrator runs``: where things stand, and what happened."""

from __future__ import annotations

import argparse
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.cli.output import print_json, print_summary, print_table
from migrator.errors import EXIT_OK
from migrator.runs.summary import dataset_label
from migrator.settings import Settings
from migrator.urls import obfuscate_url

PENDING_SHOWN = 20


def register(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="control plane revision vs head and pending datasets, or one run's details",
        description="Without RUN_ID: the control plane's revision against head and the "
        "datasets whose cached vector schema is behind. With RUN_ID: that run's record.",
    )
    status.add_argument("run_id", nargs="?", metavar="RUN_ID", help="a run id from `migrator runs`")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=status_command)

    runs = commands.add_parser(
        "runs", help="run history, newest first", description="Migration runs, newest first."
    )
    runs.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")
    runs.add_argument("--json", action="store_true", help="print JSON")
    runs.set_defaults(handler=runs_command)


def status_command(args: argparse.Namespace, settings: Settings) -> int:
    from migrator.cli import on_control_plane
    from migrator.runs.store import get_run

    if args.run_id:
        summary = on_control_plane(settings, lambda engine: get_run(engine, args.run_id))
        if args.json:
            print_json(summary.to_dict())
        else:
            print_summary(summary)
        return EXIT_OK
    state = on_control_plane(settings, lambda engine: control_plane_status(engine, settings))
    if args.json:
        print_json(state)
        return EXIT_OK
    print(f"control plane: {state['database_url']}")
    print(
        f"  revision: {state['current_revision'] or '(empty)'}  head: {state['head_revision']}"
        f"  {'up to date' if state['relational_up_to_date'] else 'PENDING'}"
    )
    print(f"vector schema head: {state['vector_head']}")
    print(f"datasets: {state['datasets_total']} total, {len(state['pending'])} pending")
    for item in state["pending"][:PENDING_SHOWN]:
        print(
            f"  pending: {dataset_label(item['id'], item['name'])} ({item['provider']}) at "
            f"{item['vector_schema_version'] or '(no revision)'}"
        )
    if state["latest_run"]:
        run = state["latest_run"]
        print(f"latest run: {run['run_id']} {run['status']} ({run['trigger']}) {run['started_at']}")
    return EXIT_OK


async def control_plane_status(engine: AsyncEngine, settings: Settings) -> dict[str, Any]:
    """The control plane's revision against head, its datasets, the pending ones, the latest
    run."""
    from migrator.datasets import count_datasets, list_datasets
    from migrator.relational import alembic_config, current_revision, head_revision
    from migrator.runs.selection import is_pending
    from migrator.runs.store import list_runs
    from migrator.vector.chain_config import configured_head

    config = alembic_config(settings)
    head = head_revision(config)
    current = await current_revision(engine, config)
    ready = current is not None
    vector_head = configured_head(settings)
    pending = await list_datasets(engine, is_pending(vector_head)) if ready else []
    latest = await list_runs(engine, limit=1) if ready else []
    return {
        "database_url": obfuscate_url(settings.database_url.get_secret_value()),
        "current_revision": current,
        "head_revision": head,
        "relational_up_to_date": current == head,
        "vector_head": vector_head,
        "datasets_total": await count_datasets(engine) if ready else 0,
        "pending": [r.to_dict() for r in pending],
        "latest_run": latest[0] if latest else None,
    }


def runs_command(args: argparse.Namespace, settings: Settings) -> int:
    from migrator.cli import on_control_plane
    from migrator.runs.store import list_runs

    rows = on_control_plane(settings, lambda engine: list_runs(engine, limit=args.limit))
    if args.json:
        print_json(rows)
    else:
        print_table(
            rows,
            [
                "run_id",
                "trigger",
                "status",
                "relational",
                "total",
                "succeeded",
                "failed",
                "skipped",
                "started_at",
            ],
        )
    return EXIT_OK
