"""A ``migrator run`` that is killed part-way: the real in-process runner, settings from the
environment, with the built-in adapters wrapped so that the process SIGKILLs itself right after
the first dataset to get there commits the VERSION-th packaged revision (its history row
written; on pgvector a run of DDL-only revisions commits together), before the next begins.

    python -m tests.faults.crash_run VERSION

Other datasets migrating at the same moment (MIGRATION_CONCURRENCY) are cut wherever they are.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from migrator.runs.inprocess import run_startup_migrations
from migrator.vector.base import RevisionGoal
from migrator.vector.lancedb_adapter import LanceDBAdapter
from migrator.vector.pgvector_adapter import PgVectorAdapter
from migrator.vector.registry import register_adapter
from migrator.vector.revisions import RevisionChain, load_chain


def killing_after(adapter_cls: type[Any], version: int) -> type[Any]:
    revision = load_chain().ids()[version - 1]

    class KilledBetweenSteps(adapter_cls):  # type: ignore[misc, valid-type]
        async def apply(self, chain: RevisionChain, goal: RevisionGoal, on_revision: Any) -> Any:
            def reported(rev: str, direction: str, duration_ms: float) -> None:
                on_revision(rev, direction, duration_ms)
                if rev == revision:
                    sys.stdout.write(f"killed after step {version} of {self.target.dataset_id}\n")
                    sys.stdout.flush()
                    os.kill(os.getpid(), signal.SIGKILL)

            return await super().apply(chain, goal, reported)

    return KilledBetweenSteps


def main(version: int) -> None:
    register_adapter("pgvector", killing_after(PgVectorAdapter, version))
    register_adapter("lancedb", killing_after(LanceDBAdapter, version))
    asyncio.run(run_startup_migrations(trigger="deploy", requested_by="crash_run"))
    print("finished without being killed")


if __name__ == "__main__":
    main(int(sys.argv[1]))
