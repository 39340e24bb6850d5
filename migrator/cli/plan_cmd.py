"""``migrator plan``: what a run would do, from the control plane only; nothing is changed."""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from migrator.cli.options import add_run_options, check_retry_args, rollout_from_args
from migrator.cli.output import print_json, print_table
from migrator.errors import EXIT_OK, UsageError
from migrator.settings import Settings
from migrator.states import Trigger


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "plan",
        help="say what a run would do, without doing it",
        description="Say what a run with these options would do: how many datasets, their "
        "providers and servers, each move from revision to revision, every vector revision on "
        "the way with the datasets it touches and its operations, the canary and waves, the "
        "failure budget and an estimate of time from earlier runs. Reads the control plane "
        "only; nothing is changed and no dataset is opened.",
    )
    add_run_options(parser)
    add_plan_options(parser)
    parser.add_argument(
        "--retry-failed",
        metavar="RUN_ID",
        default=None,
        help="plan the retry of that run's failed, deferred and unfinished datasets",
    )
    parser.add_argument(
        "--downgrade",
        action="store_true",
        help="plan taking the datasets down to --to REV (required with it) instead of up",
    )
    parser.set_defaults(handler=plan_command)


def add_plan_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--detail", action="store_true", help="also list each dataset: from -> to, its stage"
    )


def plan_command(args: argparse.Namespace, settings: Settings) -> int:
    from migrator.cli import on_control_plane
    from migrator.runs.plan import preview_run
    from migrator.runs.request import RunRequest

    check_retry_args(args)
    if args.downgrade and args.to_revision is None:
        raise UsageError("--downgrade needs --to REV (a revision id, or 'base')")
    request = RunRequest(
        run_id=str(uuid.uuid4()),
        trigger=Trigger(args.trigger),
        dataset_ids=tuple(args.dataset_ids) if args.dataset_ids else None,
        verify=args.verify,
        retry_of=args.retry_failed,
        rollout=rollout_from_args(args),
        to_revision=args.to_revision,
        downgrade=args.downgrade,
    )
    detail = args.detail or bool(args.dataset_ids)
    preview = on_control_plane(
        settings, lambda engine: preview_run(engine, settings, request, detail=detail)
    )
    if args.json:
        print_json(preview.to_dict())
        return EXIT_OK
    data = preview.to_dict()
    print(f"control plane: {data['relational_current']} (head {data['relational_head']})")
    providers = ", ".join(f"{p} {n}" for p, n in sorted(data["providers"].items())) or "-"
    print(f"datasets: {data['datasets']} ({providers}) on {data['servers']} server(s)")
    print(f"vector: {data['direction']} to {data['vector_target']} (head {data['vector_head']})")
    for move in data["moves"]:
        refused = f"; refused: {move['refused']}" if "refused" in move else ""
        print(
            f"  {move['from']} -> {move['to']}: {move['datasets']} dataset(s) on "
            f"{move['servers']} server(s), about {move['estimate_s']:g}s{refused}"
        )
    for step in data["revisions"]:
        print(f"  {step['direction']} {step['revision']}: {step['datasets']} dataset(s)")
        for provider, operations in sorted(step["operations"].items()):
            for operation in operations or ["(no operation)"]:
                print(f"    {provider}: {operation}")
    print(f"stages: {' + '.join(map(str, data['stages'])) or '-'}")
    print(f"failure budget: {data['max_failures'] if data['max_failures'] is not None else '-'}")
    print(f"quarantined (left out): {data['quarantined']}")
    estimate = data["estimate_s"]
    when = f"about {estimate:.1f}s" if estimate is not None else "unknown"
    print(f"estimate: {when} ({data['estimate_basis']})")
    if data.get("detail"):
        print_table(data["detail"], ["id", "name", "provider", "server", "from", "to", "stage"])
    return EXIT_OK
