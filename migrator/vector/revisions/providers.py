"""What each built-in provider accepts: index kinds and their parameters, escape hatches.

A recorded operation is checked here against one provider before anything runs, so ``check``
refuses a revision for a provider without a database, and an executor never meets a surprise.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from typing import Any

from migrator.vector.revisions.ops import (
    AlterColumn,
    CreateIndex,
    DropIndex,
    Execute,
    Native,
    Operation,
)

LANCEDB = "lancedb"
PGVECTOR = "pgvector"
PROVIDERS = (LANCEDB, PGVECTOR)
# Collections the migrator keeps for itself: an application never creates or lists them.
RESERVED_PREFIX = "migrator_"
IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# Index kind -> class name in lancedb.index, imported on first use: `import migrator` (every
# CLI call, the guard) must not load LanceDB.
LANCE_INDEXES = {
    "btree": "BTree",
    "bitmap": "Bitmap",
    "label_list": "LabelList",
    "ivf_flat": "IvfFlat",
    "ivf_pq": "IvfPq",
    "ivf_hnsw_sq": "HnswSq",
    "ivf_hnsw_pq": "HnswPq",
}
LANCE_VECTOR_KINDS = ("ivf_flat", "ivf_pq", "ivf_hnsw_sq", "ivf_hnsw_pq")
PG_INDEX_PARAMS: dict[str, tuple[str, ...]] = {
    "btree": (),
    "hnsw": ("metric", "m", "ef_construction"),
    "ivfflat": ("metric", "lists"),
}
PG_VECTOR_KINDS = ("hnsw", "ivfflat")
PG_METRIC_OPS = {"l2": "vector_l2_ops", "cosine": "vector_cosine_ops", "ip": "vector_ip_ops"}
# One portable metric vocabulary: pgvector says "ip" where LanceDB says "dot".
LANCE_METRICS = {"l2": "l2", "cosine": "cosine", "ip": "dot", "dot": "dot"}


def lance_index_class(kind: str) -> type[Any]:
    import lancedb.index

    cls: type[Any] = getattr(lancedb.index, LANCE_INDEXES[kind])
    return cls


def check_identifier(name: str, what: str) -> str | None:
    """The reason ``name`` is not usable as a collection/column/index name, or None."""
    if not isinstance(name, str) or not IDENTIFIER.fullmatch(name):
        return f"{what} {name!r} must be lowercase letters, digits and _ (at most 63)"
    if what == "collection" and name.startswith(RESERVED_PREFIX):
        return f"collection names starting with {RESERVED_PREFIX!r} are the migrator's own"
    return None


def provider_problem(operation: Operation, provider: str) -> str | None:
    """Why ``provider`` cannot run ``operation``, or None when it can."""
    if provider not in PROVIDERS:
        return None  # a third-party adapter validates its own operations
    if isinstance(operation, Execute) and provider != PGVECTOR:
        return "op.execute is pgvector only; declare providers = ('pgvector',)"
    if isinstance(operation, Native) and provider != LANCEDB:
        return "op.native is lancedb only; declare providers = ('lancedb',)"
    if isinstance(operation, CreateIndex):
        return _index_problem(operation, provider)
    if isinstance(operation, DropIndex) and operation.concurrently and provider != PGVECTOR:
        return "concurrently=True is a pgvector option"
    altered = operation.type if isinstance(operation, AlterColumn) else None
    if provider == LANCEDB and altered is not None and altered.is_vector:
        return "LanceDB cannot change a vector column's type; add a new column and backfill"
    return None


def _index_problem(index: CreateIndex, provider: str) -> str | None:
    if provider == LANCEDB:
        if index.kind not in LANCE_INDEXES:
            return f"LanceDB index kinds are {', '.join(LANCE_INDEXES)}; got {index.kind!r}"
        if len(index.columns) != 1:
            return "a LanceDB index covers exactly one column"
        if index.concurrently:
            return "concurrently=True is a pgvector option"
        if index.maintenance_work_mem is not None or index.parallel_workers is not None:
            # LanceDB builds on its process-wide CPU pool (LANCE_CPU_THREADS): nothing per index.
            return "maintenance_work_mem and parallel_workers are pgvector options"
        return _params_problem(index.params, _lance_params(index.kind))
    if index.kind not in PG_INDEX_PARAMS:
        return f"pgvector index kinds are {', '.join(PG_INDEX_PARAMS)}; got {index.kind!r}"
    if index.kind in PG_VECTOR_KINDS and len(index.columns) != 1:
        return f"a {index.kind} index covers exactly one vector column"
    metric = index.params.get("metric", "l2")
    if index.kind in PG_VECTOR_KINDS and metric not in PG_METRIC_OPS:
        return f"metric must be one of {', '.join(PG_METRIC_OPS)}; got {metric!r}"
    return _params_problem(index.params, PG_INDEX_PARAMS[index.kind])


def _lance_params(kind: str) -> tuple[str, ...]:
    names = tuple(inspect.signature(lance_index_class(kind)).parameters)
    return (*names, "metric") if "distance_type" in names else names


def _params_problem(params: Mapping[str, Any], allowed: tuple[str, ...]) -> str | None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        return f"unknown index parameters {unknown}; allowed: {', '.join(allowed) or 'none'}"
    return None


def lance_index_config(index: CreateIndex) -> Any:
    """The ``lancedb.index`` config object for a validated LanceDB index."""
    params = dict(index.params)
    if "metric" in params:
        params["distance_type"] = LANCE_METRICS[params.pop("metric")]
    return lance_index_class(index.kind)(**params)
