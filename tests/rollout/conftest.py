"""Fixtures for the rollout tests: a SQLite control plane at head and a fleet of ``broken``
fake datasets (tests/support/broken_adapter.py) registered straight into it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from migrator.relational import upgrade_to_head
from migrator.settings import Settings
from migrator.vector.registry import register_adapter, unregister_adapter
from tests.support.broken_adapter import PROVIDER, BrokenAdapter, Fleet, register_fleet


@pytest.fixture(autouse=True)
def broken_provider() -> Iterator[None]:
    register_adapter(PROVIDER, BrokenAdapter)
    yield
    unregister_adapter(PROVIDER)


@pytest.fixture
def make_fleet(tmp_path: Path) -> Callable[..., Fleet]:
    """Factory: ``count`` datasets named ``<prefix>-N`` behaving as ``behaviour`` says, on a
    control plane brought to head first."""

    def make(settings: Settings, count: int, prefix: str = "ds", **behaviour: float) -> Fleet:
        asyncio.run(upgrade_to_head(settings))
        return register_fleet(settings, tmp_path / "fleet", count, prefix, **behaviour)

    return make
