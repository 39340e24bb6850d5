"""VECTOR_DB_ALLOWED_HOSTS: the dataset servers the migrator may send its credentials to.

Whoever can register a dataset chooses the server its URL names, and the migrator logs in there
with VECTOR_DB_USERNAME and VECTOR_DB_PASSWORD. So a host is used only when the operator listed
it: a host name (matched exactly, case-insensitive), an IP address, a CIDR network, or ``unix``
for unix socket directories. Names are never resolved here: a name is allowed by being listed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from migrator.errors import HostNotAllowedError

UNIX = "unix"
LOCALHOST = "localhost"
DEFAULT_ALLOWED_HOSTS = f"127.0.0.0/8,::1,{LOCALHOST},{UNIX}"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class AllowedHosts:
    names: frozenset[str]
    networks: tuple[Network, ...]
    unix_sockets: bool

    def allows(self, host: str) -> bool:
        if is_unix_socket(host):
            return self.unix_sockets
        address = _ip(host)
        if address is None:
            return host.lower().rstrip(".") in self.names
        return any(address.version == net.version and address in net for net in self.networks)


def parse_allowed_hosts(value: str) -> AllowedHosts:
    """Parse the comma-separated setting; an entry that is none of the accepted forms is an
    error naming it (a typo must not silently allow nothing, or everything)."""
    names: set[str] = set()
    networks: list[Network] = []
    unix_sockets = False
    for raw in value.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if entry.lower() == UNIX:
            unix_sockets = True
        elif entry in ("*", "0.0.0.0/0", "::/0"):
            raise ValueError(
                f"VECTOR_DB_ALLOWED_HOSTS entry {entry!r} would allow every host; list the "
                "dataset servers (or their networks) instead"
            )
        elif any(c in entry for c in "/:") or entry.replace(".", "").isdigit():
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                raise ValueError(
                    f"VECTOR_DB_ALLOWED_HOSTS entry {entry!r} is not an IP address or network"
                ) from None
        elif entry.isprintable() and " " not in entry:
            names.add(entry.lower().rstrip("."))
        else:
            raise ValueError(f"VECTOR_DB_ALLOWED_HOSTS entry {entry!r} is not a host name")
    return AllowedHosts(frozenset(names), tuple(networks), unix_sockets)


def is_unix_socket(host: str) -> bool:
    return host.startswith("/")


def is_loopback(host: str) -> bool:
    """True for a unix socket, ``localhost`` and loopback addresses: traffic that never leaves
    this machine."""
    if is_unix_socket(host) or host.lower().rstrip(".") == LOCALHOST:
        return True
    address = _ip(host)
    return address is not None and address.is_loopback


def require_allowed(host: str, allowed_hosts: str, *, dataset: str) -> None:
    """Raise HostNotAllowedError unless ``host`` is in VECTOR_DB_ALLOWED_HOSTS."""
    if not parse_allowed_hosts(allowed_hosts).allows(host):
        raise HostNotAllowedError(dataset, host)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
