"""Logging for the CLI and the worker: one format, LOG_LEVEL, secrets removed from every line."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from migrator.settings import Settings
from migrator.urls import redact

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


def configure_logging(settings: Settings) -> None:
    level = logging.getLevelName(settings.log_level.upper())
    if not isinstance(level, int):
        level = logging.INFO
    handler = _CurrentStderrHandler()
    handler.setFormatter(RedactingFormatter(settings.secrets()))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter stays at WARNING even under DEBUG: statement logs would drown the
    # Alembic output that DEBUG is for.
    for name in ("sqlalchemy", "aiosqlite", "asyncio", "filelock", "lance", "lancedb", "kombu"):
        logging.getLogger(name).setLevel(logging.WARNING)
