"""Canary, waves and the failure budget on the in-process path, over a fleet of 200 datasets
that a bad revision breaks."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from migrator.runs.inprocess import run_startup_migrations
from migrator.runs.rollout import Rollout, parse_share
from migrator.settings import Settings
from migrator.states import DatasetStatus, RunStatus
from tests.support.broken_adapter import Fleet
from tests.support.rows import run_rows

FLEET_SIZE = 200


def _run(settings: Settings, rollout: Rollout, **kwargs: object):  # type: ignore[no-untyped-def]
    return asyncio.run(run_startup_migrations(settings=settings, rollout=rollout, **kwargs))


def test_a_failed_canary_touches_nothing_else(
    make_settings: Callable[..., Settings], make_fleet: Callable[..., Fleet]
) -> None:
    settings = make_settings(MIGRATION_CONCURRENCY=8)
    fleet = make_fleet(settings, FLEET_SIZE, fail=1)

    summary = _run(settings, Rollout(canary=parse_share("5", "--canary"), wave_size=50))

    assert summary.status == RunStatus.HALTED
    assert len(fleet.touched()) == 5
    rows = run_rows(settings, summary.run_id)
    statuses = [r["status"] for r in rows.values()]
    assert statuses.count(DatasetStatus.FAILED) == 5
    assert statuses.count(DatasetStatus.DEFERRED) == FLEET_SIZE - 5
    deferred = next(r for r in rows.values() if r["status"] == DatasetStatus.DEFERRED)
    assert deferred["error"] == (
        "run halted: 5 of 5 dataset(s) of the canary did not succeed; not started"
    )
    assert summary.error == "run halted: 5 of 5 dataset(s) of the canary did not succeed"
    assert summary.counts[DatasetStatus.DEFERRED] == FLEET_SIZE - 5


def test_a_good_canary_lets_the_waves_follow(
    make_settings: Callable[..., Settings], make_fleet: Callable[..., Fleet]
) -> None:
    settings = make_settings()
    fleet = make_fleet(settings, 30)
    canary = fleet.ids[17]

    summary = _run(settings, Rollout(canary_ids=(canary,), wave_size=10))

    assert summary.status == RunStatus.SUCCEEDED
    assert fleet.touched() == set(fleet.ids)
    stages = {d: r["stage"] for d, r in run_rows(settings, summary.run_id).items()}
    assert stages[canary] == 0
    assert sorted(stages.values()).count(0) == 1
    assert sorted(set(stages.values())) == [0, 1, 2, 3]


def test_a_failing_wave_halts_the_rest(
    make_settings: Callable[..., Settings], make_fleet: Callable[..., Fleet]
) -> None:
    settings = make_settings()
    good = make_fleet(settings, 20, prefix="a")
    bad = make_fleet(settings, 20, prefix="b", fail=1)

    # Ids are random: the waves are by id, so some wave holds a bad one; every wave before it
    # ran, nothing after it did.
    summary = _run(settings, Rollout(wave_size=10))

    assert summary.status == RunStatus.HALTED
    rows = run_rows(settings, summary.run_id)
    failed_stage = min(r["stage"] for r in rows.values() if r["status"] == DatasetStatus.FAILED)
    for dataset_id, row in rows.items():
        started = dataset_id in good.touched() | bad.touched()
        assert started == (row["stage"] <= failed_stage)
        assert (row["status"] == DatasetStatus.DEFERRED) == (row["stage"] > failed_stage)


def test_the_failure_budget_stops_new_starts(
    make_settings: Callable[..., Settings], make_fleet: Callable[..., Fleet]
) -> None:
    concurrency = 8
    settings = make_settings(MIGRATION_CONCURRENCY=concurrency, MAX_FAILURES="50%")
    fleet = make_fleet(settings, FLEET_SIZE, fail=1, sleep_s=0.01)

    summary = _run(settings, Rollout(max_failures=parse_share("10", "--max-failures")))

    assert summary.status == RunStatus.HALTED
    attempted = len(fleet.touched())
    assert 10 <= attempted <= 10 + concurrency
    counts = summary.counts
    assert counts[DatasetStatus.FAILED] == attempted
    assert counts[DatasetStatus.DEFERRED] == FLEET_SIZE - attempted
    assert summary.error is not None and summary.error.startswith("failure budget spent:")


def test_max_failures_setting_is_the_default_budget(
    make_settings: Callable[..., Settings], make_fleet: Callable[..., Fleet]
) -> None:
    settings = make_settings(MIGRATION_CONCURRENCY=1, MAX_FAILURES="2%")
    fleet = make_fleet(settings, 100, fail=1)

    summary = _run(settings, Rollout())

    assert summary.status == RunStatus.HALTED
    assert len(fleet.touched()) == 2


def test_deferred_datasets_are_taken_by_a_retry_and_a_plain_rerun(
    make_settings: Callable[..., Settings], make_fleet: Callable[..., Fleet]
) -> None:
    settings = make_settings()
    bad = make_fleet(settings, 3, prefix="bad", fail=1)
    good = make_fleet(settings, 40, prefix="good")
    canary = parse_share("3", "--canary")

    halted = _run(settings, Rollout(canary_ids=tuple(bad.ids), canary=canary))
    assert halted.status == RunStatus.HALTED
    assert not good.touched()

    retried = _run(settings, Rollout(), retry_of=halted.run_id)
    assert {d.dataset_id for d in retried.datasets} == set(bad.ids) | set(good.ids)
    assert retried.status == RunStatus.PARTIAL  # the bad revision is still there
    assert good.touched() == set(good.ids)
