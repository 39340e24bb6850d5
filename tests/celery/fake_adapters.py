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
from typing import Any

from migrator.vector.base import MigrationSteps
from tests.support.fake_adapter import FakeAdapter

PROVIDER = "scripted"


class ScriptedAdapter(FakeAdapter):
    provider = PROVIDER
    server_key = PROVIDER

    def __init__(self, target: Any, settings: Any) -> None:
        super().__init__(target, settings)
        self.sleep_s = self.number("sleep_s")
        self.sleep_attempts = int(self.number("sleep_attempts"))
        self.kill_attempts = int(self.number("kill_attempts"))
        self.block_s = self.number("block_s")

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
        return await self.record_head()


scripted_url = ScriptedAdapter.url
