"""A control plane that stops answering costs one timeout, and the error names it.

asyncpg bounds each statement by ``command_timeout`` (QUERY_TIMEOUT_S) and the login by
``timeout`` (CONNECT_TIMEOUT_S). Left alone, a stalled server costs more than that: SQLAlchemy
closes a connection it gave up on gracefully, and asyncpg's graceful close first waits for the
server to confirm the cancelled statement, then for it to acknowledge the goodbye (SQLAlchemy
gives that 2 s, whatever QUERY_TIMEOUT_S is); a statement that timed out would also be rolled
back on the same silent connection; and the bare ``TimeoutError`` names nothing. Here a
connection whose statement was given up on is dropped at once and never reused, and the error
names the control plane and the bound that ran out. Once one statement of an engine was given
up on, every connection of that engine is dropped without a goodbye too: an idle pooled
connection to the same silent server would otherwise cost SQLAlchemy's 2 s each when the
engine is disposed (one after another), and fail with "Exception closing connection".

The Alembic child process (``migrations/env.py``) wires its engine the same way.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import Dialect, Engine, ExceptionContext, make_url
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.pool import ConnectionPoolEntry

from migrator.errors import ControlPlaneTimeoutError
from migrator.settings import Settings


class ServerSilence:
    """Shared by every connection of one engine: whether that engine's server stopped
    answering (one of its statements, or a login, was given up on)."""

    def __init__(self) -> None:
        self.noticed = False


class DropWhenAbandoned(asyncpg.Connection):
    """An asyncpg connection that, once a statement on it was given up on (it timed out or its
    task was cancelled), or once its engine's server was found silent, is dropped on close
    instead of waiting for a server that may never answer again."""

    _abandoned = False
    _silence: ServerSilence | None = None

    def _cancel_current_command(self, waiter: Any, cancel_waiter: Any = None) -> None:
        # asyncpg calls this exactly when it stops waiting for a statement's answer. If a
        # release renames it, closes go back to waiting (tests/faults/test_stalls.py notices).
        self._abandoned = True
        super()._cancel_current_command(waiter, cancel_waiter)  # type: ignore[misc]

    async def close(self, *, timeout: float | None = None) -> None:
        if self._abandoned or (self._silence is not None and self._silence.noticed):
            self.terminate()
            return
        await super().close(timeout=timeout)


async def drop(conn: AsyncConnection) -> None:
    """Invalidate ``conn`` without a goodbye: its server stopped answering."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if isinstance(driver, DropWhenAbandoned):
        driver._abandoned = True
        if driver._silence is not None:
            driver._silence.noticed = True
    await conn.invalidate()


def control_plane_name(settings: Settings) -> str:
    """``host:port`` (or the SQLite file) of the control plane: names it without a password."""
    url = make_url(settings.database_url.get_secret_value())
    if settings.is_sqlite:
        return f"SQLite {url.database}"
    return f"{url.host or 'localhost'}:{url.port or 5432}"


def query_timed_out(settings: Settings) -> ControlPlaneTimeoutError:
    return ControlPlaneTimeoutError(
        f"control plane {control_plane_name(settings)} did not answer within "
        f"QUERY_TIMEOUT_S={settings.query_timeout_s:g}s"
    )


def connect_timed_out(settings: Settings) -> ControlPlaneTimeoutError:
    return ControlPlaneTimeoutError(
        f"control plane {control_plane_name(settings)} did not complete a connection within "
        f"CONNECT_TIMEOUT_S={settings.connect_timeout_s:g}s"
    )


def fail_fast(engine: Engine, settings: Settings) -> None:
    """Name the control plane in every timeout of ``engine`` (asyncpg), invalidate a
    connection whose statement timed out rather than roll it back on a silent server, and from
    then on drop every connection of ``engine`` without a goodbye."""
    silence = ServerSilence()

    @event.listens_for(engine, "do_connect")
    def connect(dialect: Dialect, _record: ConnectionPoolEntry, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.connect(*cargs, **cparams)
        except TimeoutError as exc:
            silence.noticed = True
            raise connect_timed_out(settings) from exc

    @event.listens_for(engine, "connect")
    def share_silence(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        driver = dbapi_connection.driver_connection
        if isinstance(driver, DropWhenAbandoned):
            driver._silence = silence

    @event.listens_for(engine, "handle_error")
    def statement_failed(context: ExceptionContext) -> BaseException | None:
        if not isinstance(context.original_exception, TimeoutError):
            return None
        silence.noticed = True
        # Not a reason to try again (reconnecting() retries dropped connections only): a
        # server that did not answer in QUERY_TIMEOUT_S would most likely not answer a retry.
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = True
        return query_timed_out(settings)


def connect_args(settings: Settings) -> dict[str, Any]:
    """asyncpg's connect arguments for the control plane: both bounds and the connection that
    drops itself once a statement on it was given up on."""
    return {
        "timeout": settings.connect_timeout_s,
        # command_timeout: a control plane that stops answering fails the query, not the process.
        "command_timeout": settings.query_timeout_s,
        "connection_class": DropWhenAbandoned,
    }
