"""Celery configuration, built from ``migrator.settings`` and checked before a worker starts.

The limits nest: a dataset subtask's soft time limit < its hard limit < the run's staleness
bound and Redis's visibility timeout. Soft first, so the subtask records ``timed_out`` and the
chord still completes; hard before visibility, so Redis never hands a task that is still
running to a second worker.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit

from migrator.constants import (
    CANCEL_GRACE_S,
    CHECK_SCHEDULE_ENTRY,
    CHORD_JOIN_TIMEOUT_S,
    DEFAULT_WAIT_TIMEOUT_S,
    HARD_LIMIT_MARGIN_S,
    QUEUE_NAME,
    RELATIONAL_UPGRADE_ALLOWANCE_S,
    TASK_FINISH_FAILED_CHORD,
    TASK_FINISH_RUN,
    TASK_MIGRATE_DATASET,
    TASK_MIGRATE_RUN,
    TASK_SCHEDULED_CHECK,
)
from migrator.errors import WorkerConfigError
from migrator.runs.heavy import heavy_limit_problems, heavy_limits
from migrator.settings import Settings
from migrator.vector.chain_config import configured_chain
from migrator.vector.revisions.errors import RevisionError

_CERT_REQS = {
    "required": ssl.CERT_REQUIRED,
    "cert_required": ssl.CERT_REQUIRED,
    "optional": ssl.CERT_OPTIONAL,
    "cert_optional": ssl.CERT_OPTIONAL,
    "none": ssl.CERT_NONE,
    "cert_none": ssl.CERT_NONE,
}


def cancel_grace_s(settings: Settings) -> float:
    """How long a dataset cut off at its soft limit gets to close its database: at most half of
    what is left before the hard limit, so recording timed_out always fits in."""
    return min(
        CANCEL_GRACE_S, (settings.dataset_time_limit_s - settings.dataset_soft_time_limit_s) / 2
    )


def parent_limits_s(settings: Settings) -> tuple[float, float]:
    """Soft and hard limits of the parent: wait for another upgrade, then run Alembic."""
    soft_s = settings.relational_lock_timeout_s + RELATIONAL_UPGRADE_ALLOWANCE_S
    return soft_s, soft_s + HARD_LIMIT_MARGIN_S


def subtask_time_limit_s(settings: Settings) -> float:
    """The longest hard limit a dataset subtask may run under: DATASET_TIME_LIMIT_S, or the
    heavy one of the configured chain's largest budget (``migrator.runs.heavy``)."""
    budget_s = _max_budget_s(settings)
    if budget_s is None:
        return settings.dataset_time_limit_s
    return max(settings.dataset_time_limit_s, heavy_limits(settings, budget_s).hard_s)


def _max_budget_s(settings: Settings) -> float | None:
    # A folder that does not load is refused by the run itself, naming the file; the limits
    # check does not stand in its way.
    try:
        return configured_chain(settings).max_heavy_budget_s()
    except RevisionError:
        return None


def validate_limits(settings: Settings) -> None:
    """Raise ``WorkerConfigError`` naming the variables when the limits do not nest, the
    heavy ones from the configured chain's budgets included."""
    soft_s, hard_s = settings.dataset_soft_time_limit_s, settings.dataset_time_limit_s
    visibility_s = settings.redis_visibility_timeout_s
    if not soft_s < hard_s < visibility_s:
        raise WorkerConfigError(
            "time limits must nest: DATASET_SOFT_TIME_LIMIT_S "
            f"({soft_s:g}) < DATASET_TIME_LIMIT_S ({hard_s:g}) < REDIS_VISIBILITY_TIMEOUT_S "
            f"({visibility_s:g}); otherwise a dataset is killed before it can record timed_out, "
            "or Redis redelivers a task that is still running"
        )
    if hard_s >= settings.run_stale_after_s:
        raise WorkerConfigError(
            f"DATASET_TIME_LIMIT_S ({hard_s:g}) must be below RUN_STALE_AFTER_S "
            f"({settings.run_stale_after_s:g}): one slow dataset must not make a live run stale"
        )
    _, parent_hard_s = parent_limits_s(settings)
    if parent_hard_s >= visibility_s:
        raise WorkerConfigError(
            f"RELATIONAL_LOCK_TIMEOUT_S ({settings.relational_lock_timeout_s:g}) + "
            f"{RELATIONAL_UPGRADE_ALLOWANCE_S + HARD_LIMIT_MARGIN_S:g}s for Alembic must stay "
            f"below REDIS_VISIBILITY_TIMEOUT_S ({visibility_s:g})"
        )
    minimum_expires_s = settings.run_stale_after_s + DEFAULT_WAIT_TIMEOUT_S
    if settings.result_expires_s < minimum_expires_s:
        raise WorkerConfigError(
            f"RESULT_EXPIRES_S ({settings.result_expires_s:g}) must be at least "
            f"RUN_STALE_AFTER_S + the default wait ({minimum_expires_s:g}): chord state and "
            "the summary a trigger waits for live that long"
        )
    heavy_problems = heavy_limit_problems(settings)
    if heavy_problems:
        raise WorkerConfigError("; ".join(heavy_problems))


def ssl_options(redis_url: str) -> dict[str, Any] | None:
    """TLS options for a ``rediss://`` URL, from its query (``ssl_cert_reqs`` defaults to
    required); None for plain ``redis://``."""
    parts = urlsplit(redis_url)
    if parts.scheme != "rediss":
        return None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    reqs_name = query.get("ssl_cert_reqs", "required").lower()
    if reqs_name not in _CERT_REQS:
        raise WorkerConfigError(
            f"REDIS_URL ssl_cert_reqs={reqs_name!r}; use required, optional or none"
        )
    options: dict[str, Any] = {"ssl_cert_reqs": _CERT_REQS[reqs_name]}
    for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if key in query:
            options[key] = query[key]
    return options


def celery_config(settings: Settings) -> dict[str, Any]:
    """Every Celery setting this project sets, as one dict for ``app.conf.update``."""
    validate_limits(settings)
    url = settings.redis_url.get_secret_value()
    if urlsplit(url).scheme not in ("redis", "rediss"):
        raise WorkerConfigError("REDIS_URL must start with redis:// or rediss://")
    visibility = {"visibility_timeout": settings.redis_visibility_timeout_s}
    parent_soft_s, parent_hard_s = parent_limits_s(settings)
    short_limits = {
        "soft_time_limit": settings.dataset_soft_time_limit_s,
        "time_limit": settings.dataset_time_limit_s,
    }
    tls = ssl_options(url)
    config: dict[str, Any] = {
        "broker_url": url,
        "result_backend": url,
        # JSON only: a pickle payload is refused before any code of ours sees it.
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # A message is acknowledged after its task ends; a killed child's message is requeued.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "broker_transport_options": visibility,
        "result_backend_transport_options": visibility,
        "result_expires": settings.result_expires_s,
        "result_chord_join_timeout": CHORD_JOIN_TIMEOUT_S,
        "task_default_queue": QUEUE_NAME,
        "task_annotations": {
            TASK_MIGRATE_RUN: {"soft_time_limit": parent_soft_s, "time_limit": parent_hard_s},
            TASK_MIGRATE_DATASET: short_limits,
            TASK_FINISH_RUN: short_limits,
            TASK_FINISH_FAILED_CHORD: short_limits,
            TASK_SCHEDULED_CHECK: short_limits,
        },
        "beat_schedule": {
            CHECK_SCHEDULE_ENTRY: {
                "task": TASK_SCHEDULED_CHECK,
                "schedule": settings.migration_check_interval_s,
                # A check nobody ran within one interval is dropped: the next one replaces it,
                # so a stopped worker never comes back to a pile of checks.
                "options": {"expires": settings.migration_check_interval_s},
            }
        },
        "broker_connection_retry_on_startup": True,
        # Our handler (redacting) is installed through the setup_logging signal.
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
    }
    if tls is not None:
        config["broker_use_ssl"] = tls
        config["redis_backend_use_ssl"] = tls
    return config
