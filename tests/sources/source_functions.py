"""Dataset sources as an application would write them (``DATASET_SOURCE=function:...``).

They read their rows from the JSON file named by ``TEST_SOURCE_ROWS``, so a test, its worker
and its CLI calls share one list the test can change between runs."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


def _rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(Path(os.environ["TEST_SOURCE_ROWS"]).read_text())
    return rows


async def tenants() -> Iterable[Mapping[str, Any]]:
    """The async form the README documents."""
    await asyncio.sleep(0)
    return _rows()


def tenants_sync() -> Iterable[Mapping[str, Any]]:
    """A plain function is accepted too."""
    return iter(_rows())


def not_a_list() -> str:
    return "acme"
