"""Credentials go only to allowed servers, and never in a form that reveals them.

A fake server on 127.0.0.1 asks for the password in cleartext or as MD5, over plain TCP and
after a TLS handshake with a self-signed certificate: it receives nothing but the startup
message. A URL outside VECTOR_DB_ALLOWED_HOSTS is refused at registration; planted by hand, it
fails that dataset alone and no connection is attempted.
"""

from __future__ import annotations

import json

import pytest

from tests.faults.conftest import Scenario
from tests.faults.fake_pg import AUTH_CLEARTEXT, AUTH_MD5, PasswordHarvester, self_signed_cert
from tests.faults.world import World

pytestmark = pytest.mark.slow


def _run(world: World, **overrides: object) -> dict[str, dict[str, object]]:
    result = world.cli("run", "--json", "--no-progress", **overrides)
    assert result.returncode == 2, result.stderr
    return {d["dataset_id"]: d for d in json.loads(result.stdout)["datasets"]}


def test_fake_servers_asking_for_the_password_get_nothing(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Password harvesting servers",
        "fake servers on 127.0.0.1 ask for the password in cleartext and as MD5, over plain TCP "
        "and over TLS with a self-signed certificate",
    )
    server = world.vector_server("vectors-1")
    good = world.add_pgvector(server, 2)
    cert = self_signed_cert(world.root)
    fakes = {
        "plain-cleartext": PasswordHarvester(auth_code=AUTH_CLEARTEXT),
        "tls-cleartext": PasswordHarvester(auth_code=AUTH_CLEARTEXT, cert=cert),
        "plain-md5": PasswordHarvester(auth_code=AUTH_MD5),
        "tls-md5": PasswordHarvester(auth_code=AUTH_MD5, cert=cert),
    }
    try:
        ids = {}
        for name, fake in fakes.items():
            added = world.cli(
                "datasets", "add", name, "--provider", "pgvector", "--url", fake.url(), "--json"
            )
            assert added.returncode == 0, added.stderr
            ids[name] = json.loads(added.stdout)["id"]
        outcomes = _run(world)
    finally:
        for fake in fakes.values():
            fake.close()

    password = world.vector_cluster.password.encode()
    for name, fake in fakes.items():
        assert fake.asked >= 1, f"{name}: the fake never got to ask"
        assert password not in fake.received, f"{name} received the password"
        assert not fake.received.startswith(b"p"), f"{name} got a password message"
        outcome = outcomes[ids[name]]
        assert outcome["status"] == "failed"
        assert "InsecureAuthenticationError" in str(outcome["error"])
        assert "refused and disconnected without sending it" in str(outcome["error"])
    assert fakes["tls-cleartext"].tls_handshakes >= 1
    for dataset in good:
        assert outcomes[dataset.id]["status"] == "succeeded"
    scenario.lost = len(world.lost(good))
    scenario.outcome = "4 fakes asked, 0 bytes of password sent; each failed alone; others at head"
    assert scenario.lost == 0


def test_hosts_outside_the_allow_list_are_never_contacted(world: World, scenario: Scenario) -> None:
    scenario.describe(
        "Dataset URL outside VECTOR_DB_ALLOWED_HOSTS",
        "registration of non-allowed hosts; a listening server planted by hand outside the list; "
        "a remote host with sslmode=disable",
    )
    good = world.add_lancedb(2)
    refused = world.cli(
        "datasets", "add", "remote", "--provider", "pgvector", "--url", "postgresql://10.1.2.3/v"
    )
    assert refused.returncode == 64
    assert refused.stderr.strip() == (
        "FAILED: dataset 'remote': host '10.1.2.3' is not in VECTOR_DB_ALLOWED_HOSTS; "
        "credentials are sent only to listed servers (add the host or its network to that "
        "setting)"
    )
    weak = world.cli(
        "datasets",
        "add",
        "weak",
        "--provider",
        "pgvector",
        "--url",
        "postgresql://db.example/v?sslmode=disable",
        VECTOR_DB_ALLOWED_HOSTS="db.example",
    )
    assert weak.returncode == 64
    assert "needs at least sslmode=verify-full" in weak.stderr

    fake = PasswordHarvester()
    try:
        planted = world.insert_raw("planted", "pgvector", fake.url())
        # The planted server listens on loopback, but the operator allowed only another network.
        outcomes = _run(world, VECTOR_DB_ALLOWED_HOSTS="10.0.0.0/8")
    finally:
        fake.close()
    assert fake.connections == 0
    assert outcomes[planted]["status"] == "failed"
    assert outcomes[planted]["error"] == (
        f"HostNotAllowedError: dataset {planted}: host '127.0.0.1' is not in "
        "VECTOR_DB_ALLOWED_HOSTS; credentials are sent only to listed servers (add the host or "
        "its network to that setting)"
    )
    scenario.lost = len(world.lost(good))
    scenario.outcome = "refused at registration; planted row failed alone, 0 connections made"
    assert scenario.lost == 0
