"""Logging for the CLI, the worker and the Python API: one format, LOG_LEVEL, secrets removed
from every line."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TextIO, TypeVar

from migrator.settings import Settings, get_settings
from migrator.urls import redact

LIBRARY_LOGGER = "migrator"
P = ParamSpec("P")
T = TypeVar("T")

FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"


class RedactingFormatter(logging.Formatter):
    """Formats, then removes URL passwords and known secret values from the whole line."""

    def __init__(self, secrets: list[str], fmt: str = FORMAT) -> None:
        super().__init__(fmt)
        self.secrets = secrets

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


class _CurrentStderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is now, not the one seen when logging was set up
    (a replaced or closed stream, as under test capture, must not break later records)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def _level(settings: Settings) -> int:
    level = logging.getLevelName(settings.log_level.upper())
    return level if isinstance(level, int) else logging.INFO


def _stderr_handler(settings: Settings) -> logging.Handler:
    handler = _CurrentStderrHandler()
    handler.setFormatter(RedactingFormatter(settings.secrets()))
    return handler


def configure_logging(settings: Settings) -> None:
    level = _level(settings)
    handler = _stderr_handler(settings)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter stays at WARNING even under DEBUG: statement logs would drown the
    # Alembic output that DEBUG is for.
    for name in ("sqlalchemy", "aiosqlite", "asyncio", "filelock", "lance", "lancedb", "kombu"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def library_logging(settings: Settings) -> Iterator[None]:
    """While a Python API call runs in a process whose logging nobody configured (the init
    container's one-liner), log it to stderr at LOG_LEVEL through the redacting formatter.

    The handler goes on the ``migrator`` logger only and is removed afterwards: the host's root
    logger stays untouched, so its own later ``basicConfig`` still works. A host that configured
    logging gets no handler and no level change; the records propagate to its handlers.
    """
    logger = logging.getLogger(LIBRARY_LOGGER)
    if logging.getLogger().handlers or logger.handlers:
        yield
        return
    handler = _stderr_handler(settings)
    level_before = logger.level
    logger.addHandler(handler)
    logger.setLevel(_level(settings))
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level_before)


def logs_when_unconfigured(
    func: Callable[P, Awaitable[T]],
) -> Callable[P, Awaitable[T]]:
    """Wraps an API coroutine in ``library_logging`` with the settings it was given (or the
    environment's)."""

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        settings: Any = kwargs.get("settings") or get_settings()
        with library_logging(settings):
            return await func(*args, **kwargs)

    return wrapper
