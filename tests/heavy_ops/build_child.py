"""A child process that migrates one pgvector dataset to head, to be killed from outside
while its index build runs (the parent sends SIGKILL; nothing here kills itself).

    python -m tests.heavy_ops.build_child URL DATASET_ID

Settings (VECTOR_MIGRATIONS, INDEX_MAINTENANCE_WORK_MEM...) come from the environment.
"""

from __future__ import annotations

import asyncio
import sys

from migrator.settings import get_settings
from migrator.vector.base import DatasetTarget
from migrator.vector.registry import adapter_factory


async def main(url: str, dataset_id: str) -> None:
    target = DatasetTarget(dataset_id, dataset_id, "pgvector", url)
    adapter = adapter_factory("pgvector")(target, get_settings())
    try:
        await adapter.run_migrations()
    finally:
        await adapter.close()
    print("finished without being killed", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
