"""People know datasets by name: every line that names a dataset shows its name and its id
(control characters escaped), JSON carries both, and ``--dataset`` takes either."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from migrator.cli import main
from migrator.datasets import add_dataset
from migrator.db import control_plane
from migrator.models import dataset_databases, datasets
from migrator.relational import upgrade_to_head
from migrator.settings import Settings
from tests.support.services import REDIS_BASE_URL, REDIS_DB

DOWN_URL = "postgresql://127.0.0.1:1/vectors"
# A name written into the control plane by hand, past validation: it must not reach a
# terminal or a log line raw.
HOSTILE_NAME = "evil\x1b[31m\nFAILED: forged"
HOSTILE_SHOWN = "evil\\x1b[31m\\nFAILED: forged"


async def _add(settings: Settings, name: str, url: str | None = None) -> str:
    async with control_plane(settings) as engine:
        provider = "pgvector" if url else "lancedb"
        row = await add_dataset(engine, settings, name=name, provider=provider, url=url)
    return row.id


async def _rename(settings: Settings, dataset_id: str, name: str) -> None:
    async with control_plane(settings) as engine, engine.begin() as conn:
        # The name is shown from the migrator's per-dataset state (what a source would list).
        await conn.execute(datasets.update().where(datasets.c.id == dataset_id).values(name=name))
        await conn.execute(
            dataset_databases.update()
            .where(dataset_databases.c.dataset_id == dataset_id)
            .values(name=name)
        )


@pytest.fixture
def control(make_settings: Callable[..., Settings]) -> Settings:
    settings = make_settings(redis_url=f"{REDIS_BASE_URL}/{REDIS_DB}")
    asyncio.run(upgrade_to_head(settings))
    return settings


def test_run_summary_status_and_logs_name_a_failed_dataset(
    control: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    down = asyncio.run(_add(control, "orders-eu", DOWN_URL))

    assert main(["run", "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert f"  failed: orders-eu ({down}): VectorDatabaseUnreachableError: " in out
    assert f'dataset={down} name="orders-eu" status=failed step=connect ' in err
    run_id = out.split()[1].rstrip(":")

    assert main(["status", run_id]) == 0
    assert f"  failed: orders-eu ({down}): VectorDatabaseUnreachableError: " in (
        capsys.readouterr().out
    )
    assert main(["status", run_id, "--json"]) == 0
    (outcome,) = json.loads(capsys.readouterr().out)["datasets"]
    assert (outcome["dataset_id"], outcome["name"], outcome["status"]) == (
        down,
        "orders-eu",
        "failed",
    )


def test_run_json_carries_name_and_id(
    control: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = {asyncio.run(_add(control, name)): name for name in ("alpha", "beta")}

    assert main(["run", "--json", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert {d["dataset_id"]: d["name"] for d in summary["datasets"]} == ids


def test_status_lists_pending_datasets_by_name_and_id(
    control: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    pending = asyncio.run(_add(control, "pending-one"))

    assert main(["status"]) == 0
    assert (
        f"  pending: pending-one ({pending}) (lancedb) at (no revision)" in capsys.readouterr().out
    )


def test_control_characters_in_a_name_are_escaped_everywhere_it_is_shown(
    control: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    down = asyncio.run(_add(control, "placeholder", DOWN_URL))
    asyncio.run(_rename(control, down, HOSTILE_NAME))

    assert main(["run", "--no-progress"]) == 2
    out, err = capsys.readouterr()
    assert f"  failed: {HOSTILE_SHOWN} ({down}): " in out
    assert f'dataset={down} name="{HOSTILE_SHOWN}" status=failed' in err
    assert main(["datasets", "list"]) == 0
    listed = capsys.readouterr().out
    assert HOSTILE_SHOWN in listed
    for shown in (out, err, listed):
        assert "\x1b" not in shown
        assert "\nFAILED: forged" not in shown


def test_dataset_option_takes_a_name_or_an_id(
    control: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    wanted = asyncio.run(_add(control, "wanted"))
    other = asyncio.run(_add(control, "other"))

    assert main(["run", "--json", "--no-progress", "--dataset", "wanted"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [(d["dataset_id"], d["name"]) for d in summary["datasets"]] == [(wanted, "wanted")]

    assert main(["run", "--json", "--no-progress", "--dataset", other, "--dataset", "other"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [(d["dataset_id"], d["name"]) for d in summary["datasets"]] == [(other, "other")]


def test_an_unknown_or_ambiguous_dataset_name_is_a_usage_error(
    control: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    first = asyncio.run(_add(control, "first"))
    # A second dataset whose name is the first one's id: that value names two datasets.
    second = asyncio.run(_add(control, first))

    assert main(["run", "--no-progress", "--dataset", "no-such-name"]) == 64
    assert capsys.readouterr().err.strip() == ("FAILED: no dataset with id or name 'no-such-name'")
    assert main(["run", "--no-progress", "--dataset", first]) == 64
    assert capsys.readouterr().err.strip() == (
        f"FAILED: --dataset '{first}' is ambiguous: it is the id of dataset {first} and the name "
        f"of dataset {second}; rename that one to select either"
    )
    assert main(["enqueue", "--no-progress", "--dataset", "no-such-name"]) == 64
    assert "FAILED: no dataset with id or name 'no-such-name'" in capsys.readouterr().err

    async def runs_recorded() -> int:
        async with control_plane(control) as engine, engine.connect() as conn:
            return int(await conn.scalar(sa.text("SELECT count(*) FROM migration_runs")) or 0)

    assert asyncio.run(runs_recorded()) == 0  # refused before anything ran


def test_check_names_pending_datasets_in_its_report_and_json(
    control: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    pending = asyncio.run(_add(control, "behind-one"))

    assert main(["check", "--no-verify"]) == 2
    assert f"pending: 1  behind-one ({pending})" in capsys.readouterr().out
    assert main(["check", "--no-verify", "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["pending"] == [pending]
    assert report["datasets"] == [{"id": pending, "name": "behind-one"}]
