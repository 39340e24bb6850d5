"""Names, keys and fixed numbers in one place: lock keys, Redis prefixes, queue names."""

from __future__ import annotations

# Control-plane writes that lose their connection mid-way (a restart, a failover) are tried
# again on a new one: this many tries in all, the n-th retry after n x CONTROL_PLANE_RETRY_S.
CONTROL_PLANE_TRIES = 3
CONTROL_PLANE_RETRY_S = 0.2

# Relational upgrade lock (PostgreSQL advisory lock id; any stable 64-bit number).
RELATIONAL_ADVISORY_LOCK_KEY = 0x6D69677261746F72  # "migrator"
RELATIONAL_LOCK_POLL_S = 0.25
# Per-dataset lock of a remote LanceDB dataset on a PostgreSQL control plane: advisory lock
# (namespace, hashtext(store URL)); the namespace keeps it apart from every other advisory lock.
REMOTE_STORE_ADVISORY_NAMESPACE = 0x6C616E63  # "lanc"
REMOTE_STORE_LOCK_POLL_S = 0.1

# Vector schema bookkeeping inside each dataset database.
VECTOR_VERSION_TABLE = "migrator_schema_version"
COLLECTION_NAME = "chunks"
DEFAULT_ENGINE_ID = "default"

# Dataset ids: the registry's are UUIDs; an external DATASET_SOURCE's are checked against these.
DATASET_ID_CHARS = 255
DATASET_ID_PATTERN = r"[A-Za-z0-9._:-]{1,255}"
# Source errors a run record keeps (the log has every one).
SOURCE_ERRORS_KEPT = 100

# Entry point group third parties use to register vector adapters.
ADAPTER_ENTRY_POINT_GROUP = "dataset_migrator.vector_adapters"

# Celery / Redis (used by worker/ and tasks/).
QUEUE_NAME = "migrations"
REDIS_PREFIX = "migrator:"
RUN_LOCK_KEY = REDIS_PREFIX + "run-lock"
DATASET_LOCK_PREFIX = REDIS_PREFIX + "dataset-lock:"
CHECK_LOCK_KEY = REDIS_PREFIX + "check-lock"
SERVER_SLOTS_PREFIX = REDIS_PREFIX + "server-slots:"
# Heavy slots (HEAVY_PER_SERVER_CONCURRENCY): the same sorted sets, a second cap per server.
HEAVY_SLOTS_PREFIX = REDIS_PREFIX + "heavy-slots:"
# Waiting for a server slot (migrator.slots): poll every SERVER_SLOT_POLL_S (plus up to as much
# again, at random, so waiters do not move in step); log at INFO a wait longer than this.
SERVER_SLOT_POLL_S = 0.1
SERVER_SLOT_WAIT_LOG_S = 10.0

# Task names: messages name tasks by these strings, so they never change with module layout.
TASK_MIGRATE_RUN = "tasks.migrate_run"
TASK_MIGRATE_DATASET = "tasks.migrate_dataset"
TASK_FINISH_RUN = "tasks.finish_run"
TASK_FINISH_FAILED_CHORD = "tasks.finish_failed_chord"
TASK_SCHEDULED_CHECK = "tasks.scheduled_check"
CHECK_SCHEDULE_ENTRY = "migration-check"

# Locks. The run lock's TTL is RUN_STALE_AFTER_S and the dataset lock's DATASET_LOCK_TTL_S
# (settings); a live holder extends its locks every TTL / LOCK_HEARTBEATS_PER_TTL seconds, so a
# dead one lets them lapse within one TTL.
LOCK_HEARTBEATS_PER_TTL = 3
DATASET_LOCK_POLL_S = 0.2
# Tries at claiming the run lock when it changes hands between our SET NX and our GET.
RUN_CLAIM_TRIES = 5

# Time limits around the relational step in the parent task: waiting for another process's
# upgrade (RELATIONAL_LOCK_TIMEOUT_S) plus this allowance for Alembic itself.
RELATIONAL_UPGRADE_ALLOWANCE_S = 600.0
# Hard limit = soft limit + this, for the tasks whose soft limit is derived (parent, body, check).
HARD_LIMIT_MARGIN_S = 60.0
# How long a cancelled dataset coroutine gets to close its adapter after the soft time limit.
CANCEL_GRACE_S = 10.0
# Celery waits this long for a chord's header results when the last one arrives.
CHORD_JOIN_TIMEOUT_S = 60.0

# Triggers waiting on a run.
DEFAULT_WAIT_TIMEOUT_S = 3600.0
WAIT_POLL_S = 0.5
WAIT_FIRST_POLL_S = 0.05
# After the run record says finished, how long to wait for the chord body's result to land.
RESULT_GRACE_S = 5.0
# A run's task result carries counts and at most this many failed dataset ids, so it stays
# under 1 KB at any size; the control plane holds every outcome (`migrator status RUN_ID`).
RESULT_FAILED_IDS_MAX = 10
RESULT_ERROR_CHARS = 200
# Dataset names in task results are cut to this; the id stays whole (results stay < 1 KB).
RESULT_NAME_CHARS = 40
# What a task result must stay under, as JSON.
RESULT_MAX_BYTES = 1000
# Dataset ids named in one scheduled-check log line or result.
CHECK_IDS_SHOWN = 20
