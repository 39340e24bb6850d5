"""JSON only, and the Redis password never printed: worker logs (even at DEBUG) and CLI output."""

from __future__ import annotations

import uuid

import pytest

from migrator.constants import TASK_SCHEDULED_CHECK
from tests.celery.conftest import CeleryEnv, Cli, RedisAccount
from tests.celery.helpers import received
from tests.support.processes import ServiceProcess
from worker import create_app

pytestmark = pytest.mark.slow


def test_worker_refuses_a_pickle_message(
    celery_env: CeleryEnv, start_worker: type[ServiceProcess]
) -> None:
    worker = start_worker()
    sender = create_app(celery_env.settings)
    sender.conf.task_serializer = "pickle"  # what a forged message would use
    task_id = str(uuid.uuid4())
    try:
        sender.send_task(TASK_SCHEDULED_CHECK, task_id=task_id)
    finally:
        sender.close()

    worker.wait_for_log(
        r"Refusing to deserialize untrusted content of type pickle "
        r"\(application/x-python-serialize\)"
    )
    assert received(worker.log(), TASK_SCHEDULED_CHECK) == 0
    assert "Scheduled check:" not in worker.log()


def test_password_is_masked_in_worker_logs_at_debug_and_in_cli_output(
    celery_env: CeleryEnv,
    start_worker: type[ServiceProcess],
    cli: Cli,
    redis_account: RedisAccount,
) -> None:
    celery_env.add_dataset("one")
    worker = start_worker(LOG_LEVEL="DEBUG")

    result = cli.run("enqueue", "--wait", "--timeout", "60", LOG_LEVEL="DEBUG")

    assert result.returncode == 0, result.stderr
    log = worker.log()
    assert f"redis://{redis_account.user}:**@" in log  # the banner shows where, not how
    assert redis_account.password not in log + result.stdout + result.stderr

    unreachable = f"redis://{redis_account.user}:{redis_account.password}@127.0.0.1:1/13"
    refused = cli.run("enqueue", "--wait", REDIS_URL=unreachable)

    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "FAILED: ConnectionError: Error 111 connecting to 127.0.0.1:1. Connection refused."
    )
    assert redis_account.password not in refused.stdout + refused.stderr
