"""The worker process runtime: one loop reused across tasks, cancellation when a signal (the
soft time limit) interrupts the wait."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from migrator.settings import Settings
from worker.runtime import ProcessRuntime


class Interrupted(Exception):
    """Stands in for Celery's SoftTimeLimitExceeded, raised from a signal handler."""


@pytest.fixture
def process_runtime(settings: Settings) -> Iterator[ProcessRuntime]:
    made = ProcessRuntime()
    made.start(settings)
    yield made
    made.shutdown()


def test_tasks_share_one_loop_and_one_engine(process_runtime: ProcessRuntime) -> None:
    async def loop_and_thread() -> tuple[int, int]:
        return id(asyncio.get_running_loop()), threading.get_ident()

    engine = process_runtime.engine
    first = process_runtime.run(loop_and_thread())
    second = process_runtime.run(loop_and_thread())

    assert first == second
    assert first[1] != threading.get_ident()  # never the task's own (main) thread
    assert process_runtime.engine is engine


def test_a_signal_during_the_wait_cancels_the_coroutine(process_runtime: ProcessRuntime) -> None:
    cancelled = threading.Event()

    async def long_work() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise Interrupted("soft time limit")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with pytest.raises(Interrupted, match="soft time limit"):
            process_runtime.run(long_work(), cancel_grace_s=5)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    assert cancelled.is_set()

    async def still_usable() -> str:
        return "ok"

    assert process_runtime.run(still_usable()) == "ok"
