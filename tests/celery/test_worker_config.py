"""The Celery configuration: JSON only, late acks, nested limits, expiring beat entries, TLS."""

from __future__ import annotations

import os
import ssl
import subprocess
from collections.abc import Callable

import pytest

from migrator.constants import (
    CHECK_SCHEDULE_ENTRY,
    QUEUE_NAME,
    TASK_MIGRATE_DATASET,
    TASK_MIGRATE_RUN,
    TASK_SCHEDULED_CHECK,
)
from migrator.errors import WorkerConfigError
from migrator.settings import Settings
from tests.support.processes import BIN
from worker.config import celery_config, ssl_options, validate_limits


def test_config_is_json_only_with_late_acks_and_nested_limits(settings: Settings) -> None:
    config = celery_config(settings)

    assert config["accept_content"] == ["json"]
    assert config["result_accept_content"] == ["json"]
    assert (config["task_serializer"], config["result_serializer"]) == ("json", "json")
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True
    assert config["worker_prefetch_multiplier"] == 1
    assert config["broker_transport_options"] == {"visibility_timeout": 3600.0}
    assert config["result_expires"] == settings.result_expires_s
    assert config["task_default_queue"] == QUEUE_NAME
    assert config["task_annotations"][TASK_MIGRATE_DATASET] == {
        "soft_time_limit": 240.0,
        "time_limit": 300.0,
    }
    assert config["task_annotations"][TASK_MIGRATE_RUN] == {
        "soft_time_limit": 1200.0,
        "time_limit": 1260.0,
    }
    entry = config["beat_schedule"][CHECK_SCHEDULE_ENTRY]
    assert entry["task"] == TASK_SCHEDULED_CHECK
    assert entry["schedule"] == 300.0
    assert entry["options"] == {"expires": 300.0}  # a missed check never piles up
    assert "broker_use_ssl" not in config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"dataset_soft_time_limit_s": 300, "dataset_time_limit_s": 300},
            "time limits must nest: DATASET_SOFT_TIME_LIMIT_S (300) < DATASET_TIME_LIMIT_S "
            "(300) < REDIS_VISIBILITY_TIMEOUT_S (3600)",
        ),
        (
            {"dataset_time_limit_s": 4000},
            "time limits must nest: DATASET_SOFT_TIME_LIMIT_S (240) < DATASET_TIME_LIMIT_S "
            "(4000) < REDIS_VISIBILITY_TIMEOUT_S (3600)",
        ),
        (
            {"run_stale_after_s": 300},
            "DATASET_TIME_LIMIT_S (300) must be below RUN_STALE_AFTER_S (300)",
        ),
        (
            {"relational_lock_timeout_s": 3000},
            "RELATIONAL_LOCK_TIMEOUT_S (3000) + 660s for Alembic must stay below "
            "REDIS_VISIBILITY_TIMEOUT_S (3600)",
        ),
        (
            {"result_expires_s": 60},
            "RESULT_EXPIRES_S (60) must be at least RUN_STALE_AFTER_S + the default wait (4500)",
        ),
    ],
)
def test_inconsistent_limits_are_refused_with_the_variables_named(
    make_settings: Callable[..., Settings], overrides: dict[str, float], message: str
) -> None:
    with pytest.raises(WorkerConfigError) as raised:
        validate_limits(make_settings(**overrides))
    assert str(raised.value).startswith(message)


def test_worker_does_not_start_with_inconsistent_limits(
    make_settings: Callable[..., Settings],
) -> None:
    make_settings(dataset_soft_time_limit_s=400)

    result = subprocess.run(
        [str(BIN / "celery"), "-A", "worker", "worker"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )

    assert result.returncode != 0
    assert "time limits must nest: DATASET_SOFT_TIME_LIMIT_S (400)" in result.stderr


def test_rediss_urls_get_tls_options(make_settings: Callable[..., Settings]) -> None:
    assert ssl_options("redis://h:6379/0") is None
    assert ssl_options("rediss://:pw@h:6380/0") == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert ssl_options("rediss://h/0?ssl_cert_reqs=none&ssl_ca_certs=/ca.pem") == {
        "ssl_cert_reqs": ssl.CERT_NONE,
        "ssl_ca_certs": "/ca.pem",
    }
    with pytest.raises(WorkerConfigError, match="ssl_cert_reqs='sometimes'; use required"):
        ssl_options("rediss://h/0?ssl_cert_reqs=sometimes")

    config = celery_config(make_settings(redis_url="rediss://:pw@redis.example:6380/0"))
    assert config["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    assert config["redis_backend_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED}

    with pytest.raises(WorkerConfigError, match="REDIS_URL must start with redis:// or rediss://"):
        celery_config(make_settings(redis_url="amqp://guest@localhost//"))
