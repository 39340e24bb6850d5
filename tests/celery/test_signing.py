"""Celery's message signing, opt-in: off by default; bad settings refused at start, naming the
setting and the path, never the key; with a real worker, a signed run succeeds while an unsigned
message and one signed by an untrusted key are refused and touch nothing."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from migrator.constants import RUN_LOCK_KEY, TASK_MIGRATE_RUN, TASK_SCHEDULED_CHECK
from migrator.errors import SigningConfigError
from migrator.runs.request import RunRequest
from migrator.settings import Settings
from migrator.states import Trigger
from tests.celery.conftest import CeleryEnv, Cli
from tests.celery.helpers import json_out, received
from tests.support.environment import PROJECT_ROOT
from tests.support.processes import BIN, ServiceProcess
from tests.support.revisions import HEAD as HEAD_VERSION
from tests.support.rows import cached_versions, runs
from tests.support.signing import Signer, make_signer
from worker import create_app
from worker.config import celery_config
from worker.signing import signing_config, signing_files

UNSIGNED_REFUSED = (
    r"Received invalid task message: "
    r"Refusing to deserialize untrusted content of type json \(application/json\)"
)


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return make_signer(tmp_path / "keys", "worker")


@pytest.fixture
def stranger(tmp_path: Path) -> Signer:
    return make_signer(tmp_path / "keys", "stranger")


def test_signing_is_off_by_default(settings: Settings) -> None:
    assert signing_files(settings) is None
    config = celery_config(settings)
    assert (config["task_serializer"], config["accept_content"]) == ("json", ["json"])
    assert "security_key" not in config


def test_signing_settings_become_celerys_auth_settings(
    make_settings: Callable[..., Settings], signer: Signer
) -> None:
    files = signing_files(make_settings(**signer.env()))

    assert files is not None
    config = signing_config(files)
    # Celery's setup_security insists on exactly ["auth"]; results and events stay JSON.
    assert (config["task_serializer"], config["accept_content"]) == ("auth", ["auth"])
    assert (config["result_serializer"], config["result_accept_content"]) == ("json", ["json"])
    assert config["event_serializer"] == "json"
    assert (config["security_key"], config["security_certificate"]) == (
        str(signer.key_file),
        str(signer.cert_file),
    )
    assert (config["security_cert_store"], config["security_digest"]) == (
        str(signer.cert_store),
        "sha256",
    )


def _bad_settings(signer: Signer, stranger: Signer, tmp_path: Path) -> dict[str, dict[str, str]]:
    env = signer.env()
    return {
        "key without certificate": {"CELERY_SIGNING_KEY_FILE": env["CELERY_SIGNING_KEY_FILE"]},
        "missing key file": env | {"CELERY_SIGNING_KEY_FILE": str(tmp_path / "gone.key")},
        "a certificate as the key": env | {"CELERY_SIGNING_KEY_FILE": str(signer.cert_file)},
        "another key's certificate": env | {"CELERY_SIGNING_CERT_FILE": str(stranger.cert_file)},
        "store without its own certificate": env
        | {"CELERY_SIGNING_CERT_STORE": str(stranger.cert_store)},
        "store that is no folder": env | {"CELERY_SIGNING_CERT_STORE": str(signer.cert_file)},
    }


BAD_SETTING_MESSAGES = {
    "key without certificate": "message signing needs CELERY_SIGNING_CERT_FILE, "
    "CELERY_SIGNING_CERT_STORE as well as CELERY_SIGNING_KEY_FILE",
    "missing key file": "CELERY_SIGNING_KEY_FILE {tmp}/gone.key is not a file",
    "a certificate as the key": "CELERY_SIGNING_KEY_FILE {tmp}/keys/worker.pem is not an "
    "unencrypted PEM private key",
    "another key's certificate": "CELERY_SIGNING_CERT_FILE {tmp}/keys/stranger.pem is not the "
    "certificate of CELERY_SIGNING_KEY_FILE {tmp}/keys/worker.key",
    "store without its own certificate": "CELERY_SIGNING_CERT_STORE {tmp}/keys/stranger-trusted "
    "does not hold CELERY_SIGNING_CERT_FILE {tmp}/keys/worker.pem",
    "store that is no folder": "CELERY_SIGNING_CERT_STORE {tmp}/keys/worker.pem is not a directory",
}


@pytest.mark.parametrize("case", sorted(BAD_SETTING_MESSAGES))
def test_bad_signing_settings_are_refused_naming_the_setting(
    make_settings: Callable[..., Settings],
    signer: Signer,
    stranger: Signer,
    tmp_path: Path,
    case: str,
) -> None:
    settings = make_settings(**_bad_settings(signer, stranger, tmp_path)[case])

    with pytest.raises(SigningConfigError) as raised:
        create_app(settings)

    expected = BAD_SETTING_MESSAGES[case].format(tmp=tmp_path)
    assert str(raised.value).startswith(expected), str(raised.value)
    assert signer.key_body not in str(raised.value)


def test_the_cli_stops_at_start_on_a_bad_signing_setting(cli: Cli, signer: Signer) -> None:
    result = cli.run("enqueue", CELERY_SIGNING_KEY_FILE=signer.key_file)

    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        "FAILED: message signing needs CELERY_SIGNING_CERT_FILE, CELERY_SIGNING_CERT_STORE as "
        "well as CELERY_SIGNING_KEY_FILE: every process signs what it sends and checks what it "
        "receives\n"
    )
    assert signer.key_body not in result.stdout + result.stderr


@pytest.mark.slow
def test_a_signing_worker_runs_signed_messages_and_refuses_the_rest(
    celery_env: CeleryEnv,
    start_worker: Callable[..., ServiceProcess],
    cli: Cli,
    redis_admin: redis.Redis,
    signer: Signer,
    stranger: Signer,
) -> None:
    dataset_id = celery_env.add_dataset("one")
    worker = start_worker(**signer.env())

    # Unsigned (plain JSON, what anyone with the Redis password can send): refused undecoded.
    unsigned = create_app(celery_env.settings)
    forged_run_id = str(uuid.uuid4())
    message = RunRequest(run_id=forged_run_id, trigger=Trigger.DEPLOY).to_message()
    try:
        unsigned.send_task(
            TASK_MIGRATE_RUN, args=(forged_run_id,), kwargs=message, task_id=forged_run_id
        )
        unsigned.send_task(TASK_SCHEDULED_CHECK)
    finally:
        unsigned.close()
    worker.wait_for_log(UNSIGNED_REFUSED)
    # Signed, by a key whose certificate the worker's store does not hold: refused as well.
    stranger_run_id = str(uuid.uuid4())
    _send_parent(stranger_run_id, celery_env.environment(**stranger.env()))
    worker.wait_for_log(r"Can't decode message body: .*Unknown certificate: b\\?'stranger ")

    log = worker.log()
    assert len(re.findall(UNSIGNED_REFUSED, log)) == 2
    assert received(log, TASK_MIGRATE_RUN) == received(log, TASK_SCHEDULED_CHECK) == 0
    assert runs(celery_env.settings) == []
    assert redis_admin.get(RUN_LOCK_KEY) is None
    assert cached_versions(celery_env.settings) == {dataset_id: None}

    # The same worker runs a run sent by a CLI that signs with a trusted key, end to end.
    result = cli.run("enqueue", "--wait", "--timeout", "60", "--json", **signer.env())

    assert result.returncode == 0, result.stderr
    summary = json_out(result)
    assert (summary["status"], summary["counts"]) == ("succeeded", {"succeeded": 1, "total": 1})
    assert [r["id"] for r in runs(celery_env.settings)] == [summary["run_id"]]
    assert cached_versions(celery_env.settings) == {dataset_id: HEAD_VERSION}
    # Control messages are signed too: the compose health check keeps working.
    ping = subprocess.run(
        [str(BIN / "celery"), "-A", "worker", "inspect", "ping", "--timeout", "10"],
        env=celery_env.environment(**signer.env()),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ping.returncode == 0 and "pong" in ping.stdout, ping.stdout + ping.stderr
    output = worker.log() + result.stdout + result.stderr + ping.stdout + ping.stderr
    assert signer.key_body not in output
    assert stranger.key_body not in output


def _send_parent(run_id: str, env: dict[str, str]) -> None:
    sent = subprocess.run(
        [sys.executable, "-m", "tests.celery.send_parent", run_id],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
