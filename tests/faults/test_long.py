"""Load, for minutes (``-m long``; ``scripts/faults --long``). Their last results are in
docs/faults.md.

- The per-server cap: 500 pgvector datasets on one server, migrated by two workers of 8
  processes each (16 slots); pg_stat_activity on that server is sampled all through the run and
  never shows more than PER_SERVER_CONCURRENCY (8) migrator sessions.
- Triggers storm: the deploy hook, admin commands and beat fire again and again, several at the
  same instant, while the control plane's schema and the datasets change under them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.constants import RUN_LOCK_KEY, SERVER_SLOTS_PREFIX
from migrator.models import dataset_databases
from tests.faults.conftest import Scenario
from tests.faults.servers import PgServer
from tests.faults.world import World
from tests.support.migrations import (
    control_plane_head,
    copy_migrations,
    revision_after,
    revision_source,
)
from tests.support.processes import wait_until
from tests.support.revisions import PACKAGED

pytestmark = [pytest.mark.long, pytest.mark.timeout(1800)]

CAP_DATASETS = 500
CAP_DEFAULT = 8  # settings.per_server_concurrency's default, left as it is
DDL_DELAY_S = 0.1
STORM_S = float(os.environ.get("FAULTS_STORM_S", "240"))
APPLICATION_NAME = "dataset-migrator"


# --- the cap --------------------------------------------------------------------------------


@dataclass
class ActivitySampler:
    """Counts migrator sessions on one server, every ``interval_s``, from its own thread."""

    server: PgServer
    interval_s: float = 0.02
    samples: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ActivitySampler:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._sample()), daemon=True)
        self._thread.start()
        return self

    async def _sample(self) -> None:
        conn = await asyncpg.connect(**self.server.admin_args())  # type: ignore[arg-type]
        try:
            while not self._stop.is_set():
                try:
                    self.samples.append(
                        await conn.fetchval(
                            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                            APPLICATION_NAME,
                        )
                    )
                except asyncpg.PostgresError as exc:  # pragma: no cover - reported, not hidden
                    self.errors.append(repr(exc))
                await asyncio.sleep(self.interval_s)
        finally:
            await conn.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


async def _slow_ddl(server: PgServer, delay_s: float) -> None:
    """Every DDL statement in ``vectors`` takes ``delay_s`` longer (an event trigger), as on a
    loaded server: migrations then hold their sessions long enough that 16 slots want more than
    8 at once, and the cap is what stops them."""
    conn = await asyncpg.connect(**server.admin_args("vectors"))  # type: ignore[arg-type]
    try:
        await conn.execute(
            "CREATE FUNCTION slow_ddl() RETURNS event_trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_sleep({delay_s}); END $$"
        )
        await conn.execute(
            "CREATE EVENT TRIGGER slow_ddl ON ddl_command_end EXECUTE FUNCTION slow_ddl()"
        )
    finally:
        await conn.close()


def test_per_server_cap_holds_across_workers(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Per-server cap across workers (500 datasets)",
        f"{CAP_DATASETS} pgvector datasets on one server, 2 workers x 8 processes = 16 slots, "
        "PER_SERVER_CONCURRENCY at its default, every DDL statement 100 ms slower on the "
        "server; pg_stat_activity sampled every 20 ms",
    )
    world.configure(DATASET_LOCK_TTL_S=10)
    server = world.vector_server("capped")
    world.add_pgvector(server, CAP_DATASETS, rows=4)
    asyncio.run(_slow_ddl(server, DDL_DELAY_S))
    workers = [world.start_worker(concurrency=8) for _ in range(2)]
    redis_client = world.redis_client()
    slot_counts: list[int] = []
    sampler = ActivitySampler(server).start()
    started = time.monotonic()
    hook = world.cli_popen(
        "enqueue", "--trigger", "deploy", "--wait", "--timeout", "1200", "--json"
    )
    while hook.poll() is None:
        slot_counts.append(redis_client.zcard(SERVER_SLOTS_PREFIX + server.server_key))
        time.sleep(0.05)
    duration_s = time.monotonic() - started
    sampler.stop()
    out, err = world.communicate(hook)
    redis_client.close()

    lost = world.lost()
    scenario.lost = len(lost)
    assert hook.returncode == 0, err
    summary = json.loads(out)
    assert (summary["status"], summary["counts"]["succeeded"]) == ("succeeded", CAP_DATASETS)
    assert sampler.errors == []
    peak = max(sampler.samples)
    histogram = Counter(sampler.samples)
    busy = [s for s in sampler.samples if s]
    assert peak <= CAP_DEFAULT, histogram
    assert peak == CAP_DEFAULT, histogram  # the cap is reached, so it is what bounds the run
    assert max(slot_counts) <= CAP_DEFAULT
    both = [w for w in workers if "status=succeeded" in w.log()]
    assert len(both) == 2  # both workers took part
    assert lost == []
    assert world.at_head() == []
    scenario.outcome = (
        f"{CAP_DATASETS}/{CAP_DATASETS} succeeded in {duration_s:.0f} s; "
        f"{len(sampler.samples)} samples: peak {peak} migrator sessions on the server (cap "
        f"{CAP_DEFAULT}), {sum(s == CAP_DEFAULT for s in busy) * 100 // max(1, len(busy))}% of "
        f"busy samples at the cap; Redis slot set peak {max(slot_counts)}"
    )


# --- the storm ------------------------------------------------------------------------------

CHANGE_BODY = """
op.execute(
    "CREATE TABLE IF NOT EXISTS fault_upgrades (revision text NOT NULL, "
    "applied_at timestamptz NOT NULL DEFAULT clock_timestamp(), pid integer NOT NULL "
    "DEFAULT pg_backend_pid())"
)
op.execute("INSERT INTO fault_upgrades (revision) VALUES ('{rev}')")
"""


@dataclass
class Storm:
    """The changes made and the trigger processes fired during the storm."""

    world: World
    versions: Path
    revisions: list[str] = field(default_factory=list)
    fired: list[tuple[str, subprocess.Popen[str], float]] = field(default_factory=list)
    finished: list[tuple[str, int, float]] = field(default_factory=list)
    added: int = 0
    drifted: int = 0

    def change_schema(self) -> str:
        """A new control-plane revision appears (a deploy of a new release)."""
        down = self.revisions[-1] if self.revisions else control_plane_head()
        rev = revision_after(down)
        message = f"fault scenario change {len(self.revisions) + 1}"
        text = revision_source(rev, down, CHANGE_BODY.format(rev=rev), message)
        staged = self.versions / f".{rev}.tmp"
        staged.write_text(text)
        staged.rename(self.versions / f"{rev}_fault_change.py")  # appears whole, at once
        self.revisions.append(rev)
        return rev

    def fire(self, kind: str, *args: str) -> None:
        process = self.world.cli_popen(*args)
        self.fired.append((kind, process, time.monotonic()))

    def reap(self, timeout_s: float) -> None:
        for kind, process, fired_at in self.fired:
            out, err = process.communicate(timeout=timeout_s)
            self.world.outputs.append(out + err)
            self.finished.append((kind, process.returncode, time.monotonic() - fired_at))
        self.fired.clear()


def _overlaps(intervals: list[tuple[Any, Any, str]]) -> list[tuple[str, str]]:
    """Pairs of (start, end, label) intervals that overlap."""
    ordered = sorted(intervals, key=lambda i: i[0])
    clashes = []
    for before, after in itertools.pairwise(ordered):
        if after[0] < before[1]:
            clashes.append((before[2], after[2]))
    return clashes


def test_triggers_storm(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Triggers storm",
        f"{STORM_S / 60:.0f} min: every ~4 s, 2 deploy hooks + 2 admin commands fired at the "
        "same instant; beat checking every 2 s with action=enqueue; a new control-plane "
        "revision every ~40 s; new and drifted datasets meanwhile",
    )
    alembic_ini = copy_migrations(world.root / "alembic-live")
    world.configure(
        ALEMBIC_CONFIG=alembic_ini,
        MIGRATION_CHECK_INTERVAL_S=2,
        MIGRATION_CHECK_ACTION="enqueue",
        RUN_STALE_AFTER_S=60,
        DATASET_SOFT_TIME_LIMIT_S=20,
        DATASET_TIME_LIMIT_S=30,
    )
    server = world.vector_server("vectors-1")
    drift_pool = world.add_pgvector(server, 20)
    world.add_lancedb(4)
    probes = [world.add_probe(f"probe-{i}", sleep_s=0.3 + 0.1 * i) for i in range(8)]
    storm = Storm(world, alembic_ini.parent / "migrations" / "versions")
    for _ in range(2):
        world.start_worker(concurrency=3)
    beat = world.start_beat()
    watcher = RunWatcher(world).start()
    rng = random.Random(20261128)
    started = time.monotonic()
    next_change = started
    wave = 0
    while time.monotonic() - started < STORM_S:
        wave += 1
        if time.monotonic() >= next_change:
            storm.change_schema()
            next_change += 40
        if wave % 3 == 0:
            world.add_pgvector(server, 2, prefix=f"late-{wave}")
            storm.added += 2
            _drift(world, [d.id for d in rng.sample(drift_pool, 2)])
            storm.drifted += 2
        some = [d.id for d in rng.sample(world.datasets, 3)]
        for _ in range(2):
            storm.fire("deploy", "enqueue", "--trigger", "deploy", "--wait", "--timeout", "600")
        storm.fire("admin --verify", "enqueue", "--verify", "--wait", "--timeout", "600")
        storm.fire(
            "admin --dataset",
            "enqueue",
            *[a for i in some for a in ("--dataset", i)],
            "--wait",
            "--timeout",
            "600",
        )
        time.sleep(4)
        storm.reap(timeout_s=600)
    storm_s = time.monotonic() - started
    storm.fire("deploy (final)", "enqueue", "--trigger", "deploy", "--wait", "--timeout", "600")
    storm.reap(timeout_s=600)
    beat.stop()
    wait_until(lambda: not _run_lock_held(world), 120, "the run lock to be free")
    watcher.stop()

    lost = world.lost()
    scenario.lost = len(lost)
    runs = world.runs()
    upgrades = world.run(_upgrades)
    assert [code for _, code, _ in storm.finished if code != 0] == [], storm.finished
    # Exactly one relational upgrade per change, each by one run.
    assert Counter(r for r, _ in upgrades) == dict.fromkeys(storm.revisions, 1)
    upgrading = [r for r in runs if r["relational_before"] != r["relational_after"]]
    chain = [control_plane_head()] + [r["relational_after"] for r in upgrading]
    assert [r["relational_before"] for r in upgrading] == chain[:-1]  # no gap, no repeat
    assert chain[-1] == storm.revisions[-1] == runs[-1]["relational_after"]
    # Never two runs at once: recorded intervals, and what the watcher saw as it happened.
    run_spans = [(r["started_at"], r["finished_at"], r["id"]) for r in runs]
    assert all(r["finished_at"] is not None for r in runs)
    assert _overlaps(run_spans) == []
    assert watcher.max_running <= 1
    # Never one dataset migrated by two workers at once.
    per_dataset: dict[str, list[tuple[Any, Any, str]]] = {}
    for row in world.all_run_rows():
        if row["started_at"] is not None and row["finished_at"] is not None:
            span = (row["started_at"], row["finished_at"], row["run_id"])
            per_dataset.setdefault(row["dataset_id"], []).append(span)
    assert {d: c for d, spans in per_dataset.items() if (c := _overlaps(spans))} == {}
    assert list((world.root / "probes").glob("*/overlap-*")) == []
    # No deadlock: every trigger returned, nothing left running, no server saw one.
    assert {r["status"] for r in runs} <= {"succeeded"}, Counter(r["status"] for r in runs)
    for log in (world.core.log_path, server.log_path):
        assert "deadlock detected" not in log.read_text(errors="replace")
    assert lost == []
    assert world.at_head() == []
    probe_runs = sum(
        len((world.probe_dir(p) / "entered").read_text().splitlines())
        for p in probes
        if (world.probe_dir(p) / "entered").exists()
    )
    waits = sorted(t for _, _, t in storm.finished)
    by_trigger = Counter(r["trigger"] for r in runs)
    scenario.outcome = (
        f"{storm_s / 60:.1f} min, {len(storm.finished)} triggers fired ({wave} waves), all "
        f"exit 0 (slowest wait {waits[-1]:.0f} s); {len(runs)} runs "
        f"({', '.join(f'{k} {v}' for k, v in sorted(by_trigger.items()))}), never 2 at once; "
        f"{len(storm.revisions)} schema changes, each upgraded exactly once (by "
        f"{len(upgrading)} runs); "
        f"{probe_runs} probe migrations, none overlapping; "
        f"{storm.added} datasets added and {storm.drifted} drifted meanwhile; no deadlock"
    )


def _drift(world: World, dataset_ids: list[str]) -> None:
    """The control plane's cache says revision 1 for datasets that are at head (as after a
    restore): the next selection takes them again, and their migration is a no-op."""

    async def write(engine: AsyncEngine) -> None:
        async with engine.begin() as conn:
            await conn.execute(
                dataset_databases.update()
                .where(dataset_databases.c.dataset_id.in_(dataset_ids))
                .values(vector_schema_version=PACKAGED[0])
            )

    world.run(write)


async def _upgrades(engine: AsyncEngine) -> list[tuple[str, datetime]]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT revision, applied_at FROM fault_upgrades"))
        return [(r.revision, r.applied_at) for r in rows]


def _run_lock_held(world: World) -> bool:
    client = world.redis_client()
    try:
        return bool(client.exists(RUN_LOCK_KEY))
    finally:
        client.close()


@dataclass
class RunWatcher:
    """Polls the control plane while the storm blows: how many runs are recorded running."""

    world: World
    interval_s: float = 0.2
    max_running: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RunWatcher:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._watch()), daemon=True)
        self._thread.start()
        return self

    async def _watch(self) -> None:
        from migrator.db import control_plane

        async with control_plane(self.world.settings) as engine:
            while not self._stop.is_set():
                async with engine.connect() as conn:
                    running = await conn.scalar(
                        sa.text("SELECT count(*) FROM migration_runs WHERE status = 'running'")
                    )
                self.max_running = max(self.max_running, int(running or 0))
                self.samples += 1
                await asyncio.sleep(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
