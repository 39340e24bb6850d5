"""``migrator plan`` and ``migrator enqueue --plan``: what a run would do, from the control
plane only, changing nothing; right at 10,000 datasets (bench/plan.py times it)."""

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
from tests.support.broken_adapter import Fleet
from tests.support.revisions import HEAD, LANG, PACKAGED, app_folder
from tests.support.rows import all_run_rows, runs, set_cached_version


def _plan(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["plan", "--json", *argv]) == 0
    data: dict[str, Any] = json.loads(capsys.readouterr().out)
    return data


def test_plan_says_what_a_run_would_do_and_changes_nothing(
    make_settings: Callable[..., Settings],
    make_fleet: Callable[..., Fleet],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(MIGRATION_CONCURRENCY=4, LOG_LEVEL="WARNING")
    fleet = make_fleet(settings, 200)

    plan = _plan(capsys, "--canary", "5", "--wave-size", "50", "--max-failures", "10")

    assert plan["datasets"] == 200 and plan["providers"] == {"broken": 200}
    assert plan["servers"] == 1
    assert plan["stages"] == [5, 50, 50, 50, 45]
    assert plan["max_failures"] == 10
    assert plan["moves"] == [
        {
            "from": None,
            "to": HEAD,
            "datasets": 200,
            "providers": {"broken": 200},
            "servers": 1,
            "estimate_s": 0.0,
        }
    ]
    # Every packaged revision is on the way for all 200; a third-party adapter applies them.
    assert [(r["revision"], r["datasets"], r["providers"]) for r in plan["revisions"]] == [
        (rev, 200, {"broken": 200}) for rev in PACKAGED
    ]
    assert plan["revisions"][0]["operations"] == {
        "broken": ["(applied by the provider's own adapter)"]
    }
    assert plan["estimate_s"] is None
    assert not fleet.touched() and runs(settings) == []

    # After a run of ten, the estimate comes from their durations; the plan shrinks by ten.
    some = [f"ds-{n:04d}" for n in range(10)]
    assert main(["run", "--no-progress", *(a for n in some for a in ("--dataset", n))]) == 0
    capsys.readouterr()
    rows_before = all_run_rows(settings)
    plan = _plan(capsys, "--dataset", "ds-0010", "--dataset", "ds-0011")
    assert plan["datasets"] == 2 and plan["estimate_s"] is not None
    assert plan["estimate_basis"].startswith("mean of 10 earlier successful migration(s)")
    assert [(d["name"], d["from"], d["to"]) for d in plan["detail"]] == [
        ("ds-0010", None, HEAD),
        ("ds-0011", None, HEAD),
    ]
    assert _plan(capsys)["datasets"] == 190
    assert all_run_rows(settings) == rows_before and len(runs(settings)) == 1

    assert main(["enqueue", "--plan", "--json", "--canary", "1%"]) == 0
    assert json.loads(capsys.readouterr().out)["stages"] == [2, 188]
    assert len(runs(settings)) == 1


def test_plan_at_10000_datasets(
    make_settings: Callable[..., Settings],
    make_fleet: Callable[..., Fleet],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The plan's content at fleet size; its time is measured by bench/plan.py."""
    settings = make_settings(LOG_LEVEL="WARNING")
    fleet = make_fleet(settings, 10_000)

    plan = _plan(capsys, "--canary", "1%", "--wave-size", "1000", "--max-failures", "2%")

    assert plan["datasets"] == 10_000 and plan["providers"] == {"broken": 10_000}
    assert plan["stages"] == [100, *[1000] * 9, 900]
    assert plan["max_failures"] == 200
    assert [(m["from"], m["datasets"]) for m in plan["moves"]] == [(None, 10_000)]
    assert [(r["revision"], r["datasets"]) for r in plan["revisions"]] == [
        (rev, 10_000) for rev in PACKAGED
    ]
    assert not fleet.touched() and runs(settings) == []


def test_plan_lists_each_revision_with_its_datasets_and_operations(
    make_settings: Callable[..., Settings], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(VECTOR_MIGRATIONS=str(app_folder(tmp_path)), LOG_LEVEL="WARNING")
    asyncio.run(upgrade_to_head(settings))
    partway, _, elsewhere = asyncio.run(_lance_datasets(settings, "partway", "fresh", "other"))
    assert main(["run", "--no-progress", "--dataset", partway, "--to", PACKAGED[1]]) == 0
    set_cached_version(settings, elsewhere, "0099_deployed_elsewhere")
    capsys.readouterr()
    rows_before = all_run_rows(settings)

    plan = _plan(capsys)

    assert (plan["vector_head"], plan["vector_target"], plan["direction"]) == (
        LANG,
        LANG,
        "upgrade",
    )
    moves = {m["from"]: (m["datasets"], m.get("refused")) for m in plan["moves"]}
    assert moves[None] == (1, None) and moves[PACKAGED[1]] == (1, None)
    assert "0099_deployed_elsewhere" in moves["0099_deployed_elsewhere"][1]
    steps = [(s["revision"], s["datasets"]) for s in plan["revisions"]]
    assert steps == [(PACKAGED[0], 1), (PACKAGED[1], 1), (PACKAGED[2], 2), (LANG, 2)]
    assert plan["revisions"][-1]["operations"] == {
        "lancedb": ["add_column('chunks', 'lang', 'string')"]
    }

    down = _plan(capsys, "--downgrade", "--to", PACKAGED[0], "--dataset", partway)
    assert [(s["revision"], s["direction"], s["datasets"]) for s in down["revisions"]] == [
        (PACKAGED[1], "downgrade", 1)
    ]
    assert main(["plan", "--downgrade"]) == 64  # --downgrade needs --to
    assert all_run_rows(settings) == rows_before and len(runs(settings)) == 1


async def _lance_datasets(settings: Settings, *names: str) -> list[str]:
    async with control_plane(settings) as engine:
        return [
            (await add_dataset(engine, settings, name=name, provider="lancedb")).id
            for name in names
        ]
