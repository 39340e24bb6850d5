"""A read-only picture of a dataset database, taken before a revision's ``upgrade(op)`` runs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class CollectionInfo:
    """One application collection: its columns (name -> the store's type name) and indexes."""

    columns: Mapping[str, str] = field(default_factory=dict)
    indexes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    """The application's collections in one dataset database (never the migrator's tables)."""

    collections: Mapping[str, CollectionInfo] = field(default_factory=dict)


def like_pattern(like: str) -> re.Pattern[str]:
    """SQL LIKE as a regex: ``%`` any run, ``_`` one character, everything else literal."""
    parts = ("." if ch == "_" else ".*" if ch == "%" else re.escape(ch) for ch in like)
    return re.compile("".join(parts), re.DOTALL)
