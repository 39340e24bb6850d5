"""The in-process path with remote LanceDB datasets through the real CLI: registered, migrated
(one in a bucket that does not exist fails), at DEBUG; the key pair appears in no output, no
summary and no run record."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from migrator.settings import Settings
from tests.support.environment import child_environment
from tests.support.processes import run_migrator
from tests.support.revisions import HEAD
from tests.support.rows import all_run_rows, runs
from tests.support.s3_server import S3Server


def test_credentials_appear_in_no_output_summary_or_record(
    make_settings: Callable[..., Settings], s3: S3Server, s3_root: str, tmp_path: Path
) -> None:
    missing = "s3://no-such-bucket-here/t"
    env_settings = {
        **s3.settings_env(s3_root),
        "VECTOR_STORE_ROOTS": f"s3://{s3.bucket}/{s3_root},{missing}",
        "SINGLE_MACHINE": "true",
        "LOG_LEVEL": "DEBUG",
    }
    settings = make_settings(**env_settings)
    env = child_environment()
    outputs: list[str] = []

    def cli(*args: str) -> str:
        done = run_migrator(*args, env=env, cwd=tmp_path, timeout_s=120)
        outputs.extend([done.stdout, done.stderr])
        return done.stdout

    cli("run", "--json")  # the control plane to head
    cli(
        "datasets", "add", "good", "--provider", "lancedb", "--url", f"s3://{s3.bucket}/{s3_root}/g"
    )
    cli("datasets", "add", "lost", "--provider", "lancedb", "--url", f"{missing}/lost")
    summary = json.loads(cli("run", "--json"))
    outcomes = {d["name"]: d for d in summary["datasets"]}
    assert outcomes["good"]["status"] == "succeeded" and outcomes["good"]["version_after"] == HEAD
    assert outcomes["lost"]["status"] == "failed", outcomes["lost"]
    assert "NoSuchBucket" in outcomes["lost"]["error"] or "bucket" in outcomes["lost"]["error"]
    records = repr(runs(settings)) + repr(all_run_rows(settings))
    for secret in (s3.secret_access_key, s3.access_key_id):
        assert not [o for o in [*outputs, records] if secret in o]
    assert any("DEBUG" in o for o in outputs)  # the most talkative level was on
