"""Options that `migrator run` and `migrator enqueue` share: what a run covers and how it shows."""

from __future__ import annotations

import argparse

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
