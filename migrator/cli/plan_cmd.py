"""``migrator plan``: what a run would do, from the control plane only (``--deep``: and each
dataset's own store, read only); nothing is changed."""

from __future__ import annotations

import argparse
from typing import Any

from migrator.cli.options import add_run_options, request_from_args
from migrator.cli.output import print_json, print_table
from migrator.errors import EXIT_OK
from migrator.settings import Settings


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "plan",
        help="say what a run would do, without doing it",
        description="Say what a run with these options would do: how many datasets, their "
        "providers and servers, each move from revision to revision, every vector revision on "
        "the way with the datasets it touches and its operations, the canary and waves, the "
        "failure budget and an estimate of time from earlier runs. Reads the control plane "
        "only, unless --deep; nothing is changed.",
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
    parser.add_argument(
        "--deep",
        action="store_true",
        help="also open each dataset, read only (MIGRATION_CONCURRENCY at once, each bounded "
        "by DATASET_TIMEOUT_S): rows per collection from the store's metadata, the revision it "
        "records against the cached one, rows each revision touches",
    )


def plan_command(args: argparse.Namespace, settings: Settings) -> int:
    from migrator.cli import on_control_plane
    from migrator.runs.plan import preview_run

    request = request_from_args(args)
    detail = args.detail or bool(args.dataset_ids)
    preview = on_control_plane(
        settings,
        lambda engine: preview_run(engine, settings, request, detail=detail, deep=args.deep),
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
        if "rows_touched" in step:
            print(f"    rows touched: {_rows_touched(step['rows_touched'])}")
        for provider, operations in sorted(step["operations"].items()):
            for operation in operations or ["(no operation)"]:
                print(f"    {provider}: {operation}")
    _print_heavy(data["heavy"])
    print(f"stages: {' + '.join(map(str, data['stages'])) or '-'}")
    print(f"failure budget: {data['max_failures'] if data['max_failures'] is not None else '-'}")
    print(f"quarantined (left out): {data['quarantined']}")
    estimate = data["estimate_s"]
    when = f"about {estimate:.1f}s" if estimate is not None else "unknown"
    print(f"estimate: {when} ({data['estimate_basis']})")
    if data.get("detail"):
        columns = ["id", "name", "provider", "server", "from", "to", "stage", "heavy_budget_s"]
        print_table(data["detail"], columns)
    if "deep" in data:
        _print_deep(data["deep"], every=detail)
    return EXIT_OK


def _print_heavy(heavy: dict[str, Any]) -> None:
    """Heavy datasets: their count, where they go, the longest budget, the first few named."""
    if not heavy["datasets"]:
        print("heavy: none")
        return
    print(
        f"heavy: {heavy['datasets']} dataset(s) on {heavy['servers']} server(s), queue "
        f"{heavy['queue']}, {heavy['per_server']} at once per server, longest budget "
        f"{heavy['longest_budget_s']:g}s"
    )
    for entry in heavy["shown"]:
        print(f"  {entry['name']} ({entry['id']}): budget {entry['budget_s']:g}s")
    if heavy["datasets"] > len(heavy["shown"]):
        print(f"  ... and {heavy['datasets'] - len(heavy['shown'])} more")


def _rows_touched(touched: dict[str, Any]) -> str:
    where = ", ".join(touched["collections"]) or "-"
    unknown = touched["datasets_unknown"]
    return f"{touched['rows']} in {where}" + (
        f" (and {unknown} dataset(s) whose rows cannot be said)" if unknown else ""
    )


def _print_deep(deep: dict[str, Any], *, every: bool) -> None:
    """The fleet's totals; each dataset that drifted or could not be read (every one with
    --detail or --dataset)."""
    print(
        f"stores: {deep['opened']} read, {deep['unreadable']} unreadable, {deep['drifted']} "
        f"drifted from the cache, {deep['rows_not_reported']} without row counts"
    )
    for collection, rows in deep["rows"].items():
        print(f"  {collection}: {rows} row(s)")
    for entry in deep["datasets"]:
        if every or entry["drift"] or "error" in entry:
            print(f"  {entry['name']} ({entry['id']}): {_store_line(entry)}")


def _store_line(entry: dict[str, Any]) -> str:
    if "error" in entry:
        return f"cannot read: {entry['error']}"
    drift = f" (cached {entry['cached']}: DRIFT)" if entry["drift"] else ""
    if entry["rows"] is None:
        rows = "rows not reported"
    else:
        shown = ", ".join(
            f"{c} {'?' if n is None else n}" for c, n in sorted(entry["rows"].items())
        )
        rows = f"rows ({entry['rows_basis']}): {shown or 'no collection'}"
    return f"store at {entry['store']}{drift}; {rows}"
