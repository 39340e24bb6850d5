"""A vector adapter whose migrations do nothing: it exposes the job's own overhead.

It is registered through the real entry point group by ``bench.entrypoint`` (a dist-info
directory on the path), exactly as a third-party adapter would be.
"""

from __future__ import annotations

from typing import Any

from migrator.vector.base import MigrationSteps
from migrator.vector.schema import HEAD_VERSION


class NoopAdapter:
    provider = "bench-noop"

    def __init__(self, target: Any, settings: Any) -> None:
        self.target = target

    @classmethod
    def normalise_url(cls, url: str) -> tuple[str, str]:
        return url, "noop"

    async def read_version(self) -> int:
        return HEAD_VERSION

    async def run_migrations(self) -> MigrationSteps:
        return MigrationSteps(0, HEAD_VERSION, ())

    async def close(self) -> None:
        return None
