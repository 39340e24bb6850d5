"""A server that completes the login and then never answers fails the step, naming the server,
within QUERY_TIMEOUT_S: the control plane (every command) and a pgvector dataset server (that
dataset alone)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from migrator.datasets import remove_dataset
from migrator.errors import EXIT_RELATIONAL_FAILED
from tests.faults.conftest import Scenario
from tests.faults.fake_pg import StallingProxy
from tests.faults.world import World

# Judged against wall-clock bounds: run alone, not beside another pytest worker.
pytestmark = [pytest.mark.slow, pytest.mark.serial]

QUERY_TIMEOUT_S = 3


# What SQLAlchemy's pool logs when a goodbye to a silent server timed out.
GRACEFUL_CLOSE_FAILED = "Exception closing connection"


def within_one_bound(after_silence_s: float, bound_s: float) -> bool:
    """Whether a command ended within one bound of the moment its server went silent. Counted
    from that moment, so process start on a loaded 2-core machine is not; under two bounds, so
    a second wait (a graceful goodbye, an unlock, a run record on the silent server) fails it."""
    return after_silence_s < 2 * bound_s


COMMANDS = (
    ("status",),
    ("run", "--no-progress"),
    ("datasets", "list"),
    ("runs",),
    ("plan",),
    ("check", "--no-verify"),
)


class SilentServer:
    """Accepts TCP connections and never says a word."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.first_accepted_at: float | None = None
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                self._sockets.append(self.listener.accept()[0])
            except OSError:
                return
            if self.first_accepted_at is None:
                self.first_accepted_at = time.monotonic()

    def close(self) -> None:
        self.listener.close()
        for sock in self._sockets:
            sock.close()


def _via(world: World, port: int) -> str:
    return world.core.dsn(world.control_database).replace(f":{world.core.port}/", f":{port}/")


def test_stalled_servers_fail_within_the_query_timeout(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Servers that log in and never answer",
        "a proxy in front of the control plane stops forwarding the server's replies after "
        "login, for every command; then mid-run; a server that never answers the login; then "
        "a proxy in front of one pgvector server",
    )
    # CONNECT_TIMEOUT_S well above QUERY_TIMEOUT_S: a stall after login must cost one query
    # timeout, not a reconnect.
    world.configure(QUERY_TIMEOUT_S=QUERY_TIMEOUT_S, CONNECT_TIMEOUT_S=15)
    server = world.vector_server("vectors-1")
    good = world.add_pgvector(server, 2) + world.add_lancedb(1)

    stalled_dataset = StallingProxy(server.port)
    try:
        timings = {}
        for args in COMMANDS:
            timings[args[0]] = _stalls_after_login(world, args)
        assert all(within_one_bound(s, QUERY_TIMEOUT_S) for s in timings.values()), timings

        mid_run_s = _stops_answering_mid_run(world, world.vector_server("mid-run").port)
        login_s = _never_answers_the_login(world)

        planted = world.insert_raw(
            "stalled", "pgvector", f"postgresql://127.0.0.1:{stalled_dataset.port}/vectors"
        )
        started = time.monotonic()
        result = world.cli("run", "--json", "--no-progress")
        elapsed_s = time.monotonic() - started
    finally:
        stalled_dataset.close()
    assert result.returncode == 2, result.stderr
    outcomes = {d["dataset_id"]: d for d in json.loads(result.stdout)["datasets"]}
    assert outcomes[planted]["status"] == "failed"
    assert outcomes[planted]["error"] == (
        f"QueryTimeoutError: pgvector server 127.0.0.1:{stalled_dataset.port} database "
        f"'vectors' did not answer within QUERY_TIMEOUT_S={QUERY_TIMEOUT_S}s"
    )
    assert elapsed_s < QUERY_TIMEOUT_S + 20
    for dataset in good:
        assert outcomes[dataset.id]["status"] == "succeeded", outcomes[dataset.id]
    scenario.lost = len(world.lost(good))
    scenario.outcome = (
        f"{', '.join(timings)} failed naming the control plane {max(timings.values()):.1f}s "
        f"at most after it went silent (QUERY_TIMEOUT_S={QUERY_TIMEOUT_S}); mid-run "
        f"{mid_run_s:.1f}s after; a silent login {login_s:.1f}s after (CONNECT_TIMEOUT_S=3); "
        "the stalled dataset failed alone (QueryTimeoutError), others at head"
    )
    assert scenario.lost == 0


def _stalls_after_login(world: World, args: tuple[str, ...]) -> float:
    """``migrator ARGS`` through a proxy that swallows every reply after the login: it fails
    naming the control plane; seconds from the first swallowed reply to its end."""
    control = StallingProxy(world.core.port)
    try:
        result = world.cli(*args, DATABASE_URL=_via(world, control.port), timeout_s=60)
        ended = time.monotonic()
    finally:
        control.close()
    assert result.returncode == EXIT_RELATIONAL_FAILED, (args, result.stderr)
    assert result.stderr.strip().endswith(
        f"FAILED: control plane 127.0.0.1:{control.port} did not answer within "
        f"QUERY_TIMEOUT_S={QUERY_TIMEOUT_S}s"
    ), (args, result.stderr)
    assert control.stalled_at is not None, (args, result.stderr)
    assert GRACEFUL_CLOSE_FAILED not in result.stderr, (args, result.stderr)
    return ended - control.stalled_at


def _stops_answering_mid_run(world: World, vector_port: int) -> float:
    """``migrator run`` whose control plane stops answering (logins too) when the run opens
    its first pgvector dataset: it fails within one query timeout of that moment."""
    control = StallingProxy(world.core.port, after_login=False)
    gate = StallingProxy(
        vector_port, after_login=False, on_connect=lambda _n: control.stop_answering()
    )
    dataset = world.insert_raw("gate", "pgvector", f"postgresql://127.0.0.1:{gate.port}/vectors")
    try:
        result = world.cli("run", "--no-progress", DATABASE_URL=_via(world, control.port))
        ended = time.monotonic()
    finally:
        control.close()
        gate.close()
        world.run(lambda engine: remove_dataset(engine, dataset))
    assert control.stopped_at is not None, result.stderr
    assert result.returncode == EXIT_RELATIONAL_FAILED, result.stderr
    assert result.stderr.strip().endswith(
        f"FAILED: control plane 127.0.0.1:{control.port} did not answer within "
        f"QUERY_TIMEOUT_S={QUERY_TIMEOUT_S}s"
    ), result.stderr
    # Pooled connections that were idle when it stopped are dropped too, not said goodbye to.
    assert GRACEFUL_CLOSE_FAILED not in result.stderr, result.stderr
    after_stop_s = ended - control.stopped_at
    assert within_one_bound(after_stop_s, QUERY_TIMEOUT_S), after_stop_s
    return after_stop_s


def _never_answers_the_login(world: World) -> float:
    """A control plane that accepts TCP and never answers: the login's own bound, named."""
    connect_timeout_s = 3
    timings = []
    for args in (("status",), ("run", "--no-progress")):
        silent = SilentServer()
        try:
            result = world.cli(
                *args,
                DATABASE_URL=_via(world, silent.port),
                CONNECT_TIMEOUT_S=connect_timeout_s,
                timeout_s=60,
            )
            ended = time.monotonic()
        finally:
            silent.close()
        assert result.returncode == EXIT_RELATIONAL_FAILED, (args, result.stderr)
        assert result.stderr.strip().endswith(
            f"FAILED: control plane 127.0.0.1:{silent.port} did not complete a connection "
            f"within CONNECT_TIMEOUT_S={connect_timeout_s}s"
        ), (args, result.stderr)
        assert silent.first_accepted_at is not None, (args, result.stderr)
        timings.append(ended - silent.first_accepted_at)
    assert all(within_one_bound(s, connect_timeout_s) for s in timings), timings
    return max(timings)


# Where the control plane stops answering inside the relational step of ``migrator run`` on an
# empty control plane: the statement whose answer never comes, and who sent it.
RELATIONAL_STOPS = (
    ("taking the relational lock (the runner)", b"pg_try_advisory_lock"),
    ("the first revision's DDL (the Alembic child)", b"CREATE TABLE"),
    ("a later revision (the Alembic child)", b"UPDATE migrator_alembic_version"),
)


def test_a_stall_inside_the_relational_step_costs_one_timeout(
    world: World, scenario: Scenario
) -> None:
    scenario.describe(
        "A control plane that stops answering inside the relational step",
        "a proxy in front of an empty control plane stops answering (logins too) at the "
        "relational lock, at the Alembic child's first DDL, at a later revision's version update",
    )
    world.configure(QUERY_TIMEOUT_S=QUERY_TIMEOUT_S, CONNECT_TIMEOUT_S=15)
    after_stop_s = {}
    for where, statement in RELATIONAL_STOPS:
        with world.empty_database() as database:
            proxy = StallingProxy(world.core.port, after_login=False, stop_when_sent=statement)
            url = world.core.dsn(database).replace(f":{world.core.port}/", f":{proxy.port}/")
            try:
                result = world.cli("run", "--no-progress", DATABASE_URL=url, timeout_s=60)
                ended = time.monotonic()
            finally:
                proxy.close()
        assert proxy.stopped_at is not None, (where, result.stderr)
        assert result.returncode == EXIT_RELATIONAL_FAILED, (where, result.stderr)
        # The same words as every other command: the child's timeout is the control plane's.
        assert result.stderr.strip().endswith(
            f"FAILED: control plane 127.0.0.1:{proxy.port} did not answer within "
            f"QUERY_TIMEOUT_S={QUERY_TIMEOUT_S}s"
        ), (where, result.stderr)
        # Neither an unlock nor a run record was asked of the silent server afterwards.
        assert "not recorded" in result.stderr, (where, result.stderr)
        after_stop_s[where] = ended - proxy.stopped_at
    # The child's own exit and the runner's answer: one bound, never two.
    assert all(within_one_bound(s, QUERY_TIMEOUT_S) for s in after_stop_s.values()), after_stop_s
    scenario.outcome = "; ".join(f"{where} {s:.1f}s after" for where, s in after_stop_s.items())
    scenario.lost = 0


def test_a_stall_in_the_parent_tasks_relational_step_is_not_recorded_on_the_silent_server(
    world: World, scenario: Scenario
) -> None:
    scenario.describe(
        "A control plane that stops answering inside a worker's relational step",
        "the worker reaches an empty control plane through a proxy that stops answering at the "
        "relational lock; the deploy hook enqueues and waits",
    )
    world.configure(QUERY_TIMEOUT_S=QUERY_TIMEOUT_S, CONNECT_TIMEOUT_S=15)
    with world.empty_database() as database:
        direct = world.core.dsn(database)
        proxy = StallingProxy(
            world.core.port, after_login=False, stop_when_sent=b"pg_try_advisory_lock"
        )
        try:
            worker = world.start_worker(DATABASE_URL=_via_port(direct, world, proxy.port))
            result = world.cli(
                "enqueue", "--wait", "--timeout", "60", DATABASE_URL=direct, timeout_s=90
            )
            ended = time.monotonic()
            worker.wait_for_log(r"the run is not recorded")
        finally:
            proxy.close()
    assert proxy.stopped_at is not None, result.stderr
    assert result.returncode == EXIT_RELATIONAL_FAILED, result.stderr
    log = worker.log()
    assert f"control plane 127.0.0.1:{proxy.port} did not answer within" in log
    # No run record (nor its failure to be written) was asked of the silent server.
    assert "could not be recorded" not in log
    after_stop_s = ended - proxy.stopped_at
    assert within_one_bound(after_stop_s, QUERY_TIMEOUT_S), after_stop_s
    scenario.outcome = f"the parent failed {after_stop_s:.1f}s after the stall, run not recorded"
    scenario.lost = 0


def _via_port(dsn: str, world: World, port: int) -> str:
    return dsn.replace(f":{world.core.port}/", f":{port}/")
