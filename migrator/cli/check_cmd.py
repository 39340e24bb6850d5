"""``migrator check``: the scheduled check, once, from here; it reports and never migrates."""

from __future__ import annotations

import argparse
from typing import Any

from migrator.cli.output import print_json
from migrator.errors import EXIT_OK, EXIT_PARTIAL
from migrator.settings import Settings


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "check",
        help="report what is behind: control plane, pending and drifted datasets, stale runs",
        description="Run the scheduled check once in this process and report; nothing is "
        "migrated or enqueued (stale runs are marked failed, as the scheduled check does). "
        "Needs Redis for the run lock. Exit 0 when nothing needs a run, 2 when something does, "
        "a dataset could not be read, one is quarantined, the dataset source returned rows "
        "it refused (or could not be read), or a declared heavy budget needs a setting grown.",
    )
    verify = parser.add_mutually_exclusive_group()
    verify.add_argument(
        "--verify",
        dest="verify",
        action="store_true",
        default=None,
        help="also open every up-to-date dataset to compare its own version record",
    )
    verify.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="read the control plane only (default: MIGRATION_CHECK_VERIFY)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(handler=check_command)


def check_command(args: argparse.Namespace, settings: Settings) -> int:
    from migrator.cli import on_control_plane
    from migrator.locks.redis import open_locks
    from migrator.runs.check import LISTS, inspect, log_report

    with open_locks(settings) as locks:
        report = on_control_plane(
            settings, lambda engine: inspect(engine, settings, locks, verify=args.verify)
        )
    if args.json:
        data = report.to_dict()
        data["datasets"] = [
            {"id": dataset_id, "name": report.names.get(dataset_id)}
            for dataset_id in dict.fromkeys(i for key in LISTS for i in report.shown_ids(key))
        ]
        print_json(data)
    else:
        log_report(report)
        data = report.to_dict()
        print(f"control plane: {data['relational_current']} (head {data['relational_head']})")
        for key in LISTS:
            print(f"{key}: {data[f'{key}_count']}  {', '.join(report.labels(key))}".rstrip())
        if report.source_error:
            print(f"dataset source: {report.source_error}")
        for problem in report.settings_problems:
            print(f"settings: {problem}")
        print(
            f"stale runs failed: {len(report.stale_runs)}; run in progress: "
            f"{report.run_in_progress or 'none'}"
        )
    # An unreadable or quarantined dataset, or a refused source row, is not "all well" even
    # though no run would fix it.
    attention = (
        report.needs_run
        or report.unreadable
        or report.quarantined
        or report.source_refused
        or report.source_error
        or report.settings_problems
    )
    return EXIT_PARTIAL if attention else EXIT_OK
