"""The heartbeat: one thread per holder that keeps its Redis locks (and its server slot) alive.

A thread, not a coroutine: a migration step that blocks the event loop must not let its locks
lapse. A killed process takes the thread with it, which is what makes each TTL the bound.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import redis

from migrator.constants import LOCK_HEARTBEATS_PER_TTL

log = logging.getLogger(__name__)


class Renewable(Protocol):
    """What the heartbeat extends: a Redis lock or a server slot."""

    @property
    def key(self) -> str: ...

    @property
    def ttl_s(self) -> float: ...

    def extend(self, token: str) -> bool: ...


class Heartbeat:
    """Extends what it holds every ``interval_s``, whatever the event loop is doing.

    ``add`` and ``remove`` let a lease taken later (a server slot) ride on the same thread.
    """

    def __init__(self, held: Sequence[tuple[Renewable, str]], interval_s: float) -> None:
        self._held = list(held)
        self._guard = threading.Lock()
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="migrator-heartbeat", daemon=True)

    @classmethod
    def for_locks(cls, held: Sequence[tuple[Renewable, str]]) -> Heartbeat:
        shortest_ttl_s = min(lock.ttl_s for lock, _ in held)
        return cls(held, shortest_ttl_s / LOCK_HEARTBEATS_PER_TTL)

    def add(self, lock: Renewable, token: str) -> None:
        with self._guard:
            self._held.append((lock, token))

    def remove(self, lock: Renewable, token: str) -> None:
        with self._guard:
            self._held = [(held, t) for held, t in self._held if (held, t) != (lock, token)]

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            with self._guard:
                held = list(self._held)
            for lock, token in held:
                try:
                    if not lock.extend(token):
                        log.debug("Heartbeat: %s is no longer held by %s.", lock.key, token)
                except redis.RedisError as exc:
                    log.warning(
                        "Heartbeat: could not extend %s (%s).", lock.key, type(exc).__name__
                    )

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.interval_s + 1)


@contextmanager
def heartbeat(held: Sequence[tuple[Renewable, str]]) -> Iterator[Heartbeat]:
    """Extend every ``(lock, token)`` in ``held`` from one thread while the block runs."""
    beat = Heartbeat.for_locks(held).start()
    try:
        yield beat
    finally:
        beat.stop()
