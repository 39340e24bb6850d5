"""Names, keys and fixed numbers in one place: lock keys, Redis prefixes, queue names."""

from __future__ import annotations

# Relational upgrade lock (PostgreSQL advisory lock id; any stable 64-bit number).
RELATIONAL_ADVISORY_LOCK_KEY = 0x6D69677261746F72  # "migrator"
RELATIONAL_LOCK_POLL_S = 0.25

# Vector schema bookkeeping inside each dataset database.
VECTOR_VERSION_TABLE = "migrator_schema_version"
COLLECTION_NAME = "chunks"
DEFAULT_ENGINE_ID = "default"

# Entry point group third parties use to register vector adapters.
ADAPTER_ENTRY_POINT_GROUP = "dataset_migrator.vector_adapters"

# Celery / Redis (used by worker/ and tasks/).
QUEUE_NAME = "migrations"
REDIS_PREFIX = "migrator:"
RUN_LOCK_KEY = REDIS_PREFIX + "run-lock"
DATASET_LOCK_PREFIX = REDIS_PREFIX + "dataset-lock:"
SERVER_SLOTS_PREFIX = REDIS_PREFIX + "server-slots:"
