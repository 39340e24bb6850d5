"""A child process for the killed-backfill test: bring one dataset to the folder's head.

    python -m tests.vector.revisions.backfill_child PROVIDER URL FOLDER

The parent SIGKILLs it half-way through the backfill; nothing here cooperates with the kill.
"""

from __future__ import annotations

import asyncio
import sys

from migrator.vector.revisions import load_chain
from tests.vector.revisions.support import open_dataset


async def main(provider: str, url: str, folder: str) -> None:
    async with open_dataset(provider, url) as dataset:
        await dataset.upgrade(load_chain(folder))
    print("finished without being killed", flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
