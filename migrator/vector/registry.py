"""Find an adapter class by provider name: built-ins, then the entry point group."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import lru_cache
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from migrator.constants import ADAPTER_ENTRY_POINT_GROUP
from migrator.errors import UnknownProviderError

AdapterFactory = Callable[..., Any]

_BUILTIN: dict[str, str] = {
    "lancedb": "migrator.vector.lancedb_adapter:LanceDBAdapter",
    "pgvector": "migrator.vector.pgvector_adapter:PgVectorAdapter",
}
_registered: dict[str, AdapterFactory] = {}


def register_adapter(provider: str, factory: AdapterFactory) -> None:
    """Register an adapter in this process (tests, embedding applications)."""
    _registered[provider] = factory


def unregister_adapter(provider: str) -> None:
    _registered.pop(provider, None)


def _entry_points() -> dict[str, Any]:
    # Scanning every installed distribution costs milliseconds; do it once per sys.path.
    return _entry_points_on(tuple(sys.path))


@lru_cache(maxsize=8)
def _entry_points_on(_path: tuple[str, ...]) -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ADAPTER_ENTRY_POINT_GROUP)}


def provider_names() -> list[str]:
    return sorted({*_BUILTIN, *_registered, *_entry_points()})


def adapter_factory(provider: str) -> AdapterFactory:
    """The class (or factory) registered for ``provider``; ``UnknownProviderError`` otherwise."""
    if provider in _registered:
        return _registered[provider]
    if provider in _BUILTIN:
        module_name, _, attr = _BUILTIN[provider].partition(":")
        builtin: AdapterFactory = getattr(import_module(module_name), attr)
        return builtin
    found = _entry_points().get(provider)
    if found is None:
        raise UnknownProviderError(provider, provider_names())
    loaded: AdapterFactory = found.load()
    return loaded
