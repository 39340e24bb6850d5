"""What one worker process keeps between tasks: an event loop, a control-plane engine, Redis.

The loop runs in its own thread, made in ``worker_process_init`` (after the fork, since threads
do not survive one) and reused by every task of the process: no engine or loop per task.
Tasks run in the process's main thread and wait on the loop, so Celery's soft time limit
(a signal, delivered to the main thread) always lands in that wait and never inside a coroutine;
the coroutine is then cancelled where it awaits, and cleans up as cancellation allows.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.db import make_engine
from migrator.locks.redis import Locks
from migrator.settings import Settings, get_settings

log = logging.getLogger(__name__)

T = TypeVar("T")

LOOP_STOP_TIMEOUT_S = 5.0


class ProcessRuntime:
    """One per process. ``run`` starts it on first use when no signal did (solo pool, tests)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._engine: AsyncEngine | None = None
        self._locks: Locks | None = None
        self._settings: Settings | None = None
        self._pid: int | None = None

    @property
    def settings(self) -> Settings:
        self._ensure_started()
        assert self._settings is not None
        return self._settings

    @property
    def engine(self) -> AsyncEngine:
        self._ensure_started()
        assert self._engine is not None
        return self._engine

    @property
    def locks(self) -> Locks:
        self._ensure_started()
        assert self._locks is not None
        return self._locks

    def start(self, settings: Settings | None = None) -> None:
        self._settings = settings or get_settings()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="migrator-loop", daemon=True
        )
        self._thread.start()
        self._engine = make_engine(self._settings)
        self._locks = Locks.from_settings(self._settings)
        self._pid = os.getpid()

    def after_fork(self) -> None:
        """Forget what the parent process made: its loop thread did not survive the fork, and
        its pooled connections belong to it (``close=False`` leaves them to the parent)."""
        if self._engine is not None and self._pid != os.getpid():
            self._engine.sync_engine.dispose(close=False)
        self._loop = self._thread = None
        self._engine = None
        self._locks = None
        self.start(self._settings)

    def _ensure_started(self) -> None:
        if self._pid != os.getpid() or self._loop is None:
            self.after_fork()

    def run(self, coro: Coroutine[Any, Any, T], *, cancel_grace_s: float = 10.0) -> T:
        """Run ``coro`` on this process's loop and wait for it in the calling thread.

        When the wait is interrupted (SoftTimeLimitExceeded, raised by a signal handler), the
        coroutine is cancelled and given ``cancel_grace_s`` to unwind before the error goes on.
        """
        self._ensure_started()
        assert self._loop is not None
        finished = threading.Event()

        async def tracked() -> T:
            try:
                return await coro
            finally:
                finished.set()

        future = asyncio.run_coroutine_threadsafe(tracked(), self._loop)
        try:
            return future.result()
        except BaseException:
            if not future.done():
                future.cancel()
                if not finished.wait(cancel_grace_s):
                    log.warning("A cancelled task did not unwind within %.0fs.", cancel_grace_s)
            raise

    def shutdown(self) -> None:
        """Dispose the engine on its own loop, then stop the loop; for worker_process_shutdown."""
        if self._loop is None or self._pid != os.getpid():
            return
        try:
            if self._engine is not None:
                self.run(self._engine.dispose())
        except Exception:
            log.warning("Disposing the control-plane engine failed.", exc_info=True)
        if self._locks is not None:
            self._locks.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(LOOP_STOP_TIMEOUT_S)
        if not self._loop.is_running():
            self._loop.close()
        self._loop = self._thread = None
        self._engine = None
        self._locks = None


_runtime = ProcessRuntime()


def runtime() -> ProcessRuntime:
    return _runtime
