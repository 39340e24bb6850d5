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

pytestmark = pytest.mark.slow

QUERY_TIMEOUT_S = 2


# Process start (about 1.3 s) and a loaded 2-core machine; one bound, never two or three.
SLACK_S = 4
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
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                self._sockets.append(self.listener.accept()[0])
            except OSError:
                return

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

    control = StallingProxy(world.core.port)
    stalled_dataset = StallingProxy(server.port)
    try:
        timings = {}
        for args in COMMANDS:
            started = time.monotonic()
            result = world.cli(*args, DATABASE_URL=_via(world, control.port), timeout_s=60)
            timings[args[0]] = time.monotonic() - started
            assert result.returncode == EXIT_RELATIONAL_FAILED, (args, result.stderr)
            assert result.stderr.strip().endswith(
                f"FAILED: control plane 127.0.0.1:{control.port} did not answer within "
                f"QUERY_TIMEOUT_S={QUERY_TIMEOUT_S}s"
            ), (args, result.stderr)
        assert control.stalled.is_set()
        assert max(timings.values()) < QUERY_TIMEOUT_S + SLACK_S, timings

        mid_run_s = _stops_answering_mid_run(world, world.vector_server("mid-run").port)
        login_s = _never_answers_the_login(world)

        planted = world.insert_raw(
            "stalled", "pgvector", f"postgresql://127.0.0.1:{stalled_dataset.port}/vectors"
        )
        started = time.monotonic()
        result = world.cli("run", "--json", "--no-progress")
        elapsed_s = time.monotonic() - started
    finally:
        control.close()
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
        f"{', '.join(timings)} failed naming the control plane in {max(timings.values()):.1f}s "
        f"at most (QUERY_TIMEOUT_S={QUERY_TIMEOUT_S}); mid-run {mid_run_s:.1f}s after it "
        f"stopped; a silent login {login_s:.1f}s (CONNECT_TIMEOUT_S); the stalled dataset "
        "failed alone (QueryTimeoutError), others at head"
    )
    assert scenario.lost == 0


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
    after_stop_s = ended - control.stopped_at
    assert after_stop_s < QUERY_TIMEOUT_S + SLACK_S, after_stop_s
    return after_stop_s


def _never_answers_the_login(world: World) -> float:
    """A control plane that accepts TCP and never answers: the login's own bound, named."""
    silent = SilentServer()
    connect_timeout_s = 3
    try:
        timings = []
        for args in (("status",), ("run", "--no-progress")):
            started = time.monotonic()
            result = world.cli(
                *args,
                DATABASE_URL=_via(world, silent.port),
                CONNECT_TIMEOUT_S=connect_timeout_s,
                timeout_s=60,
            )
            timings.append(time.monotonic() - started)
            assert result.returncode == EXIT_RELATIONAL_FAILED, (args, result.stderr)
            assert result.stderr.strip().endswith(
                f"FAILED: control plane 127.0.0.1:{silent.port} did not complete a connection "
                f"within CONNECT_TIMEOUT_S={connect_timeout_s}s"
            ), (args, result.stderr)
    finally:
        silent.close()
    assert max(timings) < connect_timeout_s + SLACK_S, timings
    return max(timings)
