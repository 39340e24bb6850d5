"""Real processes a test starts: Celery workers and beat, the ``migrator`` CLI; and the one
``wait_until``."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from migrator.constants import QUEUE_NAME

BIN = Path(sys.executable).parent
STOP_TIMEOUT_S = 15.0
WORKER_READY = r"\S+@\S+ ready\."
BEAT_READY = r"beat: Starting\.\.\."


@dataclass
class ServiceProcess:
    """A worker, beat or other long-lived process started by a test, in its own process group;
    its output goes to ``log_path``."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_timeout_s: float = STOP_TIMEOUT_S

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout_s: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log())
            if found:
                return found
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.process.returncode}):\n{self.log()}"
                )
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in {self.name}'s log within {timeout_s}s")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children()

    def kill(self) -> None:
        """SIGKILL the whole process group: the main process and every pool child at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(self.stop_timeout_s)

    def stop(self) -> None:
        """Warm shutdown; after ``stop_timeout_s``, SIGKILL what is left of the group."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(self.stop_timeout_s)
        self.kill()  # leftover pool children, if any


def start_service(
    name: str, command: list[str], *, env: Mapping[str, str], cwd: Path, log_path: Path
) -> ServiceProcess:
    """Start ``command`` in its own process group (so teardown reaches its children)."""
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=dict(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return ServiceProcess(name, process, log_path)


def worker_command(
    *,
    concurrency: int,
    loglevel: str = "INFO",
    include: str | None = None,
    hostname: str | None,
    queues: Sequence[str] = (QUEUE_NAME,),
) -> list[str]:
    """``celery -A worker worker`` on the migrations queue (or ``queues``), without the cluster
    chatter tests do not need; ``include`` loads a module of test plugins (a fake adapter)."""
    command = [str(BIN / "celery"), "-A", "worker", "worker", "--loglevel", loglevel]
    command += ["--concurrency", str(concurrency), "--queues", ",".join(queues)]
    if include is not None:
        command += ["--include", include]
    if hostname is not None:
        command += ["--hostname", hostname]
    return [*command, "--without-mingle", "--without-gossip", "--without-heartbeat"]


def beat_command(schedule: Path) -> list[str]:
    """``celery -A worker beat`` keeping its schedule in ``schedule``."""
    return [
        str(BIN / "celery"),
        "-A",
        "worker",
        "beat",
        "--loglevel",
        "INFO",
        "--schedule",
        str(schedule),
    ]


def start_worker(
    name: str,
    *,
    include: str,
    env: Mapping[str, str],
    cwd: Path,
    concurrency: int = 2,
    loglevel: str = "INFO",
    ready_timeout_s: float | None = None,
    queues: Sequence[str] = (QUEUE_NAME,),
) -> ServiceProcess:
    """A real Celery worker named ``name`` (its log ``cwd/<name>.log``), loading the test
    plugins ``include``; waits for it to be ready when ``ready_timeout_s`` is given."""
    command = worker_command(
        concurrency=concurrency,
        loglevel=loglevel,
        include=include,
        hostname=f"{name}-{uuid.uuid4().hex[:6]}@%h",
        queues=queues,
    )
    worker = start_service(name, command, env=env, cwd=cwd, log_path=cwd / f"{name}.log")
    if ready_timeout_s is not None:
        worker.wait_for_log(WORKER_READY, ready_timeout_s)
    return worker


def start_beat(*, env: Mapping[str, str], cwd: Path) -> ServiceProcess:
    """Real celery beat, its schedule and log in ``cwd``; returns once it is ticking."""
    command = beat_command(cwd / "celerybeat-schedule")
    beat = start_service("beat", command, env=env, cwd=cwd, log_path=cwd / "beat.log")
    beat.wait_for_log(BEAT_READY)
    return beat


def run_migrator(
    *args: str, env: Mapping[str, str], cwd: Path, timeout_s: float | None
) -> subprocess.CompletedProcess[str]:
    """Run the ``migrator`` console script and collect its output."""
    return subprocess.run(
        [str(BIN / "migrator"), *args],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        stdin=subprocess.DEVNULL,
    )


def popen_migrator(*args: str, env: Mapping[str, str], cwd: Path) -> subprocess.Popen[str]:
    """Start the ``migrator`` console script in the background (collect it with communicate)."""
    return subprocess.Popen(
        [str(BIN / "migrator"), *args],
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something true, which is returned."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
