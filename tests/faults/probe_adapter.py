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
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from migrator.vector.base import MigrationSteps
from migrator.vector.schema import HEAD_VERSION, steps_after

PROVIDER = "probe"


def probe_url(state_dir: Path, **behaviour: float) -> str:
    query = "&".join(f"{k}={v}" for k, v in behaviour.items())
    return f"{PROVIDER}://{state_dir}" + (f"?{query}" if query else "")


class ProbeAdapter:
    provider = PROVIDER

    def __init__(self, target: Any, settings: Any) -> None:
        parts = urlsplit(target.url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.state_dir = Path(parts.path)
        self.sleep_s = float(query.get("sleep_s", 0))

    @classmethod
    def normalise_url(cls, url: str) -> tuple[str, str]:
        return url, "probe-server"

    async def read_version(self) -> int:
        version_file = self.state_dir / "version"
        return int(version_file.read_text()) if version_file.is_file() else 0

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
            before = await self.read_version()
            (self.state_dir / "version").write_text(str(HEAD_VERSION))
        finally:
            if fd is not None:
                inflight.unlink()
        return MigrationSteps(before, HEAD_VERSION, tuple(s.name for s in steps_after(before)))

    async def close(self) -> None:
        return None
