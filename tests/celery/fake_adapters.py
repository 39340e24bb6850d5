"""A scripted vector adapter for the Celery tests, provider ``scripted``.

Workers register it by loading ``--include tests.celery.worker_plugins``; in the test process a
fixture registers it for each Celery test and removes it after, so other tests never see it.
The dataset URL names a state directory and what to do there, e.g.
``scripted:///tmp/x/ds?sleep_s=30&sleep_attempts=1``:

- ``sleep_s`` / ``sleep_attempts``: attempts 1..N sleep that long (cancellable) before migrating;
- ``kill_attempts``: attempts 1..N SIGKILL their own worker process mid-migration;
- ``block_s``: sleep without yielding to the event loop (only the hard time limit ends it).

Each attempt leaves ``attempt-N.pid`` (the pid of the process running it) and, when cancelled,
``cancelled-N``; the version record is the file ``version``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from migrator.vector.base import MigrationSteps
from migrator.vector.schema import HEAD_VERSION, steps_after

PROVIDER = "scripted"


def scripted_url(state_dir: Path, **behaviour: float) -> str:
    query = "&".join(f"{k}={v}" for k, v in behaviour.items())
    return f"{PROVIDER}://{state_dir}" + (f"?{query}" if query else "")


class ScriptedAdapter:
    provider = PROVIDER

    def __init__(self, target: Any, settings: Any) -> None:
        parts = urlsplit(target.url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.dataset_id = target.dataset_id
        self.state_dir = Path(parts.path)
        self.sleep_s = float(query.get("sleep_s", 0))
        self.sleep_attempts = int(query.get("sleep_attempts", 0))
        self.kill_attempts = int(query.get("kill_attempts", 0))
        self.block_s = float(query.get("block_s", 0))

    @classmethod
    def normalise_url(cls, url: str) -> tuple[str, str]:
        return url, PROVIDER

    async def read_version(self) -> int:
        version_file = self.state_dir / "version"
        return int(version_file.read_text()) if version_file.is_file() else 0

    async def run_migrations(self) -> MigrationSteps:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        attempt = len(list(self.state_dir.glob("attempt-*.pid"))) + 1
        (self.state_dir / f"attempt-{attempt}.pid").write_text(str(os.getpid()))
        if attempt <= self.kill_attempts:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.block_s:
            time.sleep(self.block_s)  # deliberately blocks the event loop
        if attempt <= self.sleep_attempts:
            try:
                await asyncio.sleep(self.sleep_s)
            except asyncio.CancelledError:
                (self.state_dir / f"cancelled-{attempt}").touch()
                raise
        before = await self.read_version()
        (self.state_dir / "version").write_text(str(HEAD_VERSION))
        return MigrationSteps(before, HEAD_VERSION, tuple(s.name for s in steps_after(before)))

    async def close(self) -> None:
        return None
