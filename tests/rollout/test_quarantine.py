"""Quarantine: a dataset whose migration itself fails QUARANTINE_AFTER_RUNS runs in a row is
left out of runs until released; an outage never quarantines. Through the CLI's own entry
point, in this process (the broken adapter is registered here)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from migrator.cli import main
from migrator.settings import Settings
from tests.support.broken_adapter import BAD_REVISION_ERROR, Fleet
from tests.support.rows import all_run_rows, runs
from tests.support.services import REDIS_BASE_URL, REDIS_DB


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _states(settings: Settings) -> dict[str, str]:
    from migrator.datasets import list_datasets
    from tests.support.environment import on_control_plane

    return {r.id: r.state for r in on_control_plane(settings, list_datasets)}


def test_quarantine_after_runs_in_a_row_and_release(
    make_settings: Callable[..., Settings],
    make_fleet: Callable[..., Fleet],
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(
        QUARANTINE_AFTER_RUNS=2, REDIS_URL=f"{REDIS_BASE_URL}/{REDIS_DB}", LOG_LEVEL="WARNING"
    )
    bad = make_fleet(settings, 2, prefix="bad", fail=1)
    down = make_fleet(settings, 1, prefix="down", outage=1)
    good = make_fleet(settings, 1, prefix="good")

    code, _, _ = _cli(capsys, "run", "--no-progress")
    assert code == 2
    assert set(_states(settings).values()) == {"active"}

    code, _, err = _cli(capsys, "run", "--no-progress")
    assert code == 2
    states = _states(settings)
    assert {states[d] for d in bad.ids} == {"quarantined"}
    assert states[down.ids[0]] == "active"  # a connection error says nothing of the revision
    assert states[good.ids[0]] == "active"
    first = next(d for d, path in bad.dirs.items() if path.name == "bad-0000")
    assert f'dataset={first} name="bad-0000" quarantined: its migration failed 2' in err

    code, out, _ = _cli(capsys, "check", "--no-verify", "--json")
    assert code == 2
    report = json.loads(out)
    assert report["quarantined"] == bad.ids and report["quarantined_count"] == 2

    code, _, _ = _cli(capsys, "run", "--no-progress")  # the quarantined ones are left out
    third = runs(settings)[-1]["id"]
    assert {r["dataset_id"] for r in all_run_rows(settings, third)} == set(down.ids)

    code, out, _ = _cli(capsys, "datasets", "release", "bad-0000")
    assert code == 0 and f"released dataset {first} 'bad-0000': active again" in out
    code, _, err = _cli(capsys, "datasets", "release", "good-0000")
    assert code == 64
    assert "is active, not quarantined; nothing to release" in err

    bad.behave(settings)  # fixed: the released dataset migrates, the other stays out
    code, _, _ = _cli(capsys, "run", "--no-progress")
    fourth = runs(settings)[-1]["id"]
    rows = {r["dataset_id"]: r for r in all_run_rows(settings, fourth)}
    assert set(rows) == {first, down.ids[0]}
    assert rows[first]["status"] == "succeeded"
    (other,) = set(bad.ids) - {first}
    assert _states(settings)[other] == "quarantined"
    first_error = all_run_rows(settings, runs(settings)[0]["id"])
    assert any(BAD_REVISION_ERROR in (r["error"] or "") for r in first_error)
