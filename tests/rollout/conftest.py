"""Fixtures for the rollout tests: a SQLite control plane at head and a fleet of ``broken``
fake datasets (tests/support/broken_adapter.py) registered straight into it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from migrator.relational import upgrade_to_head
from migrator.settings import Settings
from migrator.vector.registry import register_adapter, unregister_adapter
from tests.support.broken_adapter import PROVIDER, BrokenAdapter, attempts, broken_url
from tests.support.environment import on_control_plane
from tests.support.rows import RawDataset, insert_raw


@pytest.fixture(autouse=True)
def broken_provider() -> Iterator[None]:
    register_adapter(PROVIDER, BrokenAdapter)
    yield
    unregister_adapter(PROVIDER)


@dataclass
class Fleet:
    """Datasets by id, each with the directory its attempts are recorded in."""

    dirs: dict[str, Path]

    @property
    def ids(self) -> list[str]:
        return sorted(self.dirs)

    def touched(self) -> set[str]:
        return {d for d, path in self.dirs.items() if attempts(path)}


@pytest.fixture
def make_fleet(tmp_path: Path) -> Callable[..., Fleet]:
    """Factory: ``count`` datasets named ``<prefix>-N`` behaving as ``behaviour`` says."""

    def make(settings: Settings, count: int, prefix: str = "ds", **behaviour: float) -> Fleet:
        asyncio.run(upgrade_to_head(settings))
        rows = [
            RawDataset(
                name=f"{prefix}-{n:04d}",
                provider=PROVIDER,
                url=broken_url(tmp_path / "fleet" / f"{prefix}-{n:04d}", **behaviour),
                server_key=PROVIDER,
            )
            for n in range(count)
        ]
        ids = on_control_plane(settings, lambda engine: insert_raw(engine, rows))
        return Fleet({i: tmp_path / "fleet" / r.name for i, r in zip(ids, rows, strict=True)})

    return make
