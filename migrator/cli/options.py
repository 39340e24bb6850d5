"""Options that `migrator run` and `migrator enqueue` share: what a run covers and how it shows."""

from __future__ import annotations

import argparse
import uuid
from typing import TYPE_CHECKING

from migrator.runs.rollout import Rollout, parse_share
from migrator.states import Trigger

if TYPE_CHECKING:
    from migrator.runs.request import RunRequest

RUN_TRIGGER_CHOICES = ("deploy", "admin", "api")


def add_run_options(parser: argparse.ArgumentParser, *, downgrade: bool = False) -> None:
    """``downgrade``: the options of `migrator downgrade`, whose --to is required."""
    parser.add_argument(
        "--trigger",
        choices=RUN_TRIGGER_CHOICES,
        default="admin",
        help="what to record as the run's trigger (default: admin)",
    )
    parser.add_argument(
        "--dataset",
        dest="dataset_ids",
        action="append",
        metavar="ID_OR_NAME",
        help="only this dataset, by id or name (repeatable)",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="open every dataset and read its own version record instead of trusting the cache",
    )
    parser.add_argument(
        "--to",
        dest="to_revision",
        metavar="REV",
        required=downgrade,
        default=None,
        help="the vector revision to go down to ('base': undo all)"
        if downgrade
        else "the vector revision to reach (default: the head of VECTOR_MIGRATIONS' chain)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress output")
    rollout = parser.add_argument_group("rollout (canary, waves, failure budget)")
    rollout.add_argument(
        "--canary",
        metavar="N|P%",
        default=None,
        help="migrate N datasets (or P%% of them) first; if any fails, halt: the rest are "
        "recorded deferred and the command exits 5",
    )
    rollout.add_argument(
        "--canary-dataset",
        dest="canary_ids",
        action="append",
        metavar="ID_OR_NAME",
        default=[],
        help="this dataset is (one of) the canary (repeatable; with --canary N, counted in N)",
    )
    rollout.add_argument(
        "--wave-size",
        type=int,
        metavar="N",
        default=None,
        help="after the canary, migrate the rest N at a time; a wave that fails halts the run",
    )
    rollout.add_argument(
        "--max-failures",
        metavar="N|P%",
        default=None,
        help="failure budget: once N datasets (or P%% of them) failed, no further dataset "
        "starts and the run ends halted (default: MAX_FAILURES)",
    )


def check_retry_args(args: argparse.Namespace) -> None:
    """``--retry-failed`` takes the run's own selection: refuse a subset or --verify beside it."""
    from migrator.errors import UsageError

    if args.retry_failed and (args.dataset_ids or args.verify):
        raise UsageError("--retry-failed takes the run's own selection; drop --dataset/--verify")


def request_from_args(args: argparse.Namespace, requested_by: str | None = None) -> RunRequest:
    """The run the command line asks for (a new run id), checked: ``UsageError`` names a bad
    combination."""
    from migrator.errors import UsageError
    from migrator.runs.request import RunRequest

    check_retry_args(args)
    if args.downgrade and args.to_revision is None:
        raise UsageError("--downgrade needs --to REV (a revision id, or 'base')")
    return RunRequest(
        run_id=str(uuid.uuid4()),
        trigger=Trigger(args.trigger),
        requested_by=requested_by,
        dataset_ids=tuple(args.dataset_ids) if args.dataset_ids else None,
        verify=args.verify,
        retry_of=args.retry_failed,
        rollout=rollout_from_args(args),
        to_revision=args.to_revision,
        downgrade=args.downgrade,
    )


def rollout_from_args(args: argparse.Namespace) -> Rollout:
    """The rollout the command line asks for; ``UsageError`` naming a bad value."""
    from migrator.errors import UsageError

    if args.wave_size is not None and args.wave_size < 1:
        raise UsageError(f"--wave-size must be at least 1, got {args.wave_size}")
    return Rollout(
        canary=parse_share(args.canary, "--canary") if args.canary is not None else None,
        canary_ids=tuple(args.canary_ids or ()),
        wave_size=args.wave_size,
        max_failures=(
            parse_share(args.max_failures, "--max-failures") if args.max_failures else None
        ),
    )
