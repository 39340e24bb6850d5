"""Celery tasks: thin glue over the broker steps of ``migrator.runs`` (``parent``, ``subtask``,
``chord``) and its scheduled ``check``.

Each task reads ids from its message, calls one core function on the process's event loop and
returns a small JSON dict. Connection details always come from the control plane and the
worker's environment, never from a message.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task, chord
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from migrator.constants import (
    RESULT_NAME_CHARS,
    TASK_FINISH_FAILED_CHORD,
    TASK_FINISH_RUN,
    TASK_MIGRATE_DATASET,
    TASK_MIGRATE_RUN,
    TASK_SCHEDULED_CHECK,
)
from migrator.db import utcnow
from migrator.errors import MessageRefusedError, RunStillReportingError
from migrator.runs import chord as run_chord
from migrator.runs import parent, subtask
from migrator.runs.check import run_check
from migrator.runs.heavy import HeavyDataset, heavy_limits, run_heavy_datasets
from migrator.runs.request import RunRequest
from migrator.runs.summary import summary_result
from migrator.settings import Settings
from worker import app
from worker.config import cancel_grace_s, parent_limits_s, subtask_time_limit_s
from worker.runtime import runtime

log = logging.getLogger(__name__)

# The chord body retries when the control plane or Redis blinks; the run must still finish.
BODY_RETRY_ERRORS = (DBAPIError, RedisError, OSError)
BODY_MAX_RETRIES = 5


def send_run(request: RunRequest) -> None:
    """Send the parent task of a run whose lock the caller holds; its task id is the run id."""
    migrate_run.apply_async(
        args=(request.run_id,), kwargs=request.to_message(), task_id=request.run_id
    )


@app.task(name=TASK_MIGRATE_RUN, bind=True)
def migrate_run(self: Task[Any, Any], /, run_id: str, **message: Any) -> dict[str, Any]:
    """Parent: relational step, record the run, then replace itself with the chord."""
    request = RunRequest.from_message(run_id, message)
    rt = runtime()
    task_id = self.request.id or run_id
    try:
        plan = rt.run(
            parent.start_run(rt.engine, rt.settings, rt.locks, request, task_id),
            cancel_grace_s=cancel_grace_s(rt.settings),
        )
    except SoftTimeLimitExceeded as exc:
        soft_s, _ = parent_limits_s(rt.settings)
        timeout = TimeoutError(f"the relational step exceeded the parent's soft limit {soft_s:g}s")
        timeout.__cause__ = exc
        summary = rt.run(
            parent.record_failed_run(
                rt.engine,
                rt.settings,
                request,
                utcnow(),
                timeout,
                step="relational",
                task_id=task_id,
            )
        )
        return summary_result(summary)
    if plan.summary is not None:
        return summary_result(plan.summary, busy_run_id=plan.busy_run_id)
    try:
        raise self.replace(_stage_chord(run_id, plan.stage, plan.dataset_ids))
    except Ignore:
        raise  # how replace() ends this task once the chord is sent
    except Exception as exc:  # the chord could not be sent: finish the run as failed
        return _abandon(rt.settings, run_id, exc)


def _stage_chord(run_id: str, stage: int, dataset_ids: list[str]) -> Any:
    """One stage's chord: a subtask per dataset, then the body that sends the next stage or
    finishes the run (the last stage's body, or one that halts it). A heavy dataset's subtask
    goes to HEAVY_QUEUE with limits from its budget, in the same chord: the body still runs
    once, after every subtask of the stage reported."""
    rt = runtime()
    heavy = rt.run(run_heavy_datasets(rt.engine, rt.settings, run_id, dataset_ids))
    header = [_dataset_signature(run_id, dataset_id, heavy) for dataset_id in dataset_ids]
    body = finish_run.s(run_id, stage).on_error(finish_failed_chord.si(run_id))
    return chord(header, body)


def _dataset_signature(run_id: str, dataset_id: str, heavy: dict[str, HeavyDataset]) -> Any:
    signature = migrate_dataset.si(run_id, dataset_id)
    found = heavy.get(dataset_id)
    if found is None:
        return signature
    settings = runtime().settings
    limits = heavy_limits(settings, found.budget_s)
    # Per-message limits override the task's annotations (celery.worker.request).
    options: dict[str, Any] = {"soft_time_limit": limits.soft_s, "time_limit": limits.hard_s}
    return signature.set(queue=settings.heavy_queue, **options)


def _abandon(settings: Settings, run_id: str, exc: Exception) -> dict[str, Any]:
    rt = runtime()
    summary = rt.run(parent.abandon_run(rt.engine, settings, rt.locks, run_id, exc))
    return summary_result(summary)


@app.task(name=TASK_MIGRATE_DATASET)
def migrate_dataset(run_id: str, dataset_id: str) -> dict[str, Any]:
    """One dataset: never raises, so the chord body always runs. A redelivered copy reports the
    outcome the live one recorded, so every delivery answers the chord."""
    rt = runtime()
    started = time.monotonic()
    try:
        outcome = rt.run(
            subtask.migrate_one(rt.engine, rt.settings, rt.locks, run_id, dataset_id),
            cancel_grace_s=cancel_grace_s(rt.settings),
        )
    except SoftTimeLimitExceeded:
        reason = _soft_limit_reason(rt.settings)
        elapsed_ms = int((time.monotonic() - started) * 1000)
        outcome = rt.run(
            subtask.record_timed_out(rt.engine, run_id, dataset_id, elapsed_ms, reason)
        )
    except Exception as exc:  # control plane or Redis trouble: report it, never raise
        outcome = rt.run(subtask.record_crash(rt.engine, rt.settings, run_id, dataset_id, exc))
    return outcome.to_dict(name_max_chars=RESULT_NAME_CHARS)


def _soft_limit_reason(settings: Settings) -> str:
    # A heavy dataset's message carries its own limits (from its budget); others the default.
    _, soft_s = migrate_dataset.request.timelimit or (None, None)
    if soft_s is not None and soft_s != settings.dataset_soft_time_limit_s:
        return f"SoftTimeLimitExceeded: exceeded the heavy dataset's soft limit {soft_s:g}s"
    return (
        "SoftTimeLimitExceeded: exceeded DATASET_SOFT_TIME_LIMIT_S="
        f"{settings.dataset_soft_time_limit_s:g}"
    )


@app.task(
    name=TASK_FINISH_RUN,
    autoretry_for=BODY_RETRY_ERRORS,
    max_retries=BODY_MAX_RETRIES,
    retry_backoff=True,
)
def finish_run(results: list[Any], run_id: str, stage: int = 0) -> dict[str, Any]:
    """Chord body of one stage: send the next stage's chord, or (last stage, or halted)
    aggregate, record the final status, log, release the run lock."""
    if not isinstance(stage, int) or isinstance(stage, bool) or stage < 0:
        raise MessageRefusedError("finish message refused: the stage is not a whole number")
    rt = runtime()
    step = rt.run(run_chord.next_stage(rt.engine, rt.settings, rt.locks, run_id, stage, results))
    if step.summary is not None:
        return summary_result(step.summary)
    try:
        _stage_chord(run_id, step.stage, step.dataset_ids).apply_async()
    except Exception as exc:  # the next stage could not be sent: the run fails, rows stay open
        return _abandon(rt.settings, run_id, exc)
    return {"run_id": run_id, "status": "running", "stage_sent": step.stage}


@app.task(
    name=TASK_FINISH_FAILED_CHORD,
    bind=True,
    autoretry_for=BODY_RETRY_ERRORS,
    max_retries=BODY_MAX_RETRIES,
    retry_backoff=True,
)
def finish_failed_chord(self: Task[Any, Any], /, run_id: str) -> dict[str, Any]:
    """Errback of the chord body: a subtask died outside our handling (hard time limit), or the
    body refused to finish; finish the run from its records once no subtask can still report."""
    log.error("Run %s: the chord failed; finishing the run from its records.", run_id)
    rt = runtime()
    try:
        summary = rt.run(run_chord.finish(rt.engine, rt.settings, rt.locks, run_id, None))
    except RunStillReportingError as exc:
        # A dead holder's lock lapses within one TTL; a live redelivered copy lives at most
        # DATASET_TIME_LIMIT_S. Look again a few times per TTL until past both.
        step_s = rt.settings.dataset_lock_ttl_s / 3
        longest_s = subtask_time_limit_s(rt.settings)  # a heavy subtask's, when longer
        tries = int((longest_s + rt.settings.dataset_lock_ttl_s) // step_s)
        log.warning("%s; trying again in %.1fs.", exc, step_s)
        raise self.retry(exc=exc, countdown=step_s, max_retries=tries + 3) from None
    return summary_result(summary)


@app.task(name=TASK_SCHEDULED_CHECK)
def scheduled_check() -> dict[str, Any]:
    """Beat: report what is behind; with MIGRATION_CHECK_ACTION=enqueue, start a run for it."""
    rt = runtime()
    report = rt.run(run_check(rt.engine, rt.settings, rt.locks))
    if report is None:
        return {"skipped": "the previous check is still running"}
    if report.request is not None:
        try:
            send_run(report.request)
        except Exception:
            rt.locks.run_lock().release(report.request.run_id)
            raise
    return report.to_dict()
