"""VECTOR_DB_ALLOWED_HOSTS and the TLS rule for dataset servers, as pure functions."""

from __future__ import annotations

import ssl

import pytest

from migrator.errors import InsecureAuthenticationError
from migrator.vector.hosts import DEFAULT_ALLOWED_HOSTS, is_loopback, parse_allowed_hosts
from migrator.vector.pgauth import ssl_argument, ssl_mode_for


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("/var/run/postgresql", True),
        ("10.0.0.5", False),
        ("db.internal", False),
        ("::ffff:10.0.0.5", False),
    ],
)
def test_the_default_allows_loopback_and_unix_sockets_only(host: str, allowed: bool) -> None:
    assert parse_allowed_hosts(DEFAULT_ALLOWED_HOSTS).allows(host) is allowed


def test_names_networks_and_unix_are_listed_explicitly() -> None:
    hosts = parse_allowed_hosts(" db.internal , 10.1.0.0/16, fd00::/8 ")
    assert hosts.allows("DB.internal") and hosts.allows("10.1.2.3") and hosts.allows("fd00::7")
    assert not hosts.allows("10.2.0.1") and not hosts.allows("/tmp") and not hosts.allows("x")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("*", "would allow every host"),
        ("0.0.0.0/0", "would allow every host"),
        ("10.0.0.300", "is not an IP address or network"),
        ("bad host", "is not a host name"),
    ],
)
def test_a_bad_entry_is_refused_naming_it(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_allowed_hosts(value)


def test_loopback_servers_keep_the_urls_mode_others_need_the_setting() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("/sock") and not is_loopback("10.0.0.1")
    assert ssl_mode_for("127.0.0.1", None, "verify-full") is None
    assert ssl_mode_for("db.internal", None, "verify-full") == "verify-full"
    assert ssl_mode_for("db.internal", "verify-full", "require") == "verify-full"
    with pytest.raises(InsecureAuthenticationError, match="needs at least sslmode=verify-ca"):
        ssl_mode_for("db.internal", "require", "verify-ca")


def test_verifying_modes_get_a_context_that_checks_the_certificate() -> None:
    full = ssl_argument("verify-full", None)
    ca = ssl_argument("verify-ca", None)
    assert isinstance(full, ssl.SSLContext) and full.check_hostname
    assert isinstance(ca, ssl.SSLContext) and not ca.check_hostname
    assert ca.verify_mode == ssl.CERT_REQUIRED
    assert ssl_argument("require", None) == "require"
