"""Fake PostgreSQL servers on 127.0.0.1 for the credential and stall scenarios.

``PasswordHarvester`` speaks just enough of the protocol to ask a client for its password in
the clear (or as MD5), optionally after a TLS handshake with a self-signed certificate, and
keeps every byte the client sends. ``StallingProxy`` forwards to a real server until the
client has logged in, then stops forwarding: a server that accepts and never answers.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

SSL_REQUEST = 80877103
GSS_REQUEST = 80877104
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "fake.crt", directory / "fake.key"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subprocess.run(
        [*command, "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def _read_exact(conn: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = conn.recv(count - len(data))
        if not chunk:
            raise ConnectionError("client closed")
        data += chunk
    return data


class PasswordHarvester:
    """Accepts connections, asks each for a password with ``auth_code``, records replies."""

    def __init__(self, *, auth_code: int = AUTH_CLEARTEXT, cert: tuple[Path, Path] | None = None):
        self.auth_code = auth_code
        self.cert = cert
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.asked = 0
        self.tls_handshakes = 0
        self.received = b""  # everything clients sent after the password request
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def url(self, database: str = "vectors") -> str:
        return f"postgresql://127.0.0.1:{self.port}/{database}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        stream: socket.socket = conn
        try:
            conn.settimeout(10)
            while True:
                (length,) = struct.unpack("!I", _read_exact(stream, 4))
                body = _read_exact(stream, length - 4)
                (code,) = struct.unpack("!I", body[:4])
                if code == SSL_REQUEST and self.cert is not None:
                    stream.sendall(b"S")
                    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                    context.load_cert_chain(*map(str, self.cert))
                    stream = context.wrap_socket(stream, server_side=True)
                    with self._lock:
                        self.tls_handshakes += 1
                elif code in (SSL_REQUEST, GSS_REQUEST):
                    stream.sendall(b"N")
                else:
                    break  # the startup message
            request = struct.pack("!I", self.auth_code)
            if self.auth_code == AUTH_MD5:
                request += b"salt"
            stream.sendall(b"R" + struct.pack("!I", 4 + len(request)) + request)
            with self._lock:
                self.asked += 1
            while chunk := stream.recv(4096):
                with self._lock:
                    self.received += chunk
        except (OSError, ConnectionError, ssl.SSLError):
            pass
        finally:
            stream.close()
            conn.close()

    def close(self) -> None:
        self.listener.close()


class StallingProxy:
    """A TCP proxy to ``127.0.0.1:target_port`` that stops forwarding the server's replies
    (and never closes): on each connection once the client has logged in (after the first
    ReadyForQuery), or, with ``after_login=False``, on every connection from the moment
    ``stop_answering()`` is called (a server that stops answering mid-run, logins included).
    ``on_connect(n)`` is called with the count of connections accepted so far; with
    ``stop_when_sent``, the proxy stops answering as a client sends those bytes (a statement's
    text), so that statement is the first one left unanswered."""

    def __init__(
        self,
        target_port: int,
        *,
        after_login: bool = True,
        on_connect: Callable[[int], None] | None = None,
        stop_when_sent: bytes | None = None,
    ) -> None:
        self.target_port = target_port
        self.after_login = after_login
        self.on_connect = on_connect
        self.stop_when_sent = stop_when_sent
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stalled = threading.Event()
        self.stalled_at: float | None = None  # when the first reply was swallowed
        self.stopped_at: float | None = None
        self.connections = 0
        self._stopped = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def stop_answering(self) -> None:
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
        self._stopped.set()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.on_connect is not None:
                self.on_connect(self.connections)
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_server: bool) -> None:
        logged_in = False
        try:
            while chunk := source.recv(65536):
                if not from_server and self.stop_when_sent and self.stop_when_sent in chunk:
                    self.stop_answering()
                if from_server and (self._stopped.is_set() or (logged_in and self.after_login)):
                    if self.stalled_at is None:
                        self.stalled_at = time.monotonic()
                    self.stalled.set()
                    continue  # swallow: the client waits for an answer that never comes
                sink.sendall(chunk)
                # 'Z' (ReadyForQuery) ends the login; a message boundary is all we need here.
                if from_server and b"Z\x00\x00\x00\x05" in chunk:
                    logged_in = True
        except OSError:
            return
        if not (from_server and (self._stopped.is_set() or (logged_in and self.after_login))):
            # A server that still answers closes the connection after a client's goodbye (and
            # the client after its own); one that stopped answering never says anything again.
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
