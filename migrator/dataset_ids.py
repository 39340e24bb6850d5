"""Dataset ids and the store names derived from them.

The registry's ids are UUIDs; an external ``DATASET_SOURCE`` may use any id of up to 255
characters from ``[A-Za-z0-9._:-]``. A folder or schema name is derived from the id: a UUID
(canonical: lowercase, hyphenated) keeps today's names (``<uuid>`` folders, ``ds_<hex>``
schemas), any other id a stable hash, so an id's characters never reach a path or an
identifier, and case or punctuation cannot make two ids share a store.
"""

from __future__ import annotations

import hashlib
import re
import uuid

from migrator.constants import DATASET_ID_CHARS, DATASET_ID_PATTERN, DEFAULT_ENGINE_ID

_ID = re.compile(DATASET_ID_PATTERN)
# 40 hex characters of SHA-256 (160 bits): "h" keeps them apart from a UUID's 32.
HASH_PREFIX = "h"
HASH_HEX_CHARS = 40


def canonical_uuid(dataset_id: str) -> str | None:
    """The id itself when it is a UUID spelt canonically; None otherwise."""
    try:
        canonical = str(uuid.UUID(dataset_id))
    except (ValueError, AttributeError, TypeError):
        return None
    return canonical if canonical == dataset_id else None


def id_problem(dataset_id: object) -> str | None:
    """Why ``dataset_id`` cannot be a dataset id from a source; None when it can."""
    if not isinstance(dataset_id, str):
        return f"id must be a string, got {type(dataset_id).__name__}"
    if len(dataset_id) > DATASET_ID_CHARS:
        return f"id is {len(dataset_id)} characters; at most {DATASET_ID_CHARS}"
    if not _ID.fullmatch(dataset_id):
        return "id may hold only letters, digits and '.', '_', ':', '-' (at least one)"
    if dataset_id == DEFAULT_ENGINE_ID:
        return f"id {DEFAULT_ENGINE_ID!r} is reserved for the single default vector engine"
    return None


def store_key(dataset_id: str) -> str:
    """The part of a folder or schema name that stands for the dataset."""
    if dataset_id == DEFAULT_ENGINE_ID:
        return dataset_id
    found = canonical_uuid(dataset_id)
    if found is not None:
        return found
    digest = hashlib.sha256(dataset_id.encode()).hexdigest()[:HASH_HEX_CHARS]
    return HASH_PREFIX + digest


def schema_key(dataset_id: str) -> str:
    """The part of a pgvector schema name after ``ds_``: a UUID's hex, else ``store_key``."""
    found = canonical_uuid(dataset_id)
    return uuid.UUID(found).hex if found is not None else store_key(dataset_id)
