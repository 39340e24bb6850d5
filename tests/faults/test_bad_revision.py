"""A bad revision pushed to the whole fleet: 200 datasets whose migration raises (the broken
fake adapter), sorted first, and real pgvector and LanceDB datasets behind them.

The canary stops it after 5; a run with a failure budget stops it after at most 10 + the
worker slots; the real datasets are never touched meanwhile; once the fix is deployed,
``--retry-failed`` takes every failed and deferred dataset to head. Nothing is lost.
"""

from __future__ import annotations

import json

import pytest

from tests.faults.conftest import Scenario
from tests.faults.world import World, ordered_id
from tests.support.broken_adapter import PROVIDER, Fleet, broken_url
from tests.support.rows import RawDataset, insert_raw

pytestmark = pytest.mark.slow

WAIT = ("--wait", "--timeout", "180", "--json", "--no-progress")
BROKEN = 200
SLOTS = 4


def _broken_fleet(world: World) -> Fleet:
    dirs = {ordered_id(0x10, i): world.root / "broken" / f"bad-{i:04d}" for i in range(BROKEN)}
    raw = [
        RawDataset(path.name, PROVIDER, broken_url(path, fail=1), dataset_id, PROVIDER)
        for dataset_id, path in dirs.items()
    ]
    world.run(lambda engine: insert_raw(engine, raw))
    return Fleet(dirs)


def test_bad_revision_pushed_to_the_whole_fleet(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Bad revision pushed to the whole fleet",
        f"a revision that raises on every one of {BROKEN} datasets (sorted first), with 4 "
        f"pgvector and 4 LanceDB datasets behind them; {SLOTS} worker slots",
    )
    fleet = _broken_fleet(world)
    real = world.add_pgvector(world.vector_server("fleet"), 4) + world.add_lancedb(4)
    world.start_worker(concurrency=SLOTS)

    canary = world.cli("enqueue", "--canary", "5", "--wave-size", "50", *WAIT)

    assert canary.returncode == 5, canary.stderr
    first = json.loads(canary.stdout)
    total = BROKEN + len(real)
    assert first["counts"] == {"failed": 5, "deferred": total - 5, "total": total}
    assert len(fleet.touched()) == 5
    assert {c.recorded for c in world.check(real)} == {1}  # never opened

    budget = world.cli("enqueue", "--max-failures", "10", *WAIT)

    assert budget.returncode == 5, budget.stderr
    second = json.loads(budget.stdout)
    attempted = fleet.attempts() - 5
    assert 10 <= attempted <= 10 + SLOTS
    assert second["counts"]["deferred"] == total - attempted
    assert {c.recorded for c in world.check(real)} == {1}

    fleet.behave(world.settings)  # the fixed revision is deployed
    retry = world.cli("enqueue", "--retry-failed", second["run_id"], *WAIT)

    lost = world.lost()
    scenario.lost = len(lost)
    assert retry.returncode == 0, retry.stderr
    assert json.loads(retry.stdout)["counts"] == {"succeeded": total, "total": total}
    assert lost == []
    assert world.at_head() == []
    assert fleet.touched() == set(fleet.ids)
    scenario.outcome = (
        f"--canary 5: run halted (exit 5) after its 5 canaries failed, {total - 5} deferred, "
        f"nothing else sent; --max-failures 10: halted after {attempted} attempts (bound "
        f"10 + {SLOTS} slots), {total - attempted} deferred; the real datasets untouched at "
        f"version 1 by both; after the fix --retry-failed took all {total} to head"
    )
