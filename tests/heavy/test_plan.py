"""``migrator plan`` names the heavy datasets of a run and their budgets, from the control plane
only: the budget comes from each dataset's cached revision, so one already past the heavy
revision is light."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from migrator.cli import main
from migrator.datasets import add_dataset
from migrator.db import control_plane
from migrator.relational import upgrade_to_head
from migrator.settings import Settings
from tests.heavy.test_declaration import heavy_folder
from tests.support.rows import set_cached_version


def _add(settings: Settings, names: list[str]) -> list[str]:
    async def add() -> list[str]:
        await upgrade_to_head(settings)
        async with control_plane(settings) as engine:
            rows = [
                await add_dataset(
                    engine,
                    settings,
                    name=name,
                    provider="pgvector",
                    url=f"postgresql://127.0.0.1:5999/{name}",
                )
                for name in names
            ]
        return [row.id for row in rows]

    return asyncio.run(add())


def test_plan_names_the_heavy_datasets_and_their_budgets(
    make_settings: Callable[..., Settings], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(VECTOR_MIGRATIONS=heavy_folder(tmp_path, budget_s=900))
    new, past_index, past_all = _add(settings, ["new", "past-index", "past-all"])
    set_cached_version(settings, past_index, "0004_index")
    set_cached_version(settings, past_all, "0006_declared")

    assert main(["plan", "--json", "--detail"]) == 0
    plan: dict[str, Any] = json.loads(capsys.readouterr().out)
    assert plan["heavy"] == {
        "datasets": 3,
        "longest_budget_s": 900.0,
        "queue": "migrator.heavy",
        "per_server": 1,
        "servers": 1,
        "shown": [
            {"id": new, "name": "new", "budget_s": 900.0},
            {"id": past_index, "name": "past-index", "budget_s": 600.0},
            {"id": past_all, "name": "past-all", "budget_s": 60.0},  # the backfill's
        ],
    }
    assert {d["id"]: d["heavy_budget_s"] for d in plan["detail"]} == {
        new: 900.0,
        past_index: 600.0,
        past_all: 60.0,
    }

    assert main(["plan"]) == 0
    text = capsys.readouterr().out
    assert (
        "heavy: 3 dataset(s) on 1 server(s), queue migrator.heavy, 1 at once per server, "
        "longest budget 900s"
    ) in text
    assert f"  new ({new}): budget 900s" in text


def test_plan_says_none_without_heavy_revisions(
    make_settings: Callable[..., Settings], capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings()
    _add(settings, ["light"])
    assert main(["plan"]) == 0
    assert "heavy: none" in capsys.readouterr().out
