"""A vector adapter whose migrations do nothing: it exposes the job's own overhead.

It is registered through the real entry point group by ``bench.entrypoint`` (a dist-info
directory on the path), exactly as a third-party adapter would be.
"""

from __future__ import annotations

from migrator.vector.base import MigrationSteps
from tests.support.fake_adapter import FakeAdapter


class NoopAdapter(FakeAdapter):
    """Every dataset is at head already; a migration records nothing."""

    provider = "bench-noop"
    server_key = "noop"

    async def read_version(self) -> str | None:
        return self.chain.head

    async def run_migrations(self) -> MigrationSteps:
        return MigrationSteps(None, self.chain.head, ())
