"""``migrator enqueue``: start a run on the Celery workers, or attach to the one in progress.

One run at a time across every trigger: the run lock in Redis decides. A trigger that finds a
run in progress prints its id and waits on it (``--no-attach``: exit 3 instead).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.cli.options import add_run_options, request_from_args
from migrator.cli.output import FULL_LISTING_MAX, Progress, print_json, print_summary
from migrator.cli.plan_cmd import add_plan_options
from migrator.constants import (
    DEFAULT_WAIT_TIMEOUT_S,
    RESULT_GRACE_S,
    WAIT_FIRST_POLL_S,
    WAIT_POLL_S,
)
from migrator.errors import (
    EXIT_OK,
    MigratorError,
    RunBusyError,
    RunNotFoundError,
    UsageError,
    WaitTimeoutError,
    exit_code_for,
    exit_codes_help,
)
from migrator.runs.request import RunRequest
from migrator.runs.store import RunProgress
from migrator.runs.summary import dataset_label
from migrator.settings import Settings
from migrator.states import FINAL_STATUSES, FINISHED_BADLY, count_badly

if TYPE_CHECKING:
    from migrator.locks.redis import Locks

# The control plane may be unreachable or not migrated yet from where a trigger runs; the run
# itself (the parent task) is what reports that. The trigger only loses progress and checks.
CONTROL_PLANE_ERRORS = (DBAPIError, OSError)

DESCRIPTION = """\
Start a migration run on the Celery workers: the parent task upgrades the control plane, then
one subtask per dataset database that needs it. If a run is already in progress (from any
trigger), attach to it instead: print its id and, with --wait, wait for it.

deployment hook:  migrator enqueue --trigger deploy --wait --timeout 900
admin:            migrator enqueue --dataset ID_OR_NAME [...] [--verify] --wait
                  migrator enqueue --retry-failed RUN_ID --wait
"""


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "enqueue",
        help="run migrations on the Celery workers, or attach to the run in progress",
        description=DESCRIPTION,
        epilog=exit_codes_help("exit codes (with --wait):"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_run_options(parser)
    parser.add_argument(
        "--retry-failed",
        metavar="RUN_ID",
        default=None,
        help="only the datasets that failed, were deferred or never finished in that run",
    )
    parser.add_argument(
        "--downgrade",
        action="store_true",
        help="take the datasets down to --to REV (required with it) instead of up",
    )
    parser.add_argument("--wait", action="store_true", help="wait for the run to finish")
    parser.add_argument(
        "--timeout",
        dest="timeout_s",
        type=float,
        default=DEFAULT_WAIT_TIMEOUT_S,
        metavar="S",
        help=f"with --wait: give up after S seconds, exit 4 (default {DEFAULT_WAIT_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--no-attach",
        action="store_true",
        help="when a run is already in progress, exit 3 instead of attaching to it",
    )
    parser.add_argument(
        "--requested-by", default=None, help="who asked, for the run record (default user@host)"
    )
    parser.add_argument(
        "--plan",
        action="store_true",
        help="only say what this run would do (as `migrator plan`); nothing is enqueued",
    )
    add_plan_options(parser)
    parser.set_defaults(handler=enqueue_command)


def enqueue_command(args: argparse.Namespace, settings: Settings) -> int:
    from migrator.cli import on_control_plane
    from migrator.datasets import as_uuid, resolve_dataset_refs
    from migrator.locks.redis import open_locks

    if args.plan:
        from migrator.cli.plan_cmd import plan_command

        return plan_command(args, settings)
    if args.detail or args.deep:
        raise UsageError("--detail and --deep describe a plan: add --plan")
    refs = args.dataset_ids
    if refs and not all(as_uuid(ref) for ref in refs):
        # A task message carries ids only: names become ids here, from the control plane.
        args.dataset_ids = on_control_plane(
            settings, lambda engine: resolve_dataset_refs(engine, refs)
        )
    canaries = args.canary_ids
    if canaries and not all(as_uuid(ref) for ref in canaries):
        args.canary_ids = on_control_plane(
            settings, lambda engine: resolve_dataset_refs(engine, canaries)
        )
    request = enqueue_request(args)
    with open_locks(settings) as locks:
        data = on_control_plane(
            settings, lambda engine: _enqueue(engine, settings, locks, args, request)
        )
    if data is None:
        return EXIT_OK
    return report(data, as_json=args.json)


def enqueue_request(args: argparse.Namespace) -> RunRequest:
    request = request_from_args(args, requested_by=args.requested_by or _who())
    if args.timeout_s <= 0:
        raise UsageError(f"--timeout must be positive, got {args.timeout_s:g}")
    return request


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry and no $USER
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def _enqueue(
    engine: AsyncEngine,
    settings: Settings,
    locks: Locks,
    args: argparse.Namespace,
    request: RunRequest,
) -> dict[str, Any] | None:
    from migrator.runs.trigger import claim_run

    await validate_request(engine, request)
    if request.to_revision is not None or request.downgrade:
        from migrator.runs.goal import plan_goal

        # Fail fast on a target this deployment's chain refuses; the parent checks again.
        plan_goal(settings, request.to_revision, downgrade=request.downgrade)
    if args.wait:
        await _warn_heavy(engine, settings, request, args.timeout_s)
    claim = await claim_run(locks, settings, request.run_id, request.trigger, engine)
    if claim.started:
        _send(locks, request)
        _say(f"run {claim.run_id}: enqueued (trigger {request.trigger})")
    elif args.no_attach:
        raise RunBusyError(claim.run_id)
    else:
        _say(
            f"run {claim.run_id}: already in progress (trigger {claim.trigger or '?'}); "
            "attaching to it"
        )
    if not args.wait:
        _print_claim(claim.run_id, claim.started, as_json=args.json)
        return None
    progress = Progress(f"run {claim.run_id}", enabled=not args.no_progress)
    try:
        return await wait_for_run(engine, claim.run_id, args.timeout_s, progress)
    finally:
        progress.close()


async def _warn_heavy(
    engine: AsyncEngine, settings: Settings, request: RunRequest, timeout_s: float
) -> None:
    """Up front: say when a heavy dataset's budget outlasts ``--timeout`` (the run is sent
    anyway; a hook that must see the end gives a longer --timeout)."""
    from migrator.runs.goal import plan_goal
    from migrator.runs.heavy import chain_is_heavy, wait_shortfall
    from migrator.runs.selection import select_pending

    if not chain_is_heavy(settings):
        return
    goal = plan_goal(settings, request.to_revision, downgrade=request.downgrade)
    try:
        pending = await select_pending(engine, target=goal.target, dataset_ids=request.dataset_ids)
        shortfall = await wait_shortfall(engine, settings, goal, pending, timeout_s)
    except CONTROL_PLANE_ERRORS:
        return
    if shortfall is not None:
        _say(f"WARNING: {shortfall}")


def _send(locks: Locks, request: RunRequest) -> None:
    from tasks import send_run  # Celery is imported only when a run is sent

    try:
        send_run(request)
    except BaseException:
        locks.run_lock().release(request.run_id)
        raise


async def validate_request(engine: AsyncEngine, request: RunRequest) -> None:
    """Fail fast on ids the control plane does not know (when it can be read from here)."""
    from migrator.runs.selection import select_pending
    from migrator.runs.store import run_state

    try:
        if request.retry_of is not None and await run_state(engine, request.retry_of) is None:
            raise RunNotFoundError(f"no migration run with id {request.retry_of!r}")
        if request.dataset_ids is not None:
            # Only the ids are checked here; the parent plans the run's target.
            await select_pending(engine, target=None, dataset_ids=request.dataset_ids)
    except CONTROL_PLANE_ERRORS:
        return


async def wait_for_run(
    engine: AsyncEngine, run_id: str, timeout_s: float, progress: Progress
) -> dict[str, Any]:
    """The run's summary, from the chord body's result (or the run record when the chord
    failed); raises ``WaitTimeoutError`` after ``timeout_s``. Shows progress meanwhile."""
    from celery.result import AsyncResult

    from worker import app

    result: AsyncResult[Any] = AsyncResult(run_id, app=app)
    deadline = time.monotonic() + timeout_s
    over_since: float | None = None
    poll_s = WAIT_FIRST_POLL_S / 2
    while True:
        if _result_ready(result):
            data = await _result_data(engine, result, run_id)
            # A failed chord is ready before its errback finished the run (it waits for the
            # subtasks' locks to lapse): the run's own record decides when the wait is over.
            if data.get("status") != "running":
                _final_progress(progress, data)
                return data
        state = await _progress(engine, run_id)
        if state is not None:
            progress.update(state.done, state.total, state.failed)
            for running in state.operations:
                progress.operation(
                    dataset_label(running.dataset_id, running.name), running.progress
                )
            if state.status != "running":
                over_since = over_since or time.monotonic()
                if time.monotonic() - over_since > RESULT_GRACE_S:
                    return await _recorded_summary(engine, run_id)
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(run_id, timeout_s)
        # Quick polls first (a run with nothing to do ends in ~0.1 s), then every WAIT_POLL_S.
        poll_s = min(WAIT_POLL_S, poll_s * 2)
        await asyncio.sleep(poll_s)


def _result_ready(result: Any) -> bool:
    """Whether the chord body's result is in. Redis restarting or unreachable reads as "not
    yet": the run goes on without this caller, and the control plane still shows its progress."""
    from redis.exceptions import RedisError

    try:
        return bool(result.ready())
    except (RedisError, OSError):
        return False


async def _progress(engine: AsyncEngine, run_id: str) -> RunProgress | None:
    from migrator.runs.store import read_progress

    try:
        return await read_progress(engine, run_id)
    except CONTROL_PLANE_ERRORS:
        return None


async def _result_data(engine: AsyncEngine, result: Any, run_id: str) -> dict[str, Any]:
    """The run's summary with its failed outcomes, read from the control plane; the task result
    (counts and a few ids) stands in when the control plane cannot be read from here."""
    try:
        return await _recorded_summary(engine, run_id)
    except (RunNotFoundError, *CONTROL_PLANE_ERRORS) as exc:
        if result.successful() and isinstance(result.result, dict):
            data: dict[str, Any] = result.result
            return data
        # The chord failed before anything was recorded.
        raise MigratorError(
            f"run {run_id} failed before it was recorded ({type(result.result).__name__})"
        ) from exc


async def _recorded_summary(engine: AsyncEngine, run_id: str) -> dict[str, Any]:
    from migrator.runs.store import get_run

    # Like `migrator run --json`: every outcome for a small run, the failed ones for a big one.
    summary = await get_run(engine, run_id, dataset_statuses=FINISHED_BADLY)
    if summary.counts.get("total", 0) <= FULL_LISTING_MAX:
        summary = await get_run(engine, run_id)
    return summary.to_dict()


def _final_progress(progress: Progress, data: dict[str, Any]) -> None:
    counts = data.get("counts") or {}
    total = int(counts.get("total", 0))
    failed = count_badly(counts)
    done = sum(int(counts.get(s, 0)) for s in FINAL_STATUSES)
    if total:
        progress.update(done, total, failed)


def report(data: dict[str, Any], *, as_json: bool) -> int:
    """Print the summary; the exit code says how the run ended."""
    from migrator.runs.summary import summary_from_result

    busy_run_id = data.get("busy_run_id")
    if busy_run_id:
        raise RunBusyError(busy_run_id)
    if as_json:
        print_json(data)
    else:
        print_summary(summary_from_result(data))
    return exit_code_for(str(data.get("status")))


def _print_claim(run_id: str, started: bool, *, as_json: bool) -> None:
    if as_json:
        print_json({"run_id": run_id, "attached": not started})
    else:
        print(run_id)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
