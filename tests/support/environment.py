"""The environment tests run the migrator in: settings every scenario starts from, the child
process environment, and a short way to work on the control plane."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.db import control_plane
from migrator.settings import Settings

T = TypeVar("T")

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent

# What every broker test starts from: short lock TTLs, so a killed child's locks lapse fast, and
# time limits that nest.
BASE_ENV = {
    "DATASET_LOCK_TTL_S": "2",
    "DATASET_SOFT_TIME_LIMIT_S": "30",
    "DATASET_TIME_LIMIT_S": "45",
    "RUN_STALE_AFTER_S": "120",
    "LOG_LEVEL": "INFO",
}


def as_env(values: Mapping[str, object]) -> dict[str, str]:
    """Settings overrides as environment variables (names in capitals, values as text)."""
    return {k.upper(): str(v) for k, v in values.items()}


def child_environment(*layers: Mapping[str, object]) -> dict[str, str]:
    """This process's environment with ``layers`` on top, for a worker or a CLI call that must
    import this checkout (and its test plugins)."""
    env = dict(os.environ)
    for layer in layers:
        env.update(as_env(layer))
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    return env


def on_control_plane(settings: Settings, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """``work(engine)`` against the control plane of ``settings``, in a fresh loop."""

    async def go() -> T:
        async with control_plane(settings) as engine:
            return await work(engine)

    return asyncio.run(go())
