"""Fixtures and the report of the fault scenarios.

Each scenario gets a ``World`` (see ``world.py``) made of real processes on loopback: its own
Redis, its own control-plane database on a PostgreSQL server that requires a password, and the
pgvector servers it asks for. Every process is stopped at teardown, and everything the world
wrote — logs, CLI output, run records, Redis — is searched for its passwords.

Scenarios marked ``long`` (minutes each) run only when a ``-m`` expression names them
(``scripts/faults --long``); any other run deselects them. Each scenario fills in one
row of the table printed at the end of the session (``FAULTS_TABLE=path`` also writes it there).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from migrator.relational import upgrade_to_head
from migrator.settings import Settings
from migrator.vector.registry import register_adapter, unregister_adapter
from tests.faults.probe_adapter import PROVIDER, ProbeAdapter
from tests.faults.servers import PgCluster, PgServer, RedisServer
from tests.faults.world import World, _admin_execute
from tests.support.embedded_pg import scratch_dir

LONG_MARKER = "long"
CONTROL_TEMPLATE = "cp_template"


def secret(kind: str) -> str:
    """A password nobody could mistake for anything else in a log."""
    return f"Pw{kind}{uuid.uuid4().hex}"


# --- the long marker ---------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "long: a fault scenario that runs for minutes; deselected unless -m selects it "
        "(scripts/faults --long)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if LONG_MARKER in (config.option.markexpr or ""):
        return  # a -m that names them decides (scripts/faults --long: -m "long or not long")
    long_ones = [item for item in items if item.get_closest_marker(LONG_MARKER)]
    if long_ones:
        config.hook.pytest_deselected(items=long_ones)
        items[:] = [item for item in items if not item.get_closest_marker(LONG_MARKER)]


# --- the report --------------------------------------------------------------------------------


@dataclass
class Scenario:
    """One row of the report. A test names its scenario and fault, then fills in the outcome
    and how many datasets were lost once it has checked them."""

    nodeid: str
    name: str = ""
    fault: str = ""
    outcome: str = "(did not get that far)"
    lost: int | None = None
    result: str = "running"
    started: float = field(default_factory=time.monotonic)
    duration_s: float = 0.0

    def describe(self, name: str, fault: str) -> None:
        self.name, self.fault = name, fault


_SCENARIOS: list[Scenario] = []


@pytest.fixture
def scenario(request: pytest.FixtureRequest) -> Scenario:
    row = Scenario(request.node.nodeid)
    _SCENARIOS.append(row)
    return row


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    for row in _SCENARIOS:
        if row.nodeid == item.nodeid and (report.when == "call" or report.failed):
            row.result = "passed" if report.passed else "FAILED"
            row.duration_s = time.monotonic() - row.started
    return report


def report_table(rows: list[Scenario]) -> list[str]:
    header = ["scenario", "fault injected", "outcome", "datasets lost", "test", "s"]
    cells = [
        [
            r.name or r.nodeid,
            r.fault,
            r.outcome,
            "?" if r.lost is None else str(r.lost),
            r.result,
            f"{r.duration_s:.0f}",
        ]
        for r in rows
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells]
    return lines


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not _SCENARIOS:
        return
    lines = report_table(_SCENARIOS)
    terminalreporter.section("fault scenarios")
    for line in lines:
        terminalreporter.write_line(line)
    target = os.environ.get("FAULTS_TABLE")
    if target:
        Path(target).write_text("\n".join(lines) + "\n")


# --- servers shared by a session -------------------------------------------------------------


@pytest.fixture(scope="session")
def fault_scratch() -> Iterator[Path]:
    root = scratch_dir("migrator-faults-")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _cluster(root: Path, name: str, kind: str) -> PgCluster:
    path = root / name
    path.mkdir()
    path.chmod(0o755)
    return PgCluster.init(path, secret(kind))


@pytest.fixture(scope="session")
def vector_cluster(fault_scratch: Path) -> PgCluster:
    """The template every scenario's pgvector servers are copied from (password: VECTOR_DB_
    PASSWORD)."""
    return _cluster(fault_scratch, "vector-cluster", "Vec")


@pytest.fixture(scope="session")
def core_server(fault_scratch: Path) -> Iterator[PgServer]:
    """The server holding every scenario's control-plane database, copied from a template
    database already at head (so a scenario's control plane costs a CREATE DATABASE)."""
    cluster = _cluster(fault_scratch, "core-cluster", "Core")
    server = PgServer.from_cluster(cluster, fault_scratch, "core").start()
    try:
        asyncio.run(_admin_execute(server, f'CREATE DATABASE "{CONTROL_TEMPLATE}"'))
        asyncio.run(upgrade_to_head(Settings(database_url=server.dsn(CONTROL_TEMPLATE))))
        yield server
    finally:
        server.stop()
        server.kill()


# --- one world per scenario -----------------------------------------------------------------


@pytest.fixture(autouse=True)
def probe_provider() -> Iterator[None]:
    register_adapter(PROVIDER, ProbeAdapter)
    yield
    unregister_adapter(PROVIDER)


@pytest.fixture
def world(
    make_settings: Callable[..., Settings],
    core_server: PgServer,
    vector_cluster: PgCluster,
    fault_scratch: Path,
    tmp_path: Path,
) -> Iterator[World]:
    control_database = f"cp_{uuid.uuid4().hex[:12]}"
    asyncio.run(
        _admin_execute(
            core_server, f'CREATE DATABASE "{control_database}" TEMPLATE "{CONTROL_TEMPLATE}"'
        )
    )
    redis_server = RedisServer(tmp_path / "redis", secret("Redis")).start()
    scratch = fault_scratch / uuid.uuid4().hex[:8]
    scratch.mkdir()
    scratch.chmod(0o755)
    made = World(
        root=tmp_path,
        make_settings=make_settings,
        core=core_server,
        control_database=control_database,
        vector_cluster=vector_cluster,
        redis_server=redis_server,
        scratch=scratch,
    )
    try:
        yield made
        for server in made.servers:
            if not server.running:
                server.start()
        if not redis_server.process or redis_server.process.poll() is not None:
            redis_server.start()
        leaked = made.leaked()
    finally:
        made.close()
        redis_server.stop()
        asyncio.run(
            _admin_execute(
                core_server, f'DROP DATABASE IF EXISTS "{control_database}" WITH (FORCE)'
            )
        )
        shutil.rmtree(scratch, ignore_errors=True)
    assert leaked == [], f"secrets written somewhere: {leaked}"
