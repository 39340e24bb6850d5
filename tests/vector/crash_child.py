"""A child process for the interruption tests: migrate one dataset, SIGKILL itself on cue.

    python -m tests.vector.crash_child PROVIDER URL DATASET_ID WHEN VERSION

WHEN is ``after`` (step VERSION is committed with its version row) or ``before-record`` (step
VERSION's work is done but its version row is not written; on pgvector that is inside the
step's transaction). The adapter is the real one; only the kill is added. Settings come from
the environment, as in production.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from migrator.settings import get_settings
from migrator.vector.base import DatasetTarget
from migrator.vector.registry import adapter_factory
from migrator.vector.schema import VectorStep


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def crashing(adapter_cls: type[Any], when: str, version: int) -> type[Any]:
    class Crashing(adapter_cls):  # type: ignore[misc, valid-type]
        async def apply_step(self, step: VectorStep) -> None:
            await super().apply_step(step)
            if when == "after" and step.version == version:
                die()

        async def _record(self, step: VectorStep) -> None:
            if when == "before-record" and step.version == version:
                die()
            await super()._record(step)

    return Crashing


async def main(provider: str, url: str, dataset_id: str, when: str, version: int) -> None:
    target = DatasetTarget(dataset_id, dataset_id, provider, url)
    adapter = crashing(adapter_factory(provider), when, version)(target, get_settings())
    try:
        await adapter.run_migrations()
    finally:
        await adapter.close()
    print("finished without being killed")


if __name__ == "__main__":
    provider, url, dataset_id, when, version = sys.argv[1:6]
    asyncio.run(main(provider, url, dataset_id, when, int(version)))
