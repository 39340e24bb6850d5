"""The one wait for a Redis lock or slot that rides out a Redis outage.

Redis restarting or unreachable is waited out like a held lock, for ``outage_s`` at a stretch
(and never past the caller's deadline); then its error goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import redis

log = logging.getLogger(__name__)

REDIS_OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError)


async def take_through_outage(
    attempt: Callable[[bool], bool],
    *,
    what: str,
    poll_s: Callable[[], float],
    outage_s: float,
    wait_s: float | None = None,
) -> bool:
    """Poll ``attempt`` without blocking the event loop until it returns True; False when
    ``wait_s`` (None: no bound) passed first.

    ``attempt`` is told whether an outage came before it: a SET whose reply was lost may have
    taken the lock, which only a read of its holder can tell.
    """
    started = time.monotonic()
    failing_since: float | None = None
    after_outage = False
    while True:
        try:
            if attempt(after_outage):
                return True
            failing_since = None
        except REDIS_OUTAGE_ERRORS as exc:
            now = time.monotonic()
            past_deadline = wait_s is not None and now - started >= wait_s
            if past_deadline or (failing_since is not None and now - failing_since >= outage_s):
                raise
            if failing_since is None:
                failing_since = now
                log.warning("Redis unavailable taking %s (%s); retrying.", what, type(exc).__name__)
            after_outage = True
        if wait_s is not None and time.monotonic() - started >= wait_s:
            return False
        await asyncio.sleep(poll_s())
