"""``migrator plan`` and ``migrator enqueue --plan``: what a run would do, from the control
plane only, changing nothing; fast at 10,000 datasets."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from migrator.cli import main
from migrator.settings import Settings
from migrator.vector.schema import HEAD_VERSION
from tests.support.broken_adapter import Fleet
from tests.support.rows import all_run_rows, runs


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
            "from": 0,
            "to": HEAD_VERSION,
            "datasets": 200,
            "providers": {"broken": 200},
            "servers": 1,
            "estimate_s": 0.0,
        }
    ]
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
        ("ds-0010", 0, HEAD_VERSION),
        ("ds-0011", 0, HEAD_VERSION),
    ]
    assert _plan(capsys)["datasets"] == 190
    assert all_run_rows(settings) == rows_before and len(runs(settings)) == 1

    assert main(["enqueue", "--plan", "--json", "--canary", "1%"]) == 0
    assert json.loads(capsys.readouterr().out)["stages"] == [2, 188]
    assert len(runs(settings)) == 1


def test_plan_at_10000_datasets_is_fast(
    make_settings: Callable[..., Settings],
    make_fleet: Callable[..., Fleet],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(LOG_LEVEL="WARNING")
    make_fleet(settings, 10_000)

    started = time.monotonic()
    plan = _plan(capsys, "--canary", "1%", "--wave-size", "1000")
    elapsed_s = time.monotonic() - started

    assert plan["datasets"] == 10_000 and plan["stages"][0] == 100
    assert elapsed_s < 5, f"plan took {elapsed_s:.2f}s at 10,000 datasets"
    print(f"plan at 10,000 datasets: {elapsed_s:.2f}s")
