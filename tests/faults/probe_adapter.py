"""A vector adapter that watches the migrator instead of storing vectors: provider ``probe``.

Registered in worker processes by ``--include tests.faults.worker_plugins`` and in the test
process by a fixture. The URL names a state directory and how long a migration takes, e.g.
``probe:///tmp/x/ds?sleep_s=0.5``. It keeps no lock of its own, on purpose: when two processes
migrate one dataset at once, only the migrator's dataset lock could have stopped them, and the
probe records the overlap (an ``overlap-*`` file) instead of hiding it.

Files in the state directory: ``inflight`` (held, with O_EXCL, while a migration runs),
``entered`` (one line per migration: pid and start time), ``version`` (the version record).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from migrator.vector.base import MigrationSteps
from tests.support.fake_adapter import FakeAdapter

PROVIDER = "probe"


class ProbeAdapter(FakeAdapter):
    provider = PROVIDER
    server_key = "probe-server"

    def __init__(self, target: Any, settings: Any) -> None:
        super().__init__(target, settings)
        self.sleep_s = self.number("sleep_s")

    async def run_migrations(self) -> MigrationSteps:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        inflight = self.state_dir / "inflight"
        started = time.time()
        try:
            fd = os.open(inflight, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            (self.state_dir / f"overlap-{os.getpid()}-{started:.6f}").write_text(
                inflight.read_text(errors="replace")
            )
            fd = None
        else:
            os.write(fd, f"{os.getpid()} {started:.6f}".encode())
            os.close(fd)
        with (self.state_dir / "entered").open("a") as entered:
            entered.write(f"{os.getpid()} {started:.6f}\n")
        try:
            await asyncio.sleep(self.sleep_s)
            return await self.record_head()
        finally:
            if fd is not None:
                inflight.unlink()


probe_url = ProbeAdapter.url
