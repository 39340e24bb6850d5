"""``migrator run``: the whole job in this process, no broker."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.cli.options import add_run_options, check_retry_args, rollout_from_args
from migrator.cli.output import FULL_LISTING_MAX, Progress, print_json, print_summary
from migrator.errors import exit_code_for
from migrator.runs.summary import RunSummary
from migrator.settings import Settings

DOWNGRADE_DESCRIPTION = (
    "Upgrade the control plane to head, then take each selected dataset database down to the "
    "vector revision --to REV, in this process, recorded as a run. Refused before any dataset "
    "is touched when a revision on the way has no downgrade. Exit 0 all ok, 1 refused, 2 some "
    "datasets failed, 5 halted by a canary, a wave or the failure budget. Over Celery: "
    "migrator enqueue --downgrade --to REV."
)
DEMO_DATASETS = ("demo-articles", "demo-support-tickets", "demo-product-docs")
DESCRIPTION = (
    "Upgrade the control plane to head, then migrate each dataset database that needs it, in "
    "this process. Exit 0 all ok, 1 relational failure, 2 some datasets failed, 5 halted by a "
    "canary, a wave or the failure budget."
)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "run",
        help="run every pending migration in this process (no broker)",
        description=DESCRIPTION,
    )
    add_run_options(parser)
    parser.add_argument("--requested-by", default=None, help="who asked, for the run record")
    parser.add_argument(
        "--retry-failed",
        metavar="RUN_ID",
        default=None,
        help="only the datasets that failed, were deferred or never finished in that run",
    )
    parser.add_argument(
        "--demo",
        action="store_true",
        help="first register a few demo LanceDB datasets when there are none",
    )
    parser.set_defaults(handler=run, downgrade=False)
    down = commands.add_parser(
        "downgrade",
        help="undo vector revisions down to --to REV, as a run in this process",
        description=DOWNGRADE_DESCRIPTION,
    )
    add_run_options(down, downgrade=True)
    down.add_argument("--requested-by", default=None, help="who asked, for the run record")
    down.set_defaults(handler=run, downgrade=True, demo=False, retry_failed=None)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from migrator.cli import run_async

    summary = run_async(_run(args, settings))
    if args.json:
        many = len(summary.datasets) > FULL_LISTING_MAX
        print_json(summary.to_dict(datasets="failed" if many else "all"))
    else:
        print_summary(summary)
    return exit_code_for(summary.status)


async def _run(args: argparse.Namespace, settings: Settings) -> RunSummary:
    from migrator.runs.inprocess import run_startup_migrations

    rollout = rollout_from_args(args)
    check_retry_args(args)
    progress = Progress("migrating", enabled=not args.no_progress)
    try:
        return await run_startup_migrations(
            trigger=args.trigger,
            requested_by=args.requested_by,
            dataset_ids=args.dataset_ids,
            verify=args.verify,
            to_revision=args.to_revision,
            downgrade=args.downgrade,
            settings=settings,
            on_progress=progress.update,
            on_operation=lambda dataset_id, op: progress.operation(dataset_id, op.to_dict()),
            prepare=(lambda engine: seed_demo_datasets(engine, settings)) if args.demo else None,
            rollout=rollout,
            retry_of=args.retry_failed,
        )
    finally:
        progress.close()


async def seed_demo_datasets(engine: AsyncEngine, settings: Settings) -> int:
    """Register the demo datasets when the control plane has none; returns how many it added."""
    from migrator.datasets import add_dataset, count_datasets

    if await count_datasets(engine):
        return 0
    for name in DEMO_DATASETS:
        await add_dataset(engine, settings, name=name, provider="lancedb", owner="demo")
    print(f"demo: registered {len(DEMO_DATASETS)} LanceDB datasets", file=sys.stderr)
    return len(DEMO_DATASETS)
