"""A fake adapter whose migration can be broken on purpose, provider ``broken``: the "bad
revision pushed to the whole fleet" of the rollout tests.

``broken://<dir>?fail=1`` raises from the migration itself (what a bad revision does);
``outage=1`` raises ``ConnectionRefusedError`` (a server outage, which must never quarantine);
``sleep_s`` makes each attempt take that long. Every attempt leaves a file ``attempt-N`` in the
dataset's directory, so a test counts what was touched; a success writes head as the version.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from migrator.vector.base import MigrationSteps
from tests.support.fake_adapter import FakeAdapter

PROVIDER = "broken"
BAD_REVISION_ERROR = "column chunks.embedding_v2 does not exist (bad revision 0042)"


class BrokenAdapter(FakeAdapter):
    provider = PROVIDER
    server_key = PROVIDER

    async def run_migrations(self) -> MigrationSteps:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        attempt = len(list(self.state_dir.glob("attempt-*"))) + 1
        (self.state_dir / f"attempt-{attempt}").touch()
        if self.number("sleep_s"):
            await asyncio.sleep(self.number("sleep_s"))
        if self.number("outage"):
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 1)")
        if self.number("fail"):
            raise RuntimeError(BAD_REVISION_ERROR)
        return await self.record_head()


broken_url = BrokenAdapter.url


def attempts(state_dir: Path) -> int:
    """How many times the dataset kept in ``state_dir`` was attempted."""
    return len(list(state_dir.glob("attempt-*"))) if state_dir.is_dir() else 0
