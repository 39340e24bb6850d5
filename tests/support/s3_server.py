"""A real S3-compatible server (moto's, from ``moto[server]``) on a free loopback port, in a
child process, with one bucket; optionally every request delayed, so figures resemble a real
store. Tests start one per session (``tests/conftest.py``), the bench one per workload.

Run as ``python -m tests.support.s3_server PORT LATENCY_MS [REQUEST_LOG]`` it is the server.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
REGION = "us-east-1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class S3Server:
    """A running server: its endpoint, one bucket, and a key pair made up for this session
    (moto accepts any; the secret is random so a leak of it into any output is findable)."""

    endpoint: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    pid: int

    def settings_env(self, prefix: str = "") -> dict[str, str]:
        """The migrator settings that point ``s3://`` datasets at this server; with
        ``prefix``, VECTOR_STORE_ROOTS lists ``s3://bucket/prefix``."""
        root = f"s3://{self.bucket}/{prefix}".rstrip("/")
        return {
            "VECTOR_STORE_ROOTS": root,
            "VECTOR_STORE_S3_ENDPOINT": self.endpoint,
            "VECTOR_STORE_S3_REGION": REGION,
            "VECTOR_STORE_ALLOW_HTTP": "true",
            "VECTOR_STORE_S3_ACCESS_KEY_ID": self.access_key_id,
            "VECTOR_STORE_S3_SECRET_ACCESS_KEY": self.secret_access_key,
        }

    def aws_env(self) -> dict[str, str]:
        """The same credentials as the standard AWS environment instead of settings."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": REGION,
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def keys(self, prefix: str) -> list[str]:
        """Every object key under ``prefix``."""
        pages = (
            self.client()
            .get_paginator("list_objects_v2")
            .paginate(Bucket=self.bucket, Prefix=prefix)
        )
        return [item["Key"] for page in pages for item in page.get("Contents", [])]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def s3_server(
    *,
    latency_ms: float = 0.0,
    bucket: str = "migrator-test",
    log_path: Path | None = None,
    request_log: Path | None = None,
) -> Iterator[S3Server]:
    """Start the server in a child process, wait until it answers, create ``bucket``; stop
    the child on the way out. ``request_log``: a line per PUT, ``PUT <path>
    if-none-match=<header>``, to see which writes ask for put-if-absent."""
    port = free_port()
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "tests.support.s3_server", str(port), str(latency_ms)),
            str(request_log or ""),
        ],
        cwd=REPO_ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        endpoint = f"http://{HOST}:{port}"
        _wait_until_up(endpoint, process)
        server = S3Server(
            endpoint,
            bucket,
            "AKIA" + secrets.token_hex(8).upper(),
            secrets.token_urlsafe(30),
            process.pid,
        )
        server.client().create_bucket(Bucket=bucket)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        if log_path:
            out.close()  # type: ignore[union-attr]


def _wait_until_up(endpoint: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the S3 server exited with {process.returncode} at start")
        try:
            with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the S3 server at {endpoint} did not answer within {START_TIMEOUT_S}s")


def _serve(port: int, latency_ms: float, request_log: str) -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
    from werkzeug.serving import run_simple

    app = DomainDispatcherApplication(create_backend_app)
    delay_s = latency_ms / 1000

    def delayed(environ: Any, start_response: Any) -> Any:
        # Each request waits as a round trip to a real store would, on its own thread.
        if delay_s:
            time.sleep(delay_s)
        if request_log and environ["REQUEST_METHOD"] == "PUT":
            line = f"PUT {environ['PATH_INFO']} if-none-match={environ.get('HTTP_IF_NONE_MATCH')}"
            with open(request_log, "a") as log:
                log.write(line + "\n")
        return app(environ, start_response)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(HOST, port, delayed, threaded=True, use_reloader=False)


if __name__ == "__main__":
    _serve(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "")
