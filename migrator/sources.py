"""Datasets from where the application keeps them (``DATASET_SOURCE``).

``registry`` (the default) is the migrator's own ``datasets`` table. ``query:<SQL>`` is a
SELECT run as given (never interpolated) in a read-only transaction on the control plane;
``function:<module>:<attribute>`` an importable callable, async or not, returning mappings.
Either yields rows with ``id``, ``name``, ``provider``, ``url`` and optionally
``connection_info`` (non-secret; JSON text or a mapping).

``sync_source`` reads the source, checks every row and hands the good ones to the registry
(``migrator.datasets.apply_source``, the one writer of its tables), which adds new datasets,
updates moved ones and marks those the source no longer returns as removed. A bad row fails
alone: it is returned (and logged) with its id and what is wrong with it.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from migrator.constants import SOURCE_ERRORS_KEPT
from migrator.dataset_ids import id_problem, store_key
from migrator.datasets import SourceRow, SyncCounts, apply_source, validate_name
from migrator.errors import DatasetSourceError, MigratorError
from migrator.settings import Settings
from migrator.urls import escape_controls, redact
from migrator.vector.registry import adapter_factory

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("id", "name", "provider", "url")
OPTIONAL_COLUMNS = ("connection_info",)
# Keys a connection_info must not hold: it is stored in the control plane and shown.
SECRET_KEY_WORDS = ("password", "passwd", "secret", "token", "credential", "apikey", "api_key")
SHOWN_ID_CHARS = 80


@dataclass(frozen=True)
class SourceRowError:
    """One row the source returned that cannot be used: ``dataset_id`` as shown (escaped,
    cut short when it is itself the problem), ``row`` its position (0-based), ``error``."""

    dataset_id: str
    row: int
    error: str
    # False when the id itself is bad: then it names no dataset whose state could be marked.
    valid_id: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"dataset_id": self.dataset_id, "row": self.row, "error": self.error}


@dataclass
class SourceSync:
    """What one sync of an external source found and changed."""

    rows: int
    counts: SyncCounts
    errors: list[SourceRowError] = field(default_factory=list)


def parse_source(value: str) -> tuple[str, str]:
    """``(kind, argument)`` of a DATASET_SOURCE value (already checked by the settings)."""
    if value == "registry":
        return "registry", ""
    kind, _, rest = value.partition(":")
    return kind, rest.strip()


async def sync_source(engine: AsyncEngine, settings: Settings) -> SourceSync | None:
    """Read the external source and bring the migrator's per-dataset state in line with it;
    None when the source is the registry. ``DatasetSourceError`` when it cannot be read."""
    if not settings.external_source:
        return None
    raw = await read_source(engine, settings)
    rows, errors = check_rows(raw, settings)
    refused = {e.dataset_id: e.error for e in errors if e.valid_id}
    counts = await apply_source(engine, rows, refused)
    for error in errors:
        # A scheduled check syncs every few minutes: a refusal already recorded is not news.
        repeated = error.valid_id and error.dataset_id in counts.still_refused
        log.log(
            logging.INFO if repeated else logging.ERROR,
            "dataset=%s source row %d %s: %s",
            error.dataset_id,
            error.row,
            "still refused" if repeated else "refused",
            error.error,
        )
    log.info(
        "Dataset source: %d row(s), %d refused; %d added, %d removed, %d back, %d changed.",
        len(raw),
        len(errors),
        counts.added,
        counts.removed,
        counts.returned,
        counts.changed,
    )
    return SourceSync(len(raw), counts, errors)


async def read_source(engine: AsyncEngine, settings: Settings) -> list[Mapping[str, Any]]:
    """The rows the configured external source returns, unchecked."""
    kind, argument = parse_source(settings.dataset_source)
    try:
        async with asyncio.timeout(settings.query_timeout_s):
            if kind == "query":
                return await _query_rows(engine, argument)
            return await _function_rows(argument)
    except DatasetSourceError:
        raise
    except TimeoutError as exc:
        raise DatasetSourceError(
            f"DATASET_SOURCE {kind} did not answer within QUERY_TIMEOUT_S="
            f"{settings.query_timeout_s:g}s"
        ) from exc
    except Exception as exc:
        # The driver's own error, without SQLAlchemy's echo of the statement.
        cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
        text = redact(f"{type(cause).__name__}: {cause}", settings.secrets())
        raise DatasetSourceError(f"DATASET_SOURCE {kind} failed: {text}") from exc


async def _query_rows(engine: AsyncEngine, sql: str) -> list[Mapping[str, Any]]:
    """Run the application's SELECT as given, in a read-only transaction, and roll it back."""
    async with engine.connect() as conn:
        sqlite = engine.dialect.name == "sqlite"
        # exec_driver_sql: the text goes to the driver as is (no bind parsing, no formatting).
        if sqlite:
            await conn.exec_driver_sql("PRAGMA query_only = ON")
        else:
            await conn.exec_driver_sql("SET TRANSACTION READ ONLY")
        try:
            result = await conn.exec_driver_sql(sql)
            columns = [str(c) for c in result.keys()]  # noqa: SIM118 (a Result, not a dict)
            _check_columns(columns)
            rows: list[Mapping[str, Any]] = [
                dict(zip(columns, row, strict=True)) for row in result.all()
            ]
        finally:
            await conn.rollback()
            if sqlite:
                await conn.exec_driver_sql("PRAGMA query_only = OFF")
                await conn.commit()
    return rows


def _check_columns(columns: list[str]) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    unknown = [c for c in columns if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"unknown {', '.join(unknown)}"] if unknown else []
        raise DatasetSourceError(
            f"DATASET_SOURCE query returns columns {', '.join(columns) or '(none)'}: "
            f"{'; '.join(parts)}. It must return {', '.join(REQUIRED_COLUMNS)} and may return "
            f"{', '.join(OPTIONAL_COLUMNS)}",
            missing=missing,
            unknown=unknown,
        )


async def _function_rows(reference: str) -> list[Mapping[str, Any]]:
    module_name, _, attribute = reference.rpartition(":")
    if not module_name or not attribute:
        raise DatasetSourceError(
            f"DATASET_SOURCE function {reference!r} must read module.path:attribute"
        )
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise DatasetSourceError(
            f"DATASET_SOURCE function {reference!r} cannot be imported: {exc}"
        ) from exc
    result = function()
    if inspect.isawaitable(result):
        result = await result
    if not isinstance(result, Iterable) or isinstance(result, str | bytes | Mapping):
        raise DatasetSourceError(
            f"DATASET_SOURCE function {reference!r} returned {type(result).__name__}, "
            "not an iterable of mappings"
        )
    return list(result)


def check_rows(raw: list[Any], settings: Settings) -> tuple[list[SourceRow], list[SourceRowError]]:
    """The usable rows and an error for every other one. Every row of an id that occurs
    more than once is refused: which of them is right is the application's to say."""
    raw = [_with_text_id(item) for item in raw]
    seen: dict[str, int] = {}
    for item in raw:
        if isinstance(item, Mapping) and isinstance(item.get("id"), str):
            seen[item["id"]] = seen.get(item["id"], 0) + 1
    good: list[SourceRow] = []
    errors: list[SourceRowError] = []
    for number, item in enumerate(raw):
        given = item.get("id") if isinstance(item, Mapping) else None
        shown = _shown_id(given)
        try:
            if not isinstance(item, Mapping):
                raise DatasetSourceError(f"row is {type(item).__name__}, not a mapping")
            if isinstance(given, str) and seen.get(given, 0) > 1:
                raise DatasetSourceError(f"id occurs in {seen[given]} rows of the source")
            good.append(_check_row(item, settings))
        except MigratorError as exc:
            text = redact(str(exc), settings.secrets())
            errors.append(SourceRowError(shown, number, text, id_problem(given) is None))
    return good, errors


def _check_row(item: Mapping[str, Any], settings: Settings) -> SourceRow:
    unknown = sorted(set(map(str, item)) - set(REQUIRED_COLUMNS + OPTIONAL_COLUMNS))
    missing = [c for c in REQUIRED_COLUMNS if c not in item and c != "url"]
    if missing or unknown:
        raise DatasetSourceError(
            f"row keys: missing {', '.join(missing) or '-'}; unknown {', '.join(unknown) or '-'}"
        )
    dataset_id = item["id"]
    problem = id_problem(dataset_id)
    if problem is not None:
        raise DatasetSourceError(problem)
    name = item["name"] if item["name"] is not None else dataset_id
    if not isinstance(name, str):
        raise DatasetSourceError(f"name must be a string, got {type(name).__name__}")
    validate_name(name)
    provider = item["provider"]
    if not isinstance(provider, str):
        raise DatasetSourceError(f"provider must be a string, got {type(provider).__name__}")
    adapter_cls = adapter_factory(provider)
    url = _url(item.get("url"), provider, dataset_id, settings)
    normalise = getattr(adapter_cls, "normalise_url", None)
    url, server_key = normalise(url) if normalise else (url, "")
    check = getattr(adapter_cls, "check_registration", None)
    if check is not None:
        check(url, settings, dataset=dataset_id)
    info = _connection_info(item.get("connection_info"))
    return SourceRow(dataset_id, name, provider, url, info, server_key)


def _url(value: Any, provider: str, dataset_id: str, settings: Settings) -> str:
    """The row's URL; for LanceDB an empty one means the folder derived from the id under
    VECTOR_DB_URL. A URL carrying a user or password is refused for every provider."""
    if value is None or value == "":
        if provider != "lancedb":
            raise DatasetSourceError(f"provider {provider!r} needs a url")
        return f"{settings.vector_db_url.rstrip('/')}/{store_key(dataset_id)}"
    if not isinstance(value, str):
        raise DatasetSourceError(f"url must be a string, got {type(value).__name__}")
    try:
        parts = urlsplit(value)
        credentials = "://" in value and (parts.username or parts.password is not None)
    except ValueError:
        credentials = "@" in value
    if credentials:
        # Never repeat the URL: it holds a secret.
        raise DatasetSourceError(
            "url carries credentials (user:password@); credentials come from the migrator's "
            "environment, never from a dataset source"
        )
    return value


def _connection_info(value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise DatasetSourceError(f"connection_info is not JSON: {exc}") from None
    if not isinstance(value, Mapping):
        raise DatasetSourceError(
            f"connection_info must be a JSON object, got {type(value).__name__}"
        )
    secret = [str(k) for k in value if any(w in str(k).lower() for w in SECRET_KEY_WORDS)]
    if secret:
        raise DatasetSourceError(
            f"connection_info key(s) {', '.join(secret)} look secret; it must hold no secret"
        )
    try:
        return dict(json.loads(json.dumps(dict(value))))
    except (TypeError, ValueError) as exc:
        raise DatasetSourceError(f"connection_info is not JSON-serialisable: {exc}") from None


def _with_text_id(item: Any) -> Any:
    """An integer id (a serial key) reads as its decimal text."""
    if isinstance(item, Mapping) and type(item.get("id")) is int:
        return {**item, "id": str(item["id"])}
    return item


def _shown_id(value: Any) -> str:
    if not isinstance(value, str):
        return "?" if value is None else f"?({type(value).__name__})"
    text = escape_controls(value)
    return text if len(text) <= SHOWN_ID_CHARS else text[: SHOWN_ID_CHARS - 3] + "..."


async def sync_for_run(engine: AsyncEngine, settings: Settings) -> dict[str, Any]:
    """Sync the source before a run chooses its datasets; returns what the run record keeps
    of it (the refused rows, ``source_errors``), empty when there is nothing to keep."""
    if not settings.enable_backend_access_control:
        return {}
    synced = await sync_source(engine, settings)
    if synced is None or not synced.errors:
        return {}
    return {"source_errors": [e.to_dict() for e in synced.errors[:SOURCE_ERRORS_KEPT]]}
