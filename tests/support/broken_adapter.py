"""A fake adapter whose migration can be broken on purpose, provider ``broken``: the "bad
revision pushed to the whole fleet" of the rollout tests.

``broken://<dir>?fail=1`` raises from the migration itself (what a bad revision does);
``outage=1`` raises ``ConnectionRefusedError`` (a server outage, which must never quarantine);
``sleep_s`` makes each attempt take that long. Every attempt leaves a file ``attempt-N`` in the
dataset's directory, so a test counts what was touched; a success writes head as the version.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.models import dataset_databases
from migrator.settings import Settings
from migrator.vector.base import MigrationSteps
from tests.support.environment import on_control_plane
from tests.support.fake_adapter import FakeAdapter
from tests.support.rows import RawDataset, insert_raw

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


@dataclass
class Fleet:
    """Broken-adapter datasets by id, each with the directory its attempts are recorded in."""

    dirs: dict[str, Path]

    @property
    def ids(self) -> list[str]:
        return sorted(self.dirs)

    def touched(self) -> set[str]:
        """The datasets attempted at least once."""
        return {d for d, path in self.dirs.items() if attempts(path)}

    def attempts(self) -> int:
        """Attempts over the whole fleet."""
        return sum(attempts(path) for path in self.dirs.values())

    def behave(self, settings: Settings, **behaviour: float) -> None:
        """Rewrite every dataset's URL to ``behaviour`` (the fix deployed, or a new fault)."""

        async def update(engine: AsyncEngine) -> None:
            async with engine.begin() as conn:
                for dataset_id, path in self.dirs.items():
                    await conn.execute(
                        sa.update(dataset_databases)
                        .where(dataset_databases.c.dataset_id == dataset_id)
                        .values(url=broken_url(path, **behaviour))
                    )

        on_control_plane(settings, update)


def register_fleet(
    settings: Settings, root: Path, count: int, prefix: str = "ds", **behaviour: float
) -> Fleet:
    """``count`` broken-adapter datasets named ``<prefix>-NNNN`` under ``root``, written straight
    into a control plane at head."""
    rows = [
        RawDataset(
            name=f"{prefix}-{n:04d}",
            provider=PROVIDER,
            url=broken_url(root / f"{prefix}-{n:04d}", **behaviour),
            server_key=PROVIDER,
        )
        for n in range(count)
    ]
    ids = on_control_plane(settings, lambda engine: insert_raw(engine, rows))
    return Fleet({i: root / r.name for i, r in zip(ids, rows, strict=True)})
