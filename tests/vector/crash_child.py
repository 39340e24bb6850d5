"""A child process for the interruption tests: migrate one dataset, SIGKILL itself on cue.

    python -m tests.vector.crash_child PROVIDER URL DATASET_ID WHEN POSITION

POSITION counts the packaged revisions from 1. WHEN is ``after`` (the revision at POSITION is
committed with its history row, as the executor reports it) or ``before-record`` (its work is
done but its history row is not written; on pgvector that is inside the transaction). The
adapter and executors are the real ones; only the kill is added (by wrapping the history
write, process glue). Settings come from the environment, as in production.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from migrator.settings import get_settings
from migrator.vector.base import DatasetTarget, RevisionGoal
from migrator.vector.registry import adapter_factory
from migrator.vector.revisions import RevisionChain, lance_store, load_chain, pg_store


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def kill_before_recording(revision: str) -> None:
    for store in (lance_store, pg_store):
        original = store.record_revision

        async def record(*args: Any, _original: Any = original) -> None:
            if revision in args:
                die()
            await _original(*args)

        store.record_revision = record  # type: ignore[attr-defined]


def crashing(adapter_cls: type[Any], revision: str) -> type[Any]:
    class KilledAfter(adapter_cls):  # type: ignore[misc, valid-type]
        async def apply(self, chain: RevisionChain, goal: RevisionGoal, on_revision: Any) -> Any:
            def reported(rev: str, direction: str, duration_ms: float) -> None:
                on_revision(rev, direction, duration_ms)
                if rev == revision:
                    die()

            return await super().apply(chain, goal, reported)

    return KilledAfter


async def main(provider: str, url: str, dataset_id: str, when: str, position: int) -> None:
    target = DatasetTarget(dataset_id, dataset_id, provider, url)
    revision = load_chain().ids()[position - 1]
    adapter_cls = adapter_factory(provider)
    if when == "after":
        adapter_cls = crashing(adapter_cls, revision)
    else:
        kill_before_recording(revision)
    adapter = adapter_cls(target, get_settings())
    try:
        await adapter.run_migrations()
    finally:
        await adapter.close()
    print("finished without being killed")


if __name__ == "__main__":
    provider, url, dataset_id, when, position = sys.argv[1:6]
    asyncio.run(main(provider, url, dataset_id, when, int(position)))
