"""The ``migrator`` command. Each verb is a small function; ``main`` is the one place that turns
errors into ``FAILED: <message>`` and an exit code."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, NoReturn, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.errors import (
    EXIT_RELATIONAL_FAILED,
    EXIT_USAGE,
    MigratorError,
    UsageError,
    exit_codes_help,
)
from migrator.logging_setup import configure_logging
from migrator.settings import Settings, get_settings
from migrator.stalls import query_timed_out
from migrator.urls import redact

log = logging.getLogger("migrator.cli")

T = TypeVar("T")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    from migrator.cli import check_cmd, datasets_cmd, history_cmd, plan_cmd, run_cmd, vector_cmd

    parser = _Parser(
        prog="migrator",
        description="Bring the control-plane database and every dataset's vector database "
        "to schema head.",
        epilog=exit_codes_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    modules = (
        run_cmd,
        history_cmd,
        datasets_cmd,
        check_cmd,
        plan_cmd,
        vector_cmd,
        *_optional_modules(),
    )
    for module in modules:
        module.register(commands)
    return parser


def _optional_modules() -> list[Any]:
    """Command groups that live beside the core (the Celery triggers)."""
    try:
        from migrator.cli import enqueue_cmd
    except ImportError:  # pragma: no cover - the Celery glue is part of this distribution
        return []
    return [enqueue_cmd]


def main(argv: Sequence[str] | None = None) -> int:
    settings: Settings | None = None
    try:
        settings = get_settings()
        args = build_parser().parse_args(argv)
        configure_logging(settings)
        code: int = args.handler(args, settings)
        return code
    except MigratorError as exc:
        return _fail(exc, exc.exit_code, settings)
    except FileNotFoundError as exc:
        return _fail(exc, EXIT_RELATIONAL_FAILED, settings)
    except TimeoutError as exc:
        # Dataset statements are bounded inside their own handling; what reaches here is a
        # control-plane query that outlived QUERY_TIMEOUT_S (asyncpg raises it bare).
        log.debug("query timed out", exc_info=True)
        if settings is None:
            return _fail(exc, EXIT_RELATIONAL_FAILED, settings, with_class=True)
        return _fail(query_timed_out(settings), EXIT_RELATIONAL_FAILED, settings)
    except KeyboardInterrupt:
        print("FAILED: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the one place an unexpected error becomes an exit code
        log.debug("unexpected error", exc_info=True)
        return _fail(exc, EXIT_RELATIONAL_FAILED, settings, with_class=True)


def _fail(
    exc: BaseException, code: int, settings: Settings | None, *, with_class: bool = False
) -> int:
    message = f"{type(exc).__name__}: {exc}" if with_class else str(exc)
    secrets = settings.secrets() if settings else []
    print(f"FAILED: {redact(message, secrets)}", file=sys.stderr)
    run_id = getattr(exc, "run_id", None)
    if run_id and code != EXIT_USAGE:
        print(f"run id: {run_id}", file=sys.stderr)
    return code


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Sync edge: every command runs its coroutine on a fresh loop."""
    return asyncio.run(coro)


def on_control_plane(
    settings: Settings,
    work: Callable[[AsyncEngine], Awaitable[T]],
    *,
    upgrade_first: bool = False,
) -> T:
    """The one way a command opens the control plane: ``work(engine)`` on a fresh loop, the
    engine disposed after; ``upgrade_first`` brings the control plane to head before."""
    from migrator.db import control_plane

    async def go() -> T:
        if upgrade_first:
            from migrator.relational import upgrade_to_head

            await upgrade_to_head(settings)
        async with control_plane(settings) as engine:
            return await work(engine)

    return run_async(go())
