"""How the migrator logs in to a pgvector dataset server without giving its password away.

asyncpg (0.32) answers whatever authentication request a server sends: a server that asks for
the password in cleartext (or as an MD5 digest, which is as good as the password to a server
that chose the salt) gets it. The driver has no option to refuse (libpq's ``require_auth`` has
no asyncpg equivalent), so this module installs a subclass of asyncpg's protocol that reads
the server's messages before the driver does, until authentication is over, and for
connections opened with ``GUARDED_APPLICATION_NAME`` aborts the connection when a server asks
for cleartext or MD5: nothing is written back. SCRAM-SHA-256 (PostgreSQL's default since 14)
never reveals the password and is let through, as is a server that needs no password.

Other asyncpg connections in the process (the control plane) pass through untouched.

TLS: non-loopback servers must use at least VECTOR_DB_SSLMODE (``verify-full`` by default),
so a password exchange with a remote server is also encrypted to the server the name promises.
"""

from __future__ import annotations

import asyncio
import ssl
import struct
from pathlib import Path
from typing import Any, Literal, get_args

import asyncpg
import asyncpg.protocol

from migrator.errors import InsecureAuthenticationError
from migrator.vector.hosts import is_loopback

GUARDED_APPLICATION_NAME = "dataset-migrator"
# Authentication request codes of the PostgreSQL protocol ('R' messages).
AUTH_OK = 0
REFUSED_AUTH = {3: "a cleartext password", 5: "an MD5 password digest"}
HEADER = struct.Struct("!cI")
# Weakest to strongest; a URL may ask for more than the setting, never for less.
SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
SSL_MODES: tuple[SslMode, ...] = get_args(SslMode)
REMOTE_SSL_MODES = ("require", "verify-ca", "verify-full")

_Base: Any = asyncpg.protocol.Protocol


class GuardedProtocol(_Base):  # type: ignore[misc]
    """asyncpg's protocol, refusing cleartext and MD5 password requests when guarded."""

    def __init__(self, addr: Any, connected: asyncio.Future[Any], params: Any, *args: Any) -> None:
        super().__init__(addr, connected, params, *args)
        settings = getattr(params, "server_settings", None) or {}
        self._guarded = settings.get("application_name") == GUARDED_APPLICATION_NAME
        self._connected = connected
        self._pending = b""
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._guarded:
            refused = self._scan(data)
            if refused is not None:
                self._refuse(refused)
                return
        super().data_received(data)

    def _scan(self, data: bytes) -> str | None:
        """Frame the server's messages until AuthenticationOk; the refused request, if any."""
        buffer = self._pending + data
        offset = 0
        while len(buffer) - offset >= HEADER.size:
            kind, length = HEADER.unpack_from(buffer, offset)
            if len(buffer) - offset < 1 + length:
                break
            if kind == b"R" and length >= 8:
                (code,) = struct.unpack_from("!I", buffer, offset + HEADER.size)
                if code in REFUSED_AUTH:
                    return REFUSED_AUTH[code]
                if code == AUTH_OK:
                    self._guarded = False  # logged in: nothing more to watch
                    self._pending = b""
                    return None
            offset += 1 + length
        self._pending = buffer[offset:]
        return None

    def _refuse(self, what: str) -> None:
        self._guarded = False
        if not self._connected.done():
            self._connected.set_exception(
                InsecureAuthenticationError(
                    f"the server asked for {what}; refused and disconnected without sending it "
                    "(dataset servers must use scram-sha-256 authentication)"
                )
            )
        if isinstance(self._transport, asyncio.WriteTransport):
            self._transport.abort()
        elif self._transport is not None:
            self._transport.close()


def install() -> None:
    """Make asyncpg build GuardedProtocol. Idempotent; unguarded connections behave as before."""
    if asyncpg.protocol.Protocol is not GuardedProtocol:
        asyncpg.protocol.Protocol = GuardedProtocol  # type: ignore[assignment, misc]


def ssl_mode_for(host: str, url_mode: SslMode | None, required_mode: SslMode) -> SslMode | None:
    """The TLS mode to connect with. Loopback servers and unix sockets use the URL's mode (or
    the driver's default); any other server at least VECTOR_DB_SSLMODE."""
    if is_loopback(host):
        return url_mode
    if url_mode is not None and SSL_MODES.index(url_mode) < SSL_MODES.index(required_mode):
        raise InsecureAuthenticationError(
            f"host {host!r} is not loopback, so it needs at least sslmode={required_mode} "
            f"(VECTOR_DB_SSLMODE); the URL asks for sslmode={url_mode}"
        )
    return url_mode or required_mode


def ssl_argument(mode: SslMode | None, root_cert: Path | None) -> ssl.SSLContext | SslMode | None:
    """What asyncpg's ``ssl=`` gets: a context for the verifying modes (so a CA file applies and
    nothing falls back to plaintext), the mode name otherwise."""
    if mode not in ("verify-ca", "verify-full"):
        return mode
    context = ssl.create_default_context(cafile=str(root_cert) if root_cert else None)
    context.check_hostname = mode == "verify-full"
    context.verify_mode = ssl.CERT_REQUIRED
    return context


install()
